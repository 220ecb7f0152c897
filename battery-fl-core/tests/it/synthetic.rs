#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use battery_fl_core::data::synthetic::{CellSpec, Chemistry, FleetConfig, FleetProfile};
use battery_fl_core::data::{Cell, Cycle, LabelConfig, LifeLabel};
use battery_fl_core::features::delta_q::log10_variance_delta_q;
use battery_fl_core::rng;
use battery_fl_core::Error;

fn series(c: &Cycle) -> (&[f64], &[f64], &[f64]) {
    (
        &c.voltage_v,
        c.current_a.as_deref().expect("current"),
        c.discharge_capacity_ah
            .as_deref()
            .expect("discharge capacity"),
    )
}

/// Average ranks (ties share their mean rank).
fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        for &k in &idx[i..=j] {
            r[k] = (i + j) as f64 / 2.0;
        }
        i = j + 1;
    }
    r
}

fn spearman(x: &[f64], y: &[f64]) -> f64 {
    let (rx, ry) = (ranks(x), ranks(y));
    let n = rx.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let cov: f64 = rx.iter().zip(&ry).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = rx.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = ry.iter().map(|b| (b - my).powi(2)).sum();
    cov / (vx * vy).sqrt()
}

#[test]
fn spearman_helper_is_right() {
    assert!((spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 35.0]) - 1.0).abs() < 1e-12);
    assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
    assert_eq!(ranks(&[5.0, 1.0, 5.0]), vec![1.5, 0.0, 1.5]);
}

/// Discharge samples (|I| > 0.1 A) between 20 % and 80 % of the cycle's discharge capacity.
fn mid_discharge_voltages(c: &Cycle) -> Vec<f64> {
    let (v, i, q) = series(c);
    let qmax = c.max_discharge_capacity().expect("capacity");
    v.iter()
        .zip(i)
        .zip(q)
        .filter(|&((_, &i), &q)| i < -0.1 && (0.2 * qmax..=0.8 * qmax).contains(&q))
        .map(|((&v, _), _)| v)
        .collect()
}

fn median(mut x: Vec<f64>) -> f64 {
    x.sort_by(f64::total_cmp);
    x[x.len() / 2]
}

#[test]
fn same_seed_same_cells_different_seed_different_cells() {
    let config = FleetConfig::default()
        .with_cells_per_fleet(2)
        .with_cycles(10);
    let a = config.generate().unwrap();
    assert_eq!(a, config.generate().unwrap());
    // identical under a different thread count
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    assert_eq!(a, pool.install(|| config.generate().unwrap()));
    let b = config.clone().with_seed(43).generate().unwrap();
    assert_ne!(a[0].cells[0].cycles, b[0].cells[0].cycles);
    assert_ne!(a[0].cells[0].cycle_life, b[0].cells[0].cycle_life);
}

#[test]
fn fleets_are_valid_with_full_signals_and_unique_ids() {
    let fleets = FleetConfig::default()
        .with_fleets(6)
        .with_cells_per_fleet(4)
        .with_cycles(12)
        .generate()
        .unwrap();
    assert_eq!(fleets.len(), 6);
    let mut ids = std::collections::BTreeSet::new();
    for fleet in &fleets {
        assert_eq!(fleet.cells.len(), 4);
        for cell in &fleet.cells {
            cell.validate().unwrap();
            assert!(cell.has_full_signals());
            assert!(
                ids.insert(cell.id().to_string()),
                "duplicate id {}",
                cell.id()
            );
            assert!(cell.id().starts_with(&format!("{}-", fleet.id)));
            let numbers: Vec<u32> = cell.cycles.iter().map(|c| c.cycle).collect();
            assert_eq!(numbers, (1..=12).collect::<Vec<_>>());
            assert!(cell
                .cycles
                .iter()
                .all(|c| c.temperature_c.is_some() && c.time_s.is_some()));
            assert!(cell.cycles.iter().all(|c| (150..=300).contains(&c.len())));
            let meta = &cell.meta;
            let chem = Chemistry::from_name(meta.cathode.as_deref().unwrap()).unwrap();
            assert_eq!(meta.nominal_capacity_ah, chem.nominal_capacity_ah());
            assert_eq!(meta.anode.as_deref(), Some("graphite"));
            assert!(
                meta.electrolyte.is_some() && meta.form_factor.is_some() && meta.protocol.is_some()
            );
            assert_eq!(
                (meta.voltage_min_v.unwrap(), meta.voltage_max_v.unwrap()),
                chem.voltage_window()
            );
            assert!(!meta.composition.is_empty() && meta.purity_ppm.len() == 3);
            // normalized capacities stay inside the featurizer's [0, 1.2] grid
            for c in &cell.cycles {
                for q in c
                    .charge_capacity_ah
                    .iter()
                    .chain(&c.discharge_capacity_ah)
                    .flatten()
                {
                    assert!((0.0..=1.2).contains(&(q / meta.nominal_capacity_ah)), "{q}");
                }
            }
            // a label computed from 12 cycles is censored; the recorded one is used by default
            let computed = cell
                .cycle_life(&LabelConfig {
                    prefer_recorded: false,
                    ..Default::default()
                })
                .unwrap();
            assert!(matches!(computed, LifeLabel::Censored { .. }));
            assert_eq!(
                cell.cycle_life(&LabelConfig::default()).unwrap().cycles(),
                cell.cycle_life
            );
        }
    }
}

#[test]
fn current_signs_and_capacity_bookkeeping() {
    let fleets = FleetConfig::default()
        .with_cells_per_fleet(2)
        .with_cycles(3)
        .generate()
        .unwrap();
    for cell in fleets.iter().flat_map(|f| &f.cells) {
        for c in &cell.cycles {
            let (_, i, qd) = series(c);
            let qc = c.charge_capacity_ah.as_deref().unwrap();
            let first_dis = i.iter().position(|&x| x < -0.1).unwrap();
            assert!(i[0] > 0.1, "cycle starts with charge");
            assert!(i[..first_dis].iter().all(|&x| x > -0.01), "{}", cell.id());
            assert!(i[first_dis..].iter().all(|&x| x < -0.1), "{}", cell.id());
            assert!(qd[..first_dis].iter().all(|&x| x == 0.0));
            assert!(qc[first_dis..].iter().all(|&x| x == qc[first_dis]));
            assert_eq!(qc[0], 0.0);
            let fall = |q: &[f64]| q.windows(2).position(|w| w[1] < w[0]);
            assert_eq!(
                fall(qc),
                None,
                "{} cycle {} qc {:?}",
                cell.id(),
                c.cycle,
                fall(qc).map(|k| &qc[k..k + 2])
            );
            assert_eq!(fall(qd), None, "{} cycle {} qd", cell.id(), c.cycle);
            let t = c.time_s.as_deref().unwrap();
            assert_eq!(t[0], 0.0);
            assert!(t.windows(2).all(|w| w[1] >= w[0]));
            // CV: current decays at the upper limit
            let vmax = cell.meta.voltage_max_v.unwrap();
            let cv: Vec<f64> = c
                .voltage_v
                .iter()
                .zip(i)
                .filter(|(v, &i)| (**v - vmax).abs() < 2e-3 && i > 0.0)
                .map(|(_, &i)| i)
                .collect();
            assert!(
                cv.len() > 5 && cv.last().unwrap() < &(0.5 * cv[0]),
                "{}: {cv:?}",
                cell.id()
            );
        }
    }
}

#[test]
fn chemistry_voltage_shapes() {
    for chem in Chemistry::ALL {
        for c_rate in [0.5, 2.0] {
            let cell = CellSpec::new(chem)
                .with_cycles(1)
                .with_discharge_c_rate(c_rate)
                .generate("x", 1)
                .unwrap();
            let v = mid_discharge_voltages(&cell.cycles[0]);
            assert!(v.len() > 20);
            let spread = v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
                - v.iter().copied().fold(f64::INFINITY, f64::min);
            let all_dis: Vec<f64> = {
                let (v, i, _) = series(&cell.cycles[0]);
                v.iter()
                    .zip(i)
                    .filter(|(_, &i)| i < -0.1)
                    .map(|(&v, _)| v)
                    .collect()
            };
            let med = median(all_dis);
            if chem == Chemistry::Lfp {
                assert!((3.1..=3.35).contains(&med), "LFP median {med}");
                assert!(spread < 0.15, "LFP spread {spread}");
            } else {
                assert!(spread > 0.3, "{chem} spread {spread}");
                assert!(med > 3.4 && med < 4.0, "{chem} median {med}");
            }
        }
    }
}

#[test]
fn capacity_fades_and_resistance_grows_over_early_life() {
    let fleets = FleetConfig::default()
        .with_cells_per_fleet(3)
        .generate()
        .unwrap();
    let cells: Vec<&Cell> = fleets.iter().flat_map(|f| &f.cells).collect();
    let mut fade_sum = 0.0;
    let mut sag_sum = 0.0;
    for cell in &cells {
        let q = |n: u32| cell.cycle(n).unwrap().max_discharge_capacity().unwrap();
        // average over a few cycles against the jitter
        let early = (2..=6).map(q).sum::<f64>() / 5.0;
        let late = (96..=100).map(q).sum::<f64>() / 5.0;
        assert!(late < early, "{}: {early} -> {late}", cell.id());
        fade_sum += (early - late) / early;
        // resistance growth: the mid-discharge voltage sags
        let mid = |n: u32| median(mid_discharge_voltages(cell.cycle(n).unwrap()));
        sag_sum += mid(5) - mid(100);
        let life = cell.cycle_life.unwrap();
        assert!(life > 100 && life < 20_000, "{}: life {life}", cell.id());
        // the recorded trajectory is the measured early capacity
        assert_eq!(cell.capacity_trajectory.len(), 100);
        assert_eq!(cell.capacity_trajectory[99], Some(q(100)));
    }
    let n = cells.len() as f64;
    assert!(
        fade_sum / n > 0.003 && fade_sum / n < 0.1,
        "mean fade {}",
        fade_sum / n
    );
    assert!(sag_sum / n > 1e-3, "mean sag {}", sag_sum / n);
}

#[test]
fn the_generator_model_resistance_and_capacity_are_monotone() {
    let spec = CellSpec::new(Chemistry::Nmc).with_charge_c_rate(2.0);
    let model = spec.draw_aging(&mut rng::seeded(3)).unwrap();
    let life = f64::from(model.cycle_life());
    let mut prev = (f64::INFINITY, 0.0);
    for k in 0..=200 {
        let n = life * 1.2 * k as f64 / 200.0;
        let now = (model.capacity_ah(n), model.resistance_ohm(n));
        assert!(now.0 <= prev.0 && now.1 >= prev.1);
        prev = now;
    }
    assert!(model.knee_cycle > 100.0 && model.knee_cycle < life);
}

#[test]
fn aging_factors_point_the_right_way() {
    for chem in Chemistry::ALL {
        let base = CellSpec::new(chem).with_variation(0.0).with_noise(0.0);
        let life = |s: CellSpec| s.nominal_cycle_life().unwrap();
        let l0 = life(base.clone());
        assert!(
            life(base.clone().with_temperature_c(45.0)) < l0,
            "{chem} hot"
        );
        assert!(
            life(base.clone().with_temperature_c(35.0)) < l0,
            "{chem} warm"
        );
        assert!(
            life(base.clone().with_charge_c_rate(3.0)) < l0,
            "{chem} fast charge"
        );
        assert!(
            life(base.clone().with_depth_of_discharge(0.6)) > l0,
            "{chem} shallow"
        );
        assert!(
            life(base.clone().with_discharge_c_rate(3.0)) < l0,
            "{chem} fast discharge"
        );
        // cold fast charging plates lithium
        let cold = base.clone().with_temperature_c(0.0);
        assert!(life(cold.clone().with_charge_c_rate(2.0)) < life(cold.with_charge_c_rate(0.5)));
        // the generated cell records the same ground truth
        let cell = base.clone().with_cycles(2).generate("x", 9).unwrap();
        assert_eq!(cell.cycle_life, Some(l0));
    }
    // with manufacturing variation on, the direction holds on average over paired seeds
    let spec = CellSpec::new(Chemistry::Nca).with_cycles(1);
    let mean_life = |s: &CellSpec| {
        (0..20)
            .map(|seed| f64::from(s.generate("x", seed).unwrap().cycle_life.unwrap()))
            .sum::<f64>()
            / 20.0
    };
    assert!(mean_life(&spec.clone().with_temperature_c(40.0)) < mean_life(&spec));
}

#[test]
fn recorded_label_matches_a_label_computed_past_end_of_life() {
    // a short-lived cell cycled past its end of life: the data reach 80 % where the model says
    let spec = CellSpec::new(Chemistry::Lco)
        .with_charge_c_rate(2.5)
        .with_temperature_c(45.0)
        .with_points_per_cycle(60);
    let life = spec
        .clone()
        .with_cycles(1)
        .generate("x", 4)
        .unwrap()
        .cycle_life
        .unwrap();
    assert!(life < 400, "{life}");
    // the manufacturing draw comes first, so more cycles keep the same cell and label
    let cell = spec.with_cycles(life + 20).generate("x", 4).unwrap();
    assert_eq!(cell.cycle_life, Some(life));
    let computed = cell
        .cycle_life(&LabelConfig {
            prefer_recorded: false,
            ..Default::default()
        })
        .unwrap();
    let recorded = cell.cycle_life.unwrap();
    let got = computed.cycles().unwrap();
    assert!(
        got.abs_diff(recorded) <= 3,
        "computed {got} vs recorded {recorded}"
    );
}

#[test]
fn fleets_are_non_iid() {
    let fleets = FleetConfig::default()
        .with_fleets(6)
        .with_cells_per_fleet(10)
        .with_cycles(1)
        .generate()
        .unwrap();
    let mut dominant = Vec::new();
    let mut ambient = Vec::new();
    for fleet in &fleets {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for cell in &fleet.cells {
            *counts
                .entry(cell.meta.cathode.clone().unwrap())
                .or_default() += 1;
        }
        let top = counts.iter().max_by_key(|c| *c.1).unwrap();
        assert!(
            *top.1 as f64 >= 0.6 * fleet.cells.len() as f64,
            "{}: {counts:?}",
            fleet.id
        );
        assert_eq!(top.0, fleet.dominant_chemistry().unwrap().name());
        assert!(counts.len() <= 2);
        dominant.push(top.0.clone());
        ambient.push(fleet.ambient_temperature_c);
    }
    let distinct: std::collections::BTreeSet<_> = dominant.iter().collect();
    assert_eq!(
        distinct.len(),
        4,
        "every chemistry dominates somewhere: {dominant:?}"
    );
    assert!(
        ambient.iter().copied().fold(f64::NEG_INFINITY, f64::max)
            - ambient.iter().copied().fold(f64::INFINITY, f64::min)
            > 20.0
    );
    // climates differ: the scooters run hot, the EVs cold
    let mean_temp = |f: usize| {
        fleets[f]
            .cells
            .iter()
            .map(|c| c.meta.temperature_c.unwrap())
            .sum::<f64>()
            / 10.0
    };
    assert!(mean_temp(1) > mean_temp(2) + 20.0);
}

/// The learnability check: within each chemistry, the Severson feature of the early data
/// ranks the cells by life.
fn spearman_per_chemistry(seed: u64, per_chemistry: usize) -> BTreeMap<Chemistry, f64> {
    let mut rng = rng::seeded(seed);
    let mut out = BTreeMap::new();
    for chem in Chemistry::ALL {
        let (mut feature, mut log_life) = (Vec::new(), Vec::new());
        for k in 0..per_chemistry {
            // conditions from every built-in profile, so the set spans climates and usage
            let spec = FleetProfile::builtin(k % 6).sample_spec(chem, &mut rng);
            let cell = spec
                .generate(&format!("{chem}-{k}"), seed * 1000 + k as u64)
                .unwrap();
            feature.push(log10_variance_delta_q(&cell, 10, 100, 0.1).unwrap());
            log_life.push(f64::from(cell.cycle_life.unwrap()).ln());
        }
        out.insert(chem, spearman(&feature, &log_life));
    }
    out
}

#[test]
fn early_delta_q_predicts_life_within_each_chemistry() {
    for seed in [1, 2, 3] {
        let rho = spearman_per_chemistry(seed, 60);
        println!("seed {seed}: {rho:?}");
        for (chem, r) in rho {
            assert!(r < -0.6, "seed {seed} {chem}: Spearman {r}");
        }
    }
}

#[test]
fn config_validation_names_the_field() {
    let field = |r: Result<Vec<_>, Error>| match r {
        Err(Error::InvalidConfig { field, .. }) => field,
        other => panic!("expected a config error, got {other:?}"),
    };
    assert_eq!(
        field(FleetConfig::default().with_fleets(0).generate()),
        "fleets"
    );
    assert_eq!(
        field(FleetConfig::default().with_cells_per_fleet(0).generate()),
        "cells_per_fleet"
    );
    assert_eq!(
        field(FleetConfig::default().with_cycles(0).generate()),
        "cycles"
    );
    assert_eq!(
        field(FleetConfig::default().with_points_per_cycle(10).generate()),
        "points_per_cycle"
    );
    assert_eq!(
        field(FleetConfig::default().with_noise(-1.0).generate()),
        "noise"
    );
    assert_eq!(
        field(FleetConfig::default().with_noise(f64::NAN).generate()),
        "noise"
    );
    assert_eq!(
        field(
            FleetConfig::default()
                .with_fleets(2)
                .with_profiles(vec![FleetProfile::builtin(0)])
                .generate()
        ),
        "profiles"
    );
    let mut bad = FleetProfile::builtin(0);
    bad.charge_c_rate = [2.0, 1.0];
    assert_eq!(
        field(
            FleetConfig::default()
                .with_fleets(1)
                .with_profiles(vec![bad])
                .generate()
        ),
        "profiles.charge_c_rate"
    );
    let mut empty = FleetProfile::builtin(0);
    empty.mix.clear();
    assert_eq!(
        field(
            FleetConfig::default()
                .with_fleets(1)
                .with_profiles(vec![empty])
                .generate()
        ),
        "profiles.mix"
    );
    let spec_err = |s: CellSpec| match s.generate("x", 0) {
        Err(Error::InvalidConfig { field, .. }) => field,
        other => panic!("expected a config error, got {other:?}"),
    };
    assert_eq!(
        spec_err(CellSpec::new(Chemistry::Lfp).with_charge_c_rate(0.0)),
        "charge_c_rate"
    );
    assert_eq!(
        spec_err(CellSpec::new(Chemistry::Lfp).with_temperature_c(90.0)),
        "temperature_c"
    );
    assert_eq!(
        spec_err(CellSpec::new(Chemistry::Lfp).with_depth_of_discharge(1.5)),
        "depth_of_discharge"
    );
    FleetConfig::default().validate().unwrap();
}

#[test]
fn config_serde_fills_defaults() {
    let c: FleetConfig = serde_json::from_str(r#"{"fleets": 4, "seed": 7}"#).unwrap();
    assert_eq!(c, FleetConfig::default().with_fleets(4).with_seed(7));
    let back: FleetConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
    let s: CellSpec = serde_json::from_str(r#"{"chemistry": "NCA", "temperature_c": 40}"#).unwrap();
    assert_eq!(s, CellSpec::new(Chemistry::Nca).with_temperature_c(40.0));
}
