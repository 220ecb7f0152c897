//! Which shared model could pay each fleet of the demo? On the main job's synthetic fleets
//! (5 fleets x 24 cells, data seed given as the first argument, default 42; two thirds train),
//! each test cell is predicted by: its fleet's own model (`local`); one model on all fleets'
//! training cells pooled, references from the cell's own fleet (`pooled`); the same trained
//! and predicting with genome-nearest references (`pooled_g`); one pooled model per cathode
//! chemistry, references of that chemistry from the own fleet (`chem`); and log-space means
//! of two or three of them (`ens_*`). RMSE per fleet, for cells of a fleet's minority
//! chemistries and for all cells. Centralized models: an upper bound of what federation
//! (which never pools) could reach with them.
//!
//! ```text
//! cargo run --release -p battery-fl-core --features tch --example chemistry_study -- [DATA_SEED]
//! ```
use std::collections::BTreeMap;

use anyhow::Result;
use battery_fl_core::data::synthetic::FleetConfig;
use battery_fl_core::data::LabelConfig;
use battery_fl_core::features::{Featurizer, FeaturizerConfig};
use battery_fl_core::model::{BatLiNet, BatLiNetConfig, Dataset, ReferenceSelection};
use clap::Parser;

/// Which shared model could pay each fleet of the demo?
#[derive(Debug, Parser)]
struct Args {
    /// Data seed of the synthetic fleets (5 fleets x 24 cells).
    #[arg(value_name = "DATA_SEED", default_value_t = 42)]
    data_seed: u64,
}

/// One test cell: fleet, cathode, minority in its fleet, true life, predictions by model.
type Row = (usize, String, bool, f64, BTreeMap<&'static str, f64>);

fn cathode(ds: &Dataset, i: usize) -> String {
    ds.fingerprints()[i].cathode.clone().unwrap_or_default()
}

fn rmse(p: &[f64], t: &[f64]) -> f64 {
    (p.iter().zip(t).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / p.len().max(1) as f64).sqrt()
}

fn main() -> Result<()> {
    let seed = Args::parse().data_seed;
    let fcfg = FeaturizerConfig::default().with_interp_dim(64);
    let featurizer = Featurizer::new(fcfg.clone())?;
    let model = BatLiNetConfig::default()
        .with_conv_channels(16)
        .with_batch_size(16)
        .with_epochs(60)
        .with_inference_references(16)
        .with_seed(0);
    let fleets = FleetConfig::default()
        .with_fleets(5)
        .with_cells_per_fleet(24)
        .with_seed(seed)
        .generate()?;
    let mut data = Vec::new();
    for f in &fleets {
        let ds = Dataset::from_cells(
            &f.cells,
            &featurizer,
            &[0, 1, 2, 3, 4, 5],
            &LabelConfig::default(),
        )?;
        let n = ds.len();
        let tr: Vec<usize> = (0..n).filter(|i| i % 3 != 2).collect();
        let te: Vec<usize> = (0..n).filter(|i| i % 3 == 2).collect();
        data.push((f.id.clone(), ds.subset(&tr)?, ds.subset(&te)?));
    }
    let pooled_train = Dataset::concat(&data.iter().map(|d| &d.1).collect::<Vec<_>>())?;
    // chemistries and dominant per fleet
    let mut rows: Vec<Row> = Vec::new();
    let mut pooled = BatLiNet::new(model.clone().with_progress(false), fcfg.clone())?;
    pooled.fit(&pooled_train)?;
    let chems: Vec<String> = {
        let mut c: Vec<String> = (0..pooled_train.len())
            .map(|i| cathode(&pooled_train, i))
            .collect();
        c.sort();
        c.dedup();
        c
    };
    let mut pooled_g = BatLiNet::new(
        model
            .clone()
            .with_selection(ReferenceSelection::Genome)
            .with_progress(false),
        fcfg.clone(),
    )?;
    pooled_g.fit(&pooled_train)?;
    let mut chem_models = BTreeMap::new();
    for c in &chems {
        let idx: Vec<usize> = (0..pooled_train.len())
            .filter(|&i| cathode(&pooled_train, i) == *c)
            .collect();
        let ds = pooled_train.subset(&idx)?;
        let mut m = BatLiNet::new(model.clone().with_progress(false), fcfg.clone())?;
        m.fit(&ds)?;
        println!("chem {c}: {} train cells", ds.len());
        chem_models.insert(c.clone(), m);
    }
    for (fi, (id, train, test)) in data.iter().enumerate() {
        let mut counts = BTreeMap::new();
        for i in 0..train.len() {
            *counts.entry(cathode(train, i)).or_insert(0) += 1;
        }
        let dominant = counts
            .iter()
            .max_by_key(|e| *e.1)
            .map(|e| e.0.clone())
            .unwrap_or_default();
        let labels = train.require_labels()?;
        let (lo, hi) = labels
            .iter()
            .fold((f64::MAX, 0.0f64), |a, &l| (a.0.min(l), a.1.max(l)));
        println!("{id}: counts {counts:?} train life {lo:.0}..{hi:.0}");
        let mut local = BatLiNet::new(model.clone().with_progress(false), fcfg.clone())?;
        local.fit(train)?;
        let k = 16.min(train.len());
        let p_local = local.predict_with(test, train, k, ReferenceSelection::Random, 0)?;
        let p_pool = pooled.predict_with(test, train, k, ReferenceSelection::Random, 0)?;
        let p_pool_g =
            pooled_g.predict_with(test, train, 8.min(k), ReferenceSelection::Genome, 0)?;
        let truth = test.require_labels()?;
        for i in 0..test.len() {
            let c = cathode(test, i);
            let one = test.subset(&[i])?;
            let same: Vec<usize> = (0..train.len())
                .filter(|&j| cathode(train, j) == c)
                .collect();
            let refs = if same.is_empty() {
                train.clone()
            } else {
                train.subset(&same)?
            };
            let kk = 16.min(refs.len());
            let p_chem = match chem_models.get_mut(&c) {
                Some(m) => m.predict_with(&one, &refs, kk, ReferenceSelection::Random, 0)?[0],
                None => f64::NAN,
            };
            let mut m = BTreeMap::new();
            m.insert("local", p_local[i]);
            m.insert("pooled", p_pool[i]);
            m.insert("pooled_g", p_pool_g[i]);
            m.insert("chem", p_chem);
            m.insert(
                "ens_local_chem",
                (p_local[i].ln() * 0.5 + p_chem.ln() * 0.5).exp(),
            );
            m.insert(
                "ens_local_pool",
                (p_local[i].ln() * 0.5 + p_pool[i].ln() * 0.5).exp(),
            );
            m.insert(
                "ens_local_poolg",
                (p_local[i].ln() * 0.5 + p_pool_g[i].ln() * 0.5).exp(),
            );
            m.insert(
                "ens3",
                ((p_local[i].ln() + p_pool_g[i].ln() + p_chem.ln()) / 3.0).exp(),
            );
            rows.push((fi, c.clone(), c != dominant, truth[i], m));
        }
    }
    let names = [
        "local",
        "pooled",
        "pooled_g",
        "chem",
        "ens_local_chem",
        "ens_local_pool",
        "ens_local_poolg",
        "ens3",
    ];
    println!(
        "{:<10} {}",
        "group",
        names.map(|n| format!("{n:>15}")).join("")
    );
    let report = |label: String, sel: &dyn Fn(&Row) -> bool| {
        let r: Vec<_> = rows.iter().filter(|r| sel(r)).collect();
        let t: Vec<f64> = r.iter().map(|r| r.3).collect();
        let cols: Vec<String> = names
            .iter()
            .map(|n| {
                format!(
                    "{:>15.1}",
                    rmse(&r.iter().map(|r| r.4[n]).collect::<Vec<_>>(), &t)
                )
            })
            .collect();
        println!("{label:<10} {} (n={})", cols.join(""), r.len());
    };
    for f in 0..data.len() {
        report(format!("fleet{f}"), &|r| r.0 == f);
    }
    report("minority".into(), &|r| r.2);
    report("majority".into(), &|r| !r.2);
    report("all".into(), &|_| true);
    Ok(())
}
