//! Intervals of the models federated fleets end with: each fleet's own held-out cells, pooled
//! through a secure sum of score histograms when a fleet has too few.

use battery_fl_core::federation::intervals::{pooled_scores, score_histogram};
use battery_fl_core::federation::{
    Candidate, FederationConfig, FleetClient, FleetData, FleetState, LabelScope, Personalization,
    SecureAggregation, Simulation,
};
use battery_fl_core::model::{BatLiNet, DpSgdConfig, MONDRIAN_MIN_CELLS};
use battery_fl_core::Error;

use crate::federation::{config, featurizer, fleets, model};

fn auto(secure: bool) -> FederationConfig {
    FederationConfig {
        personalization: Personalization::Auto,
        secure_aggregation: secure.then(SecureAggregation::default),
        ..config(1)
    }
}

/// Every fleet scores the model it chose, as trained without its validation cells, on those
/// cells; with fewer than `MONDRIAN_MIN_CELLS` of them it takes all fleets' plain errors, read
/// back from the summed histogram at their bins' upper edges. Recomputed here by hand, fleet by
/// fleet, from the public pieces (the fleet's split and the models in its state): the secure
/// sum decodes the counts exactly.
#[test]
fn small_fleets_take_every_fleets_held_out_scores_summed_securely() {
    let cells = fleets(3);
    let mut sim = Simulation::new(auto(true), model(), featurizer(), cells.clone()).unwrap();
    sim.run(|_| {}).unwrap();
    let calibrations = sim.calibrate_fleets().unwrap();

    let mut worker = BatLiNet::new(model(), featurizer()).unwrap();
    let mut by_hand = Vec::new();
    for (f, fleet) in cells.iter().enumerate() {
        let client = FleetClient::new(&auto(true), f, fleet.train.clone()).unwrap();
        let val = client.validation_cells().unwrap();
        assert!(val.len() < MONDRIAN_MIN_CELLS);
        let state = &sim.state().fleets[f];
        let used = state
            .current
            .as_ref()
            .unwrap()
            .to_batlinet(&mut worker)
            .unwrap();
        let fitted = state
            .validated
            .as_ref()
            .unwrap()
            .to_batlinet(&mut worker)
            .unwrap();
        let own = used
            .calibrate_from(&fitted, client.fit_cells(), val, client.train_cells())
            .unwrap();
        assert_eq!(own.scores.len(), val.len());
        // the fleet's flags are kept; the pooled plain errors replace its normalized scores
        let cal = &calibrations[&fleet.id];
        assert_eq!(cal.training, own.training);
        approx::assert_relative_eq!(cal.max_distance, own.max_distance);
        assert!(cal.pooled && !own.pooled && own.scale > 0.0);
        assert_eq!((cal.scale, cal.group_scores.len()), (0.0, 0));
        assert_eq!(own.errors.len(), own.scores.len());
        // the calibrating model never trained on the held-out cells: the local model fitted
        // without them, the global or Ditto model the fleet uses (federated on its fitting
        // cells only), or the global model fine-tuned on the fitting cells
        let (choice, _) = state.choice.clone().unwrap();
        let (validated, current) = (state.validated.as_ref(), state.current.as_ref());
        match choice {
            Candidate::Local => {
                let (on_fit, on_all) = state.local.as_ref().unwrap();
                assert_eq!(validated, Some(on_fit));
                assert_eq!(current, Some(on_all));
                assert_ne!(on_fit, on_all);
            }
            Candidate::Global | Candidate::Ditto | Candidate::Head => {
                assert_eq!(validated, current)
            }
            Candidate::FineTune => assert_ne!(validated, current),
        }
        by_hand.extend(pooled_scores(&score_histogram(&own.errors).unwrap()).unwrap());
    }
    by_hand.sort_by(f64::total_cmp);
    for fleet in &cells {
        assert_eq!(calibrations[&fleet.id].scores, by_hand, "{}", fleet.id);
    }

    // intervals around each fleet's own predictions, within the prediction bound
    let id = &cells[1].id;
    let cal = &calibrations[id];
    let p = sim.fleet_intervals(id, &cells[1].test, cal, 0.8).unwrap();
    let own = sim.fleet_model(id).unwrap();
    let point = own.predict(&cells[1].test, &cells[1].train).unwrap();
    assert_eq!(p.len(), cells[1].test.len());
    for (p, y) in p.iter().zip(&point) {
        assert!(p.lower < p.life && p.life < p.upper, "{p:?}");
        approx::assert_relative_eq!(p.life, *y, max_relative = 1e-9);
    }
    // six pooled cells give no 90 % quantile: a typed error, not an infinite interval
    assert!(matches!(
        sim.fleet_intervals(id, &cells[1].test, cal, 0.9),
        Err(Error::NotEnoughData {
            needed: 9,
            got: 6,
            ..
        })
    ));
}

#[test]
fn fleet_intervals_need_auto_and_a_round() {
    let cells = fleets(3);
    let mut sim = Simulation::new(config(1), model(), featurizer(), cells.clone()).unwrap();
    sim.run(|_| {}).unwrap();
    assert!(matches!(
        sim.calibrate_fleets(),
        Err(Error::InvalidConfig { ref field, .. }) if field == "calibration_holdout"
    ));
    let mut fresh = Simulation::new(auto(false), model(), featurizer(), cells.clone()).unwrap();
    assert!(matches!(
        fresh.calibrate_fleets(),
        Err(Error::InvalidConfig { ref field, .. }) if field == "state"
    ));
    // record-level DP-SGD does not cover the summed errors: refused before any is computed
    let private = FederationConfig {
        record_privacy: Some(DpSgdConfig {
            epsilon: Some(8.0),
            ..Default::default()
        }),
        ..auto(false)
    };
    let client = FleetClient::new(&private, 0, cells[0].train.clone())
        .unwrap()
        .with_public_cells(cells[1].train.clone(), 4)
        .unwrap();
    let mut worker = BatLiNet::new(model(), featurizer()).unwrap();
    assert!(matches!(
        client.calibration(&mut worker, &FleetState::default()),
        Err(Error::InvalidConfig { ref field, .. }) if field == "record_privacy"
    ));
}

/// `calibration_holdout` gives the modes that train on every cell (`none`, `fine_tune`, `head`,
/// `ditto`) split-conformal intervals: the model a fleet uses never saw its validation cells
/// (with fleet-scoped labels, new lives for those cells change no weight of any fleet's model,
/// where without the holdout they do), and that very model is the one its validation errors
/// calibrate.
#[test]
fn calibration_holdout_calibrates_the_model_a_fleet_uses_on_cells_it_never_saw() {
    let cells = fleets(3);
    let run = |cfg: &FederationConfig, cells: &[FleetData]| {
        let mut sim = Simulation::new(cfg.clone(), model(), featurizer(), cells.to_vec()).unwrap();
        sim.run(|_| {}).unwrap();
        sim
    };
    // every fleet's validation cells, three times as long-lived
    let relabel = |cfg: &FederationConfig| -> Vec<FleetData> {
        let mut out = cells.clone();
        for (f, fleet) in out.iter_mut().enumerate() {
            let client = FleetClient::new(cfg, f, fleet.train.clone()).unwrap();
            let held: Vec<String> = match client.validation_cells() {
                Some(val) => val.cell_ids().to_vec(),
                None => fleet.train.cell_ids()[..2].to_vec(),
            };
            let lives = fleet
                .train
                .cell_ids()
                .iter()
                .zip(fleet.train.labels())
                .map(|(id, y)| y.map(|y| if held.contains(id) { 3.0 * y } else { y }))
                .collect();
            fleet.train = fleet.train.clone().with_labels(lives).unwrap();
        }
        out
    };
    // the global weights and the model each fleet uses
    let currents = |sim: &Simulation| {
        let fleets: Vec<_> = sim
            .state()
            .fleets
            .iter()
            .map(|s| s.current.clone())
            .collect();
        (sim.state().global.clone(), fleets)
    };
    for personalization in [
        Personalization::None,
        Personalization::FineTune,
        Personalization::Head,
        Personalization::Ditto,
    ] {
        let cfg = FederationConfig {
            personalization,
            calibration_holdout: true,
            label_scope: LabelScope::Fleet,
            ..config(1)
        };
        let mut sim = run(&cfg, &cells);
        let calibrations = sim.calibrate_fleets().unwrap();
        for (f, fleet) in cells.iter().enumerate() {
            let client = FleetClient::new(&cfg, f, fleet.train.clone()).unwrap();
            let val = client.validation_cells().unwrap();
            assert_eq!(client.fit_cells().len() + val.len(), fleet.train.len());
            assert!(client.fit_cells().shared_cell(val).is_none());
            let state = &sim.state().fleets[f];
            assert_eq!(state.validated, state.current, "{personalization:?}");
            let used = sim.fleet_model(&fleet.id).unwrap();
            let own = used
                .calibrate_from(&used, client.fit_cells(), val, client.train_cells())
                .unwrap();
            let cal = &calibrations[&fleet.id];
            assert_eq!(cal.errors, own.errors, "{personalization:?}");
            assert_eq!(cal.errors.len(), val.len());
            // 0.5 needs two pooled scores of the nine: an interval around the fleet's model
            let p = sim
                .fleet_intervals(&fleet.id, &fleet.test, cal, 0.5)
                .unwrap();
            let point = used.predict(&fleet.test, &fleet.train).unwrap();
            for (p, y) in p.iter().zip(&point) {
                assert!(p.lower < p.life && p.life < p.upper, "{p:?}");
                approx::assert_relative_eq!(p.life, *y, max_relative = 1e-9);
            }
        }
        let moved = run(&cfg, &relabel(&cfg));
        assert!(currents(&sim).1.iter().all(Option::is_some));
        // (not assert_eq: the weights would fill the screen)
        let same = currents(&moved) == currents(&sim);
        assert!(
            same,
            "{personalization:?}: the held-out lives moved a model"
        );
    }
    // the control: without the holdout the same new lives move the models
    let cfg = FederationConfig {
        label_scope: LabelScope::Fleet,
        ..config(1)
    };
    let (sim, moved) = (run(&cfg, &cells), run(&cfg, &relabel(&cfg)));
    assert!(
        currents(&moved).0 != currents(&sim).0,
        "the new lives moved nothing"
    );
}
