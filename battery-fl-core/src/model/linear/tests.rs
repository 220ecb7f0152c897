use approx::assert_relative_eq;

use super::*;
use crate::features::EarlyLifeFeatures;

/// Rows with ln(life) = 7 − 0.8 f2 + 0.3 f5 + (0.4 on NMC) + noise, features scattered by a
/// fixed recurrence (no RNG needed).
fn rows(n: usize, noise: f64, offset: usize) -> Vec<LinearRow> {
    (0..n)
        .map(|i| {
            let t = (i + offset) as f64;
            let mut values = [None; EARLY_LIFE_FEATURE_COUNT];
            for (k, v) in values.iter_mut().enumerate() {
                *v = Some(
                    ((t * 0.37 + k as f64 * 1.3).sin() * 2.0 + k as f64).round() / 1.0
                        + (t * 0.11 * (k + 1) as f64).cos(),
                );
            }
            let nmc = (i + offset).is_multiple_of(3);
            let f = values.map(|v| v.unwrap());
            let e = noise * (t * 2.3).sin();
            LinearRow {
                cell_id: format!("c{}", i + offset),
                features: EarlyLifeFeatures { values },
                cathode: Some(if nmc { 4 } else { 1 }),
                log_life: Some(7.0 - 0.8 * f[2] + 0.3 * f[5] + if nmc { 0.4 } else { 0.0 } + e),
            }
        })
        .collect()
}

fn fit(
    rows: &[LinearRow],
    set: FeatureSet,
    lambda: f64,
    prior: Option<&LinearModel>,
) -> LinearModel {
    let stats = LinearStatistics::from_rows(rows).unwrap();
    let std = match prior {
        Some(p) => p.standardization.clone(),
        None => Standardization::from_statistics(&stats).unwrap(),
    };
    LinearModel::fit(
        &stats,
        &std,
        set,
        lambda,
        prior,
        &EarlyLifeConfig::default(),
    )
    .unwrap()
}

#[test]
fn a_noiseless_linear_law_is_recovered() {
    let train = rows(40, 0.0, 0);
    let model = fit(&train, FeatureSet::Conditions, 1e-6, None);
    for r in rows(10, 0.0, 100) {
        assert_relative_eq!(
            model.predict_log(&r).unwrap(),
            r.log_life.unwrap(),
            epsilon = 1e-4
        );
    }
}

#[test]
fn summed_statistics_fit_exactly_the_pooled_model() {
    let (a, b) = (rows(15, 0.1, 0), rows(20, 0.1, 50));
    let sum: Vec<f64> = LinearStatistics::from_rows(&a)
        .unwrap()
        .as_slice()
        .iter()
        .zip(LinearStatistics::from_rows(&b).unwrap().as_slice())
        .map(|(x, y)| x + y)
        .collect();
    let summed = LinearStatistics::from_vec(sum).unwrap();
    let pooled_rows: Vec<_> = a.iter().chain(&b).cloned().collect();
    let pooled = LinearStatistics::from_rows(&pooled_rows).unwrap();
    for (x, y) in summed.as_slice().iter().zip(pooled.as_slice()) {
        assert_relative_eq!(*x, *y, epsilon = 1e-9, max_relative = 1e-12);
    }
    let std = Standardization::from_statistics(&summed).unwrap();
    let cfg = EarlyLifeConfig::default();
    let m1 = LinearModel::fit(&summed, &std, FeatureSet::Full, 0.3, None, &cfg).unwrap();
    let m2 = fit(&pooled_rows, FeatureSet::Full, 0.3, None);
    for (x, y) in m1.weights.iter().zip(&m2.weights) {
        assert_relative_eq!(*x, *y, epsilon = 1e-9);
    }
    // and the other fleet's statistics are the total minus one's own
    let others = summed.subtract(&LinearStatistics::from_rows(&a).unwrap());
    let own_b = LinearStatistics::from_rows(&b).unwrap();
    for (x, y) in others.as_slice().iter().zip(own_b.as_slice()) {
        assert_relative_eq!(*x, *y, epsilon = 1e-9);
    }
}

#[test]
fn closed_form_leave_one_out_matches_refitting() {
    let data = rows(18, 0.2, 3);
    let prior = fit(&rows(30, 0.2, 200), FeatureSet::Discharge, 1.0, None);
    for (lambda, prior) in [(0.05, None), (2.0, None), (0.5, Some(&prior))] {
        let std = match prior {
            Some(p) => p.standardization.clone(),
            None => Standardization::from_statistics(&LinearStatistics::from_rows(&data).unwrap())
                .unwrap(),
        };
        let closed = loo_error(&data, &std, FeatureSet::Discharge, lambda, prior).unwrap();
        let mut sse = 0.0;
        for i in 0..data.len() {
            let rest: Vec<_> = data
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, r)| r.clone())
                .collect();
            let stats = LinearStatistics::from_rows(&rest).unwrap();
            let m = LinearModel::fit(
                &stats,
                &std,
                FeatureSet::Discharge,
                lambda,
                prior,
                &EarlyLifeConfig::default(),
            )
            .unwrap();
            sse += (data[i].log_life.unwrap() - m.predict_log(&data[i]).unwrap()).powi(2);
        }
        assert_relative_eq!(closed, sse / data.len() as f64, max_relative = 1e-8);
    }
}

#[test]
fn the_prior_pulls_with_lambda() {
    let prior = fit(&rows(40, 0.1, 500), FeatureSet::Full, 0.1, None);
    let own = rows(6, 0.5, 0);
    let loose = fit(&own, FeatureSet::Full, 1e-4, Some(&prior));
    let tight = fit(&own, FeatureSet::Full, 1e6, Some(&prior));
    let same = fit(&own, FeatureSet::Full, f64::INFINITY, Some(&prior));
    assert_eq!(same.weights, prior.weights);
    assert!(same.lambda.is_infinite());
    // JSON has no infinity: it travels as null and comes back
    let text = serde_json::to_string(&same).unwrap();
    assert!(text.contains("\"lambda\":null"));
    assert_eq!(serde_json::from_str::<LinearModel>(&text).unwrap(), same);
    for (t, p) in tight.weights.iter().zip(&prior.weights).skip(1) {
        assert_relative_eq!(*t, *p, epsilon = 1e-3);
    }
    let dist = |m: &LinearModel| -> f64 {
        m.weights
            .iter()
            .zip(&prior.weights)
            .skip(1)
            .map(|(a, b)| (a - b).powi(2))
            .sum()
    };
    assert!(dist(&loose) > 100.0 * dist(&tight));
    // a prior read with another standardization is refused
    let other = fit(&own, FeatureSet::Full, 1.0, None);
    let stats = LinearStatistics::from_rows(&own).unwrap();
    assert!(matches!(
        LinearModel::fit(
            &stats,
            &other.standardization,
            FeatureSet::Full,
            1.0,
            Some(&prior),
            &EarlyLifeConfig::default()
        ),
        Err(Error::InvalidConfig { .. })
    ));
}

#[test]
fn predictions_are_bounded_and_flagged() {
    let model = fit(&rows(30, 0.1, 0), FeatureSet::Fade, 0.01, None);
    let mut wild = rows(1, 0.0, 7).remove(0);
    wild.features.values[2] = Some(-400.0);
    let (life, bounded) = model.predict_rows(&[wild]).unwrap()[0];
    assert!(bounded);
    assert_relative_eq!(life, model.log_life_bounds.1.exp(), max_relative = 1e-12);
    let tame = rows(1, 0.0, 7);
    assert!(!model.predict_rows(&tame).unwrap()[0].1);
}

#[test]
fn bad_input_is_a_typed_error() {
    let mut unlabelled = rows(3, 0.0, 0);
    unlabelled[1].log_life = None;
    assert!(matches!(
        LinearStatistics::from_rows(&unlabelled),
        Err(Error::InvalidData { .. })
    ));
    let mut partial = rows(5, 0.0, 0);
    partial[2].features.values[6] = None;
    let stats = LinearStatistics::from_rows(&partial).unwrap();
    assert!(!stats.has_features(FeatureSet::Conditions));
    assert!(stats.has_features(FeatureSet::Discharge));
    let std = Standardization::from_statistics(&stats).unwrap();
    assert!(matches!(
        std.apply(&partial[2], FeatureSet::Full),
        Err(Error::InvalidData { .. })
    ));
    let config = LinearConfig {
        lambdas: vec![0.0],
        ..Default::default()
    };
    assert!(matches!(
        select_linear(&partial, &config),
        Err(Error::InvalidConfig { .. })
    ));
    assert!(matches!(
        LinearStatistics::from_vec(vec![0.0; 3]),
        Err(Error::Shape { .. })
    ));
    let empty = LinearStatistics::from_vec(vec![0.0; LINEAR_STATISTICS_LEN]).unwrap();
    assert!(matches!(
        Standardization::from_statistics(&empty),
        Err(Error::NotEnoughData { .. })
    ));
}

#[test]
fn selection_prefers_the_features_that_carry_the_law() {
    let data = rows(40, 0.05, 0);
    let (model, loo) = select_linear(&data, &LinearConfig::default()).unwrap();
    // f2 and f5 drive the label: only the conditions and full sets hold both
    assert!(
        matches!(model.feature_set, FeatureSet::Conditions | FeatureSet::Full),
        "{:?}",
        model.feature_set
    );
    assert!(loo < 0.01, "{loo}");
}

#[test]
fn training_leverages_lie_in_the_unit_interval() {
    let data = rows(16, 0.2, 0);
    let prior = fit(&rows(40, 0.1, 300), FeatureSet::Discharge, 1.0, None);
    for p in [None, Some(&prior)] {
        let m = fit(&data, FeatureSet::Discharge, 1.0, p);
        for r in &data {
            let h = m.leverage(r).unwrap();
            assert!((0.0..=1.0).contains(&h), "{h}");
        }
    }
}

#[test]
fn group_calibration_sees_a_shift_that_leave_one_out_cannot() {
    let mut data = rows(40, 0.05, 0);
    let groups: Vec<usize> = (0..data.len()).map(|i| i % 2).collect();
    // the second group lives 1.5x longer at the same features: a batch shift
    for (r, g) in data.iter_mut().zip(&groups) {
        if *g == 1 {
            r.log_life = r.log_life.map(|y| y + 1.5f64.ln());
        }
    }
    let m = fit(&data, FeatureSet::Conditions, 0.1, None);
    let loo = m.calibrate(&data, true).unwrap().quantile(0.9).unwrap();
    let by_group = m
        .calibrate_by_group(&data, &groups)
        .unwrap()
        .quantile(0.9)
        .unwrap();
    assert!(by_group > 1.5 * loo, "{by_group} vs {loo}");
    assert!(matches!(
        m.calibrate_by_group(&data, &vec![0; data.len()]),
        Err(Error::NotEnoughData { .. })
    ));
    assert!(matches!(
        m.calibrate_by_group(&data, &[0, 1]),
        Err(Error::Shape { .. })
    ));
}
