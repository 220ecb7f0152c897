//! Seeded random number generators.
//!
//! Every stochastic component takes an explicit seed; this module is the one place that turns
//! seeds into generators, so runs reproduce across machines and across federated clients.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The crate's deterministic generator (fast, portable, reproducible across platforms).
pub type SeededRng = ChaCha8Rng;

/// Seed for one (round, client) job, derived from the run seed (SplitMix64 mixing).
pub fn job_seed(seed: u64, round: usize, client: usize) -> u64 {
    let mut z = seed
        ^ (round as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (client as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A generator from a 64-bit seed.
pub fn seeded(seed: u64) -> SeededRng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// A generator for stream `stream` of `seed`: independent streams for, e.g., one cell of a
/// fleet, so that work can run in parallel and still reproduce exactly.
pub fn substream(seed: u64, stream: u64) -> SeededRng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// A generator keyed from the operating system's randomness, for draws that must stay secret
/// (which cells a DP-SGD step samples).
///
/// # Errors
/// [`Error::Privacy`](crate::Error::Privacy) when the operating system has no randomness.
pub fn from_os() -> crate::Result<SeededRng> {
    use rand::TryRngCore;
    let mut key = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut key)
        .map_err(|e| crate::Error::Privacy {
            reason: format!("operating-system randomness unavailable: {e}"),
        })?;
    Ok(ChaCha8Rng::from_seed(key))
}
