//! `bfl_secagg_client`: one client's side of one SecAgg+ round.

use battery_fl_core::secagg::{
    ConsistencyCheck, ForwardedShares, Identity, KeyDirectory, SecAggClient, Setup, UnmaskRequest,
};

use super::{bfl_bytes, bfl_secagg_pki};
use crate::boundary::{arg_mut, ffi_boundary, free_handle, out_handle, put_handle, seed32, slice};
use crate::status::{bfl_status, FfiError};

/// One client's state machine for one round. Opaque.
///
/// Threads: `Send + Sync`; every step changes the state and needs exclusive access.
#[derive(Debug)]
pub struct bfl_secagg_client {
    inner: SecAggClient,
}

/// A client `id` for the round described by the server's Setup message. `seed` (32 bytes) is
/// the client's secret randomness for this round: it must come from a CSPRNG and never be
/// reused. For the active-adversary mode pass the client's 32-byte identity secret and the
/// PKI (both or neither).
///
/// Errors: `BFL_STATUS_SECAGG` for a malformed Setup, `BFL_STATUS_INVALID_CONFIG` for bad
/// parameters in it. Ownership: inputs borrowed (copied); on success `*out` owns a new client
/// (`bfl_secagg_client_free`). NULL: `setup`, `seed` or `out` NULL gives
/// `BFL_STATUS_NULL_ARGUMENT`; `identity_seed` and `pki` may be NULL together.
/// Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_secagg_client_new(
    id: u64,
    setup: *const u8,
    setup_len: usize,
    seed: *const u8,
    seed_len: usize,
    identity_seed: *const u8,
    pki: *const bfl_secagg_pki,
    out: *mut *mut bfl_secagg_client,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        unsafe {
            let out = out_handle(out, "out")?;
            if setup.is_null() {
                return Err(FfiError::Null("setup"));
            }
            let setup = Setup::from_bytes(slice(setup, setup_len, "setup")?)?;
            let mut client = SecAggClient::new(id, &setup, seed32(seed, seed_len, "seed")?)?;
            match (identity_seed.is_null(), pki.as_ref()) {
                (true, None) => {}
                (false, Some(pki)) => {
                    let identity = Identity::from_seed(seed32(identity_seed, 32, "identity_seed")?);
                    client = client.with_identity(identity, pki.inner.clone());
                }
                _ => {
                    return Err(FfiError::Invalid(
                        "pass both `identity_seed` and `pki`, or neither".into(),
                    ))
                }
            }
            put_handle(out, bfl_secagg_client { inner: client });
        }
        Ok(())
    })
}

/// Decode the incoming server message, run the step and encode the reply.
///
/// # Safety
/// As the exports: `client` NULL or live and exclusive, `msg` NULL or valid for `len` bytes,
/// `out` NULL or writable.
unsafe fn step<M>(
    client: *mut bfl_secagg_client,
    msg: *const u8,
    len: usize,
    out: *mut *mut bfl_bytes,
    decode: fn(&[u8]) -> battery_fl_core::Result<M>,
    run: impl FnOnce(&mut SecAggClient, M) -> battery_fl_core::Result<Vec<u8>>,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: the caller's contract.
        let (out, client, bytes) = unsafe {
            (
                out_handle(out, "out")?,
                arg_mut(client, "client")?,
                slice(msg, len, "msg")?,
            )
        };
        let message = decode(bytes)?;
        put_handle(
            out,
            bfl_bytes {
                data: run(&mut client.inner, message)?,
            },
        );
        Ok(())
    })
}

/// Stage 0: the client's AdvertiseKeys message (two fresh public keys; repeatable until
/// stage 1).
///
/// Ownership: on success `*out` owns the message (`bfl_bytes_free`). NULL: `client` or `out`
/// NULL gives `BFL_STATUS_NULL_ARGUMENT`. Threads: needs exclusive access.
#[no_mangle]
pub unsafe extern "C" fn bfl_secagg_client_advertise_keys(
    client: *mut bfl_secagg_client,
    out: *mut *mut bfl_bytes,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let (out, client) = unsafe {
            (
                out_handle(out, "out")?,
                &mut arg_mut(client, "client")?.inner,
            )
        };
        put_handle(
            out,
            bfl_bytes {
                data: client.advertise_keys()?.to_bytes(),
            },
        );
        Ok(())
    })
}

/// Stage 1: from the server's KeyDirectory, the ShareKeys message (encrypted shares for
/// every neighbour).
///
/// Errors: `BFL_STATUS_SECAGG` for malformed bytes or a message for another round, client or
/// stage (the client is unchanged); `BFL_STATUS_BELOW_THRESHOLD` when too few neighbours
/// remain. Ownership: `msg` is borrowed; on success `*out` owns the reply (`bfl_bytes_free`).
/// NULL: `client` or `out` NULL, or `msg` NULL with `len > 0`, gives
/// `BFL_STATUS_NULL_ARGUMENT`. Threads: needs exclusive access.
#[no_mangle]
pub unsafe extern "C" fn bfl_secagg_client_share_keys(
    client: *mut bfl_secagg_client,
    msg: *const u8,
    len: usize,
    out: *mut *mut bfl_bytes,
) -> bfl_status {
    // SAFETY: forwarded contract.
    unsafe {
        step(client, msg, len, out, KeyDirectory::from_bytes, |c, m| {
            Ok(c.share_keys(&m)?.to_bytes())
        })
    }
}

/// Consistency check (active-adversary mode): from the server's ConsistencyCheck, the
/// client's ConsistencySignature on the survivor set.
///
/// Errors: `BFL_STATUS_SECAGG` for malformed bytes or a message for another round, client or
/// stage (the client is unchanged); `BFL_STATUS_BELOW_THRESHOLD` when too few neighbours
/// remain. Ownership: `msg` is borrowed; on success `*out` owns the reply (`bfl_bytes_free`).
/// NULL: `client` or `out` NULL, or `msg` NULL with `len > 0`, gives
/// `BFL_STATUS_NULL_ARGUMENT`. Threads: needs exclusive access.
#[no_mangle]
pub unsafe extern "C" fn bfl_secagg_client_consistency_check(
    client: *mut bfl_secagg_client,
    msg: *const u8,
    len: usize,
    out: *mut *mut bfl_bytes,
) -> bfl_status {
    // SAFETY: forwarded contract.
    unsafe {
        step(
            client,
            msg,
            len,
            out,
            ConsistencyCheck::from_bytes,
            |c, m| Ok(c.consistency_check(&m)?.to_bytes()),
        )
    }
}

/// Stage 3: from the server's UnmaskRequest, the UnmaskResponse (shares of the live
/// neighbours' self-mask seeds and of the dropped neighbours' mask keys; never both for
/// one neighbour).
///
/// Errors: `BFL_STATUS_SECAGG` for malformed bytes or a message for another round, client or
/// stage (the client is unchanged); `BFL_STATUS_BELOW_THRESHOLD` when too few neighbours
/// remain. Ownership: `msg` is borrowed; on success `*out` owns the reply (`bfl_bytes_free`).
/// NULL: `client` or `out` NULL, or `msg` NULL with `len > 0`, gives
/// `BFL_STATUS_NULL_ARGUMENT`. Threads: needs exclusive access.
#[no_mangle]
pub unsafe extern "C" fn bfl_secagg_client_unmask(
    client: *mut bfl_secagg_client,
    msg: *const u8,
    len: usize,
    out: *mut *mut bfl_bytes,
) -> bfl_status {
    // SAFETY: forwarded contract.
    unsafe {
        step(client, msg, len, out, UnmaskRequest::from_bytes, |c, m| {
            Ok(c.unmask(&m)?.to_bytes())
        })
    }
}

/// Stage 2: from the server's ForwardedShares, the MaskedInput message carrying the client's
/// masked, quantized `delta` (the update `local - global`, `dim` floats as in the Setup)
/// with weight `weight` (0 <= weight <= max_weight, e.g. its number of training cells).
///
/// Errors: as the other steps, plus `BFL_STATUS_SHAPE` when `dim` differs from the round's
/// and `BFL_STATUS_REJECTED_UPDATE` for a bad weight. Ownership: `msg` and `delta` are
/// borrowed; on success `*out` owns the message (`bfl_bytes_free`). NULL: `client` or `out`
/// NULL, or `msg`/`delta` NULL with a nonzero length, gives `BFL_STATUS_NULL_ARGUMENT`.
/// Threads: needs exclusive access.
#[no_mangle]
pub unsafe extern "C" fn bfl_secagg_client_masked_input(
    client: *mut bfl_secagg_client,
    msg: *const u8,
    len: usize,
    delta: *const f32,
    dim: usize,
    weight: f64,
    out: *mut *mut bfl_bytes,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let (out, client, bytes, delta) = unsafe {
            (
                out_handle(out, "out")?,
                &mut arg_mut(client, "client")?.inner,
                slice(msg, len, "msg")?,
                slice(delta, dim, "delta")?,
            )
        };
        let forwarded = ForwardedShares::from_bytes(bytes)?;
        put_handle(
            out,
            bfl_bytes {
                data: client.masked_input(&forwarded, delta, weight)?.to_bytes(),
            },
        );
        Ok(())
    })
}

/// Free a client (its secrets are zeroized). NULL is a no-op.
///
/// Ownership: takes back ownership; do not use it afterwards. Threads: no other call may use
/// `client` concurrently.
#[no_mangle]
pub unsafe extern "C" fn bfl_secagg_client_free(client: *mut bfl_secagg_client) {
    // SAFETY: came from this library and is freed once (caller's contract).
    unsafe { free_handle(client) }
}
