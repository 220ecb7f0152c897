//! Record-level DP-SGD in BatLiNet's training: the budget, the public references, learning.

use battery_fl_core::data::synthetic::FleetConfig;
use battery_fl_core::data::{Cell, LabelConfig};
use battery_fl_core::dp::RdpAccountant;
use battery_fl_core::features::{Featurizer, FeaturizerConfig};
use battery_fl_core::model::{
    membership_auc, membership_lira_auc, BatLiNet, BatLiNetConfig, Dataset, DpSgdConfig,
    TrainOptions,
};
use battery_fl_core::Error;

/// Synthetic cells of two fleets, their ids prefixed by `prefix` (public cells come from
/// another seed and are named apart).
fn cells(prefix: &str, seed: u64, per_fleet: usize) -> Vec<Cell> {
    FleetConfig::default()
        .with_fleets(2)
        .with_cells_per_fleet(per_fleet)
        .with_seed(seed)
        .generate()
        .unwrap()
        .into_iter()
        .flat_map(|f| f.cells)
        .map(|mut c| {
            c.meta.cell_id = format!("{prefix}{}", c.meta.cell_id);
            c
        })
        .collect()
}

fn featurizer() -> FeaturizerConfig {
    FeaturizerConfig::default().with_interp_dim(32)
}

fn dataset(cells: &[Cell]) -> Dataset {
    let f = Featurizer::new(featurizer()).unwrap();
    Dataset::from_cells(cells, &f, &[0, 1, 2, 3, 4, 5], &LabelConfig::default()).unwrap()
}

fn model() -> BatLiNet {
    let config = BatLiNetConfig::default()
        .with_conv_channels(4)
        .with_batch_size(8)
        .with_epochs(6)
        .with_progress(false)
        .with_seed(2);
    BatLiNet::new(config, featurizer()).unwrap()
}

#[test]
fn dp_sgd_spends_what_it_reports_and_refuses_private_references() {
    // private cells of the fleet; public references from another (public) seed
    let private = dataset(&cells("", 5, 16));
    let public = dataset(&cells("public-", 1005, 6));
    let mut m = model();
    m.set_public_statistics(&public).unwrap();
    let before = m.params().unwrap().flatten();
    let dp = DpSgdConfig {
        epsilon: Some(4.0),
        seed: Some(9),
        ..Default::default()
    };
    let report = m
        .train_private(&private, &public, &dp, &TrainOptions::default())
        .unwrap();
    // q = 8 / 32, four steps per epoch, six epochs
    assert_eq!((report.steps, report.sample_rate), (24, 0.25));
    let spent = RdpAccountant::new()
        .epsilon_after(report.noise_multiplier, 0.25, 24, 1e-5)
        .unwrap();
    assert!((report.epsilon - spent).abs() < 1e-9 && report.epsilon <= 4.0);
    assert!(
        report.epsilon > 3.99,
        "the smallest noise within the target: {}",
        report.epsilon
    );
    let after = m.params().unwrap().flatten();
    assert!(before.iter().zip(&after).any(|(a, b)| a != b));
    assert!(after.iter().all(|v| v.is_finite()));

    // the same seeds give the same weights
    let mut again = model();
    again.set_public_statistics(&public).unwrap();
    again
        .train_private(&private, &public, &dp, &TrainOptions::default())
        .unwrap();
    assert_eq!(again.params().unwrap().flatten(), after);

    // the report says how many gradients the clipping norm shortened: none under a huge norm,
    // every one under a tiny norm
    for (norm, want) in [(1e9, 0.0), (1e-9, 1.0)] {
        let mut m = model();
        m.set_public_statistics(&public).unwrap();
        let dp = DpSgdConfig {
            clipping_norm: norm,
            noise_multiplier: Some(1.0),
            epsilon: None,
            seed: Some(9),
            ..Default::default()
        };
        let r = m
            .train_private(&private, &public, &dp, &TrainOptions::default())
            .unwrap();
        assert_eq!(r.clipped_fraction, want, "clipping norm {norm}");
    }
    assert!((0.0..=1.0).contains(&report.clipped_fraction));

    // a private cell may not be a public reference
    let leaked = Dataset::concat(&[&public, &private.subset(&[0]).unwrap()]).unwrap();
    assert!(matches!(
        m.train_private(&private, &leaked, &dp, &TrainOptions::default()),
        Err(Error::InvalidConfig { ref field, .. }) if field == "public"
    ));
    // statistics read off the private cells are refused, and so are cleaned pairs
    let mut own_statistics = model();
    own_statistics.fit(&private).unwrap();
    assert!(matches!(
        own_statistics.train_private(&private, &public, &dp, &TrainOptions::default()),
        Err(Error::InvalidConfig { ref field, .. }) if field == "statistics"
    ));
    let cleaning = BatLiNet::new(
        BatLiNetConfig::default().with_clean_pairs(true),
        featurizer(),
    )
    .unwrap();
    let mut cleaning = cleaning;
    cleaning.set_public_statistics(&public).unwrap();
    assert!(matches!(
        cleaning.train_private(&private, &public, &dp, &TrainOptions::default()),
        Err(Error::InvalidConfig { ref field, .. }) if field == "clean_pairs"
    ));
    // a given noise multiplier that would overspend the budget trains nothing
    let over = DpSgdConfig {
        noise_multiplier: Some(0.3),
        epsilon: Some(1.0),
        ..Default::default()
    };
    let frozen = m.params().unwrap().flatten();
    assert!(matches!(
        m.train_private(&private, &public, &over, &TrainOptions::default()),
        Err(Error::BudgetExhausted { .. })
    ));
    assert_eq!(m.params().unwrap().flatten(), frozen);
}

#[test]
fn a_private_start_is_the_models_own_training_on_the_public_cells() {
    let public = dataset(&cells("public-", 1006, 6));
    let labels = public.require_labels().unwrap().to_vec();
    let error = |m: &BatLiNet| {
        let p = m.predict(&public, &public).unwrap();
        let sq: f64 = p.iter().zip(&labels).map(|(a, b)| (a - b).powi(2)).sum();
        (sq / p.len() as f64).sqrt()
    };
    // enough epochs to fit 12 cells
    let model = || {
        let m = model();
        BatLiNet::new(m.config().clone().with_epochs(40), featurizer()).unwrap()
    };
    // without pretraining: the public statistics on the initial weights
    let mut fresh = model();
    let off = DpSgdConfig {
        public_pretraining: false,
        ..Default::default()
    };
    fresh.start_private(&public, &off).unwrap();
    assert_eq!(fresh.params().unwrap(), model().params().unwrap());
    // with it (the default): exactly the model's own training on the public cells
    let mut started = model();
    started
        .start_private(&public, &DpSgdConfig::default())
        .unwrap();
    let mut by_hand = model();
    by_hand.set_public_statistics(&public).unwrap();
    by_hand.train(&public, &TrainOptions::default()).unwrap();
    assert_eq!(started.params().unwrap(), by_hand.params().unwrap());
    assert!(
        error(&started) < 0.8 * error(&fresh),
        "pretraining should fit the public cells: {} vs {}",
        error(&started),
        error(&fresh)
    );
}

#[test]
fn the_private_steps_take_the_scaled_learning_rate() {
    // 32 private cells at batch 32: q = 1, so one epoch is one step, where Adam moves each
    // weight by the learning rate times the sign of its (noisy) gradient
    let private = dataset(&cells("", 5, 16));
    let public = dataset(&cells("public-", 1005, 6));
    let config = BatLiNetConfig::default()
        .with_conv_channels(4)
        .with_batch_size(32)
        .with_progress(false)
        .with_seed(2);
    let step = |scale: f64| {
        let mut m = BatLiNet::new(config.clone(), featurizer()).unwrap();
        m.set_public_statistics(&public).unwrap();
        let before = m.params().unwrap().flatten();
        let dp = DpSgdConfig {
            epsilon: Some(8.0),
            seed: Some(3),
            learning_rate_scale: scale,
            ..Default::default()
        };
        let opts = TrainOptions {
            epochs: Some(1),
            ..Default::default()
        };
        let report = m.train_private(&private, &public, &dp, &opts).unwrap();
        assert_eq!(report.steps, 1);
        let after = m.params().unwrap().flatten();
        before
            .iter()
            .zip(&after)
            .map(|(a, b)| f64::from((a - b).abs()))
            .fold(0.0, f64::max)
    };
    let lr = config.learning_rate;
    let (plain, scaled) = (step(1.0), step(DpSgdConfig::default().learning_rate_scale));
    assert!((plain - lr).abs() < 0.05 * lr, "{plain} vs {lr}");
    assert!(
        (scaled / plain - DpSgdConfig::default().learning_rate_scale).abs() < 1e-3,
        "{scaled} / {plain}"
    );
}

#[test]
fn with_little_noise_dp_sgd_learns() {
    let private = dataset(&cells("", 6, 16));
    let public = dataset(&cells("public-", 1006, 6));
    let mut m = model();
    m.set_public_statistics(&public).unwrap();
    let dp = DpSgdConfig {
        noise_multiplier: Some(0.01),
        epsilon: None,
        clipping_norm: 10.0,
        seed: Some(1),
        ..Default::default()
    };
    let opts = TrainOptions {
        epochs: Some(30),
        ..Default::default()
    };
    let report = m.train_private(&private, &public, &dp, &opts).unwrap();
    let (first, last) = (report.epoch_losses[0], *report.epoch_losses.last().unwrap());
    assert!(last < 0.85 * first, "loss {first} -> {last}");
}

#[test]
fn the_membership_attack_finds_an_overfit_model_and_not_a_private_one() {
    // members: the training cells; non-members: cells of the same fleets never trained on
    let small = || {
        FeaturizerConfig::default()
            .with_cycles(20)
            .with_interp_dim(16)
    };
    let ds = |c: &[Cell]| {
        let f = Featurizer::new(small()).unwrap();
        Dataset::from_cells(c, &f, &[0, 1, 2, 3, 4, 5], &LabelConfig::default()).unwrap()
    };
    let all = cells("", 8, 12);
    let (members, non_members): (Vec<Cell>, Vec<Cell>) = {
        let (a, b): (Vec<_>, Vec<_>) = all.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
        (
            a.into_iter().map(|(_, c)| c).collect(),
            b.into_iter().map(|(_, c)| c).collect(),
        )
    };
    let (members, non_members) = (ds(&members), ds(&non_members));
    let public = ds(&cells("public-", 1008, 6));
    // one branch: the attack reads the network's fit of each cell, not the references'
    let config = || {
        BatLiNetConfig::default()
            .with_single_branch(true)
            .with_conv_channels(8)
            .with_batch_size(4)
            .with_epochs(300)
            .with_progress(false)
            .with_seed(4)
    };
    // a model trained to fit its cells as closely as it can
    let mut plain = BatLiNet::new(config(), small()).unwrap();
    plain.set_public_statistics(&public).unwrap();
    plain.train(&members, &TrainOptions::default()).unwrap();
    let exposed = membership_auc(&plain, &members, &non_members, &public).unwrap();
    // the likelihood-ratio attack: two shadow models of the same recipe, each trained on as
    // many cells of another draw of the fleets (never a member or a candidate)
    let shadows: Vec<BatLiNet> = (0..2u64)
        .map(|s| {
            let own = ds(&cells("shadow-", 2008 + s, members.len() / 2));
            let mut m = BatLiNet::new(config().with_seed(10 + s), small()).unwrap();
            m.set_public_statistics(&public).unwrap();
            m.train(&own, &TrainOptions::default()).unwrap();
            m
        })
        .collect();
    let lira = membership_lira_auc(&plain, &shadows, &members, &non_members, &public).unwrap();
    assert!(
        lira > 0.75,
        "likelihood-ratio attack's AUC on the overfit model {lira}"
    );
    assert!(matches!(
        membership_lira_auc(&plain, &shadows[..1], &members, &non_members, &public),
        Err(Error::NotEnoughData { .. })
    ));
    // the same training with DP-SGD at epsilon 1 per cell
    let mut private = BatLiNet::new(config(), small()).unwrap();
    private.set_public_statistics(&public).unwrap();
    let dp = DpSgdConfig {
        epsilon: Some(1.0),
        seed: Some(2),
        ..Default::default()
    };
    private
        .train_private(&members, &public, &dp, &TrainOptions::default())
        .unwrap();
    let guarded = membership_auc(&private, &members, &non_members, &public).unwrap();
    eprintln!("membership AUC: plain {exposed} (likelihood ratio {lira}), epsilon 1 {guarded}");
    assert!(
        exposed > 0.75,
        "membership AUC of the overfit model {exposed}"
    );
    assert!(guarded < 0.65, "membership AUC at epsilon 1: {guarded}");
    assert!(matches!(
        membership_auc(&plain, &members.subset(&[]).unwrap(), &non_members, &public),
        Err(Error::NotEnoughData { .. })
    ));
}
