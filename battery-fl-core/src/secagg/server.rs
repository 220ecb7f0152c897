//! [`SecAggServer`]: the server's state machine for one round, with explicit
//! U1 ⊇ U2 ⊇ U3 bookkeeping.
//!
//! - U1: clients whose keys arrived (stage 0). The Harary graph is built over U1 only, so a
//!   stage-0 dropout never enters it.
//! - U2: clients whose shares arrived (stage 1). Clients in U1 \ U2 are left out of the masking
//!   graph: their shares are never forwarded to them, nobody masks with them, and nobody is ever
//!   asked about them.
//! - U3: clients whose masked inputs arrived (stage 2). Unmasking asks for self-mask-seed shares
//!   of U3 and mask-key shares of U2 \ U3 only.
//!
//! Every `receive_*` method takes the transport's authenticated `sender` first and refuses a
//! message whose `client` field (or, for [`ShareKeys`], any envelope's `src`) names another
//! client, or that belongs to another run or round; a refused message leaves the state
//! unchanged.
//!
//! After every stage the server checks that every client that still matters has at least t
//! live neighbours (itself included); otherwise the round stops with
//! [`Error::BelowThreshold`] and nothing is output. Before unmasking it also checks that the
//! graph induced on U3 is connected, so no partial sum of a component can be learned.

use std::collections::{BTreeMap, BTreeSet};

use rayon::prelude::*;

use super::config::SecAggConfig;
use super::graph::CommGraph;
use super::identity::Pki;
use super::messages::{
    AdvertiseKeys, ConsistencySignature, ForwardedShares, KeyDirectory, MaskedInput, PeerKeys,
    Setup, ShareKeys, UnmaskRequest, UnmaskResponse,
};
use super::{ClientId, Stage};
use crate::error::{Error, Result};

mod consistency;
mod finish;

/// Where the server is in the round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerStage {
    /// Collecting [`AdvertiseKeys`].
    AdvertiseKeys,
    /// Collecting [`ShareKeys`].
    ShareKeys,
    /// Collecting [`MaskedInput`].
    MaskedInput,
    /// Collecting [`ConsistencySignature`]s (active-adversary mode).
    ConsistencyCheck,
    /// Collecting [`UnmaskResponse`].
    Unmask,
    /// The aggregate was output.
    Done,
    /// The round failed; nothing will be output.
    Failed,
}

/// The server's side of one SecAgg+ round.
#[derive(Debug, Clone)]
pub struct SecAggServer {
    setup: Setup,
    dim: usize,
    sampled: BTreeSet<ClientId>,
    graph_seed: [u8; 32],
    stage: ServerStage,
    keys: BTreeMap<ClientId, AdvertiseKeys>,
    graph: Option<CommGraph>,
    u1: BTreeSet<ClientId>,
    u2: BTreeSet<ClientId>,
    u3: BTreeSet<ClientId>,
    share_msgs: BTreeMap<ClientId, ShareKeys>,
    sum: Vec<u64>,
    responses: BTreeMap<ClientId, UnmaskResponse>,
    pki: Option<Pki>,
    signatures: BTreeMap<ClientId, ConsistencySignature>,
}

fn err(stage: Stage, reason: impl Into<String>) -> Error {
    Error::SecAgg {
        stage: stage.name().into(),
        reason: reason.into(),
    }
}

impl SecAggServer {
    /// A server for round `round` over the sampled `clients` (at most `config.num_clients`),
    /// aggregating vectors of length `dim`. `seed` is the server's secret randomness for the
    /// graph permutation.
    pub fn new(
        config: SecAggConfig,
        round: u64,
        dim: usize,
        clients: &[ClientId],
        seed: [u8; 32],
    ) -> Result<Self> {
        config.validate()?;
        let sampled: BTreeSet<ClientId> = clients.iter().copied().collect();
        if sampled.len() != clients.len() {
            return Err(Error::config("clients", "duplicate client id"));
        }
        if sampled.len() > config.num_clients {
            return Err(Error::config(
                "clients",
                format!(
                    "{} clients exceed num_clients = {}",
                    sampled.len(),
                    config.num_clients
                ),
            ));
        }
        if sampled.len() < config.t() {
            return Err(Error::BelowThreshold {
                stage: "setup".into(),
                needed: config.t(),
                got: sampled.len(),
            });
        }
        Ok(SecAggServer {
            setup: Setup {
                run: 0,
                round,
                dim: dim as u64,
                config,
            },
            dim,
            sampled,
            graph_seed: seed,
            stage: ServerStage::AdvertiseKeys,
            keys: BTreeMap::new(),
            graph: None,
            u1: BTreeSet::new(),
            u2: BTreeSet::new(),
            u3: BTreeSet::new(),
            share_msgs: BTreeMap::new(),
            sum: Vec::new(),
            responses: BTreeMap::new(),
            pki: None,
            signatures: BTreeMap::new(),
        })
    }

    /// Set the run id (default 0), bound into every key, ciphertext and signature of the round
    /// and checked in every message: use a fresh id per run (federation, experiment) so that
    /// messages of one run cannot be replayed into another whose round numbers restart at the
    /// same values. Call before sending [`setup`](Self::setup).
    pub fn with_run(mut self, run: u64) -> Self {
        self.setup.run = run;
        self
    }

    /// Active-adversary mode: require clients' key advertisements to be signed under `pki`
    /// and run the consistency check before unmasking. Call before stage 0.
    pub fn with_pki(mut self, pki: Pki) -> Self {
        self.pki = Some(pki);
        self
    }

    /// The setup message to send to every sampled client.
    pub fn setup(&self) -> Setup {
        self.setup.clone()
    }

    /// The current stage.
    pub fn stage(&self) -> ServerStage {
        self.stage
    }

    /// U1: clients that advertised keys (empty before stage 0 ends).
    pub fn u1(&self) -> &BTreeSet<ClientId> {
        &self.u1
    }

    /// U2: clients that shared keys.
    pub fn u2(&self) -> &BTreeSet<ClientId> {
        &self.u2
    }

    /// U3: clients whose masked input is in the sum.
    pub fn u3(&self) -> &BTreeSet<ClientId> {
        &self.u3
    }

    /// The communication graph (after stage 0).
    pub fn graph(&self) -> Option<&CommGraph> {
        self.graph.as_ref()
    }

    fn expect(&self, want: ServerStage, stage: Stage) -> Result<()> {
        if self.stage == want {
            Ok(())
        } else {
            Err(err(stage, format!("server is in stage {:?}", self.stage)))
        }
    }

    fn graph_ref(&self, stage: Stage) -> Result<&CommGraph> {
        self.graph
            .as_ref()
            .ok_or_else(|| err(stage, "no communication graph"))
    }

    /// Every client in `nodes` must keep at least t neighbours (itself included) in `live`.
    fn check_live(
        &self,
        stage: Stage,
        nodes: &BTreeSet<ClientId>,
        live: &BTreeSet<ClientId>,
    ) -> Result<()> {
        let t = self.setup.config.t();
        if live.len() < t {
            return Err(Error::BelowThreshold {
                stage: stage.name().into(),
                needed: t,
                got: live.len(),
            });
        }
        let graph = self.graph_ref(stage)?;
        for &u in nodes {
            let got = graph
                .neighbours(u)
                .iter()
                .filter(|v| live.contains(v))
                .count();
            if got < t {
                return Err(Error::BelowThreshold {
                    stage: stage.name().into(),
                    needed: t,
                    got,
                });
            }
        }
        Ok(())
    }

    /// The transport's `sender` must be the `client` the message claims to come from, and the
    /// message must belong to this run and round.
    fn check_origin(
        &self,
        stage: Stage,
        sender: ClientId,
        client: ClientId,
        run: u64,
        round: u64,
    ) -> Result<()> {
        if client != sender {
            return Err(err(
                stage,
                format!("client {sender} sent a message in the name of client {client}"),
            ));
        }
        if run != self.setup.run || round != self.setup.round {
            return Err(err(
                stage,
                format!(
                    "message of run {run}, round {round} from client {sender}; this is run {}, \
                     round {}",
                    self.setup.run, self.setup.round
                ),
            ));
        }
        Ok(())
    }

    fn fail<T>(&mut self, e: Error) -> Result<T> {
        self.stage = ServerStage::Failed;
        self.sum = Vec::new();
        Err(e)
    }

    /// Stage 0: accept the public keys of client `sender` (the id the transport
    /// authenticated; `msg.client` must equal it).
    pub fn receive_keys(&mut self, sender: ClientId, msg: AdvertiseKeys) -> Result<()> {
        let stage = Stage::AdvertiseKeys;
        self.expect(ServerStage::AdvertiseKeys, stage)?;
        self.check_origin(stage, sender, msg.client, msg.run, msg.round)?;
        if !self.sampled.contains(&msg.client) {
            return Err(err(
                stage,
                format!("unexpected keys from client {}", msg.client),
            ));
        }
        if self.keys.contains_key(&msg.client) {
            return Err(err(
                stage,
                format!("duplicate keys from client {}", msg.client),
            ));
        }
        let reused = msg.mask_pk == msg.enc_pk
            || self.keys.values().any(|k| {
                [k.mask_pk, k.enc_pk]
                    .iter()
                    .any(|p| *p == msg.mask_pk || *p == msg.enc_pk)
            });
        if reused {
            return Err(err(
                stage,
                format!("client {} reuses a public key", msg.client),
            ));
        }
        if let Some(pki) = &self.pki {
            let (run, r, c) = (msg.run, msg.round, msg.client);
            pki.verify_keys(run, r, c, &msg.mask_pk, &msg.enc_pk, &msg.signature)
                .map_err(|e| err(stage, e.to_string()))?;
        }
        self.keys.insert(msg.client, msg);
        Ok(())
    }

    /// End stage 0: fix U1, build the graph over U1 and return each client's key directory.
    pub fn finish_advertise(&mut self) -> Result<BTreeMap<ClientId, KeyDirectory>> {
        let stage = Stage::AdvertiseKeys;
        self.expect(ServerStage::AdvertiseKeys, stage)?;
        self.u1 = self.keys.keys().copied().collect();
        let t = self.setup.config.t();
        if self.u1.len() < t {
            let got = self.u1.len();
            return self.fail(Error::BelowThreshold {
                stage: stage.name().into(),
                needed: t,
                got,
            });
        }
        let members: Vec<ClientId> = self.u1.iter().copied().collect();
        let graph = match CommGraph::harary(&members, self.setup.config.k(), self.graph_seed) {
            Ok(g) => g,
            Err(e) => return self.fail(e),
        };
        self.graph = Some(graph);
        let u1 = self.u1.clone();
        if let Err(e) = self.check_live(stage, &u1, &u1) {
            return self.fail(e);
        }
        let graph = self.graph_ref(stage)?;
        let mut out = BTreeMap::new();
        for &u in &self.u1 {
            let peers = graph
                .neighbours(u)
                .into_iter()
                .filter_map(|v| self.keys.get(&v))
                .map(|k| PeerKeys {
                    client: k.client,
                    mask_pk: k.mask_pk,
                    enc_pk: k.enc_pk,
                    signature: k.signature.clone(),
                })
                .collect();
            out.insert(
                u,
                KeyDirectory {
                    run: self.setup.run,
                    round: self.setup.round,
                    recipient: u,
                    peers,
                },
            );
        }
        self.stage = ServerStage::ShareKeys;
        Ok(out)
    }

    /// Stage 1: accept the encrypted shares of client `sender` (`msg.client` and every
    /// envelope's `src` must equal it); it must address exactly its neighbours.
    pub fn receive_shares(&mut self, sender: ClientId, msg: ShareKeys) -> Result<()> {
        let stage = Stage::ShareKeys;
        self.expect(ServerStage::ShareKeys, stage)?;
        self.check_origin(stage, sender, msg.client, msg.run, msg.round)?;
        if let Some(e) = msg.envelopes.iter().find(|e| e.src != sender) {
            return Err(err(
                stage,
                format!(
                    "client {sender} sent an envelope in the name of client {}",
                    e.src
                ),
            ));
        }
        let u = msg.client;
        if !self.u1.contains(&u) {
            return Err(err(stage, format!("unexpected shares from client {u}")));
        }
        if self.share_msgs.contains_key(&u) {
            return Err(err(stage, format!("duplicate shares from client {u}")));
        }
        let graph = self.graph_ref(stage)?;
        let expected: BTreeSet<ClientId> = graph
            .neighbours(u)
            .into_iter()
            .filter(|&v| v != u)
            .collect();
        let got: BTreeSet<ClientId> = msg.envelopes.iter().map(|e| e.dst).collect();
        if got != expected
            || got.len() != msg.envelopes.len()
            || msg.envelopes.iter().any(|e| e.src != u)
        {
            return Err(err(
                stage,
                format!("client {u} did not address exactly its neighbours"),
            ));
        }
        self.share_msgs.insert(u, msg);
        Ok(())
    }

    /// End stage 1: fix U2 and forward to each client of U2 the envelopes addressed to it.
    pub fn finish_share_keys(&mut self) -> Result<BTreeMap<ClientId, ForwardedShares>> {
        let stage = Stage::ShareKeys;
        self.expect(ServerStage::ShareKeys, stage)?;
        self.u2 = self.share_msgs.keys().copied().collect();
        let u2 = self.u2.clone();
        if let Err(e) = self.check_live(stage, &u2, &u2) {
            return self.fail(e);
        }
        let mut out: BTreeMap<ClientId, ForwardedShares> = self
            .u2
            .iter()
            .map(|&v| {
                let fwd = ForwardedShares {
                    run: self.setup.run,
                    round: self.setup.round,
                    recipient: v,
                    envelopes: Vec::new(),
                };
                (v, fwd)
            })
            .collect();
        for msg in std::mem::take(&mut self.share_msgs).into_values() {
            for e in msg.envelopes {
                if let Some(f) = out.get_mut(&e.dst) {
                    f.envelopes.push(e);
                }
            }
        }
        self.sum = vec![0; self.dim + 1];
        self.stage = ServerStage::MaskedInput;
        Ok(out)
    }

    /// Stage 2: add the masked input of client `sender` (`msg.client` must equal it) to the
    /// running sum (mod 2^b).
    pub fn receive_masked_input(&mut self, sender: ClientId, msg: &MaskedInput) -> Result<()> {
        let stage = Stage::MaskedInput;
        self.expect(ServerStage::MaskedInput, stage)?;
        self.check_origin(stage, sender, msg.client, msg.run, msg.round)?;
        let u = msg.client;
        if !self.u2.contains(&u) || self.u3.contains(&u) {
            return Err(err(
                stage,
                format!("unexpected or duplicate masked input from client {u}"),
            ));
        }
        let bits = self.setup.config.modulus_bits;
        if msg.modulus_bits != bits {
            return Err(err(
                stage,
                format!("modulus 2^{} instead of 2^{bits}", msg.modulus_bits),
            ));
        }
        if msg.values.len() != self.dim + 1 {
            return Err(Error::Shape {
                what: format!("masked input of client {u}"),
                expected: vec![self.dim + 1],
                got: vec![msg.values.len()],
            });
        }
        let mask = self.setup.config.modulus_mask();
        if msg.values.iter().any(|&v| v > mask) {
            return Err(err(
                stage,
                format!("masked input of client {u} is not reduced mod 2^{bits}"),
            ));
        }
        self.sum
            .par_iter_mut()
            .zip(msg.values.par_iter())
            .for_each(|(s, &v)| *s = s.wrapping_add(v) & mask);
        self.u3.insert(u);
        Ok(())
    }

    /// End stage 2: fix U3, check that every client of U2 keeps t live neighbours in U3 and
    /// that the graph on U3 is connected.
    fn close_masked_input(&mut self) -> Result<()> {
        let stage = Stage::MaskedInput;
        self.expect(ServerStage::MaskedInput, stage)?;
        let (u2, u3) = (self.u2.clone(), self.u3.clone());
        if let Err(e) = self.check_live(stage, &u2, &u3) {
            return self.fail(e);
        }
        if !self.graph_ref(stage)?.is_connected_on(&u3) {
            let e = err(
                stage,
                "the graph on the survivors is disconnected: a partial sum would leak",
            );
            return self.fail(e);
        }
        Ok(())
    }

    /// The unmask requests for `recipients` (alive = N(v) ∩ U3, dropped = N(v) ∩ (U2 \ U3)).
    fn unmask_requests(
        &self,
        recipients: &BTreeSet<ClientId>,
        signatures: &[ConsistencySignature],
    ) -> Result<BTreeMap<ClientId, UnmaskRequest>> {
        let graph = self.graph_ref(Stage::Unmask)?;
        let (u2, u3) = (&self.u2, &self.u3);
        let mut out = BTreeMap::new();
        for &v in recipients {
            let nb = graph.neighbours(v);
            let alive = nb.iter().copied().filter(|w| u3.contains(w)).collect();
            let dropped = nb
                .iter()
                .copied()
                .filter(|w| u2.contains(w) && !u3.contains(w))
                .collect();
            let signatures = signatures.to_vec();
            let req = UnmaskRequest {
                run: self.setup.run,
                round: self.setup.round,
                recipient: v,
                alive,
                dropped,
                signatures,
            };
            out.insert(v, req);
        }
        Ok(out)
    }

    /// End stage 2 and ask each survivor for the shares needed to unmask (honest-but-curious
    /// mode; with a PKI use [`start_consistency_check`](Self::start_consistency_check)).
    pub fn finish_masked_input(&mut self) -> Result<BTreeMap<ClientId, UnmaskRequest>> {
        if self.pki.is_some() {
            return Err(err(
                Stage::MaskedInput,
                "with a PKI, run the consistency check first",
            ));
        }
        self.close_masked_input()?;
        let u3 = self.u3.clone();
        let out = self.unmask_requests(&u3, &[])?;
        self.stage = ServerStage::Unmask;
        Ok(out)
    }
}
