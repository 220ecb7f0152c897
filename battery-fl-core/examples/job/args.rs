//! The main job's command line.

use std::path::PathBuf;

use anyhow::Result;
use battery_fl_core::data::synthetic::{PUBLIC_CELLS_PER_FLEET, PUBLIC_FLEETS};
use battery_fl_core::data::FleetGrouping;
use battery_fl_core::federation::{LabelScope, Personalization, DEFAULT_CHOICE_MARGIN};
use battery_fl_core::model::{DpSgdConfig, LabelGrouping, ReferenceSelection};
use clap::{ArgAction, Parser, ValueEnum};

use super::super::cli::serde_enum;

/// The main job: a federated multi-fleet run, compared with local-only and centralized
/// training, each fleet ending with a model of its own.
#[derive(Debug, Parser)]
#[command(args_override_self = true, allow_negative_numbers = true)]
pub struct Args {
    /// A folder of cells with an `index.json` (e.g. MATR; default: the built-in synthetic
    /// fleets); fleets and their test cells as `--fleets-by` and `data::index_fleets` say.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// How `--data` cells are grouped into fleets: protocol (charging protocols, `--fleets`
    /// groups), fleet (each cell's `fleet` key in the index) or batch (`batch_date`).
    #[arg(
        long = "fleets-by",
        value_name = "protocol|fleet|batch",
        default_value = "protocol",
        value_parser = serde_enum::<FleetGrouping>,
        requires = "data"
    )]
    pub fleets_by: FleetGrouping,
    /// With `--fleets-by protocol`: fleets formed from `--data` (protocols sorted by first-step
    /// C-rate, split into N groups; default `data::DEFAULT_PROTOCOL_GROUPS`, 4). The other
    /// groupings take their fleets from the index and refuse it.
    #[arg(long, value_name = "N", requires = "data")]
    pub fleets: Option<usize>,
    /// Federated rounds of `--model batlinet` (default, or 0: 30 with `--data`, 15 synthetic).
    #[arg(long, value_name = "R")]
    pub rounds: Option<usize>,
    /// Output folder (plots, linear_federation.json or the BatLiNet model and checkpoint).
    #[arg(long, value_name = "DIR", default_value = "out/federated")]
    pub out: PathBuf,
    /// Turn secure aggregation off (the linear sums and the BatLiNet rounds).
    #[arg(long = "no-secagg", action = ArgAction::SetFalse)]
    pub secagg: bool,
    /// BatLiNet rounds without differential privacy.
    #[arg(long = "no-dp", action = ArgAction::SetFalse)]
    pub dp: bool,
    /// libtorch intra-op threads (default: libtorch's choice).
    #[arg(long, value_name = "N")]
    pub threads: Option<i32>,
    /// How each fleet turns the BatLiNet federation into its own model: none, fine_tune, head,
    /// ditto, auto or auto_head (auto over head's federation: each fleet keeps its own model unless
    /// its own-head model validates clearly better).
    #[arg(
        long,
        value_name = "none|fine_tune|head|ditto|auto|auto_head",
        default_value = "auto",
        value_parser = serde_enum::<Personalization>
    )]
    pub personalization: Personalization,
    /// Hold out a quarter of each fleet's training cells in every personalization mode, to
    /// calibrate the 90 % intervals of the model it uses (`auto` and `auto_head` always do).
    #[arg(long)]
    pub calibration_holdout: bool,
    /// Label transform of BatLiNet's shared weights: shared (pooled statistics) or fleet (each
    /// fleet's own).
    #[arg(
        long,
        value_name = "shared|fleet",
        default_value = "shared",
        value_parser = serde_enum::<LabelScope>
    )]
    pub label_scope: LabelScope,
    /// How BatLiNet normalizes cycle lives: pooled (over all cells) or cathode (per chemistry).
    #[arg(
        long,
        value_name = "pooled|cathode",
        default_value = "pooled",
        value_parser = serde_enum::<LabelGrouping>
    )]
    pub label_grouping: LabelGrouping,
    /// How BatLiNet's branch-B references are chosen: random (as published) or genome (nearest
    /// fingerprints).
    #[arg(
        long,
        value_name = "random|genome",
        default_value = "random",
        value_parser = serde_enum::<ReferenceSelection>
    )]
    pub selection: ReferenceSelection,
    /// Seeds the model (S) and the federation (7 + S): sampling, local training, masks and noise.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Which model family the headline rows and the JSON line report.
    #[arg(
        long = "model",
        value_enum,
        value_name = "linear|batlinet",
        default_value = "linear"
    )]
    pub recipe: Recipe,
    /// Privacy unit: none, or cell (record-level DP of each cell's record; the linear recipe
    /// noises the summed statistics, BatLiNet trains with per-cell DP-SGD on public
    /// references and statistics). `--target-epsilon` alone implies cell.
    #[arg(long, value_enum, value_name = "none|cell", default_value = "none")]
    pub privacy: PrivacyUnit,
    /// Whether `--privacy` was given (to refuse `--privacy none --target-epsilon E`).
    #[arg(skip)]
    pub privacy_given: bool,
    /// Target ε per cell over the whole run at δ = 1e-5 (with `--privacy cell`; default: the
    /// core's DP-SGD default, 8). `--epsilon` is the same flag.
    #[arg(long, visible_alias = "epsilon", value_name = "E")]
    pub target_epsilon: Option<f64>,
    /// Seed of every noise of the run (the fleet-level DP of the BatLiNet rounds, record-level
    /// noise and which cells each DP-SGD step samples), for a reproducible run; default: keyed
    /// from the OS, as a deployment must (a seed anyone knows lets them subtract the noise).
    #[arg(long, value_name = "S")]
    pub noise_seed: Option<u64>,
    /// With `--privacy cell --model batlinet`: start the first global model from random
    /// weights instead of weights trained on the public cells (`DpSgdConfig::public_pretraining`).
    #[arg(long)]
    pub no_public_pretraining: bool,
    /// With `--privacy cell --model batlinet`: factor on the learning rate of the private
    /// steps (`DpSgdConfig::learning_rate_scale`; default: the core's, 3).
    #[arg(long, value_name = "F")]
    pub learning_rate_scale: Option<f64>,
    /// With `--privacy cell --model batlinet`: public fleets (of the library's public seed;
    /// their profiles are the first K of the five fleets'; default: the core's, 5).
    #[arg(long, value_name = "K", default_value_t = PUBLIC_FLEETS)]
    pub public_fleets: usize,
    /// Cells per public fleet (see `--public-fleets`; default: the core's, 12).
    #[arg(long, value_name = "N", default_value_t = PUBLIC_CELLS_PER_FLEET)]
    pub public_cells: usize,
    /// How clearly a fleet's own linear fit must validate below the global model for the fleet to
    /// keep it (`LinearConfig::choice_margin`), and with `--model batlinet --personalization
    /// auto|auto_head` a shared model below the fleet's own (`FederationConfig::choice_margin`):
    /// the normal quantile of a one-sided paired t-test's level (about that many standard errors on
    /// many cells, more on few; `federation::choice`); 0: the least error.
    #[arg(long, value_name = "K", default_value_t = DEFAULT_CHOICE_MARGIN)]
    pub choice_margin: f64,
    /// Cells per synthetic fleet (two thirds train, the rest test).
    #[arg(long, value_name = "N", default_value_t = 24)]
    pub cells_per_fleet: usize,
    /// Seed of the synthetic fleets (default 42, the benchmark's; choose settings on another
    /// draw of the same five profiles, then measure on 42).
    #[arg(long, value_name = "S", default_value_t = 42, conflicts_with = "data")]
    pub data_seed: u64,
}

/// Which model family the headline rows and the JSON line report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Recipe {
    /// Early-life features, exact federated ridge fit, leave-one-out personalization (seconds).
    Linear,
    /// BatLiNet trained over federated rounds (minutes); the linear rows are printed too.
    Batlinet,
}

/// What one unit of privacy protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PrivacyUnit {
    /// No record-level privacy (SecAgg and fleet-level DP still apply as configured).
    None,
    /// One cell's record.
    Cell,
}

impl Args {
    /// The target ε per cell, when record-level privacy is on.
    pub fn cell_epsilon(&self) -> Result<Option<f64>> {
        Ok(
            match (self.privacy_given, self.privacy, self.target_epsilon) {
                (true, PrivacyUnit::None, Some(_)) => {
                    anyhow::bail!("--privacy none and --target-epsilon contradict each other")
                }
                (_, _, Some(e)) => Some(e),
                (_, PrivacyUnit::Cell, None) => DpSgdConfig::default().epsilon,
                (_, PrivacyUnit::None, None) => None,
            },
        )
    }
}
