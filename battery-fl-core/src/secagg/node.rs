//! [`NodeSession`]: one node's side of a round when each protocol message is handled by a new
//! process (Flower's ClientApp lives for one message), so the node's state must be stored
//! between messages.
//!
//! The session keeps the round secret and, for each stage, the request it answered and its
//! reply. A stage is answered at most once: a byte-identical repeat gets the cached reply,
//! anything else is refused, and stages are answered in order. Without this, a server that
//! sends stage 2 twice gets two inputs masked with the same masks, and their difference
//! reveals the node's update. The weight the node masks is its own, capped by a maximum it
//! pins, never a value from the server's request. [`NodeSession::to_bytes`] holds the round
//! secret: store it only on the node, and drop it when the round ends or aborts.
//!
//! ```
//! use battery_fl_core::secagg::{ClientPolicy, NodeSession, SecAggServer, SecAggConfig, Stage};
//!
//! let server = SecAggServer::new(SecAggConfig::new(3), 1, 4, &[1, 2, 3], [7; 32])?.with_run(9);
//! let setup = server.setup().to_bytes();
//! let (session, keys) = NodeSession::start(1, 9, &setup, [1; 32], &ClientPolicy::default(), None)?;
//! // the same request again gets the same reply; another request for a stage is refused
//! assert_eq!(session.answered(Stage::AdvertiseKeys, &setup)?, Some(keys));
//! assert!(session.answered(Stage::AdvertiseKeys, b"other").is_err());
//! assert!(session.answered(Stage::MaskedInput, b"skips a stage").is_err());
//! # Ok::<(), battery_fl_core::Error>(())
//! ```

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use super::client::SecAggClient;
use super::config::ClientPolicy;
use super::messages::{ForwardedShares, KeyDirectory, Setup, UnmaskRequest};
use super::{ClientId, Stage};
use crate::error::{Error, Result};

/// The stored form of a session (the round secret included).
#[derive(Serialize, Deserialize)]
struct Stored {
    client: ClientId,
    run: u64,
    round: u64,
    seed: [u8; 32],
    policy: ClientPolicy,
    max_weight: f64,
    requests: Vec<Option<Vec<u8>>>,
    replies: Vec<Option<Vec<u8>>>,
}

impl Drop for Stored {
    fn drop(&mut self) {
        self.seed.zeroize();
    }
}

/// One node's answers in one round (see the module docs).
pub struct NodeSession {
    client: ClientId,
    run: u64,
    round: u64,
    seed: Zeroizing<[u8; 32]>,
    policy: ClientPolicy,
    max_weight: f64,
    requests: [Option<Vec<u8>>; 4],
    replies: [Option<Vec<u8>>; 4],
}

impl std::fmt::Debug for NodeSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSession")
            .field("client", &self.client)
            .field("run", &self.run)
            .field("round", &self.round)
            .field(
                "answered",
                &self.replies.iter().filter(|r| r.is_some()).count(),
            )
            .finish_non_exhaustive()
    }
}

fn refuse(stage: Stage, reason: impl Into<String>) -> Error {
    Error::SecAgg {
        stage: stage.name().into(),
        reason: reason.into(),
    }
}

impl NodeSession {
    /// Stage 0: check the server's `setup` against the transport's `run` and this node's
    /// `policy`, and advertise fresh keys. `seed` is the round secret (from the OS CSPRNG).
    /// `max_weight` is the largest weight this node will ever mask (`None`: the setup's W).
    ///
    /// # Errors
    /// [`Error::SecAgg`] for a malformed setup, another run, or one below the policy.
    pub fn start(
        client: ClientId,
        run: u64,
        setup: &[u8],
        seed: [u8; 32],
        policy: &ClientPolicy,
        max_weight: Option<f64>,
    ) -> Result<(Self, Vec<u8>)> {
        let stage = Stage::AdvertiseKeys;
        let decoded = Setup::from_bytes(setup)?;
        if decoded.run != run {
            return Err(refuse(
                stage,
                format!("setup of run {}, this is run {run}", decoded.run),
            ));
        }
        let max_weight = match max_weight {
            Some(w) if w.is_finite() && w > 0.0 => w,
            Some(w) => return Err(Error::config("max_weight", format!("must be > 0, got {w}"))),
            None => decoded.config.max_weight,
        };
        let mut session = NodeSession {
            client,
            run,
            round: decoded.round,
            seed: Zeroizing::new(seed),
            policy: policy.clone(),
            max_weight,
            requests: Default::default(),
            replies: Default::default(),
        };
        let reply = session.client(&decoded)?.advertise_keys()?.to_bytes();
        session.record(stage, setup, &reply);
        Ok((session, reply))
    }

    /// The round this session belongs to.
    pub fn round(&self) -> u64 {
        self.round
    }

    /// The run this session belongs to.
    pub fn run(&self) -> u64 {
        self.run
    }

    /// The fewest survivors whose sum the server of this round can decode (the setup's
    /// Shamir threshold t): a share of distributed noise must be sized for them.
    ///
    /// # Errors
    /// [`Error::SecAgg`] when the stored setup does not decode (never, for a started session).
    pub fn threshold(&self) -> Result<usize> {
        let setup = self.requests[Stage::AdvertiseKeys.index()]
            .as_deref()
            .ok_or_else(|| refuse(Stage::AdvertiseKeys, "no setup"))?;
        Ok(Setup::from_bytes(setup)?.config.t())
    }

    /// True once the node has answered the unmask request (the round is over for it).
    pub fn is_finished(&self) -> bool {
        self.replies[Stage::Unmask.index()].is_some()
    }

    /// Whether `stage` may be answered for `request`: `Some(reply)` when it was answered for
    /// exactly these bytes before (send the same reply again), `None` when it is the next
    /// stage to answer.
    ///
    /// # Errors
    /// [`Error::SecAgg`] when the stage was answered for another request, or an earlier
    /// stage was not answered yet.
    pub fn answered(&self, stage: Stage, request: &[u8]) -> Result<Option<Vec<u8>>> {
        let i = stage.index();
        if let Some(reply) = &self.replies[i] {
            return if self.requests[i].as_deref() == Some(request) {
                Ok(Some(reply.clone()))
            } else {
                Err(refuse(
                    stage,
                    format!(
                        "node {} already answered this stage of round {} (a repeat with another \
                         request is refused)",
                        self.client, self.round
                    ),
                ))
            };
        }
        if i > 0 && self.replies[i - 1].is_none() {
            return Err(refuse(stage, "the previous stage was not answered"));
        }
        Ok(None)
    }

    /// Stage 1: the encrypted shares for the neighbours in `directory`.
    ///
    /// # Errors
    /// As [`answered`](Self::answered) and [`SecAggClient::share_keys`].
    pub fn share_keys(&mut self, directory: &[u8]) -> Result<Vec<u8>> {
        let stage = Stage::ShareKeys;
        if let Some(reply) = self.answered(stage, directory)? {
            return Ok(reply);
        }
        let mut client = self.replay(stage)?;
        let reply = client
            .share_keys(&KeyDirectory::from_bytes(directory)?)?
            .to_bytes();
        self.record(stage, directory, &reply);
        Ok(reply)
    }

    /// Stage 2: mask `vector` with weight `own_weight` (this node's own sample count, capped
    /// at its pinned maximum and the setup's W), or with the full weight W when `None`
    /// (equal weights, as DP and secure sums need).
    ///
    /// # Errors
    /// As [`answered`](Self::answered) and [`SecAggClient::masked_input`];
    /// [`Error::InvalidConfig`] for a negative or non-finite weight.
    pub fn masked_input(
        &mut self,
        forwarded: &[u8],
        vector: &[f32],
        own_weight: Option<f64>,
    ) -> Result<Vec<u8>> {
        let stage = Stage::MaskedInput;
        if let Some(reply) = self.answered(stage, forwarded)? {
            return Ok(reply);
        }
        let mut client = self.replay(stage)?;
        let full = client.max_weight();
        let weight = match own_weight {
            None => full,
            Some(w) if w.is_finite() && w >= 0.0 => w.min(self.max_weight).min(full),
            Some(w) => return Err(Error::config("weight", format!("must be >= 0, got {w}"))),
        };
        let reply = client
            .masked_input(&ForwardedShares::from_bytes(forwarded)?, vector, weight)?
            .to_bytes();
        self.record(stage, forwarded, &reply);
        Ok(reply)
    }

    /// Stage 3: the shares the unmask request asks for (once per round).
    ///
    /// # Errors
    /// As [`answered`](Self::answered) and [`SecAggClient::unmask`].
    pub fn unmask(&mut self, request: &[u8]) -> Result<Vec<u8>> {
        let stage = Stage::Unmask;
        if let Some(reply) = self.answered(stage, request)? {
            return Ok(reply);
        }
        let mut client = self.replay(stage)?;
        let reply = client
            .unmask(&UnmaskRequest::from_bytes(request)?)?
            .to_bytes();
        self.record(stage, request, &reply);
        Ok(reply)
    }

    /// The session as bytes, the round secret included: keep them on the node only.
    pub fn to_bytes(&self) -> Vec<u8> {
        let stored = Stored {
            client: self.client,
            run: self.run,
            round: self.round,
            seed: *self.seed,
            policy: self.policy.clone(),
            max_weight: self.max_weight,
            requests: self.requests.to_vec(),
            replies: self.replies.to_vec(),
        };
        // serializing plain data into a Vec cannot fail
        serde_json::to_vec(&stored).unwrap_or_default()
    }

    /// A session stored by [`to_bytes`](Self::to_bytes).
    ///
    /// # Errors
    /// [`Error::SecAgg`] (stage `decode`) for bytes that are not a stored session.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = |reason: String| Error::SecAgg {
            stage: "decode".into(),
            reason,
        };
        let stored: Stored = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let four = |v: &[Option<Vec<u8>>]| -> Result<[Option<Vec<u8>>; 4]> {
            <[Option<Vec<u8>>; 4]>::try_from(v.to_vec())
                .map_err(|_| bad("a session has four stages".into()))
        };
        Ok(NodeSession {
            client: stored.client,
            run: stored.run,
            round: stored.round,
            seed: Zeroizing::new(stored.seed),
            policy: stored.policy.clone(),
            max_weight: stored.max_weight,
            requests: four(&stored.requests)?,
            replies: four(&stored.replies)?,
        })
    }

    fn record(&mut self, stage: Stage, request: &[u8], reply: &[u8]) {
        self.requests[stage.index()] = Some(request.to_vec());
        self.replies[stage.index()] = Some(reply.to_vec());
    }

    fn client(&self, setup: &Setup) -> Result<SecAggClient> {
        Ok(SecAggClient::new(self.client, setup, *self.seed)?.with_policy(self.policy.clone()))
    }

    /// The node's client advanced through the stages before `upto`, from the stored secret
    /// and requests (the client is deterministic given its seed).
    fn replay(&self, upto: Stage) -> Result<SecAggClient> {
        let request = |s: Stage| {
            self.requests[s.index()]
                .as_deref()
                .ok_or_else(|| refuse(upto, "the previous stage was not answered"))
        };
        let mut client = self.client(&Setup::from_bytes(request(Stage::AdvertiseKeys)?)?)?;
        client.advertise_keys()?;
        if upto > Stage::ShareKeys {
            client.share_keys(&KeyDirectory::from_bytes(request(Stage::ShareKeys)?)?)?;
        }
        if upto > Stage::MaskedInput {
            // only the shares it stores matter: the masked vector itself was sent already
            let forwarded = ForwardedShares::from_bytes(request(Stage::MaskedInput)?)?;
            client.masked_input(&forwarded, &vec![0.0; client.dim()], 0.0)?;
        }
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::secagg::{
        AdvertiseKeys, MaskedInput, SecAggConfig, SecAggServer, ShareKeys, UnmaskResponse,
    };

    const RUN: u64 = 4;

    /// Per node: its stored session and its forwarded shares.
    type Stored = BTreeMap<ClientId, Vec<u8>>;

    fn round_to_masked_input(
        nodes: &[ClientId],
        dim: usize,
    ) -> Result<(SecAggServer, Stored, Stored)> {
        let config = SecAggConfig::new(nodes.len()).with_threshold(2);
        let mut server = SecAggServer::new(config, 1, dim, nodes, [9; 32])?.with_run(RUN);
        let setup = server.setup().to_bytes();
        let mut stored = BTreeMap::new();
        for &v in nodes {
            let (session, keys) = NodeSession::start(
                v,
                RUN,
                &setup,
                [v as u8; 32],
                &ClientPolicy::default(),
                None,
            )?;
            server.receive_keys(v, AdvertiseKeys::from_bytes(&keys)?)?;
            stored.insert(v, session.to_bytes());
        }
        for (v, dir) in server.finish_advertise()? {
            // every message is handled by a "new process": the session comes from bytes
            let mut session = NodeSession::from_bytes(&stored[&v])?;
            let shares = session.share_keys(&dir.to_bytes())?;
            server.receive_shares(v, ShareKeys::from_bytes(&shares)?)?;
            stored.insert(v, session.to_bytes());
        }
        let forwarded = server
            .finish_share_keys()?
            .into_iter()
            .map(|(v, f)| (v, f.to_bytes()))
            .collect();
        Ok((server, stored, forwarded))
    }

    fn update(v: ClientId, dim: usize) -> Vec<f32> {
        (0..dim)
            .map(|i| 0.001 * (v as f32) * (i as f32 - 3.0))
            .collect()
    }

    /// The attack from the security issue, on the core session: a server that asks for stage
    /// 2 twice gets the very same bytes (no second masking: the difference reveals nothing),
    /// and a request with other bytes is refused; the round still decodes exactly to the
    /// mean weighted by the nodes' own counts.
    #[test]
    fn a_repeated_stage_gets_the_same_answer_and_a_changed_one_is_refused() -> Result<()> {
        let (nodes, dim) = ([11, 22, 33], 8);
        let (mut server, mut stored, forwarded) = round_to_masked_input(&nodes, dim)?;
        let weights = BTreeMap::from([(11, 3.0), (22, 5.0), (33, 7.0)]);
        for &v in &nodes {
            let mut session = NodeSession::from_bytes(&stored[&v])?;
            if v == 11 {
                session.max_weight = 2.0; // this node pins a maximum below its count
            }
            let first = session.masked_input(&forwarded[&v], &update(v, dim), Some(weights[&v]))?;
            // a repeat with another vector and weight 0 (the old attack) gets the same bytes
            let repeat = session.masked_input(&forwarded[&v], &vec![0.0; dim], Some(0.0))?;
            assert_eq!(first, repeat);
            let mut session = NodeSession::from_bytes(&session.to_bytes())?;
            assert_eq!(
                session.answered(Stage::MaskedInput, &forwarded[&v])?,
                Some(first.clone())
            );
            let other = forwarded
                .values()
                .find(|f| *f != &forwarded[&v])
                .cloned()
                .unwrap_or_default();
            assert!(matches!(
                session.masked_input(&other, &update(v, dim), None),
                Err(Error::SecAgg { .. })
            ));
            server.receive_masked_input(v, &MaskedInput::from_bytes(&first)?)?;
            stored.insert(v, session.to_bytes());
        }
        for (v, request) in server.finish_masked_input()? {
            let mut session = NodeSession::from_bytes(&stored[&v])?;
            let reply = session.unmask(&request.to_bytes())?;
            assert!(session.is_finished());
            assert!(session.answered(Stage::Unmask, b"another request").is_err());
            server.receive_unmask(v, UnmaskResponse::from_bytes(&reply)?)?;
        }
        let decoded = server.finish()?.decode()?;
        let weights = BTreeMap::from([(11, 2.0), (22, 5.0), (33, 7.0)]);
        let total: f64 = weights.values().sum();
        assert!(
            (decoded.total_weight - total).abs() < 1e-3,
            "{}",
            decoded.total_weight
        );
        for i in 0..dim {
            let want: f64 = nodes
                .iter()
                .map(|v| weights[v] * f64::from(update(*v, dim)[i]))
                .sum::<f64>()
                / total;
            // quantization: weights of 2-7 against W = 1000 resolve to ~1e-3
            assert!((f64::from(decoded.mean[i]) - want).abs() < 2e-3, "{i}");
        }
        Ok(())
    }

    /// A negative or non-finite weight is refused, not encoded.
    /// A session knows the round's threshold (what distributed noise is sized for): the
    /// setup's t, here 2 of 3, and the derived ⌈2n/3⌉ without one.
    #[test]
    fn a_session_reads_the_rounds_threshold_from_its_setup() -> Result<()> {
        let (_, stored, _) = round_to_masked_input(&[1, 2, 3], 4)?;
        assert_eq!(NodeSession::from_bytes(&stored[&2])?.threshold()?, 2);
        let nodes = [1, 2, 3, 4, 5, 6];
        let server = SecAggServer::new(SecAggConfig::new(6), 1, 4, &nodes, [1; 32])?;
        let policy = ClientPolicy::default();
        let (session, _) =
            NodeSession::start(1, 0, &server.setup().to_bytes(), [1; 32], &policy, None)?;
        assert_eq!(session.threshold()?, SecAggConfig::new(6).t());
        assert_eq!(session.threshold()?, 4);
        Ok(())
    }

    #[test]
    fn a_bad_weight_is_refused() -> Result<()> {
        let (nodes, dim) = ([1, 2, 3], 4);
        let (_, stored, forwarded) = round_to_masked_input(&nodes, dim)?;
        for w in [-1.0, f64::NAN] {
            let mut session = NodeSession::from_bytes(&stored[&2])?;
            assert!(matches!(
                session.masked_input(&forwarded[&2], &update(2, dim), Some(w)),
                Err(Error::InvalidConfig { .. })
            ));
        }
        Ok(())
    }

    /// A setup of another run, or stages out of order, are refused.
    #[test]
    fn other_runs_and_skipped_stages_are_refused() -> Result<()> {
        let server =
            SecAggServer::new(SecAggConfig::new(3), 1, 4, &[1, 2, 3], [1; 32])?.with_run(8);
        let setup = server.setup().to_bytes();
        let policy = ClientPolicy::default();
        assert!(NodeSession::start(1, 9, &setup, [1; 32], &policy, None).is_err());
        let (mut session, _) = NodeSession::start(1, 8, &setup, [1; 32], &policy, None)?;
        assert!(session.unmask(b"skipping ahead").is_err());
        assert!(NodeSession::from_bytes(b"not a session").is_err());
        Ok(())
    }
}
