//! The linear lifetime model and its federation on synthetic and real cells.

use approx::assert_relative_eq;
use battery_fl_core::data::synthetic::{CellSpec, Chemistry, FleetConfig};
use battery_fl_core::data::{Cell, LabelConfig};
use battery_fl_core::federation::{federate_linear, LinearChoice, SecureAggregation};
use battery_fl_core::model::{
    label_group, select_linear, LinearConfig, LinearModel, LinearRow, LinearStatistics,
    Standardization, VarianceConfig, VarianceModel,
};

use crate::common;

fn rows(cells: &[Cell]) -> Vec<LinearRow> {
    LinearConfig::default()
        .rows(cells, &LabelConfig::default())
        .unwrap()
}

fn rmse(model: &LinearModel, rows: &[LinearRow]) -> f64 {
    let p = model.predict_rows(rows).unwrap();
    (p.iter()
        .zip(rows)
        .map(|((p, _), r)| (p - r.log_life.unwrap().exp()).powi(2))
        .sum::<f64>()
        / rows.len() as f64)
        .sqrt()
}

#[test]
fn the_federated_fit_through_secure_aggregation_is_the_pooled_fit() {
    let fleets = FleetConfig::default()
        .with_fleets(3)
        .with_cells_per_fleet(12)
        .with_seed(5)
        .generate()
        .unwrap();
    let per_fleet: Vec<_> = fleets.iter().map(|f| rows(&f.cells)).collect();
    let config = LinearConfig::default();
    let plain = federate_linear(&per_fleet, &config, None, 1).unwrap();
    let secure =
        federate_linear(&per_fleet, &config, Some(&SecureAggregation::default()), 1).unwrap();
    assert_eq!(plain.global.feature_set, secure.global.feature_set);
    for (a, b) in plain.global.weights.iter().zip(&secure.global.weights) {
        assert_relative_eq!(*a, *b, epsilon = 1e-4);
    }
    // the same settings fitted on the pooled cells give the same model
    let pooled: Vec<LinearRow> = per_fleet.iter().flatten().cloned().collect();
    let stats = LinearStatistics::from_rows(&pooled).unwrap();
    let std = Standardization::from_statistics(&stats).unwrap();
    let g = &plain.global;
    let central =
        LinearModel::fit(&stats, &std, g.feature_set, g.lambda, None, &g.early_life).unwrap();
    for (a, b) in g.weights.iter().zip(&central.weights) {
        assert_relative_eq!(*a, *b, epsilon = 1e-9);
    }
    // every fleet keeps whatever validated best on its own cells, its local model included
    for (f, rows) in plain.fleets.iter().zip(&per_fleet) {
        // intervals calibrated on the fleet's own cells bracket each prediction
        let iv = f.intervals(rows, &rows[..4], 0.8).unwrap();
        assert_eq!(iv.len(), 4);
        assert!(iv.iter().all(|p| p.lower <= p.life && p.life <= p.upper));
        // the fleet holds the federation's global model and keeps it unless an own fit
        // validated below it
        assert_eq!(f.global, plain.global);
        match f.choices[0].choice {
            LinearChoice::Local => assert!(f.local_error < f.global_error),
            LinearChoice::Personalized => assert!(f.personalized_error < f.global_error),
            LinearChoice::Global => {}
        }
        for c in &f.choices {
            let g = c.cathode.as_deref().and_then(|n| label_group(Some(n)));
            assert_eq!(f.model_for(g), f.model(c.choice));
        }
    }
}

/// A fleet's own fits are scored with their selection inside (each cell predicted by the
/// selection run without it): the least of 60 candidates' leave-one-out errors is biased low,
/// and comparing it with the other fleets' honest held-out error would favour the fleet's
/// own fits for nothing.
#[test]
fn a_fleets_own_fits_are_scored_with_their_selection_nested() {
    let fleets = FleetConfig::default()
        .with_fleets(3)
        .with_cells_per_fleet(14)
        .with_seed(8)
        .generate()
        .unwrap();
    let per_fleet: Vec<_> = fleets.iter().map(|f| rows(&f.cells)).collect();
    let config = LinearConfig::default();
    let fed = federate_linear(&per_fleet, &config, None, 1).unwrap();
    let (mut nested, mut plain) = (0.0, 0.0);
    for (f, rows) in fed.fleets.iter().zip(&per_fleet) {
        let (local, optimistic) = select_linear(rows, &config).unwrap();
        assert_eq!(f.local, local);
        // by hand: every cell predicted by the selection run on the others
        let by_hand = (0..rows.len())
            .map(|i| {
                let mut rest = rows.clone();
                let held = rest.remove(i);
                let (without, _) = select_linear(&rest, &config).unwrap();
                (held.log_life.unwrap() - without.predict_log(&held).unwrap()).powi(2)
            })
            .sum::<f64>()
            / rows.len() as f64;
        assert_relative_eq!(f.local_error, by_hand, max_relative = 1e-9);
        nested += f.local_error;
        plain += optimistic;
    }
    assert!(nested > 1.05 * plain, "nested {nested} plain {plain}");
    // a fleet of one cell cannot validate its own fits: it takes the global model
    let mut few = per_fleet.clone();
    few[2].truncate(1);
    let fed = federate_linear(&few, &config, None, 1).unwrap();
    assert!(fed.fleets[2]
        .choices
        .iter()
        .all(|c| c.choice == LinearChoice::Global));
    // one cell without the fade split (too few early capacities): the fleet's inner
    // selections keep to the sets every one of its cells gives, so the cell is still
    // predicted when it is held out
    let mut partial = per_fleet;
    // (without that cell, two fleets' own selections would read the split)
    assert!(partial[..2].iter().all(|f| select_linear(&f[1..], &config)
        .unwrap()
        .0
        .feature_set
        .features()
        .contains(&8)));
    for f in &mut partial {
        f[0].features.values[8] = None;
    }
    let fed = federate_linear(&partial, &config, None, 1).unwrap();
    for f in &fed.fleets {
        assert!(f.local_error.is_finite());
        assert!(!f.local.feature_set.features().contains(&8));
    }
}

/// The global model's score on a fleet's cells is its leave-one-out error (the fit on the
/// total minus each cell); a fleet keeps an own fit only when it validates below that by the
/// margin; with no margin it keeps the least error of the three, so it is never worse than
/// alone on its own validation cells.
#[test]
fn a_fleet_keeps_the_global_model_unless_its_own_fit_validates_clearly_better() {
    let fleets = FleetConfig::default()
        .with_fleets(3)
        .with_cells_per_fleet(16)
        .with_seed(11)
        .generate()
        .unwrap();
    let mut per_fleet: Vec<_> = fleets.iter().map(|f| rows(&f.cells)).collect();
    let config = LinearConfig::default();
    let fed = federate_linear(&per_fleet, &config, None, 1).unwrap();
    // by hand: each of fleet 0's cells predicted by the global settings fitted without it
    let pooled: Vec<LinearRow> = per_fleet.iter().flatten().cloned().collect();
    let total = LinearStatistics::from_rows(&pooled).unwrap();
    let std = Standardization::from_statistics(&total).unwrap();
    let g = &fed.global;
    let by_hand = per_fleet[0]
        .iter()
        .map(|r| {
            let rest =
                total.subtract(&LinearStatistics::from_rows(std::slice::from_ref(r)).unwrap());
            let m = LinearModel::fit(&rest, &std, g.feature_set, g.lambda, None, &g.early_life)
                .unwrap();
            (r.log_life.unwrap() - m.predict_log(r).unwrap()).powi(2)
        })
        .sum::<f64>()
        / per_fleet[0].len() as f64;
    assert_relative_eq!(fed.fleets[0].global_error, by_hand, max_relative = 1e-9);

    // no margin: the least of the three errors
    let least = LinearConfig {
        choice_margin: 0.0,
        ..config.clone()
    };
    for f in &federate_linear(&per_fleet, &least, None, 1).unwrap().fleets {
        let min = f.local_error.min(f.personalized_error).min(f.global_error);
        assert_relative_eq!(f.personal_error(), min, max_relative = 1e-12);
    }
    // a margin no gain can pass: every fleet keeps the global model
    let never = LinearConfig {
        choice_margin: 1e9,
        ..config.clone()
    };
    for f in &federate_linear(&per_fleet, &never, None, 1).unwrap().fleets {
        assert!(f.choices.iter().all(|c| c.choice == LinearChoice::Global));
    }
    // a fleet whose cells follow their own law (ln-lives mirrored about their mean: what
    // ages its cells fast ages the others' slowly) keeps its own fit at the default margin
    let centre =
        per_fleet[2].iter().filter_map(|r| r.log_life).sum::<f64>() / per_fleet[2].len() as f64;
    for r in &mut per_fleet[2] {
        r.log_life = r.log_life.map(|y| 2.0 * centre - y);
    }
    let fed = federate_linear(&per_fleet, &config, None, 1).unwrap();
    let shifted = &fed.fleets[2];
    assert!(shifted
        .choices
        .iter()
        .all(|c| c.choice != LinearChoice::Global));
    assert!(shifted.personal_error() < 0.5 * shifted.global_error);
    // a margin that is not a number of standard errors is refused before any fit
    for bad in [-1.0, f64::NAN, f64::INFINITY] {
        let config = LinearConfig {
            choice_margin: bad,
            ..config.clone()
        };
        let err = federate_linear(&per_fleet, &config, None, 1).unwrap_err();
        assert!(
            matches!(&err, battery_fl_core::Error::InvalidConfig { field, .. } if field == "linear.choice_margin"),
            "{err}"
        );
    }
}

/// A fleet with two NMC cells among LFP ones, two fleets of NMC cells: the first fleet's
/// personal model predicts NMC cells far better than its own.
#[test]
fn a_minority_chemistry_borrows_from_the_fleets_that_have_it() {
    let cell = |chem, rate: f64, temp: f64, id: String, seed| {
        CellSpec::new(chem)
            .with_charge_c_rate(rate)
            .with_temperature_c(temp)
            .generate(&id, seed)
            .unwrap()
    };
    let mut a: Vec<Cell> = (0..14)
        .map(|i| {
            cell(
                Chemistry::Lfp,
                1.0 + 0.2 * i as f64,
                25.0,
                format!("a{i}"),
                i,
            )
        })
        .collect();
    a.extend((0..2).map(|i| {
        cell(
            Chemistry::Nmc,
            1.0 + i as f64,
            25.0,
            format!("an{i}"),
            50 + i,
        )
    }));
    let nmc_fleet = |name: &str, temp: f64, base: u64| -> Vec<Cell> {
        (0..16)
            .map(|i| {
                let id = format!("{name}{i}");
                cell(Chemistry::Nmc, 0.7 + 0.15 * i as f64, temp, id, base + i)
            })
            .collect()
    };
    let fleets = vec![
        rows(&a),
        rows(&nmc_fleet("b", 22.0, 100)),
        rows(&nmc_fleet("c", 30.0, 200)),
    ];
    let test: Vec<Cell> = (0..12)
        .map(|i| {
            cell(
                Chemistry::Nmc,
                0.8 + 0.2 * i as f64,
                25.0,
                format!("t{i}"),
                300 + i,
            )
        })
        .collect();
    let test = rows(&test);
    let config = LinearConfig {
        per_chemistry_choice: true,
        ..Default::default()
    };
    let fed = federate_linear(&fleets, &config, None, 3).unwrap();
    let first = &fed.fleets[0];
    let nmc = first
        .choices
        .iter()
        .find(|c| c.cathode.as_deref() == Some("NMC"))
        .unwrap();
    assert_eq!(nmc.cells, 2);
    assert_ne!(nmc.choice, LinearChoice::Local);
    let personal = first.predict_rows(&test).unwrap();
    let personal = (personal
        .iter()
        .zip(&test)
        .map(|(p, r)| (p.0 - r.log_life.unwrap().exp()).powi(2))
        .sum::<f64>()
        / test.len() as f64)
        .sqrt();
    let local = rmse(&first.local, &test);
    assert!(
        personal < 0.85 * local,
        "personal {personal:.1} vs local {local:.1}"
    );
}

/// On MATR (train -> primary test), the discharge features beat Severson's one-feature
/// variance model fitted on the same cells.
#[test]
fn on_matr_the_linear_model_beats_the_variance_model() {
    let index = battery_fl_core::data::load_index(common::real_data_dir().join("matr_severson_qv"))
        .unwrap();
    let split = |name: &str| -> Vec<Cell> {
        let ids: Vec<&str> = index
            .iter()
            .filter(|e| e.split.as_deref() == Some(name))
            .map(|e| e.cell_id.as_str())
            .collect();
        common::matr()
            .iter()
            .filter(|c| ids.contains(&c.id()) && c.id() != battery_fl_core::data::MATR_OUTLIER)
            .cloned()
            .collect()
    };
    let (train, test) = (split("train"), split("primary_test"));
    assert!(train.len() > 30 && test.len() > 30);
    let label = LabelConfig::default();
    let (model, _) = select_linear(&rows(&train), &LinearConfig::default()).unwrap();
    let linear = rmse(&model, &rows(&test));
    let variance = VarianceModel::fit(&train, &VarianceConfig::default(), &label).unwrap();
    let truth: Vec<f64> = rows(&test)
        .iter()
        .map(|r| r.log_life.unwrap().exp())
        .collect();
    let v = variance.predict(&test).unwrap();
    let v_rmse = (v
        .iter()
        .zip(&truth)
        .map(|(p, t)| (p - t).powi(2))
        .sum::<f64>()
        / truth.len() as f64)
        .sqrt();
    assert!(
        linear < v_rmse,
        "linear {linear:.1} vs variance {v_rmse:.1}"
    );
}

/// 90 % intervals calibrated by leave-one-out on the training cells cover about 90 % of new
/// cells of the same chemistries; every cell of a chemistry never trained on is flagged.
#[test]
fn intervals_cover_new_cells_and_an_unseen_chemistry_is_flagged() {
    let cells: Vec<Cell> = FleetConfig::default()
        .with_fleets(5)
        .with_cells_per_fleet(60)
        .with_seed(9)
        .generate()
        .unwrap()
        .into_iter()
        .flat_map(|f| f.cells)
        .collect();
    let nmc = |c: &Cell| c.meta.cathode.as_deref() == Some("NMC");
    let (mut train, mut test, mut unseen) = (vec![], vec![], vec![]);
    for (i, c) in cells.into_iter().enumerate() {
        match (nmc(&c), i % 2) {
            (true, _) => unseen.push(c),
            (false, 0) => train.push(c),
            (false, _) => test.push(c),
        }
    }
    assert!(train.len() > 80 && test.len() > 80 && unseen.len() > 10);
    let train = rows(&train);
    let (model, _) = select_linear(&train, &LinearConfig::default()).unwrap();
    let calibration = model.calibrate(&train, true).unwrap();
    let test = rows(&test);
    let preds = model.intervals(&test, &calibration, 0.9).unwrap();
    let covered = preds
        .iter()
        .zip(&test)
        .filter(|(p, r)| (p.lower..=p.upper).contains(&r.log_life.unwrap().exp()))
        .count() as f64
        / test.len() as f64;
    assert!((0.82..=0.97).contains(&covered), "coverage {covered}");
    let narrower = model.intervals(&test, &calibration, 0.5).unwrap();
    assert!(narrower
        .iter()
        .zip(&preds)
        .all(|(a, b)| a.upper - a.lower < b.upper - b.lower));
    let flagged = preds.iter().filter(|p| p.out_of_distribution).count() as f64;
    assert!(flagged / (preds.len() as f64) < 0.1, "{flagged} flagged");
    let unseen = model.intervals(&rows(&unseen), &calibration, 0.9).unwrap();
    assert!(unseen.iter().all(|p| p.out_of_distribution));
    // too few cells for the coverage asked is an error, not a silent interval
    let few = model.calibrate(&train[..5], true).unwrap();
    assert!(matches!(
        few.quantile(0.9),
        Err(battery_fl_core::Error::NotEnoughData { .. })
    ));
}
