//! The hybrid model: BatLiNet on the linear early-life model's leave-one-out residuals.

use approx::assert_relative_eq;
use battery_fl_core::data::synthetic::FleetConfig;
use battery_fl_core::data::{Cell, LabelConfig};
use battery_fl_core::features::{Featurizer, FeaturizerConfig};
use battery_fl_core::model::{
    loo_predictions, BatLiNetConfig, Dataset, HybridModel, LinearConfig, Metrics,
};
use battery_fl_core::Error;

#[test]
fn the_hybrid_learns_the_linear_models_out_of_sample_errors() {
    let cells: Vec<Cell> = FleetConfig::default()
        .with_fleets(4)
        .with_cells_per_fleet(24)
        .with_seed(7)
        .generate()
        .unwrap()
        .into_iter()
        .flat_map(|f| f.cells)
        .collect();
    let (train, test): (Vec<Cell>, Vec<Cell>) = {
        let (a, b): (Vec<_>, Vec<_>) = cells.into_iter().enumerate().partition(|(i, _)| i % 3 != 0);
        (
            a.into_iter().map(|(_, c)| c).collect(),
            b.into_iter().map(|(_, c)| c).collect(),
        )
    };
    let featurizer = FeaturizerConfig::default().with_interp_dim(64);
    let f = Featurizer::new(featurizer.clone()).unwrap();
    let label = LabelConfig::default();
    let ch = [0, 1, 2, 3, 4, 5];
    let dtr = Dataset::from_cells(&train, &f, &ch, &label).unwrap();
    let dte = Dataset::from_cells(&test, &f, &ch, &label).unwrap();
    let network = BatLiNetConfig::default()
        .with_conv_channels(8)
        .with_epochs(40)
        .with_batch_size(16)
        .with_seed(3)
        .with_progress(false)
        .with_inference_references(8);
    let linear = LinearConfig::default();
    let hybrid = HybridModel::fit(
        &train,
        &dtr,
        network.clone(),
        featurizer.clone(),
        &linear,
        &label,
    )
    .unwrap();

    // the references carry ln life minus the linear model's leave-one-out prediction
    let rows = linear.rows(&train, &label).unwrap();
    let m = &hybrid.linear;
    let loo = loo_predictions(&rows, &m.standardization, m.feature_set, m.lambda, None).unwrap();
    for ((r, l), y) in hybrid.references().labels().iter().zip(&loo).zip(&rows) {
        assert_relative_eq!(
            r.unwrap().ln(),
            y.log_life.unwrap() - l + hybrid.shift,
            epsilon = 1e-9
        );
    }

    // a prediction is the linear one times a correction; it stays near the linear model here
    let truth = dte.require_labels().unwrap();
    let p = hybrid.predict(&test, &dte).unwrap();
    let lin = hybrid.linear.predict(&test).unwrap();
    let (hy, li) = (
        Metrics::compute(&p, &truth).unwrap().rmse,
        Metrics::compute(&lin, &truth).unwrap().rmse,
    );
    assert!(hy <= 1.25 * li, "hybrid {hy} vs linear {li}");
    assert!(p.iter().zip(&lin).any(|(a, b)| (a / b - 1.0).abs() > 1e-3));

    // saved and loaded, it predicts the same; a broken file is a typed error
    let dir = tempfile::tempdir().unwrap();
    hybrid.save(dir.path()).unwrap();
    let again = HybridModel::load(dir.path()).unwrap();
    assert_eq!(again.predict(&test, &dte).unwrap(), p);
    assert_eq!(again.references(), hybrid.references());
    std::fs::write(dir.path().join("hybrid.json"), b"{\"format\": \"other\"}").unwrap();
    assert!(matches!(
        HybridModel::load(dir.path()),
        Err(Error::Parse { .. })
    ));
    assert!(matches!(
        HybridModel::load(dir.path().join("missing")),
        Err(Error::Io { .. })
    ));

    // the dataset must be the cells', in order
    let err =
        HybridModel::fit(&train[1..], &dtr, network, featurizer, &linear, &label).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    assert!(hybrid.predict(&test[1..], &dte).is_err());
}

/// The gate's split: trained on the shorter-lived two thirds of three synthetic fleets (every
/// third of the shorter-lived 36 cells and the 12 longest-lived are tested), six channels.
struct GateSplit {
    train: Vec<Cell>,
    test: Vec<Cell>,
    featurizer: FeaturizerConfig,
    dtr: Dataset,
    dte: Dataset,
    network: BatLiNetConfig,
}

fn gate_split() -> GateSplit {
    let mut cells: Vec<Cell> = FleetConfig::default()
        .with_fleets(3)
        .with_cells_per_fleet(16)
        .with_seed(11)
        .generate()
        .unwrap()
        .into_iter()
        .flat_map(|f| f.cells)
        .collect();
    let label = LabelConfig::default();
    cells.sort_by(|a, b| {
        let life = |c: &Cell| {
            c.cycle_life(&label)
                .ok()
                .and_then(|l| l.cycles())
                .map_or(f64::NAN, f64::from)
        };
        life(a).total_cmp(&life(b))
    });
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (i, c) in cells.into_iter().enumerate() {
        if i >= 36 || i % 3 == 1 {
            test.push(c);
        } else {
            train.push(c);
        }
    }
    let featurizer = FeaturizerConfig::default().with_interp_dim(32);
    let f = Featurizer::new(featurizer.clone()).unwrap();
    let ch = [0, 1, 2, 3, 4, 5];
    let dtr = Dataset::from_cells(&train, &f, &ch, &label).unwrap();
    let dte = Dataset::from_cells(&test, &f, &ch, &label).unwrap();
    let network = BatLiNetConfig::default()
        .with_conv_channels(4)
        .with_epochs(5)
        .with_batch_size(8)
        .with_seed(2)
        .with_progress(false)
        .with_inference_references(4);
    GateSplit {
        train,
        test,
        featurizer,
        dtr,
        dte,
        network,
    }
}

/// The gate: trained on the shorter-lived two thirds of the cells, the longest-lived test
/// cells make the linear model extrapolate; each cell takes the hybrid's prediction exactly
/// when the linear one lies outside the training lives or the linear model flags the cell
/// out of its distribution, BatLiNet's otherwise.
#[test]
fn the_gate_sends_extrapolated_cells_to_the_hybrid_and_the_rest_to_batlinet() {
    use battery_fl_core::model::{BatLiNet, GatedModel};
    let GateSplit {
        train,
        test,
        featurizer,
        dtr,
        dte,
        network,
    } = gate_split();
    let label = LabelConfig::default();
    let f = Featurizer::new(featurizer.clone()).unwrap();
    let ch = [0, 1, 2, 3, 4, 5];
    let gated = GatedModel::fit(
        &train,
        &dtr,
        network.clone(),
        featurizer.clone(),
        &LinearConfig::default(),
        &label,
        1,
    )
    .unwrap();
    let lives = dtr.require_labels().unwrap();
    let (lo, hi) = gated.label_range;
    assert_eq!(lo, lives.iter().copied().fold(f64::INFINITY, f64::min));
    assert_eq!(hi, lives.iter().copied().fold(f64::NEG_INFINITY, f64::max));

    let p = gated.predict(&test, &dte).unwrap();
    let linear = gated.linear().predict(&test).unwrap();
    let hybrid = gated.hybrids()[0].predict(&test, &dte).unwrap();
    // the linear model's own out-of-distribution flags, calibrated by leave-one-out on the
    // training cells
    let config = LinearConfig::default();
    let m = &gated.linear();
    let calibration = m
        .calibrate(&config.rows(&train, &label).unwrap(), true)
        .unwrap();
    assert_eq!(calibration, gated.linear_calibration);
    let ood = m
        .out_of_distribution(&config.rows(&test, &label).unwrap(), &calibration)
        .unwrap();
    // the BatLiNet inside is the one a plain fit with the same settings trains
    let mut alone = BatLiNet::new(network, featurizer).unwrap();
    alone.fit(&dtr).unwrap();
    let plain = alone.predict(&dte, &dtr).unwrap();
    for (i, g) in p.iter().enumerate() {
        assert_eq!(g.extrapolated, ood[i] || !(lo..=hi).contains(&linear[i]));
        let want = if g.extrapolated { hybrid[i] } else { plain[i] };
        assert_relative_eq!(g.life, want, max_relative = 1e-9);
    }
    let sent = p.iter().filter(|g| g.extrapolated).count();
    assert!(
        sent > 0 && sent < p.len(),
        "{sent} of {} extrapolated",
        p.len()
    );
    // a cell in range, given a cathode no training cell has (these fleets hold no LCO), is
    // out of the linear model's distribution: the hybrid predicts it
    let inside = p.iter().position(|g| !g.extrapolated).unwrap();
    let mut relabelled = test[inside].clone();
    relabelled.meta.cathode = Some("LCO".into());
    let one = [relabelled];
    let d_one = Dataset::from_cells(&one, &f, &ch, &label).unwrap();
    let g = gated.predict(&one, &d_one).unwrap()[0];
    assert!(g.extrapolated);
    assert_relative_eq!(
        g.life,
        gated.hybrids()[0].predict(&one, &d_one).unwrap()[0],
        max_relative = 1e-9
    );
    // the same number of other cells is refused too
    let shifted: Vec<Cell> = test[1..].iter().chain(&test[..1]).cloned().collect();
    assert!(matches!(
        gated.predict(&shifted, &dte),
        Err(Error::Shape { .. })
    ));
    // saved and loaded, it predicts the same; another format is a typed error
    let dir = tempfile::tempdir().unwrap();
    gated.save(dir.path()).unwrap();
    let back = GatedModel::load(dir.path()).unwrap();
    assert_eq!(back.label_range, gated.label_range);
    for (a, b) in back.predict(&test, &dte).unwrap().iter().zip(&p) {
        assert_eq!(a.extrapolated, b.extrapolated);
        assert_relative_eq!(a.life, b.life, max_relative = 1e-9);
    }
    let json = dir.path().join("gated.json");
    let text = std::fs::read_to_string(&json).unwrap();
    std::fs::write(&json, text.replace("battery-fl/gated/v2", "other/v9")).unwrap();
    assert!(matches!(
        GatedModel::load(dir.path()),
        Err(Error::Parse { .. })
    ));
    // a dataset of other cells is refused
    assert!(matches!(
        gated.predict(&test[..3], &dte),
        Err(Error::Shape { .. })
    ));
}

/// With two members each half is the geometric mean of two networks trained with seeds
/// `seed` and `seed + 1`; the ensemble saves and loads whole, a zero-member model is refused
/// before training, and a one-member file of the first format still loads.
#[test]
fn gated_members_average_seeds_in_log_life_and_save_whole() {
    use battery_fl_core::model::GatedModel;
    let s = gate_split();
    let label = LabelConfig::default();
    let fit = |members| {
        GatedModel::fit(
            &s.train,
            &s.dtr,
            s.network.clone(),
            s.featurizer.clone(),
            &LinearConfig::default(),
            &label,
            members,
        )
    };
    assert!(matches!(fit(0), Err(Error::InvalidConfig { .. })));
    let gated = fit(2).unwrap();
    assert_eq!(gated.members(), 2);
    let seeds: Vec<u64> = gated.networks().iter().map(|n| n.config().seed).collect();
    assert_eq!(seeds, [2, 3]);
    let hybrid_seeds: Vec<u64> = gated
        .hybrids()
        .iter()
        .map(|h| h.network.config().seed)
        .collect();
    assert_eq!(hybrid_seeds, [2, 3]);

    let p = gated.predict(&s.test, &s.dte).unwrap();
    let nets: Vec<Vec<f64>> = gated
        .networks()
        .iter()
        .map(|n| n.predict(&s.dte, &s.dtr).unwrap())
        .collect();
    let hybrids: Vec<Vec<f64>> = gated
        .hybrids()
        .iter()
        .map(|h| h.predict(&s.test, &s.dte).unwrap())
        .collect();
    let mut differ = 0;
    for (i, g) in p.iter().enumerate() {
        let (a, b) = if g.extrapolated {
            (hybrids[0][i], hybrids[1][i])
        } else {
            (nets[0][i], nets[1][i])
        };
        differ += usize::from((a - b).abs() > 1e-6 * a);
        assert_relative_eq!(g.life, (a * b).sqrt(), max_relative = 1e-9);
    }
    assert!(
        differ > p.len() / 2,
        "two seeds agree on {} of {} cells",
        p.len() - differ,
        p.len()
    );

    let dir = tempfile::tempdir().unwrap();
    gated.save(dir.path()).unwrap();
    assert!(dir.path().join("network.1").is_dir() && dir.path().join("hybrid.1").is_dir());
    let back = GatedModel::load(dir.path()).unwrap();
    assert_eq!(back.members(), 2);
    for (a, b) in back.predict(&s.test, &s.dte).unwrap().iter().zip(&p) {
        assert_relative_eq!(a.life, b.life, max_relative = 1e-9);
    }
    // the first format held one member: a two-member file under its tag is refused
    let json = dir.path().join("gated.json");
    let text = std::fs::read_to_string(&json).unwrap();
    std::fs::write(
        &json,
        text.replace("battery-fl/gated/v2", "battery-fl/gated/v1"),
    )
    .unwrap();
    assert!(matches!(
        GatedModel::load(dir.path()),
        Err(Error::Parse { .. })
    ));
    // ... and a one-member file of the first format (no `members` key) loads as one member
    let mut v1: serde_json::Value = serde_json::from_str(&text).unwrap();
    v1["format"] = "battery-fl/gated/v1".into();
    v1.as_object_mut().unwrap().remove("members");
    std::fs::write(&json, v1.to_string()).unwrap();
    let first = GatedModel::load(dir.path()).unwrap();
    // (a v2 file must say how many members it has)
    let mut v2 = v1.clone();
    v2["format"] = "battery-fl/gated/v2".into();
    std::fs::write(&json, v2.to_string()).unwrap();
    assert!(matches!(
        GatedModel::load(dir.path()),
        Err(Error::Parse { .. })
    ));
    std::fs::write(&json, v1.to_string()).unwrap();
    assert_eq!(first.members(), 1);
    for (a, i) in first.predict(&s.test, &s.dte).unwrap().iter().zip(0..) {
        let want = if a.extrapolated {
            hybrids[0][i]
        } else {
            nets[0][i]
        };
        assert_relative_eq!(a.life, want, max_relative = 1e-9);
    }
}
