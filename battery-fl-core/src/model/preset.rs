//! Named BatLiNet recipes: featurizer and model settings chosen once, by validation on
//! training cells, so that the main job, the Python binding and Flower nodes train the same
//! model from one name.

use serde::{Deserialize, Serialize};

use super::config::{BatLiNetConfig, InterFeatures};
use crate::features::FeaturizerConfig;

/// A BatLiNet recipe: [`configs`](Self::configs) gives its featurizer and model settings.
///
/// ```
/// use battery_fl_core::model::{BatLiNetPreset, InterFeatures};
///
/// let (featurizer, model) = BatLiNetPreset::Matr.configs();
/// assert_eq!(model.inter_features, InterFeatures::CycleDifference);
/// assert_eq!((model.input_channels.clone(), model.epochs), (vec![1], 600));
/// assert_eq!(featurizer.first_cycle, 2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatLiNetPreset {
    /// The library's defaults (the published settings: six channels, raw inter features).
    #[default]
    Default,
    /// The main job's synthetic fleets: 64 points per cycle, 16 channels, 60 epochs, batch
    /// 16, 16 inference references.
    Synthetic,
    /// MATR-like discharge-only cells (the recipe `eval_matr` chose by 4-fold
    /// cross-validation on MATR's `train` split, BENCHMARKS.md): V(Qd) only (channel 1),
    /// cycles 2-100 at 200 points, cycle-difference inter features, 600 epochs, batch 16,
    /// 32 inference references.
    Matr,
}

impl BatLiNetPreset {
    /// Every preset, in declaration order.
    pub const ALL: [BatLiNetPreset; 3] = [
        BatLiNetPreset::Default,
        BatLiNetPreset::Synthetic,
        BatLiNetPreset::Matr,
    ];

    /// The snake-case name.
    pub fn name(self) -> &'static str {
        match self {
            BatLiNetPreset::Default => "default",
            BatLiNetPreset::Synthetic => "synthetic",
            BatLiNetPreset::Matr => "matr",
        }
    }

    /// The preset's featurizer and model settings.
    pub fn configs(self) -> (FeaturizerConfig, BatLiNetConfig) {
        match self {
            BatLiNetPreset::Default => (FeaturizerConfig::default(), BatLiNetConfig::default()),
            BatLiNetPreset::Synthetic => (
                FeaturizerConfig::default().with_interp_dim(64),
                BatLiNetConfig::default()
                    .with_conv_channels(16)
                    .with_batch_size(16)
                    .with_epochs(60)
                    .with_inference_references(16),
            ),
            BatLiNetPreset::Matr => (
                FeaturizerConfig::default()
                    .with_first_cycle(2)
                    .with_cycles(99)
                    .with_interp_dim(200),
                BatLiNetConfig::default()
                    .with_input_channels(vec![1])
                    .with_batch_size(16)
                    .with_epochs(600)
                    .with_inference_references(32)
                    .with_inter_features(InterFeatures::CycleDifference),
            ),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_named_as_serialized() {
        for preset in BatLiNetPreset::ALL {
            assert_eq!(serde_json::to_value(preset).unwrap(), preset.name());
            let (featurizer, model) = preset.configs();
            featurizer.validate().unwrap();
            model.validate().unwrap();
        }
        assert_eq!(
            BatLiNetPreset::Default.configs().1,
            BatLiNetConfig::default()
        );
    }
}
