//! BatLiNet predictions with conformal intervals, the spread over references and
//! out-of-distribution flags.

use approx::assert_relative_eq;
use battery_fl_core::data::synthetic::FleetConfig;
use battery_fl_core::data::{Cell, LabelConfig};
use battery_fl_core::features::{Featurizer, FeaturizerConfig};
use battery_fl_core::model::{
    conformal_quantile, label_group, BatLiNet, BatLiNetConfig, Dataset, IntervalCalibration,
    TrainOptions, MONDRIAN_MIN_CELLS,
};
use battery_fl_core::Error;

fn cells(per_fleet: usize, seed: u64) -> Vec<Cell> {
    FleetConfig::default()
        .with_fleets(5)
        .with_cells_per_fleet(per_fleet)
        .with_seed(seed)
        .generate()
        .unwrap()
        .into_iter()
        .flat_map(|f| f.cells)
        .collect()
}

fn featurizer() -> FeaturizerConfig {
    FeaturizerConfig::default().with_interp_dim(64)
}

fn dataset(cells: &[Cell]) -> Dataset {
    let f = Featurizer::new(featurizer()).unwrap();
    Dataset::from_cells(cells, &f, &[0, 1, 2, 3, 4, 5], &LabelConfig::default()).unwrap()
}

fn network() -> BatLiNetConfig {
    BatLiNetConfig::default()
        .with_conv_channels(8)
        .with_epochs(30)
        .with_batch_size(16)
        .with_seed(5)
        .with_progress(false)
        .with_inference_references(8)
}

fn positions(ds: &Dataset, keep: impl Fn(usize, Option<&str>) -> bool) -> Vec<usize> {
    let cathodes = ds.cathodes();
    (0..ds.len()).filter(|&i| keep(i, cathodes[i])).collect()
}

fn covered(p: &[battery_fl_core::model::Prediction], lives: &[f64]) -> f64 {
    let n = p
        .iter()
        .zip(lives)
        .filter(|(p, &y)| p.lower <= y && y <= p.upper)
        .count();
    n as f64 / lives.len() as f64
}

#[test]
fn intervals_cover_held_out_cells_and_unseen_chemistries_are_flagged() {
    let all = dataset(&cells(24, 11));
    // the rarest chemistry is never trained or calibrated on
    let cathodes = all.cathodes();
    let mut counts: Vec<(Option<&str>, usize)> = Vec::new();
    for c in &cathodes {
        match counts.iter_mut().find(|(k, _)| k == c) {
            Some(e) => e.1 += 1,
            None => counts.push((*c, 1)),
        }
    }
    counts.sort_by_key(|e| e.1);
    assert!(counts.len() >= 2, "the fleets mix chemistries: {counts:?}");
    let unseen = counts[0].0;
    let seen = positions(&all, |_, c| c != unseen);
    let third = |r: usize| {
        seen.iter()
            .copied()
            .filter(|i| i % 3 == r)
            .collect::<Vec<_>>()
    };
    let (train, calibration, test) = (
        all.subset(&third(0).into_iter().chain(third(1)).collect::<Vec<_>>())
            .unwrap(),
        all.subset(
            &third(2)
                .into_iter()
                .filter(|i| i % 2 == 0)
                .collect::<Vec<_>>(),
        )
        .unwrap(),
        all.subset(
            &third(2)
                .into_iter()
                .filter(|i| i % 2 == 1)
                .collect::<Vec<_>>(),
        )
        .unwrap(),
    );
    let new_chemistry = all.subset(&positions(&all, |_, c| c == unseen)).unwrap();
    let mut model = BatLiNet::new(network(), featurizer()).unwrap();
    model.fit(&train).unwrap();
    let cal = model.calibrate(&train, &calibration, &train).unwrap();
    assert_eq!(cal.len(), calibration.len());
    assert!(cal.scale > 0.0, "eight references disagree somewhat");

    // the point prediction is the model's, inside its interval; the naive one brackets it
    let p = model.predict_intervals(&test, &train, &cal, 0.8).unwrap();
    let plain = model.predict(&test, &train).unwrap();
    for (p, want) in p.iter().zip(&plain) {
        assert_relative_eq!(p.life, *want, max_relative = 1e-9);
        assert!(p.lower <= p.life && p.life <= p.upper, "{p:?}");
        assert!(
            p.reference_low <= p.life && p.life <= p.reference_high,
            "{p:?}"
        );
        assert!(p.spread >= 0.0 && p.reference_distance.is_some());
    }
    // half-widths in ln(life) follow the difficulty: q · (s + β); by default each chemistry
    // gets its own quantile only from MONDRIAN_MIN_CELLS calibration cells, and this small
    // calibration has fewer of every chemistry: the pooled quantile everywhere
    assert!(cal.by_chemistry);
    assert!(cal
        .group_scores
        .iter()
        .all(|g| g.len() < MONDRIAN_MIN_CELLS));
    let pooled = conformal_quantile(&cal.scores, 0.8).unwrap();
    for p in p.iter().filter(|p| !p.bounded) {
        let half = (p.upper / p.life).ln();
        assert_relative_eq!(half, pooled * (p.spread + cal.scale), max_relative = 1e-6);
    }
    // by chemistry (Mondrian): with one chemistry's scores repeated to MONDRIAN_MIN_CELLS, its
    // cells get that chemistry's quantile and the others keep the pooled one
    let mut mondrian = cal.clone();
    let largest = (0..cal.group_scores.len())
        .max_by_key(|&g| cal.group_scores[g].len())
        .unwrap();
    let mut padded: Vec<f64> = cal.group_scores[largest]
        .iter()
        .copied()
        .cycle()
        .take(MONDRIAN_MIN_CELLS)
        .collect();
    padded.sort_by(f64::total_cmp);
    mondrian.group_scores[largest] = padded;
    let own = |c: Option<&str>| {
        label_group(c)
            .filter(|&g| mondrian.group_scores[g].len() >= MONDRIAN_MIN_CELLS)
            .and_then(|g| conformal_quantile(&mondrian.group_scores[g], 0.8).ok())
    };
    let cathodes = test.cathodes();
    assert!(
        cathodes
            .iter()
            .any(|c| own(*c).is_some_and(|q| (q - pooled).abs() > 1e-9))
            && cathodes.iter().any(|c| own(*c).is_none()),
        "one chemistry has its own quantile, unlike the pooled one; another has not"
    );
    let by = model
        .predict_intervals(&test, &train, &mondrian, 0.8)
        .unwrap();
    for (p, c) in by.iter().zip(&cathodes).filter(|(p, _)| !p.bounded) {
        let half = (p.upper / p.life).ln();
        let q = own(*c).unwrap_or(pooled);
        assert_relative_eq!(half, q * (p.spread + cal.scale), max_relative = 1e-6);
    }
    // switched off: the pooled quantile even for the chemistry with enough cells
    let off = IntervalCalibration {
        by_chemistry: false,
        ..mondrian.clone()
    };
    let pooled_only = model.predict_intervals(&test, &train, &off, 0.8).unwrap();
    for (a, b) in pooled_only.iter().zip(&p) {
        assert_relative_eq!(a.upper, b.upper, max_relative = 1e-9);
    }
    // on the calibration cells themselves the quantile covers at least the nominal share
    let lives = calibration.require_labels().unwrap();
    let on_cal = model
        .predict_intervals(&calibration, &train, &cal, 0.8)
        .unwrap();
    assert!(covered(&on_cal, &lives) >= 0.8);
    // held-out cells of the seen chemistries: coverage near nominal, wider at 0.9
    let lives = test.require_labels().unwrap();
    let c80 = covered(&p, &lives);
    assert!((0.6..=1.0).contains(&c80), "80 % intervals cover {c80}");
    let p90 = model.predict_intervals(&test, &train, &cal, 0.9).unwrap();
    assert!(p90
        .iter()
        .zip(&p)
        .all(|(a, b)| a.upper >= b.upper && a.lower <= b.lower));
    assert!(covered(&p90, &lives) >= c80);

    // every cell of the chemistry absent from training and calibration is flagged, few others
    let ood = model
        .predict_intervals(&new_chemistry, &train, &cal, 0.8)
        .unwrap();
    assert!(ood.iter().all(|p| p.out_of_distribution));
    let flagged = p.iter().filter(|p| p.out_of_distribution).count();
    assert!(
        (flagged as f64) < 0.2 * p.len() as f64,
        "{flagged} of {} in-distribution cells flagged",
        p.len()
    );
    // a calibration is plain data: it survives JSON
    let back: IntervalCalibration =
        serde_json::from_str(&serde_json::to_string(&cal).unwrap()).unwrap();
    assert_eq!(back, cal);
}

#[test]
fn calibration_refuses_training_cells_and_too_few_cells() {
    let all = dataset(&cells(6, 3));
    let train = all.subset(&(0..20).collect::<Vec<_>>()).unwrap();
    let held = all.subset(&(20..all.len()).collect::<Vec<_>>()).unwrap();
    let mut model = BatLiNet::new(network().with_epochs(2), featurizer()).unwrap();
    model.fit(&train).unwrap();
    let overlap = all.subset(&[25, 3]).unwrap();
    assert!(matches!(
        model.calibrate(&train, &overlap, &train),
        Err(Error::InvalidConfig { ref field, .. }) if field == "calibration"
    ));
    let few = all.subset(&[21, 22, 23]).unwrap();
    let cal = model.calibrate(&train, &few, &train).unwrap();
    let r = model.predict_intervals(&held, &train, &cal, 0.9);
    assert!(
        matches!(
            r,
            Err(Error::NotEnoughData {
                needed: 9,
                got: 3,
                ..
            })
        ),
        "{r:?}"
    );
    assert!(matches!(
        model.predict_intervals(&held, &train, &cal, 1.0),
        Err(Error::InvalidConfig { .. })
    ));
    // a calibration read from outside is checked: unsorted scores are refused
    let mut tampered = cal.clone();
    tampered.scores.reverse();
    tampered.scores.push(0.0);
    assert!(matches!(
        model.predict_intervals(&held, &train, &tampered, 0.5),
        Err(Error::Model { .. })
    ));
    // a copy of the model still matches its calibration; the model trained further does not
    let copy = BatLiNet::from_bytes(&model.to_bytes().unwrap()).unwrap();
    assert!(copy.predict_intervals(&held, &train, &cal, 0.5).is_ok());
    model
        .train(
            &train,
            &TrainOptions {
                epochs: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(matches!(
        model.predict_intervals(&held, &train, &cal, 0.5),
        Err(Error::Model { .. })
    ));
    let unlabelled = held.clone().with_labels(vec![None; held.len()]).unwrap();
    assert!(model.calibrate(&train, &unlabelled, &train).is_err());
    assert!(matches!(
        model.cross_calibrate(&train, 1),
        Err(Error::InvalidConfig { ref field, .. }) if field == "folds"
    ));
}

#[test]
fn cross_calibration_scores_every_training_cell_and_a_single_branch_gets_one_width() {
    let all = dataset(&cells(8, 5));
    let train = all.subset(&(0..30).collect::<Vec<_>>()).unwrap();
    let test = all.subset(&(30..all.len()).collect::<Vec<_>>()).unwrap();
    let config = network().with_epochs(4).with_single_branch(true);
    let mut model = BatLiNet::new(config, featurizer()).unwrap();
    model.fit(&train).unwrap();
    let cal = model.cross_calibrate(&train, 3).unwrap();
    assert_eq!(cal.len(), train.len());
    assert_eq!(cal.scale, 0.0, "one branch: no spread");
    let empty = train.subset(&[]).unwrap();
    let p = model.predict_intervals(&test, &empty, &cal, 0.8).unwrap();
    // one width for every cell
    let q = conformal_quantile(&cal.scores, 0.8).unwrap();
    for p in p.iter().filter(|p| !p.bounded) {
        assert_eq!(p.spread, 0.0);
        assert!(p.reference_distance.is_none());
        assert_relative_eq!((p.upper / p.life).ln(), q, max_relative = 1e-6);
        assert_relative_eq!((p.life / p.lower).ln(), q, max_relative = 1e-6);
    }
}

#[test]
fn cv_plus_intervals_cover_new_cells_nest_and_refuse_what_they_cannot_do() {
    // every other cell of five fleets trains, the rest are new cells of the same fleets
    let all = dataset(&cells(12, 9));
    let train = all.subset(&positions(&all, |i, _| i % 2 == 0)).unwrap();
    let test = all.subset(&positions(&all, |i, _| i % 2 == 1)).unwrap();
    let mut model = BatLiNet::new(network().with_epochs(4), featurizer()).unwrap();
    model.fit(&train).unwrap();

    // refused before any training: a training cell as a target, a coverage outside (0, 1),
    // a coverage 30 cells cannot give (⌈31 · 0.99⌉ = 31 > 30)
    let own = train.subset(&[0]).unwrap();
    assert!(matches!(
        model.cross_conformal_intervals(&train, &own, 3, &[0.9]),
        Err(Error::InvalidConfig { .. })
    ));
    assert!(matches!(
        model.cross_conformal_intervals(&train, &test, 3, &[1.0]),
        Err(Error::InvalidConfig { .. })
    ));
    assert!(matches!(
        model.cross_conformal_intervals(&train, &test, 3, &[0.99]),
        Err(Error::NotEnoughData {
            needed: 99,
            got: 30,
            ..
        })
    ));

    let cv = model
        .cross_conformal_intervals(&train, &test, 3, &[0.8, 0.9])
        .unwrap();
    assert_eq!(cv.coverages, vec![0.8, 0.9]);
    let lives = test.require_labels().unwrap();
    let covered = |b: &[(f64, f64)]| {
        b.iter()
            .zip(&lives)
            .filter(|((lo, hi), y)| (*lo..=*hi).contains(*y))
            .count() as f64
            / lives.len() as f64
    };
    for ((lo8, hi8), (lo9, hi9)) in cv.bounds[0].iter().zip(&cv.bounds[1]) {
        assert!(lo8.is_finite() && hi9.is_finite() && 0.0 < *lo9);
        assert!(lo9 <= lo8 && lo8 < hi8 && hi8 <= hi9, "90 % holds 80 %");
    }
    // 30 new cells of the same fleets: near the nominal coverage (a wrong centre or sign of
    // the bounds covers next to nothing)
    let (c8, c9) = (covered(&cv.bounds[0]), covered(&cv.bounds[1]));
    assert!(c8 >= 0.6 && c9 >= 0.7 && c9 >= c8, "covered {c8} / {c9}");
}

/// With three calibration cells the flag's threshold is not theirs alone: it is the largest of
/// their distances to the training cells and every training cell's distance to its nearest
/// other training cell, so in-distribution cells are rarely flagged (three calibration cells
/// alone flag about one in four, by exchangeability).
#[test]
fn the_distance_flag_takes_its_threshold_from_the_training_cells_too() {
    use battery_fl_core::genome::GenomeIndex;
    // every fleet on both sides: each fourth cell is held out
    let all = dataset(&cells(24, 17));
    let held: Vec<usize> = (0..all.len()).filter(|i| i % 4 == 0).collect();
    let train = all
        .subset(&(0..all.len()).filter(|i| i % 4 != 0).collect::<Vec<_>>())
        .unwrap();
    let held_out = all.subset(&held).unwrap();
    let mut model = BatLiNet::new(network().with_epochs(2), featurizer()).unwrap();
    model.fit(&train).unwrap();

    let index = GenomeIndex::new(train.fingerprints().to_vec());
    let nearest = |fp, keep: &dyn Fn(usize) -> bool| index.nearest_where(fp, 1, keep)[0].1;
    let to_train: Vec<f64> = held_out
        .fingerprints()
        .iter()
        .map(|fp| nearest(fp, &|_| true))
        .collect();
    // each training cell's distance to its nearest other training cell of its cathode
    let fps = train.fingerprints();
    let loo: Vec<f64> = fps
        .iter()
        .enumerate()
        .filter(|(i, fp)| (0..fps.len()).any(|j| j != *i && fps[j].cathode == fp.cathode))
        .map(|(i, fp)| nearest(fp, &|j| j != i && fps[j].cathode == fp.cathode))
        .collect();
    let max = |v: &mut dyn Iterator<Item = f64>| v.fold(0.0, f64::max);
    let loo_max = max(&mut loo.iter().copied());

    // the calibration's threshold, for the first three held-out cells
    let few = held_out.subset(&[0, 1, 2]).unwrap();
    let cal = model.calibrate(&train, &few, &train).unwrap();
    assert_relative_eq!(
        cal.max_distance,
        max(&mut to_train[..3].iter().copied()).max(loo_max)
    );
    let p = model
        .predict_intervals(&held_out, &train, &cal, 0.5)
        .unwrap();
    for (q, d) in p.iter().zip(&to_train) {
        assert_relative_eq!(q.training_distance, *d, max_relative = 1e-12);
        // every chemistry was trained on: a flag is the distance alone
        assert_eq!(q.out_of_distribution, *d > cal.max_distance);
    }

    // over every triple of held-out cells calibrating, the others tested: the library's flags
    // against those three cells' distances alone
    let (mut before, mut now, mut tested) = (0, 0, 0);
    for t in 0..to_train.len() / 3 {
        let triple = held_out.subset(&[3 * t, 3 * t + 1, 3 * t + 2]).unwrap();
        let others: Vec<usize> = (0..to_train.len()).filter(|i| i / 3 != t).collect();
        let cal = model.calibrate(&train, &triple, &train).unwrap();
        let p = model
            .predict_intervals(&held_out.subset(&others).unwrap(), &train, &cal, 0.5)
            .unwrap();
        let own = max(&mut to_train[3 * t..3 * t + 3].iter().copied());
        tested += others.len();
        now += p.iter().filter(|q| q.out_of_distribution).count();
        before += others.iter().filter(|&&i| to_train[i] > own).count();
    }
    let rate = |n: usize| n as f64 / tested as f64;
    assert!(
        rate(now) < 0.1 && rate(before) > 0.15,
        "flagged: {:.3} with the training cells, {:.3} by three calibration cells alone",
        rate(now),
        rate(before)
    );
}
