//! Structural and physical checks on a cell, with errors that name cell, cycle and field.

use super::{Cell, Cycle};
use crate::error::{Error, Result};

/// Capacities below `-NEGATIVE_TOLERANCE x nominal` are rejected as negative. Interpolated
/// sources (MATR) carry tiny negative values near zero capacity (about -0.5 mAh) that are
/// measurement artefacts, not errors.
pub const NEGATIVE_TOLERANCE: f64 = 0.02;

impl Cell {
    /// Check the cell: positive finite nominal capacity, at least one cycle, no empty cycles,
    /// all present series as long as `voltage_v`, all values finite, no capacity below
    /// `-0.02 x nominal`.
    ///
    /// Returns the first problem found, as [`Error::InvalidData`].
    pub fn validate(&self) -> Result<()> {
        let id = &self.meta.cell_id;
        let nominal = self.meta.nominal_capacity_ah;
        if !(nominal.is_finite() && nominal > 0.0) {
            return Err(invalid(
                id,
                None,
                "nominal_capacity_ah",
                format!("must be > 0, got {nominal}"),
            ));
        }
        if self.cycles.is_empty() {
            return Err(invalid(id, None, "cycles", "the cell has no cycles".into()));
        }
        for cycle in &self.cycles {
            validate_cycle(id, nominal, cycle)?;
        }
        Ok(())
    }
}

fn validate_cycle(id: &str, nominal: f64, cycle: &Cycle) -> Result<()> {
    let n = cycle.len();
    if n == 0 {
        return Err(invalid(
            id,
            Some(cycle.cycle),
            "voltage_v",
            "empty cycle".into(),
        ));
    }
    for (name, series) in cycle.signals() {
        if series.len() != n {
            return Err(invalid(
                id,
                Some(cycle.cycle),
                name,
                format!("length {} differs from voltage_v length {n}", series.len()),
            ));
        }
        if let Some(i) = series.iter().position(|v| !v.is_finite()) {
            return Err(invalid(
                id,
                Some(cycle.cycle),
                name,
                format!("non-finite value {} at sample {i}", series[i]),
            ));
        }
        if name.ends_with("capacity_ah") {
            let floor = -NEGATIVE_TOLERANCE * nominal;
            if let Some(i) = series.iter().position(|&v| v < floor) {
                return Err(invalid(
                    id,
                    Some(cycle.cycle),
                    name,
                    format!("negative capacity {} Ah at sample {i}", series[i]),
                ));
            }
        }
    }
    Ok(())
}

pub(super) fn invalid(id: &str, cycle: Option<u32>, field: &str, reason: String) -> Error {
    Error::InvalidData {
        cell_id: id.to_string(),
        cycle,
        field: field.to_string(),
        reason,
    }
}
