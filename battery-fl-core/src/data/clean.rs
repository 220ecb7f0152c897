//! Repairing or dropping physically implausible cycles, with a report of what was done.

use serde::{Deserialize, Serialize};

use super::Cell;
use crate::error::{Error, Result};

/// Rules for [`Cell::clean`]. Capacities are compared relative to nominal capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CleanConfig {
    /// Cycles with any capacity below `min_capacity_fraction x nominal` are dropped
    /// (default -0.02; smaller negatives are set to 0).
    pub min_capacity_fraction: f64,
    /// Cycles with any capacity above `max_capacity_fraction x nominal` are dropped (default 1.2).
    pub max_capacity_fraction: f64,
    /// A capacity series that falls by more than this many Ah between two samples is
    /// dropped (default 0.01 Ah, the MATR `suspect_cycles` rule); smaller falls are repaired
    /// by a running maximum (capacity counters only count up within a cycle).
    pub max_capacity_fall_ah: f64,
    /// Also drop the cycles the source lists in `suspect_cycles` (default false).
    pub drop_source_suspects: bool,
}

impl Default for CleanConfig {
    fn default() -> Self {
        CleanConfig {
            min_capacity_fraction: -0.02,
            max_capacity_fraction: 1.2,
            max_capacity_fall_ah: 0.01,
            drop_source_suspects: false,
        }
    }
}

impl CleanConfig {
    /// Check the rules are consistent.
    pub fn validate(&self) -> Result<()> {
        if !(self.min_capacity_fraction <= 0.0 && self.min_capacity_fraction.is_finite()) {
            return Err(Error::config(
                "min_capacity_fraction",
                "must be finite and <= 0",
            ));
        }
        if !(self.max_capacity_fraction > 0.0 && self.max_capacity_fraction.is_finite()) {
            return Err(Error::config(
                "max_capacity_fraction",
                "must be finite and > 0",
            ));
        }
        if self.max_capacity_fall_ah.is_nan() || self.max_capacity_fall_ah < 0.0 {
            return Err(Error::config("max_capacity_fall_ah", "must be >= 0"));
        }
        Ok(())
    }
}

/// One thing [`Cell::clean`] did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CleanAction {
    /// The cycle was removed.
    Dropped {
        /// Recorded cycle number.
        cycle: u32,
        /// Why.
        reason: String,
    },
    /// Values in the cycle were changed.
    Repaired {
        /// Recorded cycle number.
        cycle: u32,
        /// The series changed.
        field: String,
        /// How many samples were changed.
        samples: usize,
        /// Largest absolute change, in the series' unit.
        max_change: f64,
    },
}

/// What cleaning one cell did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CleanReport {
    /// The cell.
    pub cell_id: String,
    /// Every action, in cycle order.
    pub actions: Vec<CleanAction>,
}

impl CleanReport {
    /// Recorded numbers of the dropped cycles.
    pub fn dropped(&self) -> Vec<u32> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                CleanAction::Dropped { cycle, .. } => Some(*cycle),
                CleanAction::Repaired { .. } => None,
            })
            .collect()
    }

    /// Number of repaired (cycle, field) pairs.
    pub fn repaired(&self) -> usize {
        self.actions
            .iter()
            .filter(|a| matches!(a, CleanAction::Repaired { .. }))
            .count()
    }
}

impl Cell {
    /// Drop or repair physically implausible cycles in place and report what was done.
    ///
    /// A cycle is dropped when a series holds a non-finite value, a capacity lies outside
    /// `[min, max] x nominal`, or a capacity counter falls by more than
    /// `max_capacity_fall_ah` along the cycle (or when the source flags it and
    /// `drop_source_suspects` is set). Otherwise small negative capacities are set to 0 and
    /// small falls are repaired with a running maximum.
    pub fn clean(&mut self, config: &CleanConfig) -> Result<CleanReport> {
        config.validate()?;
        let nominal = self.meta.nominal_capacity_ah;
        if !(nominal.is_finite() && nominal > 0.0) {
            return Err(super::validate::invalid(
                &self.meta.cell_id,
                None,
                "nominal_capacity_ah",
                format!("must be > 0, got {nominal}"),
            ));
        }
        let (lo, hi) = (
            config.min_capacity_fraction * nominal,
            config.max_capacity_fraction * nominal,
        );
        let mut report = CleanReport {
            cell_id: self.meta.cell_id.clone(),
            actions: Vec::new(),
        };
        let suspects = self.suspect_cycles.clone();
        self.cycles.retain_mut(|cycle| {
            let number = cycle.cycle;
            if config.drop_source_suspects && suspects.contains(&number) {
                report.actions.push(CleanAction::Dropped {
                    cycle: number,
                    reason: "flagged by the source".into(),
                });
                return false;
            }
            if let Some((name, _)) = cycle
                .signals()
                .find(|(_, s)| s.iter().any(|v| !v.is_finite()))
            {
                report.actions.push(CleanAction::Dropped {
                    cycle: number,
                    reason: format!("non-finite {name}"),
                });
                return false;
            }
            let mut repairs = Vec::new();
            for (name, series) in [
                ("charge_capacity_ah", cycle.charge_capacity_ah.as_mut()),
                (
                    "discharge_capacity_ah",
                    cycle.discharge_capacity_ah.as_mut(),
                ),
            ] {
                let Some(series) = series else { continue };
                if let Some(v) = series.iter().find(|&&v| v < lo || v > hi) {
                    report.actions.push(CleanAction::Dropped {
                        cycle: number,
                        reason: format!("{name} {v:.4} Ah outside [{lo:.4}, {hi:.4}] Ah"),
                    });
                    return false;
                }
                let fall = series.windows(2).map(|w| w[0] - w[1]).fold(0.0, f64::max);
                if fall > config.max_capacity_fall_ah {
                    report.actions.push(CleanAction::Dropped {
                        cycle: number,
                        reason: format!("{name} falls by {fall:.4} Ah along the cycle"),
                    });
                    return false;
                }
                let (mut changed, mut max_change, mut running) = (0, 0.0_f64, 0.0_f64);
                for v in series.iter_mut() {
                    let fixed = v.max(running).max(0.0);
                    if fixed != *v {
                        changed += 1;
                        max_change = max_change.max(fixed - *v);
                        *v = fixed;
                    }
                    running = fixed;
                }
                if changed > 0 {
                    repairs.push(CleanAction::Repaired {
                        cycle: number,
                        field: name.into(),
                        samples: changed,
                        max_change,
                    });
                }
            }
            report.actions.extend(repairs);
            true
        });
        Ok(report)
    }
}
