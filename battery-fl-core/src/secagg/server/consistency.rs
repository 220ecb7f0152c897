//! The server's side of the consistency check (active-adversary mode).

use std::collections::{BTreeMap, BTreeSet};

use super::{err, SecAggServer, ServerStage};
use crate::error::Result;
use crate::secagg::messages::{ConsistencyCheck, ConsistencySignature, UnmaskRequest};
use crate::secagg::{ClientId, Stage};

impl SecAggServer {
    /// Active-adversary mode: end stage 2 and ask every survivor to sign U3.
    pub fn start_consistency_check(&mut self) -> Result<BTreeMap<ClientId, ConsistencyCheck>> {
        if self.pki.is_none() {
            return Err(err(Stage::MaskedInput, "the consistency check needs a PKI"));
        }
        self.close_masked_input()?;
        let survivors: Vec<ClientId> = self.u3.iter().copied().collect();
        self.stage = ServerStage::ConsistencyCheck;
        Ok(self
            .u3
            .iter()
            .map(|&v| {
                let check = ConsistencyCheck {
                    run: self.setup.run,
                    round: self.setup.round,
                    recipient: v,
                    survivors: survivors.clone(),
                };
                (v, check)
            })
            .collect())
    }

    /// Accept the signature on U3 of survivor `sender` (`msg.client` must equal it;
    /// verified against the PKI).
    pub fn receive_consistency(
        &mut self,
        sender: ClientId,
        msg: ConsistencySignature,
    ) -> Result<()> {
        let stage = Stage::Unmask;
        self.expect(ServerStage::ConsistencyCheck, stage)?;
        self.check_origin(stage, sender, msg.client, msg.run, msg.round)?;
        let v = msg.client;
        if !self.u3.contains(&v) || self.signatures.contains_key(&v) {
            return Err(err(
                stage,
                format!("unexpected or duplicate signature from client {v}"),
            ));
        }
        let survivors: Vec<ClientId> = self.u3.iter().copied().collect();
        let pki = self.pki.as_ref().ok_or_else(|| err(stage, "no PKI"))?;
        let (run, round) = (self.setup.run, self.setup.round);
        pki.verify_survivors(v, run, round, &survivors, &msg.signature)?;
        self.signatures.insert(v, msg);
        Ok(())
    }

    /// End the consistency check: with at least t signatures on U3 (and t signers in every
    /// neighbourhood of U2), send the unmask requests, with all signatures, to the signers.
    pub fn finish_consistency_check(&mut self) -> Result<BTreeMap<ClientId, UnmaskRequest>> {
        let stage = Stage::Unmask;
        self.expect(ServerStage::ConsistencyCheck, stage)?;
        let signers: BTreeSet<ClientId> = self.signatures.keys().copied().collect();
        let u2 = self.u2.clone();
        if let Err(e) = self.check_live(stage, &u2, &signers) {
            return self.fail(e);
        }
        let sigs: Vec<ConsistencySignature> = self.signatures.values().cloned().collect();
        let out = self.unmask_requests(&signers, &sigs)?;
        self.stage = ServerStage::Unmask;
        Ok(out)
    }
}
