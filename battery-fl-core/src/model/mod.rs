//! Lifetime models and what they exchange.
//!
//! [`ModelParams`] (the exchange format), [`Metrics`], the [`VarianceModel`] baseline,
//! [`Dataset`] preparation, reference selection and persistence need no libtorch; the
//! BatLiNet network itself (`BatLiNet`, training, transfer) lives behind the `tch` cargo
//! feature.

mod config;
mod conformal;
#[cfg(feature = "tch")]
mod cross_conformal;
mod dataset;
mod labels;
mod linear;
mod metrics;
mod params;
mod persist;
mod preset;
mod reference;
mod variance;

#[cfg(feature = "tch")]
mod audit;
#[cfg(feature = "tch")]
mod batlinet;
#[cfg(feature = "tch")]
mod bytes;
#[cfg(feature = "tch")]
mod dpsgd;
mod dpsgd_config;
#[cfg(feature = "tch")]
mod gated;
#[cfg(feature = "tch")]
mod hybrid;
#[cfg(feature = "tch")]
mod intervals;
#[cfg(feature = "tch")]
mod net;
#[cfg(feature = "tch")]
mod optim;
#[cfg(feature = "tch")]
mod pairs;
#[cfg(feature = "tch")]
mod train;
#[cfg(feature = "tch")]
mod transfer;

pub use config::{
    BatLiNetConfig, DeviceChoice, Geometry, InterFeatures, LrSchedule, ReferenceSelection,
};
pub use conformal::{
    conformal_quantile, robust_spread, IntervalSummary, DEFAULT_COVERAGE, MAD_FACTOR,
};
pub use dataset::{Dataset, InputScales, InputStats};
pub use dpsgd_config::{DpSgdConfig, DpSgdReport};
pub use labels::{
    grouped_label_sums, label_group, label_sums, log_prediction_bounds, LabelGrouping,
    LabelMoments, LabelSums, LabelTransform, GROUP_PRIOR_CELLS, LABEL_GROUPS,
    PREDICTION_BOUND_MIN_FACTOR, PREDICTION_BOUND_SIGMAS,
};
pub use linear::{
    available_sets, loo_error, loo_predictions, loo_squared_errors, select_linear,
    statistics_sensitivity, Calibration, FeatureSet, LinearConfig, LinearModel, LinearPrediction,
    LinearRow, LinearStatistics, PublicRanges, Standardization, DEFAULT_CHOICE_MARGIN,
    LINEAR_COLUMNS, LINEAR_STATISTICS_LEN,
};
pub use metrics::Metrics;
pub use params::{ModelParams, Param};
#[cfg(feature = "tch")]
pub(crate) use persist::{check_format, read_json, write_json};
pub use persist::{
    load_model_dir, params_from_safetensors, params_to_safetensors, save_model_dir, write_atomic,
    ModelDescription, CONFIG_FILE, FORMAT, WEIGHTS_FILE,
};
pub use preset::BatLiNetPreset;
pub use reference::select_references;
pub use variance::{VarianceConfig, VarianceModel};

#[cfg(feature = "tch")]
pub use audit::{likelihood_ratio_scores, membership_auc, membership_lira_auc, membership_scores};
#[cfg(feature = "tch")]
pub use batlinet::{BatLiNet, BranchPredictions};
#[cfg(feature = "tch")]
pub use cross_conformal::CrossConformalIntervals;
#[cfg(feature = "tch")]
pub use gated::{GatedModel, GatedPrediction, DEFAULT_GATED_MEMBERS};
#[cfg(feature = "tch")]
pub use hybrid::HybridModel;
#[cfg(feature = "tch")]
pub use intervals::{
    IntervalCalibration, Prediction, ReferenceDraw, DEFAULT_CALIBRATION_FOLDS, MONDRIAN_MIN_CELLS,
};
#[cfg(feature = "tch")]
pub use train::{TrainOptions, TrainReport, Trainable};
#[cfg(feature = "tch")]
pub use transfer::{TransferRow, TransferStudy};
