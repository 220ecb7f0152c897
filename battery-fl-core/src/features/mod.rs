//! The BatLiNet difference-curve featurizer (method.md section 2).
//!
//! A [`Featurizer`] turns a [`Cell`] into a [`Features`] tensor of shape
//! `(6, cycles, interp_dim)`, float32, channel-major:
//!
//! | channel | curve | fill left / right of the samples |
//! | --- | --- | --- |
//! | 0 | V(Qc): charge voltage vs normalized charge capacity | min V / max V |
//! | 1 | V(Qd): discharge voltage vs normalized discharge capacity | max V / min V |
//! | 2 | I(Qc): charge current | 0 / 0 |
//! | 3 | I(Qd): discharge current | 0 / 0 |
//! | 4 | dV(Q) = ch0 − reverse(ch1) | |
//! | 5 | R(Q) = (ch0 − reverse(ch1)) / (ch2 − reverse(ch3) + 1e-3) | |
//!
//! Capacities are divided by the cell's nominal capacity. The grid is `interp_dim` points
//! evenly spaced over `[q_min, q_max]` (default `[0, 1.2]`, computed like `numpy.linspace`).
//! Charge points are the samples with current `> current_threshold_a`, discharge points those
//! with current `< -current_threshold_a`. Samples with capacity outside `[q_min, q_max]` (or
//! NaN) are dropped; a curve left with `<= 2` samples is all zeros. NaN becomes 0 at the end.
//! Interpolation is computed in f64 and stored as f32.
//!
//! # Cycle window
//!
//! Row `r` holds the cycle whose *recorded* cycle number is `first_cycle + r`
//! (`r < cycles`); if a number occurs twice the first occurrence is used. A cycle number the
//! cell does not have (never recorded, or dropped by cleaning) copies the nearest recorded
//! cycle, the earlier one on a tie (`fill_missing_cycles`, default true); with the option off
//! it is an all-zero row. Zero rows look like a collapse of the whole curve to the
//! differences and the cycle filter does not catch them when several cycles are missing.
//! (The published code indexes cycles by position instead; for sources numbered 1, 2, 3, ...
//! without gaps, as CALCE, the two agree.)
//!
//! # Agreement with the reference (scipy)
//!
//! Curves follow `scipy.interpolate.interp1d(kind="linear", bounds_error=False,
//! fill_value=(left, right))` exactly, including its handling of awkward inputs: unsorted
//! capacities are sorted by a *stable* sort (scipy uses `argsort(kind="mergesort")`), and
//! for duplicate capacities the interval rules of `numpy.interp` apply (a grid point equal to
//! a duplicated capacity takes the value of its last occurrence; between two distinct
//! capacities the interpolation uses the last sample of the left one and the first of the
//! right one). NaN voltages or currents propagate as in numpy (NaN fill values, NaN in the
//! neighbouring intervals) and then become 0. Infinite values are left as they are.
//! Deliberate differences from the published code: the `<= 2 samples` rule is applied after
//! dropping out-of-range samples (as method.md says; the published code checks before, and
//! would fail on a curve with fewer than 2 samples left in range), and cycles are selected by
//! number, not by position (above).
//!
//! # Missing signals (discharge-only sources such as MATR)
//!
//! Signals a cycle does not record are never treated as zeros measured:
//! - without `current_a`, no sample can be called a charge point, so ch0 and ch2 are zero;
//!   every sample is taken as a discharge point, so ch1 V(Qd) is built from all samples
//!   (for MATR: the inverse of the recorded Q(V) curve); ch3 I(Qd) is zero;
//! - without `charge_capacity_ah`, ch0 and ch2 are zero; without `discharge_capacity_ah`,
//!   ch1 and ch3 are zero;
//! - ch4 is computed only when both ch0 and ch1 could be built from recorded signals, ch5 only
//!   when all four could; otherwise they are zero (not a difference against absent data).
//!
//! So a MATR cell yields ch1 only; every other channel is exactly 0.
//!
//! # Differences and cleaning
//!
//! [`intra_diff`] (cycle difference, feeds branch A) and [`inter_diff`] (cell difference,
//! feeds branch B), and the three cleaning steps [`smooth_edges`], [`remove_glitches`] and
//! [`filter_cycles`], are separate functions; [`branch_a_input`] and [`branch_b_input`]
//! compose them as the method does.
//!
//! ```
//! use battery_fl_core::data::{Cell, CellMeta, Cycle};
//! use battery_fl_core::features::{Featurizer, FeaturizerConfig};
//!
//! // one cycle: charge 0 -> 1 Ah at 0.5 A while V rises 3.0 -> 4.0 V, then discharge
//! let n = 11;
//! let mut v: Vec<f64> = (0..n).map(|k| 3.0 + k as f64 / 10.0).collect();
//! v.extend((0..n).map(|k| 4.0 - k as f64 / 10.0));
//! let mut c = Cycle::new(1, v);
//! c.current_a = Some([vec![0.5; n], vec![-1.0; n]].concat());
//! c.charge_capacity_ah = Some([(0..n).map(|k| k as f64 / 10.0).collect(), vec![1.0; n]].concat());
//! c.discharge_capacity_ah = Some([vec![0.0; n], (0..n).map(|k| k as f64 / 10.0).collect()].concat());
//! let cell = Cell::new(CellMeta::new("demo", 1.0), vec![c]);
//!
//! let f = Featurizer::new(FeaturizerConfig::default().with_cycles(2).with_interp_dim(13))?;
//! let x = f.transform(&cell)?;
//! assert_eq!(x.shape(), [6, 2, 13]);
//! // grid point 5 is Q = 0.5: charge voltage 3.5 V, discharge voltage 3.5 V
//! assert!((x.row(0, 0)[5] - 3.5).abs() < 1e-6);
//! assert!((x.row(1, 0)[5] - 3.5).abs() < 1e-6);
//! // beyond Q = 1.0 the charge curve holds its maximum voltage
//! assert_eq!(x.row(0, 0)[12], 4.0);
//! // cycle 2 is not recorded: it copies cycle 1 (or is zero with the fill turned off)
//! assert_eq!(x.row(1, 1), x.row(1, 0));
//! let zeros = Featurizer::new(f.config().clone().with_fill_missing_cycles(false))?.transform(&cell)?;
//! assert!(zeros.row(1, 1).iter().all(|&v| v == 0.0));
//! # Ok::<(), battery_fl_core::Error>(())
//! ```

mod clean;
mod curves;
pub mod delta_q;
mod diff;
mod early_life;
mod tensor;

use std::borrow::Borrow;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::Cell;
use crate::error::{Error, Result};

pub use clean::{
    clean_all, filter_cycles, filter_cycles_fill, remove_glitches, remove_glitches_row,
    smooth_edges, smooth_edges_row, FeatureCleanConfig,
};
pub use curves::linspace;
pub use diff::{branch_a_input, branch_b_input, inter_diff, intra_diff};
pub use early_life::{
    EarlyLifeConfig, EarlyLifeFeatures, EARLY_LIFE_FEATURES, EARLY_LIFE_FEATURE_COUNT,
};
pub use tensor::{Features, CHANNELS, CHANNEL_NAMES};

/// Settings of the six-channel featurizer. Every field has a default (`#[serde(default)]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FeaturizerConfig {
    /// Number of cycle rows. Default 100.
    pub cycles: usize,
    /// Recorded cycle number of row 0; row `r` is cycle `first_cycle + r`. Default 1.
    pub first_cycle: u32,
    /// Grid points along normalized capacity. Default 1000. At least 2.
    pub interp_dim: usize,
    /// Lower end of the normalized-capacity grid. Default 0.0.
    pub q_min: f64,
    /// Upper end of the normalized-capacity grid. Default 1.2.
    pub q_max: f64,
    /// Current (A) above which a sample is a charge point and below whose negative it is a
    /// discharge point. Default 0.1.
    pub current_threshold_a: f64,
    /// Recorded cycle number subtracted by the intra-cell difference (branch A). Default 10,
    /// i.e. row 9 under the default window (the published configs' `diff_base: 9`).
    pub diff_base_cycle: u32,
    /// Cleaning of difference features. Defaults as in method.md.
    pub clean: FeatureCleanConfig,
    /// Rows of cycles the cell lacks copy the nearest recorded cycle (default true); false
    /// leaves them all zero.
    pub fill_missing_cycles: bool,
}

impl Default for FeaturizerConfig {
    fn default() -> Self {
        FeaturizerConfig {
            cycles: 100,
            first_cycle: 1,
            interp_dim: 1000,
            q_min: 0.0,
            q_max: 1.2,
            current_threshold_a: 0.1,
            diff_base_cycle: 10,
            fill_missing_cycles: true,
            clean: FeatureCleanConfig::default(),
        }
    }
}

impl FeaturizerConfig {
    /// The defaults; same as [`Default::default`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Set the number of cycle rows.
    pub fn with_cycles(mut self, cycles: usize) -> Self {
        self.cycles = cycles;
        self
    }

    /// Set the recorded cycle number of row 0.
    pub fn with_first_cycle(mut self, first_cycle: u32) -> Self {
        self.first_cycle = first_cycle;
        self
    }

    /// Set the number of grid points.
    pub fn with_interp_dim(mut self, interp_dim: usize) -> Self {
        self.interp_dim = interp_dim;
        self
    }

    /// Set the normalized-capacity range of the grid.
    pub fn with_q_range(mut self, q_min: f64, q_max: f64) -> Self {
        self.q_min = q_min;
        self.q_max = q_max;
        self
    }

    /// Set the charge/discharge current threshold (A).
    pub fn with_current_threshold_a(mut self, threshold: f64) -> Self {
        self.current_threshold_a = threshold;
        self
    }

    /// Set `fill_missing_cycles`.
    pub fn with_fill_missing_cycles(mut self, fill: bool) -> Self {
        self.fill_missing_cycles = fill;
        self
    }

    /// Set the base cycle (recorded number) of the intra-cell difference.
    pub fn with_diff_base_cycle(mut self, cycle: u32) -> Self {
        self.diff_base_cycle = cycle;
        self
    }

    /// Set the cleaning parameters.
    pub fn with_clean(mut self, clean: FeatureCleanConfig) -> Self {
        self.clean = clean;
        self
    }

    /// Check ranges: `cycles >= 1`, `interp_dim >= 2`, finite `q_min < q_max`, finite
    /// `current_threshold_a >= 0`, the window's last cycle number fits in `u32`, and the
    /// cleaning parameters. The base cycle is checked when it is used ([`Featurizer::base_row`]).
    pub fn validate(&self) -> Result<()> {
        if self.cycles == 0 {
            return Err(Error::config("cycles", "must be at least 1"));
        }
        if u32::try_from(self.cycles)
            .ok()
            .and_then(|c| self.first_cycle.checked_add(c - 1))
            .is_none()
        {
            return Err(Error::config(
                "cycles",
                format!(
                    "first_cycle {} + cycles {} overflows u32",
                    self.first_cycle, self.cycles
                ),
            ));
        }
        if self.interp_dim < 2 {
            return Err(Error::config(
                "interp_dim",
                format!("{} < 2", self.interp_dim),
            ));
        }
        if !self.q_min.is_finite() || !self.q_max.is_finite() || self.q_min >= self.q_max {
            return Err(Error::config(
                "q_min",
                format!(
                    "need finite q_min < q_max, got [{}, {}]",
                    self.q_min, self.q_max
                ),
            ));
        }
        if !(self.current_threshold_a.is_finite() && self.current_threshold_a >= 0.0) {
            return Err(Error::config(
                "current_threshold_a",
                format!("need a finite value >= 0, got {}", self.current_threshold_a),
            ));
        }
        self.clean.validate()
    }

    /// The featurizer for this config (validates first).
    pub fn build(self) -> Result<Featurizer> {
        Featurizer::new(self)
    }
}

/// The six-channel BatLiNet featurizer: a validated [`FeaturizerConfig`] plus its grid.
///
/// Cheap to share across threads (`Sync`); [`Featurizer::transform_many`] runs cells in
/// parallel on the current rayon pool.
#[derive(Debug, Clone)]
pub struct Featurizer {
    config: FeaturizerConfig,
    grid: Vec<f64>,
}

impl Featurizer {
    /// Validate `config` and precompute the grid.
    pub fn new(config: FeaturizerConfig) -> Result<Self> {
        config.validate()?;
        let grid = linspace(config.q_min, config.q_max, config.interp_dim);
        Ok(Featurizer { config, grid })
    }

    /// The configuration.
    pub fn config(&self) -> &FeaturizerConfig {
        &self.config
    }

    /// The normalized-capacity grid (`interp_dim` points, as `numpy.linspace`).
    pub fn grid(&self) -> &[f64] {
        &self.grid
    }

    /// The output shape `[6, cycles, interp_dim]`.
    pub fn output_shape(&self) -> [usize; 3] {
        [CHANNELS, self.config.cycles, self.config.interp_dim]
    }

    /// The row of the configured intra-difference base cycle (`diff_base_cycle - first_cycle`).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] (field `diff_base_cycle`) when the base cycle is outside the
    /// window.
    pub fn base_row(&self) -> Result<usize> {
        let c = &self.config;
        let row = c
            .diff_base_cycle
            .checked_sub(c.first_cycle)
            .map(|r| r as usize);
        match row {
            Some(r) if r < c.cycles => Ok(r),
            _ => Err(Error::config(
                "diff_base_cycle",
                format!(
                    "cycle {} is outside the window {}..{}",
                    c.diff_base_cycle,
                    c.first_cycle,
                    c.first_cycle as usize + c.cycles
                ),
            )),
        }
    }

    /// Raw features of one cell, shape `[6, cycles, interp_dim]`.
    ///
    /// # Errors
    /// [`Error::InvalidData`] (naming the cell and, where relevant, the cycle) when the
    /// nominal capacity is not positive and finite or a cycle's signals differ in length.
    pub fn transform(&self, cell: &Cell) -> Result<Features> {
        let mut out = Features::zeros(self.output_shape());
        curves::featurize_into(cell, &self.config, &self.grid, out.as_mut_slice())?;
        Ok(out)
    }

    /// [`Featurizer::transform`] into a caller-provided C-order buffer of
    /// `6 * cycles * interp_dim` floats (for example one cell's slot of a batch tensor, or a
    /// numpy array). Every element is overwritten, so the buffer need not be zeroed; nothing is
    /// allocated per grid point.
    ///
    /// # Errors
    /// [`Error::Shape`] when `out` has the wrong length; otherwise as [`Featurizer::transform`]
    /// (on error the buffer's contents are unspecified).
    pub fn transform_into(&self, cell: &Cell, out: &mut [f32]) -> Result<()> {
        let [c, h, w] = self.output_shape();
        if out.len() != c * h * w {
            return Err(Error::Shape {
                what: format!("output buffer for cell {}", cell.id()),
                expected: vec![c, h, w],
                got: vec![out.len()],
            });
        }
        curves::featurize_into(cell, &self.config, &self.grid, out)
    }

    /// [`Featurizer::transform`] for many cells in parallel (rayon, current pool), in order;
    /// `cells` may be owned or borrowed (`&[Cell]` or `&[&Cell]`).
    pub fn transform_many<C: Borrow<Cell> + Sync>(&self, cells: &[C]) -> Result<Vec<Features>> {
        cells
            .par_iter()
            .map(|cell| self.transform(cell.borrow()))
            .collect()
    }

    /// Branch A input of one cell: raw features, minus the base cycle row
    /// ([`Featurizer::base_row`]), then cleaned (edges, glitches, cycle filter).
    pub fn branch_a(&self, cell: &Cell) -> Result<Features> {
        let raw = self.transform(cell)?;
        branch_a_input(&raw, self.base_row()?, &self.config.clean)
    }

    /// Branch B input from two cells' raw features: cycle-filtered target minus cycle-filtered
    /// reference (see [`branch_b_input`]).
    pub fn branch_b(&self, target_raw: &Features, reference_raw: &Features) -> Result<Features> {
        branch_b_input(target_raw, reference_raw, &self.config.clean)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_documented_values() {
        let c = FeaturizerConfig::default();
        c.validate().unwrap();
        assert_eq!((c.cycles, c.first_cycle, c.interp_dim), (100, 1, 1000));
        assert_eq!((c.q_min, c.q_max, c.current_threshold_a), (0.0, 1.2, 0.1));
        assert_eq!(Featurizer::new(c).unwrap().base_row().unwrap(), 9);
    }

    #[test]
    fn serde_fills_missing_fields_with_defaults() {
        let c: FeaturizerConfig = serde_json::from_str(r#"{"cycles": 20}"#).unwrap();
        assert_eq!(c, FeaturizerConfig::default().with_cycles(20));
        let back: FeaturizerConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn validation_names_the_field() {
        let bad = [
            (FeaturizerConfig::default().with_cycles(0), "cycles"),
            (FeaturizerConfig::default().with_interp_dim(1), "interp_dim"),
            (FeaturizerConfig::default().with_q_range(1.0, 1.0), "q_min"),
            (
                FeaturizerConfig::default().with_q_range(0.0, f64::NAN),
                "q_min",
            ),
            (
                FeaturizerConfig::default().with_current_threshold_a(-1.0),
                "current_threshold_a",
            ),
            (
                FeaturizerConfig::default().with_first_cycle(u32::MAX),
                "cycles",
            ),
        ];
        for (cfg, field) in bad {
            match Featurizer::new(cfg) {
                Err(Error::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected InvalidConfig({field}), got {other:?}"),
            }
        }
    }

    #[test]
    fn base_row_outside_window_is_a_config_error() {
        let f = Featurizer::new(FeaturizerConfig::default().with_cycles(5)).unwrap();
        assert!(matches!(f.base_row(), Err(Error::InvalidConfig { .. })));
        let f = Featurizer::new(FeaturizerConfig::default().with_first_cycle(11)).unwrap();
        assert!(matches!(f.base_row(), Err(Error::InvalidConfig { .. })));
    }
}
