//! Fleets: groups of cells with a shared climate, usage pattern and chemistry mix.

use rand::Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{AgingModel, CellSpec, Chemistry};
use crate::data::Cell;
use crate::error::{Error, Result};
use crate::rng;

/// Substream stride between fleets: cell `j` of fleet `f` uses stream `f * STRIDE + j`.
const STRIDE: u64 = 1_000_000;

/// Seed of the library's public synthetic cells ([`FleetConfig::generate_public`]): anyone
/// can make them, so a model may learn from them outside any privacy guarantee.
pub const PUBLIC_SEED: u64 = 9000;

/// Fleets of the library's public synthetic set (5: one per profile of the five default
/// fleets, so the statistics and branch B's references of a record-private run span their
/// conditions; a sixth built-in profile, the desert vans, is not among them). With the first
/// two profiles only, a federation's private models erred 14-33 % more on another draw of
/// the fleets (BENCHMARKS.md, session 21).
pub const PUBLIC_FLEETS: usize = 5;

/// Cells per fleet of the library's public synthetic set.
pub const PUBLIC_CELLS_PER_FLEET: usize = 12;

/// How a fleet's cells are used: climate, C-rate and depth-of-discharge ranges and the
/// chemistry mix. Cells draw their conditions uniformly from the ranges (temperature:
/// ambient plus a normal spread).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetProfile {
    /// Short description of the operator.
    pub name: String,
    /// Climate label (`temperate`, `hot`, `cold`, ...).
    pub climate: String,
    /// Mean ambient temperature, degrees C.
    pub ambient_temperature_c: f64,
    /// Standard deviation of the cells' temperatures around the ambient, K.
    pub temperature_spread_c: f64,
    /// Charge C-rate range `[lo, hi]`.
    pub charge_c_rate: [f64; 2],
    /// Discharge C-rate range `[lo, hi]`.
    pub discharge_c_rate: [f64; 2],
    /// Depth-of-discharge range `[lo, hi]`.
    pub depth_of_discharge: [f64; 2],
    /// Chemistry shares (positive weights, normalized when used), dominant first.
    pub mix: Vec<(Chemistry, f64)>,
}

impl FleetProfile {
    /// The six built-in fleet archetypes (index taken modulo 6; later rounds are 2 K warmer
    /// per round):
    ///
    /// | # | operator | climate | chemistries | charge C | discharge C | DoD |
    /// | --- | --- | --- | --- | --- | --- | --- |
    /// | 0 | bus depot, fast charging | temperate 25 C | LFP 80 %, NMC 20 % | 1-3.5 | 1-3 | 0.8-1 |
    /// | 1 | e-scooter sharing | hot 38 C | NMC 70 %, NCA 30 % | 0.5-2 | 0.5-2.5 | 0.5-1 |
    /// | 2 | passenger EVs | cold 5 C | NCA 75 %, NMC 25 % | 0.3-1.5 | 0.3-1.5 | 0.6-0.9 |
    /// | 3 | consumer electronics | warm indoor 30 C | LCO 80 %, NMC 20 % | 0.5-1.5 | 0.2-1 | 0.7-1 |
    /// | 4 | grid storage | mild 20 C | LFP 70 %, NMC 30 % | 0.25-1 | 0.25-1 | 0.8-1 |
    /// | 5 | delivery vans | desert 42 C | NCA 65 %, LCO 35 % | 1-2.5 | 0.5-2 | 0.6-1 |
    pub fn builtin(index: usize) -> FleetProfile {
        let round = index / 6;
        let p =
            |name: &str, climate: &str, t: f64, ch: [f64; 2], dis: [f64; 2], dod: [f64; 2], mix| {
                FleetProfile {
                    name: if round == 0 {
                        name.to_string()
                    } else {
                        format!("{name} #{}", round + 1)
                    },
                    climate: climate.to_string(),
                    ambient_temperature_c: (t + 2.0 * round as f64).min(55.0),
                    temperature_spread_c: 3.0,
                    charge_c_rate: ch,
                    discharge_c_rate: dis,
                    depth_of_discharge: dod,
                    mix,
                }
            };
        use Chemistry::*;
        match index % 6 {
            0 => p(
                "bus depot, fast charging",
                "temperate",
                25.0,
                [1.0, 3.5],
                [1.0, 3.0],
                [0.8, 1.0],
                vec![(Lfp, 0.8), (Nmc, 0.2)],
            ),
            1 => p(
                "e-scooter sharing",
                "hot",
                38.0,
                [0.5, 2.0],
                [0.5, 2.5],
                [0.5, 1.0],
                vec![(Nmc, 0.7), (Nca, 0.3)],
            ),
            2 => p(
                "passenger EVs",
                "cold",
                5.0,
                [0.3, 1.5],
                [0.3, 1.5],
                [0.6, 0.9],
                vec![(Nca, 0.75), (Nmc, 0.25)],
            ),
            3 => p(
                "consumer electronics",
                "warm indoor",
                30.0,
                [0.5, 1.5],
                [0.2, 1.0],
                [0.7, 1.0],
                vec![(Lco, 0.8), (Nmc, 0.2)],
            ),
            4 => p(
                "grid storage",
                "mild",
                20.0,
                [0.25, 1.0],
                [0.25, 1.0],
                [0.8, 1.0],
                vec![(Lfp, 0.7), (Nmc, 0.3)],
            ),
            _ => p(
                "delivery vans",
                "desert",
                42.0,
                [1.0, 2.5],
                [0.5, 2.0],
                [0.6, 1.0],
                vec![(Nca, 0.65), (Lco, 0.35)],
            ),
        }
    }

    /// Check the ranges (inside the limits of [`CellSpec::validate`], `lo <= hi`) and the mix
    /// (non-empty, positive finite shares).
    pub fn validate(&self) -> Result<()> {
        let range = |field: &str, r: [f64; 2], lo: f64, hi: f64| {
            if (lo..=hi).contains(&r[0]) && (r[0]..=hi).contains(&r[1]) {
                Ok(())
            } else {
                Err(Error::config(
                    field,
                    format!("must satisfy {lo} <= lo <= hi <= {hi}, got {r:?}"),
                ))
            }
        };
        range("profiles.charge_c_rate", self.charge_c_rate, 0.1, 6.0)?;
        range("profiles.discharge_c_rate", self.discharge_c_rate, 0.1, 6.0)?;
        range(
            "profiles.depth_of_discharge",
            self.depth_of_discharge,
            0.1,
            1.0,
        )?;
        let t = self.ambient_temperature_c;
        if !(t.is_finite() && (-20.0..=60.0).contains(&t)) {
            return Err(Error::config(
                "profiles.ambient_temperature_c",
                format!("must be in [-20, 60], got {t}"),
            ));
        }
        let s = self.temperature_spread_c;
        if !(s.is_finite() && (0.0..=20.0).contains(&s)) {
            return Err(Error::config(
                "profiles.temperature_spread_c",
                format!("must be in [0, 20], got {s}"),
            ));
        }
        if self.mix.is_empty() || self.mix.iter().any(|&(_, w)| !(w.is_finite() && w > 0.0)) {
            return Err(Error::config(
                "profiles.mix",
                "needs at least one chemistry, all shares > 0",
            ));
        }
        Ok(())
    }

    /// Draw the conditions of one cell of `chemistry` under this profile (charge rate,
    /// discharge rate, depth of discharge uniform in their ranges; temperature normal around
    /// the ambient, clamped to [-20, 60] C). The other spec fields keep their defaults.
    pub fn sample_spec<R: Rng + ?Sized>(&self, chemistry: Chemistry, rng: &mut R) -> CellSpec {
        let mut uniform = |r: [f64; 2]| r[0] + (r[1] - r[0]) * rng.random::<f64>();
        let charge = uniform(self.charge_c_rate);
        let discharge = uniform(self.discharge_c_rate);
        let dod = uniform(self.depth_of_discharge);
        let z: f64 = rng.sample(StandardNormal);
        let temperature =
            (self.ambient_temperature_c + self.temperature_spread_c * z).clamp(-20.0, 60.0);
        CellSpec::new(chemistry)
            .with_charge_c_rate(charge)
            .with_discharge_c_rate(discharge)
            .with_depth_of_discharge(dod)
            .with_temperature_c(temperature)
    }

    /// Number of cells of each chemistry in a fleet of `n` (mix order): the dominant chemistry
    /// gets `ceil(share x n)`, the rest is split by largest remainder.
    pub fn allocate(&self, n: usize) -> Vec<(Chemistry, usize)> {
        let total: f64 = self.mix.iter().map(|m| m.1).sum();
        let mut counts: Vec<(Chemistry, usize)> = self.mix.iter().map(|&(c, _)| (c, 0)).collect();
        let Some(&(_, w0)) = self.mix.first() else {
            return counts;
        };
        let first = ((w0 / total * n as f64).ceil() as usize).min(n);
        counts[0].1 = first;
        let rest_total: f64 = total - w0;
        let left = n - first;
        if left == 0 || rest_total <= 0.0 {
            counts[0].1 = n;
            return counts;
        }
        let exact: Vec<f64> = self.mix[1..]
            .iter()
            .map(|m| m.1 / rest_total * left as f64)
            .collect();
        let mut given = 0;
        for (k, e) in exact.iter().enumerate() {
            counts[k + 1].1 = e.floor() as usize;
            given += e.floor() as usize;
        }
        let mut order: Vec<usize> = (0..exact.len()).collect();
        order.sort_by(|&a, &b| {
            (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor()))
        });
        for &k in order.iter().cycle().take(left - given) {
            counts[k + 1].1 += 1;
        }
        counts
    }
}

/// One fleet: an operator's cells, generated under its [`FleetProfile`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fleet {
    /// Fleet id, `fleet0`, `fleet1`, ...
    pub id: String,
    /// Climate label of the profile.
    pub climate: String,
    /// Mean ambient temperature, degrees C.
    pub ambient_temperature_c: f64,
    /// Chemistries present, dominant first.
    pub chemistries: Vec<Chemistry>,
    /// The usage profile the cells were drawn from.
    pub profile: FleetProfile,
    /// The cells, ids `fleet<f>-<CHEM>-<jjj>` (`j` counts within the fleet).
    pub cells: Vec<Cell>,
}

impl Fleet {
    /// The chemistry with the most cells (ties: the first in `chemistries`).
    pub fn dominant_chemistry(&self) -> Option<Chemistry> {
        self.chemistries.first().copied()
    }
}

/// Configuration of a synthetic fleet set.
///
/// Defaults: 5 fleets, 20 cells per fleet, seed 42, 100 cycles per cell, 200 samples per
/// cycle, noise and variation 1.0, built-in profiles ([`FleetProfile::builtin`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FleetConfig {
    /// Number of fleets (default 5; allowed 1..=64).
    pub fleets: usize,
    /// Cells per fleet (default 20; allowed 1..=100000).
    pub cells_per_fleet: usize,
    /// Seed of everything (default 42).
    pub seed: u64,
    /// Recorded cycles per cell (default 100; allowed 1..=5000).
    pub cycles: u32,
    /// Samples per cycle (default 200; allowed 40..=5000).
    pub points_per_cycle: usize,
    /// Measurement-noise scale (default 1.0; 0 = noise-free).
    pub noise: f64,
    /// Manufacturing-variation scale (default 1.0).
    pub variation: f64,
    /// Fleet profiles; fleet `f` uses `profiles[f]` (default empty = the built-in archetypes;
    /// when given, there must be one per fleet).
    pub profiles: Vec<FleetProfile>,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            fleets: 5,
            cells_per_fleet: 20,
            seed: 42,
            cycles: 100,
            points_per_cycle: 200,
            noise: 1.0,
            variation: 1.0,
            profiles: Vec::new(),
        }
    }
}

impl FleetConfig {
    /// The default config.
    pub fn new() -> Self {
        FleetConfig::default()
    }

    /// Set the number of fleets.
    pub fn with_fleets(mut self, n: usize) -> Self {
        self.fleets = n;
        self
    }

    /// Set the cells per fleet.
    pub fn with_cells_per_fleet(mut self, n: usize) -> Self {
        self.cells_per_fleet = n;
        self
    }

    /// Set the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Set the recorded cycles per cell.
    pub fn with_cycles(mut self, n: u32) -> Self {
        self.cycles = n;
        self
    }

    /// Set the samples per cycle.
    pub fn with_points_per_cycle(mut self, n: usize) -> Self {
        self.points_per_cycle = n;
        self
    }

    /// Set the noise scale.
    pub fn with_noise(mut self, scale: f64) -> Self {
        self.noise = scale;
        self
    }

    /// Set the manufacturing-variation scale.
    pub fn with_variation(mut self, scale: f64) -> Self {
        self.variation = scale;
        self
    }

    /// Use explicit fleet profiles (one per fleet).
    pub fn with_profiles(mut self, profiles: Vec<FleetProfile>) -> Self {
        self.profiles = profiles;
        self
    }

    /// Check the values; returns [`Error::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<()> {
        if !(1..=64).contains(&self.fleets) {
            return Err(Error::config(
                "fleets",
                format!("must be in 1..=64, got {}", self.fleets),
            ));
        }
        if !(1..=100_000).contains(&self.cells_per_fleet) {
            return Err(Error::config(
                "cells_per_fleet",
                format!("must be in 1..=100000, got {}", self.cells_per_fleet),
            ));
        }
        if !self.profiles.is_empty() && self.profiles.len() != self.fleets {
            return Err(Error::config(
                "profiles",
                format!(
                    "{} profiles for {} fleets",
                    self.profiles.len(),
                    self.fleets
                ),
            ));
        }
        for p in &self.profiles {
            p.validate()?;
        }
        // the per-cell fields share CellSpec's limits
        CellSpec::new(Chemistry::Lfp)
            .with_cycles(self.cycles)
            .with_points_per_cycle(self.points_per_cycle)
            .with_noise(self.noise)
            .with_variation(self.variation)
            .validate()
    }

    /// The profile of fleet `f`.
    pub fn profile(&self, f: usize) -> FleetProfile {
        self.profiles
            .get(f)
            .cloned()
            .unwrap_or_else(|| FleetProfile::builtin(f))
    }

    /// Generate the fleets (in parallel over cells; deterministic for a given config).
    pub fn generate(&self) -> Result<Vec<Fleet>> {
        let (profiles, tasks, layouts) = self.layout()?;
        let cells: Vec<Cell> = tasks
            .par_iter()
            .map(|&(f, j, chem)| {
                let (spec, mut rng) = self.cell_spec(&profiles[f], f, j, chem);
                spec.generate_with(&format!("fleet{f}-{}-{j:03}", chem.name()), &mut rng)
            })
            .collect::<Result<_>>()?;
        let mut cells = cells.into_iter();
        Ok(profiles
            .into_iter()
            .zip(layouts)
            .enumerate()
            .map(|(f, (profile, counts))| {
                let mut present: Vec<(Chemistry, usize)> =
                    counts.into_iter().filter(|c| c.1 > 0).collect();
                present.sort_by_key(|c| std::cmp::Reverse(c.1));
                Fleet {
                    id: format!("fleet{f}"),
                    climate: profile.climate.clone(),
                    ambient_temperature_c: profile.ambient_temperature_c,
                    chemistries: present.into_iter().map(|c| c.0).collect(),
                    cells: cells.by_ref().take(self.cells_per_fleet).collect(),
                    profile,
                }
            })
            .collect())
    }
}

impl FleetConfig {
    /// Public cells: every cell of this config, its id prefixed `public-` so that no fleet's
    /// own cell (ids `fleet…`) is taken for one. With the seed [`PUBLIC_SEED`] they are the
    /// library's public reference set for record-level DP-SGD (the label transform, input
    /// scales and branch B's training references of a private run).
    ///
    /// ```
    /// use battery_fl_core::data::synthetic::{FleetConfig, PUBLIC_SEED};
    ///
    /// let public = FleetConfig::new().with_fleets(2).with_cells_per_fleet(2).with_seed(PUBLIC_SEED);
    /// let cells = public.generate_public()?;
    /// assert_eq!(cells.len(), 4);
    /// assert!(cells.iter().all(|c| c.id().starts_with("public-fleet")));
    /// # Ok::<(), battery_fl_core::Error>(())
    /// ```
    pub fn generate_public(&self) -> Result<Vec<Cell>> {
        Ok(self
            .generate()?
            .into_iter()
            .flat_map(|f| f.cells)
            .map(|mut c| {
                c.meta.cell_id = format!("public-{}", c.meta.cell_id);
                c
            })
            .collect())
    }

    /// The conditions and latent aging model of every cell [`FleetConfig::generate`] makes,
    /// per fleet in the same order as `Fleet::cells` (the same draws, without simulating the
    /// cycles): the ground truth behind each cell, for studies of what the data can show.
    ///
    /// ```
    /// use battery_fl_core::data::synthetic::FleetConfig;
    ///
    /// let config = FleetConfig::new().with_fleets(2).with_cells_per_fleet(3).with_seed(5);
    /// let fleets = config.generate()?;
    /// let models = config.aging_models()?;
    /// assert_eq!(models[1].len(), 3);
    /// assert_eq!(fleets[1].cells[2].cycle_life, Some(models[1][2].1.cycle_life()));
    /// # Ok::<(), battery_fl_core::Error>(())
    /// ```
    pub fn aging_models(&self) -> Result<Vec<Vec<(CellSpec, AgingModel)>>> {
        let (profiles, tasks, layouts) = self.layout()?;
        let models: Vec<(CellSpec, AgingModel)> = tasks
            .par_iter()
            .map(|&(f, j, chem)| {
                let (spec, mut rng) = self.cell_spec(&profiles[f], f, j, chem);
                let model = spec.draw_aging(&mut rng)?;
                Ok((spec, model))
            })
            .collect::<Result<_>>()?;
        let mut models = models.into_iter();
        Ok(layouts
            .iter()
            .map(|_| models.by_ref().take(self.cells_per_fleet).collect())
            .collect())
    }

    /// Validated profiles, the `(fleet, cell, chemistry)` of every cell, and each fleet's
    /// chemistry counts.
    #[allow(clippy::type_complexity)]
    fn layout(
        &self,
    ) -> Result<(
        Vec<FleetProfile>,
        Vec<(usize, usize, Chemistry)>,
        Vec<Vec<(Chemistry, usize)>>,
    )> {
        self.validate()?;
        let profiles: Vec<FleetProfile> = (0..self.fleets).map(|f| self.profile(f)).collect();
        let mut tasks = Vec::with_capacity(self.fleets * self.cells_per_fleet);
        let mut layouts = Vec::with_capacity(self.fleets);
        for (f, profile) in profiles.iter().enumerate() {
            let counts = profile.allocate(self.cells_per_fleet);
            let mut j = 0;
            for &(chem, count) in &counts {
                for _ in 0..count {
                    tasks.push((f, j, chem));
                    j += 1;
                }
            }
            layouts.push(counts);
        }
        Ok((profiles, tasks, layouts))
    }

    /// Cell `j` of fleet `f`: its conditions and its random stream, positioned where the
    /// manufacturing draw starts.
    fn cell_spec(
        &self,
        profile: &FleetProfile,
        f: usize,
        j: usize,
        chem: Chemistry,
    ) -> (CellSpec, rng::SeededRng) {
        let mut rng = rng::substream(self.seed, f as u64 * STRIDE + j as u64);
        let spec = CellSpec {
            cycles: self.cycles,
            points_per_cycle: self.points_per_cycle,
            noise: self.noise,
            variation: self.variation,
            ..profile.sample_spec(chem, &mut rng)
        };
        (spec, rng)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn allocation_keeps_the_dominant_chemistry_at_60_percent() {
        for f in 0..6 {
            let p = FleetProfile::builtin(f);
            for n in 1..40 {
                let counts = p.allocate(n);
                assert_eq!(counts.iter().map(|c| c.1).sum::<usize>(), n);
                assert!(
                    counts[0].1 as f64 >= 0.6 * n as f64,
                    "fleet {f} n {n}: {counts:?}"
                );
            }
        }
        let three = FleetProfile {
            mix: vec![
                (Chemistry::Lfp, 0.5),
                (Chemistry::Nmc, 0.3),
                (Chemistry::Lco, 0.2),
            ],
            ..FleetProfile::builtin(0)
        };
        assert_eq!(
            three.allocate(10),
            vec![
                (Chemistry::Lfp, 5),
                (Chemistry::Nmc, 3),
                (Chemistry::Lco, 2)
            ]
        );
    }

    #[test]
    fn builtin_profiles_validate() {
        for f in 0..12 {
            FleetProfile::builtin(f).validate().unwrap();
        }
        assert!(
            FleetProfile::builtin(7).ambient_temperature_c
                > FleetProfile::builtin(1).ambient_temperature_c
        );
    }
}
