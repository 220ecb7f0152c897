//! Scoring a round: every fleet's test cells with the shared weights and with its own
//! model, and what the fleets have spent under record-level DP-SGD.

use std::collections::BTreeMap;

use super::super::intervals::{pooled_scores, score_histogram, with_pooled};
use super::super::job_seed;
use super::super::labels::secure_sum;
use super::super::personalize::{FleetModel, FleetState};
use super::{weights_of, Simulation, STREAM_CALIBRATION_MASKS};
use crate::error::{Error, Result};
use crate::model::{BatLiNet, Dataset, IntervalCalibration, Metrics, ModelParams, Prediction};

impl Simulation {
    /// Each fleet's RMSE on its own test cells with its own model (see
    /// [`Personalization`](crate::federation::Personalization)), pooled over fleets and per fleet;
    /// the chosen weights are kept in `personal`.
    pub(super) fn evaluate_personal(
        &mut self,
        global: &ModelParams,
        groups: &[ModelParams],
        personal: &mut [FleetState],
        round: usize,
    ) -> Result<(f64, BTreeMap<String, f64>)> {
        self.score(round, |sim, f| {
            let received = weights_of(&sim.state.fleet_group, f, global, groups);
            sim.clients[f].personal_model(&mut sim.worker, received, &mut personal[f], round)
        })
    }

    /// The model fleet `fleet_id` would use now: its personalized model (the global one with
    /// `personalization = none`, or before the first round).
    pub fn fleet_model(&mut self, fleet_id: &str) -> Result<BatLiNet> {
        let f = self
            .fleet_index(fleet_id)
            .ok_or_else(|| Error::config("fleet_id", format!("no fleet {fleet_id:?}")))?;
        let model = match self.state.fleets.get(f).and_then(|s| s.current.clone()) {
            Some(m) => m,
            None => {
                let params = self.start_params(f).clone();
                self.clients[f].shared_model(&mut self.worker, params)?
            }
        };
        model.to_batlinet(&mut self.worker)
    }

    /// Every fleet's interval calibration of the model it uses now, by fleet id (module
    /// [`federation::intervals`](crate::federation::intervals)): its own validation cells'
    /// scores, or, with fewer than [`MONDRIAN_MIN_CELLS`](crate::model::MONDRIAN_MIN_CELLS),
    /// the scores of every fleet pooled through a secure sum of histograms.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] unless fleets hold out validation cells (personalization `auto` or
    /// `auto_head`, or `calibration_holdout`) and a round has run, with
    /// record-level DP-SGD (the summed errors would be released outside its guarantee), and
    /// the errors of calibration and of the secure sum.
    pub fn calibrate_fleets(&mut self) -> Result<BTreeMap<String, IntervalCalibration>> {
        if !self.config.holds_out_validation_cells() {
            return Err(Error::config(
                "calibration_holdout",
                "fleet intervals are calibrated on held-out validation cells: set \
                 calibration_holdout (`auto` and `auto_head` always hold them out)",
            ));
        }
        // each fleet's own calibration, once: its errors go to the sum, its flags stay
        let mut own = Vec::with_capacity(self.clients.len());
        for (f, client) in self.clients.iter().enumerate() {
            let state = self.state.fleets.get(f).cloned().unwrap_or_default();
            own.push(client.calibration(&mut self.worker, &state)?);
        }
        let histograms: Vec<Vec<f64>> = own
            .iter()
            .map(|c| score_histogram(&c.errors))
            .collect::<Result<_>>()?;
        // masks of their own stream (a round's masks are never reused for another sum)
        let seed = job_seed(self.config.seed, self.state.round, STREAM_CALIBRATION_MASKS);
        let summed = secure_sum(&histograms, self.config.secure_aggregation.as_ref(), seed)?;
        let pooled = pooled_scores(&summed)?;
        self.fleets
            .iter()
            .zip(own)
            .map(|(fleet, c)| Ok((fleet.id.clone(), with_pooled(c, pooled.clone())?)))
            .collect()
    }

    /// Fleet `fleet_id`'s predictions of `targets` with its own model, intervals at
    /// `coverage` from its `calibration` (see [`calibrate_fleets`](Self::calibrate_fleets))
    /// and flags, its training cells as references.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an unknown fleet or a coverage outside (0, 1), and the
    /// errors of [`BatLiNet::predict_intervals`].
    pub fn fleet_intervals(
        &mut self,
        fleet_id: &str,
        targets: &Dataset,
        calibration: &IntervalCalibration,
        coverage: f64,
    ) -> Result<Vec<Prediction>> {
        let model = self.fleet_model(fleet_id)?;
        let f = self
            .fleet_index(fleet_id)
            .ok_or_else(|| Error::config("fleet_id", format!("no fleet {fleet_id:?}")))?;
        model.predict_intervals(targets, &self.fleets[f].train, calibration, coverage)
    }

    /// ε per cell each fleet has spent (record-level DP-SGD), given the fleets' states.
    pub(super) fn fleet_epsilon(&self, states: &[FleetState]) -> Result<BTreeMap<String, f64>> {
        let mut out = BTreeMap::new();
        for ((client, state), fleet) in self.clients.iter().zip(states).zip(&self.fleets) {
            if let Some(e) = client.record_epsilon(state)? {
                out.insert(fleet.id.clone(), e);
            }
        }
        Ok(out)
    }

    /// With record-level DP-SGD, each fleet's mechanism: (noise multiplier, sampling rate).
    pub fn record_mechanisms(&self) -> BTreeMap<String, (f64, f64)> {
        self.clients
            .iter()
            .zip(&self.fleets)
            .filter_map(|(c, f)| c.record_mechanism().map(|m| (f.id.clone(), m)))
            .collect()
    }

    pub(super) fn evaluate_with(
        &mut self,
        global: &ModelParams,
        groups: &[ModelParams],
        round: usize,
    ) -> Result<(f64, BTreeMap<String, f64>)> {
        self.score(round, |sim, f| {
            let params = weights_of(&sim.state.fleet_group, f, global, groups);
            sim.clients[f].shared_model(&mut sim.worker, params.clone())
        })
    }

    /// Every fleet's test cells predicted by the model `model_of` gives it (its own training
    /// cells as references, round `round`'s seed): the pooled RMSE and each fleet's.
    fn score(
        &mut self,
        round: usize,
        mut model_of: impl FnMut(&mut Self, usize) -> Result<FleetModel>,
    ) -> Result<(f64, BTreeMap<String, f64>)> {
        let (mut preds, mut truth) = (Vec::new(), Vec::new());
        let mut per_fleet = BTreeMap::new();
        for f in 0..self.fleets.len() {
            let model = model_of(self, f)?;
            let fleet = &self.fleets[f];
            let (rmse, p) = self.clients[f].score(&mut self.worker, &model, &fleet.test, round)?;
            per_fleet.insert(fleet.id.clone(), rmse);
            preds.extend(p);
            truth.extend(fleet.test.require_labels()?);
        }
        Ok((Metrics::compute(&preds, &truth)?.rmse, per_fleet))
    }
}
