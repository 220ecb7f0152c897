//! The BatLiNet featurizer: shapes, interpolation, fill rules, real data, differences,
//! cleaning, config errors.

use approx::assert_relative_eq;
use battery_fl_core::data::{Cell, CellMeta, Cycle};
use battery_fl_core::features::{
    branch_a_input, branch_b_input, filter_cycles, inter_diff, intra_diff, remove_glitches,
    smooth_edges, FeatureCleanConfig, Features, Featurizer, FeaturizerConfig,
};
use battery_fl_core::Error;

use crate::common::{calce, matr};

/// A full-signal cycle: charge samples (q, v) at +0.5 A, then discharge samples at -1 A.
/// Capacities are in Ah; the cells below use nominal 1.0 so they are also normalized.
fn full_cycle(number: u32, charge: &[(f64, f64)], discharge: &[(f64, f64)]) -> Cycle {
    let q_end = charge.last().map_or(0.0, |p| p.0);
    let mut v: Vec<f64> = charge.iter().map(|p| p.1).collect();
    v.extend(discharge.iter().map(|p| p.1));
    let mut c = Cycle::new(number, v);
    let (nc, nd) = (charge.len(), discharge.len());
    c.current_a = Some([vec![0.5; nc], vec![-1.0; nd]].concat());
    c.charge_capacity_ah = Some(
        [
            charge.iter().map(|p| p.0).collect::<Vec<_>>(),
            vec![q_end; nd],
        ]
        .concat(),
    );
    c.discharge_capacity_ah = Some(
        [
            vec![0.0; nc],
            discharge.iter().map(|p| p.0).collect::<Vec<_>>(),
        ]
        .concat(),
    );
    c
}

fn cell(cycles: Vec<Cycle>) -> Cell {
    Cell::new(CellMeta::new("synthetic", 1.0), cycles)
}

/// Grid step 0.1 over [0, 1.2].
fn featurizer(cycles: usize) -> Featurizer {
    Featurizer::new(
        FeaturizerConfig::default()
            .with_cycles(cycles)
            .with_interp_dim(13),
    )
    .unwrap()
}

fn quadratic_samples(descending: bool) -> Vec<(f64, f64)> {
    // V = 3 + q^2 at q = 0, 0.2, ..., 1.0 (charge) or V = 4 - q^2 (discharge)
    (0..=5)
        .map(|k| {
            let q = 0.2 * k as f64;
            (q, if descending { 4.0 - q * q } else { 3.0 + q * q })
        })
        .collect()
}

#[test]
fn shapes_follow_the_config() {
    let c = cell(vec![full_cycle(
        1,
        &quadratic_samples(false),
        &quadratic_samples(true),
    )]);
    for (cycles, dim) in [(1, 2), (3, 13), (100, 1000)] {
        let f = Featurizer::new(
            FeaturizerConfig::default()
                .with_cycles(cycles)
                .with_interp_dim(dim),
        )
        .unwrap();
        let x = f.transform(&c).unwrap();
        assert_eq!(x.shape(), [6, cycles, dim]);
        assert_eq!(x.as_slice().len(), 6 * cycles * dim);
        assert_eq!(f.grid().len(), dim);
    }
}

#[test]
fn piecewise_linear_interpolation_is_exact() {
    let x = featurizer(1)
        .transform(&cell(vec![full_cycle(
            1,
            &quadratic_samples(false),
            &quadratic_samples(true),
        )]))
        .unwrap();
    for k in 0..13 {
        let q = 0.1 * k as f64;
        // on a sample: the sample; between samples: the chord
        let (v_c, v_d) = if q > 1.0 + 1e-9 {
            (4.0, 3.0) // right fill: max V for charge, min V for discharge
        } else if k % 2 == 0 {
            (3.0 + q * q, 4.0 - q * q)
        } else {
            let (a, b) = (q - 0.1, q + 0.1);
            (3.0 + (a * a + b * b) / 2.0, 4.0 - (a * a + b * b) / 2.0)
        };
        assert_relative_eq!(x.row(0, 0)[k], v_c as f32, epsilon = 1e-6);
        assert_relative_eq!(x.row(1, 0)[k], v_d as f32, epsilon = 1e-6);
        let (i_c, i_d) = if q > 1.0 + 1e-9 {
            (0.0, 0.0)
        } else {
            (0.5, -1.0)
        };
        assert_eq!(x.row(2, 0)[k], i_c);
        assert_eq!(x.row(3, 0)[k], i_d);
    }
    // ch4 and ch5 from the other channels, with the discharge curves reversed
    for k in 0..13 {
        let dv = x.row(0, 0)[k] - x.row(1, 0)[12 - k];
        assert_relative_eq!(x.row(4, 0)[k], dv, epsilon = 1e-6);
        let di = x.row(2, 0)[k] - x.row(3, 0)[12 - k] + 1e-3;
        assert_relative_eq!(x.row(5, 0)[k], dv / di, max_relative = 1e-5);
    }
}

#[test]
fn fill_rules_outside_the_samples() {
    // samples only over q in [0.3, 0.6]
    let charge = [(0.3, 3.5), (0.4, 3.7), (0.5, 3.6), (0.6, 3.9)];
    let discharge = [(0.3, 3.8), (0.4, 3.6), (0.5, 3.65), (0.6, 3.2)];
    let x = featurizer(1)
        .transform(&cell(vec![full_cycle(1, &charge, &discharge)]))
        .unwrap();
    let (c0, c1, c2, c3) = (x.row(0, 0), x.row(1, 0), x.row(2, 0), x.row(3, 0));
    for k in [0, 1, 2] {
        assert_eq!(c0[k], 3.5, "ch0 left fill = min V");
        assert_eq!(c1[k], 3.8, "ch1 left fill = max V");
        assert_eq!((c2[k], c3[k]), (0.0, 0.0));
    }
    for k in [7, 8, 12] {
        assert_eq!(c0[k], 3.9, "ch0 right fill = max V");
        assert_eq!(c1[k], 3.2, "ch1 right fill = min V");
        assert_eq!((c2[k], c3[k]), (0.0, 0.0));
    }
    assert_relative_eq!(c0[4], 3.7, epsilon = 1e-6);
    assert_eq!((c2[4], c3[4]), (0.5, -1.0));
}

#[test]
fn samples_outside_the_capacity_range_are_dropped() {
    // last charge sample at q = 1.5 is dropped: right fill is the max of the kept samples
    let charge = [(0.0, 3.0), (0.5, 3.5), (1.0, 4.0), (1.5, 9.0)];
    let x = featurizer(1)
        .transform(&cell(vec![full_cycle(
            1,
            &charge,
            &quadratic_samples(true),
        )]))
        .unwrap();
    assert_eq!(x.row(0, 0)[12], 4.0);
    assert_eq!(x.row(0, 0)[11], 4.0);
}

#[test]
fn curves_with_two_or_fewer_samples_are_zero() {
    let charge = [(0.1, 3.0), (0.9, 4.0)];
    let x = featurizer(1)
        .transform(&cell(vec![full_cycle(
            1,
            &charge,
            &quadratic_samples(true),
        )]))
        .unwrap();
    assert!(x.row(0, 0).iter().chain(x.row(2, 0)).all(|&v| v == 0.0));
    // the discharge curve is still there, and ch4 = 0 - reverse(ch1)
    assert!(x.row(1, 0).iter().all(|&v| v > 2.9));
    for k in 0..13 {
        assert_eq!(x.row(4, 0)[k], -x.row(1, 0)[12 - k]);
    }
}

#[test]
fn nan_becomes_zero() {
    let mut charge = quadratic_samples(false);
    charge[2].1 = f64::NAN; // NaN voltage at q = 0.4
    let x = featurizer(1)
        .transform(&cell(vec![full_cycle(
            1,
            &charge,
            &quadratic_samples(true),
        )]))
        .unwrap();
    assert!(x.as_slice().iter().all(|v| !v.is_nan()));
    // NaN fills (min/max of V are NaN) and the two intervals around q = 0.4 become 0
    assert!(x.row(0, 0)[3..=5].iter().all(|&v| v == 0.0));
    assert_eq!(x.row(0, 0)[12], 0.0);
    assert_relative_eq!(x.row(0, 0)[1], 3.02, epsilon = 1e-6);
}

#[test]
fn rows_follow_recorded_cycle_numbers() {
    let a = full_cycle(3, &quadratic_samples(false), &quadratic_samples(true));
    let mut b = a.clone();
    b.cycle = 5;
    let f = Featurizer::new(
        FeaturizerConfig::default()
            .with_first_cycle(3)
            .with_cycles(4)
            .with_interp_dim(13)
            .with_fill_missing_cycles(false),
    )
    .unwrap();
    let x = f.transform(&cell(vec![b.clone(), a.clone()])).unwrap();
    for ch in 0..6 {
        assert_eq!(x.row(ch, 0), x.row(ch, 2));
        assert!(x.row(ch, 1).iter().chain(x.row(ch, 3)).all(|&v| v == 0.0));
    }
    assert!(x.row(0, 0).iter().any(|&v| v != 0.0));
    // by default, missing cycles 4 and 6 copy their nearest recorded cycle (3 and 5)
    let filled = Featurizer::new(f.config().clone().with_fill_missing_cycles(true)).unwrap();
    let y = filled.transform(&cell(vec![b, a])).unwrap();
    for ch in 0..6 {
        assert_eq!(y.row(ch, 1), y.row(ch, 0));
        assert_eq!(y.row(ch, 3), y.row(ch, 2));
    }
}

#[test]
fn transform_many_matches_transform() {
    let cells: Vec<Cell> = calce().to_vec();
    let f = Featurizer::new(
        FeaturizerConfig::default()
            .with_cycles(10)
            .with_interp_dim(200),
    )
    .unwrap();
    let many = f.transform_many(&cells).unwrap();
    for (c, x) in cells.iter().zip(&many) {
        assert_eq!(&f.transform(c).unwrap(), x);
    }
}

#[test]
fn transform_into_overwrites_a_caller_buffer() {
    let f = Featurizer::new(
        FeaturizerConfig::default()
            .with_cycles(10)
            .with_interp_dim(200),
    )
    .unwrap();
    let mut buf = vec![7.0f32; 6 * 10 * 200];
    f.transform_into(&calce()[0], &mut buf).unwrap();
    assert_eq!(buf, f.transform(&calce()[0]).unwrap().into_vec());
    assert!(matches!(
        f.transform_into(&calce()[0], &mut buf[1..]),
        Err(Error::Shape { .. })
    ));
}

#[test]
fn bad_cells_are_typed_errors() {
    let mut c = full_cycle(1, &quadratic_samples(false), &quadratic_samples(true));
    c.current_a.as_mut().unwrap().pop();
    match featurizer(1).transform(&cell(vec![c])) {
        Err(Error::InvalidData {
            cycle: Some(1),
            field,
            ..
        }) => assert_eq!(field, "current_a"),
        other => panic!("{other:?}"),
    }
    let mut zero_nominal = cell(vec![]);
    zero_nominal.meta.nominal_capacity_ah = 0.0;
    assert!(matches!(
        featurizer(1).transform(&zero_nominal),
        Err(Error::InvalidData { cycle: None, .. })
    ));
}

#[test]
fn config_validation_errors() {
    for cfg in [
        FeaturizerConfig::default().with_cycles(0),
        FeaturizerConfig::default().with_interp_dim(0),
        FeaturizerConfig::default().with_q_range(1.2, 0.0),
        FeaturizerConfig::default().with_current_threshold_a(f64::INFINITY),
        FeaturizerConfig::default().with_clean(FeatureCleanConfig::default().with_cycle_std(-1.0)),
    ] {
        assert!(
            matches!(
                Featurizer::new(cfg.clone()),
                Err(Error::InvalidConfig { .. })
            ),
            "{cfg:?}"
        );
        assert!(cfg.validate().is_err());
    }
}

#[test]
fn calce_features_are_finite_and_in_the_voltage_window() {
    let f = Featurizer::new(FeaturizerConfig::default()).unwrap();
    for c in calce() {
        let x = f.transform(c).unwrap();
        assert_eq!(x.shape(), [6, 100, 1000]);
        assert!(x.as_slice().iter().all(|v| v.is_finite()), "{}", c.id());
        for r in 0..100 {
            for ch in [0, 1] {
                let row = x.row(ch, r);
                assert!(
                    row.iter().all(|&v| (2.6..=4.3).contains(&v)),
                    "{} row {r} ch{ch}: {:?}",
                    c.id(),
                    row.iter()
                        .copied()
                        .fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(v), b.max(v)))
                );
            }
            // charge current up to about 1 A (mostly 0.55 A), CC discharge at about -1.1 A
            assert!(x.row(2, r).iter().all(|&v| (0.0..=1.1).contains(&v)));
            assert!(x.row(3, r).iter().all(|&v| (-1.2..=0.0).contains(&v)));
        }
        // voltage rises along the charge curve inside the sampled range
        let ch0 = x.row(0, 4);
        assert!(ch0[100] < ch0[700], "{}", c.id());
    }
}

/// Q (Ah) at voltage `v` from a cycle's recorded Q(V) samples, by linear interpolation
/// between the first pair of neighbouring samples whose voltages bracket `v`.
fn q_at_voltage(cycle: &Cycle, v: f64) -> Option<f64> {
    let q = cycle.discharge_capacity_ah.as_ref()?;
    let volts = &cycle.voltage_v;
    (0..volts.len() - 1).find_map(|k| {
        let (v0, v1) = (volts[k], volts[k + 1]);
        ((v1 <= v && v <= v0) && v0 > v1).then(|| q[k] + (q[k + 1] - q[k]) * (v0 - v) / (v0 - v1))
    })
}

#[test]
fn matr_discharge_only_gives_the_inverse_of_q_of_v_and_zeros_elsewhere() {
    let f = Featurizer::new(FeaturizerConfig::default()).unwrap();
    let cell = &matr()[0];
    let x = f.transform(cell).unwrap();
    let nominal = cell.meta.nominal_capacity_ah;
    for ch in [0, 2, 3, 4, 5] {
        assert!(
            x.channel(ch).unwrap().iter().all(|&v| v == 0.0),
            "ch{ch} must be zero"
        );
    }
    // cycle 1 is not in the MATR files: row 0 copies cycle 2; cycles 2..=100 are rows 1..=99
    assert_eq!(x.row(1, 0), x.row(1, 1));
    let mut checked = 0;
    for number in [2u32, 10, 50, 100] {
        if cell.suspect_cycles.contains(&number) {
            continue;
        }
        let cycle = cell.cycle(number).unwrap();
        let row = x.row(1, (number - 1) as usize);
        for k in [100, 300, 500, 700] {
            let q_grid = f.grid()[k]; // normalized
            let v = f64::from(row[k]);
            assert!(
                (2.0..=3.6).contains(&v),
                "V(Qd) = {v} outside the grid voltages"
            );
            let q = q_at_voltage(cycle, v).unwrap() / nominal;
            assert_relative_eq!(q, q_grid, epsilon = 2e-4);
            checked += 1;
        }
        // voltage falls as discharge capacity grows
        assert!(row[100] > row[800]);
    }
    assert!(checked >= 12);
}

#[test]
fn intra_diff_of_the_base_row_is_zero() {
    let f = Featurizer::new(
        FeaturizerConfig::default()
            .with_cycles(20)
            .with_interp_dim(300),
    )
    .unwrap();
    let raw = f.transform(&calce()[0]).unwrap();
    let base = f.base_row().unwrap();
    assert_eq!(base, 9);
    let d = intra_diff(&raw, base).unwrap();
    for ch in 0..6 {
        assert!(d.row(ch, base).iter().all(|&v| v == 0.0));
        for (k, &v) in d.row(ch, 3).iter().enumerate() {
            assert_eq!(v, raw.row(ch, 3)[k] - raw.row(ch, base)[k]);
        }
    }
    let a = f.branch_a(&calce()[0]).unwrap();
    assert_eq!(a, branch_a_input(&raw, base, &f.config().clean).unwrap());
    assert!(a.row(0, base).iter().all(|&v| v == 0.0));
}

#[test]
fn inter_diff_of_a_cell_with_itself_is_zero() {
    let f = Featurizer::new(
        FeaturizerConfig::default()
            .with_cycles(20)
            .with_interp_dim(300),
    )
    .unwrap();
    let (x, y) = (
        f.transform(&calce()[0]).unwrap(),
        f.transform(&calce()[1]).unwrap(),
    );
    assert!(inter_diff(&x, &x)
        .unwrap()
        .as_slice()
        .iter()
        .all(|&v| v == 0.0));
    let b = branch_b_input(&x, &x, &FeatureCleanConfig::default()).unwrap();
    assert!(b.as_slice().iter().all(|&v| v == 0.0));
    let xy = f.branch_b(&x, &y).unwrap();
    assert_eq!(xy.shape(), x.shape());
    assert!(xy.as_slice().iter().any(|&v| v != 0.0));
}

/// Real MATR cell EL150800464865 has one broken discharge curve (cycle 12, row 10) that the
/// cycle filter flags. Zeroing that raw row made its inter-cell difference `-reference`
/// (volts) for every reference, and branch B predicted 328 cycles for a 1709-cycle cell;
/// branch B's input fills the row from its neighbour instead.
#[test]
fn a_broken_raw_cycle_does_not_become_a_volt_sized_inter_cell_difference() {
    let f = Featurizer::new(
        FeaturizerConfig::default()
            .with_first_cycle(2)
            .with_cycles(99)
            .with_interp_dim(200),
    )
    .unwrap();
    let cell = |id: &str| {
        let c = matr().iter().find(|c| c.id().ends_with(id)).unwrap();
        f.transform(c).unwrap()
    };
    let (target, reference) = (cell("EL150800464865"), cell("EL150800460486"));
    let worst_row_mean_abs = |d: &Features| {
        (0..d.cycles())
            .map(|r| d.row(1, r).iter().map(|v| v.abs()).sum::<f32>() / d.interp_dim() as f32)
            .fold(0.0f32, f32::max)
    };
    let cfg = FeatureCleanConfig::default();
    let (mut t0, mut r0) = (target.clone(), reference.clone());
    filter_cycles(&mut t0, &cfg);
    filter_cycles(&mut r0, &cfg);
    assert!(
        t0.row(1, 10).iter().all(|&v| v == 0.0),
        "cycle 12 is flagged"
    );
    let zeroed = inter_diff(&t0, &r0).unwrap();
    assert!(worst_row_mean_abs(&zeroed) > 2.0);

    let b = f.branch_b(&target, &reference).unwrap();
    let worst = worst_row_mean_abs(&b);
    assert!(worst < 0.2, "worst cycle's mean |V difference| {worst} V");
    // the target's broken cycle takes its previous cycle's curve (the reference has no
    // flagged cycle here)
    assert_eq!(r0.as_slice(), reference.as_slice());
    let expected: Vec<f32> = target
        .row(1, 9)
        .iter()
        .zip(reference.row(1, 10))
        .map(|(t, r)| t - r)
        .collect();
    assert_eq!(b.row(1, 10), expected.as_slice());
}

/// A (channels, cycles, dim) tensor of flat rows: row (c, r) = c + 0.01 r. Flat rows have no
/// spread of their own, so each step flags only what is planted.
fn flat_features(shape: [usize; 3]) -> Features {
    let [ch, cy, dim] = shape;
    let mut data = Vec::with_capacity(ch * cy * dim);
    for c in 0..ch {
        for r in 0..cy {
            data.extend(std::iter::repeat_n(c as f32 + 0.01 * r as f32, dim));
        }
    }
    Features::from_vec(data, shape).unwrap()
}

#[test]
fn cleaning_steps_zero_exactly_the_planted_defects() {
    let cfg = FeatureCleanConfig::default();
    let clean = flat_features([2, 100, 400]);

    // (a) an outlier in the first 50 points is zeroed; the same outlier mid-row is not
    let mut x = clean.clone();
    x.row_mut(1, 4)[10] = 9.0;
    x.row_mut(1, 4)[200] = 9.0;
    smooth_edges(&mut x, &cfg);
    assert_eq!(x.row(1, 4)[10], 0.0);
    assert_eq!(x.row(1, 4)[200], 9.0);
    x.row_mut(1, 4)[200] = clean.row(1, 4)[200];
    x.row_mut(1, 4)[10] = clean.row(1, 4)[10];
    assert_eq!(x, clean);

    // (b) a 5-point glitch mid-row is zeroed and nothing else
    let mut x = clean.clone();
    for v in &mut x.row_mut(0, 7)[200..205] {
        *v += 3.0;
    }
    remove_glitches(&mut x, &cfg);
    assert!(x.row(0, 7)[200..205].iter().all(|&v| v == 0.0));
    x.row_mut(0, 7)[200..205].copy_from_slice(&clean.row(0, 7)[200..205]);
    assert_eq!(x, clean);

    // (c) a cycle row with a large max and one with a shifted mean are zeroed whole
    let mut x = clean.clone();
    x.row_mut(0, 12)[100] = 50.0;
    for v in x.row_mut(1, 20) {
        *v += 2.0;
    }
    filter_cycles(&mut x, &cfg);
    assert!(x.row(0, 12).iter().all(|&v| v == 0.0));
    assert!(x.row(1, 20).iter().all(|&v| v == 0.0));
    x.row_mut(0, 12).copy_from_slice(clean.row(0, 12));
    x.row_mut(1, 20).copy_from_slice(clean.row(1, 20));
    assert_eq!(x, clean);
}
