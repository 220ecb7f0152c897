//! The cycle-life label: the first cycle whose discharge capacity reaches the end-of-life
//! fraction of nominal capacity.

use serde::{Deserialize, Serialize};

use super::Cell;
use crate::error::{Error, Result};

/// How to compute a cycle-life label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelConfig {
    /// End of life when discharge capacity <= `eol_fraction x nominal` (default 0.8; the
    /// 20-cycle "MIX-20" setting uses 0.9).
    pub eol_fraction: f64,
    /// Centred rolling-median window over the capacity series before thresholding (default
    /// 1 = none). CALCE's CS2 cells need 5: their series has isolated one-cycle dips.
    pub median_window: usize,
    /// Use the source's recorded `cycle_life` when `eol_fraction` is 0.8 (default true): some
    /// sources (MATR) only ship early cycles, so the label cannot be recomputed from them.
    pub prefer_recorded: bool,
}

impl Default for LabelConfig {
    fn default() -> Self {
        LabelConfig {
            eol_fraction: 0.8,
            median_window: 1,
            prefer_recorded: true,
        }
    }
}

impl LabelConfig {
    /// A config with the given end-of-life fraction and the other defaults.
    pub fn with_eol(eol_fraction: f64) -> Self {
        LabelConfig {
            eol_fraction,
            ..Default::default()
        }
    }

    /// Check the values.
    pub fn validate(&self) -> Result<()> {
        if !(self.eol_fraction > 0.0 && self.eol_fraction < 1.0) {
            return Err(Error::config(
                "eol_fraction",
                format!("must be in (0, 1), got {}", self.eol_fraction),
            ));
        }
        if self.median_window.is_multiple_of(2) {
            return Err(Error::config("median_window", "must be odd and >= 1"));
        }
        Ok(())
    }
}

/// Where a label came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LabelSource {
    /// The source file's `cycle_life`.
    Recorded,
    /// Computed from the capacity series.
    Computed,
}

/// The outcome of labelling a cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LifeLabel {
    /// End of life was reached at `cycle` (1-based count of cycles).
    Reached {
        /// The cycle life.
        cycle: u32,
        /// Where it came from.
        source: LabelSource,
    },
    /// The data end before end of life: no label (never a made-up one).
    Censored {
        /// Cycles observed.
        observed_cycles: u32,
        /// Lowest (smoothed) state of health seen, as a fraction of nominal.
        min_soh: f64,
    },
}

impl LifeLabel {
    /// The cycle life, if reached.
    pub fn cycles(&self) -> Option<u32> {
        match self {
            LifeLabel::Reached { cycle, .. } => Some(*cycle),
            LifeLabel::Censored { .. } => None,
        }
    }
}

impl Cell {
    /// Per-cycle discharge capacity, `(cycle number, Ah)`: the capacity trajectory when the
    /// source gives one (entry k = cycle k + 1), else each cycle's maximum discharge capacity.
    pub fn capacity_series(&self) -> Vec<(u32, f64)> {
        if !self.capacity_trajectory.is_empty() {
            return self
                .capacity_trajectory
                .iter()
                .enumerate()
                .filter_map(|(k, q)| q.filter(|q| q.is_finite()).map(|q| (k as u32 + 1, q)))
                .collect();
        }
        self.cycles
            .iter()
            .filter_map(|c| c.max_discharge_capacity().map(|q| (c.cycle, q)))
            .collect()
    }

    /// The cycle-life label under `config`.
    ///
    /// ```
    /// use battery_fl_core::data::{synthetic, LabelConfig, LifeLabel};
    /// let cell = &synthetic::FleetConfig::default().with_cells_per_fleet(1).generate().unwrap()[0].cells[0];
    /// let label = cell.cycle_life(&LabelConfig { prefer_recorded: false, ..Default::default() }).unwrap();
    /// // synthetic cells carry 100 early cycles only, so the computed label is censored,
    /// // while the recorded ground truth is used by default
    /// assert!(matches!(label, LifeLabel::Censored { .. }));
    /// assert!(cell.cycle_life(&LabelConfig::default()).unwrap().cycles().is_some());
    /// ```
    pub fn cycle_life(&self, config: &LabelConfig) -> Result<LifeLabel> {
        config.validate()?;
        if config.prefer_recorded && (config.eol_fraction - 0.8).abs() < 1e-12 {
            if let Some(cycle) = self.cycle_life {
                return Ok(LifeLabel::Reached {
                    cycle,
                    source: LabelSource::Recorded,
                });
            }
        }
        let series = self.capacity_series();
        if series.is_empty() {
            return Err(super::validate::invalid(
                self.id(),
                None,
                "discharge_capacity_ah",
                "no capacity data to label".into(),
            ));
        }
        let values: Vec<f64> = series.iter().map(|&(_, q)| q).collect();
        let smoothed = rolling_median(&values, config.median_window);
        let threshold = config.eol_fraction * self.meta.nominal_capacity_ah;
        if let Some(i) = smoothed.iter().position(|&q| q <= threshold) {
            return Ok(LifeLabel::Reached {
                cycle: series[i].0,
                source: LabelSource::Computed,
            });
        }
        let min = smoothed.iter().copied().fold(f64::INFINITY, f64::min);
        Ok(LifeLabel::Censored {
            observed_cycles: series.last().map_or(0, |s| s.0),
            min_soh: min / self.meta.nominal_capacity_ah,
        })
    }
}

/// Centred rolling median; the window shrinks at the ends (as pandas' `center=True,
/// min_periods=1`).
fn rolling_median(values: &[f64], window: usize) -> Vec<f64> {
    if window <= 1 {
        return values.to_vec();
    }
    let half = window / 2;
    let mut buf = Vec::with_capacity(window);
    (0..values.len())
        .map(|i| {
            buf.clear();
            buf.extend_from_slice(
                &values[i.saturating_sub(half)..(i + half + 1).min(values.len())],
            );
            buf.sort_by(f64::total_cmp);
            let m = buf.len();
            if m % 2 == 1 {
                buf[m / 2]
            } else {
                0.5 * (buf[m / 2 - 1] + buf[m / 2])
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::rolling_median;

    #[test]
    fn rolling_median_ignores_isolated_dips() {
        let v = [1.0, 1.0, 0.1, 1.0, 1.0, 0.5, 0.5, 0.5];
        let m = rolling_median(&v, 5);
        assert_eq!(m[2], 1.0);
        assert_eq!(m[7], 0.5);
        assert_eq!(rolling_median(&v, 1), v.to_vec());
    }
}
