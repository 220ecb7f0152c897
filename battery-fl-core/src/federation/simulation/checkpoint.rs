//! Checkpointing a run after every round, and resuming it from its checkpoint.

use std::path::{Path, PathBuf};

use super::{FleetData, Simulation};
use crate::error::Result;
use crate::features::FeaturizerConfig;
use crate::federation::config::FederationConfig;
use crate::federation::state::CoordinatorState;
use crate::model::{BatLiNetConfig, Dataset};

impl Simulation {
    /// Checkpoint the coordinator state to `path` after every round.
    pub fn with_checkpoint(mut self, path: impl Into<PathBuf>) -> Self {
        self.checkpoint = Some(path.into());
        self
    }

    /// Continue a run from its checkpoint; the other arguments must be the run's own.
    pub fn resume(
        path: &Path,
        config: FederationConfig,
        model: BatLiNetConfig,
        featurizer: FeaturizerConfig,
        fleets: Vec<FleetData>,
    ) -> Result<Self> {
        let sim = Self::new(config, model, featurizer, fleets)?;
        sim.resumed(path)
    }

    /// Continue a record-private run (see [`Simulation::with_public_cells`]) from its
    /// checkpoint; the other arguments must be the run's own. Each fleet's accountant comes
    /// back with its state.
    pub fn resume_with_public_cells(
        path: &Path,
        config: FederationConfig,
        model: BatLiNetConfig,
        featurizer: FeaturizerConfig,
        fleets: Vec<FleetData>,
        public: Dataset,
    ) -> Result<Self> {
        let sim = Self::private(config, model, featurizer, fleets, public, false)?;
        sim.resumed(path)
    }

    fn resumed(self, path: &Path) -> Result<Self> {
        let mut sim = self;
        let state = CoordinatorState::load(path)?;
        sim.state.global.check_compatible(&state.global)?;
        sim.worker.set_label_transform(state.labels);
        sim.state = state;
        sim.checkpoint = Some(path.to_path_buf());
        Ok(sim)
    }
}
