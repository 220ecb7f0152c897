//! Coordinator state and its atomic checkpoint.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::personalize::FleetState;
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
    /// RMSE (cycles) over every fleet's test cells, each predicted by its own fleet's
    /// personalized model (equal to `global_rmse` without personalization).
    #[serde(default)]
    pub personalized_rmse: f64,
    /// Per fleet: its personalized model's RMSE on its own test cells.
    #[serde(default)]
    pub fleet_personalized_rmse: BTreeMap<String, f64>,
    /// With `auto` and `auto_head` personalization: the model each fleet chose on its
    /// validation cells.
    #[serde(default)]
    pub choices: BTreeMap<String, String>,
    /// With `auto` and `auto_head` personalization: each candidate's RMSE (cycles) on each fleet's
    /// validation cells, the scores the choice was made on (by fleet, then candidate name; a
    /// candidate that could not be scored is left out).
    #[serde(default)]
    pub validation_rmse: BTreeMap<String, BTreeMap<String, f64>>,
    /// With record-level DP-SGD: ε per cell each fleet has spent so far (at the record
    /// privacy's δ).
    #[serde(default)]
    pub fleet_epsilon: BTreeMap<String, f64>,
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
    /// Per fleet: its personal state (personalization). In this in-process simulation the
    /// coordinator holds it for the fleets; in a deployment it stays on each node.
    #[serde(default)]
    pub fleets: Vec<FleetState>,
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

    /// Read a checkpoint and check it is consistent.
    ///
    /// Beyond the JSON schema (and the shape checks every [`ModelParams`] gets when it is
    /// deserialized), the checkpoint must hold finite weights, per-group weights with the
    /// global names and shapes, server-optimizer moments of the global size, fleet groups that
    /// index into `groups`, and a usable label transform.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read; [`Error::Parse`] naming the file and, in its
    /// reason, the offending field, when it is malformed or inconsistent.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let parse = |reason: String| Error::Parse {
            path: path.to_path_buf(),
            reason,
        };
        let state: Self = serde_json::from_slice(&bytes).map_err(|e| parse(e.to_string()))?;
        state.check().map_err(parse)?;
        Ok(state)
    }

    /// The consistency checks of [`CoordinatorState::load`]; the error names the field.
    fn check(&self) -> std::result::Result<(), String> {
        check_finite("global", &self.global)?;
        for (i, g) in self.groups.iter().enumerate() {
            let field = format!("groups[{i}]");
            self.global
                .check_compatible(g)
                .map_err(|e| format!("field `{field}` does not match `global`: {e}"))?;
            check_finite(&field, g)?;
        }
        if let Some((i, &g)) = self
            .fleet_group
            .iter()
            .enumerate()
            .find(|&(_, &g)| g >= self.groups.len())
        {
            return Err(format!(
                "field `fleet_group[{i}]`: group {g} out of range ({} groups)",
                self.groups.len()
            ));
        }
        if let Some(opt) = &self.server_optimizer {
            opt.config
                .validate()
                .map_err(|e| format!("field `server_optimizer.config`: {e}"))?;
            let value =
                serde_json::to_value(opt).map_err(|e| format!("field `server_optimizer`: {e}"))?;
            let n = self.global.num_scalars();
            for (key, min) in [("m", f64::NEG_INFINITY), ("v", 0.0)] {
                let Some(moment) = value.get(key).filter(|m| !m.is_null()) else {
                    continue;
                };
                let field = format!("server_optimizer.{key}");
                let moment = moment
                    .as_array()
                    .ok_or_else(|| format!("field `{field}` is not an array"))?;
                if moment.len() != n {
                    return Err(format!(
                        "field `{field}` has {} values, the global params {n}",
                        moment.len()
                    ));
                }
                // non-finite f32 values serialize as null
                if let Some(i) = moment
                    .iter()
                    .position(|x| !x.as_f64().is_some_and(|x| x.is_finite() && x >= min))
                {
                    return Err(format!(
                        "field `{field}[{i}]` is not a finite value >= {min}"
                    ));
                }
            }
        }
        if !self.labels.is_valid() {
            let LabelTransform { mean, std, .. } = self.labels;
            return Err(format!(
                "field `labels`: needs finite means and positive finite spreads, got {mean} and {std}"
            ));
        }
        Ok(())
    }
}

/// The first non-finite value of `params`, as an error naming `field` and the tensor.
fn check_finite(field: &str, params: &ModelParams) -> std::result::Result<(), String> {
    for p in params.params() {
        if let Some(i) = p.data.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "field `{field}`: parameter {} has a non-finite value at index {i}",
                p.name
            ));
        }
    }
    Ok(())
}
