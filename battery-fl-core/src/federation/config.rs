//! `FederationConfig`: rounds, strategy, secure aggregation, differential privacy.

use serde::{Deserialize, Serialize};

use crate::aggregate::{FedOptConfig, DEFAULT_TRIMMED_BETA};
use crate::dp::DpConfig;
use crate::error::{Error, Result};
use crate::model::{DpSgdConfig, DEFAULT_CHOICE_MARGIN};
use crate::secagg::SecAggConfig;

/// The server-side aggregation rule. Its snake-case name (`fed_avg`, ..., [`Strategy::name`])
/// is the one every layer uses: the `strategy` setting of Python's `Simulation` and of the
/// Flower run config, and the `name` of each aggregator (`Aggregator::name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Sample-weighted mean.
    FedAvg,
    /// FedAvg on the server; clients add the proximal term with `proximal_mu`.
    #[default]
    FedProx,
    /// Adam on the mean delta (Reddi et al. 2021).
    FedAdam,
    /// Yogi on the mean delta.
    FedYogi,
    /// Adagrad on the mean delta.
    FedAdagrad,
    /// Coordinate-wise median (needs individual updates: not with secure aggregation).
    FedMedian,
    /// Coordinate-wise trimmed mean (needs individual updates: not with secure aggregation).
    FedTrimmedAvg,
}

impl Strategy {
    /// Every rule, in declaration order.
    pub const ALL: [Strategy; 7] = [
        Strategy::FedAvg,
        Strategy::FedProx,
        Strategy::FedAdam,
        Strategy::FedYogi,
        Strategy::FedAdagrad,
        Strategy::FedMedian,
        Strategy::FedTrimmedAvg,
    ];

    /// The snake-case name (as serialized).
    pub fn name(self) -> &'static str {
        match self {
            Strategy::FedAvg => "fed_avg",
            Strategy::FedProx => "fed_prox",
            Strategy::FedAdam => "fed_adam",
            Strategy::FedYogi => "fed_yogi",
            Strategy::FedAdagrad => "fed_adagrad",
            Strategy::FedMedian => "fed_median",
            Strategy::FedTrimmedAvg => "fed_trimmed_avg",
        }
    }

    /// True when the rule only needs the (weighted) sum of the updates, so it composes with
    /// secure aggregation.
    pub fn needs_only_the_sum(self) -> bool {
        !matches!(self, Strategy::FedMedian | Strategy::FedTrimmedAvg)
    }
}

/// Secure-aggregation settings for a round (the number of clients is the number sampled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecureAggregation {
    /// Neighbourhood size k (odd, >= 3); `None` = complete graph (default).
    pub neighbours: Option<usize>,
    /// Shamir threshold t; `None` = ceil(2k/3) (default).
    pub threshold: Option<usize>,
    /// Clipping range c of the weighted deltas (default 8.0).
    pub clipping_range: f64,
    /// Modulus bits, 32 or 64 (default 32).
    pub modulus_bits: u32,
}

impl Default for SecureAggregation {
    fn default() -> Self {
        SecureAggregation {
            neighbours: None,
            threshold: None,
            clipping_range: 8.0,
            modulus_bits: 32,
        }
    }
}

impl SecureAggregation {
    /// The protocol configuration for `n` clients with weights up to `max_weight`.
    pub fn protocol(&self, n: usize, max_weight: f64) -> Result<SecAggConfig> {
        let config = SecAggConfig {
            num_clients: n,
            neighbours: self.neighbours.filter(|&k| k < n),
            threshold: self.threshold,
            clipping_range: self.clipping_range,
            modulus_bits: self.modulus_bits,
            max_weight: max_weight.max(1.0),
            ..SecAggConfig::default()
        };
        config.validate()?;
        Ok(config)
    }
}

/// How each fleet turns the federation into the model it uses (Rust `personalization`,
/// Python `personalization=`, Flower run config `personalization`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Personalization {
    /// Every fleet uses the global model (the default).
    #[default]
    None,
    /// Each fleet fine-tunes the global model on its own cells (`personal_epochs`).
    FineTune,
    /// Encoders are federated; each fleet keeps its own linear head, shared by its two
    /// branches (FedRep/FedPer style).
    Head,
    /// Each fleet keeps a personal model trained with a proximal pull of strength
    /// `ditto_lambda` toward the global one (Ditto, Li et al. 2021); `lambda = 0` is local
    /// training.
    Ditto,
    /// Each fleet chooses among its own model, the global one, the fine-tuned global one and
    /// its Ditto model by validation on `validation_fraction` of its own training cells, so
    /// that on its own validation cells no fleet ends worse than alone. A shared model
    /// replaces the fleet's own only when its squared ln errors on those cells lie clearly
    /// below the own model's, by a paired t-test at `choice_margin` (a few
    /// validation cells are a noisy judge; the burden of proof is on leaving local; the rule
    /// of the linear recipe's choice, whose default is the global model instead).
    Auto,
    /// `auto` over `head`'s federation: the encoders are federated and each fleet's head
    /// stays home, and each fleet keeps its own model unless its own-head model (the shared
    /// encoders with its head) beats it on its validation cells by the same t-test. Where one
    /// shared head cannot serve unlike fleets (MATR's charging protocols) the own-head model
    /// is the shared candidate that pays; the global and Ditto models are not trained.
    AutoHead,
}

impl Personalization {
    /// Every mode, in declaration order.
    pub const ALL: [Personalization; 6] = [
        Personalization::None,
        Personalization::FineTune,
        Personalization::Head,
        Personalization::Ditto,
        Personalization::Auto,
        Personalization::AutoHead,
    ];

    /// The snake-case name.
    pub fn name(self) -> &'static str {
        match self {
            Personalization::None => "none",
            Personalization::FineTune => "fine_tune",
            Personalization::Head => "head",
            Personalization::Ditto => "ditto",
            Personalization::Auto => "auto",
            Personalization::AutoHead => "auto_head",
        }
    }

    /// True for the modes that choose each fleet's model on held-out validation cells
    /// (`auto`, `auto_head`).
    pub fn chooses(self) -> bool {
        matches!(self, Personalization::Auto | Personalization::AutoHead)
    }

    /// True for the modes whose fleets keep their head home (`head`, `auto_head`): only the
    /// encoders are federated.
    pub fn keeps_head_home(self) -> bool {
        matches!(self, Personalization::Head | Personalization::AutoHead)
    }
}

/// Which label transform the shared weights are trained and read with (Rust `label_scope`,
/// Python `label_scope=`, Flower run config `label-scope`).
///
/// BatLiNet predicts a z-scored log cycle life. With `shared`, every fleet z-scores with the
/// federation's pooled statistics, so the global model must also learn each fleet's offset
/// (its climate and usage shift every life) from curves that may not show it. With `fleet`,
/// each fleet z-scores its labels with its own mean and spread: the shared weights learn how
/// a cell's life departs from its fleet's typical life, which every fleet can teach, and a
/// fleet reads the model with its own statistics (they stay home, nothing is summed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelScope {
    /// One transform from every fleet's label statistics (securely summed when configured).
    #[default]
    Shared,
    /// Each fleet's own transform, from its own training labels.
    Fleet,
}

impl LabelScope {
    /// Every scope, in declaration order.
    pub const ALL: [LabelScope; 2] = [LabelScope::Shared, LabelScope::Fleet];

    /// The snake-case name.
    pub fn name(self) -> &'static str {
        match self {
            LabelScope::Shared => "shared",
            LabelScope::Fleet => "fleet",
        }
    }
}

/// Genome-clustered aggregation: fleets whose genome summaries are closer than `threshold`
/// share a group model; a global model is kept beside the group models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Average-linkage merge threshold on [`FleetSummary`](super::FleetSummary) distances
    /// (default 0.5).
    pub threshold: f64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig { threshold: 0.5 }
    }
}

/// How a federated run is conducted. In JSON every key may be left out (its default) and an
/// unknown key is an error (a misspelt or renamed setting must not run with its default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FederationConfig {
    /// Rounds (default 10).
    pub rounds: usize,
    /// Fleets sampled per round; `None` = all (default).
    pub clients_per_round: Option<usize>,
    /// Local epochs per round (default 3).
    pub local_epochs: usize,
    /// Aggregation rule (default FedProx).
    pub strategy: Strategy,
    /// FedProx proximal weight (default 0.01; used when the strategy is FedProx, see
    /// [`FederationConfig::local_proximal_mu`]). Configs that say `mu` load too.
    #[serde(alias = "mu")]
    pub proximal_mu: f64,
    /// Server optimizer settings (FedAdam / FedYogi / FedAdagrad).
    pub server_optimizer: FedOptConfig,
    /// Trimmed-mean fraction (default [`DEFAULT_TRIMMED_BETA`], 0.2).
    pub trimmed_beta: f64,
    /// Secure aggregation of the deltas and of the label statistics (default off).
    pub secure_aggregation: Option<SecureAggregation>,
    /// Differential privacy of the deltas (default off).
    pub dp: Option<DpConfig>,
    /// Genome-clustered aggregation (default off).
    pub clustering: Option<ClusterConfig>,
    /// Reject updates whose delta norm exceeds this (default: no bound).
    pub max_delta_norm: Option<f64>,
    /// Seed of client sampling, local training, masks and (when the DP config has no seed of
    /// its own) nothing else (default 0).
    pub seed: u64,
    /// References per test cell at evaluation, drawn from the fleet's own cells (default 16).
    pub inference_references: usize,
    /// How each fleet personalizes (default [`Personalization::None`]).
    pub personalization: Personalization,
    /// Ditto's pull toward the global model (default 0.1).
    pub ditto_lambda: f64,
    /// Epochs of a fleet's own fine-tuning (default: `local_epochs`).
    pub personal_epochs: Option<usize>,
    /// Share of each fleet's training cells held out to choose its model with `auto` and
    /// `auto_head`, and to calibrate its intervals with `calibration_holdout` (default 0.25).
    pub validation_fraction: f64,
    /// Hold out `validation_fraction` of each fleet's training cells in every personalization
    /// mode (default false; `auto` and `auto_head` always do): no weight the fleet trains or
    /// federates sees them (they still count in the shared label and input statistics), and
    /// they calibrate the intervals of the model it uses
    /// ([`Simulation::calibrate_fleets`](super::Simulation::calibrate_fleets)): intervals for
    /// `none`, `fine_tune`, `head` and `ditto`, at the price of training on fewer cells.
    pub calibration_holdout: bool,
    /// With `auto` and `auto_head`: how clearly a shared candidate's validation errors must lie
    /// below the fleet's own model's for it to be chosen, the normal quantile of a one-sided paired
    /// t-test's level (on 4 validation cells 3.3 standard errors at the default
    /// [`DEFAULT_CHOICE_MARGIN`], 2; 0: the least mean error; `federation::choice`). It replaced
    /// `auto_margin`, a relative RMSE gain of 0.1: a JSON config with that key is refused, as by
    /// the Flower server and nodes (`auto-margin`).
    pub choice_margin: f64,
    /// Which label transform the shared weights use (default [`LabelScope::Shared`]).
    pub label_scope: LabelScope,
    /// Record-level DP-SGD of every fleet's local training, per cell (default off): the
    /// target ε covers the whole run. Needs public cells (`Simulation::with_public_cells`).
    pub record_privacy: Option<DpSgdConfig>,
}

impl Default for FederationConfig {
    fn default() -> Self {
        FederationConfig {
            rounds: 10,
            clients_per_round: None,
            local_epochs: 3,
            strategy: Strategy::FedProx,
            proximal_mu: 0.01,
            server_optimizer: FedOptConfig::default(),
            trimmed_beta: DEFAULT_TRIMMED_BETA,
            secure_aggregation: None,
            dp: None,
            clustering: None,
            max_delta_norm: None,
            seed: 0,
            inference_references: 16,
            personalization: Personalization::None,
            ditto_lambda: 0.1,
            personal_epochs: None,
            validation_fraction: 0.25,
            calibration_holdout: false,
            choice_margin: DEFAULT_CHOICE_MARGIN,
            label_scope: LabelScope::Shared,
            record_privacy: None,
        }
    }
}

impl FederationConfig {
    /// True when each fleet holds out `validation_fraction` of its training cells: to choose its
    /// model (`auto`, `auto_head`) or to calibrate intervals (`calibration_holdout`).
    pub fn holds_out_validation_cells(&self) -> bool {
        self.personalization.chooses() || self.calibration_holdout
    }

    /// True when each fleet keeps the model it uses in its state, beside the shared weights:
    /// personalization other than `none`, or `calibration_holdout` (its held-out cells
    /// calibrate that model).
    pub fn keeps_fleet_models(&self) -> bool {
        self.personalization != Personalization::None || self.calibration_holdout
    }

    /// Check the settings a fleet trains and chooses its model with (what a node of a
    /// distributed federation can check without knowing the others: local training,
    /// personalization, the choice rule).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first setting out of range.
    pub fn validate_fleet(&self) -> Result<()> {
        if self.local_epochs == 0 {
            return Err(Error::config("local_epochs", "must be >= 1"));
        }
        if !(self.proximal_mu.is_finite() && self.proximal_mu >= 0.0) {
            return Err(Error::config("proximal_mu", "must be >= 0"));
        }
        if self.inference_references == 0 {
            return Err(Error::config("inference_references", "must be >= 1"));
        }
        if !(self.ditto_lambda.is_finite() && self.ditto_lambda >= 0.0) {
            return Err(Error::config("ditto_lambda", "must be finite and >= 0"));
        }
        if self.personal_epochs == Some(0) {
            return Err(Error::config("personal_epochs", "must be >= 1"));
        }
        if !(self.validation_fraction > 0.0 && self.validation_fraction <= 0.5) {
            return Err(Error::config("validation_fraction", "must be in (0, 0.5]"));
        }
        if !(self.choice_margin.is_finite() && self.choice_margin >= 0.0) {
            return Err(Error::config("choice_margin", "must be finite and >= 0"));
        }
        Ok(())
    }

    /// Check the settings against each other and against the number of fleets (and
    /// [`validate_fleet`](Self::validate_fleet)).
    pub fn validate(&self, fleets: usize) -> Result<()> {
        if self.rounds == 0 {
            return Err(Error::config("rounds", "must be >= 1"));
        }
        self.validate_fleet()?;
        let m = self.clients_per_round.unwrap_or(fleets);
        if m == 0 || m > fleets {
            return Err(Error::config(
                "clients_per_round",
                format!("must be in 1..={fleets}, got {m}"),
            ));
        }
        if self.secure_aggregation.is_some() {
            if !self.strategy.needs_only_the_sum() {
                return Err(Error::config(
                    "strategy",
                    "median and trimmed mean need individual updates: not with secure aggregation",
                ));
            }
            if m < 3 {
                return Err(Error::config(
                    "secure_aggregation",
                    "needs at least 3 clients per round",
                ));
            }
            if self.clustering.is_some() {
                return Err(Error::config(
                    "clustering",
                    "clustered aggregation with secure aggregation is not supported",
                ));
            }
        }
        if let Some(dp) = &self.dp {
            dp.validate()?;
            crate::dp::check_mode(dp.mode, self.secure_aggregation.is_some())?;
        }
        if let Some(dp) = &self.record_privacy {
            dp.validate()?;
            if self.clustering.is_some() {
                return Err(Error::config(
                    "clustering",
                    "genome clustering groups fleets by their private cells' fingerprints, \
                     outside the record-level guarantee",
                ));
            }
            if self.label_scope == LabelScope::Fleet {
                return Err(Error::config(
                    "label_scope",
                    "record-level DP-SGD reads the shared weights with the public cells' \
                     label transform: use `shared`",
                ));
            }
        }
        Ok(())
    }

    /// The proximal weight clients use this run (0 unless the strategy is FedProx).
    pub fn local_proximal_mu(&self) -> f64 {
        if self.strategy == Strategy::FedProx {
            self.proximal_mu
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{
        Aggregator, FedAvg, FedMedian, FedOpt, FedProx, FedTrimmedAvg, ServerOptimizer,
    };
    use crate::dp::DpMode;

    #[test]
    fn defaults_come_from_the_shared_constants() {
        let config = FederationConfig::default();
        assert_eq!(config.trimmed_beta, DEFAULT_TRIMMED_BETA);
        assert_eq!(config.strategy, Strategy::FedProx);
        assert_eq!(config.local_proximal_mu(), config.proximal_mu);
        let avg = FederationConfig {
            strategy: Strategy::FedAvg,
            ..config
        };
        assert_eq!(avg.local_proximal_mu(), 0.0);
    }

    /// Configs and checkpoints written before the rename say `mu`.
    #[test]
    fn old_key_mu_still_loads() {
        let old: FederationConfig =
            serde_json::from_str(r#"{"mu": 0.5, "strategy": "fed_avg"}"#).unwrap();
        assert_eq!(old.proximal_mu, 0.5);
        assert_eq!(old.strategy, Strategy::FedAvg);
        let json = serde_json::to_value(&old).unwrap();
        assert_eq!(json["proximal_mu"], 0.5);
        assert!(json.get("mu").is_none());
        let new: FederationConfig = serde_json::from_value(json).unwrap();
        assert_eq!(new, old);
    }

    /// A renamed or misspelt key is refused, not run with its default.
    #[test]
    fn unknown_keys_are_refused() {
        for json in [
            r#"{"auto_margin": 0.1}"#,
            r#"{"personalisation": "auto"}"#,
            r#"{"dp": {"noise_multipler": 1.0}}"#,
            r#"{"record_privacy": {"epsilon": 8.0, "delta_": 1e-5}}"#,
            r#"{"server_optimizer": {"learning_rate": 0.1}}"#,
            r#"{"secure_aggregation": {"neighbors": 2}}"#,
            r#"{"clustering": {"treshold": 0.5}}"#,
        ] {
            let err = serde_json::from_str::<FederationConfig>(json).unwrap_err();
            assert!(err.to_string().contains("unknown field"), "{err}");
        }
        let ok: FederationConfig =
            serde_json::from_str(r#"{"personalization": "auto_head"}"#).unwrap();
        assert_eq!(ok.personalization, Personalization::AutoHead);
    }

    /// One name per rule: the serde name, `Strategy::name` and the aggregator's `name`.
    #[test]
    fn strategy_names_are_the_aggregator_names() {
        let opt = |o| FedOpt::new(o, FedOptConfig::default()).unwrap();
        let aggregators: [Box<dyn Aggregator>; 7] = [
            Box::new(FedAvg::default()),
            Box::new(FedProx::new(0.01).unwrap()),
            Box::new(opt(ServerOptimizer::Adam)),
            Box::new(opt(ServerOptimizer::Yogi)),
            Box::new(opt(ServerOptimizer::Adagrad)),
            Box::new(FedMedian::default()),
            Box::new(FedTrimmedAvg::new(DEFAULT_TRIMMED_BETA).unwrap()),
        ];
        for (s, agg) in Strategy::ALL.into_iter().zip(aggregators) {
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
            assert_eq!(agg.name(), s.name());
        }
        // (the other enums' names are their serde names too, and ALL lists each once)
        for p in Personalization::ALL {
            assert_eq!(serde_json::to_value(p).unwrap(), p.name());
        }
        for l in LabelScope::ALL {
            assert_eq!(serde_json::to_value(l).unwrap(), l.name());
        }
        let names: std::collections::BTreeSet<_> =
            Personalization::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(names.len(), Personalization::ALL.len());
        let need_each_update: Vec<_> = Strategy::ALL
            .into_iter()
            .filter(|s| !s.needs_only_the_sum())
            .collect();
        assert_eq!(
            need_each_update,
            [Strategy::FedMedian, Strategy::FedTrimmedAvg]
        );
    }

    /// Security issue: distributed DP without secure aggregation was accepted and accounted
    /// as if the server saw only the sum, while it saw each under-noised update.
    #[test]
    fn distributed_dp_needs_secure_aggregation() {
        let dp = DpConfig::new(1.0, 1.0).with_mode(DpMode::Distributed);
        let plain = FederationConfig {
            dp: Some(dp.clone()),
            ..FederationConfig::default()
        };
        assert!(matches!(
            plain.validate(4),
            Err(Error::InvalidConfig { field, .. }) if field == "dp.mode"
        ));
        let secure = FederationConfig {
            secure_aggregation: Some(SecureAggregation::default()),
            ..plain
        };
        assert!(secure.validate(4).is_ok());
        let local = FederationConfig {
            dp: Some(dp.with_mode(DpMode::Local)),
            ..FederationConfig::default()
        };
        assert!(local.validate(4).is_ok());
    }
}
