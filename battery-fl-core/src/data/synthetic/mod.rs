//! Seeded synthetic fleets of cycled cells, for tests, examples and federated experiments.
//!
//! [`FleetConfig::generate`] makes several [`Fleet`]s; each fleet is dominated by one or two
//! chemistries and has its own climate and usage pattern (C-rates, depth of discharge), so the
//! fleets are non-IID as real federated clients are. [`CellSpec::generate`] makes a single
//! cell under explicit conditions (for chemistry-transfer experiments and tests).
//!
//! # What a cell carries
//!
//! Early-life cycles numbered `1..=cycles` (default 100), each with every signal present:
//! `time_s`, `voltage_v`, `current_a` (CC-CV charge positive, a short rest at 0, CC discharge
//! negative), `charge_capacity_ah` and `discharge_capacity_ah` (cumulative from 0 within the
//! cycle: the charge capacity stays flat during discharge, the discharge capacity is 0 during
//! charge) and `temperature_c` (ambient plus Joule heating). Metadata: cathode, graphite
//! anode, electrolyte, form factor, nominal capacity, voltage window, ambient temperature,
//! protocol text, composition (mole fractions of the cathode formula) and impurity levels
//! (`Cu`, `Na`, `H2O` in ppm, scattered per cell). `cycle_life` holds the ground truth
//! computed on the aging model (not from the recorded cycles), and `capacity_trajectory`
//! holds the measured discharge capacity of the recorded cycles only, so a label computed
//! from the data of a 100-cycle cell is censored.
//!
//! # The model
//!
//! Terminal voltage is `OCV(soc) +- I R(soc)`, with chemistry-shaped OCV curves
//! ([`Chemistry::ocv`]). One latent degradation rate per cell drives everything:
//!
//! - capacity fade = SEI growth (`sqrt` of cycles, Arrhenius in temperature) + linear loss of
//!   lithium inventory and active material at `rate` per cycle + an accelerating knee that
//!   starts when the linear damage reaches a threshold, i.e. at cycle `threshold / rate`: the
//!   early slope predicts the knee (fast charging lowers the threshold: lithium plating);
//! - resistance grows in proportion to the fade, so the discharge curve sags already in the
//!   first 100 cycles (visible in the Severson variance feature `var(Qd100(V) - Qd10(V))`);
//! - `rate` = chemistry base rate x stress x manufacturing spread, where stress is Arrhenius
//!   in temperature, grows with charge rate (plus lithium plating when charging cold),
//!   discharge rate and depth of discharge (see [`CellSpec::stress_factor`]); wet
//!   electrolyte (the `H2O` impurity) ages cells faster;
//! - the ground-truth `cycle_life` is the first cycle at which the discharge capacity the
//!   cycler would measure (capacity minus what the resistance strands below the cut-off)
//!   is `<= 0.8 x nominal`, found on the model ([`AgingModel::cycle_life`]).
//!
//! Cell-to-cell variation (log-normal unless stated, at `variation = 1`): initial capacity
//! (normal, 0.6 % of nominal), resistance 8 %, aging rate 30 %, knee threshold 30 %, knee
//! width 30 %, SEI rate 25 %, resistance growth 12 %, impurities 15 %. The knee spread is
//! what the early data cannot see. Measurement noise (at `noise = 1`): 0.2 mV on voltage,
//! 0.02 % on current, 0.05 K on temperature, plus cycle-to-cycle jitter of capacity (0.03 %)
//! and resistance (0.3 %).
//!
//! The depth of discharge is a property of the cell's duty cycle and drives aging only: the
//! recorded cycles always span the full voltage window (as a lab cycler or a fleet's periodic
//! capacity check would), so the capacity and the curves stay comparable across cells.
//!
//! # Determinism
//!
//! Cell `j` of fleet `f` draws from `rng::substream(seed, f * 1_000_000 + j)`; cells are
//! generated in parallel with rayon, and the output is bit-identical whatever the thread
//! count. Different seeds give different fleets.
//!
//! ```
//! use battery_fl_core::data::synthetic::{Chemistry, FleetConfig};
//!
//! let config = FleetConfig::default().with_fleets(4).with_cells_per_fleet(5).with_seed(3);
//! let fleets = config.generate()?;
//! assert_eq!(fleets.len(), 4);
//! let cell = &fleets[0].cells[0];
//! assert_eq!(cell.id(), "fleet0-LFP-000");
//! assert_eq!(cell.cycles.len(), 100);
//! cell.validate()?;
//! assert!(cell.has_full_signals());
//! assert!(cell.cycle_life.unwrap() > 100);
//! assert_eq!(fleets[0].chemistries[0], Chemistry::Lfp);
//! // same config, same cells
//! assert_eq!(config.generate()?[0].cells[0], *cell);
//! # Ok::<(), battery_fl_core::Error>(())
//! ```

mod aging;
mod chemistry;
mod cycler;
mod fleet;
mod oracle;

pub use aging::{AgingModel, CellSpec};
pub use chemistry::Chemistry;
pub use fleet::{
    Fleet, FleetConfig, FleetProfile, PUBLIC_CELLS_PER_FLEET, PUBLIC_FLEETS, PUBLIC_SEED,
};
pub use oracle::KneeOracle;

use rand::Rng;

use super::{Cell, CellMeta};
use crate::error::Result;
use crate::rng;

impl CellSpec {
    /// Generate one cell with id `cell_id` from `seed` (manufacturing draw, cycles, noise).
    ///
    /// The same spec, id and seed give a bit-identical cell.
    pub fn generate(&self, cell_id: &str, seed: u64) -> Result<Cell> {
        self.generate_with(cell_id, &mut rng::seeded(seed))
    }

    /// Generate one cell drawing from `rng` (used by fleets, which give each cell a substream).
    pub fn generate_with<R: Rng + ?Sized>(&self, cell_id: &str, rng: &mut R) -> Result<Cell> {
        let model = self.draw_aging(rng)?;
        let cycles: Vec<_> = (1..=self.cycles)
            .map(|n| cycler::simulate_cycle(&model, self, n, rng))
            .collect();
        let mut cell = Cell::new(self.meta(cell_id, &model), cycles);
        cell.cycle_life = Some(model.cycle_life());
        cell.capacity_trajectory = cell
            .cycles
            .iter()
            .map(|c| c.max_discharge_capacity())
            .collect();
        Ok(cell)
    }

    fn meta(&self, cell_id: &str, model: &AgingModel) -> CellMeta {
        let chem = self.chemistry;
        let (v_min, v_max) = chem.voltage_window();
        let mut meta = CellMeta::new(cell_id, chem.nominal_capacity_ah());
        meta.source = Some("battery-fl synthetic".into());
        meta.cathode = Some(chem.name().into());
        meta.anode = Some("graphite".into());
        meta.electrolyte = Some(chem.electrolyte().into());
        meta.form_factor = Some(chem.form_factor().into());
        meta.voltage_min_v = Some(v_min);
        meta.voltage_max_v = Some(v_max);
        meta.temperature_c = Some(self.temperature_c);
        meta.protocol = Some(format!(
            "CC {:.2}C to {v_max} V, CV to C/20, rest 10 min, CC discharge {:.2}C to {v_min} V; \
             duty-cycle depth of discharge {:.0}%",
            self.charge_c_rate,
            self.discharge_c_rate,
            100.0 * self.depth_of_discharge
        ));
        meta.composition = chem.composition();
        meta.purity_ppm = model.impurities_ppm.iter().cloned().collect();
        meta
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn single_cell_is_valid_and_deterministic() {
        let spec = CellSpec::new(Chemistry::Nca).with_cycles(12);
        let a = spec.generate("x", 5).unwrap();
        a.validate().unwrap();
        assert_eq!(a, spec.generate("x", 5).unwrap());
        assert_ne!(a, spec.generate("x", 6).unwrap());
        assert_eq!(a.capacity_trajectory.len(), 12);
        assert_eq!(a.meta.cathode.as_deref(), Some("NCA"));
    }

    #[test]
    fn cycle_has_charge_rest_and_discharge_in_order() {
        let cell = CellSpec::new(Chemistry::Lfp)
            .with_cycles(1)
            .with_noise(0.0)
            .generate("x", 1)
            .unwrap();
        let c = &cell.cycles[0];
        let i = c.current_a.as_deref().unwrap();
        let qc = c.charge_capacity_ah.as_deref().unwrap();
        let qd = c.discharge_capacity_ah.as_deref().unwrap();
        let t = c.time_s.as_deref().unwrap();
        let first_dis = i.iter().position(|&x| x < 0.0).unwrap();
        assert!(i[..first_dis].iter().all(|&x| x >= 0.0));
        assert!(i[first_dis..].iter().all(|&x| x < 0.0));
        assert!(
            i[..first_dis].contains(&0.0),
            "a rest between charge and discharge"
        );
        assert!(qd[..first_dis].iter().all(|&x| x == 0.0));
        assert!(qc[first_dis..].iter().all(|&x| x == qc[first_dis]));
        assert!(t.windows(2).all(|w| w[1] >= w[0]));
        assert!(qc.windows(2).all(|w| w[1] >= w[0]) && qd.windows(2).all(|w| w[1] >= w[0]));
    }
}
