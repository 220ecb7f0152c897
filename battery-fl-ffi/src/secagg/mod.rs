//! Secure aggregation (SecAgg+): client and server steps with messages as byte buffers, so a
//! C stack can take part in a federation over any transport.
//!
//! Every message leaves the library as bytes (`bfl_bytes`, or a `bfl_message_batch` of
//! per-client messages from a server step) and enters it as `{ptr, len}`; incoming bytes are
//! untrusted and fully checked (`BFL_STATUS_SECAGG` for anything malformed). The stages:
//!
//! | step | server | message | client |
//! | --- | --- | --- | --- |
//! | setup | `bfl_secagg_server_setup` | Setup → all | `bfl_secagg_client_new` |
//! | 0 | `receive_keys`, `finish_advertise` | AdvertiseKeys ←, KeyDirectory → | `advertise_keys` |
//! | 1 | `receive_shares`, `finish_share_keys` | ShareKeys ←, ForwardedShares → | `share_keys` |
//! | 2 | `receive_masked_input`, `finish_masked_input` | MaskedInput ←, UnmaskRequest → | `masked_input` |
//! | 3 | `receive_unmask`, `finish` | UnmaskResponse ← | `unmask` |
//!
//! With a PKI (`bfl_secagg_pki`), a consistency check runs between stages 2 and 3. Every
//! server `receive_*` function takes, right after the server, the `sender` id the transport
//! authenticated, and refuses a message written in another client's name. Give every run a
//! fresh run id with `bfl_secagg_server_set_run` (before `bfl_secagg_server_setup`): round
//! numbers restart in every run, and the run id keeps messages of one run out of another.

mod client;
mod server;

pub use client::*;
pub use server::*;

use std::collections::BTreeMap;

use battery_fl_core::secagg::{Identity, Pki, SecAggConfig};

use crate::boundary::{
    arg_ref, ffi_boundary, free_handle, out_buffer, out_handle, out_ref, put_handle, seed32, slice,
};
use crate::status::{bfl_status, FfiError};

/// Parameters of a SecAgg+ round (`bfl_secagg_config_default` fills the defaults). The
/// server sends them to the clients inside the Setup message.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct bfl_secagg_config {
    /// Clients sampled for the round, n >= 3.
    pub num_clients: usize,
    /// Neighbourhood size k including the client itself; 0 means the complete graph (plain
    /// SecAgg). Sparse SecAgg+ graphs need an odd k with 3 <= k < n. Default 0.
    pub neighbours: usize,
    /// Shamir threshold t with k/2 < t <= k; 0 means ceil(2k/3). Default 0.
    pub threshold: usize,
    /// Weighted deltas are clipped to [-c, c] (default 8.0).
    pub clipping_range: f64,
    /// Quantization levels T (default 2^22).
    pub target_range: u64,
    /// Modulus bits b, 32 or 64 (default 32).
    pub modulus_bits: u32,
    /// Largest client weight W (default 1000.0).
    pub max_weight: f64,
}

impl From<&bfl_secagg_config> for SecAggConfig {
    fn from(c: &bfl_secagg_config) -> Self {
        SecAggConfig {
            num_clients: c.num_clients,
            neighbours: (c.neighbours > 0).then_some(c.neighbours),
            threshold: (c.threshold > 0).then_some(c.threshold),
            clipping_range: c.clipping_range,
            target_range: c.target_range,
            modulus_bits: c.modulus_bits,
            max_weight: c.max_weight,
        }
    }
}

/// Fill `*config` with the defaults for `num_clients` clients (complete graph).
///
/// NULL: `config` NULL gives `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_secagg_config_default(
    num_clients: usize,
    config: *mut bfl_secagg_config,
) -> bfl_status {
    ffi_boundary!({
        let c = SecAggConfig::new(num_clients);
        // SAFETY: pointer contract of the crate docs.
        unsafe {
            *out_ref(config, "config")? = bfl_secagg_config {
                num_clients: c.num_clients,
                neighbours: c.neighbours.unwrap_or(0),
                threshold: c.threshold.unwrap_or(0),
                clipping_range: c.clipping_range,
                target_range: c.target_range,
                modulus_bits: c.modulus_bits,
                max_weight: c.max_weight,
            };
        }
        Ok(())
    })
}

/// An encoded message produced by the library. Opaque and immutable.
///
/// Threads: `Send + Sync`.
#[derive(Debug)]
pub struct bfl_bytes {
    pub(crate) data: Vec<u8>,
}

/// The bytes of a message: `*data` points into `bytes` (valid until `bfl_bytes_free`),
/// `*len` gets the length.
///
/// NULL: any argument NULL gives `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_bytes_data(
    bytes: *const bfl_bytes,
    data: *mut *const u8,
    len: *mut usize,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        unsafe {
            let (data, len) = (out_ref(data, "data")?, out_ref(len, "len")?);
            let b = arg_ref(bytes, "bytes")?;
            *data = b.data.as_ptr();
            *len = b.data.len();
        }
        Ok(())
    })
}

/// Free a message. NULL is a no-op.
///
/// Ownership: takes back ownership; pointers from `bfl_bytes_data` dangle afterwards.
/// Threads: no other call may use `bytes` concurrently.
#[no_mangle]
pub unsafe extern "C" fn bfl_bytes_free(bytes: *mut bfl_bytes) {
    // SAFETY: came from this library and is freed once (caller's contract).
    unsafe { free_handle(bytes) }
}

/// The per-client messages a server step produced, sorted by client id. Opaque and
/// immutable.
///
/// Threads: `Send + Sync`.
#[derive(Debug)]
pub struct bfl_message_batch {
    pub(crate) items: Vec<(u64, Vec<u8>)>,
}

impl bfl_message_batch {
    pub(crate) fn encode<M>(map: BTreeMap<u64, M>, to_bytes: impl Fn(&M) -> Vec<u8>) -> Self {
        bfl_message_batch {
            items: map.iter().map(|(&id, m)| (id, to_bytes(m))).collect(),
        }
    }
}

/// The number of messages in a batch, into `*n`.
///
/// NULL: any argument NULL gives `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_message_batch_len(
    batch: *const bfl_message_batch,
    n: *mut usize,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        unsafe { *out_ref(n, "n")? = arg_ref(batch, "batch")?.items.len() };
        Ok(())
    })
}

/// Message `index` (0-based, `< bfl_message_batch_len`) of a batch: `*client` gets the
/// recipient's id, `*data`/`*len` its bytes (valid until `bfl_message_batch_free`).
///
/// Errors: `BFL_STATUS_INVALID_ARGUMENT` for an index out of range.
/// NULL: any argument NULL gives `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_message_batch_get(
    batch: *const bfl_message_batch,
    index: usize,
    client: *mut u64,
    data: *mut *const u8,
    len: *mut usize,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        unsafe {
            let (client, data, len) = (
                out_ref(client, "client")?,
                out_ref(data, "data")?,
                out_ref(len, "len")?,
            );
            let items = &arg_ref(batch, "batch")?.items;
            let (id, bytes) = items.get(index).ok_or_else(|| {
                FfiError::Invalid(format!(
                    "index {index} out of range for a batch of {}",
                    items.len()
                ))
            })?;
            (*client, *data, *len) = (*id, bytes.as_ptr(), bytes.len());
        }
        Ok(())
    })
}

/// Free a batch. NULL is a no-op.
///
/// Ownership: takes back ownership; pointers from `bfl_message_batch_get` dangle afterwards.
/// Threads: no other call may use `batch` concurrently.
#[no_mangle]
pub unsafe extern "C" fn bfl_message_batch_free(batch: *mut bfl_message_batch) {
    // SAFETY: came from this library and is freed once (caller's contract).
    unsafe { free_handle(batch) }
}

/// Every client's Ed25519 verifying key, for the active-adversary mode: clients sign their
/// round keys and the survivor set, and the server and clients check the signatures.
/// Opaque and immutable.
///
/// Threads: `Send + Sync`.
#[derive(Debug)]
pub struct bfl_secagg_pki {
    pub(crate) inner: Pki,
}

/// The 32-byte Ed25519 verifying key of the identity whose 32-byte secret is `identity_seed`,
/// into `out[0..32]` (register it in every party's PKI).
///
/// Ownership: all borrowed. NULL: any pointer NULL gives `BFL_STATUS_NULL_ARGUMENT`;
/// `seed_len` must be 32 and `out_len` at least 32. Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_secagg_identity_public_key(
    identity_seed: *const u8,
    seed_len: usize,
    out: *mut u8,
    out_len: usize,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        unsafe {
            let seed = seed32(identity_seed, seed_len, "identity_seed")?;
            let key = Identity::from_seed(seed).verifying_key();
            out_buffer(out, out_len, 32, "out")?.copy_from_slice(&key);
        }
        Ok(())
    })
}

/// A PKI of `n` clients: `ids[i]` has the verifying key `keys[32*i .. 32*i+32]`.
///
/// Errors: `BFL_STATUS_INVALID_CONFIG` for an invalid key. Ownership: arrays borrowed
/// (copied); on success `*out` owns a new PKI (`bfl_secagg_pki_free`). NULL: `out` NULL, or
/// `ids`/`keys` NULL with `n > 0`, gives `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_secagg_pki_new(
    ids: *const u64,
    keys: *const u8,
    n: usize,
    out: *mut *mut bfl_secagg_pki,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let (out, ids) = unsafe { (out_handle(out, "out")?, slice(ids, n, "ids")?) };
        let total = n
            .checked_mul(32)
            .ok_or_else(|| FfiError::Invalid("n is too large".into()))?;
        // SAFETY: pointer contract of the crate docs.
        let keys = unsafe { slice(keys, total, "keys")? };
        let map: BTreeMap<u64, [u8; 32]> = ids
            .iter()
            .zip(keys.chunks_exact(32))
            .map(|(&id, k)| (id, k.try_into().unwrap_or([0; 32])))
            .collect();
        if map.len() != n {
            return Err(FfiError::Invalid("duplicate client id in the PKI".into()));
        }
        put_handle(
            out,
            bfl_secagg_pki {
                inner: Pki::new(&map)?,
            },
        );
        Ok(())
    })
}

/// Free a PKI. NULL is a no-op.
///
/// Ownership: takes back ownership (clients and servers built with it keep their own
/// copy). Threads: no other call may use `pki` concurrently.
#[no_mangle]
pub unsafe extern "C" fn bfl_secagg_pki_free(pki: *mut bfl_secagg_pki) {
    // SAFETY: came from this library and is freed once (caller's contract).
    unsafe { free_handle(pki) }
}
