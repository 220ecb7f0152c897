//! Coordinator state and its atomic checkpoint.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::aggregate::FedOpt;
use crate::dp::{AdaptiveClipState, RdpAccountant};
use crate::error::{Error, Result};
use crate::model::{LabelTransform, ModelParams};

/// What one round did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundRecord {
    /// Round number, from 1.
    pub round: usize,
    /// Fleets whose updates were aggregated.
    pub clients: Vec<String>,
    /// Fleets whose updates were rejected, with the reason.
    pub rejected: Vec<(String, String)>,
    /// RMSE (cycles) over every fleet's test cells.
    pub global_rmse: f64,
    /// RMSE (cycles) per fleet.
    pub fleet_rmse: BTreeMap<String, f64>,
    /// Epsilon spent so far (at the DP config's target delta), when DP is on.
    pub epsilon: Option<f64>,
    /// Clipping norm used this round, when DP is on.
    pub clipping_norm: Option<f64>,
}

/// Everything the coordinator needs to continue a run: checkpointed after every round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoordinatorState {
    /// Rounds completed.
    pub round: usize,
    /// Global weights.
    pub global: ModelParams,
    /// Per-group weights (genome-clustered aggregation), indexed by group.
    pub groups: Vec<ModelParams>,
    /// Group of each fleet (empty without clustering).
    pub fleet_group: Vec<usize>,
    /// Server-optimizer state (FedAdam / FedYogi / FedAdagrad).
    pub server_optimizer: Option<FedOpt>,
    /// Privacy accountant (when DP is on).
    pub accountant: Option<RdpAccountant>,
    /// Adaptive clipping state (when configured).
    pub adaptive_clip: Option<AdaptiveClipState>,
    /// The shared label transform.
    pub labels: LabelTransform,
    /// Every completed round.
    pub history: Vec<RoundRecord>,
}

impl CoordinatorState {
    /// Write the state to `path` atomically: a temporary sibling is written and fsynced, then
    /// renamed over `path`, so a crash leaves either the old or the new checkpoint.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec(self).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        crate::model::write_atomic(path, &bytes)
    }

    /// Read a checkpoint.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }
}
