//! BatLiNet model tests (need the `tch` feature: libtorch from the venv's torch wheel).

use std::sync::OnceLock;

use battery_fl_core::data::synthetic::FleetConfig;
use battery_fl_core::data::{Cell, LabelConfig};
use battery_fl_core::features::{Featurizer, FeaturizerConfig};
use battery_fl_core::model::{
    BatLiNet, BatLiNetConfig, Dataset, InterFeatures, LabelGrouping, LrSchedule, Metrics,
    ModelParams, ReferenceSelection, TrainOptions, Trainable, VarianceModel,
};
use battery_fl_core::Error;

fn featurizer_config() -> FeaturizerConfig {
    FeaturizerConfig::default().with_interp_dim(64)
}

/// Synthetic multi-chemistry fleets, split into train and test cells (fixed seed).
fn fleets() -> &'static (Vec<Cell>, Vec<Cell>, Dataset, Dataset) {
    static DATA: OnceLock<(Vec<Cell>, Vec<Cell>, Dataset, Dataset)> = OnceLock::new();
    DATA.get_or_init(|| {
        let cells: Vec<Cell> = FleetConfig::default()
            .with_fleets(4)
            .with_cells_per_fleet(24)
            .with_seed(7)
            .generate()
            .unwrap()
            .into_iter()
            .flat_map(|f| f.cells)
            .collect();
        let (train, test): (Vec<_>, Vec<_>) =
            cells.into_iter().enumerate().partition(|(i, _)| i % 3 != 0);
        let train: Vec<Cell> = train.into_iter().map(|(_, c)| c).collect();
        let test: Vec<Cell> = test.into_iter().map(|(_, c)| c).collect();
        let f = Featurizer::new(featurizer_config()).unwrap();
        let ch = [0, 1, 2, 3, 4, 5];
        let dtr = Dataset::from_cells(&train, &f, &ch, &LabelConfig::default()).unwrap();
        let dte = Dataset::from_cells(&test, &f, &ch, &LabelConfig::default()).unwrap();
        (train, test, dtr, dte)
    })
}

fn small_config(seed: u64) -> BatLiNetConfig {
    BatLiNetConfig::default()
        .with_conv_channels(8)
        .with_epochs(40)
        .with_batch_size(16)
        .with_seed(seed)
        .with_progress(false)
        .with_inference_references(8)
}

fn model(config: BatLiNetConfig) -> BatLiNet {
    BatLiNet::new(config, featurizer_config()).unwrap()
}

fn truth(ds: &Dataset) -> Vec<f64> {
    ds.require_labels().unwrap()
}

#[test]
fn loss_decreases_and_training_is_deterministic() {
    let (_, _, train, test) = fleets();
    let mut a = model(small_config(3).with_epochs(15));
    let report = a.fit(train).unwrap();
    let first = report.epoch_losses[0];
    let last = *report.epoch_losses.last().unwrap();
    assert!(last < 0.6 * first, "loss {first} -> {last}");
    let mut b = model(small_config(3).with_epochs(15));
    let report_b = b.fit(train).unwrap();
    assert_eq!(report.epoch_losses, report_b.epoch_losses);
    assert_eq!(a.params().unwrap(), b.params().unwrap());
    assert_eq!(
        a.predict(test, train).unwrap(),
        b.predict(test, train).unwrap()
    );
    let mut c = model(small_config(4).with_epochs(15));
    c.fit(train).unwrap();
    assert_ne!(a.params().unwrap(), c.params().unwrap());
}

/// Weight averaging changes only the end of training: averaging just the last epoch gives
/// the ordinary last weights, averaging the last half gives other (seeded) weights; a cosine
/// schedule is seeded too and still learns.
#[test]
fn weight_averaging_and_cosine_schedule_are_seeded() {
    let (_, _, train, _) = fleets();
    let fit = |config: BatLiNetConfig| {
        let mut m = model(config.with_epochs(10));
        let report = m.fit(train).unwrap();
        (m.params().unwrap(), report.epoch_losses)
    };
    let (last, _) = fit(small_config(5));
    let (one_epoch, _) = fit(small_config(5).with_weight_averaging(0.05));
    assert_eq!(one_epoch, last);
    let (half, _) = fit(small_config(5).with_weight_averaging(0.5));
    assert_ne!(half, last);
    assert_eq!(fit(small_config(5).with_weight_averaging(0.5)).0, half);
    let (cosine, losses) = fit(small_config(5).with_lr_schedule(LrSchedule::Cosine));
    assert_ne!(cosine, last);
    assert_eq!(
        fit(small_config(5).with_lr_schedule(LrSchedule::Cosine)).0,
        cosine
    );
    assert!(losses[9] < losses[0], "cosine losses {losses:?}");
}

/// Multi-chemistry fleets: BatLiNet takes genome-nearest references (method.md section 6), in
/// training as at inference, so branch B learns and predicts within-chemistry differences.
/// C = 16: with 8 channels branch A's final ReLUs can all switch off (2 seeds in 4).
#[test]
fn batlinet_beats_the_cnn_and_the_variance_model_on_synthetic_fleets() {
    let (train_cells, test_cells, train, test) = fleets();
    let y = truth(test);
    let variance =
        VarianceModel::fit(train_cells, &Default::default(), &LabelConfig::default()).unwrap();
    let var_rmse = Metrics::compute(&variance.predict(test_cells).unwrap(), &y)
        .unwrap()
        .rmse;
    let (mut bat, mut cnn) = (0.0, 0.0);
    let seeds = [1, 2];
    let epochs: usize = std::env::var("BFL_EPOCHS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    for seed in seeds {
        let config = small_config(seed)
            .with_conv_channels(16)
            .with_epochs(epochs);
        let mut m = model(config.clone().with_selection(ReferenceSelection::Genome));
        m.fit(train).unwrap();
        bat += Metrics::compute(&m.predict(test, train).unwrap(), &y)
            .unwrap()
            .rmse;
        let mut s = model(config.with_single_branch(true));
        s.fit(train).unwrap();
        cnn += Metrics::compute(&s.predict(test, train).unwrap(), &y)
            .unwrap()
            .rmse;
    }
    let (bat, cnn) = (bat / seeds.len() as f64, cnn / seeds.len() as f64);
    eprintln!("synthetic RMSE: batlinet {bat:.1}, cnn {cnn:.1}, variance {var_rmse:.1}");
    assert!(bat < cnn, "batlinet {bat} vs cnn {cnn}");
    assert!(bat < var_rmse, "batlinet {bat} vs variance {var_rmse}");
}

#[test]
fn save_load_round_trip_and_incompatible_files() {
    let (_, _, train, test) = fleets();
    let mut m = model(small_config(5).with_epochs(3));
    m.fit(train).unwrap();
    let dir = std::env::temp_dir().join(format!("bfl-model-{}", std::process::id()));
    m.save(&dir).unwrap();
    let back = BatLiNet::load(&dir).unwrap();
    assert_eq!(back.params().unwrap(), m.params().unwrap());
    assert_eq!(
        back.predict(test, train).unwrap(),
        m.predict(test, train).unwrap()
    );

    // a description whose architecture differs from the weights names the mismatch
    let json = dir.join("model.json");
    let text = std::fs::read_to_string(&json)
        .unwrap()
        .replace("\"conv_channels\": 8", "\"conv_channels\": 16");
    std::fs::write(&json, text).unwrap();
    match BatLiNet::load(&dir) {
        Err(Error::Shape { what, .. }) => assert!(what.contains("branch_a.conv1"), "{what}"),
        other => panic!("expected a shape error, got {other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();

    let wrong = ModelParams::new(vec![("head.weight".into(), vec![1, 8], vec![0.0; 8])]).unwrap();
    assert!(matches!(m.set_params(&wrong), Err(Error::Shape { .. })));
}

#[test]
fn fine_tuning_leaves_encoders_unchanged() {
    let (_, _, train, _) = fleets();
    let mut m = model(small_config(6).with_epochs(3));
    m.fit(train).unwrap();
    let before = m.params().unwrap();
    let few = train.subset(&[0, 1, 2, 3]).unwrap();
    m.fine_tune(&few, Trainable::HeadOnly, 5).unwrap();
    let after = m.params().unwrap();
    for (p, q) in before.params().iter().zip(after.params()) {
        if p.name == "head.weight" {
            assert_ne!(p.data, q.data, "the head must move");
        } else {
            assert_eq!(p.data, q.data, "{} must stay frozen", p.name);
        }
    }
    let mut m2 = model(small_config(6).with_epochs(3));
    m2.fit(train).unwrap();
    m2.fine_tune(&few, Trainable::HeadAndProjections, 5)
        .unwrap();
    let after2 = m2.params().unwrap();
    for (p, q) in before.params().iter().zip(after2.params()) {
        let moved = p.data != q.data;
        assert_eq!(
            moved,
            p.name == "head.weight" || p.name.contains("conv3"),
            "{}",
            p.name
        );
    }
    assert!(matches!(
        m.fine_tune(&few, Trainable::All, 1),
        Err(Error::InvalidConfig { .. })
    ));
}

#[test]
fn median_over_references_ignores_one_absurd_reference() {
    let (_, _, train, test) = fleets();
    let mut m = model(small_config(8).with_epochs(10));
    m.fit(train).unwrap();
    let refs = train.subset(&(0..9).collect::<Vec<_>>()).unwrap();
    let one = test.subset(&[0]).unwrap();
    let base = m
        .predict_with(&one, &refs, 9, ReferenceSelection::Random, 0)
        .unwrap()[0];
    let mut labels = refs.labels().to_vec();
    labels[4] = Some(1e9); // an absurd label on one reference
    let poisoned = refs.clone().with_labels(labels).unwrap();
    let robust = m
        .predict_with(&one, &poisoned, 9, ReferenceSelection::Random, 0)
        .unwrap()[0];
    assert!((robust - base).abs() / base < 0.1, "{base} -> {robust}");
}

#[test]
fn branch_predictions_combine_into_the_prediction() {
    let (_, _, train, test) = fleets();
    let mut m = model(small_config(8).with_epochs(10));
    m.fit(train).unwrap();
    let labels = m.label_transform().unwrap();
    let pred = m
        .predict_with(test, train, 8, ReferenceSelection::Random, 3)
        .unwrap();
    let br = m
        .predict_branches(test, train, 8, ReferenceSelection::Random, 3)
        .unwrap();
    let b = br.b.expect("two branches");
    assert_eq!((br.a.len(), b.len()), (test.len(), test.len()));
    let alpha = m.config().alpha;
    for i in 0..test.len() {
        let mixed = (1.0 - alpha) * labels.forward(br.a[i]) + alpha * labels.forward(b[i]);
        approx::assert_relative_eq!(labels.inverse(mixed), pred[i], max_relative = 1e-9);
    }
    // the branches are different predictors, not one number reported twice
    assert!(br.a.iter().zip(&b).any(|(a, b)| (a - b).abs() > 1.0));

    let mut cnn = model(small_config(8).with_epochs(2).with_single_branch(true));
    cnn.fit(train).unwrap();
    let br = cnn
        .predict_branches(test, train, 8, ReferenceSelection::Random, 3)
        .unwrap();
    assert!(br.b.is_none());
    let pred = cnn
        .predict_with(test, train, 8, ReferenceSelection::Random, 3)
        .unwrap();
    for (a, p) in br.a.iter().zip(&pred) {
        approx::assert_relative_eq!(*a, *p, max_relative = 1e-9);
    }
}

#[test]
fn fedprox_term_pulls_towards_the_global_model() {
    let (_, _, train, _) = fleets();
    let mut start = model(small_config(9).with_epochs(1));
    start.fit(train).unwrap();
    let global = start.params().unwrap();
    let dist = |m: &BatLiNet| m.params().unwrap().sub(&global).unwrap().l2_norm();
    let run = |mu: f64| {
        let mut m = model(small_config(9));
        m.set_label_transform(start.label_transform().unwrap());
        m.set_params(&global).unwrap();
        let opts = TrainOptions {
            epochs: Some(5),
            mu,
            global: Some(global.clone()),
            ..Default::default()
        };
        m.train(train, &opts).unwrap();
        dist(&m)
    };
    let (free, prox) = (run(0.0), run(50.0));
    assert!(prox < 0.8 * free, "mu=50 drift {prox} vs mu=0 drift {free}");
    let mut m = model(small_config(9));
    m.set_label_transform(start.label_transform().unwrap());
    let bad = TrainOptions {
        mu: 1.0,
        ..Default::default()
    };
    assert!(matches!(
        m.train(train, &bad),
        Err(Error::InvalidConfig { .. })
    ));
}

#[test]
fn genome_selection_picks_same_chemistry_references() {
    let (_, _, train, test) = fleets();
    let mut m = model(small_config(10).with_epochs(2));
    m.fit(train).unwrap();
    let pred_random = m
        .predict_with(test, train, 4, ReferenceSelection::Random, 1)
        .unwrap();
    let pred_genome = m
        .predict_with(test, train, 4, ReferenceSelection::Genome, 1)
        .unwrap();
    assert_eq!(pred_random.len(), test.len());
    assert!(pred_genome.iter().all(|p| p.is_finite() && *p > 0.0));
    let sel = battery_fl_core::model::select_references(
        test,
        train,
        4,
        ReferenceSelection::Genome,
        &mut battery_fl_core::rng::seeded(0),
    )
    .unwrap();
    for (t, refs) in sel.iter().enumerate() {
        for &r in refs {
            assert_eq!(
                test.fingerprints()[t].cathode,
                train.fingerprints()[r].cathode
            );
        }
    }
}

#[test]
fn both_transfer_routes_beat_training_on_few_target_cells() {
    use battery_fl_core::data::synthetic::{CellSpec, Chemistry};
    use battery_fl_core::model::TransferStudy;
    use rand::Rng;
    // source: many LFP cells; target: NMC; conditions drawn at random (seeded)
    let mut rng = battery_fl_core::rng::seeded(21);
    let mut make = |chem: Chemistry, n: usize, tag: &str| -> Vec<Cell> {
        (0..n)
            .map(|i| {
                CellSpec::new(chem)
                    .with_charge_c_rate(rng.random_range(0.5..3.0))
                    .with_discharge_c_rate(rng.random_range(0.5..2.0))
                    .with_temperature_c(rng.random_range(15.0..40.0))
                    .with_depth_of_discharge(rng.random_range(0.6..1.0))
                    .generate(&format!("{tag}-{i}"), i as u64 + 1000 * tag.len() as u64)
                    .unwrap()
            })
            .collect()
    };
    let source = make(Chemistry::Lfp, 48, "src");
    let pool = make(Chemistry::Nmc, 8, "pool");
    let test = make(Chemistry::Nmc, 24, "test-nmc");
    let f = Featurizer::new(featurizer_config()).unwrap();
    let ds = |cells: &[Cell]| {
        Dataset::from_cells(cells, &f, &[0, 1, 2, 3, 4, 5], &LabelConfig::default()).unwrap()
    };
    let (source, pool, test) = (ds(&source), ds(&pool), ds(&test));
    // The head's fine-tuning gets the source training's optimizer-step budget (the study's
    // default): 40 epochs x 3 batches of 16 = 120 steps, and with at most 8 target cells every
    // epoch is one step. A fixed 60 steps left the frozen-encoder head short of its optimum.
    let study = TransferStudy {
        repeats: 2,
        ..TransferStudy::new(small_config(2), featurizer_config())
    };
    assert_eq!(
        study.fine_tune_epochs_for(&source, &pool.subset(&[0, 1, 2, 3]).unwrap()),
        120
    );
    let rows = study.run(&source, &pool, &test).unwrap();
    for r in &rows {
        eprintln!("{r:?}");
    }
    for r in &rows {
        assert!(r.fine_tune_rmse < r.scratch_rmse, "{r:?}");
        assert!(r.inter_cell_rmse < r.scratch_rmse, "{r:?}");
    }
}

/// `clean_pairs` (the published route) cleans every target-minus-reference difference: a
/// one-point spike planted in a target's raw curves is zeroed in every difference, so branch
/// B's prediction barely moves, while the default route (cycle filter per cell, shared first
/// convolution) passes the spike on to branch B.
#[test]
fn clean_pairs_removes_a_spike_from_every_inter_cell_difference() {
    let (_, _, train, test) = fleets();
    let plain = test.subset(&[0]).unwrap();
    let [c, h, w] = plain.shape();
    let mut raw = plain.raw().to_vec();
    for row in 0..c * h {
        raw[row * w + w / 2] += 5.0;
    }
    let spiked = Dataset::new(
        plain.cell_ids().to_vec(),
        plain.branch_a().to_vec(),
        raw,
        plain.labels().to_vec(),
        plain.fingerprints().to_vec(),
        plain.shape(),
    )
    .unwrap()
    .with_inter_features(plain.inter())
    .unwrap();
    let branch_b = |m: &BatLiNet, ds: &Dataset| {
        m.predict_branches(ds, train, 8, ReferenceSelection::Random, 0)
            .unwrap()
            .b
            .unwrap()[0]
    };
    let mut moved = Vec::new();
    for clean in [true, false] {
        // pooled labels: the thresholds are calibrated in pooled log-life units
        let config = small_config(6).with_epochs(5).with_clean_pairs(clean);
        let mut m = model(config.with_label_grouping(LabelGrouping::Pooled));
        m.fit(train).unwrap();
        let (p, q) = (branch_b(&m, &plain), branch_b(&m, &spiked));
        moved.push(((q - p) / p).abs());
    }
    eprintln!("relative moves of branch B (clean_pairs, default): {moved:?}");
    assert!(
        moved[1] > 0.005,
        "default route: B moved by only {:.4}",
        moved[1]
    );
    assert!(moved[0] < 0.2 * moved[1], "relative moves {moved:?}");
}

/// With cycle-difference inter features, branch B reads what changed within each cell, so a
/// voltage offset that a cell carries in every cycle (manufacturing spread) cancels; raw inter
/// features pass it on. Datasets built for the other kind are refused with a typed error.
#[test]
fn cycle_difference_inter_features_cancel_a_constant_cell_offset() {
    let (_, test_cells, train_raw, _) = fleets();
    let f = Featurizer::new(featurizer_config()).unwrap();
    let mut offset = test_cells[0].clone();
    for cycle in &mut offset.cycles {
        cycle.voltage_v.iter_mut().for_each(|v| *v += 0.02);
    }
    let mut moved = Vec::new();
    for inter in [InterFeatures::CycleDifference, InterFeatures::Raw] {
        // pooled labels: the thresholds are calibrated in pooled log-life units
        let config = small_config(8)
            .with_epochs(5)
            .with_inter_features(inter)
            .with_label_grouping(LabelGrouping::Pooled);
        let ds = |cells: &[Cell]| {
            Dataset::for_config(cells, &f, &config, &LabelConfig::default()).unwrap()
        };
        let train = train_raw.clone().with_inter_features(inter).unwrap();
        let mut m = model(config.clone());
        m.fit(&train).unwrap();
        let b = |targets: &Dataset| {
            m.predict_branches(targets, &train, 8, ReferenceSelection::Random, 0)
                .unwrap()
                .b
                .unwrap()[0]
        };
        let (p, q) = (b(&ds(&test_cells[..1])), b(&ds(&[offset.clone()])));
        moved.push(((q - p) / p).abs());
        // a model of one kind refuses datasets of the other
        let other = match inter {
            InterFeatures::Raw => train
                .clone()
                .with_inter_features(InterFeatures::CycleDifference),
            InterFeatures::CycleDifference => Ok(train_raw.clone()),
        }
        .unwrap();
        match m.predict(&other, &train) {
            Err(Error::InvalidConfig { field, .. }) => assert_eq!(field, "inter_features"),
            r => panic!("expected an inter_features error, got {r:?}"),
        }
    }
    eprintln!("relative moves of branch B (cycle difference, raw): {moved:?}");
    assert!(
        moved[1] > 0.002,
        "raw route: B moved by only {:.4}",
        moved[1]
    );
    assert!(moved[0] < 0.01 * moved[1], "relative moves {moved:?}");
}

/// A model far outside its training range is bounded and says so, instead of printing 1e19.
#[test]
fn predictions_are_bounded_around_the_training_labels() {
    use battery_fl_core::model::{LabelTransform, ReferenceSelection};
    let (_, _, train, test) = fleets();
    let mut m = model(small_config(3).with_epochs(10));
    m.fit(train).unwrap();
    let (_, flags) = m
        .predict_bounded(test, train, 2, ReferenceSelection::Random, 1)
        .unwrap();
    assert!(flags.iter().filter(|f| **f).count() <= flags.len() / 2);
    let mut p = m.params().unwrap();
    for v in p.values_mut() {
        v.iter_mut().for_each(|x| *x *= 50.0);
    }
    m.set_params(&p).unwrap();
    let labels: LabelTransform = m.label_transform().unwrap();
    let (lives, flags) = m
        .predict_bounded(test, train, 2, ReferenceSelection::Random, 1)
        .unwrap();
    // each cell is bounded around its own chemistry's training labels
    for (l, c) in lives.iter().zip(test.cathodes()) {
        let (lo, hi) = (
            labels.inverse_for(-labels.bound_for(c), c),
            labels.inverse_for(labels.bound_for(c), c),
        );
        assert!(
            *l >= lo * 0.999 && *l <= hi * 1.001,
            "{l} outside [{lo}, {hi}] ({c:?})"
        );
    }
    assert!(
        flags.iter().any(|f| *f),
        "no prediction was reported as bounded"
    );
}
