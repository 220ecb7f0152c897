//! Design rows, their summable statistics and the standardization read from them.

use serde::{Deserialize, Serialize};

use super::{FeatureSet, LINEAR_COLUMNS};
use crate::data::{Cell, LabelConfig};
use crate::error::{Error, Result};
use crate::features::{
    EarlyLifeConfig, EarlyLifeFeatures, EARLY_LIFE_FEATURES, EARLY_LIFE_FEATURE_COUNT,
};
use crate::model::labels::{label_group, log_prediction_bounds};

/// A design row and its label: `LINEAR_COLUMNS` columns, then ln(life).
pub(super) const ROW: usize = LINEAR_COLUMNS + 1;
pub(super) const LABEL: usize = LINEAR_COLUMNS;
pub(super) const GRAM_LEN: usize = ROW * (ROW + 1) / 2;

/// Length of [`LinearStatistics`] as a vector: the upper triangle of `Σ r rᵀ` over the
/// design rows `r = (1, features, cathode indicators, ln life)`, then for each early-life
/// feature the number of cells that have it.
pub const LINEAR_STATISTICS_LEN: usize = GRAM_LEN + EARLY_LIFE_FEATURE_COUNT;

pub(super) fn at(i: usize, j: usize) -> usize {
    let (i, j) = if i <= j { (i, j) } else { (j, i) };
    i * ROW - i * i.saturating_sub(1) / 2 + (j - i)
}

/// One cell as the linear model reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearRow {
    /// The cell.
    pub cell_id: String,
    /// Its early-life features.
    pub features: EarlyLifeFeatures,
    /// Index of its cathode in [`LABEL_GROUPS`](crate::model::LABEL_GROUPS), if listed.
    pub cathode: Option<usize>,
    /// ln(cycle life), when the cell has a label under the label settings.
    pub log_life: Option<f64>,
}

impl LinearRow {
    /// The row of `cell`: its features, cathode and (if it has one) its label.
    pub fn of(cell: &Cell, early_life: &EarlyLifeConfig, label: &LabelConfig) -> Result<Self> {
        Ok(LinearRow {
            cell_id: cell.id().to_string(),
            features: EarlyLifeFeatures::of(cell, early_life)?,
            cathode: label_group(cell.meta.cathode.as_deref()),
            log_life: cell.cycle_life(label)?.cycles().map(|c| f64::from(c).ln()),
        })
    }

    /// The label, or an error naming the cell.
    pub fn require_label(&self) -> Result<f64> {
        self.log_life.ok_or_else(|| Error::InvalidData {
            cell_id: self.cell_id.clone(),
            cycle: None,
            field: "cycle_life".into(),
            reason: "censored: no label to fit on".into(),
        })
    }

    pub(super) fn full(&self) -> [f64; ROW] {
        let mut r = [0.0; ROW];
        r[0] = 1.0;
        for (k, v) in self.features.values.iter().enumerate() {
            r[1 + k] = v.unwrap_or(0.0);
        }
        if let Some(c) = self.cathode {
            r[1 + EARLY_LIFE_FEATURE_COUNT + c] = 1.0;
        }
        r[LABEL] = self.log_life.unwrap_or(0.0);
        r
    }
}

/// Summable statistics of labelled rows (see [`LINEAR_STATISTICS_LEN`]): a fleet's are the
/// sum over its cells, the federation's the sum over fleets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearStatistics {
    pub(super) values: Vec<f64>,
}

impl LinearStatistics {
    /// The statistics of labelled `rows` (an unlabelled row is an error).
    pub fn from_rows(rows: &[LinearRow]) -> Result<Self> {
        let mut values = vec![0.0; LINEAR_STATISTICS_LEN];
        for row in rows {
            row.require_label()?;
            let r = row.full();
            for i in 0..ROW {
                for j in i..ROW {
                    values[at(i, j)] += r[i] * r[j];
                }
            }
            for (k, v) in row.features.values.iter().enumerate() {
                values[GRAM_LEN + k] += f64::from(u8::from(v.is_some()));
            }
        }
        Ok(LinearStatistics { values })
    }

    /// Statistics from their vector form (a secure sum's output), checked for length and
    /// finiteness; counts are rounded (a secure sum carries them to about 4e-7).
    pub fn from_vec(values: Vec<f64>) -> Result<Self> {
        if values.len() != LINEAR_STATISTICS_LEN {
            return Err(Error::Shape {
                what: "linear statistics".into(),
                expected: vec![LINEAR_STATISTICS_LEN],
                got: vec![values.len()],
            });
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::config(
                "linear statistics",
                format!("entry {i} is not finite"),
            ));
        }
        let mut values = values;
        values[0] = values[0].round();
        for c in &mut values[GRAM_LEN..] {
            *c = c.round();
        }
        Ok(LinearStatistics { values })
    }

    /// The vector form (what a fleet sends to be summed).
    pub fn as_slice(&self) -> &[f64] {
        &self.values
    }

    /// `self − other`: the statistics of the other cells when `other`'s are part of `self`.
    pub fn subtract(&self, other: &Self) -> Self {
        LinearStatistics {
            values: self
                .values
                .iter()
                .zip(&other.values)
                .map(|(a, b)| a - b)
                .collect(),
        }
    }

    /// Number of cells.
    pub fn count(&self) -> f64 {
        self.values[0]
    }

    /// Number of cells of the [`LABEL_GROUPS`](crate::model::LABEL_GROUPS) cathode `group`.
    pub fn cathode_count(&self, group: usize) -> f64 {
        self.gram(0, 1 + EARLY_LIFE_FEATURE_COUNT + group)
    }

    pub(super) fn gram(&self, i: usize, j: usize) -> f64 {
        self.values[at(i, j)]
    }

    pub(super) const fn label_column() -> usize {
        LABEL
    }

    /// True when there is a cell and every cell has every feature of `set`.
    pub fn has_features(&self, set: FeatureSet) -> bool {
        let n = self.count();
        n >= 1.0
            && set
                .features()
                .iter()
                .all(|&k| self.values[GRAM_LEN + k] >= n - 0.5)
    }

    /// The prediction bound of the cells' ln(life) moments
    /// ([`log_prediction_bounds`](crate::model::log_prediction_bounds)).
    pub fn log_life_bounds(&self) -> Result<(f64, f64)> {
        let n = self.count();
        if n < 1.0 {
            return Err(Error::NotEnoughData {
                what: "labelled cells for a linear model".into(),
                needed: 1,
                got: 0,
            });
        }
        let mean = self.gram(0, LABEL) / n;
        let std = (self.gram(LABEL, LABEL) / n - mean * mean).max(0.0).sqrt();
        Ok(log_prediction_bounds(mean, std))
    }
}

/// Means and scales of the design columns: each feature is standardized, the intercept and
/// cathode indicators are kept as they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardization {
    /// Subtracted from each column.
    pub mean: Vec<f64>,
    /// Then divided into it.
    pub scale: Vec<f64>,
}

impl Standardization {
    /// The cells' feature means and standard deviations (1 for a constant feature).
    pub fn from_statistics(stats: &LinearStatistics) -> Result<Self> {
        let n = stats.count();
        if n < 1.0 {
            return Err(Error::NotEnoughData {
                what: "cells to standardize features on".into(),
                needed: 1,
                got: 0,
            });
        }
        let mut mean = vec![0.0; LINEAR_COLUMNS];
        let mut scale = vec![1.0; LINEAR_COLUMNS];
        for c in 1..=EARLY_LIFE_FEATURE_COUNT {
            let m = stats.gram(0, c) / n;
            let var = stats.gram(c, c) / n - m * m;
            mean[c] = m;
            if var > 1e-12 {
                scale[c] = var.sqrt();
            }
        }
        Ok(Standardization { mean, scale })
    }

    /// The standardized columns of `set` for `row`; an error names a feature the cell lacks.
    pub fn apply(&self, row: &LinearRow, set: FeatureSet) -> Result<Vec<f64>> {
        for &k in set.features() {
            if row.features.values[k].is_none() {
                return Err(Error::InvalidData {
                    cell_id: row.cell_id.clone(),
                    cycle: None,
                    field: EARLY_LIFE_FEATURES[k].into(),
                    reason: format!(
                        "the `{}` feature set needs it and the cell's signals cannot give it",
                        set.name()
                    ),
                });
            }
        }
        let r = row.full();
        Ok(set
            .columns()
            .into_iter()
            .map(|c| (r[c] - self.mean[c]) / self.scale[c])
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upper_triangle_is_indexed_without_gaps() {
        let mut seen = [false; GRAM_LEN];
        for i in 0..ROW {
            for j in i..ROW {
                assert!(!seen[at(i, j)], "{i} {j}");
                seen[at(i, j)] = true;
                assert_eq!(at(i, j), at(j, i));
            }
        }
        assert!(seen.iter().all(|s| *s));
    }
}
