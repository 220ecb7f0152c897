//! The communication graph: a Harary ring H(m, k) on a random permutation of the clients
//! (Bell et al. 2020, semi-honest construction), or the complete graph (Bonawitz et al. 2017).
//!
//! Neighbourhoods include the client itself (as in Flower): with odd k < m the client at ring
//! position i is adjacent to positions i − (k−1)/2 … i + (k−1)/2, so every node has exactly
//! k − 1 other neighbours and the graph is (k−1)-regular. With k ≥ m the graph is complete.
//!
//! ```
//! use battery_fl_core::secagg::CommGraph;
//!
//! let ids: Vec<u64> = (0..20).collect();
//! let g = CommGraph::harary(&ids, 7, [1; 32])?;
//! for &u in &ids {
//!     assert_eq!(g.neighbours(u).len(), 7); // itself + 6 others
//!     assert!(g.neighbours(u).iter().all(|&v| g.are_neighbours(v, u)));
//! }
//! # Ok::<(), battery_fl_core::Error>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use super::ClientId;
use crate::error::{Error, Result};

/// A Harary ring (or complete graph) over the clients of a round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommGraph {
    /// Client at each ring position.
    order: Vec<ClientId>,
    /// Ring position of each client.
    position: BTreeMap<ClientId, usize>,
    /// Neighbourhood size including the node itself (≥ len means complete).
    k: usize,
}

impl CommGraph {
    /// The Harary ring H(m, k) over `members` shuffled by a ChaCha20 generator seeded with
    /// `seed` (the server's secret randomness). `k` counts the node itself and must be odd
    /// when smaller than the number of members; k ≥ m gives the complete graph.
    pub fn harary(members: &[ClientId], k: usize, seed: [u8; 32]) -> Result<Self> {
        let set: BTreeSet<ClientId> = members.iter().copied().collect();
        if set.len() != members.len() {
            return Err(Error::config("clients", "duplicate client id"));
        }
        if set.is_empty() {
            return Err(Error::config("clients", "no clients"));
        }
        let m = set.len();
        if k < m && (k < 3 || k.is_multiple_of(2)) {
            return Err(Error::config(
                "neighbours",
                format!("k must be odd and >= 3, got {k}"),
            ));
        }
        let mut order: Vec<ClientId> = set.into_iter().collect();
        let mut rng = ChaCha20Rng::from_seed(seed);
        order.shuffle(&mut rng);
        let position = order.iter().enumerate().map(|(i, &id)| (id, i)).collect();
        Ok(CommGraph {
            order,
            position,
            k: k.min(m),
        })
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when the graph has no node (never, for a built graph).
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// True for the complete graph (plain SecAgg).
    pub fn is_complete(&self) -> bool {
        self.k >= self.order.len()
    }

    /// Neighbourhood size including the node itself.
    pub fn k(&self) -> usize {
        self.k
    }

    /// True when `id` is a node of the graph.
    pub fn contains(&self, id: ClientId) -> bool {
        self.position.contains_key(&id)
    }

    /// The nodes in ring order.
    pub fn order(&self) -> &[ClientId] {
        &self.order
    }

    /// Whether `a` and `b` are adjacent (every node is adjacent to itself).
    pub fn are_neighbours(&self, a: ClientId, b: ClientId) -> bool {
        let (Some(&pa), Some(&pb)) = (self.position.get(&a), self.position.get(&b)) else {
            return false;
        };
        if self.is_complete() {
            return true;
        }
        let m = self.order.len();
        let d = pa.abs_diff(pb);
        d.min(m - d) <= self.k / 2
    }

    /// The neighbourhood N(id), including `id` itself, sorted by id; empty for a non-member.
    pub fn neighbours(&self, id: ClientId) -> Vec<ClientId> {
        let Some(&p) = self.position.get(&id) else {
            return Vec::new();
        };
        let mut out: Vec<ClientId> = if self.is_complete() {
            self.order.clone()
        } else {
            let m = self.order.len();
            let h = self.k / 2;
            (0..self.k)
                .map(|j| self.order[(p + m - h + j) % m])
                .collect()
        };
        out.sort_unstable();
        out
    }

    /// Whether the subgraph induced on `live` is connected. If it is not, the server could
    /// learn the partial sum of one component after unmasking, so the round must stop.
    pub fn is_connected_on(&self, live: &BTreeSet<ClientId>) -> bool {
        let mut nodes = live.iter().filter(|id| self.contains(**id));
        let Some(&start) = nodes.next() else {
            return true;
        };
        let total = 1 + nodes.count();
        let mut seen = BTreeSet::from([start]);
        let mut stack = vec![start];
        while let Some(u) = stack.pop() {
            for v in self.neighbours(u) {
                if live.contains(&v) && seen.insert(v) {
                    stack.push(v);
                }
            }
        }
        seen.len() == total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_regular(m: usize, k: usize) -> Result<()> {
        let ids: Vec<ClientId> = (0..m as u64).map(|i| 1000 + 7 * i).collect();
        let g = CommGraph::harary(&ids, k, [3; 32])?;
        let kk = k.min(m);
        for &u in &ids {
            let n = g.neighbours(u);
            assert_eq!(n.len(), kk, "m={m} k={k}");
            assert!(n.contains(&u));
            let distinct: BTreeSet<_> = n.iter().collect();
            assert_eq!(distinct.len(), kk);
            for &v in &n {
                assert!(g.are_neighbours(v, u), "symmetry");
            }
            let degree = ids
                .iter()
                .filter(|&&v| v != u && g.are_neighbours(u, v))
                .count();
            assert_eq!(degree, kk - 1);
        }
        Ok(())
    }

    #[test]
    fn harary_is_regular_and_symmetric() -> Result<()> {
        for (m, k) in [
            (10, 3),
            (10, 7),
            (10, 9),
            (10, 10),
            (20, 5),
            (20, 13),
            (7, 100),
            (101, 15),
        ] {
            check_regular(m, k)?;
        }
        Ok(())
    }

    #[test]
    fn permutation_depends_on_seed() -> Result<()> {
        let ids: Vec<ClientId> = (0..30).collect();
        let a = CommGraph::harary(&ids, 5, [1; 32])?;
        let b = CommGraph::harary(&ids, 5, [2; 32])?;
        let c = CommGraph::harary(&ids, 5, [1; 32])?;
        assert_ne!(a.order(), b.order());
        assert_eq!(a, c);
        Ok(())
    }

    #[test]
    fn rejects_even_sparse_k_and_duplicates() {
        assert!(CommGraph::harary(&[1, 2, 3, 4, 5], 4, [0; 32]).is_err());
        assert!(CommGraph::harary(&[1, 1, 2], 3, [0; 32]).is_err());
        assert!(CommGraph::harary(&[], 3, [0; 32]).is_err());
    }

    #[test]
    fn connectivity() -> Result<()> {
        let ids: Vec<ClientId> = (0..12).collect();
        let g = CommGraph::harary(&ids, 3, [9; 32])?;
        let all: BTreeSet<_> = ids.iter().copied().collect();
        assert!(g.is_connected_on(&all));
        // Remove two opposite ring positions: the ring (k = 3) splits in two.
        let order = g.order();
        let mut live = all.clone();
        live.remove(&order[0]);
        live.remove(&order[6]);
        assert!(!g.is_connected_on(&live));
        Ok(())
    }
}
