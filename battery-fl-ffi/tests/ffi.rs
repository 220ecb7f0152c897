//! Rust-side tests of the C exports: auto traits of the handles, status numbers, the
//! last-error contract, NULL arguments and a round trip through the exports.
#![allow(clippy::unwrap_used)]

use std::ffi::{c_char, CStr};
use std::ptr::{null, null_mut};

use battery_fl::*;

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn every_handle_is_send_and_sync() {
    // the crate docs promise this for every handle type
    assert_send_sync::<bfl_cell>();
    assert_send_sync::<bfl_featurizer>();
    assert_send_sync::<bfl_genome>();
    assert_send_sync::<bfl_interval_calibration>();
    assert_send_sync::<bfl_linear_model>();
    assert_send_sync::<bfl_model>();
    assert_send_sync::<bfl_dataset>();
    assert_send_sync::<bfl_aggregator>();
    assert_send_sync::<bfl_accountant>();
    assert_send_sync::<bfl_bytes>();
    assert_send_sync::<bfl_message_batch>();
    assert_send_sync::<bfl_secagg_pki>();
    assert_send_sync::<bfl_secagg_server>();
    assert_send_sync::<bfl_secagg_client>();
}

#[test]
fn status_numbers_are_pinned_and_described() {
    let pinned = [
        (bfl_status::Ok, 0),
        (bfl_status::NullArgument, 1),
        (bfl_status::InvalidArgument, 2),
        (bfl_status::BufferTooSmall, 3),
        (bfl_status::Panic, 4),
        (bfl_status::Unsupported, 5),
        (bfl_status::Io, 10),
        (bfl_status::Parse, 11),
        (bfl_status::InvalidData, 12),
        (bfl_status::InvalidConfig, 13),
        (bfl_status::Shape, 14),
        (bfl_status::NotEnoughData, 15),
        (bfl_status::Model, 16),
        (bfl_status::RejectedUpdate, 17),
        (bfl_status::Aggregation, 18),
        (bfl_status::Privacy, 19),
        (bfl_status::BudgetExhausted, 20),
        (bfl_status::Secagg, 21),
        (bfl_status::BelowThreshold, 22),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for (status, code) in pinned {
        assert_eq!(status as i32, code);
        // SAFETY: bfl_status_str returns a static NUL-terminated string.
        let text = unsafe { CStr::from_ptr(bfl_status_str(code)) }
            .to_str()
            .unwrap();
        assert_ne!(text, "unknown status", "{status:?}");
        assert!(seen.insert(text), "duplicate description {text}");
    }
    // SAFETY: as above.
    let unknown = unsafe { CStr::from_ptr(bfl_status_str(6)) };
    assert_eq!(unknown.to_str().unwrap(), "unknown status");
}

fn last_error() -> String {
    let mut buf = vec![0 as c_char; 1024];
    // SAFETY: buf is valid for its length.
    let n = unsafe { bfl_last_error_message(buf.as_mut_ptr(), buf.len()) };
    assert!(n >= 0);
    // SAFETY: NUL-terminated by the call.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_str()
        .unwrap()
        .to_owned()
}

#[test]
fn null_arguments_and_short_buffers_are_reported() {
    // SAFETY: NULL and live pointers only, as the contract allows.
    unsafe {
        let mut cell: *mut bfl_cell = null_mut();
        assert_eq!(
            bfl_cell_load_json(null(), &mut cell),
            bfl_status::NullArgument
        );
        assert!(last_error().contains("`path`"));
        assert_eq!(
            bfl_cell_load_json(c"x".as_ptr(), null_mut()),
            bfl_status::NullArgument
        );
        let mut f: *mut bfl_featurizer = null_mut();
        assert_eq!(bfl_featurizer_new_default(&mut f), bfl_status::Ok);
        let mut len = 0usize;
        assert_eq!(bfl_featurizer_output_len(f, &mut len), bfl_status::Ok);
        assert_eq!(len, 6 * 100 * 1000);
        assert_eq!(
            bfl_featurizer_transform(f, null(), null_mut(), 0, null_mut()),
            bfl_status::NullArgument
        );
        bfl_featurizer_free(f);
        bfl_featurizer_free(null_mut());

        // the message getter: size query, truncation, exact fit
        let needed = bfl_last_error_message(null_mut(), 0);
        assert!(needed < 0);
        let mut small = [1 as c_char; 4];
        assert_eq!(bfl_last_error_message(small.as_mut_ptr(), 4), needed);
        assert_eq!(small[3], 0);
        let mut exact = vec![1 as c_char; (-needed) as usize];
        assert_eq!(
            bfl_last_error_message(exact.as_mut_ptr(), exact.len()),
            -needed - 1
        );
    }
}

#[test]
fn errors_are_per_thread() {
    // SAFETY: NULL arguments only.
    unsafe {
        assert_eq!(bfl_accountant_new(null_mut()), bfl_status::NullArgument);
    }
    let here = last_error();
    std::thread::spawn(|| {
        assert_eq!(last_error(), "");
        // SAFETY: NULL arguments only.
        let status = unsafe { bfl_genome_distance(null(), null(), null_mut()) };
        assert_eq!(status, bfl_status::NullArgument);
        assert!(last_error().contains("NULL"));
    })
    .join()
    .unwrap();
    assert_eq!(last_error(), here);
}

#[test]
fn aggregator_round_trip_through_the_exports() {
    // SAFETY: live pointers from this test only.
    unsafe {
        let mut agg: *mut bfl_aggregator = null_mut();
        assert_eq!(
            bfl_aggregator_new(bfl_aggregator_kind::FedAvg as u32, null(), &mut agg),
            bfl_status::Ok
        );
        let (a, b) = ([1.0f32, 1.0], [5.0f32, 1.0]);
        assert_eq!(
            bfl_aggregator_add_update(agg, c"a".as_ptr(), 1, a.as_ptr(), 2, false),
            bfl_status::Ok
        );
        assert_eq!(
            bfl_aggregator_add_update(agg, c"b".as_ptr(), 3, b.as_ptr(), 2, false),
            bfl_status::Ok
        );
        let mut w = [0.0f32; 2];
        let p = w.as_mut_ptr();
        assert_eq!(bfl_aggregator_finish(agg, p, 2, p, 2), bfl_status::Ok);
        assert_eq!(w, [4.0, 1.0]);
        bfl_aggregator_free(agg);
    }
}

/// One default per setting: the C config defaults are the core's (as Python's and Flower's).
#[test]
fn aggregator_config_defaults_are_the_core_defaults() {
    let mut cfg = std::mem::MaybeUninit::<bfl_aggregator_config>::uninit();
    // SAFETY: a valid out-pointer; the call fills every field.
    let cfg = unsafe {
        assert_eq!(
            bfl_aggregator_config_default(cfg.as_mut_ptr()),
            bfl_status::Ok
        );
        cfg.assume_init()
    };
    let core = battery_fl_core::federation::FederationConfig::default();
    assert_eq!(
        cfg.trimmed_beta,
        battery_fl_core::aggregate::DEFAULT_TRIMMED_BETA
    );
    assert_eq!(cfg.trimmed_beta, core.trimmed_beta);
    assert_eq!(cfg.proximal_mu, core.proximal_mu);
    let opt = core.server_optimizer;
    assert_eq!(
        (cfg.eta, cfg.beta1, cfg.beta2, cfg.tau),
        (opt.eta, opt.beta1, opt.beta2, opt.tau)
    );
    assert_eq!(cfg.max_delta_norm, 0.0);
}

#[cfg(not(feature = "tch"))]
#[test]
fn the_model_is_unsupported_without_tch() {
    let mut model: *mut bfl_model = null_mut();
    // SAFETY: a valid string and out-pointer.
    let status = unsafe { bfl_model_load(c"/nonexistent".as_ptr(), &mut model) };
    assert_eq!(status, bfl_status::Unsupported);
    assert!(model.is_null());
    assert!(last_error().contains("tch"));
}
