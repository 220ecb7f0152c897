//! Intervals of the models federated fleets end with: each fleet's own held-out cells, pooled
//! through a secure sum of score histograms when a fleet has too few.

use battery_fl_core::federation::intervals::{pooled_scores, score_histogram};
use battery_fl_core::federation::{
    Candidate, FederationConfig, FleetClient, FleetState, Personalization, SecureAggregation,
    Simulation,
};
use battery_fl_core::model::{BatLiNet, DpSgdConfig, MONDRIAN_MIN_CELLS};
use battery_fl_core::Error;

use crate::federation::{config, featurizer, fleets, model};

fn auto(secure: bool) -> FederationConfig {
    FederationConfig {
        personalization: Personalization::Auto,
        secure_aggregation: secure.then(SecureAggregation::default),
        ..config(1)
    }
}

/// Every fleet scores the model it chose, as trained without its validation cells, on those
/// cells; with fewer than `MONDRIAN_MIN_CELLS` of them it takes all fleets' plain errors, read
/// back from the summed histogram at their bins' upper edges. Recomputed here by hand, fleet by
/// fleet, from the public pieces (the fleet's split and the models in its state): the secure
/// sum decodes the counts exactly.
#[test]
fn small_fleets_take_every_fleets_held_out_scores_summed_securely() {
    let cells = fleets(3);
    let mut sim = Simulation::new(auto(true), model(), featurizer(), cells.clone()).unwrap();
    sim.run(|_| {}).unwrap();
    let calibrations = sim.calibrate_fleets().unwrap();

    let mut worker = BatLiNet::new(model(), featurizer()).unwrap();
    let mut by_hand = Vec::new();
    for (f, fleet) in cells.iter().enumerate() {
        let client = FleetClient::new(&auto(true), f, fleet.train.clone()).unwrap();
        let val = client.validation_cells().unwrap();
        assert!(val.len() < MONDRIAN_MIN_CELLS);
        let state = &sim.state().fleets[f];
        let used = state
            .current
            .as_ref()
            .unwrap()
            .to_batlinet(&mut worker)
            .unwrap();
        let fitted = state
            .validated
            .as_ref()
            .unwrap()
            .to_batlinet(&mut worker)
            .unwrap();
        let own = used
            .calibrate_from(&fitted, client.fit_cells(), val, client.train_cells())
            .unwrap();
        assert_eq!(own.scores.len(), val.len());
        // the fleet's flags are kept; the pooled plain errors replace its normalized scores
        let cal = &calibrations[&fleet.id];
        assert_eq!(cal.training, own.training);
        approx::assert_relative_eq!(cal.max_distance, own.max_distance);
        assert!(cal.pooled && !own.pooled && own.scale > 0.0);
        assert_eq!((cal.scale, cal.group_scores.len()), (0.0, 0));
        assert_eq!(own.errors.len(), own.scores.len());
        // the calibrating model never trained on the held-out cells: the local model fitted
        // without them, the global or Ditto model the fleet uses (federated on its fitting
        // cells only), or the global model fine-tuned on the fitting cells
        let (choice, _) = state.choice.clone().unwrap();
        let (validated, current) = (state.validated.as_ref(), state.current.as_ref());
        match choice {
            Candidate::Local => {
                let (on_fit, on_all) = state.local.as_ref().unwrap();
                assert_eq!(validated, Some(on_fit));
                assert_eq!(current, Some(on_all));
                assert_ne!(on_fit, on_all);
            }
            Candidate::Global | Candidate::Ditto | Candidate::Head => {
                assert_eq!(validated, current)
            }
            Candidate::FineTune => assert_ne!(validated, current),
        }
        by_hand.extend(pooled_scores(&score_histogram(&own.errors).unwrap()).unwrap());
    }
    by_hand.sort_by(f64::total_cmp);
    for fleet in &cells {
        assert_eq!(calibrations[&fleet.id].scores, by_hand, "{}", fleet.id);
    }

    // intervals around each fleet's own predictions, within the prediction bound
    let id = &cells[1].id;
    let cal = &calibrations[id];
    let p = sim.fleet_intervals(id, &cells[1].test, cal, 0.8).unwrap();
    let own = sim.fleet_model(id).unwrap();
    let point = own.predict(&cells[1].test, &cells[1].train).unwrap();
    assert_eq!(p.len(), cells[1].test.len());
    for (p, y) in p.iter().zip(&point) {
        assert!(p.lower < p.life && p.life < p.upper, "{p:?}");
        approx::assert_relative_eq!(p.life, *y, max_relative = 1e-9);
    }
    // six pooled cells give no 90 % quantile: a typed error, not an infinite interval
    assert!(matches!(
        sim.fleet_intervals(id, &cells[1].test, cal, 0.9),
        Err(Error::NotEnoughData {
            needed: 9,
            got: 6,
            ..
        })
    ));
}

#[test]
fn fleet_intervals_need_auto_and_a_round() {
    let cells = fleets(3);
    let mut sim = Simulation::new(config(1), model(), featurizer(), cells.clone()).unwrap();
    sim.run(|_| {}).unwrap();
    assert!(matches!(
        sim.calibrate_fleets(),
        Err(Error::InvalidConfig { ref field, .. }) if field == "personalization"
    ));
    let mut fresh = Simulation::new(auto(false), model(), featurizer(), cells.clone()).unwrap();
    assert!(matches!(
        fresh.calibrate_fleets(),
        Err(Error::InvalidConfig { ref field, .. }) if field == "state"
    ));
    // record-level DP-SGD does not cover the summed errors: refused before any is computed
    let private = FederationConfig {
        record_privacy: Some(DpSgdConfig {
            epsilon: Some(8.0),
            ..Default::default()
        }),
        ..auto(false)
    };
    let client = FleetClient::new(&private, 0, cells[0].train.clone())
        .unwrap()
        .with_public_cells(cells[1].train.clone(), 4)
        .unwrap();
    let mut worker = BatLiNet::new(model(), featurizer()).unwrap();
    assert!(matches!(
        client.calibration(&mut worker, &FleetState::default()),
        Err(Error::InvalidConfig { ref field, .. }) if field == "record_privacy"
    ));
}
