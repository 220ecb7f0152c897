//! Record-level DP-SGD in the federated rounds: per-fleet accounting across rounds, the
//! budget stop, public statistics and references.

use battery_fl_core::data::synthetic::{FleetConfig, PUBLIC_SEED};
use battery_fl_core::data::LabelConfig;
use battery_fl_core::dp::RdpAccountant;
use battery_fl_core::features::Featurizer;
use battery_fl_core::federation::{
    FederationConfig, FleetClient, FleetState, LabelScope, SecureAggregation, Simulation,
};
use battery_fl_core::model::{BatLiNet, Dataset, DpSgdConfig};
use battery_fl_core::Error;

use super::federation::{config, featurizer, fleets, model};

/// Labelled public cells (the library's public seed, ids apart from every fleet's).
fn public() -> Dataset {
    let f = Featurizer::new(featurizer()).unwrap();
    let cells = FleetConfig::default()
        .with_fleets(2)
        .with_cells_per_fleet(5)
        .with_seed(PUBLIC_SEED)
        .generate_public()
        .unwrap();
    Dataset::from_cells(&cells, &f, &[0, 1, 2, 3, 4, 5], &LabelConfig::default()).unwrap()
}

fn private_config(rounds: usize, epsilon: f64) -> FederationConfig {
    FederationConfig {
        secure_aggregation: Some(SecureAggregation::default()),
        record_privacy: Some(DpSgdConfig {
            epsilon: Some(epsilon),
            seed: Some(11),
            ..Default::default()
        }),
        ..config(rounds)
    }
}

#[test]
fn the_first_global_model_is_trained_on_the_public_cells_only() {
    let start = |pretraining: bool, fleets_seen: usize| {
        let mut cfg = private_config(1, 8.0);
        if let Some(dp) = cfg.record_privacy.as_mut() {
            dp.public_pretraining = pretraining;
        }
        let sim = Simulation::with_public_cells(
            cfg,
            model(),
            featurizer(),
            fleets(fleets_seen),
            public(),
        )
        .unwrap();
        sim.state().global.clone()
    };
    // the model's own training on the public cells, whatever the fleets hold
    let mut alone = BatLiNet::new(model(), featurizer()).unwrap();
    alone
        .start_private(&public(), &DpSgdConfig::default())
        .unwrap();
    let trained = alone.params().unwrap();
    assert_eq!(start(true, 3), trained);
    assert_eq!(start(true, 4), trained);
    // off: the seeded initial weights
    let fresh = BatLiNet::new(model(), featurizer())
        .unwrap()
        .params()
        .unwrap();
    assert_eq!(start(false, 3), fresh);
    assert_ne!(trained, fresh);
}

#[test]
fn each_fleet_spends_what_its_accountant_says_and_stops_at_its_budget() {
    let cfg = private_config(2, 4.0);
    // without public cells a record-private run cannot start
    assert!(matches!(
        Simulation::new(cfg.clone(), model(), featurizer(), fleets(3)),
        Err(Error::InvalidConfig { ref field, .. }) if field == "record_privacy"
    ));
    let mut sim =
        Simulation::with_public_cells(cfg.clone(), model(), featurizer(), fleets(3), public())
            .unwrap();
    // the statistics are the public cells', not a sum of the fleets'
    let mut reference = BatLiNet::new(model(), featurizer()).unwrap();
    reference.set_public_statistics(&public()).unwrap();
    assert_eq!(Some(sim.statistics().0), reference.label_transform());

    let first = sim.run_round().unwrap();
    let second = sim.run_round().unwrap();
    let mechanisms = sim.record_mechanisms();
    assert_eq!(first.fleet_epsilon.len(), 3);
    for (fleet, &(z, q)) in &mechanisms {
        let (e1, e2) = (first.fleet_epsilon[fleet], second.fleet_epsilon[fleet]);
        assert!(0.0 < e1 && e1 < e2, "{fleet}: {e1} then {e2}");
        // the noise multiplier was found for exactly the configured rounds: the last round
        // spends the target, and the accountant recomputed from the printed mechanism agrees
        assert!((e2 - 4.0).abs() < 4e-3, "{fleet}: {e2}");
        let steps = 2 * cfg.local_epochs as u64 * (1.0 / q).round() as u64;
        let recomputed = RdpAccountant::new()
            .epsilon_after(z, q, steps, 1e-5)
            .unwrap();
        assert!((recomputed - e2).abs() < 1e-9 * e2.max(1.0));
        // 6 training cells at batch 8: every cell is sampled with rate 1
        assert!((q - 1.0).abs() < 1e-12 && z > 1.0);
    }
    // a third round would spend more than the budget: refused before training, nothing moves
    let before = sim.state().clone();
    assert!(matches!(
        sim.run_round(),
        Err(Error::BudgetExhausted { max_epsilon, epsilon }) if max_epsilon == 4.0 && epsilon > 4.0
    ));
    assert_eq!(sim.state(), &before);
}

#[test]
fn record_privacy_refuses_what_would_leak() {
    // a fleet's own label moments would enter its update outside the guarantee
    let own_labels = FederationConfig {
        label_scope: LabelScope::Fleet,
        ..private_config(1, 8.0)
    };
    assert!(matches!(
        Simulation::with_public_cells(own_labels, model(), featurizer(), fleets(3), public()),
        Err(Error::InvalidConfig { ref field, .. }) if field == "label_scope"
    ));
    // public cells without record privacy are a mistake, not ignored
    assert!(matches!(
        Simulation::with_public_cells(config(1), model(), featurizer(), fleets(3), public()),
        Err(Error::InvalidConfig { ref field, .. }) if field == "record_privacy"
    ));
    // a fleet's own cell (training or test) among the public ones is refused at set-up,
    // before the first global weights are trained on the public cells
    for test_cell in [false, true] {
        let data = fleets(3);
        let own = if test_cell {
            &data[1].test
        } else {
            &data[1].train
        };
        let leaked = Dataset::concat(&[&public(), &own.subset(&[0]).unwrap()]).unwrap();
        assert!(matches!(
            Simulation::with_public_cells(
                private_config(1, 8.0),
                model(),
                featurizer(),
                data,
                leaked
            ),
            Err(Error::InvalidConfig { ref field, .. }) if field == "public"
        ));
    }
    // an epsilon no noise can reach is refused at set-up
    let tiny = private_config(50, 1e-6);
    assert!(matches!(
        Simulation::with_public_cells(tiny, model(), featurizer(), fleets(3), public()),
        Err(Error::InvalidConfig { ref field, .. }) if field == "epsilon"
    ));
}

#[test]
fn a_fleet_prices_earlier_rounds_at_the_mechanism_they_ran() {
    // a server that asks for one round (the whole budget in it), then for two: the fleet's
    // accountant remembers what round 1 spent and refuses round 2
    let data = fleets(3);
    let mut worker = BatLiNet::new(model(), featurizer()).unwrap();
    worker.set_public_statistics(&public()).unwrap();
    let start = worker.params().unwrap();
    let client = |rounds: usize| {
        FleetClient::new(&private_config(rounds, 4.0), 0, data[0].train.clone())
            .unwrap()
            .with_public_cells(public(), model().batch_size)
            .unwrap()
    };
    let mut state = FleetState::default();
    client(1).train(&mut worker, &start, &mut state, 1).unwrap();
    let spent = client(1).record_epsilon(&state).unwrap().unwrap();
    assert!((spent - 4.0).abs() < 4e-3, "{spent}");
    let before = state.clone();
    assert!(matches!(
        client(2).train(&mut worker, &start, &mut state, 2),
        Err(Error::BudgetExhausted { .. })
    ));
    assert_eq!(state, before);
    // record privacy without public cells never trains noise-free
    let no_public = FleetClient::new(&private_config(1, 4.0), 0, data[0].train.clone()).unwrap();
    assert!(matches!(
        no_public.train(&mut worker, &start, &mut FleetState::default(), 1),
        Err(Error::InvalidConfig { ref field, .. }) if field == "record_privacy"
    ));
}

#[test]
fn a_private_run_resumed_from_its_checkpoint_ends_like_an_uninterrupted_one() {
    let dir = std::env::temp_dir().join(format!("bfl-private-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("coordinator.json");
    let cfg = private_config(2, 4.0);
    let run = || {
        Simulation::with_public_cells(cfg.clone(), model(), featurizer(), fleets(3), public())
            .unwrap()
    };
    let mut whole = run();
    whole.run(|_| {}).unwrap();
    let mut first = run().with_checkpoint(&path);
    first.run_round().unwrap();
    // resuming a private run without its public cells is refused, not run noise-free
    assert!(Simulation::resume(&path, cfg.clone(), model(), featurizer(), fleets(3)).is_err());
    let mut resumed = Simulation::resume_with_public_cells(
        &path,
        cfg,
        model(),
        featurizer(),
        fleets(3),
        public(),
    )
    .unwrap();
    let last = resumed.run_round().unwrap();
    let want = whole.state().history.last().unwrap();
    assert_eq!(last.fleet_epsilon, want.fleet_epsilon);
    assert_eq!(resumed.state().global, whole.state().global);
    // and genome clustering, which reads the private cells' fingerprints, is refused
    let clustered = FederationConfig {
        clustering: Some(Default::default()),
        ..private_config(1, 8.0)
    };
    assert!(matches!(
        Simulation::with_public_cells(clustered, model(), featurizer(), fleets(3), public()),
        Err(Error::InvalidConfig { ref field, .. }) if field == "clustering"
    ));
    std::fs::remove_dir_all(&dir).ok();
}
