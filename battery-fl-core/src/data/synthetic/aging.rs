//! Cycling conditions ([`CellSpec`]) and the latent aging model of one cell ([`AgingModel`]).

use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

use super::chemistry::{Chemistry, ChemistryParams};
use crate::error::{Error, Result};

/// Reference temperature of the aging and resistance constants, K (25 C).
const T_REF_K: f64 = 298.15;
/// Gas constant, J/(mol K).
const GAS_R: f64 = 8.314;
/// Activation energy of the cell resistance, J/mol.
const RESISTANCE_EA: f64 = 20_000.0;
/// Cap on the modelled fade so that very long simulations stay physical.
const MAX_FADE: f64 = 0.9;
/// The end-of-life threshold of the ground-truth label, as a fraction of nominal capacity.
pub(crate) const EOL_FRACTION: f64 = 0.8;

/// The conditions one synthetic cell is made and cycled under.
///
/// Construct with [`CellSpec::new`] and the `with_*` setters; [`CellSpec::generate`] makes the
/// cell. Defaults: 1C charge, 1C discharge, 25 C, depth of discharge 1.0, 100 cycles,
/// 200 samples per cycle, noise and manufacturing variation at their standard levels (1.0).
///
/// ```
/// use battery_fl_core::data::synthetic::{CellSpec, Chemistry};
///
/// let spec = CellSpec::new(Chemistry::Nmc).with_charge_c_rate(2.0).with_temperature_c(35.0);
/// let cell = spec.generate("demo-NMC-000", 7)?;
/// assert_eq!(cell.cycles.len(), 100);
/// assert!(cell.cycle_life.unwrap() > 100);
/// # Ok::<(), battery_fl_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CellSpec {
    /// Cathode chemistry (default LFP).
    pub chemistry: Chemistry,
    /// Constant-current charge rate, multiples of nominal capacity per hour (default 1.0;
    /// allowed 0.1..=6).
    pub charge_c_rate: f64,
    /// Constant-current discharge rate, C (default 1.0; allowed 0.1..=6).
    pub discharge_c_rate: f64,
    /// Ambient (chamber) temperature, degrees C (default 25; allowed -20..=60).
    pub temperature_c: f64,
    /// Depth of discharge of the cell's duty cycle, fraction (default 1.0; allowed 0.1..=1).
    /// It drives aging only: the recorded cycles always span the full voltage window, as a
    /// cycler logging capacity would (see the module docs).
    pub depth_of_discharge: f64,
    /// Number of recorded cycles, numbered 1..=cycles (default 100; allowed 1..=5000).
    pub cycles: u32,
    /// Samples per recorded cycle (default 200; allowed 40..=5000).
    pub points_per_cycle: usize,
    /// Scale of measurement noise and cycle-to-cycle jitter (default 1.0; 0 = noise-free).
    pub noise: f64,
    /// Scale of cell-to-cell manufacturing variation (default 1.0; 0 = the nominal cell).
    pub variation: f64,
}

impl Default for CellSpec {
    fn default() -> Self {
        CellSpec::new(Chemistry::Lfp)
    }
}

impl CellSpec {
    /// A spec for `chemistry` with the default conditions.
    pub fn new(chemistry: Chemistry) -> Self {
        CellSpec {
            chemistry,
            charge_c_rate: 1.0,
            discharge_c_rate: 1.0,
            temperature_c: 25.0,
            depth_of_discharge: 1.0,
            cycles: 100,
            points_per_cycle: 200,
            noise: 1.0,
            variation: 1.0,
        }
    }

    /// Set the charge C-rate.
    pub fn with_charge_c_rate(mut self, c: f64) -> Self {
        self.charge_c_rate = c;
        self
    }

    /// Set the discharge C-rate.
    pub fn with_discharge_c_rate(mut self, c: f64) -> Self {
        self.discharge_c_rate = c;
        self
    }

    /// Set the ambient temperature, degrees C.
    pub fn with_temperature_c(mut self, t: f64) -> Self {
        self.temperature_c = t;
        self
    }

    /// Set the depth of discharge.
    pub fn with_depth_of_discharge(mut self, dod: f64) -> Self {
        self.depth_of_discharge = dod;
        self
    }

    /// Set the number of recorded cycles.
    pub fn with_cycles(mut self, n: u32) -> Self {
        self.cycles = n;
        self
    }

    /// Set the samples per cycle.
    pub fn with_points_per_cycle(mut self, n: usize) -> Self {
        self.points_per_cycle = n;
        self
    }

    /// Set the noise scale (0 = noise-free).
    pub fn with_noise(mut self, scale: f64) -> Self {
        self.noise = scale;
        self
    }

    /// Set the manufacturing-variation scale (0 = every cell is the nominal cell).
    pub fn with_variation(mut self, scale: f64) -> Self {
        self.variation = scale;
        self
    }

    /// Check the values; returns [`Error::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let in_range = |field: &str, v: f64, lo: f64, hi: f64| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(Error::config(
                    field,
                    format!("must be in [{lo}, {hi}], got {v}"),
                ))
            }
        };
        in_range("charge_c_rate", self.charge_c_rate, 0.1, 6.0)?;
        in_range("discharge_c_rate", self.discharge_c_rate, 0.1, 6.0)?;
        in_range("temperature_c", self.temperature_c, -20.0, 60.0)?;
        in_range("depth_of_discharge", self.depth_of_discharge, 0.1, 1.0)?;
        in_range("noise", self.noise, 0.0, 10.0)?;
        in_range("variation", self.variation, 0.0, 3.0)?;
        if !(1..=5000).contains(&self.cycles) {
            return Err(Error::config(
                "cycles",
                format!("must be in 1..=5000, got {}", self.cycles),
            ));
        }
        if !(40..=5000).contains(&self.points_per_cycle) {
            return Err(Error::config(
                "points_per_cycle",
                format!("must be in 40..=5000, got {}", self.points_per_cycle),
            ));
        }
        Ok(())
    }

    /// Multiplier of the cyclic aging rate from the conditions alone (1 at 1C/1C, 25 C, full
    /// depth): Arrhenius in temperature, lithium plating when charging cold and fast, and
    /// power laws in charge rate, discharge rate and depth of discharge.
    pub fn stress_factor(&self) -> f64 {
        let p = self.chemistry.params();
        let c_ch = self.charge_c_rate;
        let f_temp = arrhenius(p.aging_ea, self.temperature_c);
        let f_plating = 1.0 + 1.5 * (c_ch - 0.3).max(0.0) * (-self.temperature_c / 10.0).exp();
        let f_charge = 0.7 + 0.3 * c_ch.powf(1.6);
        let f_discharge = 0.8 + 0.2 * self.discharge_c_rate;
        let f_dod = 0.5 + 0.5 * self.depth_of_discharge * self.depth_of_discharge;
        f_temp * f_plating * f_charge * f_discharge * f_dod
    }

    /// Ground-truth cycle life of the nominal cell (no manufacturing variation) under this
    /// spec: what [`CellSpec::generate`] would record with `variation = 0`.
    pub fn nominal_cycle_life(&self) -> Result<u32> {
        self.validate()?;
        Ok(AgingModel::nominal(self).cycle_life())
    }

    /// The aging model of one cell drawn from `rng` (manufacturing variation scaled by
    /// `variation`). Draws the same number of values whatever the spec, so two specs with the
    /// same seed get the same manufacturing deviations.
    pub fn draw_aging<R: Rng + ?Sized>(&self, rng: &mut R) -> Result<AgingModel> {
        self.validate()?;
        let mut z = [0.0; 10];
        for zi in &mut z {
            *zi = rng.sample::<f64, _>(StandardNormal) * self.variation;
        }
        Ok(AgingModel::from_deviations(self, &z))
    }
}

/// Arrhenius acceleration factor relative to 25 C.
fn arrhenius(ea: f64, temperature_c: f64) -> f64 {
    (ea / GAS_R * (1.0 / T_REF_K - 1.0 / (temperature_c + 273.15))).exp()
}

/// The latent state of one cell: its manufacturing draw and degradation rates under its
/// conditions. Capacity fade and resistance growth are closed-form in the cycle number.
///
/// Fade (fraction of initial capacity) after `n` cycles:
/// `sei * sqrt(n) + rate * n + rate * (n - n_knee)^2 / (2 * width * n_knee)` (last term only
/// past the knee `n_knee = knee_damage / rate`), capped at 0.9. Resistance:
/// `r0 * (1 + growth * fade(n))`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgingModel {
    /// Initial capacity, Ah.
    pub initial_capacity_ah: f64,
    /// Nominal capacity, Ah.
    pub nominal_capacity_ah: f64,
    /// Initial resistance at the cell's temperature, ohm.
    pub initial_resistance_ohm: f64,
    /// SEI (square-root) fade coefficient.
    pub sei: f64,
    /// Linear (loss of active material and lithium inventory) fade rate per cycle.
    pub rate: f64,
    /// Knee onset cycle.
    pub knee_cycle: f64,
    /// Knee width relative to the knee cycle.
    pub knee_width: f64,
    /// Relative resistance growth per unit fade.
    pub resistance_growth: f64,
    /// Impurity levels of this cell, ppm (`Cu`, `Na`, `H2O`).
    pub impurities_ppm: Vec<(String, f64)>,
    /// Chemistry.
    pub chemistry: Chemistry,
    /// Discharge current, A (positive number).
    pub discharge_current_a: f64,
}

impl AgingModel {
    fn nominal(spec: &CellSpec) -> Self {
        AgingModel::from_deviations(spec, &[0.0; 10])
    }

    /// The model from standard-normal deviations `z` (already scaled by the variation).
    fn from_deviations(spec: &CellSpec, z: &[f64; 10]) -> Self {
        let chem = spec.chemistry;
        let p: ChemistryParams = chem.params();
        let impurities: Vec<(String, f64)> = chem
            .typical_impurities_ppm()
            .iter()
            .zip(&z[6..9])
            .map(|(&(name, base), &zi)| (name.to_string(), base * (0.15 * zi).exp()))
            .collect();
        // wet electrolyte (HF) speeds up aging: the water level is informative
        let moisture = (0.15 * z[8]).exp().powf(0.5);
        let stress = spec.stress_factor();
        // linear rate such that the nominal cell at reference conditions lives ~reference_life
        let base_rate = p.knee_damage * knee_life_multiple(p.knee_width) / p.reference_life;
        // the stress enters damped (exponent 0.6) so lifetimes span roughly 150-3500 cycles,
        // like the public multi-chemistry sets, instead of decades
        let rate = base_rate * stress.powf(0.6) * (0.3 * z[0]).exp() * moisture;
        let knee_damage = knee_damage(spec, &p, z[1]);
        let sei = p.sei * arrhenius(p.aging_ea, spec.temperature_c) * (0.25 * z[2]).exp();
        let r0 = p.r0_ohm
            * (RESISTANCE_EA / GAS_R * (1.0 / (spec.temperature_c + 273.15) - 1.0 / T_REF_K)).exp()
            * (0.08 * z[3]).exp();
        AgingModel {
            initial_capacity_ah: p.nominal_ah * (p.initial_capacity + 0.006 * z[4]),
            nominal_capacity_ah: p.nominal_ah,
            initial_resistance_ohm: r0,
            sei,
            rate,
            knee_cycle: knee_damage / rate,
            knee_width: knee_width(&p, z[9]),
            resistance_growth: p.resistance_growth * (0.12 * z[5]).exp(),
            impurities_ppm: impurities,
            chemistry: chem,
            discharge_current_a: spec.discharge_c_rate * p.nominal_ah,
        }
    }

    /// The same cell with its knee drawn again: threshold and width deviations `z_threshold`
    /// and `z_width` (standard normal; scaled here by `spec.variation`, as the cell's own
    /// draw was). Everything else (capacity, resistance, SEI, the linear rate: all that the
    /// first cycles show while the knee lies beyond them) stays. `spec` is the cell's own.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `spec` is of another chemistry than the cell.
    pub fn with_knee(&self, spec: &CellSpec, z_threshold: f64, z_width: f64) -> Result<Self> {
        if spec.chemistry != self.chemistry {
            return Err(Error::config(
                "spec",
                format!(
                    "a {} spec for a {} cell's knee",
                    spec.chemistry.name(),
                    self.chemistry.name()
                ),
            ));
        }
        let p = spec.chemistry.params();
        Ok(AgingModel {
            knee_cycle: knee_damage(spec, &p, spec.variation * z_threshold) / self.rate,
            knee_width: knee_width(&p, spec.variation * z_width),
            ..self.clone()
        })
    }

    /// Capacity fade after `n` cycles, fraction of the initial capacity.
    pub fn fade(&self, n: f64) -> f64 {
        let n = n.max(0.0);
        let mut f = self.sei * n.sqrt() + self.rate * n;
        if n > self.knee_cycle {
            let d = n - self.knee_cycle;
            f += self.rate * d * d / (2.0 * self.knee_width * self.knee_cycle);
        }
        f.min(MAX_FADE)
    }

    /// Capacity after `n` cycles (noise-free), Ah.
    pub fn capacity_ah(&self, n: f64) -> f64 {
        self.initial_capacity_ah * (1.0 - self.fade(n))
    }

    /// Resistance after `n` cycles (noise-free), ohm.
    pub fn resistance_ohm(&self, n: f64) -> f64 {
        self.initial_resistance_ohm * (1.0 + self.resistance_growth * self.fade(n))
    }

    /// Discharge capacity the cycler measures at cycle `n` (noise-free), Ah: the capacity
    /// minus what the resistance strands below the lower cut-off at the discharge current.
    pub fn measured_capacity_ah(&self, n: f64) -> f64 {
        let s_end = discharge_end_soc(
            self.chemistry,
            self.discharge_current_a,
            self.resistance_ohm(n),
        );
        self.capacity_ah(n) * (1.0 - s_end)
    }

    /// Ground-truth cycle life: the first cycle whose measured discharge capacity is
    /// `<= 0.8 x nominal`, found on the model (not on recorded cycles). Saturates at
    /// `u32::MAX` (never reached in practice: the knee makes fade grow without bound).
    pub fn cycle_life(&self) -> u32 {
        let threshold = EOL_FRACTION * self.nominal_capacity_ah;
        let dead = |n: u64| self.measured_capacity_ah(n as f64) <= threshold;
        if dead(1) {
            return 1;
        }
        // exponential search for a dead cycle, then bisection (capacity is monotone)
        let mut hi: u64 = 2;
        while !dead(hi) {
            if hi >= u64::from(u32::MAX) {
                return u32::MAX;
            }
            hi *= 2;
        }
        let mut lo = hi / 2;
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if dead(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        u32::try_from(hi).unwrap_or(u32::MAX)
    }
}

/// Linear damage at which the knee starts, for threshold deviation `z` (scaled): fast
/// charging brings the plating knee forward, beyond what the early rate shows.
fn knee_damage(spec: &CellSpec, p: &ChemistryParams, z: f64) -> f64 {
    let plating_knee = 1.0 + 0.3 * (spec.charge_c_rate - 1.0).max(0.0);
    p.knee_damage * (0.3 * z).exp() / plating_knee
}

/// Knee width relative to the knee cycle, for width deviation `z` (scaled).
fn knee_width(p: &ChemistryParams, z: f64) -> f64 {
    p.knee_width * (0.3 * z).exp()
}

/// Cycle life of the nominal cell in units of its knee cycle (ignoring SEI): the `x + 1`
/// solving `k (1 + x + x^2 / (2 w)) = 0.2` for `k ~ 0.085`. Calibrates the base rate so that
/// `reference_life` is roughly the life at reference conditions.
fn knee_life_multiple(width: f64) -> f64 {
    // 0.2 / 0.085 ~ 2.35 = 1 + x + x^2/(2w)
    let c = 2.35 - 1.0;
    let a = 1.0 / (2.0 * width);
    1.0 + (-1.0 + (1.0 + 4.0 * a * c).sqrt()) / (2.0 * a)
}

/// Resistance profile over state of charge: charge transfer and diffusion slow down near empty.
pub(crate) fn resistance_shape(soc: f64) -> f64 {
    1.0 + 0.8 * (-soc.max(0.0) / 0.1).exp()
}

/// State of charge at which a constant-current discharge at `current_a` meets the lower
/// cut-off with resistance `r_ohm` (0 when the OCV would allow a full discharge; close to 1
/// when the cell can hardly be discharged).
pub(crate) fn discharge_end_soc(chem: Chemistry, current_a: f64, r_ohm: f64) -> f64 {
    let v_min = chem.params().v_min;
    let f = |s: f64| chem.ocv(s) - current_a * r_ohm * resistance_shape(s) - v_min;
    if f(0.0) >= 0.0 {
        return 0.0;
    }
    if f(0.999) <= 0.0 {
        return 0.999;
    }
    bisect(f, 0.0, 0.999)
}

/// State of charge at which constant-current charging at `current_a` reaches the upper limit,
/// searched in `[from, 0.999]`.
pub(crate) fn charge_cv_soc(chem: Chemistry, current_a: f64, r_ohm: f64, from: f64) -> f64 {
    let v_max = chem.params().v_max;
    let f = |s: f64| chem.ocv(s) + current_a * r_ohm * resistance_shape(s) - v_max;
    if f(from) >= 0.0 {
        return from;
    }
    if f(0.999) <= 0.0 {
        return 0.999;
    }
    bisect(f, from, 0.999)
}

/// Root of an increasing `f` on `[lo, hi]` with `f(lo) < 0 < f(hi)`.
fn bisect(f: impl Fn(f64) -> f64, mut lo: f64, mut hi: f64) -> f64 {
    for _ in 0..50 {
        let mid = 0.5 * (lo + hi);
        if f(mid) < 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-10 {
            break;
        }
    }
    0.5 * (lo + hi)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fade_is_monotone_with_a_knee() {
        let m = CellSpec::new(Chemistry::Nmc)
            .with_variation(0.0)
            .draw_aging(&mut crate::rng::seeded(1))
            .unwrap();
        let mut prev = 0.0;
        for n in 1..3000 {
            let f = m.fade(n as f64);
            assert!(f >= prev);
            prev = f;
        }
        // well past the knee the fade runs much faster than early in life
        let k = m.knee_cycle;
        let early = m.fade(100.0) - m.fade(50.0);
        let late = m.fade(1.6 * k) - m.fade(1.6 * k - 50.0);
        assert!(late > 1.8 * early, "early {early} late {late}");
        assert!(m.fade(k) < 0.2 && f64::from(m.cycle_life()) > k);
    }

    #[test]
    fn nominal_lives_are_in_a_plausible_range() {
        for chem in Chemistry::ALL {
            let life = CellSpec::new(chem).nominal_cycle_life().unwrap();
            let reference = chem.params().reference_life;
            assert!(
                (life as f64) > 0.6 * reference && (life as f64) < 1.4 * reference,
                "{chem}: {life} vs {reference}"
            );
        }
    }

    #[test]
    fn discharge_end_soc_grows_with_resistance() {
        let a = discharge_end_soc(Chemistry::Nmc, 2.5, 0.03);
        let b = discharge_end_soc(Chemistry::Nmc, 2.5, 0.3);
        assert!(a < b && a < 0.1);
    }
}
