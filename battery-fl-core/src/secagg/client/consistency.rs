//! The client's side of the consistency check (active-adversary mode).

use std::collections::BTreeSet;

use super::{err, ClientStage, SecAggClient};
use crate::error::{Error, Result};
use crate::secagg::messages::{ConsistencyCheck, ConsistencySignature, UnmaskRequest};
use crate::secagg::{ClientId, Stage};

impl SecAggClient {
    /// Consistency check (active-adversary mode only): sign the survivor set U3 announced by
    /// the server. Refuses a set that is unsorted, has fewer than t clients or omits this
    /// client, and any second, different set in the same round.
    pub fn consistency_check(&mut self, check: &ConsistencyCheck) -> Result<ConsistencySignature> {
        let stage = Stage::Unmask;
        self.check_header(check.run, check.round, check.recipient, stage)?;
        let Some((identity, _)) = &self.identity else {
            return Err(err(stage, "no identity: the consistency check needs a PKI"));
        };
        if let Some((signed, signature)) = &self.signed_survivors {
            if *signed != check.survivors {
                return Err(err(
                    stage,
                    "refusing to sign a second, different survivor set",
                ));
            }
            let signature = signature.clone();
            return Ok(ConsistencySignature {
                run: self.setup.run,
                round: self.setup.round,
                client: self.id,
                signature,
            });
        }
        self.expect_stage(&[ClientStage::InputSent], stage)?;
        let s = &check.survivors;
        if s.windows(2).any(|w| w[0] >= w[1]) || s.binary_search(&self.id).is_err() {
            return Err(err(
                stage,
                "survivor set must be sorted, unique and contain this client",
            ));
        }
        let t = self.setup.config.t();
        if s.len() < t {
            return Err(Error::BelowThreshold {
                stage: stage.name().into(),
                needed: t,
                got: s.len(),
            });
        }
        let signature = identity.sign_survivors(self.setup.run, self.setup.round, s)?;
        self.signed_survivors = Some((s.clone(), signature.clone()));
        self.stage = ClientStage::Signed;
        Ok(ConsistencySignature {
            run: self.setup.run,
            round: self.setup.round,
            client: self.id,
            signature,
        })
    }

    /// In active-adversary mode: the request must carry t valid signatures on the U3 this
    /// client signed, and classify exactly the neighbours it masked with by that U3.
    pub(super) fn check_signed_request(&self, request: &UnmaskRequest) -> Result<()> {
        let stage = Stage::Unmask;
        let (Some((_, pki)), Some((u3, _))) = (&self.identity, &self.signed_survivors) else {
            return Err(err(stage, "consistency check missing"));
        };
        let (run, round) = (self.setup.run, self.setup.round);
        let mut signers = BTreeSet::new();
        for sig in &request.signatures {
            if sig.run == run
                && sig.round == round
                && u3.binary_search(&sig.client).is_ok()
                && pki
                    .verify_survivors(sig.client, run, round, u3, &sig.signature)
                    .is_ok()
            {
                signers.insert(sig.client);
            }
        }
        let t = self.setup.config.t();
        if signers.len() < t {
            return Err(Error::BelowThreshold {
                stage: stage.name().into(),
                needed: t,
                got: signers.len(),
            });
        }
        let alive: BTreeSet<ClientId> = self
            .held
            .keys()
            .copied()
            .filter(|v| u3.binary_search(v).is_ok())
            .collect();
        let dropped: BTreeSet<ClientId> = self
            .held
            .keys()
            .copied()
            .filter(|v| u3.binary_search(v).is_err())
            .collect();
        let asked_alive: BTreeSet<ClientId> = request.alive.iter().copied().collect();
        let asked_dropped: BTreeSet<ClientId> = request.dropped.iter().copied().collect();
        if asked_alive != alive || asked_dropped != dropped {
            return Err(err(
                stage,
                "unmask request is inconsistent with the signed survivor set",
            ));
        }
        Ok(())
    }
}
