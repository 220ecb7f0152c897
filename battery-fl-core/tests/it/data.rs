use std::collections::BTreeSet;

use battery_fl_core::data::{
    load_cell, load_index, save_cell, Cell, CellMeta, CleanConfig, Cycle, LabelConfig, LabelSource,
    LifeLabel,
};
use battery_fl_core::Error;

use crate::common::{calce, matr, real_data_dir};

#[test]
fn all_real_cells_load_clean_and_validate() {
    let (matr, calce) = (matr(), calce());
    assert_eq!(matr.len(), 84);
    assert_eq!(calce.len(), 4);
    for cell in matr.iter().chain(calce) {
        let mut cell = cell.clone();
        let report = cell.clean(&CleanConfig::default()).unwrap();
        cell.validate()
            .unwrap_or_else(|e| panic!("{} after cleaning: {e}", cell.id()));
        assert!(
            cell.cycles.len() + report.dropped().len() >= 99,
            "{}",
            cell.id()
        );
    }
    // MATR carries only the discharge branch: absent signals are absent, not zeros
    let c = &matr[0].cycles[0];
    assert!(c.current_a.is_none() && c.time_s.is_none() && c.charge_capacity_ah.is_none());
    assert_eq!(c.len(), 1000);
    assert!(calce.iter().all(Cell::has_full_signals));
    assert_eq!(calce[0].cycles.len(), 100);
}

#[test]
fn index_splits_match_the_published_split() {
    let index = load_index(real_data_dir().join("matr_severson_qv")).unwrap();
    let count = |s: &str| {
        index
            .iter()
            .filter(|e| e.split.as_deref() == Some(s))
            .count()
    };
    assert_eq!((count("train"), count("primary_test")), (41, 43));
    for (entry, cell) in index.iter().zip(matr()) {
        assert_eq!(entry.cell_id, cell.id());
        assert_eq!(entry.cycle_life, cell.cycle_life);
    }
}

#[test]
fn cleaning_finds_every_gross_glitch_the_source_flags() {
    // The README's rule: Q outside [-0.02, 1.2] Ah or falling by > 10 mAh along a discharge.
    // Our rule is the same, relative to nominal (1.1 Ah), so every cycle we drop must be
    // flagged by the source, and every flagged cycle outside [-0.022, 1.32] Ah must be dropped.
    let mut dropped_total = 0;
    for cell in matr() {
        let mut cleaned = cell.clone();
        let report = cleaned.clean(&CleanConfig::default()).unwrap();
        let flagged: BTreeSet<u32> = cell.suspect_cycles.iter().copied().collect();
        for cycle in report.dropped() {
            assert!(
                flagged.contains(&cycle),
                "{} cycle {cycle} dropped but not flagged",
                cell.id()
            );
        }
        for &n in &flagged {
            let q = cell
                .cycle(n)
                .unwrap()
                .discharge_capacity_ah
                .as_ref()
                .unwrap();
            let gross = q.iter().any(|&v| !(-0.022..=1.32).contains(&v));
            if gross {
                assert!(
                    report.dropped().contains(&n),
                    "{} cycle {n} is gross",
                    cell.id()
                );
            }
        }
        dropped_total += report.dropped().len();
        // tiny negative values near Q = 0 are repaired, not dropped
        assert!(cleaned
            .cycles
            .iter()
            .all(|c| c.discharge_capacity_ah.as_ref().unwrap()[0] >= 0.0));
    }
    assert!(
        dropped_total >= 9,
        "the 9 gross glitches at least, got {dropped_total}"
    );
}

#[test]
fn raw_matr_glitches_fail_validation_naming_cell_cycle_and_field() {
    let cell = matr()
        .iter()
        .find(|c| c.id().ends_with("EL150800463871"))
        .unwrap();
    match cell.validate() {
        Err(Error::InvalidData {
            cell_id,
            cycle,
            field,
            ..
        }) => {
            assert_eq!(cell_id, cell.id());
            assert_eq!(cycle, Some(13));
            assert_eq!(field, "discharge_capacity_ah");
        }
        other => panic!("expected InvalidData, got {other:?}"),
    }
}

fn tiny_cell() -> Cell {
    let mut c = Cycle::new(1, vec![4.0, 3.6, 3.0]);
    c.discharge_capacity_ah = Some(vec![0.0, 0.5, 1.0]);
    c.current_a = Some(vec![-1.0, -1.0, -1.0]);
    Cell::new(CellMeta::new("tiny", 1.1), vec![c])
}

fn invalid_field(cell: &Cell) -> (Option<u32>, String) {
    match cell.validate() {
        Err(Error::InvalidData { cycle, field, .. }) => (cycle, field),
        other => panic!("expected InvalidData, got {other:?}"),
    }
}

#[test]
fn validation_errors_are_typed_and_specific() {
    tiny_cell().validate().unwrap();

    let mut c = tiny_cell();
    c.cycles[0].current_a = Some(vec![-1.0, -1.0]);
    assert_eq!(invalid_field(&c), (Some(1), "current_a".into()));

    let mut c = tiny_cell();
    c.cycles[0].voltage_v[1] = f64::NAN;
    assert_eq!(invalid_field(&c), (Some(1), "voltage_v".into()));

    let mut c = tiny_cell();
    c.cycles[0].discharge_capacity_ah = Some(vec![0.0, -0.5, 1.0]);
    assert_eq!(invalid_field(&c), (Some(1), "discharge_capacity_ah".into()));

    let mut c = tiny_cell();
    c.cycles.push(Cycle::new(2, vec![]));
    assert_eq!(invalid_field(&c), (Some(2), "voltage_v".into()));

    let mut c = tiny_cell();
    c.meta.nominal_capacity_ah = 0.0;
    assert_eq!(invalid_field(&c), (None, "nominal_capacity_ah".into()));

    let mut c = tiny_cell();
    c.cycles.clear();
    assert_eq!(invalid_field(&c), (None, "cycles".into()));
}

#[test]
fn cleaning_drops_non_finite_and_repairs_small_falls() {
    let mut c = tiny_cell();
    let mut bad = c.cycles[0].clone();
    bad.cycle = 2;
    bad.voltage_v[0] = f64::INFINITY;
    let mut wobbly = c.cycles[0].clone();
    wobbly.cycle = 3;
    wobbly.discharge_capacity_ah = Some(vec![-0.001, 0.5, 0.498, 1.0]);
    wobbly.voltage_v.push(2.9);
    wobbly.current_a.as_mut().unwrap().push(-1.0);
    c.cycles.extend([bad, wobbly]);
    let report = c.clean(&CleanConfig::default()).unwrap();
    assert_eq!(report.dropped(), vec![2]);
    assert_eq!(report.repaired(), 1);
    assert_eq!(
        c.cycles[1].discharge_capacity_ah.as_deref(),
        Some(&[0.0, 0.5, 0.5, 1.0][..])
    );
    c.validate().unwrap();
    let bad_cfg = CleanConfig {
        max_capacity_fraction: -1.0,
        ..Default::default()
    };
    assert!(matches!(
        c.clean(&bad_cfg),
        Err(Error::InvalidConfig { .. })
    ));
}

#[test]
fn labels_recorded_computed_and_censored() {
    // CALCE: the label recomputed from the full trajectory with the source's 5-cycle rolling
    // median equals the recorded one; the raw first crossing is much earlier.
    for cell in calce() {
        let cfg = LabelConfig {
            median_window: 5,
            prefer_recorded: false,
            ..Default::default()
        };
        let label = cell.cycle_life(&cfg).unwrap();
        assert_eq!(
            label,
            LifeLabel::Reached {
                cycle: cell.cycle_life.unwrap(),
                source: LabelSource::Computed
            }
        );
        let raw = cell
            .cycle_life(&LabelConfig {
                prefer_recorded: false,
                ..Default::default()
            })
            .unwrap();
        let first_raw = cell.extra["cycle_life_first_raw_crossing"]
            .as_u64()
            .unwrap() as u32;
        assert_eq!(raw.cycles(), Some(first_raw));
        // a stricter end of life comes earlier
        let early = cell
            .cycle_life(&LabelConfig {
                eol_fraction: 0.9,
                ..cfg
            })
            .unwrap()
            .cycles()
            .unwrap();
        assert!(early < label.cycles().unwrap());
    }
    // MATR: only 100 cycles are shipped, so the label is the recorded one, and recomputing
    // it reports censoring instead of a wrong number.
    let cell = &matr()[0];
    assert_eq!(
        cell.cycle_life(&LabelConfig::default()).unwrap().cycles(),
        cell.cycle_life
    );
    match cell
        .cycle_life(&LabelConfig {
            prefer_recorded: false,
            ..Default::default()
        })
        .unwrap()
    {
        LifeLabel::Censored {
            observed_cycles,
            min_soh,
        } => {
            assert_eq!(observed_cycles, 100);
            assert!(min_soh > 0.85 && min_soh < 1.0);
        }
        other => panic!("expected censored, got {other:?}"),
    }
    assert!(matches!(
        cell.cycle_life(&LabelConfig::with_eol(1.5)),
        Err(Error::InvalidConfig { .. })
    ));
}

#[test]
fn json_round_trip_plain_and_gzip() {
    let dir = std::env::temp_dir().join(format!("bfl-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cell = calce()[1].clone();
    for name in ["c.json", "c.json.gz"] {
        let path = dir.join(name);
        save_cell(&cell, &path).unwrap();
        assert_eq!(load_cell(&path).unwrap(), cell);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reads_batteryml_field_names() {
    let json = r#"{
        "cell_id": "bml-1", "cathode_material": "NMC", "anode_material": "graphite",
        "nominal_capacity_in_Ah": 2.0, "max_voltage_limit_in_V": 4.2, "min_voltage_limit_in_V": 2.7,
        "cycle_data": [{"cycle_number": 1, "voltage_in_V": [4.1, 3.7], "current_in_A": [-1.0, -1.0],
            "discharge_capacity_in_Ah": [0.1, 1.5], "charge_capacity_in_Ah": [0.0, 0.0],
            "time_in_s": [0.0, 10.0], "temperature_in_C": [25.0, 26.0]}],
        "form_factor": "cylindrical_18650", "depth_of_charge": 1.0
    }"#;
    let cell: Cell = serde_json::from_str(json).unwrap();
    assert_eq!(cell.meta.cathode.as_deref(), Some("NMC"));
    assert_eq!(cell.meta.voltage_max_v, Some(4.2));
    assert_eq!(
        cell.cycles[0].temperature_c.as_deref(),
        Some(&[25.0, 26.0][..])
    );
    assert_eq!(cell.extra["depth_of_charge"], 1.0);
    cell.validate().unwrap();
}

#[test]
fn load_errors_name_the_file() {
    let missing = real_data_dir().join("no-such-cell.json");
    assert!(matches!(load_cell(&missing), Err(Error::Io { path, .. }) if path == missing));
    let dir = std::env::temp_dir().join(format!("bfl-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{\"cell_id\": 3}").unwrap();
    assert!(matches!(load_cell(&bad), Err(Error::Parse { path, .. }) if path == bad));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cells_parse_from_bytes_as_from_files() {
    use battery_fl_core::data::parse_cell;
    use battery_fl_core::ErrorKind;
    // gzip'd and plain bytes give the cell the file gives
    let path = real_data_dir().join("calce_cs2/CALCE_CS2_35.json.gz");
    let from_file = load_cell(&path).unwrap();
    let gz = std::fs::read(&path).unwrap();
    assert_eq!(parse_cell(&gz).unwrap(), from_file);
    let plain = serde_json::to_vec(&from_file).unwrap();
    assert_eq!(parse_cell(&plain).unwrap(), from_file);
    // broken bytes are typed errors with the empty path
    let err = parse_cell(b"{\"cell_id\": 3}").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Parse);
    assert!(matches!(err, Error::Parse { path, .. } if path.as_os_str().is_empty()));
    assert_eq!(
        parse_cell(&gz[..gz.len() / 2]).unwrap_err().kind(),
        ErrorKind::Io
    );
}

#[test]
fn gzip_bomb_is_refused_without_inflating_it_all() {
    use battery_fl_core::data::{parse_cell, MAX_CELL_BYTES};
    use flate2::write::GzEncoder;
    use std::io::Write;
    // MAX_CELL_BYTES + 16 MiB of spaces (valid JSON whitespace) gzip to well under 1 MB
    let chunk = vec![b' '; 1 << 20];
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for _ in 0..(MAX_CELL_BYTES >> 20) + 16 {
        enc.write_all(&chunk).unwrap();
    }
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 4 << 20, "{}", bomb.len());
    match parse_cell(&bomb) {
        Err(Error::Parse { path, reason }) => {
            assert!(path.as_os_str().is_empty());
            assert!(reason.contains("MAX_CELL_BYTES"), "{reason}");
        }
        other => panic!("expected Parse, got {other:?}"),
    }
}

#[test]
fn concurrent_cell_saves_never_tear_or_collide() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (&calce()[0], &calce()[1]);
    for name in ["c.json", "c.json.gz"] {
        let path = dir.path().join(name);
        std::thread::scope(|scope| {
            for cell in [a, b] {
                let path = &path;
                scope.spawn(move || {
                    for _ in 0..6 {
                        save_cell(cell, path).unwrap();
                        let got = load_cell(path).unwrap();
                        assert!(got == *a || got == *b, "torn cell file");
                    }
                });
            }
        });
    }
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["c.json", "c.json.gz"]);
}

/// The main job's MATR fleets: four groups of charging protocols by first-step C-rate, train
/// and primary-test cells from the index's splits (BENCHMARKS.md's "Federated main job on
/// MATR" counts, the outlier still in protocols-0's test cells).
#[test]
fn matr_protocol_fleets_are_the_benchmarks_fleets() {
    use battery_fl_core::data::{index_fleets, FleetGrouping, MATR_OUTLIER};
    let index = load_index(real_data_dir().join("matr_severson_qv")).unwrap();
    let fleets = index_fleets(&index, FleetGrouping::Protocol, None).unwrap();
    let counts: Vec<(usize, usize)> = fleets
        .iter()
        .map(|f| (f.train.len(), f.test.len()))
        .collect();
    assert_eq!(counts, [(9, 9), (10, 9), (11, 11), (11, 14)]);
    assert!(fleets[0].test.iter().any(|e| e.cell_id == MATR_OUTLIER));
    // the main job leaves it out after grouping; its fleet keeps its other eight test cells
    let without = fleets[0]
        .clone()
        .without(|e| e.cell_id == MATR_OUTLIER)
        .unwrap();
    assert_eq!((without.train.len(), without.test.len()), (9, 8));
    // by batch: the two batches, each with both splits
    let batches = index_fleets(&index, FleetGrouping::Batch, None).unwrap();
    let ids: Vec<&str> = batches.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids, ["2017-05-12", "2017-06-30"]);
    assert_eq!(
        batches
            .iter()
            .map(|f| f.train.len() + f.test.len())
            .sum::<usize>(),
        84
    );
}
