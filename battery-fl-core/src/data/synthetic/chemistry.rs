//! Cathode chemistries: open-circuit voltage curves, cell formats and aging constants.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A cathode chemistry the generator can simulate (graphite anode in every case).
///
/// Each chemistry fixes the cell format (nominal capacity, voltage window, form factor,
/// electrolyte, composition, typical impurity levels), the shape of the open-circuit voltage
/// (OCV) curve and the aging constants. LFP has the flat two-phase plateau near 3.2-3.3 V;
/// the layered oxides (NMC, NCA, LCO) slope over 3.5-4.2 V.
///
/// ```
/// use battery_fl_core::data::synthetic::Chemistry;
///
/// let lfp = Chemistry::Lfp;
/// assert_eq!(lfp.name(), "LFP");
/// assert_eq!(lfp.voltage_window(), (2.0, 3.6));
/// // flat plateau: the OCV hardly moves between 20 % and 80 % state of charge
/// assert!(lfp.ocv(0.8) - lfp.ocv(0.2) < 0.1);
/// assert!(Chemistry::Nmc.ocv(0.8) - Chemistry::Nmc.ocv(0.2) > 0.3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Chemistry {
    /// Lithium iron phosphate, LiFePO4 (1.1 Ah 18650, 2.0-3.6 V).
    #[serde(rename = "LFP")]
    Lfp,
    /// Nickel manganese cobalt oxide, NMC811 (2.5 Ah 18650, 3.0-4.2 V).
    #[serde(rename = "NMC")]
    Nmc,
    /// Nickel cobalt aluminium oxide (3.0 Ah 18650, 2.7-4.2 V).
    #[serde(rename = "NCA")]
    Nca,
    /// Lithium cobalt oxide (1.1 Ah pouch, 3.0-4.2 V).
    #[serde(rename = "LCO")]
    Lco,
}

/// Fixed per-chemistry constants of the simulation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChemistryParams {
    /// Nominal capacity, Ah.
    pub nominal_ah: f64,
    /// Lower / upper voltage limit, V.
    pub v_min: f64,
    pub v_max: f64,
    /// Initial capacity of the nominal cell, multiples of nominal capacity.
    pub initial_capacity: f64,
    /// Ohmic + charge-transfer resistance of a fresh cell at 25 C, ohm.
    pub r0_ohm: f64,
    /// Approximate cycle life at reference conditions (1C/1C, 25 C, full depth).
    pub reference_life: f64,
    /// Linear damage at which the knee starts (fraction of capacity).
    pub knee_damage: f64,
    /// Knee width relative to the knee cycle (smaller = sharper knee).
    pub knee_width: f64,
    /// SEI (square-root-of-cycles) fade coefficient at 25 C.
    pub sei: f64,
    /// Relative resistance growth per unit of capacity fade.
    pub resistance_growth: f64,
    /// Activation energy of the aging rates, J/mol.
    pub aging_ea: f64,
}

impl Chemistry {
    /// All chemistries, in a fixed order.
    pub const ALL: [Chemistry; 4] = [
        Chemistry::Lfp,
        Chemistry::Nmc,
        Chemistry::Nca,
        Chemistry::Lco,
    ];

    /// Short upper-case name as used in `CellMeta::cathode` (`"LFP"`, `"NMC"`, `"NCA"`,
    /// `"LCO"`).
    pub fn name(self) -> &'static str {
        match self {
            Chemistry::Lfp => "LFP",
            Chemistry::Nmc => "NMC",
            Chemistry::Nca => "NCA",
            Chemistry::Lco => "LCO",
        }
    }

    /// The chemistry named by `name` (case-insensitive; `"NMC811"` and similar variants
    /// with a suffix are accepted), if known.
    pub fn from_name(name: &str) -> Option<Chemistry> {
        let upper = name.trim().to_ascii_uppercase();
        Chemistry::ALL
            .into_iter()
            .find(|c| upper.starts_with(c.name()))
    }

    /// Nominal capacity, Ah (LFP 1.1, NMC 2.5, NCA 3.0, LCO 1.1).
    pub fn nominal_capacity_ah(self) -> f64 {
        self.params().nominal_ah
    }

    /// Voltage window `(min, max)`, V (LFP 2.0-3.6, NMC 3.0-4.2, NCA 2.7-4.2, LCO 3.0-4.2).
    pub fn voltage_window(self) -> (f64, f64) {
        let p = self.params();
        (p.v_min, p.v_max)
    }

    /// Open-circuit voltage of the full cell at state of charge `soc` (0 = empty, 1 = full;
    /// clamped to `[0, 1]`), V. Rises steeply near empty so that a discharge always meets
    /// the lower cut-off, and stays just below the upper limit at full charge.
    pub fn ocv(self, soc: f64) -> f64 {
        let s = soc.clamp(0.0, 1.0);
        match self {
            // two-phase plateau with a small graphite staging step
            Chemistry::Lfp => {
                3.25 + 0.06 * s + 0.02 * ((s - 0.6) / 0.03).tanh() - 1.4 * (-s / 0.03).exp()
                    + 0.25 * ((s - 1.0) / 0.02).exp()
            }
            Chemistry::Nmc => {
                3.45 + 0.45 * s + 0.27 * s * s * s - 0.9 * (-s / 0.04).exp()
                    + 0.02 * ((s - 1.0) / 0.03).exp()
            }
            Chemistry::Nca => {
                3.35 + 0.55 * s + 0.27 * s * s * s - 0.9 * (-s / 0.04).exp()
                    + 0.01 * ((s - 1.0) / 0.03).exp()
            }
            Chemistry::Lco => {
                let s2 = s * s;
                3.55 + 0.5 * s + 0.13 * s2 * s2 - 0.8 * (-s / 0.04).exp()
            }
        }
    }

    /// Form factor text for `CellMeta::form_factor`.
    pub fn form_factor(self) -> &'static str {
        match self {
            Chemistry::Lco => "pouch",
            _ => "cylindrical 18650",
        }
    }

    /// Electrolyte text for `CellMeta::electrolyte`.
    pub fn electrolyte(self) -> &'static str {
        match self {
            Chemistry::Lfp => "1 M LiPF6 in EC:DMC",
            Chemistry::Nmc => "1.2 M LiPF6 in EC:EMC + 2% VC",
            Chemistry::Nca => "1.2 M LiPF6 in EC:DMC:EMC",
            Chemistry::Lco => "1 M LiPF6 in EC:DEC",
        }
    }

    /// Cathode composition as mole fractions over the formula unit (LiFePO4,
    /// LiNi0.8Mn0.1Co0.1O2, LiNi0.8Co0.15Al0.05O2, LiCoO2); the fractions sum to 1.
    pub fn composition(self) -> BTreeMap<String, f64> {
        let formula: &[(&str, f64)] = match self {
            Chemistry::Lfp => &[("Li", 1.0), ("Fe", 1.0), ("P", 1.0), ("O", 4.0)],
            Chemistry::Nmc => &[
                ("Li", 1.0),
                ("Ni", 0.8),
                ("Mn", 0.1),
                ("Co", 0.1),
                ("O", 2.0),
            ],
            Chemistry::Nca => &[
                ("Li", 1.0),
                ("Ni", 0.8),
                ("Co", 0.15),
                ("Al", 0.05),
                ("O", 2.0),
            ],
            Chemistry::Lco => &[("Li", 1.0), ("Co", 1.0), ("O", 2.0)],
        };
        let total: f64 = formula.iter().map(|e| e.1).sum();
        formula
            .iter()
            .map(|&(e, n)| (e.to_string(), n / total))
            .collect()
    }

    /// Typical impurity levels, ppm: copper and sodium in the cathode powder, water in the
    /// electrolyte. Cells scatter around these (see the module docs).
    pub fn typical_impurities_ppm(self) -> [(&'static str, f64); 3] {
        match self {
            Chemistry::Lfp => [("Cu", 8.0), ("Na", 60.0), ("H2O", 15.0)],
            Chemistry::Nmc => [("Cu", 5.0), ("Na", 40.0), ("H2O", 12.0)],
            Chemistry::Nca => [("Cu", 5.0), ("Na", 35.0), ("H2O", 10.0)],
            Chemistry::Lco => [("Cu", 10.0), ("Na", 80.0), ("H2O", 20.0)],
        }
    }

    pub(crate) fn params(self) -> ChemistryParams {
        match self {
            Chemistry::Lfp => ChemistryParams {
                nominal_ah: 1.1,
                initial_capacity: 1.01,
                v_min: 2.0,
                v_max: 3.6,
                r0_ohm: 0.018,
                reference_life: 2000.0,
                knee_damage: 0.08,
                knee_width: 0.3,
                sei: 3.0e-4,
                resistance_growth: 4.0,
                aging_ea: 35_000.0,
            },
            Chemistry::Nmc => ChemistryParams {
                nominal_ah: 2.5,
                initial_capacity: 1.03,
                v_min: 3.0,
                v_max: 4.2,
                r0_ohm: 0.030,
                reference_life: 1300.0,
                knee_damage: 0.09,
                knee_width: 0.35,
                sei: 4.0e-4,
                resistance_growth: 3.0,
                aging_ea: 32_000.0,
            },
            Chemistry::Nca => ChemistryParams {
                nominal_ah: 3.0,
                initial_capacity: 1.03,
                v_min: 2.7,
                v_max: 4.2,
                r0_ohm: 0.035,
                reference_life: 1000.0,
                knee_damage: 0.09,
                knee_width: 0.3,
                sei: 4.5e-4,
                resistance_growth: 3.0,
                aging_ea: 32_000.0,
            },
            Chemistry::Lco => ChemistryParams {
                nominal_ah: 1.1,
                initial_capacity: 1.02,
                v_min: 3.0,
                v_max: 4.2,
                r0_ohm: 0.080,
                reference_life: 800.0,
                knee_damage: 0.1,
                knee_width: 0.35,
                sei: 5.0e-4,
                resistance_growth: 3.5,
                aging_ea: 30_000.0,
            },
        }
    }
}

impl fmt::Display for Chemistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ocv_is_increasing_and_inside_the_window_at_full_charge() {
        for chem in Chemistry::ALL {
            let (lo, hi) = chem.voltage_window();
            let mut prev = f64::NEG_INFINITY;
            for k in 0..=1000 {
                let v = chem.ocv(k as f64 / 1000.0);
                assert!(v > prev, "{chem} not increasing at {k}");
                prev = v;
            }
            assert!(
                chem.ocv(0.0) < lo,
                "{chem} empty OCV must be below the cut-off"
            );
            assert!(chem.ocv(1.0) < hi && chem.ocv(1.0) > hi - 0.05, "{chem}");
        }
    }

    #[test]
    fn names_round_trip_and_composition_sums_to_one() {
        for chem in Chemistry::ALL {
            assert_eq!(Chemistry::from_name(chem.name()), Some(chem));
            let total: f64 = chem.composition().values().sum();
            assert!((total - 1.0).abs() < 1e-12);
        }
        assert_eq!(Chemistry::from_name("nmc811"), Some(Chemistry::Nmc));
        assert_eq!(Chemistry::from_name("LMO"), None);
    }
}
