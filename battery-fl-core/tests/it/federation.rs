//! Federated rounds over in-process synthetic fleets (needs the `tch` feature).

use battery_fl_core::data::synthetic::FleetConfig;
use battery_fl_core::data::LabelConfig;
use battery_fl_core::dp::{AdaptiveClipConfig, DpConfig, DpMode};
use battery_fl_core::features::{Featurizer, FeaturizerConfig};
use battery_fl_core::federation::{
    FederationConfig, FleetData, SecureAggregation, Simulation, Strategy,
};
use battery_fl_core::model::{BatLiNetConfig, Dataset};
use battery_fl_core::Error;

pub(crate) fn featurizer() -> FeaturizerConfig {
    FeaturizerConfig::default()
        .with_cycles(40)
        .with_interp_dim(32)
}

pub(crate) fn fleets(n: usize) -> Vec<FleetData> {
    let f = Featurizer::new(featurizer()).unwrap();
    FleetConfig::default()
        .with_fleets(n)
        .with_cells_per_fleet(9)
        .with_seed(3)
        .generate()
        .unwrap()
        .into_iter()
        .map(|fleet| {
            let ds = Dataset::from_cells(
                &fleet.cells,
                &f,
                &[0, 1, 2, 3, 4, 5],
                &LabelConfig::default(),
            )
            .unwrap();
            let train = ds.subset(&(0..6).collect::<Vec<_>>()).unwrap();
            let test = ds.subset(&[6, 7, 8]).unwrap();
            FleetData {
                id: fleet.id,
                train,
                test,
            }
        })
        .collect()
}

pub(crate) fn model() -> BatLiNetConfig {
    BatLiNetConfig::default()
        .with_conv_channels(4)
        .with_batch_size(8)
        .with_inference_references(4)
        .with_seed(1)
}

pub(crate) fn config(rounds: usize) -> FederationConfig {
    FederationConfig {
        rounds,
        local_epochs: 2,
        inference_references: 4,
        seed: 5,
        ..Default::default()
    }
}

#[test]
fn a_run_killed_mid_round_and_resumed_ends_like_an_uninterrupted_run() {
    let dp = DpConfig::new(0.5, 1.0).with_seed(9);
    let cfg = FederationConfig {
        dp: Some(dp),
        secure_aggregation: Some(SecureAggregation::default()),
        ..config(4)
    };
    let mut straight = Simulation::new(cfg.clone(), model(), featurizer(), fleets(4)).unwrap();
    straight.run(|_| {}).unwrap();

    let dir = std::env::temp_dir().join(format!("bfl-fed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("coordinator.json");
    let mut first = Simulation::new(cfg.clone(), model(), featurizer(), fleets(4))
        .unwrap()
        .with_checkpoint(&ckpt);
    first.run_round().unwrap();
    first.run_round().unwrap();
    let saved = std::fs::read(&ckpt).unwrap();
    first.interrupt_round_after(2).unwrap(); // killed while round 3 trains
    assert_eq!(
        std::fs::read(&ckpt).unwrap(),
        saved,
        "a crash mid-round leaves the last checkpoint"
    );
    drop(first);

    let mut resumed = Simulation::resume(&ckpt, cfg, model(), featurizer(), fleets(4)).unwrap();
    assert_eq!(resumed.state().round, 2);
    resumed.run(|_| {}).unwrap();
    assert_eq!(resumed.state().global, straight.state().global);
    assert_eq!(resumed.state().history, straight.state().history);
    assert_eq!(resumed.state().accountant, straight.state().accountant);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn secure_aggregation_gives_the_plain_result_within_quantization() {
    let plain_cfg = FederationConfig {
        strategy: Strategy::FedAvg,
        ..config(1)
    };
    let secure_cfg = FederationConfig {
        secure_aggregation: Some(SecureAggregation::default()),
        ..plain_cfg.clone()
    };
    let mut plain = Simulation::new(plain_cfg, model(), featurizer(), fleets(4)).unwrap();
    let mut secure = Simulation::new(secure_cfg, model(), featurizer(), fleets(4)).unwrap();
    // statistics summed through SecAgg agree with the plain sums to quantization
    let ((lp, sp), (ls, ss)) = (plain.statistics(), secure.statistics());
    // (the protocol's f32 output bounds the agreement to about 1e-5 relative)
    assert!(
        (lp.mean - ls.mean).abs() < 1e-5 * lp.mean.abs() && (lp.std - ls.std).abs() < 1e-4 * lp.std,
        "{lp:?} vs {ls:?}"
    );
    for (a, b) in sp
        .branch_a
        .iter()
        .chain(&sp.branch_b)
        .zip(ss.branch_a.iter().chain(&ss.branch_b))
    {
        assert!((a - b).abs() <= 1e-4 * a.abs(), "input scale {a} vs {b}");
    }
    // with the same statistics, local training is bit-identical, so the rounds differ only by
    // the masked, quantized aggregation (Adam would amplify even 1e-6 differences in the inputs)
    plain.set_statistics(ls, ss).unwrap();
    plain.run_round().unwrap();
    secure.run_round().unwrap();
    let (a, b) = (
        plain.state().global.flatten(),
        secure.state().global.flatten(),
    );
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "max |plain - secure| = {worst}");
    assert!(
        plain.set_statistics(lp, sp).is_err(),
        "statistics are fixed once rounds started"
    );
}

#[test]
fn dp_rounds_report_growing_epsilon_and_configs_are_checked() {
    let dp = DpConfig::new(1.0, 0.5)
        .with_mode(DpMode::Distributed)
        .with_seed(2);
    let cfg = FederationConfig {
        dp: Some(dp),
        secure_aggregation: Some(SecureAggregation::default()),
        ..config(2)
    };
    let mut sim = Simulation::new(cfg, model(), featurizer(), fleets(3)).unwrap();
    sim.run(|_| {}).unwrap();
    let eps: Vec<f64> = sim
        .state()
        .history
        .iter()
        .map(|r| r.epsilon.unwrap())
        .collect();
    // q = 1, z = 1: dp-accounting gives 4.7285 after one round
    assert!((eps[0] - 4.7285).abs() < 0.01 && eps[1] > eps[0], "{eps:?}");
    assert!(sim
        .state()
        .history
        .iter()
        .all(|r| r.global_rmse.is_finite() && r.fleet_rmse.len() == 3));

    let bad = FederationConfig {
        strategy: Strategy::FedMedian,
        secure_aggregation: Some(SecureAggregation::default()),
        ..config(1)
    };
    assert!(matches!(
        Simulation::new(bad, model(), featurizer(), fleets(3)),
        Err(Error::InvalidConfig { .. })
    ));
    let bad = FederationConfig {
        clients_per_round: Some(9),
        ..config(1)
    };
    assert!(matches!(
        Simulation::new(bad, model(), featurizer(), fleets(3)),
        Err(Error::InvalidConfig { .. })
    ));
}

#[test]
fn federated_training_improves_on_the_initial_model() {
    let cfg = FederationConfig {
        local_epochs: 4,
        ..config(4)
    };
    let mut sim = Simulation::new(cfg, model(), featurizer(), fleets(4)).unwrap();
    sim.run(|_| {}).unwrap();
    let h = &sim.state().history;
    assert!(
        h.last().unwrap().global_rmse < h[0].global_rmse,
        "{:?}",
        h.iter().map(|r| r.global_rmse).collect::<Vec<_>>()
    );
}

#[test]
fn local_only_models_are_scored_on_their_own_and_on_all_test_cells() {
    use battery_fl_core::federation::local_only_baseline;
    use battery_fl_core::model::{BatLiNet, Metrics, ReferenceSelection};
    let fleets = fleets(3);
    let cfg = model().with_epochs(3);
    let local = local_only_baseline(&fleets, &cfg, &featurizer()).unwrap();
    let ids: Vec<&String> = local.on_all_tests.keys().collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids, local.on_own_test.keys().collect::<Vec<_>>());
    let best = local.best_on_all_tests();
    assert!(local
        .on_all_tests
        .values()
        .all(|&r| r >= best && r.is_finite()));

    // fleet 0's model, retrained with the same seed, reproduces both of its scores
    let f = &fleets[0];
    let mut m = BatLiNet::new(cfg.clone(), featurizer()).unwrap();
    m.fit(&f.train).unwrap();
    let k = cfg.inference_references.min(f.train.len());
    let own = m
        .predict_with(&f.test, &f.train, k, ReferenceSelection::Random, cfg.seed)
        .unwrap();
    let own = Metrics::compute(&own, &f.test.require_labels().unwrap()).unwrap();
    approx::assert_relative_eq!(own.rmse, local.on_own_test[&f.id], max_relative = 1e-9);
    let all = Dataset::concat(&fleets.iter().map(|f| &f.test).collect::<Vec<_>>()).unwrap();
    let p = m
        .predict_with(&all, &f.train, k, ReferenceSelection::Random, cfg.seed)
        .unwrap();
    let on_all = Metrics::compute(&p, &all.require_labels().unwrap()).unwrap();
    approx::assert_relative_eq!(on_all.rmse, local.on_all_tests[&f.id], max_relative = 1e-9);
}

/// Security issue: the epsilon reported must be what is spent. Fleets sampled from the public
/// seed get no subsampling amplification (q = 1), and with genome clustering a fleet's update
/// is released twice a round (global and group model), both noised.
#[test]
fn dp_accounting_claims_no_amplification_and_group_models_are_noised() {
    use battery_fl_core::dp::RdpAccountant;
    use battery_fl_core::federation::ClusterConfig;
    let run = |dp_seed: u64, clustering: Option<ClusterConfig>, per_round: Option<usize>| {
        let cfg = FederationConfig {
            dp: Some(DpConfig::new(1.0, 0.5).with_seed(dp_seed)),
            clustering,
            clients_per_round: per_round,
            ..config(1)
        };
        let mut sim = Simulation::new(cfg, model(), featurizer(), fleets(3)).unwrap();
        sim.run(|_| {}).unwrap();
        sim.state().clone()
    };
    let expected = |steps| {
        let mut acc = RdpAccountant::new();
        acc.step(1.0, 1.0, steps).unwrap();
        acc.epsilon(1e-5).unwrap()
    };
    // 2 of 3 fleets per round: still accounted with q = 1
    let sampled = run(1, None, Some(2));
    let eps = sampled.history[0].epsilon.unwrap();
    assert!((eps - expected(1)).abs() < 1e-9, "{eps} vs {}", expected(1));

    // every fleet its own group (threshold 0): group models get the server's noise too, so
    // two runs that differ only in the noise seed give different group models
    let groups = Some(ClusterConfig { threshold: 0.0 });
    let (a, b) = (run(1, groups.clone(), None), run(2, groups, None));
    assert!(!a.groups.is_empty());
    for (ga, gb) in a.groups.iter().zip(&b.groups) {
        let diff = ga
            .flatten()
            .iter()
            .zip(gb.flatten())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(
            diff > 1e-3,
            "a group model carries no DP noise (max diff {diff})"
        );
    }
    let eps = a.history[0].epsilon.unwrap();
    assert!((eps - expected(2)).abs() < 1e-9, "{eps} vs {}", expected(2));
}

/// `auto`: every fleet scores its candidates on its own validation cells, the round records
/// carry those scores and the choice, and the choice is what it uses (the rule itself:
/// `personalize::choose`'s unit test; a huge margin keeping the local model: below); `none`
/// scores the global model.
#[test]
fn auto_personalization_records_its_choice_and_the_scores_it_was_made_on() {
    use battery_fl_core::federation::{Candidate, Personalization};
    let cfg = FederationConfig {
        personalization: Personalization::Auto,
        ..config(2)
    };
    let mut sim = Simulation::new(cfg, model(), featurizer(), fleets(3)).unwrap();
    sim.run(|_| {}).unwrap();
    let last = sim.state().history.last().unwrap().clone();
    assert_eq!(last.choices.len(), 3);
    for (state, fleet) in sim.state().fleets.iter().zip(fleets(3)) {
        let (choice, scores) = state.choice.clone().unwrap();
        assert_eq!(last.choices[&fleet.id], choice.name());
        // the round record carries the scores the choice was made on
        let recorded = &last.validation_rmse[&fleet.id];
        let finite: Vec<_> = scores.iter().filter(|(_, v)| v.is_finite()).collect();
        assert_eq!(recorded.len(), finite.len());
        for (c, v) in finite {
            assert_eq!(recorded[c.name()], *v);
        }
        // (the choice reads squared ln errors, the records RMSE in cycles: a kept model may
        // show a higher RMSE than one it kept out)
        assert!(scores.contains_key(&Candidate::Local) && scores[&choice].is_finite());
    }
    let plain = FederationConfig { ..config(1) };
    let mut sim = Simulation::new(plain, model(), featurizer(), fleets(3)).unwrap();
    let r = sim.run_round().unwrap();
    assert!((r.personalized_rmse - r.global_rmse).abs() < 1e-9);
    assert!(r.choices.is_empty() && r.validation_rmse.is_empty());
}

/// A fleet that keeps its own model under `auto` gets exactly what it had alone: the same
/// model the local-only baseline trains (its own label transform and input scales), scored
/// on its own test cells. With every training cell as a reference the draw does not matter.
#[test]
fn auto_keeping_local_scores_exactly_the_fleet_alone() {
    use battery_fl_core::federation::{local_only_baseline, Personalization};
    let cells = fleets(3);
    let refs = cells[0].train.len();
    let model = model().with_inference_references(refs).with_epochs(4);
    let cfg = FederationConfig {
        personalization: Personalization::Auto,
        choice_margin: 1e9, // a t-test level beyond f64: no shared model passes
        inference_references: refs,
        ..config(1)
    };
    let mut sim = Simulation::new(cfg, model.clone(), featurizer(), cells.clone()).unwrap();
    let r = sim.run_round().unwrap();
    let alone = local_only_baseline(&cells, &model, &featurizer()).unwrap();
    for f in &cells {
        assert_eq!(r.choices[&f.id], "local");
        approx::assert_relative_eq!(
            r.fleet_personalized_rmse[&f.id],
            alone.on_own_test[&f.id],
            max_relative = 1e-6
        );
    }
    // the model a fleet would use is that one too
    let own = sim.fleet_model(&cells[1].id).unwrap();
    let labels = own.label_transform().unwrap();
    let mut m = battery_fl_core::model::BatLiNet::new(model, featurizer()).unwrap();
    m.fit(&cells[1].train).unwrap();
    approx::assert_relative_eq!(
        labels.mean,
        m.label_transform().unwrap().mean,
        max_relative = 1e-12
    );
}

/// With `label_scope = fleet` every fleet trains the shared weights with its own label
/// transform and reads them with it: the model a fleet uses carries its own statistics, the
/// per-round RMSE is that model's, and training differs from the shared scope.
#[test]
fn fleet_label_scope_trains_and_reads_with_each_fleets_own_labels() {
    use battery_fl_core::federation::{job_seed, LabelScope};
    use battery_fl_core::model::{LabelTransform, Metrics};
    let cells = fleets(3);
    let run = |scope| {
        let cfg = FederationConfig {
            strategy: Strategy::FedAvg,
            label_scope: scope,
            ..config(1)
        };
        let mut sim = Simulation::new(cfg, model(), featurizer(), cells.clone()).unwrap();
        let record = sim.run_round().unwrap();
        (sim, record)
    };
    let (mut shared, _) = run(LabelScope::Shared);
    let (mut own, record) = run(LabelScope::Fleet);
    let f = &cells[1];
    let m = own.fleet_model(&f.id).unwrap();
    let labels = m.label_transform().unwrap();
    let want = LabelTransform::fit(&f.train.require_labels().unwrap()).unwrap();
    approx::assert_relative_eq!(labels.mean, want.mean, max_relative = 1e-12);
    approx::assert_relative_eq!(labels.std, want.std, max_relative = 1e-12);
    let pooled = own.statistics().0;
    assert!(
        (pooled.mean - want.mean).abs() > 1e-3,
        "the fleet's own mean differs"
    );
    // the round's RMSE for the fleet is this model's
    let seed = job_seed(5, 1, 1);
    let p = m
        .predict_with(&f.test, &f.train, 4, m.config().selection, seed)
        .unwrap();
    let rmse = Metrics::compute(&p, &f.test.require_labels().unwrap())
        .unwrap()
        .rmse;
    approx::assert_relative_eq!(record.fleet_rmse[&f.id], rmse, max_relative = 1e-9);
    // and training read the labels differently
    let a = shared.global_model().unwrap().params().unwrap().flatten();
    let b = own.global_model().unwrap().params().unwrap().flatten();
    let diff: f32 = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum();
    assert!(
        diff > 1e-3,
        "the global weights differ between scopes: {diff}"
    );
}

#[test]
fn cathode_label_grouping_is_shared_from_secure_sums_and_read_per_cell() {
    use battery_fl_core::model::{LabelGrouping, LabelTransform, LABEL_GROUPS};
    let cells = fleets(3);
    let grouped = model().with_label_grouping(LabelGrouping::Cathode);
    let mut sim = Simulation::new(config(1), grouped, featurizer(), cells.clone()).unwrap();
    // the shared transform is the pooled fit of every fleet's training cells, per cathode
    let all = Dataset::concat(&cells.iter().map(|f| &f.train).collect::<Vec<_>>()).unwrap();
    let want = LabelTransform::fit_grouped(
        &all.require_labels().unwrap(),
        &all.cathodes(),
        LabelGrouping::Cathode,
    )
    .unwrap();
    let got = sim.statistics().0;
    let seen: Vec<&str> = LABEL_GROUPS
        .iter()
        .copied()
        .filter(|c| want.groups[LABEL_GROUPS.iter().position(|g| g == c).unwrap()].is_some())
        .collect();
    assert!(seen.len() >= 2, "the fleets mix chemistries: {seen:?}");
    for c in seen {
        let (g, w) = (got.moments(Some(c)), want.moments(Some(c)));
        approx::assert_abs_diff_eq!(g.mean, w.mean, epsilon = 1e-5);
        approx::assert_abs_diff_eq!(g.std, w.std, epsilon = 1e-5);
        assert_ne!(w, want.moments(None), "{c} has its own moments");
    }
    // a trained model reads each cell with its chemistry's moments: relabel the test cells'
    // cathode and the same network output comes back through the other chemistry's moments
    sim.run_round().unwrap();
    let m = sim.global_model().unwrap();
    assert_eq!(m.label_transform(), Some(got));
    let test = &cells[0].test;
    let predict = |ds: &Dataset| {
        m.predict_with(ds, &cells[0].train, 4, m.config().selection, 3)
            .unwrap()
    };
    let before = predict(test);
    let other = |c: Option<&str>| if c == Some("LFP") { "NMC" } else { "LFP" };
    let mut fingerprints = test.fingerprints().to_vec();
    for fp in &mut fingerprints {
        fp.cathode = Some(other(fp.cathode.as_deref()).to_string());
    }
    let relabelled = test.clone().with_fingerprints(fingerprints).unwrap();
    let after = predict(&relabelled);
    for ((b, a), c) in before.iter().zip(&after).zip(test.cathodes()) {
        let (from, to) = (got.moments(c), got.moments(Some(other(c))));
        let y = (b.ln() - from.mean) / from.std;
        if y.abs() < 3.9 {
            approx::assert_relative_eq!(a.ln(), y * to.std + to.mean, max_relative = 1e-6);
        }
    }
    assert_ne!(before, after);
}

/// `max_delta_norm` bounds each fleet's update, not the released mean, whose central DP noise
/// is far longer than the bound: a server optimizer steps with it (the rule without the
/// federation's bound, `unchecked_rule`) and the run completes.
#[test]
fn a_bound_on_updates_does_not_refuse_the_noisy_mean_of_a_server_optimizer() {
    let cfg = FederationConfig {
        strategy: Strategy::FedAdam,
        dp: Some(
            DpConfig::new(50.0, 0.5)
                .with_mode(DpMode::Central)
                .with_seed(3),
        ),
        max_delta_norm: Some(5.0),
        ..config(2)
    };
    let mut sim = Simulation::new(cfg, model(), featurizer(), fleets(3)).unwrap();
    sim.run(|_| {}).unwrap();
    let records = &sim.state().history;
    assert_eq!(records.len(), 2);
    assert!(records
        .iter()
        .all(|r| r.clients.len() == 3 && r.rejected.is_empty()));
}

/// With adaptive clipping each round releases two things: the mean update, noised at
/// `z_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2)`, and the noisy count of unclipped updates (`σ_b`, centred
/// bits of sensitivity 1/2). Both are accounted, so ε is that of the overall multiplier `z`;
/// accounting the update alone (as before) reported less than was spent.
#[test]
fn adaptive_clipping_accounts_the_count_it_releases() {
    let (z, sigma_b, rounds) = (1.0, 1.0, 2);
    let dp = DpConfig::new(z, 1.0)
        .with_mode(DpMode::Central)
        .with_seed(4)
        .with_adaptive(AdaptiveClipConfig::default().with_count_noise_std(sigma_b));
    let cfg = FederationConfig {
        dp: Some(dp.clone()),
        ..config(rounds)
    };
    let mut sim = Simulation::new(cfg, model(), featurizer(), fleets(3)).unwrap();
    sim.run(|_| {}).unwrap();
    let reported = sim.state().history.last().unwrap().epsilon.unwrap();
    let epsilon_of = |multiplier: f64| {
        let mut acc = dp.accountant().unwrap();
        acc.step(multiplier, 1.0, rounds as u64).unwrap();
        acc.epsilon(dp.target_delta).unwrap()
    };
    approx::assert_relative_eq!(reported, epsilon_of(z), max_relative = 1e-9);
    let z_update = (z.powi(-2) - (2.0 * sigma_b).powi(-2)).powf(-0.5);
    assert!(reported > epsilon_of(z_update) * 1.05, "{reported}");
}
