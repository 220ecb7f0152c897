//! Federated rounds: configuration, coordinator state with atomic checkpoints, federated label
//! statistics, genome-clustered fleet grouping, and (with the `tch` feature) the in-process
//! simulation of a coordinator and its fleet clients.
//!
//! One round: sample fleets, send the global weights, train locally (FedProx term when
//! configured), clip and noise the delta (DP), mask it (SecAgg), aggregate, evaluate, account
//! privacy, checkpoint. Everything random derives from the configured seed and the round
//! number, so a run killed mid-round and resumed from its checkpoint ends exactly where an
//! uninterrupted run ends.

#[cfg(feature = "tch")]
mod baseline;
mod choice;
mod cluster;
mod config;
mod labels;
mod linear;
mod personalize;
mod rule;
mod state;

#[cfg(feature = "tch")]
mod fleet;
#[cfg(feature = "tch")]
pub mod intervals;
#[cfg(feature = "tch")]
mod private;
#[cfg(feature = "tch")]
mod simulation;

pub use cluster::{cluster_fleets, FleetSummary};
pub use config::{
    ClusterConfig, FederationConfig, LabelScope, Personalization, SecureAggregation, Strategy,
};
pub use labels::{fleet_statistics, secure_sum, shared_statistics, LABEL_STATISTICS_LEN};
pub use linear::{
    federate_linear, linear_share, linear_statistics, linear_total, ChemistryChoice, LinearChoice,
    LinearFederation, LinearFleet, SharedLinear, DEFAULT_CHOICE_MARGIN, ERROR_CLIP, RELEASES,
};
pub use personalize::{Candidate, FleetModel, FleetState};
pub use rule::AggregationRule;
pub use state::{CoordinatorState, RoundRecord};

#[cfg(feature = "tch")]
pub use baseline::{centralized_baseline, local_only_baseline, LocalOnly};
#[cfg(feature = "tch")]
pub use fleet::{FleetClient, FleetEvaluation, LocalUpdate};
#[cfg(feature = "tch")]
pub use simulation::{FleetData, Simulation};

pub use crate::rng::job_seed;

/// Stream of [`job_seed`] that samples a round's fleets (no fleet index reaches it; the
/// simulation's noise and mask streams lie below it).
const STREAM_SAMPLING: usize = usize::MAX;

/// The fleets that train in round `round` of a run seeded `seed`: `per_round` of `fleets`
/// (indices, ascending), drawn without replacement from the round's own stream, so a resumed
/// run and a Flower server (over its nodes in fleet order, by `partition-id`) draw the same ones.
///
/// ```
/// use battery_fl_core::federation::select_clients;
/// let a = select_clients(7, 1, 5, 2)?;
/// assert_eq!(a.len(), 2);
/// assert!(a[0] < a[1] && a[1] < 5);
/// assert_eq!(a, select_clients(7, 1, 5, 2)?);
/// assert_eq!(select_clients(7, 1, 5, 5)?, vec![0, 1, 2, 3, 4]);
/// assert!(select_clients(7, 1, 5, 6).is_err());
/// # Ok::<(), battery_fl_core::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidConfig`](crate::Error::InvalidConfig) (`clients_per_round`) unless
/// `1 <= per_round <= fleets`.
pub fn select_clients(
    seed: u64,
    round: usize,
    fleets: usize,
    per_round: usize,
) -> crate::Result<Vec<usize>> {
    if per_round == 0 || per_round > fleets {
        return Err(crate::Error::config(
            "clients_per_round",
            format!("must be in 1..={fleets}, got {per_round}"),
        ));
    }
    let mut rng = crate::rng::seeded(job_seed(seed, round, STREAM_SAMPLING));
    let mut chosen = rand::seq::index::sample(&mut rng, fleets, per_round).into_vec();
    chosen.sort_unstable();
    Ok(chosen)
}
