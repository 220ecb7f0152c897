//! `bfl_secagg_server`: the server's side of one SecAgg+ round.

use std::collections::BTreeMap;

use battery_fl_core::secagg::{
    AdvertiseKeys, ConsistencyCheck, ConsistencySignature, ForwardedShares, KeyDirectory,
    MaskedInput, SecAggServer, ServerStage, ShareKeys, UnmaskRequest, UnmaskResponse,
};

use super::{bfl_bytes, bfl_message_batch, bfl_secagg_config, bfl_secagg_pki};
use crate::boundary::{
    arg_mut, arg_ref, ffi_boundary, free_handle, out_buffer, out_handle, put_handle, put_opt,
    seed32, slice,
};
use crate::status::bfl_status;

/// The server's state machine for one round. Opaque.
///
/// Threads: `Send + Sync`; every function except `bfl_secagg_server_setup` and
/// `bfl_secagg_server_survivors` changes the state and needs exclusive access (serialize
/// the `receive_*` calls of concurrent connections with a lock).
#[derive(Debug)]
pub struct bfl_secagg_server {
    inner: SecAggServer,
}

/// A server for round `round` over the sampled `clients` (`n` distinct ids, at most
/// `config->num_clients`), aggregating deltas of `dim` floats. `seed` (32 bytes) is the
/// server's secret randomness for the graph permutation: take it from a CSPRNG. With a
/// non-NULL `pki` the round runs in active-adversary mode (signed keys, consistency check).
///
/// Errors: `BFL_STATUS_INVALID_CONFIG` for bad parameters or duplicate ids;
/// `BFL_STATUS_BELOW_THRESHOLD` for fewer clients than the threshold.
/// Ownership: all inputs borrowed (copied); on success `*out` owns a new server
/// (`bfl_secagg_server_free`). NULL: `config`, `seed`, `out` NULL, or `clients` NULL with
/// `n > 0`, give `BFL_STATUS_NULL_ARGUMENT`; `pki` may be NULL. Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_secagg_server_new(
    config: *const bfl_secagg_config,
    round: u64,
    dim: usize,
    clients: *const u64,
    n: usize,
    seed: *const u8,
    seed_len: usize,
    pki: *const bfl_secagg_pki,
    out: *mut *mut bfl_secagg_server,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        unsafe {
            let out = out_handle(out, "out")?;
            let config = arg_ref(config, "config")?.into();
            let clients = slice(clients, n, "clients")?;
            let seed = seed32(seed, seed_len, "seed")?;
            let mut server = SecAggServer::new(config, round, dim, clients, seed)?;
            if let Some(pki) = pki.as_ref() {
                server = server.with_pki(pki.inner.clone());
            }
            put_handle(out, bfl_secagg_server { inner: server });
        }
        Ok(())
    })
}

/// Set the run id of the round (default 0). It is bound into every key, ciphertext and
/// signature and checked in every message, so messages of one run cannot be replayed into
/// another whose round numbers restart at the same values: use a fresh id per run.
///
/// Errors: `BFL_STATUS_SECAGG` once stage 0 has ended (call it before
/// `bfl_secagg_server_setup`). NULL: `server` NULL gives `BFL_STATUS_NULL_ARGUMENT`.
/// Threads: needs exclusive access to `server`.
#[no_mangle]
pub unsafe extern "C" fn bfl_secagg_server_set_run(
    server: *mut bfl_secagg_server,
    run: u64,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let server = unsafe { arg_mut(server, "server")? };
        if server.inner.stage() != ServerStage::AdvertiseKeys {
            return Err(battery_fl_core::Error::SecAgg {
                stage: "setup".into(),
                reason: "the run id must be set before the round starts".into(),
            }
            .into());
        }
        server.inner = server.inner.clone().with_run(run);
        Ok(())
    })
}

/// The Setup message to send to every sampled client.
///
/// Ownership: on success `*out` owns new bytes (`bfl_bytes_free`). NULL: `server` or `out`
/// NULL gives `BFL_STATUS_NULL_ARGUMENT`. Threads: read-only; may run concurrently with
/// other read-only calls.
#[no_mangle]
pub unsafe extern "C" fn bfl_secagg_server_setup(
    server: *const bfl_secagg_server,
    out: *mut *mut bfl_bytes,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let (out, server) = unsafe { (out_handle(out, "out")?, arg_ref(server, "server")?) };
        put_handle(
            out,
            bfl_bytes {
                data: server.inner.setup().to_bytes(),
            },
        );
        Ok(())
    })
}

/// Decode one message of client `sender` and hand it to the state machine.
///
/// # Safety
/// As the exports: `server` NULL or live and exclusive, `msg` NULL or valid for `len` bytes.
unsafe fn receive<M>(
    server: *mut bfl_secagg_server,
    sender: u64,
    msg: *const u8,
    len: usize,
    decode: fn(&[u8]) -> battery_fl_core::Result<M>,
    apply: impl FnOnce(&mut SecAggServer, u64, M) -> battery_fl_core::Result<()>,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: the caller's contract.
        let (server, bytes) = unsafe { (arg_mut(server, "server")?, slice(msg, len, "msg")?) };
        let message = decode(bytes)?;
        Ok(apply(&mut server.inner, sender, message)?)
    })
}

/// Close a stage and encode the per-client messages it produced.
///
/// # Safety
/// As the exports: `server` NULL or live and exclusive, `out` NULL or writable.
unsafe fn finish_stage<M>(
    server: *mut bfl_secagg_server,
    out: *mut *mut bfl_message_batch,
    close: impl FnOnce(&mut SecAggServer) -> battery_fl_core::Result<BTreeMap<u64, M>>,
    encode: fn(&M) -> Vec<u8>,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: the caller's contract.
        let (out, server) = unsafe { (out_handle(out, "out")?, arg_mut(server, "server")?) };
        put_handle(
            out,
            bfl_message_batch::encode(close(&mut server.inner)?, encode),
        );
        Ok(())
    })
}

/// Stage 0: accept a client's AdvertiseKeys message.
///
/// `sender` is the client id the transport authenticated (not a field of the message).
///
/// Errors: `BFL_STATUS_SECAGG` for malformed bytes, a message of another type, run, round or
/// stage, one written in the name of a client other than `sender`, or one that breaks the
/// protocol (the state is unchanged).
/// Ownership: `msg` is borrowed. NULL: `server` NULL, or `msg` NULL with `len > 0`, gives
/// `BFL_STATUS_NULL_ARGUMENT`. Threads: needs exclusive access to `server`.
#[no_mangle]
pub unsafe extern "C" fn bfl_secagg_server_receive_keys(
    server: *mut bfl_secagg_server,
    sender: u64,
    msg: *const u8,
    len: usize,
) -> bfl_status {
    // SAFETY: forwarded contract.
    unsafe {
        receive(
            server,
            sender,
            msg,
            len,
            AdvertiseKeys::from_bytes,
            |s, u, m| s.receive_keys(u, m),
        )
    }
}

/// End stage 0: fix the clients that advertised keys, build the communication graph and
/// produce each client's KeyDirectory.
///
/// Errors: `BFL_STATUS_SECAGG` in the wrong stage; `BFL_STATUS_BELOW_THRESHOLD` when too few
/// clients remain (the round then fails for good and outputs nothing).
/// Ownership: on success `*out` owns a new batch (`bfl_message_batch_free`).
/// NULL: `server` or `out` NULL gives `BFL_STATUS_NULL_ARGUMENT`.
/// Threads: needs exclusive access to `server`.
#[no_mangle]
pub unsafe extern "C" fn bfl_secagg_server_finish_advertise(
    server: *mut bfl_secagg_server,
    out: *mut *mut bfl_message_batch,
) -> bfl_status {
    // SAFETY: forwarded contract.
    unsafe {
        finish_stage(
            server,
            out,
            |s| s.finish_advertise(),
            KeyDirectory::to_bytes,
        )
    }
}

/// Stage 1: accept a client's ShareKeys message.
///
/// `sender` is the client id the transport authenticated (not a field of the message).
///
/// Errors: `BFL_STATUS_SECAGG` for malformed bytes, a message of another type, run, round or
/// stage, one written in the name of a client other than `sender`, or one that breaks the
/// protocol (the state is unchanged).
/// Ownership: `msg` is borrowed. NULL: `server` NULL, or `msg` NULL with `len > 0`, gives
/// `BFL_STATUS_NULL_ARGUMENT`. Threads: needs exclusive access to `server`.
#[no_mangle]
pub unsafe extern "C" fn bfl_secagg_server_receive_shares(
    server: *mut bfl_secagg_server,
    sender: u64,
    msg: *const u8,
    len: usize,
) -> bfl_status {
    // SAFETY: forwarded contract.
    unsafe {
        receive(
            server,
            sender,
            msg,
            len,
            ShareKeys::from_bytes,
            |s, u, m| s.receive_shares(u, m),
        )
    }
}

/// End stage 1: produce each remaining client's ForwardedShares.
///
/// Errors: `BFL_STATUS_SECAGG` in the wrong stage; `BFL_STATUS_BELOW_THRESHOLD` when too few
/// clients remain (the round then fails for good and outputs nothing).
/// Ownership: on success `*out` owns a new batch (`bfl_message_batch_free`).
/// NULL: `server` or `out` NULL gives `BFL_STATUS_NULL_ARGUMENT`.
/// Threads: needs exclusive access to `server`.
#[no_mangle]
pub unsafe extern "C" fn bfl_secagg_server_finish_share_keys(
    server: *mut bfl_secagg_server,
    out: *mut *mut bfl_message_batch,
) -> bfl_status {
    // SAFETY: forwarded contract.
    unsafe {
        finish_stage(
            server,
            out,
            |s| s.finish_share_keys(),
            ForwardedShares::to_bytes,
        )
    }
}

/// Stage 2: add a client's MaskedInput message to the running sum.
///
/// `sender` is the client id the transport authenticated (not a field of the message).
///
/// Errors: `BFL_STATUS_SECAGG` for malformed bytes, a message of another type, run, round or
/// stage, one written in the name of a client other than `sender`, or one that breaks the
/// protocol (the state is unchanged).
/// Ownership: `msg` is borrowed. NULL: `server` NULL, or `msg` NULL with `len > 0`, gives
/// `BFL_STATUS_NULL_ARGUMENT`. Threads: needs exclusive access to `server`.
#[no_mangle]
pub unsafe extern "C" fn bfl_secagg_server_receive_masked_input(
    server: *mut bfl_secagg_server,
    sender: u64,
    msg: *const u8,
    len: usize,
) -> bfl_status {
    // SAFETY: forwarded contract.
    unsafe {
        receive(
            server,
            sender,
            msg,
            len,
            MaskedInput::from_bytes,
            |s, u, m| s.receive_masked_input(u, &m),
        )
    }
}

/// End stage 2 (without a PKI): produce each survivor's UnmaskRequest.
///
/// Errors: `BFL_STATUS_SECAGG` in the wrong stage; `BFL_STATUS_BELOW_THRESHOLD` when too few
/// clients remain (the round then fails for good and outputs nothing).
/// Ownership: on success `*out` owns a new batch (`bfl_message_batch_free`).
/// NULL: `server` or `out` NULL gives `BFL_STATUS_NULL_ARGUMENT`.
/// Threads: needs exclusive access to `server`.
#[no_mangle]
pub unsafe extern "C" fn bfl_secagg_server_finish_masked_input(
    server: *mut bfl_secagg_server,
    out: *mut *mut bfl_message_batch,
) -> bfl_status {
    // SAFETY: forwarded contract.
    unsafe {
        finish_stage(
            server,
            out,
            |s| s.finish_masked_input(),
            UnmaskRequest::to_bytes,
        )
    }
}

/// End stage 2 with a PKI: produce each survivor's ConsistencyCheck.
///
/// Errors: `BFL_STATUS_SECAGG` in the wrong stage; `BFL_STATUS_BELOW_THRESHOLD` when too few
/// clients remain (the round then fails for good and outputs nothing).
/// Ownership: on success `*out` owns a new batch (`bfl_message_batch_free`).
/// NULL: `server` or `out` NULL gives `BFL_STATUS_NULL_ARGUMENT`.
/// Threads: needs exclusive access to `server`.
#[no_mangle]
pub unsafe extern "C" fn bfl_secagg_server_start_consistency_check(
    server: *mut bfl_secagg_server,
    out: *mut *mut bfl_message_batch,
) -> bfl_status {
    // SAFETY: forwarded contract.
    unsafe {
        finish_stage(
            server,
            out,
            |s| s.start_consistency_check(),
            ConsistencyCheck::to_bytes,
        )
    }
}

/// Consistency check (with a PKI): accept a survivor's ConsistencySignature.
///
/// `sender` is the client id the transport authenticated (not a field of the message).
///
/// Errors: `BFL_STATUS_SECAGG` for malformed bytes, a message of another type, run, round or
/// stage, one written in the name of a client other than `sender`, or one that breaks the
/// protocol (the state is unchanged).
/// Ownership: `msg` is borrowed. NULL: `server` NULL, or `msg` NULL with `len > 0`, gives
/// `BFL_STATUS_NULL_ARGUMENT`. Threads: needs exclusive access to `server`.
#[no_mangle]
pub unsafe extern "C" fn bfl_secagg_server_receive_consistency(
    server: *mut bfl_secagg_server,
    sender: u64,
    msg: *const u8,
    len: usize,
) -> bfl_status {
    // SAFETY: forwarded contract.
    unsafe {
        receive(
            server,
            sender,
            msg,
            len,
            ConsistencySignature::from_bytes,
            |s, u, m| s.receive_consistency(u, m),
        )
    }
}

/// End the consistency check: produce the signers' UnmaskRequests.
///
/// Errors: `BFL_STATUS_SECAGG` in the wrong stage; `BFL_STATUS_BELOW_THRESHOLD` when too few
/// clients remain (the round then fails for good and outputs nothing).
/// Ownership: on success `*out` owns a new batch (`bfl_message_batch_free`).
/// NULL: `server` or `out` NULL gives `BFL_STATUS_NULL_ARGUMENT`.
/// Threads: needs exclusive access to `server`.
#[no_mangle]
pub unsafe extern "C" fn bfl_secagg_server_finish_consistency_check(
    server: *mut bfl_secagg_server,
    out: *mut *mut bfl_message_batch,
) -> bfl_status {
    // SAFETY: forwarded contract.
    unsafe {
        finish_stage(
            server,
            out,
            |s| s.finish_consistency_check(),
            UnmaskRequest::to_bytes,
        )
    }
}

/// Stage 3: accept a survivor's UnmaskResponse.
///
/// `sender` is the client id the transport authenticated (not a field of the message).
///
/// Errors: `BFL_STATUS_SECAGG` for malformed bytes, a message of another type, run, round or
/// stage, one written in the name of a client other than `sender`, or one that breaks the
/// protocol (the state is unchanged).
/// Ownership: `msg` is borrowed. NULL: `server` NULL, or `msg` NULL with `len > 0`, gives
/// `BFL_STATUS_NULL_ARGUMENT`. Threads: needs exclusive access to `server`.
#[no_mangle]
pub unsafe extern "C" fn bfl_secagg_server_receive_unmask(
    server: *mut bfl_secagg_server,
    sender: u64,
    msg: *const u8,
    len: usize,
) -> bfl_status {
    // SAFETY: forwarded contract.
    unsafe {
        receive(
            server,
            sender,
            msg,
            len,
            UnmaskResponse::from_bytes,
            |s, u, m| s.receive_unmask(u, m),
        )
    }
}

/// End the round: unmask the sum and write the survivors' weighted mean delta into
/// `mean[0..dim]` (`mean_len >= dim`); `*total_weight` (may be NULL) gets the survivors'
/// total weight and `*num_survivors` (may be NULL) their number.
///
/// Errors: `BFL_STATUS_SECAGG` in the wrong stage; `BFL_STATUS_BELOW_THRESHOLD` if a secret
/// has fewer than t shares (nothing is output, ever); `BFL_STATUS_BUFFER_TOO_SMALL` for a
/// short `mean` (checked first; the round is not closed).
/// Ownership: `mean` is borrowed. NULL: `server` NULL, or `mean` NULL with `dim > 0`, gives
/// `BFL_STATUS_NULL_ARGUMENT`. Threads: needs exclusive access to `server`.
#[no_mangle]
pub unsafe extern "C" fn bfl_secagg_server_finish(
    server: *mut bfl_secagg_server,
    mean: *mut f32,
    mean_len: usize,
    total_weight: *mut f64,
    num_survivors: *mut usize,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        unsafe {
            let server = &mut arg_mut(server, "server")?.inner;
            let dim = server.setup().dim as usize;
            let buf = out_buffer(mean, mean_len, dim, "mean")?;
            let output = server.finish()?;
            let decoded = output.decode()?;
            buf.copy_from_slice(&decoded.mean);
            put_opt(total_weight, decoded.total_weight);
            put_opt(num_survivors, output.survivors.len());
        }
        Ok(())
    })
}

/// The clients whose inputs are in the sum (U3, sorted), into `out[0..]`; `*written` (may
/// be NULL) gets their number. Empty before stage 2 ends.
///
/// Errors: `BFL_STATUS_BUFFER_TOO_SMALL` if `out_len` is shorter (`*written` then gets the
/// length needed). NULL: `server` NULL, or `out` NULL with `out_len > 0`, gives
/// `BFL_STATUS_NULL_ARGUMENT`. Threads: read-only; may run concurrently with other
/// read-only calls.
#[no_mangle]
pub unsafe extern "C" fn bfl_secagg_server_survivors(
    server: *const bfl_secagg_server,
    out: *mut u64,
    out_len: usize,
    written: *mut usize,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        unsafe {
            let u3 = arg_ref(server, "server")?.inner.u3();
            put_opt(written, u3.len());
            let buf = out_buffer(out, out_len, u3.len(), "out")?;
            buf.iter_mut().zip(u3).for_each(|(o, &id)| *o = id);
        }
        Ok(())
    })
}

/// Free a server. NULL is a no-op.
///
/// Ownership: takes back ownership; do not use it afterwards. Threads: no other call may use
/// `server` concurrently.
#[no_mangle]
pub unsafe extern "C" fn bfl_secagg_server_free(server: *mut bfl_secagg_server) {
    // SAFETY: came from this library and is freed once (caller's contract).
    unsafe { free_handle(server) }
}
