//! Coordinator checkpoints: atomic, durable writes and validated loads.

use std::path::Path;

use battery_fl_core::aggregate::{Aggregator, ClientUpdate, FedOpt};
use battery_fl_core::federation::CoordinatorState;
use battery_fl_core::model::{write_atomic, LabelTransform, ModelParams};
use battery_fl_core::{Error, ErrorKind};
use serde_json::Value;

/// A checkpoint with two groups, fleets assigned to them and FedAdam moments; `scalars`
/// values in the big tensor (the size of the written file grows with it).
fn state(scalars: usize, fill: f32) -> CoordinatorState {
    let global = ModelParams::new(vec![
        ("head.bias".into(), vec![1], vec![fill]),
        ("head.weight".into(), vec![scalars], vec![fill; scalars]),
    ])
    .unwrap();
    let mut opt = FedOpt::adam();
    let mut moved = global.clone();
    moved.scale(0.5);
    let next = opt
        .aggregate(&global, &[ClientUpdate::parameters("a", 3, moved)])
        .unwrap();
    CoordinatorState {
        round: 1,
        global: next.clone(),
        groups: vec![next.clone(), next],
        fleet_group: vec![0, 1, 1],
        server_optimizer: Some(opt),
        accountant: None,
        adaptive_clip: None,
        labels: LabelTransform::new(6.5, 0.4),
        history: Vec::new(),
        fleets: Vec::new(),
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn save_load_round_trip_leaves_no_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.json");
    let s = state(10, 1.0);
    s.save(&path).unwrap();
    s.save(&path).unwrap();
    assert_eq!(CoordinatorState::load(&path).unwrap(), s);
    assert_eq!(entries(dir.path()), ["ckpt.json"]);
}

#[test]
fn save_ignores_a_leftover_fixed_temp_name() {
    // A crashed writer (or another program) left `ckpt.tmp` behind, here a directory: a
    // fixed temporary name collides with it, a unique one does not.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.json");
    std::fs::create_dir(dir.path().join("ckpt.tmp")).unwrap();
    let s = state(10, 1.0);
    s.save(&path).unwrap();
    assert_eq!(CoordinatorState::load(&path).unwrap(), s);
}

#[test]
fn concurrent_saves_of_one_path_never_tear_or_collide() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.json");
    // ~2 MB each, distinct contents
    let a = state(200_000, 1.0);
    let b = state(200_000, 2.0);
    a.save(&path).unwrap();
    std::thread::scope(|scope| {
        let writers: Vec<_> = [&a, &b]
            .into_iter()
            .map(|s| {
                let path = &path;
                scope.spawn(move || (0..8).try_for_each(|_| s.save(path)))
            })
            .collect();
        // read while they write: always a complete checkpoint, old or new
        let mut reads = 0;
        while !writers.iter().all(|w| w.is_finished()) {
            let got = CoordinatorState::load(&path).unwrap();
            assert!(got == a || got == b, "torn checkpoint");
            reads += 1;
        }
        assert!(reads > 0);
        for w in writers {
            w.join().unwrap().unwrap();
        }
    });
    let last = CoordinatorState::load(&path).unwrap();
    assert!(last == a || last == b);
    assert_eq!(entries(dir.path()), ["ckpt.json"]);
}

#[test]
fn failed_save_is_typed_and_keeps_the_previous_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    // the target is a directory: the rename fails, nothing is left behind
    let target = dir.path().join("ckpt.json");
    std::fs::create_dir(&target).unwrap();
    let err = state(10, 1.0).save(&target).unwrap_err();
    assert!(
        matches!(&err, Error::Io { path, .. } if *path == target),
        "{err:?}"
    );
    assert_eq!(entries(dir.path()), ["ckpt.json"]);
    assert!(target.is_dir());

    // a read-only directory: the previous checkpoint stays as it was
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = dir.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        let path = ro.join("ckpt.json");
        let old = state(10, 1.0);
        old.save(&path).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        // privileged users (root) write regardless of permissions: nothing to check then
        let privileged = std::fs::write(ro.join("probe"), b"").is_ok();
        if !privileged {
            let err = state(10, 2.0).save(&path).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Io);
            assert!(matches!(&err, Error::Io { path: p, .. } if *p == path));
            assert_eq!(CoordinatorState::load(&path).unwrap(), old);
            assert_eq!(entries(&ro), ["ckpt.json"]);
        }
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn write_atomic_replaces_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    write_atomic(&path, b"one").unwrap();
    write_atomic(&path, b"two").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"two");
    assert_eq!(entries(dir.path()), ["model.safetensors"]);
    let missing = dir.path().join("no-such-dir/x");
    assert!(matches!(
        write_atomic(&missing, b"x"),
        Err(Error::Io { path, .. }) if path == missing
    ));
}

/// Save a valid checkpoint, edit its JSON, write it back and load it.
fn load_edited(edit: impl FnOnce(&mut Value)) -> Error {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.json");
    state(4, 1.0).save(&path).unwrap();
    let mut json: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    let err = CoordinatorState::load(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Parse, "{err}");
    assert!(matches!(&err, Error::Parse { path: p, .. } if *p == path));
    err
}

fn reason(err: &Error) -> &str {
    match err {
        Error::Parse { reason, .. } => reason,
        other => panic!("expected Parse, got {other:?}"),
    }
}

fn tensor<'a>(json: &'a mut Value, at: &str, name: &str) -> &'a mut Value {
    json.pointer_mut(at)
        .unwrap()
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|p| p["name"] == name)
        .unwrap()
}

#[test]
fn load_rejects_tensor_data_shorter_than_its_shape() {
    for at in ["/global/params", "/groups/1/params"] {
        let err = load_edited(|j| {
            tensor(j, at, "head.weight")["data"]
                .as_array_mut()
                .unwrap()
                .pop();
        });
        assert!(reason(&err).contains("head.weight"), "{err}");
    }
}

#[test]
fn load_rejects_weights_that_overflow_f32() {
    // serde_json has no NaN; 1e39 does not fit an f32 and is refused, not made infinite
    let err = load_edited(|j| {
        tensor(j, "/global/params", "head.bias")["data"] = serde_json::json!([1e39]);
    });
    assert!(reason(&err).contains("out of range"), "{err}");
}

#[test]
fn load_rejects_groups_that_do_not_match_the_global_params() {
    let err = load_edited(|j| {
        let w = tensor(j, "/groups/0/params", "head.weight");
        w["shape"] = serde_json::json!([2, 2]);
    });
    assert!(reason(&err).contains("groups[0]"), "{err}");
}

#[test]
fn load_rejects_fleet_group_out_of_range() {
    let err = load_edited(|j| j["fleet_group"] = serde_json::json!([0, 2]));
    assert!(reason(&err).contains("fleet_group[1]"), "{err}");
}

#[test]
fn load_rejects_optimizer_state_of_the_wrong_size() {
    let err = load_edited(|j| {
        j["server_optimizer"]["m"]
            .as_array_mut()
            .unwrap()
            .push(0.0.into());
    });
    assert!(reason(&err).contains("server_optimizer.m"), "{err}");
    let err = load_edited(|j| j["server_optimizer"]["v"][0] = (-1.0).into());
    assert!(reason(&err).contains("server_optimizer.v[0]"), "{err}");
}

#[test]
fn load_rejects_a_degenerate_label_transform() {
    let err = load_edited(|j| j["labels"]["std"] = 0.0.into());
    assert!(reason(&err).contains("labels"), "{err}");
}
