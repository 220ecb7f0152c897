//! The linear recipe of the main job: early-life features, an exact federated fit from
//! securely summed statistics, and each fleet's personal model: the global one unless its own
//! fit validates clearly better on its training cells
//! (`battery_fl_core::federation::federate_linear`).

use std::collections::BTreeMap;

use anyhow::Result;
use battery_fl_core::data::{Cell, LabelConfig};
use battery_fl_core::federation::{federate_linear, LinearFederation, SecureAggregation};
use battery_fl_core::model::{select_linear, LinearConfig, LinearModel, LinearRow};

/// A fleet's cells as the linear recipe reads them.
pub struct FleetCells {
    pub id: String,
    pub train: Vec<Cell>,
    pub test: Vec<Cell>,
}

/// A test cell's truth, prediction, 90 % interval and out-of-distribution flag.
#[allow(dead_code)]
pub struct CellInterval {
    pub truth: f64,
    pub life: f64,
    pub lower: f64,
    pub upper: f64,
    pub flagged: bool,
}

/// RMSE rows of the linear recipe, in the main job's JSON shape.
pub struct LinearReport {
    pub local: f64,
    pub federated: f64,
    pub personalized: f64,
    pub centralized: f64,
    pub best_local: f64,
    /// Personalized 90 % intervals over all test cells: coverage and mean width (cycles).
    pub coverage_90: f64,
    pub width_90: f64,
    /// Test cells whose chemistry is a minority among their fleet's training cells:
    /// (cells, local-only RMSE, personalized RMSE).
    pub minority: (usize, f64, f64),
    pub per_fleet: BTreeMap<String, serde_json::Value>,
    /// Per fleet: true and personalized life of each test cell (the main job plots it).
    #[allow(dead_code)]
    pub scatter: Vec<Vec<(f64, f64)>>,
    /// Per fleet: each test cell's 90 % interval.
    #[allow(dead_code)]
    pub intervals: Vec<(String, Vec<CellInterval>)>,
    pub federation: LinearFederation,
}

fn rmse(pairs: &[(f64, f64)]) -> f64 {
    (pairs.iter().map(|(t, p)| (t - p).powi(2)).sum::<f64>() / pairs.len().max(1) as f64).sqrt()
}

fn pairs(model: &LinearModel, rows: &[LinearRow]) -> Result<Vec<(f64, f64)>> {
    with(model.predict_rows(rows)?, rows)
}

fn with(pred: Vec<(f64, bool)>, rows: &[LinearRow]) -> Result<Vec<(f64, f64)>> {
    Ok(rows
        .iter()
        .zip(pred)
        .map(|(r, (p, _))| (r.require_label().map(f64::exp), p))
        .map(|(t, p)| t.map(|t| (t, p)))
        .collect::<Result<Vec<_>, _>>()?)
}

/// Run the linear recipe on `fleets` and print its tables.
pub fn run(
    config: &LinearConfig,
    fleets: &[FleetCells],
    secure: Option<&SecureAggregation>,
    seed: u64,
) -> Result<LinearReport> {
    let label = LabelConfig::default();
    let train: Vec<Vec<LinearRow>> = fleets
        .iter()
        .map(|f| config.rows(&f.train, &label))
        .collect::<Result<_, _>>()?;
    let test: Vec<Vec<LinearRow>> = fleets
        .iter()
        .map(|f| config.rows(&f.test, &label))
        .collect::<Result<_, _>>()?;
    let fed = federate_linear(&train, config, secure, seed)?;
    if let Some(p) = &fed.privacy {
        println!(
            "record-level differential privacy: epsilon {:.2} per cell at delta {:e} ({} releases, noise multiplier {:.2}, {:?} noise)\n",
            p.epsilon, p.delta, p.releases, p.noise_multiplier, p.mode
        );
    }
    let pooled: Vec<LinearRow> = train.iter().flatten().cloned().collect();
    let (central, _) = select_linear(&pooled, config)?;
    let all_test: Vec<LinearRow> = test.iter().flatten().cloned().collect();

    let (mut local, mut global, mut personal, mut minority_local, mut minority_personal) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut per_fleet = BTreeMap::new();
    let mut scatter = Vec::new();
    println!("| fleet (own test cells) | local only | federated | personalized | 90 % intervals: coverage / mean width / flagged | choice per chemistry (training cells) |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let (mut covered, mut widths) = (Vec::new(), Vec::new());
    let mut intervals = Vec::new();
    for ((f, rows), (fleet, train_rows)) in
        fleets.iter().zip(&test).zip(fed.fleets.iter().zip(&train))
    {
        let l = pairs(&fleet.local, rows)?;
        let g = pairs(&fed.global, rows)?;
        let p = with(fleet.predict_rows(rows)?, rows)?;
        let iv = fleet.intervals(train_rows, rows, 0.9)?;
        let coverage = iv
            .iter()
            .zip(&p)
            .filter(|(i, (t, _))| (i.lower..=i.upper).contains(t))
            .count() as f64
            / iv.len().max(1) as f64;
        let width = iv.iter().map(|i| i.upper - i.lower).sum::<f64>() / iv.len().max(1) as f64;
        let flagged = iv.iter().filter(|i| i.out_of_distribution).count();
        intervals.push((
            f.id.clone(),
            iv.iter()
                .zip(&p)
                .map(|(i, (t, _))| CellInterval {
                    truth: *t,
                    life: i.life,
                    lower: i.lower,
                    upper: i.upper,
                    flagged: i.out_of_distribution,
                })
                .collect(),
        ));
        // a chemistry is a minority in a fleet when fewer than half its training cells have it
        let share = |c: Option<usize>| {
            train_rows.iter().filter(|r| r.cathode == c).count() * 2 < train_rows.len()
        };
        for (k, r) in rows.iter().enumerate() {
            if share(r.cathode) {
                minority_local.push(l[k]);
                minority_personal.push(p[k]);
            }
        }
        let choices: Vec<String> = fleet
            .choices
            .iter()
            .map(|c| {
                format!(
                    "{} x{}: {}",
                    c.cathode.as_deref().unwrap_or("?"),
                    c.cells,
                    c.choice.name()
                )
            })
            .collect();
        let choices = choices.join(", ");
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.0} % / {:.0} / {flagged} | {choices} |",
            f.id,
            rmse(&l),
            rmse(&g),
            rmse(&p),
            100.0 * coverage,
            width,
        );
        covered.push(coverage * iv.len() as f64);
        widths.push(width * iv.len() as f64);
        per_fleet.insert(
            f.id.clone(),
            serde_json::json!({"local": rmse(&l), "federated": rmse(&g), "personalized": rmse(&p), "choices": choices, "coverage_90": coverage, "width_90": width, "out_of_distribution": flagged}),
        );
        scatter.push(p.clone());
        local.extend(l);
        global.extend(g);
        personal.extend(p);
    }
    let best_local = fed
        .fleets
        .iter()
        .map(|f| pairs(&f.local, &all_test).map(|p| rmse(&p)))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .fold(f64::INFINITY, f64::min);
    let cells = all_test.len().max(1) as f64;
    let report = LinearReport {
        coverage_90: covered.iter().sum::<f64>() / cells,
        width_90: widths.iter().sum::<f64>() / cells,
        local: rmse(&local),
        federated: rmse(&global),
        personalized: rmse(&personal),
        centralized: rmse(&pairs(&central, &all_test)?),
        best_local,
        minority: (
            minority_local.len(),
            rmse(&minority_local),
            rmse(&minority_personal),
        ),
        per_fleet,
        scatter,
        intervals,
        federation: fed,
    };
    println!();
    println!("| linear recipe | RMSE (cycles, all test cells) |");
    println!("| --- | --- |");
    println!(
        "| local only, each cell by its own fleet's model | {:.1} |",
        report.local
    );
    println!(
        "| local only, best single fleet's model on all cells | {:.1} |",
        report.best_local
    );
    println!(
        "| federated (exact fit from secure sums; {} features, lambda {}) | {:.1} |",
        report.federation.global.feature_set.name(),
        report.federation.global.lambda,
        report.federated
    );
    println!(
        "| federated, personalized (global unless an own fit validates clearly better) | {:.1} |",
        report.personalized
    );
    println!(
        "| centralized (pooled cells; {} features, lambda {}) | {:.1} |",
        central.feature_set.name(),
        central.lambda,
        report.centralized
    );
    println!(
        "| 90 % intervals of the personalized models: coverage / mean width (cycles) | {:.0} % / {:.0} |",
        100.0 * report.coverage_90,
        report.width_90
    );
    if report.minority.0 > 0 {
        println!(
            "| minority-chemistry test cells ({}): local only / personalized | {:.1} / {:.1} |",
            report.minority.0, report.minority.1, report.minority.2
        );
    }
    Ok(report)
}
