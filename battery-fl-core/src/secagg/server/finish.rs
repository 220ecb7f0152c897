//! Stage 3 on the server: collect the revealed shares, unmask and output.

use std::collections::BTreeSet;

use super::{err, SecAggServer, ServerStage};
use crate::error::Result;
use crate::secagg::encoding::check_range;
use crate::secagg::messages::{ShareKind, UnmaskResponse};
use crate::secagg::prg::apply_masks;
use crate::secagg::unmask::{unmask_terms, AggregateOutput, UnmaskContext};
use crate::secagg::{ClientId, Stage};

impl SecAggServer {
    /// Stage 3: accept the revealed shares of survivor `sender` (`msg.client` must equal it;
    /// checked against what was requested).
    pub fn receive_unmask(&mut self, sender: ClientId, msg: UnmaskResponse) -> Result<()> {
        let stage = Stage::Unmask;
        self.expect(ServerStage::Unmask, stage)?;
        self.check_origin(stage, sender, msg.client, msg.run, msg.round)?;
        let v = msg.client;
        if !self.u3.contains(&v)
            || self.responses.contains_key(&v)
            || (self.pki.is_some() && !self.signatures.contains_key(&v))
        {
            return Err(err(
                stage,
                format!("unexpected or duplicate response from client {v}"),
            ));
        }
        let graph = self.graph_ref(stage)?;
        let mut owners = BTreeSet::new();
        for s in &msg.shares {
            let want = if self.u3.contains(&s.owner) {
                ShareKind::SelfMaskSeed
            } else if self.u2.contains(&s.owner) {
                ShareKind::MaskKey
            } else {
                return Err(err(
                    stage,
                    format!("share of client {} was not requested", s.owner),
                ));
            };
            if s.kind != want || !graph.are_neighbours(v, s.owner) || !owners.insert(s.owner) {
                return Err(err(
                    stage,
                    format!("bad share of client {} from client {v}", s.owner),
                ));
            }
        }
        self.responses.insert(v, msg);
        Ok(())
    }

    /// End stage 3: reconstruct the self-mask seeds of U3 and the mask keys of U2 \ U3, remove
    /// all remaining masks and output the exact sum. Fails with
    /// [`Error::BelowThreshold`](crate::Error::BelowThreshold) (and outputs nothing, ever) if
    /// any of these secrets has fewer than t shares, and with
    /// [`Error::SecAgg`](crate::Error::SecAgg) (stage `decode`) if the unmasked sum is out of
    /// the range |U3| well-formed encodings can reach (see
    /// [`check_range`](crate::secagg::encoding::check_range)).
    pub fn finish(&mut self) -> Result<AggregateOutput> {
        let stage = Stage::Unmask;
        self.expect(ServerStage::Unmask, stage)?;
        let ctx = UnmaskContext {
            run: self.setup.run,
            round: self.setup.round,
            threshold: self.setup.config.t(),
            graph: self.graph_ref(stage)?,
            keys: &self.keys,
            u2: &self.u2,
            u3: &self.u3,
            responses: &self.responses,
        };
        match unmask_terms(&ctx) {
            Ok(terms) => {
                let bits = self.setup.config.modulus_bits;
                let mut sum = std::mem::take(&mut self.sum);
                if let Err(e) = apply_masks(&mut sum, &terms, bits) {
                    return self.fail(e);
                }
                if let Err(e) = check_range(&self.setup.config, &sum, self.u3.len()) {
                    return self.fail(e);
                }
                self.stage = ServerStage::Done;
                self.responses.clear();
                Ok(AggregateOutput {
                    run: self.setup.run,
                    round: self.setup.round,
                    survivors: self.u3.iter().copied().collect(),
                    encoded_sum: sum,
                    config: self.setup.config.clone(),
                })
            }
            Err(e) => self.fail(e),
        }
    }
}
