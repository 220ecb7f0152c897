//! `eval_matr`'s command line.

use std::path::PathBuf;

use battery_fl_core::model::{
    InterFeatures, LrSchedule, ReferenceSelection, DEFAULT_GATED_MEMBERS,
};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::error::ErrorKind;
use clap::{ArgAction, CommandFactory, Parser, ValueEnum};

use crate::cli::{serde_enum, trimmed};

/// Real-data evaluation on MATR (Severson et al. 2019): the variance baseline, the linear
/// model, BatLiNet and the single-branch CNN, trained on the `train` split and evaluated on
/// `primary_test` (without the known 148-cycle outlier) and, when given, on every cell of
/// `--test-data`.
#[derive(Debug, Parser)]
#[command(
    name = "eval_matr",
    args_override_self = true,
    allow_negative_numbers = true
)]
pub struct Args {
    /// The MATR folder (an `index.json` with `train` / `primary_test` splits).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Another folder whose every cell is also scored (its own splits, `train` and `primary_test` as `test_data`).
    #[arg(long, value_name = "DIR2")]
    pub test_data: Option<PathBuf>,
    /// Seeds per network (model seeds first-seed, first-seed + 1, ...).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub seeds: u64,
    /// The first model seed.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub first_seed: u64,
    /// Training epochs of the networks.
    #[arg(long, value_name = "E", default_value_t = 600)]
    pub epochs: usize,
    /// Points per cycle of the featurizer (interpolation dimension).
    #[arg(long, value_name = "D", default_value_t = 200)]
    pub dim: usize,
    /// Carve a validation split out of `train` (every fourth cell from `--fold`) and report on it instead of the test splits.
    #[arg(long)]
    pub validate: bool,
    /// How BatLiNet's references are chosen (`batlinet`; the other one is scored as `batlinet_genome` / `batlinet_random`).
    #[arg(
        long,
        value_name = "random|genome",
        default_value = "random",
        value_parser = PossibleValuesParser::new(["random", "genome"]).try_map(|s| serde_enum::<ReferenceSelection>(&s))
    )]
    pub selection: ReferenceSelection,
    /// Learning rate of the networks.
    #[arg(long, value_name = "LR", default_value_t = 1e-3)]
    pub lr: f64,
    /// Training batch size (cells).
    #[arg(long, value_name = "B", default_value_t = 16)]
    pub batch: usize,
    /// Networks to train, comma-separated: gated (the default, chosen by leave-one-batch-out and leave-one-fleet-out), batlinet, cnn, hybrid (linear and variance always run; e.g. `none` for neither network).
    #[arg(
        long,
        value_name = "M,...",
        value_delimiter = ',',
        default_value = "gated,cnn",
        value_parser = trimmed::<String>,
        action = ArgAction::Set
    )]
    pub models: Vec<String>,
    /// Convolution channels of the networks.
    #[arg(long, value_name = "C", default_value_t = 32)]
    pub conv: usize,
    /// Networks per half of the gated model: its seed S trains model seeds S·M, …, S·M + M − 1
    /// and averages them in ln(life), so the seeds of a run are disjoint ensembles.
    #[arg(long, value_name = "M", default_value_t = DEFAULT_GATED_MEMBERS)]
    pub members: usize,
    /// Also print each BatLiNet test cell's per-branch predictions (with `--validate` also on the `fit` cells).
    #[arg(long)]
    pub branches: bool,
    /// Clean every target-minus-reference difference before branch B, as the published code does.
    #[arg(long)]
    pub clean_pairs: bool,
    /// Inference references per target (with `--selection genome` training also draws from each cell's N genome-nearest cells).
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub k: usize,
    /// Learning-rate schedule.
    #[arg(
        long,
        value_name = "constant|cosine",
        default_value = "constant",
        value_parser = PossibleValuesParser::new(["constant", "cosine"]).try_map(|s| serde_enum::<LrSchedule>(&s))
    )]
    pub schedule: LrSchedule,
    /// Fraction of final epochs whose weights are averaged.
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    pub averaging: f64,
    /// With `--validate`: the validation split is cells K, K + 4, ... of `train` (folds 0-3 are a 4-fold cross-validation).
    #[arg(long, value_name = "K", default_value_t = 3)]
    pub fold: usize,
    /// References per training target.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub train_refs: usize,
    /// What branch B differences: raw (the published route) or cycle_difference.
    #[arg(
        long,
        value_name = "raw|cycle_difference",
        default_value = "cycle_difference",
        value_parser = PossibleValuesParser::new(["raw", "cycle_difference"]).try_map(|s| serde_enum::<InterFeatures>(&s))
    )]
    pub inter: InterFeatures,
    /// What the models train on and are scored on.
    #[arg(long, value_enum, value_name = "split|lobo", default_value = "split")]
    pub protocol: Protocol,
    /// Conformal intervals for BatLiNet: calibrate by cross-fitting N fold models on the training cells (0: no intervals).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub calibration_folds: usize,
    /// With --calibration-folds: CV+ intervals (fold models kept, each fold's errors around its
    /// own predictions) instead of cross-fitted scores around the final model's prediction.
    #[arg(long)]
    pub cv_plus: bool,
    /// libtorch intra-op threads (default: libtorch's choice).
    #[arg(long, value_name = "T")]
    pub threads: Option<i32>,
    /// Append every test cell's prediction by every model to FILE as JSON lines (`model`,
    /// `split`, `seed`, `cell`, `life`, `pred`, the training lives' `train_min` / `train_max`;
    /// the linear lines also `ood`, its out-of-distribution flag, and its 90 % and widest
    /// intervals `lower_90`, `upper_90`, `lower_max`, `upper_max`; on `gated` lines `seed` is
    /// the ensemble S of model seeds S·M to S·M + M − 1).
    #[arg(long, value_name = "FILE")]
    pub cells_out: Option<PathBuf>,
}

/// What the models train on and are scored on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// Train on `train`, score `primary_test` (and `--test-data`).
    Split,
    /// Leave one batch out: for each batch, train on all other batches and score it.
    Lobo,
}

/// The arguments, refusing combinations the protocol cannot honour.
pub fn parse() -> Args {
    let args = Args::parse();
    if args.protocol == Protocol::Lobo && (args.validate || args.test_data.is_some()) {
        Args::command()
            .error(
                ErrorKind::ArgumentConflict,
                "--protocol lobo takes neither --validate nor --test-data",
            )
            .exit();
    }
    let batlinet = args.models.iter().any(|m| m == "batlinet");
    if !batlinet && (args.calibration_folds > 0 || args.cv_plus || args.branches) {
        Args::command()
            .error(
                ErrorKind::ArgumentConflict,
                "--calibration-folds, --cv-plus and --branches report on BatLiNet: add --models batlinet",
            )
            .exit();
    }
    if let Some(n) = args.threads {
        tch::set_num_threads(n);
    }
    args
}
