//! A [`LinearModel`] read from outside (JSON, a pickle, a federation's file) is checked before
//! use: a model saved by another version of the library (another number of early-life
//! features or cathode groups) is a typed error, not an out-of-bounds index at prediction.

use serde::Deserialize;

use super::statistics::Standardization;
use super::{FeatureSet, LinearModel, LABEL_GROUPS, LINEAR_COLUMNS};
use crate::error::{Error, Result};
use crate::features::EarlyLifeConfig;

/// The fields of a [`LinearModel`] as stored, before [`LinearModel::check`].
#[derive(Deserialize)]
pub(super) struct LinearModelFields {
    early_life: EarlyLifeConfig,
    feature_set: FeatureSet,
    #[serde(with = "super::infinite_as_null")]
    lambda: f64,
    standardization: Standardization,
    weights: Vec<f64>,
    log_life_bounds: (f64, f64),
    inverse: Vec<f64>,
    cathodes_seen: Vec<bool>,
}

impl TryFrom<LinearModelFields> for LinearModel {
    type Error = Error;

    fn try_from(f: LinearModelFields) -> Result<Self> {
        let model = LinearModel {
            early_life: f.early_life,
            feature_set: f.feature_set,
            lambda: f.lambda,
            standardization: f.standardization,
            weights: f.weights,
            log_life_bounds: f.log_life_bounds,
            inverse: f.inverse,
            cathodes_seen: f.cathodes_seen,
        };
        model.check()?;
        Ok(model)
    }
}

impl LinearModel {
    /// Reject a model whose parts do not fit this version's design row: standardization of
    /// [`LINEAR_COLUMNS`] columns, one weight per column of its feature set, a square
    /// inverse of that size, one flag per [`LABEL_GROUPS`] cathode, finite weights and
    /// ordered bounds.
    pub fn check(&self) -> Result<()> {
        let d = self.feature_set.columns().len();
        let shape = |what: &str, expected: usize, got: usize| {
            if expected == got {
                Ok(())
            } else {
                Err(Error::Shape {
                    what: format!("linear model {what} (saved by another version?)"),
                    expected: vec![expected],
                    got: vec![got],
                })
            }
        };
        self.early_life.validate()?;
        shape(
            "standardization means",
            LINEAR_COLUMNS,
            self.standardization.mean.len(),
        )?;
        shape(
            "standardization scales",
            LINEAR_COLUMNS,
            self.standardization.scale.len(),
        )?;
        shape("weights", d, self.weights.len())?;
        shape("inverse", d * d, self.inverse.len())?;
        shape(
            "cathodes seen",
            LABEL_GROUPS.len(),
            self.cathodes_seen.len(),
        )?;
        let (lo, hi) = self.log_life_bounds;
        let finite = self
            .weights
            .iter()
            .chain(&self.standardization.mean)
            .all(|w| w.is_finite())
            && self
                .standardization
                .scale
                .iter()
                .all(|s| s.is_finite() && *s > 0.0);
        if !(finite && lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(Error::InvalidConfig {
                field: "linear model".into(),
                reason: "non-finite weights, standardization or bounds".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::data::synthetic::FleetConfig;
    use crate::data::LabelConfig;
    use crate::error::Error;
    use crate::model::{select_linear, LinearConfig, LinearModel};

    #[test]
    fn a_model_of_another_shape_is_refused_when_read() {
        let config = LinearConfig::default();
        let fleets = FleetConfig::default()
            .with_fleets(1)
            .with_cells_per_fleet(10)
            .generate()
            .unwrap();
        let rows = config
            .rows(&fleets[0].cells, &LabelConfig::default())
            .unwrap();
        let (model, _) = select_linear(&rows, &config).unwrap();
        let json = serde_json::to_string(&model).unwrap();
        let back: LinearModel = serde_json::from_str(&json).unwrap();
        assert_eq!(back, model);
        // a model of eight features (the layout before the fade split) is a typed error
        let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
        for key in ["mean", "scale"] {
            let v = old["standardization"][key].as_array_mut().unwrap();
            v.truncate(v.len() - 2);
        }
        let err = serde_json::from_value::<LinearModel>(old).unwrap_err();
        assert!(err.to_string().contains("another version"), "{err}");
        let mut short = model.clone();
        short.weights.pop();
        assert!(matches!(short.check(), Err(Error::Shape { .. })));
        let mut nan = model;
        nan.weights[0] = f64::NAN;
        assert!(matches!(nan.check(), Err(Error::InvalidConfig { .. })));
    }
}
