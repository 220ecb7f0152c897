//! The Severson "variance" baseline: log10 cycle life = a + b · log10 var(ΔQ(V)), with
//! ΔQ(V) = Qd(V, cycle 100) − Qd(V, cycle 10) (Severson et al., Nature Energy 2019).

use std::borrow::Borrow;

use serde::{Deserialize, Serialize};

use crate::data::{Cell, LabelConfig};
use crate::error::{Error, Result};
use crate::features::delta_q::log10_variance_delta_q;

/// Settings of the variance model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VarianceConfig {
    /// Early cycle of ΔQ(V) (default 10).
    pub early_cycle: u32,
    /// Late cycle of ΔQ(V) (default 100).
    pub late_cycle: u32,
    /// Discharge samples have current below −threshold (default 0.1 A).
    pub current_threshold_a: f64,
}

impl Default for VarianceConfig {
    fn default() -> Self {
        VarianceConfig {
            early_cycle: 10,
            late_cycle: 100,
            current_threshold_a: 0.1,
        }
    }
}

/// A fitted variance model.
///
/// ```
/// use battery_fl_core::data::synthetic::{CellSpec, Chemistry};
/// use battery_fl_core::data::LabelConfig;
/// use battery_fl_core::model::VarianceModel;
///
/// let cells: Vec<_> = (0..12)
///     .map(|i| CellSpec::new(Chemistry::Lfp).with_charge_c_rate(1.0 + 0.4 * i as f64).generate(&format!("c{i}"), i))
///     .collect::<Result<_, _>>()?;
/// let model = VarianceModel::fit(&cells, &Default::default(), &LabelConfig::default())?;
/// assert!(model.slope < 0.0); // more ΔQ(V) variance, shorter life
/// let lives = model.predict(&cells)?;
/// assert!(lives.iter().all(|l| *l > 0.0));
/// # Ok::<(), battery_fl_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VarianceModel {
    /// Settings used.
    pub config: VarianceConfig,
    /// Intercept a.
    pub intercept: f64,
    /// Slope b.
    pub slope: f64,
}

impl VarianceModel {
    /// The model's single feature for a cell: log10 var(ΔQ(V)).
    pub fn feature(cell: &Cell, config: &VarianceConfig) -> Result<f64> {
        log10_variance_delta_q(
            cell,
            config.early_cycle,
            config.late_cycle,
            config.current_threshold_a,
        )
    }

    /// Ordinary least squares on labelled cells (at least two, with distinct features).
    /// `cells` may be owned or borrowed (`&[Cell]` or `&[&Cell]`).
    pub fn fit<C: Borrow<Cell>>(
        cells: &[C],
        config: &VarianceConfig,
        label: &LabelConfig,
    ) -> Result<Self> {
        let mut xs = Vec::with_capacity(cells.len());
        let mut ys = Vec::with_capacity(cells.len());
        for cell in cells {
            let cell = cell.borrow();
            let life = cell
                .cycle_life(label)?
                .cycles()
                .ok_or_else(|| Error::InvalidData {
                    cell_id: cell.id().to_string(),
                    cycle: None,
                    field: "cycle_life".into(),
                    reason: "censored: no label to fit on".into(),
                })?;
            xs.push(Self::feature(cell, config)?);
            ys.push(f64::from(life).log10());
        }
        if xs.len() < 2 {
            return Err(Error::NotEnoughData {
                what: "variance model fit".into(),
                needed: 2,
                got: xs.len(),
            });
        }
        let n = xs.len() as f64;
        let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
        let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
        let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
        if sxx.is_nan() || sxx <= 0.0 {
            return Err(Error::NotEnoughData {
                what: "distinct ΔQ(V) variances".into(),
                needed: 2,
                got: 1,
            });
        }
        let slope = sxy / sxx;
        Ok(VarianceModel {
            config: config.clone(),
            intercept: my - slope * mx,
            slope,
        })
    }

    /// Predicted cycle lives (`cells` owned or borrowed).
    pub fn predict<C: Borrow<Cell>>(&self, cells: &[C]) -> Result<Vec<f64>> {
        cells
            .iter()
            .map(|c| {
                let x = Self::feature(c.borrow(), &self.config)?;
                Ok(10f64.powf(self.intercept + self.slope * x))
            })
            .collect()
    }
}
