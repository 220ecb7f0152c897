//! In-process federation: a coordinator and its fleet clients, round by round.

use std::collections::BTreeMap;
use std::path::PathBuf;

mod checkpoint;
mod evaluate;

use super::config::FederationConfig;
use super::fleet::FleetClient;
use super::labels::set_shared_statistics;
use super::rule::AggregationRule;
use super::state::{CoordinatorState, RoundRecord};
use super::{cluster_fleets, job_seed, FleetSummary};
use crate::aggregate::{partition_updates, Aggregator, ClientUpdate, UpdatePolicy};
use crate::dp::{clip_l2, release_mean, DpMode, GaussianNoise, RoundNoise};
use crate::error::{Error, Result};
use crate::features::FeaturizerConfig;
use crate::model::{BatLiNet, BatLiNetConfig, Dataset, InputScales, LabelTransform, ModelParams};
use crate::secagg::simulate_round;

/// One fleet's data, which never leaves the fleet: training cells (also the fleet's own
/// inference references) and held-out test cells.
#[derive(Debug, Clone)]
pub struct FleetData {
    /// Fleet id.
    pub id: String,
    /// Labelled training cells.
    pub train: Dataset,
    /// Labelled test cells.
    pub test: Dataset,
}

/// A federated run over in-process fleets (see the module docs of [`crate::federation`]).
#[derive(Debug)]
pub struct Simulation {
    config: FederationConfig,
    fleets: Vec<FleetData>,
    /// Per fleet: its side of each round (local training, personal model).
    clients: Vec<FleetClient>,
    worker: BatLiNet,
    state: CoordinatorState,
    checkpoint: Option<PathBuf>,
}

// (usize::MAX: the round's sampling, `select_clients`; usize::MAX - 1: the round's noise,
// `dp::ROUND_NOISE_STREAM`)
const STREAM_MASKS: usize = usize::MAX - 2;
/// The masks of the secure sum of the fleets' calibration histograms.
const STREAM_CALIBRATION_MASKS: usize = usize::MAX - 1_000_003;

impl Simulation {
    /// Set up a run: validates the settings, computes the shared label transform from the
    /// fleets' label statistics (securely when configured), initializes the global model
    /// from the model seed and, when configured, groups the fleets by genome.
    pub fn new(
        config: FederationConfig,
        model: BatLiNetConfig,
        featurizer: FeaturizerConfig,
        fleets: Vec<FleetData>,
    ) -> Result<Self> {
        if config.record_privacy.is_some() {
            return Err(Error::config(
                "record_privacy",
                "record-level DP-SGD needs public cells: Simulation::with_public_cells",
            ));
        }
        Self::build(config, model, featurizer, fleets, None)
    }

    /// Set up a run whose fleets train with record-level DP-SGD (`config.record_privacy`):
    /// the label transform and input scales come from the labelled `public` cells (no
    /// statistic of a fleet is summed), and so do branch B's training references; the first
    /// global weights are trained on them (unless `public_pretraining` is off). A fleet's own
    /// cell among the public ones is refused. See [`crate::federation`]'s private training
    /// for what the guarantee covers.
    pub fn with_public_cells(
        config: FederationConfig,
        model: BatLiNetConfig,
        featurizer: FeaturizerConfig,
        fleets: Vec<FleetData>,
        public: Dataset,
    ) -> Result<Self> {
        Self::private(config, model, featurizer, fleets, public, true)
    }

    /// [`with_public_cells`](Self::with_public_cells), training the first global weights on
    /// the public cells only when `pretrain` (a resumed run takes its checkpoint's).
    fn private(
        config: FederationConfig,
        model: BatLiNetConfig,
        featurizer: FeaturizerConfig,
        fleets: Vec<FleetData>,
        public: Dataset,
        pretrain: bool,
    ) -> Result<Self> {
        if config.record_privacy.is_none() {
            return Err(Error::config(
                "record_privacy",
                "public cells are for record-level DP-SGD: set record_privacy",
            ));
        }
        Self::build(config, model, featurizer, fleets, Some((public, pretrain)))
    }

    fn build(
        config: FederationConfig,
        model: BatLiNetConfig,
        featurizer: FeaturizerConfig,
        fleets: Vec<FleetData>,
        public: Option<(Dataset, bool)>,
    ) -> Result<Self> {
        config.validate(fleets.len())?;
        let Some(first) = fleets.first() else {
            return Err(Error::NotEnoughData {
                what: "fleets".into(),
                needed: 1,
                got: 0,
            });
        };
        let shape = first.train.shape();
        for f in &fleets {
            if f.train.is_empty() || f.test.is_empty() {
                return Err(Error::NotEnoughData {
                    what: format!("cells of fleet {}", f.id),
                    needed: 1,
                    got: 0,
                });
            }
            if f.train.shape() != shape || f.test.shape() != shape {
                return Err(Error::Shape {
                    what: format!("inputs of fleet {}", f.id),
                    expected: shape.to_vec(),
                    got: f.train.shape().to_vec(),
                });
            }
        }
        if config.dp.is_some() && !config.strategy.needs_only_the_sum() {
            return Err(Error::config(
                "dp",
                "DP noise is calibrated for mean-based strategies, not median or trimmed mean",
            ));
        }
        let batch = model.batch_size;
        let mut worker = BatLiNet::new(model.with_progress(false), featurizer)?;
        if worker.input_shape() != shape {
            return Err(Error::Shape {
                what: "model input (channels, cycles, grid points)".into(),
                expected: worker.input_shape().to_vec(),
                got: shape.to_vec(),
            });
        }
        match &public {
            Some((public, pretrain)) => {
                let dp = config.record_privacy.as_ref().ok_or_else(|| {
                    Error::config("record_privacy", "public cells need record_privacy")
                })?;
                super::private::start_global(&mut worker, public, &fleets, dp, *pretrain)?
            }
            None => set_shared_statistics(
                &mut worker,
                &fleets,
                config.secure_aggregation.as_ref(),
                job_seed(config.seed, 0, STREAM_MASKS),
            )?,
        }
        let labels = worker.require_labels()?;
        let global = worker.params()?;
        let clients = fleets
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let client = FleetClient::new(&config, i, f.train.clone())?;
                match &public {
                    Some((p, _)) => client.with_public_cells(p.clone(), batch),
                    None => Ok(client),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let fleet_state = clients
            .iter()
            .map(|c| c.initial_state(&worker))
            .collect::<Result<Vec<_>>>()?;
        let fleet_group = match &config.clustering {
            Some(c) => {
                let summaries = fleets
                    .iter()
                    .map(|f| FleetSummary::from_fingerprints(f.train.fingerprints()))
                    .collect::<Result<Vec<_>>>()?;
                cluster_fleets(&summaries, c.threshold)
            }
            None => Vec::new(),
        };
        let n_groups = fleet_group.iter().copied().max().map_or(0, |g| g + 1);
        let server_optimizer = match unchecked_rule(&config)? {
            AggregationRule::Opt(opt) => Some(opt),
            _ => None,
        };
        let state = CoordinatorState {
            round: 0,
            groups: vec![global.clone(); n_groups],
            global,
            fleet_group,
            server_optimizer,
            accountant: config.dp.as_ref().map(|d| d.accountant()).transpose()?,
            adaptive_clip: config
                .dp
                .as_ref()
                .map(|d| d.adaptive_state())
                .transpose()?
                .flatten(),
            labels,
            history: Vec::new(),
            fleets: fleet_state,
        };
        Ok(Simulation {
            config,
            fleets,
            clients,
            worker,
            state,
            checkpoint: None,
        })
    }

    /// The shared label transform and input scales of this run.
    pub fn statistics(&self) -> (LabelTransform, InputScales) {
        (
            self.state.labels,
            self.worker
                .input_scales()
                .cloned()
                .unwrap_or_else(|| InputScales::unit(self.worker.input_shape()[0])),
        )
    }

    /// Use a label transform and input scales agreed outside this run (for example in an
    /// earlier federation) instead of the ones summed at set-up. Only before the first round.
    pub fn set_statistics(&mut self, labels: LabelTransform, scales: InputScales) -> Result<()> {
        if self.config.record_privacy.is_some() {
            return Err(Error::config(
                "statistics",
                "a record-private run reads the public cells' statistics",
            ));
        }
        if self.state.round > 0 {
            return Err(Error::config(
                "statistics",
                "can only be replaced before the first round",
            ));
        }
        self.worker.set_input_scales(scales)?;
        self.worker.set_label_transform(labels);
        self.state.labels = labels;
        Ok(())
    }

    /// The coordinator state.
    pub fn state(&self) -> &CoordinatorState {
        &self.state
    }

    /// True when every configured round is done.
    pub fn is_finished(&self) -> bool {
        self.state.round >= self.config.rounds
    }

    /// Run the remaining rounds, calling `on_round` after each. Freed memory stays mapped
    /// from the first round to the last ([`crate::runtime::MemoryScope`]).
    pub fn run(&mut self, mut on_round: impl FnMut(&RoundRecord)) -> Result<()> {
        let _memory = crate::runtime::MemoryScope::enter();
        while !self.is_finished() {
            let record = self.run_round()?;
            on_round(&record);
        }
        Ok(())
    }

    /// Run one round and checkpoint. On error the state is unchanged.
    pub fn run_round(&mut self) -> Result<RoundRecord> {
        self.round(None)
    }

    /// Start the next round and stop after `clients` local updates, as a crash would: the
    /// state and checkpoint are untouched. For crash-and-resume tests.
    #[doc(hidden)]
    pub fn interrupt_round_after(&mut self, clients: usize) -> Result<()> {
        match self.round(Some(clients)) {
            Err(Error::Aggregation { reason }) if reason == "interrupted" => Ok(()),
            Err(e) => Err(e),
            Ok(_) => Err(Error::Aggregation {
                reason: "round finished before the interruption point".into(),
            }),
        }
    }

    /// A model holding the current global weights and the shared label transform.
    pub fn global_model(&mut self) -> Result<&BatLiNet> {
        self.worker.set_params(&self.state.global)?;
        Ok(&self.worker)
    }

    fn start_params(&self, fleet: usize) -> &ModelParams {
        weights_of(
            &self.state.fleet_group,
            fleet,
            &self.state.global,
            &self.state.groups,
        )
    }

    fn round(&mut self, interrupt: Option<usize>) -> Result<RoundRecord> {
        let r = self.state.round + 1;
        let cfg = self.config.clone();
        let n = self.fleets.len();
        let m = cfg.clients_per_round.unwrap_or(n);
        let chosen = super::select_clients(cfg.seed, r, n, m)?;

        // DP for this round: clipping norm, noise multiplier, noise source
        let mut adaptive = self.state.adaptive_clip.clone();
        let round_noise = match &cfg.dp {
            Some(dp) => {
                let c = adaptive
                    .as_ref()
                    .map_or(dp.clipping_norm, |a| a.clipping_norm());
                let z = match &adaptive {
                    Some(a) => a.update_noise_multiplier(dp.noise_multiplier, m)?,
                    None => dp.noise_multiplier,
                };
                let rn = RoundNoise::new(dp.mode, z, c, m)?;
                // distributed noise is sized for the fewest survivors secure aggregation accepts
                Some(match &cfg.secure_aggregation {
                    Some(sa) if dp.mode == DpMode::Distributed => {
                        rn.with_min_survivors(sa.protocol(m, 1.0)?.t())?
                    }
                    _ => rn,
                })
            }
            None => None,
        };
        let mut noise = match &cfg.dp {
            Some(dp) => Some(GaussianNoise::for_round(dp.seed, r)?),
            None => None,
        };

        // local training on each chosen fleet (personal state on a copy: committed with the round)
        let mut personal = self.state.fleets.clone();
        let mut updates = Vec::with_capacity(m);
        let mut unclipped = Vec::with_capacity(m);
        for (k, &f) in chosen.iter().enumerate() {
            if interrupt == Some(k) {
                return Err(Error::Aggregation {
                    reason: "interrupted".into(),
                });
            }
            let received = self.start_params(f).clone();
            let update = self.clients[f].train(&mut self.worker, &received, &mut personal[f], r)?;
            let mut delta = update.delta;
            let mut weight = update.num_examples;
            if let (Some(rn), Some(noise)) = (&round_noise, noise.as_mut()) {
                unclipped.push(clip_l2(&mut delta, rn.clipping_norm)?.unclipped());
                rn.add_client_noise(&mut delta, noise)?;
                weight = 1; // DP sensitivity assumes equal weights
            }
            updates.push(ClientUpdate::delta(
                self.fleets[f].id.clone(),
                weight,
                delta,
            ));
        }
        let policy = UpdatePolicy {
            max_delta_norm: cfg.max_delta_norm,
        };
        let (updates, rejected) = partition_updates(&self.state.global, updates, &policy);
        if updates.is_empty() {
            return Err(Error::Aggregation {
                reason: format!("every update was rejected: {rejected:?}"),
            });
        }

        // aggregation
        let mut global = self.state.global.clone();
        let mut groups = self.state.groups.clone();
        let mut server_optimizer = self.state.server_optimizer.clone();
        if cfg.strategy.needs_only_the_sum() {
            let mut mean = self.mean_delta(&updates, r)?;
            if let (Some(rn), Some(noise)) = (&round_noise, noise.as_mut()) {
                mean = release_mean(rn, &mean, updates.len(), noise)?;
            }
            global = match server_optimizer.as_mut() {
                Some(opt) => opt.aggregate(&global, &[ClientUpdate::delta("mean", 1, mean)])?,
                None => global.add(&mean)?,
            };
            for (g, params) in groups.iter_mut().enumerate() {
                let members: Vec<ClientUpdate> = updates
                    .iter()
                    .filter(|u| {
                        self.fleet_index(&u.client_id)
                            .is_some_and(|f| self.state.fleet_group[f] == g)
                    })
                    .cloned()
                    .collect();
                if members.is_empty() {
                    continue;
                }
                let mut group_mean = self.mean_delta(&members, r)?;
                if let (Some(rn), Some(noise)) = (&round_noise, noise.as_mut()) {
                    // a group model is released like the global one: fixed denominator (the
                    // group's sampled fleets) and, in central mode, the server's noise
                    let sampled = chosen
                        .iter()
                        .filter(|&&f| self.state.fleet_group[f] == g)
                        .count();
                    let group_noise = RoundNoise::new(
                        rn.mode,
                        rn.noise_multiplier,
                        rn.clipping_norm,
                        sampled.max(1),
                    )?;
                    group_mean = release_mean(&group_noise, &group_mean, members.len(), noise)?;
                }
                *params = params.add(&group_mean)?;
            }
        } else {
            global = unchecked_rule(&cfg)?
                .aggregator()
                .aggregate(&global, &updates)?;
        }

        // privacy accounting and adaptive clipping (on copies: committed with the round)
        let mut accountant = self.state.accountant.clone();
        if let (Some(acc), Some(rn)) = (accountant.as_mut(), &round_noise) {
            // No subsampling amplification: the sampled fleets follow from the public seed and
            // are published in the round record, so q = 1. Each sampled fleet's update reaches
            // the global model and, with clustering, its group's model: two releases a round.
            let releases = if self.state.fleet_group.is_empty() {
                1
            } else {
                2
            };
            acc.step(rn.effective_noise_multiplier(updates.len()), 1.0, releases)?;
            // adaptive clipping releases the noisy count of unclipped updates too: a Gaussian
            // step of its own at 2σ_b, which with the update's z_Δ composes to the overall
            // multiplier z (Andrew et al. 2021)
            if let Some(a) = &adaptive {
                acc.step(a.count_noise_multiplier(unclipped.len()), 1.0, 1)?;
            }
        }
        if let (Some(a), Some(noise)) = (adaptive.as_mut(), noise.as_mut()) {
            a.update(&unclipped, noise)?;
        }
        let epsilon = match (&accountant, &cfg.dp) {
            (Some(acc), Some(dp)) => Some(acc.epsilon(dp.target_delta)?),
            _ => None,
        };

        let (global_rmse, fleet_rmse) = self.evaluate_with(&global, &groups, r)?;
        let personalized = if cfg.keeps_fleet_models() {
            self.evaluate_personal(&global, &groups, &mut personal, r)?
        } else {
            // every fleet uses the global model: its scores are the ones just computed
            (global_rmse, fleet_rmse.clone())
        };
        let record = RoundRecord {
            round: r,
            clients: updates.iter().map(|u| u.client_id.clone()).collect(),
            rejected: rejected
                .into_iter()
                .map(|(c, why)| (c, why.to_string()))
                .collect(),
            global_rmse,
            fleet_rmse,
            epsilon,
            clipping_norm: round_noise.as_ref().map(|rn| rn.clipping_norm),
            personalized_rmse: personalized.0,
            fleet_personalized_rmse: personalized.1,
            choices: personal
                .iter()
                .zip(&self.fleets)
                .filter_map(|(p, f)| p.choice.as_ref().map(|c| (f.id.clone(), c.0.name().into())))
                .collect(),
            validation_rmse: personal
                .iter()
                .zip(&self.fleets)
                .filter_map(|(p, f)| {
                    let (_, scores) = p.choice.as_ref()?;
                    // (JSON has no NaN: a candidate that could not be scored is left out)
                    let named = scores
                        .iter()
                        .filter(|(_, v)| v.is_finite())
                        .map(|(c, v)| (c.name().to_string(), *v));
                    Some((f.id.clone(), named.collect()))
                })
                .collect(),
            fleet_epsilon: self.fleet_epsilon(&personal)?,
        };
        let mut next = self.state.clone();
        next.round = r;
        next.global = global;
        next.groups = groups;
        next.server_optimizer = server_optimizer;
        next.accountant = accountant;
        next.adaptive_clip = adaptive;
        next.fleets = personal;
        next.history.push(record.clone());
        if let Some(path) = &self.checkpoint {
            next.save(path)?;
        }
        self.state = next;
        Ok(record)
    }

    fn fleet_index(&self, id: &str) -> Option<usize> {
        self.fleets.iter().position(|f| f.id == id)
    }

    /// The weighted mean of the updates' deltas, through secure aggregation when configured.
    fn mean_delta(&self, updates: &[ClientUpdate], round: usize) -> Result<ModelParams> {
        let template = &updates[0].params;
        match &self.config.secure_aggregation {
            Some(sa) if updates.len() >= 3 => {
                let weights: Vec<f64> = updates.iter().map(|u| u.num_samples as f64).collect();
                let max_w = weights.iter().copied().fold(1.0, f64::max);
                let protocol = sa.protocol(updates.len(), max_w)?;
                let inputs: Vec<Vec<f32>> = updates.iter().map(|u| u.params.flatten()).collect();
                let mean = simulate_round(
                    &inputs,
                    &weights,
                    &protocol,
                    &BTreeMap::new(),
                    job_seed(self.config.seed, round, STREAM_MASKS),
                )?;
                template.from_flat(&mean)
            }
            Some(_) => Err(Error::Aggregation {
                reason: format!(
                    "secure aggregation needs >= 3 updates, got {}",
                    updates.len()
                ),
            }),
            None => crate::aggregate::FedAvg::default().aggregate(&template.zeros_like(), updates),
        }
    }
}

/// The weights fleet `f` receives: its group's with genome clustering (`fleet_group` not
/// empty), else the global ones.
fn weights_of<'a>(
    fleet_group: &[usize],
    f: usize,
    global: &'a ModelParams,
    groups: &'a [ModelParams],
) -> &'a ModelParams {
    match fleet_group.get(f) {
        Some(&g) => &groups[g],
        None => global,
    }
}

/// The strategy's rule ([`FederationConfig::aggregation_rule`]) without the federation's
/// update bound: a round checks every update against it once, before aggregating
/// (`partition_updates`), and a server optimizer steps on the released, possibly noised,
/// mean, which is no client's update (its own `server_optimizer.policy` still applies).
fn unchecked_rule(config: &FederationConfig) -> Result<AggregationRule> {
    FederationConfig {
        max_delta_norm: None,
        ..config.clone()
    }
    .aggregation_rule()
}
