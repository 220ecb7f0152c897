//! Differential privacy: L2 clipping and Gaussian noise on caller buffers, the noise scales
//! of a round, and `bfl_accountant` (RDP accounting with an optional budget).

use battery_fl_core::dp::{clip_l2_slice, DpMode, GaussianNoise, RdpAccountant, RoundNoise};

use crate::boundary::{
    arg_mut, arg_ref, ffi_boundary, free_handle, out_handle, out_ref, put_handle, put_opt,
    slice_mut,
};
use crate::status::{bfl_status, FfiError};

/// Where the Gaussian noise of a round is added (stable numbers).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum bfl_dp_mode {
    /// The trusted server adds `N(0, (zC)^2)` to the sum of the clipped updates.
    Central = 1,
    /// Each client adds `N(0, (zC)^2)` to its own clipped update.
    Local = 2,
    /// Each of `m` clients adds `N(0, (zC)^2 / m)`; the sum carries `zC` (with SecAgg).
    Distributed = 3,
}

/// What `bfl_dp_clip` did.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct bfl_clip_outcome {
    /// The L2 norm before clipping.
    pub norm: f64,
    /// The factor the buffer was multiplied by (1.0 when not clipped).
    pub factor: f64,
    /// True when the norm exceeded the bound and the buffer was scaled down.
    pub clipped: bool,
}

/// Clip `update[0..len]` in place to L2 norm `clipping_norm`: a buffer within the bound is
/// left bit for bit unchanged, a larger one keeps its direction and ends with a norm of at
/// most `clipping_norm`. `*outcome` (may be NULL) gets the norm and factor.
///
/// Errors: `BFL_STATUS_INVALID_CONFIG` unless `clipping_norm` is positive and finite;
/// `BFL_STATUS_PRIVACY` for NaN or infinite values (nothing is changed).
/// Ownership: `update` is borrowed. NULL: `update` NULL with `len > 0` gives
/// `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe; `update` must not be accessed by others
/// during the call.
#[no_mangle]
pub unsafe extern "C" fn bfl_dp_clip(
    update: *mut f32,
    len: usize,
    clipping_norm: f64,
    outcome: *mut bfl_clip_outcome,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let buf = unsafe { slice_mut(update, len, "update")? };
        let o = clip_l2_slice(buf, clipping_norm)?;
        let o = bfl_clip_outcome {
            norm: o.norm,
            factor: o.factor,
            clipped: o.clipped,
        };
        // SAFETY: NULL is skipped.
        unsafe { put_opt(outcome, o) };
        Ok(())
    })
}

/// Add independent `N(0, std^2)` noise to every value of `buf[0..len]`, drawn from ChaCha20
/// keyed by `seed`: reproducible, for tests and simulations. Real deployments should use
/// `bfl_dp_add_noise_os` (a guessable seed lets anyone subtract the noise).
///
/// Errors: `BFL_STATUS_INVALID_CONFIG` if `std` is negative or not finite.
/// Ownership: `buf` is borrowed. NULL: `buf` NULL with `len > 0` gives
/// `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe; `buf` must not be accessed by others
/// during the call.
#[no_mangle]
pub unsafe extern "C" fn bfl_dp_add_noise(
    buf: *mut f32,
    len: usize,
    std: f64,
    seed: u64,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let buf = unsafe { slice_mut(buf, len, "buf")? };
        Ok(GaussianNoise::from_seed(seed).add_to_slice(buf, std)?)
    })
}

/// As `bfl_dp_add_noise`, with a generator keyed from the operating system's randomness
/// (never reproducible): the production choice.
///
/// Errors: as `bfl_dp_add_noise`, plus `BFL_STATUS_PRIVACY` if the OS has no randomness.
/// Ownership, NULL and threads: as `bfl_dp_add_noise`.
#[no_mangle]
pub unsafe extern "C" fn bfl_dp_add_noise_os(buf: *mut f32, len: usize, std: f64) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let buf = unsafe { slice_mut(buf, len, "buf")? };
        Ok(GaussianNoise::from_os()?.add_to_slice(buf, std)?)
    })
}

/// The noise scales of one round: with noise multiplier `z`, clipping norm `C` and
/// `num_clients` clients in `mode` (a `bfl_dp_mode` value), `*client_std` (may be NULL)
/// gets the std each client adds to its clipped update and `*server_sum_std` (may be NULL)
/// the std the server adds to the sum.
///
/// Errors: `BFL_STATUS_INVALID_ARGUMENT` for an unknown mode; `BFL_STATUS_INVALID_CONFIG`
/// for `z < 0`, `C <= 0` or no clients. NULL: both outputs may be NULL.
/// Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_dp_noise_std(
    mode: u32,
    noise_multiplier: f64,
    clipping_norm: f64,
    num_clients: usize,
    client_std: *mut f64,
    server_sum_std: *mut f64,
) -> bfl_status {
    ffi_boundary!({
        let mode = match mode {
            m if m == bfl_dp_mode::Central as u32 => DpMode::Central,
            m if m == bfl_dp_mode::Local as u32 => DpMode::Local,
            m if m == bfl_dp_mode::Distributed as u32 => DpMode::Distributed,
            other => return Err(FfiError::Invalid(format!("unknown bfl_dp_mode {other}"))),
        };
        let round = RoundNoise::new(mode, noise_multiplier, clipping_norm, num_clients)?;
        // SAFETY: NULL is skipped.
        unsafe {
            put_opt(client_std, round.client_std());
            put_opt(server_sum_std, round.server_sum_std());
        }
        Ok(())
    })
}

/// A Renyi-DP accountant for the Poisson-subsampled Gaussian mechanism (numbers agree with
/// Google's dp-accounting). Opaque.
///
/// Threads: `Send + Sync`. Read-only calls (`const bfl_accountant *`) may run concurrently;
/// `bfl_accountant_step` needs exclusive access.
#[derive(Debug)]
pub struct bfl_accountant {
    inner: RdpAccountant,
}

/// A new accountant without a budget.
///
/// Ownership: on success `*out` owns a new accountant (`bfl_accountant_free`).
/// NULL: `out` NULL gives `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_accountant_new(out: *mut *mut bfl_accountant) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        put_handle(
            unsafe { out_handle(out, "out")? },
            bfl_accountant {
                inner: RdpAccountant::new(),
            },
        );
        Ok(())
    })
}

/// A new accountant that refuses steps which would make epsilon at `delta` exceed
/// `max_epsilon` (`BFL_STATUS_BUDGET_EXHAUSTED`, state unchanged).
///
/// Errors: `BFL_STATUS_INVALID_CONFIG` unless `max_epsilon > 0` is finite and
/// `0 < delta < 1`. Ownership: on success `*out` owns a new accountant. NULL: `out` NULL gives
/// `BFL_STATUS_NULL_ARGUMENT`. Threads: thread-safe.
#[no_mangle]
pub unsafe extern "C" fn bfl_accountant_new_with_budget(
    max_epsilon: f64,
    delta: f64,
    out: *mut *mut bfl_accountant,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let out = unsafe { out_handle(out, "out")? };
        let inner = RdpAccountant::new().with_max_epsilon(max_epsilon, delta)?;
        put_handle(out, bfl_accountant { inner });
        Ok(())
    })
}

/// Compose `steps` rounds with noise multiplier `noise_multiplier` (z > 0) and sampling rate
/// `sample_rate` (0 <= q <= 1; 1 when every client takes part). On any error the state is
/// unchanged.
///
/// Errors: `BFL_STATUS_INVALID_CONFIG` for bad z or q; `BFL_STATUS_BUDGET_EXHAUSTED` when a
/// budget is set and would be exceeded. NULL: `accountant` NULL gives
/// `BFL_STATUS_NULL_ARGUMENT`. Threads: needs exclusive access to `accountant`.
#[no_mangle]
pub unsafe extern "C" fn bfl_accountant_step(
    accountant: *mut bfl_accountant,
    noise_multiplier: f64,
    sample_rate: f64,
    steps: u64,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        let acc = unsafe { arg_mut(accountant, "accountant")? };
        Ok(acc.inner.step(noise_multiplier, sample_rate, steps)?)
    })
}

/// The current epsilon at `delta` (0 < delta < 1), into `*epsilon`.
///
/// NULL: `accountant` or `epsilon` NULL gives `BFL_STATUS_NULL_ARGUMENT`.
/// Threads: thread-safe with other read-only calls.
#[no_mangle]
pub unsafe extern "C" fn bfl_accountant_epsilon(
    accountant: *const bfl_accountant,
    delta: f64,
    epsilon: *mut f64,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        unsafe {
            *out_ref(epsilon, "epsilon")? =
                arg_ref(accountant, "accountant")?.inner.epsilon(delta)?
        };
        Ok(())
    })
}

/// The epsilon at `delta` that `steps` more rounds with `(z, q)` would give, into
/// `*epsilon`; the accountant is not changed (plan a budget).
///
/// NULL: `accountant` or `epsilon` NULL gives `BFL_STATUS_NULL_ARGUMENT`.
/// Threads: thread-safe with other read-only calls.
#[no_mangle]
pub unsafe extern "C" fn bfl_accountant_epsilon_after(
    accountant: *const bfl_accountant,
    noise_multiplier: f64,
    sample_rate: f64,
    steps: u64,
    delta: f64,
    epsilon: *mut f64,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        unsafe {
            let out = out_ref(epsilon, "epsilon")?;
            let acc = &arg_ref(accountant, "accountant")?.inner;
            *out = acc.epsilon_after(noise_multiplier, sample_rate, steps, delta)?;
        }
        Ok(())
    })
}

/// The number of rounds composed so far, into `*steps`.
///
/// NULL: `accountant` or `steps` NULL gives `BFL_STATUS_NULL_ARGUMENT`.
/// Threads: thread-safe with other read-only calls.
#[no_mangle]
pub unsafe extern "C" fn bfl_accountant_steps(
    accountant: *const bfl_accountant,
    steps: *mut u64,
) -> bfl_status {
    ffi_boundary!({
        // SAFETY: pointer contract of the crate docs.
        unsafe { *out_ref(steps, "steps")? = arg_ref(accountant, "accountant")?.inner.steps() };
        Ok(())
    })
}

/// Free an accountant. NULL is a no-op.
///
/// Ownership: takes back ownership; do not use it afterwards. Threads: no other call may use
/// `accountant` concurrently.
#[no_mangle]
pub unsafe extern "C" fn bfl_accountant_free(accountant: *mut bfl_accountant) {
    // SAFETY: came from this library and is freed once (caller's contract).
    unsafe { free_handle(accountant) }
}
