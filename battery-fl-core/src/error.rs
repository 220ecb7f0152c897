//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in `battery-fl-core`.
///
/// Variants carry the structured facts a caller needs to act on the failure (which cell,
/// which cycle, which field). Bindings map every variant exhaustively.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file was not valid JSON or did not match the cell schema.
    #[error("cannot parse {path}: {reason}")]
    Parse {
        /// The file involved (empty for in-memory input).
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// A cell's data break a physical or structural rule.
    #[error("invalid data in cell {cell_id}{}: field `{field}`: {reason}", cycle.map(|c| format!(", cycle {c}")).unwrap_or_default())]
    InvalidData {
        /// The cell.
        cell_id: String,
        /// The cycle number (as recorded in the source), if the problem is per cycle.
        cycle: Option<u32>,
        /// The field at fault (`voltage_v`, `nominal_capacity_ah`, ...).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A configuration value is out of range or inconsistent.
    #[error("invalid config `{field}`: {reason}")]
    InvalidConfig {
        /// The offending field.
        field: String,
        /// Why it is rejected.
        reason: String,
    },
    /// An array had the wrong length or shape.
    #[error("shape mismatch for {what}: expected {expected:?}, got {got:?}")]
    Shape {
        /// What was being checked.
        what: String,
        /// The expected shape.
        expected: Vec<usize>,
        /// The shape received.
        got: Vec<usize>,
    },
    /// An operation needs more data than it was given.
    #[error("not enough data for {what}: needed {needed}, got {got}")]
    NotEnoughData {
        /// What was being computed.
        what: String,
        /// How many items were needed.
        needed: usize,
        /// How many were available.
        got: usize,
    },
    /// The model failed (libtorch error, incompatible weights, untrained model, ...).
    #[error("model error: {reason}")]
    Model {
        /// What went wrong.
        reason: String,
    },
    /// A client update was rejected before it touched the aggregate.
    #[error("update from client {client_id} rejected: {reason}")]
    RejectedUpdate {
        /// The client.
        client_id: String,
        /// Why.
        reason: UpdateRejection,
    },
    /// Aggregation could not produce a result.
    #[error("aggregation failed: {reason}")]
    Aggregation {
        /// What went wrong.
        reason: String,
    },
    /// A differential-privacy mechanism or accountant was misused.
    #[error("privacy error: {reason}")]
    Privacy {
        /// What went wrong.
        reason: String,
    },
    /// Spending more privacy would exceed the budget.
    #[error("privacy budget exhausted: epsilon would reach {epsilon:.4} > {max_epsilon}")]
    BudgetExhausted {
        /// Epsilon after the refused step.
        epsilon: f64,
        /// The budget.
        max_epsilon: f64,
    },
    /// A secure-aggregation protocol step failed (bad message, tampered ciphertext, ...).
    #[error("secure aggregation failed at stage {stage}: {reason}")]
    SecAgg {
        /// Protocol stage (`advertise_keys`, `share_keys`, `masked_input`, `unmask`, ...).
        stage: String,
        /// What went wrong.
        reason: String,
    },
    /// Too few clients (or live neighbours) remain to finish a secure-aggregation round; no
    /// partial result is released.
    #[error("secure aggregation below threshold at stage {stage}: needed {needed}, got {got}")]
    BelowThreshold {
        /// Protocol stage.
        stage: String,
        /// The threshold.
        needed: usize,
        /// What remained.
        got: usize,
    },
}

/// Why an update was refused by an aggregator.
#[derive(Debug, Clone, PartialEq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum UpdateRejection {
    /// Names or shapes differ from the global model.
    #[error("shape mismatch: {detail}")]
    ShapeMismatch {
        /// Which tensor and how.
        detail: String,
    },
    /// A value is NaN or infinite.
    #[error("non-finite value at flat index {index}")]
    NonFinite {
        /// Flat index of the first bad value.
        index: usize,
    },
    /// The update's L2 norm exceeds the configured bound.
    #[error("L2 norm {norm:.4} exceeds bound {bound}")]
    NormTooLarge {
        /// The norm.
        norm: f64,
        /// The bound.
        bound: f64,
    },
    /// The sample count is zero or the weight is not a positive finite number.
    #[error("invalid weight {weight}")]
    InvalidWeight {
        /// The weight given.
        weight: f64,
    },
}

/// The kind of an [`Error`]: one per variant, without the details.
///
/// Unlike [`Error`] this enum is exhaustive, so a binding that maps kinds with a `match`
/// (C status codes, Python exception classes) needs no wildcard arm and stops compiling when
/// a variant is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// [`Error::Io`].
    Io,
    /// [`Error::Parse`].
    Parse,
    /// [`Error::InvalidData`].
    InvalidData,
    /// [`Error::InvalidConfig`].
    InvalidConfig,
    /// [`Error::Shape`].
    Shape,
    /// [`Error::NotEnoughData`].
    NotEnoughData,
    /// [`Error::Model`].
    Model,
    /// [`Error::RejectedUpdate`].
    RejectedUpdate,
    /// [`Error::Aggregation`].
    Aggregation,
    /// [`Error::Privacy`].
    Privacy,
    /// [`Error::BudgetExhausted`].
    BudgetExhausted,
    /// [`Error::SecAgg`].
    SecAgg,
    /// [`Error::BelowThreshold`].
    BelowThreshold,
}

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The variant, without its details.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } => ErrorKind::Io,
            Error::Parse { .. } => ErrorKind::Parse,
            Error::InvalidData { .. } => ErrorKind::InvalidData,
            Error::InvalidConfig { .. } => ErrorKind::InvalidConfig,
            Error::Shape { .. } => ErrorKind::Shape,
            Error::NotEnoughData { .. } => ErrorKind::NotEnoughData,
            Error::Model { .. } => ErrorKind::Model,
            Error::RejectedUpdate { .. } => ErrorKind::RejectedUpdate,
            Error::Aggregation { .. } => ErrorKind::Aggregation,
            Error::Privacy { .. } => ErrorKind::Privacy,
            Error::BudgetExhausted { .. } => ErrorKind::BudgetExhausted,
            Error::SecAgg { .. } => ErrorKind::SecAgg,
            Error::BelowThreshold { .. } => ErrorKind::BelowThreshold,
        }
    }

    pub(crate) fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidConfig {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
