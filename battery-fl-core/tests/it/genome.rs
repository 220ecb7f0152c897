use battery_fl_core::data::CleanConfig;
use battery_fl_core::genome::{
    GenomeFingerprint, GenomeIndex, GenomeWeights, Signature, SignatureConfig,
};
use battery_fl_core::Error;
use proptest::prelude::*;

use crate::common::{calce, matr};

fn real_fingerprints() -> Vec<GenomeFingerprint> {
    matr()
        .iter()
        .chain(calce())
        .map(|c| {
            let mut c = c.clone();
            c.clean(&CleanConfig::default()).unwrap();
            GenomeFingerprint::from_cell(&c).unwrap()
        })
        .collect()
}

#[test]
fn real_cells_fingerprint_and_group_by_chemistry() {
    let fps = real_fingerprints();
    assert_eq!(fps.len(), 88);
    let (lfp, lco) = (&fps[0], &fps[84]);
    assert_eq!(lfp.cathode.as_deref(), Some("LFP"));
    assert_eq!(lco.cathode.as_deref(), Some("LCO"));
    // the LFP plateau: the main dQ/dV peak of every MATR cell sits near 3.2-3.35 V
    for fp in &fps[..84] {
        let v = fp.signature.peaks[0].voltage_v;
        assert!((3.1..3.4).contains(&v), "{} peak at {v}", fp.cell_id);
    }
    // LCO discharges higher
    assert!(lco.signature.peaks[0].voltage_v > 3.5);
    // with signature-only weights (chemistry labels ignored), every CALCE cell's 3 nearest
    // neighbours are the other CALCE cells: the signature alone tells LCO from LFP
    let index = GenomeIndex::with_weights(fps.clone(), GenomeWeights::signature_only());
    for (i, fp) in fps.iter().enumerate().skip(84) {
        let near = index.nearest_where(fp, 3, |j| j != i);
        assert!(
            near.iter().all(|&(j, _)| j >= 84),
            "{}: {near:?}",
            fp.cell_id
        );
    }
    // and MATR cells find MATR cells
    let near = index.nearest_where(&fps[0], 10, |j| j != 0);
    assert!(near.iter().all(|&(j, _)| j < 84));
}

#[test]
fn fingerprint_errors_are_typed() {
    let mut cell = calce()[0].clone();
    cell.meta.nominal_capacity_ah = -1.0;
    assert!(matches!(
        GenomeFingerprint::from_cell(&cell),
        Err(Error::InvalidData { .. })
    ));
    let bad = SignatureConfig {
        curve_points: 1,
        ..Default::default()
    };
    assert!(matches!(
        Signature::from_cell(&calce()[0], &bad),
        Err(Error::InvalidConfig { .. })
    ));
    let mut empty = calce()[0].clone();
    empty.cycles.clear();
    assert!(matches!(
        GenomeFingerprint::from_cell(&empty),
        Err(Error::InvalidData { .. })
    ));
}

#[test]
fn index_nearest_is_sorted_and_bounded() {
    let fps = real_fingerprints();
    let index = GenomeIndex::new(fps.clone());
    let near = index.nearest(&fps[5], 200);
    assert_eq!(near.len(), 88);
    assert_eq!(near[0], (5, 0.0));
    assert!(near.windows(2).all(|w| w[0].1 <= w[1].1));
    let brute_min = fps
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != 5)
        .map(|(_, f)| fps[5].distance(f))
        .fold(f64::INFINITY, f64::min);
    assert_eq!(index.nearest_where(&fps[5], 1, |j| j != 5)[0].1, brute_min);
    assert!(index.nearest(&fps[5], 0).is_empty());
}

fn signature_strategy() -> impl Strategy<Value = Signature> {
    (
        prop::collection::vec(2.0f64..4.4, 64),
        prop::collection::vec(0.0f64..20.0, 48),
        0.5f64..1.2,
    )
        .prop_map(|(v_of_q, dqdv, capacity_ratio)| Signature {
            cycle: 10,
            capacity_ratio,
            v_of_q,
            dqdv,
            peaks: vec![],
        })
}

proptest! {
    #[test]
    fn signature_distance_is_a_metric(a in signature_strategy(), b in signature_strategy(), c in signature_strategy()) {
        let w = GenomeWeights::default();
        let (ab, ba, ac, cb) = (w.signature_distance(&a, &b), w.signature_distance(&b, &a), w.signature_distance(&a, &c), w.signature_distance(&c, &b));
        prop_assert_eq!(w.signature_distance(&a, &a), 0.0);
        prop_assert_eq!(ab, ba);
        prop_assert!(ab >= 0.0);
        prop_assert!(ab <= ac + cb + 1e-12, "triangle: {} > {} + {}", ab, ac, cb);
        if a != b { prop_assert!(ab > 0.0); }
    }

    #[test]
    fn fingerprint_distance_is_zero_on_identical_and_symmetric(
        i in 0usize..88, j in 0usize..88, cap in 0.5f64..3.0, ni in 0.0f64..1.0,
    ) {
        let fps = real_fingerprints_cached();
        let mut a = fps[i].clone();
        a.nominal_capacity_ah = cap;
        a.composition.insert("Ni".into(), ni);
        let b = &fps[j];
        prop_assert_eq!(a.distance(&a.clone()), 0.0);
        prop_assert_eq!(a.distance(b), b.distance(&a));
        prop_assert!(a.distance(b) >= 0.0);
    }
}

fn real_fingerprints_cached() -> &'static [GenomeFingerprint] {
    static FPS: std::sync::OnceLock<Vec<GenomeFingerprint>> = std::sync::OnceLock::new();
    FPS.get_or_init(real_fingerprints)
}
