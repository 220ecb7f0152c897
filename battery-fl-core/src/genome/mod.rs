//! Genome fingerprints: what a cell is, independent of who operates it.
//!
//! A [`GenomeFingerprint`] records chemistry (cathode, anode, electrolyte), form factor,
//! nominal capacity, voltage window, composition and purity where known, and an
//! electrochemical [`Signature`] computed from the cell's own early data. Fingerprints have a
//! [`distance`](GenomeFingerprint::distance) with documented, configurable
//! [`GenomeWeights`], and a [`GenomeIndex`] answers "which k fingerprints are nearest", used
//! to pick inference references that resemble a target and to group fleets like with like.
//!
//! ```
//! use battery_fl_core::data::synthetic::FleetConfig;
//! use battery_fl_core::genome::{GenomeFingerprint, GenomeIndex};
//!
//! let cells: Vec<_> = FleetConfig::default().with_fleets(2).with_cells_per_fleet(4)
//!     .generate()?.into_iter().flat_map(|f| f.cells).collect();
//! let fps = cells.iter().map(GenomeFingerprint::from_cell).collect::<Result<Vec<_>, _>>()?;
//! let a = &fps[0];
//! assert_eq!(a.distance(a), 0.0);
//! assert_eq!(a.distance(&fps[1]), fps[1].distance(a));
//!
//! let index = GenomeIndex::new(fps.clone());
//! let nearest = index.nearest(a, 3);
//! assert_eq!(nearest[0].0, 0); // a cell is its own nearest neighbour
//! assert!(nearest.windows(2).all(|w| w[0].1 <= w[1].1));
//! # Ok::<(), battery_fl_core::Error>(())
//! ```

mod distance;
mod signature;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use distance::{GenomeIndex, GenomeWeights};
pub use signature::{Peak, Signature, SignatureConfig};

use crate::data::Cell;
use crate::error::{Error, Result};

/// What a cell is: chemistry, build, and its own early electrochemical signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenomeFingerprint {
    /// The cell this fingerprint was taken from.
    pub cell_id: String,
    /// Cathode chemistry, upper-cased (`LFP`, `NMC`, ...), when known.
    pub cathode: Option<String>,
    /// Anode material, lower-cased, when known.
    pub anode: Option<String>,
    /// Electrolyte, lower-cased, when known.
    pub electrolyte: Option<String>,
    /// Form factor class, lower-cased first word (`cylindrical`, `prismatic`, `pouch`), when
    /// known.
    pub form_factor: Option<String>,
    /// Nominal capacity, Ah.
    pub nominal_capacity_ah: f64,
    /// Voltage window (min, max), V, when known.
    pub voltage_window: Option<(f64, f64)>,
    /// Elemental composition (element -> fraction); empty when unknown.
    pub composition: BTreeMap<String, f64>,
    /// Impurities (impurity -> ppm); empty when unknown.
    pub purity_ppm: BTreeMap<String, f64>,
    /// Electrochemical signature from an early discharge.
    pub signature: Signature,
}

impl GenomeFingerprint {
    /// Fingerprint a cell with the default [`SignatureConfig`].
    pub fn from_cell(cell: &Cell) -> Result<Self> {
        Self::from_cell_with(cell, &SignatureConfig::default())
    }

    /// Fingerprint a cell; works on full-signal cells and on discharge-only cells (MATR).
    pub fn from_cell_with(cell: &Cell, config: &SignatureConfig) -> Result<Self> {
        let m = &cell.meta;
        if !(m.nominal_capacity_ah.is_finite() && m.nominal_capacity_ah > 0.0) {
            return Err(Error::InvalidData {
                cell_id: m.cell_id.clone(),
                cycle: None,
                field: "nominal_capacity_ah".into(),
                reason: format!("must be > 0, got {}", m.nominal_capacity_ah),
            });
        }
        let norm = |s: &Option<String>, upper: bool| {
            s.as_ref().map(|s| {
                if upper {
                    s.trim().to_uppercase()
                } else {
                    s.trim().to_lowercase()
                }
            })
        };
        Ok(GenomeFingerprint {
            cell_id: m.cell_id.clone(),
            cathode: norm(&m.cathode, true),
            anode: norm(&m.anode, false),
            electrolyte: norm(&m.electrolyte, false),
            form_factor: m
                .form_factor
                .as_ref()
                .and_then(|f| f.split_whitespace().next().map(str::to_lowercase)),
            nominal_capacity_ah: m.nominal_capacity_ah,
            voltage_window: m.voltage_min_v.zip(m.voltage_max_v),
            composition: m.composition.clone(),
            purity_ppm: m.purity_ppm.clone(),
            signature: Signature::from_cell(cell, config)?,
        })
    }

    /// Distance with the default [`GenomeWeights`].
    pub fn distance(&self, other: &Self) -> f64 {
        GenomeWeights::default().distance(self, other)
    }
}
