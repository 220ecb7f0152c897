//! The references federation is measured against: each fleet alone, and every fleet's cells
//! pooled (what federation tries to approach without pooling).

use std::collections::BTreeMap;

use super::FleetData;
use crate::error::Result;
use crate::features::FeaturizerConfig;
use crate::model::{BatLiNet, BatLiNetConfig, Dataset, Metrics};

/// Centralized reference: one model trained on every fleet's training cells pooled (what
/// federation tries to approach without pooling). Returns (RMSE over all test cells, RMSE per
/// fleet); references are the pooled training cells.
pub fn centralized_baseline(
    fleets: &[FleetData],
    model: &BatLiNetConfig,
    featurizer: &FeaturizerConfig,
) -> Result<(f64, BTreeMap<String, f64>)> {
    let train = Dataset::concat(&fleets.iter().map(|f| &f.train).collect::<Vec<_>>())?;
    let mut m = BatLiNet::new(model.clone().with_progress(false), featurizer.clone())?;
    m.fit(&train)?;
    evaluate_each(fleets, |f| m.predict(&f.test, &train))
}

/// What fleets achieve alone (see [`local_only_baseline`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LocalOnly {
    /// RMSE over all test cells, each cell predicted by its own fleet's model.
    pub own_fleets_rmse: f64,
    /// Per fleet: its model's RMSE on its own test cells.
    pub on_own_test: BTreeMap<String, f64>,
    /// Per fleet: its model's RMSE on every fleet's test cells (the shared test set the
    /// federated and centralized models are scored on), references from its own cells.
    pub on_all_tests: BTreeMap<String, f64>,
}

impl LocalOnly {
    /// The best fleet-alone model on the shared test set: the bar federation must clear.
    pub fn best_on_all_tests(&self) -> f64 {
        self.on_all_tests
            .values()
            .copied()
            .fold(f64::INFINITY, f64::min)
    }
}

/// Local-only reference: every fleet trains on its own cells alone, and its model is scored
/// on its own test cells and on all fleets' test cells.
pub fn local_only_baseline(
    fleets: &[FleetData],
    model: &BatLiNetConfig,
    featurizer: &FeaturizerConfig,
) -> Result<LocalOnly> {
    let all_tests = Dataset::concat(&fleets.iter().map(|f| &f.test).collect::<Vec<_>>())?;
    let all_truth = all_tests.require_labels()?;
    let mut on_all_tests = BTreeMap::new();
    let (own_fleets_rmse, on_own_test) = evaluate_each(fleets, |f| {
        let mut m = BatLiNet::new(model.clone().with_progress(false), featurizer.clone())?;
        m.fit(&f.train)?;
        let k = model.inference_references.min(f.train.len());
        let all = m.predict_with(&all_tests, &f.train, k, model.selection, model.seed)?;
        on_all_tests.insert(f.id.clone(), Metrics::compute(&all, &all_truth)?.rmse);
        m.predict_with(&f.test, &f.train, k, model.selection, model.seed)
    })?;
    Ok(LocalOnly {
        own_fleets_rmse,
        on_own_test,
        on_all_tests,
    })
}

fn evaluate_each(
    fleets: &[FleetData],
    mut predict: impl FnMut(&FleetData) -> Result<Vec<f64>>,
) -> Result<(f64, BTreeMap<String, f64>)> {
    let (mut preds, mut truth) = (Vec::new(), Vec::new());
    let mut per = BTreeMap::new();
    for f in fleets {
        let p = predict(f)?;
        let t = f.test.require_labels()?;
        per.insert(f.id.clone(), Metrics::compute(&p, &t)?.rmse);
        preds.extend(p);
        truth.extend(t);
    }
    Ok((Metrics::compute(&preds, &truth)?.rmse, per))
}
