//! The server-side rule a strategy names: the one place a [`Strategy`] and its settings
//! become an aggregator, for the in-process [`Simulation`](super::Simulation) and, through
//! the Python binding, the Flower strategy.

use serde::{Deserialize, Serialize};

use super::config::{FederationConfig, Strategy};
use crate::aggregate::{
    Aggregator, FedAvg, FedMedian, FedOpt, FedProx, FedTrimmedAvg, ServerOptimizer, UpdatePolicy,
};
use crate::error::{Error, Result};

/// A strategy's aggregator with its settings (and, for the server optimizers, its state).
///
/// ```
/// use battery_fl_core::federation::{AggregationRule, FederationConfig, Strategy};
///
/// let config = FederationConfig { strategy: Strategy::FedTrimmedAvg, ..Default::default() };
/// let rule = config.aggregation_rule()?;
/// assert_eq!(rule.strategy(), Strategy::FedTrimmedAvg);
/// assert!(matches!(rule, AggregationRule::Trimmed(t) if t.beta == config.trimmed_beta));
/// # Ok::<(), battery_fl_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AggregationRule {
    /// `fed_avg`.
    Avg(FedAvg),
    /// `fed_prox` (the server averages; the clients add the proximal term).
    Prox(FedProx),
    /// `fed_adam`, `fed_yogi` or `fed_adagrad`.
    Opt(FedOpt),
    /// `fed_median`.
    Median(FedMedian),
    /// `fed_trimmed_avg`.
    Trimmed(FedTrimmedAvg),
}

impl AggregationRule {
    /// The rule as an [`Aggregator`].
    pub fn aggregator(&mut self) -> &mut dyn Aggregator {
        match self {
            AggregationRule::Avg(a) => a,
            AggregationRule::Prox(a) => a,
            AggregationRule::Opt(a) => a,
            AggregationRule::Median(a) => a,
            AggregationRule::Trimmed(a) => a,
        }
    }

    /// The checks every update passes before this rule combines it (`max_delta_norm`).
    pub fn policy(&self) -> &UpdatePolicy {
        match self {
            AggregationRule::Avg(a) => &a.policy,
            AggregationRule::Prox(p) => &p.fedavg.policy,
            AggregationRule::Opt(o) => &o.config.policy,
            AggregationRule::Median(m) => &m.policy,
            AggregationRule::Trimmed(t) => &t.policy,
        }
    }

    /// The strategy this rule is.
    pub fn strategy(&self) -> Strategy {
        match self {
            AggregationRule::Avg(_) => Strategy::FedAvg,
            AggregationRule::Prox(_) => Strategy::FedProx,
            AggregationRule::Opt(o) => match o.optimizer {
                ServerOptimizer::Adam => Strategy::FedAdam,
                ServerOptimizer::Yogi => Strategy::FedYogi,
                ServerOptimizer::Adagrad => Strategy::FedAdagrad,
            },
            AggregationRule::Median(_) => Strategy::FedMedian,
            AggregationRule::Trimmed(_) => Strategy::FedTrimmedAvg,
        }
    }
}

impl FederationConfig {
    /// The aggregator of [`strategy`](Self::strategy) with this federation's settings:
    /// `proximal_mu`, `trimmed_beta`, `server_optimizer`, and `max_delta_norm` as every rule's
    /// update policy (a server optimizer keeps its own `policy` when `max_delta_norm` is
    /// unset).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the setting the rule refuses
    /// (a negative `proximal_mu`, a `trimmed_beta` outside `[0, 0.5)`, bad server-optimizer
    /// settings, a `max_delta_norm` that is not a positive number).
    pub fn aggregation_rule(&self) -> Result<AggregationRule> {
        let policy = UpdatePolicy {
            max_delta_norm: self.max_delta_norm,
        };
        policy.validate()?;
        let opt = |optimizer| -> Result<AggregationRule> {
            // (the server optimizer's own policy stands unless the federation sets a bound)
            let mut config = self.server_optimizer.clone();
            if self.max_delta_norm.is_some() {
                config.policy = policy.clone();
            }
            let rule = FedOpt::new(optimizer, config).map_err(|e| in_setting(e, None))?;
            Ok(AggregationRule::Opt(rule))
        };
        Ok(match self.strategy {
            Strategy::FedAvg => AggregationRule::Avg(FedAvg::with_policy(policy)),
            Strategy::FedProx => {
                let mut rule = FedProx::new(self.proximal_mu)
                    .map_err(|e| in_setting(e, Some("proximal_mu")))?;
                rule.fedavg.policy = policy;
                AggregationRule::Prox(rule)
            }
            Strategy::FedAdam => opt(ServerOptimizer::Adam)?,
            Strategy::FedYogi => opt(ServerOptimizer::Yogi)?,
            Strategy::FedAdagrad => opt(ServerOptimizer::Adagrad)?,
            Strategy::FedMedian => AggregationRule::Median(FedMedian { policy }),
            Strategy::FedTrimmedAvg => {
                let mut rule = FedTrimmedAvg::new(self.trimmed_beta)
                    .map_err(|e| in_setting(e, Some("trimmed_beta")))?;
                rule.policy = policy;
                AggregationRule::Trimmed(rule)
            }
        })
    }
}

/// A rule's refusal named by the federation setting it came from: `field` for a rule with
/// one setting, else `server_optimizer.<the rule's field>`.
fn in_setting(err: Error, field: Option<&str>) -> Error {
    match err {
        Error::InvalidConfig { field: own, reason } => Error::InvalidConfig {
            field: field.map_or_else(|| format!("server_optimizer.{own}"), str::to_string),
            reason,
        },
        other => other,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_strategy_builds_its_own_rule_with_the_federations_settings() {
        for strategy in Strategy::ALL {
            let config = FederationConfig {
                strategy,
                proximal_mu: 0.3,
                trimmed_beta: 0.1,
                max_delta_norm: Some(2.5),
                ..Default::default()
            };
            let rule = config.aggregation_rule().unwrap();
            assert_eq!(rule.strategy(), strategy);
            let bound = Some(2.5);
            match rule {
                AggregationRule::Avg(a) => assert_eq!(a.policy.max_delta_norm, bound),
                AggregationRule::Prox(p) => {
                    assert_eq!((p.mu, p.fedavg.policy.max_delta_norm), (0.3, bound));
                }
                AggregationRule::Opt(o) => {
                    assert_eq!(o.config.eta, config.server_optimizer.eta);
                    assert_eq!(o.config.policy.max_delta_norm, bound);
                }
                AggregationRule::Median(m) => assert_eq!(m.policy.max_delta_norm, bound),
                AggregationRule::Trimmed(t) => {
                    assert_eq!((t.beta, t.policy.max_delta_norm), (0.1, bound));
                }
            }
        }
        // a server optimizer's own policy stands when the federation sets no bound
        let mut own = FederationConfig {
            strategy: Strategy::FedAdam,
            ..Default::default()
        };
        own.server_optimizer.policy.max_delta_norm = Some(7.0);
        match own.aggregation_rule().unwrap() {
            AggregationRule::Opt(o) => assert_eq!(o.config.policy.max_delta_norm, Some(7.0)),
            other => panic!("expected FedAdam, got {other:?}"),
        }
        for bound in [0.0, -1.0, f64::NAN] {
            let bad = FederationConfig {
                max_delta_norm: Some(bound),
                ..Default::default()
            };
            assert!(matches!(
                bad.aggregation_rule(),
                Err(Error::InvalidConfig { field, .. }) if field == "max_delta_norm"
            ));
        }
        let bad = FederationConfig {
            strategy: Strategy::FedTrimmedAvg,
            trimmed_beta: 0.5,
            ..Default::default()
        };
        assert!(matches!(
            bad.aggregation_rule(),
            Err(Error::InvalidConfig { field, .. }) if field == "trimmed_beta"
        ));
        let mut bad = FederationConfig {
            strategy: Strategy::FedYogi,
            ..Default::default()
        };
        bad.server_optimizer.beta1 = 1.0;
        assert!(matches!(
            bad.aggregation_rule(),
            Err(Error::InvalidConfig { field, .. }) if field == "server_optimizer.beta1"
        ));
    }
}
