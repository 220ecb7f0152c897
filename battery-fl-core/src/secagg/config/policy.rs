//! [`ClientPolicy`]: the round parameters a client accepts from the server.
//!
//! The server chooses n, k, t and every neighbourhood, and nothing in the setup is signed, so
//! a malicious server can propose parameters under which it (with a few colluding clients)
//! reconstructs a victim's input: with n = 3, t = 2 and the victim's neighbourhood reduced to
//! {victim, colluder}, the victim's own share plus the colluder's share give t shares of the
//! victim's self-mask seed, and the colluder knows its pairwise mask with the victim. The
//! client therefore pins its own minimums and refuses anything weaker (see the security model
//! in the [module docs](crate::secagg)).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::secagg::{Setup, Stage};

/// The minimum round parameters a client accepts; set with
/// [`SecAggClient::with_policy`](crate::secagg::SecAggClient::with_policy). Checked on the
/// setup when the client advertises its keys (its first message) and again on the key
/// directory and the forwarded shares.
///
/// | field | default | the client refuses |
/// |---|---|---|
/// | `min_clients` | 3 | n < `min_clients` |
/// | `min_threshold` (m) | 2 | t < m, or a neighbourhood (directory, or the peers whose shares arrived, itself included) smaller than m; with an identity (active-adversary mode) also a sparse graph (k ≠ n) and 2t < n + m − 1 |
///
/// In the active-adversary mode m sets the number of colluding clients the node protects
/// against, c = m − 2: a malicious server colluding with c clients cannot isolate an honest
/// input iff t ≥ c + 2 = m and 2t ≥ n + c + 1 = n + m − 1 (see the
/// [module docs](crate::secagg)). Without an identity the server is trusted to follow the
/// protocol, and t ≥ m > c keeps the c colluders below t shares of any secret.
///
/// The defaults accept every valid configuration (n ≥ 3, t ≥ 2, t > k/2), which is safe
/// against a malicious server alone in the active-adversary mode with the complete graph.
/// Pin `min_threshold = 3` to protect against one colluding client as well (then n = 3
/// needs t = 3, and n = 5 needs t ≥ 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientPolicy {
    /// Smallest number of sampled clients n accepted (default 3).
    pub min_clients: usize,
    /// Smallest threshold t and neighbourhood accepted, and in the active-adversary mode
    /// the bound 2t ≥ n + `min_threshold` − 1 (default 2).
    pub min_threshold: usize,
}

impl Default for ClientPolicy {
    fn default() -> Self {
        ClientPolicy {
            min_clients: 3,
            min_threshold: 2,
        }
    }
}

fn refuse(stage: Stage, reason: impl std::fmt::Display) -> Error {
    Error::SecAgg {
        stage: stage.name().into(),
        reason: format!("refused by the client policy: {reason}"),
    }
}

impl ClientPolicy {
    /// Check the fields: `min_clients` ≥ 3 and `min_threshold` ≥ 2 (the protocol's own
    /// minimums); returns [`Error::InvalidConfig`] naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        if self.min_clients < 3 {
            return Err(Error::config(
                "min_clients",
                format!("must be >= 3, got {}", self.min_clients),
            ));
        }
        if self.min_threshold < 2 {
            return Err(Error::config(
                "min_threshold",
                format!("must be >= 2, got {}", self.min_threshold),
            ));
        }
        Ok(())
    }

    /// Check the server's setup; `signed` is the active-adversary mode (with an identity).
    pub(crate) fn check_setup(&self, setup: &Setup, signed: bool, stage: Stage) -> Result<()> {
        self.validate()?;
        let cfg = &setup.config;
        let (n, k, t, m) = (cfg.num_clients, cfg.k(), cfg.t(), self.min_threshold);
        if n < self.min_clients {
            return Err(refuse(
                stage,
                format!("n = {n} < min_clients = {}", self.min_clients),
            ));
        }
        if t < self.min_threshold {
            return Err(refuse(
                stage,
                format!("t = {t} < min_threshold = {}", self.min_threshold),
            ));
        }
        if k < self.min_threshold {
            return Err(refuse(
                stage,
                format!(
                    "neighbourhood k = {k} < min_threshold = {}",
                    self.min_threshold
                ),
            ));
        }
        if !signed {
            return Ok(());
        }
        if k != n {
            return Err(refuse(
                stage,
                format!(
                    "the active-adversary mode needs the complete graph, got k = {k} < n = {n}"
                ),
            ));
        }
        if 2 * t + 1 < n + m {
            return Err(refuse(
                stage,
                format!(
                    "2t = {} < n + min_threshold - 1 = {}: a malicious server with {} \
                     colluding clients could isolate this client's input",
                    2 * t,
                    n + m - 1,
                    m - 2
                ),
            ));
        }
        Ok(())
    }

    /// Check the size of a neighbourhood (itself included) the client would share its
    /// secrets with or mask with.
    pub(crate) fn check_neighbourhood(&self, size: usize, stage: Stage) -> Result<()> {
        if size < self.min_threshold {
            return Err(refuse(
                stage,
                format!(
                    "neighbourhood of {size} < min_threshold = {}",
                    self.min_threshold
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secagg::SecAggConfig;

    fn setup(config: SecAggConfig) -> Setup {
        Setup {
            run: 0,
            round: 1,
            dim: 4,
            config,
        }
    }

    #[test]
    fn defaults_accept_every_valid_complete_graph_and_one_colluder_needs_more() -> Result<()> {
        let p = ClientPolicy::default();
        p.validate()?;
        for n in 3..40 {
            for t in n / 2 + 1..=n {
                let s = setup(SecAggConfig::new(n).with_threshold(t));
                p.check_setup(&s, false, Stage::AdvertiseKeys)?;
                p.check_setup(&s, true, Stage::AdvertiseKeys)?;
            }
        }
        let sparse = setup(SecAggConfig::new(10).with_neighbours(7).with_threshold(5));
        p.check_setup(&sparse, false, Stage::AdvertiseKeys)?;
        assert!(p.check_setup(&sparse, true, Stage::AdvertiseKeys).is_err());
        // one colluder (min_threshold 3): t >= 3 and 2t >= n + 2
        let p1 = ClientPolicy {
            min_threshold: 3,
            ..ClientPolicy::default()
        };
        for (n, t, ok) in [
            (3, 2, false),
            (3, 3, true),
            (5, 3, false),
            (5, 4, true),
            (7, 4, false),
        ] {
            let s = setup(SecAggConfig::new(n).with_threshold(t));
            let got = p1.check_setup(&s, true, Stage::AdvertiseKeys).is_ok();
            assert_eq!(got, ok, "n = {n}, t = {t}");
        }
        for n in 6..40 {
            let s = setup(SecAggConfig::new(n)); // default t = ceil(2n/3)
            p1.check_setup(&s, true, Stage::AdvertiseKeys)?;
        }
        Ok(())
    }

    #[test]
    fn refuses_weak_setups_and_bad_fields() {
        let p = ClientPolicy {
            min_clients: 5,
            min_threshold: 4,
        };
        for (cfg, signed) in [
            (SecAggConfig::new(4), false),                   // n < 5
            (SecAggConfig::new(6).with_threshold(3), false), // t < 4
            (SecAggConfig::new(7).with_threshold(5), true),  // accepted: 2t = 10 >= n + m - 1
            (SecAggConfig::new(10).with_threshold(6), true), // 2t = 12 < n + m - 1 = 13
        ] {
            let r = p.check_setup(&setup(cfg.clone()), signed, Stage::ShareKeys);
            if cfg.num_clients == 7 {
                assert!(r.is_ok(), "{cfg:?}");
            } else {
                assert!(matches!(r, Err(Error::SecAgg { .. })), "{cfg:?}");
            }
        }
        assert!(p.check_neighbourhood(3, Stage::MaskedInput).is_err());
        assert!(p.check_neighbourhood(4, Stage::MaskedInput).is_ok());
        for bad in [
            ClientPolicy {
                min_clients: 2,
                ..ClientPolicy::default()
            },
            ClientPolicy {
                min_threshold: 1,
                ..ClientPolicy::default()
            },
        ] {
            assert!(matches!(bad.validate(), Err(Error::InvalidConfig { .. })));
        }
    }
}
