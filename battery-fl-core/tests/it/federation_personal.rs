//! Heads at home: `head` and `auto_head` personalization federate the encoders only, and each
//! fleet's head trains on from where the fleet left it (needs the `tch` feature).

use battery_fl_core::federation::{
    Candidate, FederationConfig, FleetClient, FleetState, Personalization, Simulation,
};
use battery_fl_core::model::{BatLiNet, ModelParams};

use crate::federation::{config, featurizer, fleets, model};

/// (head weights, encoder weights), flattened.
fn split(p: &ModelParams) -> (Vec<f32>, Vec<f32>) {
    let (h, e): (Vec<_>, Vec<_>) = p.params().iter().partition(|q| q.name.starts_with("head."));
    let flat =
        |v: Vec<&battery_fl_core::model::Param>| v.iter().flat_map(|q| q.data.clone()).collect();
    (flat(h), flat(e))
}

/// A fleet's round starts from the received encoders with its own head, not the received
/// (never trained) head, and sends no head update: trained from its state after round 1 and
/// from an empty state, the same round gives other heads and zero head deltas both times.
#[test]
fn a_head_at_home_trains_on_from_where_the_fleet_left_it() {
    for mode in [Personalization::Head, Personalization::AutoHead] {
        let cells = fleets(2);
        let cfg = FederationConfig {
            personalization: mode,
            ..config(2)
        };
        let mut sim = Simulation::new(cfg.clone(), model(), featurizer(), cells.clone()).unwrap();
        sim.run_round().unwrap();
        let received = sim.state().global.clone();
        let after_round_1 = sim.state().fleets[0].clone();
        let mut worker =
            BatLiNet::from_bytes(&sim.global_model().unwrap().to_bytes().unwrap()).unwrap();
        let client = FleetClient::new(&cfg, 0, cells[0].train.clone()).unwrap();
        let mut home = after_round_1.clone();
        let mut fresh = FleetState::default();
        let a = client.train(&mut worker, &received, &mut home, 2).unwrap();
        let b = client.train(&mut worker, &received, &mut fresh, 2).unwrap();
        for delta in [&a.delta, &b.delta] {
            assert!(
                split(delta).0.iter().all(|v| *v == 0.0),
                "{mode:?}: a head update left"
            );
        }
        let (own, new) = (home.personal.unwrap(), fresh.personal.unwrap());
        assert_ne!(
            split(&own).0,
            split(&new).0,
            "{mode:?}: the fleet's head was not the start"
        );
    }
}

/// Personalization: with `head`, encoders are federated and each fleet keeps its own head
/// (the global head never moves); the model a fleet uses is what it is scored with.
#[test]
fn head_personalization_keeps_each_fleets_head_at_home() {
    let cfg = FederationConfig {
        personalization: Personalization::Head,
        ..config(2)
    };
    let mut sim = Simulation::new(cfg, model(), featurizer(), fleets(3)).unwrap();
    let initial = sim.state().global.clone();
    sim.run(|_| {}).unwrap();
    let head = |p: &ModelParams| split(p).0;
    let global = sim.state().global.clone();
    assert_eq!(head(&global), head(&initial), "the global head moved");
    assert_ne!(
        global.flatten(),
        initial.flatten(),
        "the encoders did not move"
    );
    let heads: Vec<Vec<f32>> = sim
        .state()
        .fleets
        .iter()
        .map(|s| head(s.personal.as_ref().unwrap()))
        .collect();
    assert!(heads[0] != heads[1] && heads[1] != heads[2]);
    let last = sim.state().history.last().unwrap().clone();
    assert_eq!(last.fleet_personalized_rmse.len(), 3);
    let id = last.fleet_rmse.keys().next().unwrap().clone();
    let own = sim.fleet_model(&id).unwrap().params().unwrap();
    assert_eq!(head(&own), heads[0]);
    assert!(sim.fleet_model("no such fleet").is_err());
}

/// `auto_head`: the encoders are federated and every head stays home (as with `head`), and
/// each fleet chooses between its own model and its own-head model (the shared encoders with
/// its head); the global and Ditto models are not candidates. The model it uses is the one it
/// chose; a margin no t-test passes keeps every fleet's own model.
#[test]
fn auto_head_chooses_between_the_fleets_own_model_and_its_own_head() {
    let head = split;
    let cells = fleets(3);
    let cfg = FederationConfig {
        personalization: Personalization::AutoHead,
        choice_margin: 0.0, // the least mean error: both kinds get chosen somewhere
        ..config(2)
    };
    let mut sim = Simulation::new(cfg.clone(), model(), featurizer(), cells.clone()).unwrap();
    let initial = sim.state().global.clone();
    sim.run(|_| {}).unwrap();
    let global = sim.state().global.clone();
    assert_eq!(head(&global).0, head(&initial).0, "the global head moved");
    assert_ne!(
        head(&global).1,
        head(&initial).1,
        "the encoders did not move"
    );
    let last = sim.state().history.last().unwrap().clone();
    let states = sim.state().fleets.clone();
    for (state, fleet) in states.iter().zip(&cells) {
        let (choice, scores) = state.choice.clone().unwrap();
        let kinds: Vec<Candidate> = scores.keys().copied().collect();
        assert_eq!(kinds, vec![Candidate::Local, Candidate::Head]);
        assert_eq!(last.choices[&fleet.id], choice.name());
        let used = sim.fleet_model(&fleet.id).unwrap().params().unwrap();
        let personal = state.personal.as_ref().unwrap();
        match choice {
            // the shared encoders with the fleet's own head
            // (trained without its validation cells: the model its intervals calibrate)
            Candidate::Head => {
                assert_eq!(head(&used).0, head(personal).0);
                assert_eq!(head(&used).1, head(&global).1);
                assert_eq!(state.validated, state.current);
            }
            // its own model, trained alone on all its training cells
            _ => {
                assert_eq!(choice, Candidate::Local);
                let alone = &state.local.as_ref().unwrap().1;
                assert_eq!(used.flatten(), alone.params.flatten());
            }
        }
    }
    // (on these seeded fleets both kinds are chosen, so both branches above ran)
    let chosen: std::collections::BTreeSet<&str> =
        last.choices.values().map(String::as_str).collect();
    assert_eq!(chosen, ["head", "local"].into_iter().collect());
    assert_eq!(sim.calibrate_fleets().unwrap().len(), 3);
    let keep = FederationConfig {
        choice_margin: 1e9,
        ..cfg
    };
    let mut sim = Simulation::new(keep, model(), featurizer(), cells.clone()).unwrap();
    let r = sim.run_round().unwrap();
    assert!(cells.iter().all(|f| r.choices[&f.id] == "local"));
    // its intervals calibrate on the cells it held out, as with `auto`
    assert_eq!(sim.calibrate_fleets().unwrap().len(), 3);
}

/// Fleet 0's Ditto model after two rounds, in a federation whose fleet 1 holds `swap`'s
/// cells (`None`: its own), with the statistics of the unchanged federation.
fn ditto_model(lambda: f64, swap: Option<usize>) -> (Vec<f32>, Vec<f32>) {
    let cfg = FederationConfig {
        personalization: Personalization::Ditto,
        ditto_lambda: lambda,
        ..config(2)
    };
    let cells = fleets(3);
    let (labels, scales) = Simulation::new(cfg.clone(), model(), featurizer(), cells.clone())
        .unwrap()
        .statistics();
    let mut changed = cells.clone();
    if let Some(other) = swap {
        changed[1].train = cells[other].train.clone();
        changed[1].test = cells[other].test.clone();
    }
    let mut sim = Simulation::new(cfg, model(), featurizer(), changed).unwrap();
    sim.set_statistics(labels, scales).unwrap();
    let initial = sim.state().global.flatten();
    sim.run(|_| {}).unwrap();
    let own = sim.state().fleets[0].personal.as_ref().unwrap().flatten();
    (own, initial)
}

/// Ditto with `ditto_lambda = 0` is local training: a fleet's own model does not depend on
/// the other fleets (another fleet's cells changed, the statistics kept, it is the same to the
/// bit), while with a pull toward the global model it does.
#[test]
fn ditto_at_lambda_zero_is_local_training() {
    let (alone, initial) = ditto_model(0.0, None);
    assert_ne!(alone, initial, "the Ditto model did not train");
    assert_eq!(alone, ditto_model(0.0, Some(2)).0);
    assert_ne!(ditto_model(1.0, None).0, ditto_model(1.0, Some(2)).0);
}

/// `fine_tune`: the federation is that of `none` (the global model is the same to the bit:
/// fine-tuning never leaves the fleet), and each fleet uses the final global model tuned on
/// its own cells, scored as such.
#[test]
fn fine_tune_tunes_the_global_model_at_home_only() {
    let cells = fleets(3);
    let run = |personalization| {
        let cfg = FederationConfig {
            personalization,
            ..config(2)
        };
        let mut sim = Simulation::new(cfg, model(), featurizer(), cells.clone()).unwrap();
        sim.run(|_| {}).unwrap();
        sim
    };
    let plain = run(Personalization::None);
    let mut tuned = run(Personalization::FineTune);
    let global = tuned.state().global.flatten();
    assert_eq!(global, plain.state().global.flatten());
    let last = tuned.state().history.last().unwrap().clone();
    assert_eq!(
        last.fleet_rmse,
        plain.state().history.last().unwrap().fleet_rmse
    );
    let mut models = Vec::new();
    for fleet in &cells {
        let own = tuned
            .fleet_model(&fleet.id)
            .unwrap()
            .params()
            .unwrap()
            .flatten();
        assert_ne!(own, global, "{}: not tuned", fleet.id);
        assert_ne!(
            last.fleet_personalized_rmse[&fleet.id], last.fleet_rmse[&fleet.id],
            "{}: scored with the global model",
            fleet.id
        );
        models.push(own);
    }
    assert!(models[0] != models[1] && models[1] != models[2]);
}

/// A fleet's evaluation (what a Flower node reports) is the Simulation's: after a `ditto`
/// round, the received weights' RMSE and the fleet's own model's are the round record's; a
/// test cell without a known life is an error that leaves the fleet's state as it was.
#[test]
fn a_fleets_evaluation_is_the_simulations_and_an_error_changes_nothing() {
    let cells = fleets(2);
    let cfg = FederationConfig {
        personalization: Personalization::Ditto,
        ..config(1)
    };
    let mut sim = Simulation::new(cfg.clone(), model(), featurizer(), cells.clone()).unwrap();
    let record = sim.run_round().unwrap();
    let received = sim.state().global.clone();
    let mut worker =
        BatLiNet::from_bytes(&sim.global_model().unwrap().to_bytes().unwrap()).unwrap();
    let client = FleetClient::new(&cfg, 0, cells[0].train.clone()).unwrap();
    let mut state = sim.state().fleets[0].clone();
    let e = client
        .evaluate(&mut worker, &received, &mut state, &cells[0].test, 1)
        .unwrap();
    let id = &cells[0].id;
    approx::assert_relative_eq!(e.rmse, record.fleet_rmse[id], max_relative = 1e-9);
    approx::assert_relative_eq!(
        e.personalized_rmse,
        record.fleet_personalized_rmse[id],
        max_relative = 1e-9
    );
    assert!(
        (e.rmse - e.personalized_rmse).abs() > 1e-6,
        "the own model is the global"
    );
    // unlabelled test cells: refused, nothing recorded
    let unknown = cells[0]
        .test
        .clone()
        .with_labels(vec![None; cells[0].test.len()])
        .unwrap();
    let before = state.clone();
    assert!(client
        .evaluate(&mut worker, &received, &mut state, &unknown, 2)
        .is_err());
    assert_eq!(state, before);
}
