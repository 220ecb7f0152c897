//! Key agreement (X25519), key derivation (HKDF-SHA256 with domain separation) and share
//! encryption (ChaCha20-Poly1305 with associated data).
//!
//! Every derived key is `HKDF-SHA256(ikm, salt = none, info)` with
//! `info = "secagg+/v2" ‖ len(purpose) ‖ purpose ‖ run ‖ round ‖ min(u, v) ‖ max(u, v)`
//! (integers as 8-byte big endian), so keys for different purposes, runs, rounds or pairs are
//! independent (round numbers restart in every run: the run id keeps two runs apart).
//! Share ciphertexts are `ChaCha20-Poly1305(key, nonce = src (8 B LE) ‖ 0⁴,
//! ad = "secagg+/v2" ‖ run ‖ round ‖ src ‖ dst)`; each key is used once per direction.
//!
//! ```
//! use battery_fl_core::secagg::crypto::{agree, derive_key, KeyPair, Purpose};
//!
//! let (a, b) = (KeyPair::from_seed([1; 32]), KeyPair::from_seed([2; 32]));
//! let ab = agree(&a, &b.public_bytes())?;
//! let ba = agree(&b, &a.public_bytes())?;
//! let k1 = derive_key(&*ab, Purpose::Mask, 0, 7, 1, 2)?;
//! assert_eq!(*k1, *derive_key(&*ba, Purpose::Mask, 0, 7, 2, 1)?); // symmetric in (u, v)
//! assert_ne!(*k1, *derive_key(&*ab, Purpose::ShareEncryption, 0, 7, 1, 2)?); // purpose
//! assert_ne!(*k1, *derive_key(&*ab, Purpose::Mask, 0, 8, 1, 2)?); // round
//! assert_ne!(*k1, *derive_key(&*ab, Purpose::Mask, 1, 7, 1, 2)?); // run
//! # Ok::<(), battery_fl_core::Error>(())
//! ```

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::ChaCha20Poly1305;
use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::ClientId;
use crate::error::{Error, Result};

/// Protocol and version label that prefixes every KDF info and AEAD associated data.
pub const DOMAIN: &[u8] = b"secagg+/v2";

/// What a derived key is for (part of the KDF info).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Pairwise mask seed s_{u,v} from the mask key pairs.
    Mask,
    /// Share-encryption key from the encryption key pairs.
    ShareEncryption,
    /// Self-mask seed from the private seed b_u (u = v).
    SelfMask,
    /// Seed of the stochastic-rounding randomness (from the client's local seed; u = v).
    Rounding,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::Mask => b"mask",
            Purpose::ShareEncryption => b"share-enc",
            Purpose::SelfMask => b"self-mask",
            Purpose::Rounding => b"rounding",
        }
    }
}

fn crypto_error(stage: &str, reason: impl Into<String>) -> Error {
    Error::SecAgg {
        stage: stage.into(),
        reason: reason.into(),
    }
}

/// An X25519 key pair (fresh per round and purpose).
#[derive(Clone)]
pub struct KeyPair {
    secret: StaticSecret,
    public: PublicKey,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", self.public.as_bytes())
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// The key pair of a 32-byte secret (which must come from a CSPRNG and never be reused).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let secret = StaticSecret::from(seed);
        let public = PublicKey::from(&secret);
        KeyPair { secret, public }
    }

    /// The public key bytes.
    pub fn public_bytes(&self) -> [u8; 32] {
        self.public.to_bytes()
    }

    /// The secret key bytes (what gets Shamir-shared for the mask key pair).
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.secret.to_bytes())
    }
}

/// X25519 agreement of our key pair with a peer's public key. Rejects non-contributory
/// (low-order) public keys, which would give a predictable shared secret.
pub fn agree(ours: &KeyPair, their_public: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>> {
    let shared = ours.secret.diffie_hellman(&PublicKey::from(*their_public));
    if !shared.was_contributory() {
        return Err(crypto_error(
            "key_agreement",
            "peer public key has low order",
        ));
    }
    Ok(Zeroizing::new(shared.to_bytes()))
}

/// `HKDF-SHA256(ikm, info = "secagg+/v2" ‖ purpose ‖ run ‖ round ‖ min(u,v) ‖ max(u,v))`,
/// 32 bytes.
pub fn derive_key(
    ikm: &[u8],
    purpose: Purpose,
    run: u64,
    round: u64,
    u: ClientId,
    v: ClientId,
) -> Result<Zeroizing<[u8; 32]>> {
    let label = purpose.label();
    let mut info = Vec::with_capacity(DOMAIN.len() + 1 + label.len() + 32);
    info.extend_from_slice(DOMAIN);
    info.push(label.len() as u8);
    info.extend_from_slice(label);
    info.extend_from_slice(&run.to_be_bytes());
    info.extend_from_slice(&round.to_be_bytes());
    info.extend_from_slice(&u.min(v).to_be_bytes());
    info.extend_from_slice(&u.max(v).to_be_bytes());
    let mut okm = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(None, ikm)
        .expand(&info, &mut okm[..])
        .map_err(|_| crypto_error("kdf", "HKDF output length rejected"))?;
    Ok(okm)
}

fn associated_data(run: u64, round: u64, src: ClientId, dst: ClientId) -> Vec<u8> {
    let mut ad = Vec::with_capacity(DOMAIN.len() + 32);
    ad.extend_from_slice(DOMAIN);
    ad.extend_from_slice(&run.to_be_bytes());
    ad.extend_from_slice(&round.to_be_bytes());
    ad.extend_from_slice(&src.to_be_bytes());
    ad.extend_from_slice(&dst.to_be_bytes());
    ad
}

fn nonce(src: ClientId) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&src.to_le_bytes());
    n
}

/// Encrypt a share bundle from `src` to `dst` under `key` (AD binds run, round, src, dst).
pub fn seal(
    key: &[u8; 32],
    run: u64,
    round: u64,
    src: ClientId,
    dst: ClientId,
    msg: &[u8],
) -> Result<Vec<u8>> {
    let cipher = ChaCha20Poly1305::new(&(*key).into());
    let ad = associated_data(run, round, src, dst);
    cipher
        .encrypt(&nonce(src).into(), Payload { msg, aad: &ad })
        .map_err(|_| crypto_error("share_keys", "encryption failed"))
}

/// Decrypt and authenticate a share bundle; any modification of the ciphertext, or a wrong
/// run, round, source or destination, gives [`Error::SecAgg`].
pub fn open(
    key: &[u8; 32],
    run: u64,
    round: u64,
    src: ClientId,
    dst: ClientId,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let cipher = ChaCha20Poly1305::new(&(*key).into());
    let ad = associated_data(run, round, src, dst);
    cipher
        .decrypt(
            &nonce(src).into(),
            Payload {
                msg: ciphertext,
                aad: &ad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| {
            crypto_error(
                "masked_input",
                format!("share ciphertext from client {src} failed authentication"),
            )
        })
}

/// A deterministic CSPRNG over a 32-byte secret seed: block `i` of 256 bytes is
/// `HKDF-SHA256-Expand(prk = seed, info = "secagg+/v2" ‖ "rng" ‖ label ‖ i)`. Unlike a
/// `ChaCha20Rng`, its seed and output buffer are [`Zeroizing`], so no copy of the secret
/// outlives it. Used by the client to draw its round secrets and the Shamir polynomials.
pub(crate) struct SecretRng {
    seed: Zeroizing<[u8; 32]>,
    label: &'static [u8],
    block: u64,
    buf: Zeroizing<[u8; 256]>,
    pos: usize,
    failed: bool,
}

impl SecretRng {
    /// A generator for `label` keyed with `seed`.
    pub(crate) fn new(seed: &[u8; 32], label: &'static [u8]) -> Self {
        SecretRng {
            seed: Zeroizing::new(*seed),
            label,
            block: 0,
            buf: Zeroizing::new([0; 256]),
            pos: 256,
            failed: false,
        }
    }

    /// 32 fresh bytes.
    pub(crate) fn draw(&mut self) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(self, &mut out[..]);
        out
    }

    /// An error if the key expansion ever failed (it cannot for these lengths; checked
    /// instead of panicking inside `fill_bytes`).
    pub(crate) fn check(&self) -> Result<()> {
        if self.failed {
            Err(crypto_error("rng", "HKDF expansion failed"))
        } else {
            Ok(())
        }
    }

    fn refill(&mut self) {
        let mut info = Vec::with_capacity(DOMAIN.len() + 3 + self.label.len() + 8);
        info.extend_from_slice(DOMAIN);
        info.extend_from_slice(b"rng");
        info.extend_from_slice(self.label);
        info.extend_from_slice(&self.block.to_be_bytes());
        let expanded = Hkdf::<Sha256>::from_prk(&self.seed[..])
            .map_err(|_| ())
            .and_then(|h| h.expand(&info, &mut self.buf[..]).map_err(|_| ()));
        if expanded.is_err() {
            self.failed = true;
            self.buf.fill(0);
        }
        self.block = self.block.wrapping_add(1);
        self.pos = 0;
    }
}

impl rand::RngCore for SecretRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        let mut done = 0;
        while done < dst.len() {
            if self.pos == self.buf.len() {
                self.refill();
            }
            let n = (dst.len() - done).min(self.buf.len() - self.pos);
            dst[done..done + n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
            // consumed output is wiped at once
            self.buf[self.pos..self.pos + n].fill(0);
            self.pos += n;
            done += n;
        }
    }
}

impl rand::CryptoRng for SecretRng {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agreement_is_symmetric() -> Result<()> {
        let a = KeyPair::from_seed([5; 32]);
        let b = KeyPair::from_seed([6; 32]);
        assert_eq!(
            *agree(&a, &b.public_bytes())?,
            *agree(&b, &a.public_bytes())?
        );
        Ok(())
    }

    #[test]
    fn secret_rng_is_deterministic_and_separated() -> Result<()> {
        use rand::RngCore;
        let mut a = SecretRng::new(&[9; 32], b"x");
        let mut b = SecretRng::new(&[9; 32], b"x");
        let mut c = SecretRng::new(&[9; 32], b"y");
        let (mut xa, mut xb, mut xc) = ([0u8; 600], [0u8; 600], [0u8; 600]);
        a.fill_bytes(&mut xa[..100]);
        a.fill_bytes(&mut xa[100..]);
        b.fill_bytes(&mut xb);
        c.fill_bytes(&mut xc);
        assert_eq!(xa, xb);
        assert_ne!(xa, xc);
        assert_ne!(xa[..256], xa[256..512]);
        a.check()?;
        Ok(())
    }

    #[test]
    fn low_order_point_rejected() {
        let a = KeyPair::from_seed([5; 32]);
        assert!(agree(&a, &[0u8; 32]).is_err());
    }

    #[test]
    fn key_separation() -> Result<()> {
        let ikm = [3u8; 32];
        let base = derive_key(&ikm, Purpose::Mask, 0, 1, 2, 3)?;
        let variants = [
            derive_key(&ikm, Purpose::ShareEncryption, 0, 1, 2, 3)?,
            derive_key(&ikm, Purpose::SelfMask, 0, 1, 2, 3)?,
            derive_key(&ikm, Purpose::Rounding, 0, 1, 2, 3)?,
            derive_key(&ikm, Purpose::Mask, 0, 2, 2, 3)?,
            derive_key(&ikm, Purpose::Mask, 0, 1, 2, 4)?,
            derive_key(&ikm, Purpose::Mask, 0, 1, 1, 3)?,
            derive_key(&ikm, Purpose::Mask, 1, 1, 2, 3)?,
            derive_key(&[4u8; 32], Purpose::Mask, 0, 1, 2, 3)?,
        ];
        for v in &variants {
            assert_ne!(*base, **v);
        }
        assert_eq!(*base, *derive_key(&ikm, Purpose::Mask, 0, 1, 3, 2)?);
        Ok(())
    }

    #[test]
    fn aead_roundtrip_and_tamper() -> Result<()> {
        let key = [8u8; 32];
        let ct = seal(&key, 6, 4, 1, 2, b"share bundle")?;
        assert_eq!(&open(&key, 6, 4, 1, 2, &ct)?[..], b"share bundle");
        let mut bad = ct.clone();
        bad[3] ^= 0x80;
        assert!(open(&key, 6, 4, 1, 2, &bad).is_err());
        assert!(open(&key, 6, 5, 1, 2, &ct).is_err(), "round is bound");
        assert!(open(&key, 7, 4, 1, 2, &ct).is_err(), "run is bound");
        assert!(open(&key, 6, 4, 2, 1, &ct).is_err(), "direction is bound");
        assert!(open(&key, 6, 4, 1, 3, &ct).is_err(), "destination is bound");
        assert!(open(&key, 6, 4, 1, 2, &ct[..5]).is_err(), "truncated");
        Ok(())
    }
}
