//! Record-level differential privacy of the linear federation: the budget it spends, the
//! exactness of its map, and a curious coordinator's attack on one cell.

use approx::assert_relative_eq;
use battery_fl_core::data::synthetic::FleetConfig;
use battery_fl_core::data::LabelConfig;
use battery_fl_core::dp::{DpMode, GaussianNoise, RecordPrivacy};
use battery_fl_core::federation::{
    federate_linear, linear_share, linear_statistics, secure_sum, LinearChoice, SecureAggregation,
};
use battery_fl_core::model::{
    LinearConfig, LinearModel, LinearRow, LinearStatistics, Standardization, LINEAR_COLUMNS,
};
use battery_fl_core::Error;

fn fleets(n: usize, cells: usize) -> Vec<Vec<LinearRow>> {
    FleetConfig::default()
        .with_fleets(n)
        .with_cells_per_fleet(cells)
        .with_seed(11)
        .generate()
        .unwrap()
        .iter()
        .map(|f| {
            LinearConfig::default()
                .rows(&f.cells, &LabelConfig::default())
                .unwrap()
        })
        .collect()
}

fn private(privacy: RecordPrivacy) -> LinearConfig {
    LinearConfig {
        privacy: Some(privacy),
        ..LinearConfig::default()
    }
}

#[test]
fn a_private_federation_spends_the_budget_it_was_given_and_no_fleet_pays_for_it() {
    let per_fleet = fleets(4, 30);
    let secure = SecureAggregation::default();
    let config = private(RecordPrivacy {
        seed: Some(3),
        ..RecordPrivacy::with_epsilon(4.0)
    });
    let fed = federate_linear(&per_fleet, &config, Some(&secure), 3).unwrap();
    let report = fed.privacy.as_ref().unwrap();
    assert!(
        report.epsilon <= 4.0 + 1e-9 && report.epsilon > 3.99,
        "{report:?}"
    );
    assert_eq!((report.mode, report.releases), (DpMode::Distributed, 2));
    // each fleet's choice is made at home on its own cells, and under privacy its default is
    // its local model: never worse than alone there
    for f in &fed.fleets {
        assert!(f.personal_error() <= f.local_error + 1e-12);
    }
    // (a margin nothing passes leaves every fleet with its local model, not the noisy global)
    let never = LinearConfig {
        choice_margin: 1e9,
        ..config.clone()
    };
    for f in &federate_linear(&per_fleet, &never, Some(&secure), 3)
        .unwrap()
        .fleets
    {
        assert!(f.choices.iter().all(|c| c.choice == LinearChoice::Local));
    }
    // seeded noise is reproducible, another seed is not the same model
    let again = federate_linear(&per_fleet, &config, Some(&secure), 3).unwrap();
    assert_eq!(fed.global.weights, again.global.weights);
    let other = private(RecordPrivacy {
        seed: Some(4),
        ..RecordPrivacy::with_epsilon(4.0)
    });
    let moved = federate_linear(&per_fleet, &other, Some(&secure), 3).unwrap();
    assert_ne!(fed.global.weights, moved.global.weights);

    // distributed noise without secure aggregation would show each fleet's under-noised sums
    let err = federate_linear(&per_fleet, &config, None, 3).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig { .. }), "{err}");
    // local noise needs no secure aggregation and spends the same ε
    let local = private(RecordPrivacy {
        mode: DpMode::Local,
        seed: Some(3),
        ..RecordPrivacy::with_epsilon(4.0)
    });
    let fed = federate_linear(&per_fleet, &local, None, 3).unwrap();
    assert!(fed.privacy.unwrap().epsilon <= 4.0 + 1e-9);
}

#[test]
fn with_vanishing_noise_the_private_federation_is_the_fit_on_the_clamped_cells() {
    let per_fleet = fleets(3, 24);
    let config = private(RecordPrivacy {
        seed: Some(1),
        ..RecordPrivacy::with_noise_multiplier(1e-9)
    });
    let fed = federate_linear(&per_fleet, &config, Some(&SecureAggregation::default()), 1).unwrap();
    let pooled: Vec<LinearRow> = per_fleet.iter().flatten().cloned().collect();
    let stats = linear_statistics(&pooled, &config).unwrap();
    let g = &fed.global;
    let exact = LinearModel::fit(
        &stats,
        &Standardization::from_statistics(&stats).unwrap(),
        g.feature_set,
        g.lambda,
        None,
        &g.early_life,
    )
    .unwrap();
    for (a, b) in g.weights.iter().zip(&exact.weights) {
        assert_relative_eq!(*a, *b, epsilon = 1e-4, max_relative = 1e-4);
    }
}

/// Σ ln(life) in the statistics' vector form: the first row of the upper triangle holds the
/// column sums, the label is the last column.
fn sum_log_life(v: &[f64]) -> f64 {
    v[LINEAR_COLUMNS]
}

#[test]
fn a_curious_coordinator_reads_a_cell_from_exact_sums_but_not_from_private_ones() {
    // the coordinator knows every cell of the federation but one (the worst case the
    // guarantee covers) and sees only the secure sum
    let per_fleet = fleets(5, 12);
    let target = per_fleet[0][0].clone();
    let mut without = per_fleet.clone();
    without[0].remove(0);
    let secure = SecureAggregation::default();

    // exact sums: secure aggregation hides each fleet's vector, not what the sum itself says
    let exact = LinearConfig::default();
    let shares = |fl: &[Vec<LinearRow>], config: &LinearConfig, seed: u64| -> Vec<Vec<f64>> {
        let mut noise = GaussianNoise::from_seed(seed);
        fl.iter()
            .map(|rows| {
                let stats = linear_statistics(rows, config).unwrap();
                linear_share(&stats, config, fl.len(), Some(&mut noise)).unwrap()
            })
            .collect()
    };
    let seen = secure_sum(&shares(&per_fleet, &exact, 0), Some(&secure), 0).unwrap();
    let known: Vec<f64> = without
        .iter()
        .map(|rows| LinearStatistics::from_rows(rows).unwrap())
        .fold(vec![0.0; seen.len()], |acc, s| {
            acc.iter().zip(s.as_slice()).map(|(a, b)| a + b).collect()
        });
    let read = sum_log_life(&seen) - sum_log_life(&known);
    // (to the secure sum's quantization: a fraction of a cycle)
    assert_relative_eq!(read, target.log_life.unwrap(), epsilon = 1e-4);

    // ε = 1 per cell: the optimal (likelihood-ratio) membership test on the released sum,
    // over many noise draws with and without the cell
    let config = private(RecordPrivacy::with_epsilon(1.0));
    let z = config
        .privacy
        .as_ref()
        .unwrap()
        .noise_multiplier_for(5, 2)
        .unwrap();
    let mapped = |fl: &[Vec<LinearRow>]| -> Vec<f64> {
        fl.iter()
            .map(|rows| {
                let s = linear_statistics(rows, &config).unwrap();
                config.ranges.mapped(&s).unwrap()
            })
            .fold(vec![0.0; seen.len()], |acc, v| {
                acc.iter().zip(&v).map(|(a, b)| a + b).collect()
            })
    };
    let base = mapped(&without);
    let direction: Vec<f64> = mapped(&per_fleet)
        .iter()
        .zip(&base)
        .map(|(a, b)| a - b)
        .collect();
    let (lo, hi) = config.ranges.log_life;
    // the membership AUC of the attack and its mean read-off error of ln(life) under `config`
    let attack = |config: &LinearConfig| -> (f64, f64) {
        let test = |fl: &[Vec<LinearRow>], trial: u64| -> (f64, f64) {
            let shares = shares(fl, config, 1000 + trial);
            let released: Vec<f64> = (0..seen.len())
                .map(|i| shares.iter().map(|v| v[i]).sum())
                .collect();
            let diff: Vec<f64> = released.iter().zip(&base).map(|(r, b)| r - b).collect();
            let stat = diff.iter().zip(&direction).map(|(d, v)| d * v).sum();
            // the same read-off as above, now through the noise: the mapped label is
            // (2 y - lo - hi) / (hi - lo)
            let read = (sum_log_life(&diff) * (hi - lo) + lo + hi) / 2.0;
            (stat, read)
        };
        let trials = 150;
        let ins: Vec<(f64, f64)> = (0..trials).map(|t| test(&per_fleet, t)).collect();
        let outs: Vec<(f64, f64)> = (0..trials).map(|t| test(&without, trials + t)).collect();
        let auc = ins
            .iter()
            .map(|(a, _)| outs.iter().filter(|(b, _)| a > b).count() as f64)
            .sum::<f64>()
            / (trials * trials) as f64;
        let off = ins
            .iter()
            .map(|(_, l)| (l - target.log_life.unwrap()).abs())
            .sum::<f64>()
            / trials as f64;
        (auc, off)
    };
    // the attack is sharp when the noise is small: membership at z = 0.05, the cell's life
    // itself at z = 0.005 (both far beyond any useful ε)...
    let (auc, _) = attack(&private(RecordPrivacy::with_noise_multiplier(0.05)));
    assert!(auc > 0.95, "membership AUC {auc} at z = 0.05");
    let (_, off) = attack(&private(RecordPrivacy::with_noise_multiplier(0.005)));
    assert!(off < 0.3, "mean read-off error {off} ln units at z = 0.005");
    // ...and blunt at epsilon 1 per cell
    let (auc, off) = attack(&config);
    // Gaussian mechanism: AUC = Φ(μ/√2) with μ = ‖share‖ / (zΔ) <= 1/z; for z near 6.4,
    // about 0.54. (ε, δ) = (1, 1e-5) itself allows at most about 0.73.
    assert!(z > 5.0, "{z}");
    assert!(auc < 0.65, "membership AUC {auc} at epsilon 1");
    // and the read-off ln(life) is noise: far off the cell's value on average
    assert!(off > 1.0, "mean read-off error {off} ln units at epsilon 1");
}
