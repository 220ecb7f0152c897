use approx::assert_relative_eq;
use battery_fl_core::aggregate::{
    partition_updates, weighted_mean, Aggregator, ClientUpdate, FedAvg, FedMedian, FedOpt,
    FedOptConfig, FedProx, FedTrimmedAvg, ServerOptimizer, UpdatePolicy,
};
use battery_fl_core::model::ModelParams;
use battery_fl_core::{Error, UpdateRejection};

fn params(v: &[f32]) -> ModelParams {
    ModelParams::new(vec![
        ("a".into(), vec![1], vec![v[0]]),
        ("b".into(), vec![v.len() - 1], v[1..].to_vec()),
    ])
    .unwrap()
}

fn update(id: &str, n: u64, v: &[f32]) -> ClientUpdate {
    ClientUpdate::parameters(id, n, params(v))
}

#[test]
fn fedavg_matches_hand_computed_weighted_means() {
    let global = params(&[0.0, 0.0, 0.0]);
    let ups = [
        update("a", 10, &[1.0, 2.0, 3.0]),
        update("b", 20, &[4.0, 5.0, 6.0]),
        update("c", 30, &[-1.0, 0.0, 1.0]),
    ];
    let got = FedAvg::default()
        .aggregate(&global, &ups)
        .unwrap()
        .flatten();
    // (10*1 + 20*4 - 30) / 60 = 1.0; (20 + 100 + 0) / 60 = 2.0; (30 + 120 + 30) / 60 = 3.0
    for (g, want) in got.iter().zip([1.0, 2.0, 3.0]) {
        assert_relative_eq!(*g, want, epsilon = 1e-6);
    }
    // deltas average the same way and are added to the global weights
    let global = params(&[1.0, 1.0, 1.0]);
    let deltas: Vec<ClientUpdate> = ups
        .iter()
        .map(|u| ClientUpdate::delta(&u.client_id, u.num_samples, u.params.clone()))
        .collect();
    let got = FedProx::new(0.1)
        .unwrap()
        .aggregate(&global, &deltas)
        .unwrap()
        .flatten();
    for (g, want) in got.iter().zip([2.0, 3.0, 4.0]) {
        assert_relative_eq!(*g, want, epsilon = 1e-6);
    }
    assert!(FedProx::new(-1.0).is_err());
}

#[test]
fn weighted_mean_is_exact_on_large_buffers_and_checks_inputs() {
    let a: Vec<f32> = (0..100_003).map(|i| i as f32).collect();
    let b: Vec<f32> = a.iter().map(|x| -x).collect();
    let m = weighted_mean(&[&a, &b], &[3.0, 1.0]).unwrap();
    assert!(m
        .iter()
        .zip(&a)
        .all(|(m, x)| (m - 0.5 * x).abs() <= 1e-6 * x.abs().max(1.0)));
    assert!(weighted_mean(&[&a, &b[..10]], &[1.0, 1.0]).is_err());
    assert!(weighted_mean(&[&a], &[0.0]).is_err());
    assert!(weighted_mean(&[], &[]).is_err());
}

#[test]
fn fedadam_yogi_adagrad_first_step_by_hand() {
    // one round, pseudo-gradient d = 1 on every coordinate, eta = 0.1, beta1 = 0.9, beta2 = 0.99,
    // tau = 1e-3, m0 = 0, v0 = tau^2
    let global = params(&[0.0, 0.0]);
    let ups = [update("a", 1, &[1.0, 1.0])];
    let (eta, b1, b2, tau) = (0.1f64, 0.9f64, 0.99f64, 1e-3f64);
    let m = (1.0 - b1) * 1.0;
    let expect = |v: f64| eta * m / (v.sqrt() + tau);
    let cases = [
        (ServerOptimizer::Adam, b2 * tau * tau + (1.0 - b2)),
        (ServerOptimizer::Adagrad, tau * tau + 1.0),
        (ServerOptimizer::Yogi, tau * tau + (1.0 - b2)), // v - (1-b2) d^2 sign(v - d^2), v < d^2
    ];
    for (opt, v) in cases {
        let mut agg = FedOpt::new(opt, FedOptConfig::default()).unwrap();
        let got = agg.aggregate(&global, &ups).unwrap().flatten();
        assert_relative_eq!(f64::from(got[0]), expect(v), max_relative = 1e-5);
    }
    let bad = FedOptConfig {
        beta1: 1.0,
        ..Default::default()
    };
    assert!(matches!(
        FedOpt::new(ServerOptimizer::Adam, bad),
        Err(Error::InvalidConfig { .. })
    ));
}

#[test]
fn robust_rules_resist_a_poisoned_client() {
    let global = params(&[0.0, 0.0, 0.0]);
    let mut ups: Vec<ClientUpdate> = (0..6)
        .map(|i| update(&format!("c{i}"), 10, &[1.0 + 0.01 * i as f32, 2.0, 3.0]))
        .collect();
    ups.push(update("evil", 1000, &[1e6, -1e6, 1e6]));
    let avg = FedAvg::default()
        .aggregate(&global, &ups)
        .unwrap()
        .flatten();
    assert!(avg[0] > 1e5, "FedAvg is dragged away: {avg:?}");
    for mut agg in [
        Box::new(FedMedian::default()) as Box<dyn Aggregator>,
        Box::new(FedTrimmedAvg::new(0.2).unwrap()),
    ] {
        let got = agg.aggregate(&global, &ups).unwrap().flatten();
        assert!(
            (got[0] - 1.025).abs() < 0.03
                && (got[1] - 2.0).abs() < 1e-6
                && (got[2] - 3.0).abs() < 1e-6,
            "{}: {got:?}",
            agg.name()
        );
    }
    // trimmed mean by hand: values 1..=5, beta 0.2 trims one from each end -> mean(2,3,4)
    let ups: Vec<ClientUpdate> = (1..=5)
        .map(|i| update("x", 1, &[i as f32, 0.0, 0.0]))
        .collect();
    assert_relative_eq!(
        FedTrimmedAvg::new(0.2)
            .unwrap()
            .aggregate(&global, &ups)
            .unwrap()
            .flatten()[0],
        3.0
    );
    assert!(FedTrimmedAvg::new(0.5).is_err());
}

#[test]
fn invalid_updates_are_rejected_with_a_reason_and_leave_state_unchanged() {
    let global = params(&[0.0, 0.0, 0.0]);
    let good = update("good", 5, &[0.1, 0.1, 0.1]);
    let mut opt = FedOpt::adam();
    opt.aggregate(&global, std::slice::from_ref(&good)).unwrap();

    let nan = update("nan", 5, &[0.0, f32::NAN, 0.0]);
    let shape = ClientUpdate::parameters(
        "shape",
        5,
        ModelParams::new(vec![("a".into(), vec![2], vec![0.0; 2])]).unwrap(),
    );
    let huge = update("huge", 5, &[100.0, 0.0, 0.0]);
    let zero = update("zero", 0, &[0.0, 0.0, 0.0]);
    opt.config.policy = UpdatePolicy {
        max_delta_norm: Some(10.0),
    };
    let before = opt.clone();
    for (bad, want) in [
        (&nan, "NonFinite"),
        (&shape, "ShapeMismatch"),
        (&huge, "NormTooLarge"),
        (&zero, "InvalidWeight"),
    ] {
        match opt.aggregate(&global, &[good.clone(), bad.clone()]) {
            Err(Error::RejectedUpdate { client_id, reason }) => {
                assert_eq!(client_id, bad.client_id);
                assert!(format!("{reason:?}").starts_with(want), "{reason:?}");
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
        assert_eq!(opt, before, "state must be unchanged after a rejection");
    }
    let (ok, rejected) = partition_updates(&global, vec![good, nan, huge], &opt.config.policy);
    assert_eq!(ok.len(), 1);
    assert_eq!(
        rejected.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ["nan", "huge"]
    );
    assert!(matches!(
        rejected[1].1,
        UpdateRejection::NormTooLarge { .. }
    ));
    assert!(matches!(
        FedAvg::default().aggregate(&global, &[]),
        Err(Error::Aggregation { .. })
    ));
}

#[test]
fn fedavg_names_the_non_finite_update_found_by_its_fused_scan() {
    let global = params(&[0.0, 0.0, 0.0]);
    let good = update("good", 5, &[0.1, 0.1, 0.1]);
    for (name, bad) in [
        ("nan", [0.0, f32::NAN, 0.0]),
        ("inf", [f32::INFINITY, 0.0, 0.0]),
        ("neg-inf", [0.0, 0.0, f32::NEG_INFINITY]),
    ] {
        let bad = update(name, 1, &bad);
        for ups in [
            vec![good.clone(), bad.clone()],
            vec![bad.clone(), good.clone()],
        ] {
            // default policy (no norm bound): the scan is fused into the mean
            match FedAvg::default().aggregate(&global, &ups) {
                Err(Error::RejectedUpdate {
                    client_id,
                    reason: UpdateRejection::NonFinite { .. },
                }) => assert_eq!(client_id, name),
                other => panic!("expected {name} rejected, got {other:?}"),
            }
        }
    }
    // +Inf and -Inf from two clients cancel to NaN in the sum; still caught
    let ups = [
        update("p", 1, &[f32::INFINITY, 0.0, 0.0]),
        update("n", 1, &[f32::NEG_INFINITY, 0.0, 0.0]),
    ];
    assert!(matches!(
        FedAvg::default().aggregate(&global, &ups),
        Err(Error::RejectedUpdate { client_id, .. }) if client_id == "p"
    ));
    // finite values at the edge of f32 average without overflow
    let big = update("big", 1, &[f32::MAX, -f32::MAX, 1.0]);
    let out = FedAvg::default()
        .aggregate(&global, &[big.clone(), big])
        .unwrap()
        .flatten();
    assert_eq!(out, vec![f32::MAX, -f32::MAX, 1.0]);
}
