//! Ed25519 identities for the active-adversary variant (Bonawitz et al. 2017, §"malicious").
//!
//! With a public-key infrastructure ([`Pki`]: every client's long-term Ed25519 verifying key,
//! distributed out of band), clients sign their round keys (run, round, id, pk_mask, pk_enc) so the
//! server cannot substitute keys, and sign the survivor set U3 in a consistency-check round so
//! the server cannot tell different clients different dropout sets: before unmasking, a
//! client requires t valid signatures on the same U3 it signed, and classifies every neighbour
//! it masked with by that U3 (alive ⇔ in U3) instead of trusting the server's lists.
//!
//! ```
//! use std::collections::BTreeMap;
//! use battery_fl_core::secagg::identity::{Identity, Pki};
//!
//! let alice = Identity::from_seed([1; 32]);
//! let pki = Pki::new(&BTreeMap::from([(7, alice.verifying_key())]))?;
//! let sig = alice.sign_survivors(0, 3, &[1, 7, 9])?;
//! assert!(pki.verify_survivors(7, 0, 3, &[1, 7, 9], &sig).is_ok());
//! assert!(pki.verify_survivors(7, 0, 3, &[1, 7], &sig).is_err());
//! assert!(pki.verify_survivors(7, 1, 3, &[1, 7, 9], &sig).is_err()); // another run
//! # Ok::<(), battery_fl_core::Error>(())
//! ```

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use super::crypto::DOMAIN;
use super::ClientId;
use crate::error::{Error, Result};

fn sig_error(stage: &str, reason: impl Into<String>) -> Error {
    Error::SecAgg {
        stage: stage.into(),
        reason: reason.into(),
    }
}

/// A client's long-term Ed25519 signing key.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("verifying_key", &self.verifying_key())
            .finish_non_exhaustive()
    }
}

fn advert_message(
    run: u64,
    round: u64,
    client: ClientId,
    mask_pk: &[u8; 32],
    enc_pk: &[u8; 32],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 9 + 24 + 64);
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(b"advertise");
    m.extend_from_slice(&run.to_be_bytes());
    m.extend_from_slice(&round.to_be_bytes());
    m.extend_from_slice(&client.to_be_bytes());
    m.extend_from_slice(mask_pk);
    m.extend_from_slice(enc_pk);
    m
}

fn survivors_message(run: u64, round: u64, survivors: &[ClientId]) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 11 + 24 + 8 * survivors.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(b"consistency");
    m.extend_from_slice(&run.to_be_bytes());
    m.extend_from_slice(&round.to_be_bytes());
    m.extend_from_slice(&(survivors.len() as u64).to_be_bytes());
    survivors
        .iter()
        .for_each(|s| m.extend_from_slice(&s.to_be_bytes()));
    m
}

impl Identity {
    /// The identity of a 32-byte Ed25519 secret key.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Identity {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// The verifying (public) key to register in the [`Pki`].
    pub fn verifying_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>> {
        self.key
            .try_sign(msg)
            .map(|s| s.to_bytes().to_vec())
            .map_err(|_| sig_error("sign", "Ed25519 signing failed"))
    }

    /// Sign a key advertisement (run, round, client, pk_mask, pk_enc).
    pub fn sign_keys(
        &self,
        run: u64,
        round: u64,
        client: ClientId,
        mask_pk: &[u8; 32],
        enc_pk: &[u8; 32],
    ) -> Result<Vec<u8>> {
        self.sign(&advert_message(run, round, client, mask_pk, enc_pk))
    }

    /// Sign the survivor set U3 (sorted ids) of a round of a run.
    pub fn sign_survivors(&self, run: u64, round: u64, survivors: &[ClientId]) -> Result<Vec<u8>> {
        self.sign(&survivors_message(run, round, survivors))
    }
}

/// Every client's Ed25519 verifying key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pki {
    keys: BTreeMap<ClientId, VerifyingKey>,
}

impl Pki {
    /// Build from verifying-key bytes; rejects invalid keys.
    pub fn new(keys: &BTreeMap<ClientId, [u8; 32]>) -> Result<Self> {
        let keys = keys
            .iter()
            .map(|(&id, bytes)| {
                VerifyingKey::from_bytes(bytes)
                    .map(|k| (id, k))
                    .map_err(|_| {
                        Error::config("pki", format!("invalid verifying key of client {id}"))
                    })
            })
            .collect::<Result<_>>()?;
        Ok(Pki { keys })
    }

    /// Whether `client` has a registered key.
    pub fn contains(&self, client: ClientId) -> bool {
        self.keys.contains_key(&client)
    }

    fn verify(&self, stage: &str, client: ClientId, msg: &[u8], sig: &[u8]) -> Result<()> {
        let key = self
            .keys
            .get(&client)
            .ok_or_else(|| sig_error(stage, format!("client {client} is not in the PKI")))?;
        let sig: [u8; 64] = sig
            .try_into()
            .map_err(|_| sig_error(stage, format!("malformed signature of client {client}")))?;
        key.verify_strict(msg, &Signature::from_bytes(&sig))
            .map_err(|_| sig_error(stage, format!("invalid signature of client {client}")))
    }

    /// Verify a key advertisement's signature.
    pub fn verify_keys(
        &self,
        run: u64,
        round: u64,
        client: ClientId,
        mask_pk: &[u8; 32],
        enc_pk: &[u8; 32],
        sig: &[u8],
    ) -> Result<()> {
        self.verify(
            "share_keys",
            client,
            &advert_message(run, round, client, mask_pk, enc_pk),
            sig,
        )
    }

    /// Verify a signature on the survivor set U3.
    pub fn verify_survivors(
        &self,
        client: ClientId,
        run: u64,
        round: u64,
        survivors: &[ClientId],
        sig: &[u8],
    ) -> Result<()> {
        let msg = survivors_message(run, round, survivors);
        self.verify("unmask", client, &msg, sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_every_field() -> Result<()> {
        let id = Identity::from_seed([4; 32]);
        let pki = Pki::new(&BTreeMap::from([(1, id.verifying_key())]))?;
        let sig = id.sign_keys(8, 5, 1, &[1; 32], &[2; 32])?;
        pki.verify_keys(8, 5, 1, &[1; 32], &[2; 32], &sig)?;
        assert!(pki.verify_keys(8, 6, 1, &[1; 32], &[2; 32], &sig).is_err());
        assert!(
            pki.verify_keys(9, 5, 1, &[1; 32], &[2; 32], &sig).is_err(),
            "run is bound"
        );
        assert!(pki.verify_keys(8, 5, 1, &[3; 32], &[2; 32], &sig).is_err());
        assert!(pki
            .verify_keys(8, 5, 1, &[1; 32], &[2; 32], &sig[..63])
            .is_err());
        assert!(
            pki.verify_keys(8, 5, 2, &[1; 32], &[2; 32], &sig).is_err(),
            "not in PKI"
        );
        let s = id.sign_survivors(8, 5, &[1, 2])?;
        pki.verify_survivors(1, 8, 5, &[1, 2], &s)?;
        assert!(
            pki.verify_survivors(1, 9, 5, &[1, 2], &s).is_err(),
            "run is bound"
        );
        assert!(
            pki.verify_keys(8, 5, 1, &[1; 32], &[2; 32], &s).is_err(),
            "domain separated"
        );
        Ok(())
    }
}
