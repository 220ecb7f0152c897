//! Unit tests of `Dataset`: the checked constructor and the pair statistics.

use approx::assert_relative_eq;

use super::*;

/// `n` fingerprints of one synthetic cell.
fn fingerprints(n: usize) -> Vec<GenomeFingerprint> {
    let fleets = crate::data::synthetic::FleetConfig::default()
        .with_fleets(1)
        .with_cells_per_fleet(1)
        .generate()
        .unwrap();
    vec![GenomeFingerprint::from_cell(&fleets[0].cells[0]).unwrap(); n]
}

#[test]
fn arrays_that_do_not_fit_the_cells_are_a_shape_error() {
    let ids = || vec!["a".to_string(), "b".to_string()];
    // 2 cells of 1 x 2 x 3 = 6 values each
    let ok = Dataset::new(
        ids(),
        vec![0.0; 12],
        vec![0.0; 12],
        vec![Some(500.0), None],
        fingerprints(2),
        [1, 2, 3],
    )
    .unwrap();
    assert_eq!((ok.len(), ok.block(), ok.shape()), (2, 6, [1, 2, 3]));
    assert_eq!(ok.labels(), [Some(500.0), None]);
    let shape_error = |r: Result<Dataset>, what: &str, expected: usize, got: usize| match r {
        Err(Error::Shape {
            what: w,
            expected: e,
            got: g,
        }) => assert_eq!((w.as_str(), e, g), (what, vec![expected], vec![got])),
        other => panic!("expected a shape error for {what}, got {other:?}"),
    };
    let new = |a: usize, r: usize, l: usize, f: usize| {
        Dataset::new(
            ids(),
            vec![0.0; a],
            vec![0.0; r],
            vec![None; l],
            fingerprints(f),
            [1, 2, 3],
        )
    };
    shape_error(new(11, 12, 2, 2), "dataset branch_a", 12, 11);
    shape_error(new(12, 18, 2, 2), "dataset raw", 12, 18);
    shape_error(new(12, 12, 3, 2), "dataset labels", 2, 3);
    shape_error(new(12, 12, 2, 0), "dataset fingerprints", 2, 0);
    shape_error(ok.clone().with_labels(vec![None]), "dataset labels", 2, 1);
    shape_error(
        ok.clone().with_fingerprints(fingerprints(3)),
        "dataset fingerprints",
        2,
        3,
    );
    // a dataset whose arrays fit no cells at all is rejected too, not read past its end
    shape_error(
        Dataset::new(vec![], vec![0.0; 6], vec![], vec![], vec![], [1, 2, 3]),
        "dataset branch_a",
        0,
        6,
    );
}

#[test]
fn pair_rms_is_per_channel_over_the_given_pairs_only() {
    // 3 cells, 2 channels, 1 x 2 grid; channel 1 is all zero
    let ds = Dataset::new(
        vec!["a".into(), "b".into(), "c".into()],
        vec![0.0; 12],
        vec![
            1.0, 1.0, 0.0, 0.0, // a
            2.0, 0.0, 0.0, 0.0, // b
            11.0, 11.0, 0.0, 0.0, // c
        ],
        vec![None; 3],
        fingerprints(3),
        [2, 1, 2],
    )
    .unwrap();
    // (a, b): differences -1, +1 -> rms 1; (c, a) alone would be 10
    assert_eq!(ds.pair_rms([(0, 1), (1, 0)]), vec![1.0, 1.0]);
    let both = ds.pair_rms([(0, 1), (2, 0)]);
    assert_relative_eq!(both[0], (101.0f32 / 2.0).sqrt(), max_relative = 1e-6);
    assert_eq!(ds.pair_rms(std::iter::empty()), vec![1.0, 1.0]);

    // cycle-difference inter features: `raw` becomes `branch_a`, and the two kinds do not mix
    let cd = ds
        .clone()
        .with_inter_features(InterFeatures::CycleDifference)
        .unwrap();
    assert_eq!(
        (&cd.raw[..], cd.inter),
        (&cd.branch_a[..], InterFeatures::CycleDifference)
    );
    assert!(matches!(
        Dataset::concat(&[&ds, &cd]),
        Err(Error::InvalidConfig { field, .. }) if field == "inter_features"
    ));
    assert_eq!(Dataset::concat(&[&cd, &cd]).unwrap().len(), 6);
}

#[test]
fn borrowed_cells_featurize_as_owned_ones() {
    let cells: Vec<_> = crate::data::synthetic::FleetConfig::default()
        .with_fleets(1)
        .with_cells_per_fleet(2)
        .generate()
        .unwrap()
        .into_iter()
        .flat_map(|f| f.cells)
        .collect();
    let featurizer =
        Featurizer::new(crate::features::FeaturizerConfig::default().with_interp_dim(16)).unwrap();
    let label = LabelConfig::default();
    let owned = Dataset::from_cells(&cells, &featurizer, &[1], &label).unwrap();
    let refs: Vec<&Cell> = cells.iter().rev().collect();
    let borrowed = Dataset::from_cells(&refs, &featurizer, &[1], &label).unwrap();
    assert_eq!(borrowed.subset(&[1, 0]).unwrap(), owned);
}
