//! Shamir t-of-n secret sharing of 32-byte secrets over the prime field of order
//! ℓ = 2²⁵² + 27742317777372353535851937790883648493 (the Ed25519 group order, using
//! `curve25519-dalek`'s maintained, constant-time `Scalar` arithmetic).
//!
//! A 32-byte secret is split into two 16-byte chunks; each chunk (< 2¹²⁸ < ℓ) is shared with an
//! independent random polynomial of degree t − 1. The share of holder `id` is the evaluation at
//! x = id + 1 (never zero), so the share index is bound to the holder's client id rather than
//! to anything an untrusted payload says. Fewer than t shares reveal nothing about a chunk.
//!
//! ```
//! use battery_fl_core::secagg::shamir::{reconstruct, split};
//! use rand::SeedableRng;
//!
//! let mut rng = rand_chacha::ChaCha20Rng::from_seed([4; 32]);
//! let secret = [42u8; 32];
//! let holders = [10u64, 11, 12, 13, 14];
//! let shares = split(&secret, 3, &holders, &mut rng)?;
//! let some: Vec<_> = [0, 2, 4].iter().map(|&i| (holders[i], shares[i].clone())).collect();
//! assert_eq!(reconstruct(&some, 3)?, secret);
//! assert!(reconstruct(&some[..2], 3).is_err());
//! # Ok::<(), battery_fl_core::Error>(())
//! ```

use std::collections::BTreeSet;

use curve25519_dalek::scalar::Scalar;
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use super::ClientId;
use crate::error::{Error, Result};

/// Chunks per 32-byte secret.
const CHUNKS: usize = 2;

/// Bytes of an encoded [`SecretShare`].
pub const SHARE_BYTES: usize = 32 * CHUNKS;

/// One holder's share of a 32-byte secret: one canonical field element per 16-byte chunk.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretShare {
    chunks: [[u8; 32]; CHUNKS],
}

impl std::fmt::Debug for SecretShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretShare(<redacted>)")
    }
}

impl Drop for SecretShare {
    fn drop(&mut self) {
        self.chunks.zeroize();
    }
}

fn bad_share(reason: impl Into<String>) -> Error {
    Error::SecAgg {
        stage: "shamir".into(),
        reason: reason.into(),
    }
}

impl SecretShare {
    /// The 64-byte encoding (two canonical little-endian field elements).
    pub fn to_bytes(&self) -> [u8; SHARE_BYTES] {
        let mut out = [0u8; SHARE_BYTES];
        out[..32].copy_from_slice(&self.chunks[0]);
        out[32..].copy_from_slice(&self.chunks[1]);
        out
    }

    /// Decode 64 bytes; rejects a wrong length and non-canonical field elements.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != SHARE_BYTES {
            return Err(bad_share(format!(
                "share must be {SHARE_BYTES} bytes, got {}",
                bytes.len()
            )));
        }
        let mut chunks = [[0u8; 32]; CHUNKS];
        for (c, src) in chunks.iter_mut().zip(bytes.chunks_exact(32)) {
            c.copy_from_slice(src);
            if Option::<Scalar>::from(Scalar::from_canonical_bytes(*c)).is_none() {
                return Err(bad_share("share is not a canonical field element"));
            }
        }
        Ok(SecretShare { chunks })
    }

    fn scalar(&self, i: usize) -> Result<Scalar> {
        Option::from(Scalar::from_canonical_bytes(self.chunks[i]))
            .ok_or_else(|| bad_share("share is not a canonical field element"))
    }
}

/// The evaluation point of holder `id`: id + 1 in the field (never zero).
fn x_of(id: ClientId) -> Scalar {
    Scalar::from(id) + Scalar::ONE
}

fn random_scalar<R: RngCore + CryptoRng>(rng: &mut R) -> Scalar {
    let mut wide = [0u8; 64];
    rng.fill_bytes(&mut wide);
    let s = Scalar::from_bytes_mod_order_wide(&wide);
    wide.zeroize();
    s
}

/// Split `secret` into one share per holder (in the order of `holders`), any `threshold` of
/// which reconstruct it.
pub fn split<R: RngCore + CryptoRng>(
    secret: &[u8; 32],
    threshold: usize,
    holders: &[ClientId],
    rng: &mut R,
) -> Result<Vec<SecretShare>> {
    if threshold == 0 || threshold > holders.len() {
        return Err(Error::config(
            "threshold",
            format!("need 1 <= t <= {} holders, got {threshold}", holders.len()),
        ));
    }
    let distinct: BTreeSet<_> = holders.iter().collect();
    if distinct.len() != holders.len() {
        return Err(bad_share("duplicate holder"));
    }
    let mut shares = vec![[[0u8; 32]; CHUNKS]; holders.len()];
    for c in 0..CHUNKS {
        let mut chunk = [0u8; 32];
        chunk[..16].copy_from_slice(&secret[16 * c..16 * (c + 1)]);
        // coefficients a_0 = chunk, a_1..a_{t-1} random
        let mut coeffs = Vec::with_capacity(threshold);
        coeffs.push(Scalar::from_bytes_mod_order(chunk));
        chunk.zeroize();
        for _ in 1..threshold {
            coeffs.push(random_scalar(rng));
        }
        for (share, &id) in shares.iter_mut().zip(holders) {
            let x = x_of(id);
            let y = coeffs.iter().rev().fold(Scalar::ZERO, |acc, a| acc * x + a);
            share[c] = y.to_bytes();
        }
        coeffs.zeroize();
    }
    Ok(shares
        .into_iter()
        .map(|chunks| SecretShare { chunks })
        .collect())
}

/// Reconstruct a secret from at least `threshold` shares `(holder id, share)`; exactly the
/// first `threshold` (by holder id) are used. Fewer shares give
/// [`Error::BelowThreshold`]; duplicate holders or a result that is not a valid 16-byte chunk
/// (inconsistent shares) give [`Error::SecAgg`].
pub fn reconstruct(shares: &[(ClientId, SecretShare)], threshold: usize) -> Result<[u8; 32]> {
    if threshold == 0 || shares.len() < threshold {
        return Err(Error::BelowThreshold {
            stage: "reconstruct".into(),
            needed: threshold.max(1),
            got: shares.len(),
        });
    }
    let mut sorted: Vec<&(ClientId, SecretShare)> = shares.iter().collect();
    sorted.sort_by_key(|(id, _)| *id);
    if sorted.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(bad_share("duplicate holder"));
    }
    let used = &sorted[..threshold];
    let xs: Vec<Scalar> = used.iter().map(|(id, _)| x_of(*id)).collect();
    // Lagrange coefficients at 0: λ_i = Π_{j≠i} x_j / (x_j − x_i)
    let mut nums = vec![Scalar::ONE; threshold];
    let mut dens = vec![Scalar::ONE; threshold];
    for i in 0..threshold {
        for j in 0..threshold {
            if i != j {
                nums[i] *= xs[j];
                dens[i] *= xs[j] - xs[i];
            }
        }
    }
    Scalar::invert_batch_alloc(&mut dens);
    let lambdas: Vec<Scalar> = nums.iter().zip(&dens).map(|(n, d)| n * d).collect();
    let mut secret = [0u8; 32];
    for c in 0..CHUNKS {
        let mut acc = Scalar::ZERO;
        for ((_, share), l) in used.iter().zip(&lambdas) {
            acc += share.scalar(c)? * l;
        }
        let bytes = acc.to_bytes();
        if bytes[16..].iter().any(|&b| b != 0) {
            return Err(bad_share(
                "inconsistent shares: reconstructed chunk out of range",
            ));
        }
        secret[16 * c..16 * (c + 1)].copy_from_slice(&bytes[..16]);
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::*;

    fn secret(seed: u8) -> [u8; 32] {
        let mut s = [0u8; 32];
        for (i, b) in s.iter_mut().enumerate() {
            *b = seed
                .wrapping_mul(31)
                .wrapping_add((i as u8).wrapping_mul(17))
                ^ 0xa5;
        }
        s
    }

    #[test]
    fn exactly_t_shares_reconstruct_any_subset() -> Result<()> {
        let mut rng = ChaCha20Rng::from_seed([1; 32]);
        for (n, t) in [
            (3usize, 2usize),
            (5, 3),
            (10, 7),
            (20, 11),
            (13, 13),
            (4, 1),
        ] {
            let holders: Vec<ClientId> = (0..n as u64).map(|i| 5 + 3 * i).collect();
            let s = secret(n as u8);
            let shares = split(&s, t, &holders, &mut rng)?;
            // several subsets of exactly t shares, taken from different ends
            for start in 0..=(n - t) {
                let sub: Vec<_> = (start..start + t)
                    .map(|i| (holders[i], shares[i].clone()))
                    .collect();
                assert_eq!(reconstruct(&sub, t)?, s, "n={n} t={t} start={start}");
            }
            // all shares (more than t) also work
            let all: Vec<_> = holders
                .iter()
                .copied()
                .zip(shares.iter().cloned())
                .collect();
            assert_eq!(reconstruct(&all, t)?, s);
        }
        Ok(())
    }

    #[test]
    fn t_minus_one_shares_do_not_reconstruct() -> Result<()> {
        let mut rng = ChaCha20Rng::from_seed([2; 32]);
        let holders: Vec<ClientId> = (0..10).collect();
        let s = [0x11u8; 32];
        let t = 6;
        let shares = split(&s, t, &holders, &mut rng)?;
        let sub: Vec<_> = (0..t - 1)
            .map(|i| (holders[i], shares[i].clone()))
            .collect();
        assert!(matches!(
            reconstruct(&sub, t),
            Err(Error::BelowThreshold {
                needed: 6,
                got: 5,
                ..
            })
        ));
        // interpolating t-1 points as if the threshold were t-1 gives garbage (or an error)
        if let Ok(v) = reconstruct(&sub, t - 1) {
            assert_ne!(v, s);
        }
        Ok(())
    }

    #[test]
    fn shares_encode_and_reject_garbage() -> Result<()> {
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        let shares = split(&[9; 32], 2, &[1, 2, 3], &mut rng)?;
        let b = shares[0].to_bytes();
        assert_eq!(SecretShare::from_bytes(&b)?, shares[0]);
        assert!(SecretShare::from_bytes(&b[..63]).is_err());
        assert!(SecretShare::from_bytes(&[0xff; 64]).is_err());
        Ok(())
    }

    #[test]
    fn tampered_share_is_detected_or_wrong() -> Result<()> {
        let mut rng = ChaCha20Rng::from_seed([4; 32]);
        let s = [0x42u8; 32];
        let holders = [1, 2, 3];
        let shares = split(&s, 3, &holders, &mut rng)?;
        let mut bad = shares[1].to_bytes();
        bad[0] ^= 1;
        let sub = vec![
            (1, shares[0].clone()),
            (2, SecretShare::from_bytes(&bad)?),
            (3, shares[2].clone()),
        ];
        // a modified share shifts the chunk by a Lagrange coefficient: out of range (error) or
        // a wrong secret, never the right one. (The server additionally checks reconstructed
        // mask keys against the advertised public keys.)
        if let Ok(v) = reconstruct(&sub, 3) {
            assert_ne!(v, s);
        }
        Ok(())
    }

    #[test]
    fn rejects_bad_arguments() {
        let mut rng = ChaCha20Rng::from_seed([5; 32]);
        assert!(split(&[0; 32], 0, &[1, 2], &mut rng).is_err());
        assert!(split(&[0; 32], 3, &[1, 2], &mut rng).is_err());
        assert!(split(&[0; 32], 2, &[1, 1], &mut rng).is_err());
    }
}
