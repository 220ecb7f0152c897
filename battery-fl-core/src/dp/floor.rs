//! [`DpFloor`]: the least privacy a node accepts, pinned in its own configuration.
//!
//! The clipping norm and noise a node applies to its update come from the server's round
//! configuration. A curious server could send a large norm or no noise at all and read the
//! node's update nearly as it is. A node that pins a floor refuses to train (a typed
//! [`Error::Privacy`]) unless the round clips to at most its norm and the noise the node adds
//! *itself* is at least `z·C/√shares`: `shares = 1` is local DP; `shares = t` accepts
//! distributed DP whose noise is split over at most `t` nodes (pair it with a secure
//! aggregation threshold of at least `t`). Central DP adds no node noise, so a node with a
//! floor refuses it: it does not trust the server's noise.
//!
//! ```
//! use battery_fl_core::dp::DpFloor;
//!
//! let floor = DpFloor::new(1.0, 0.8);
//! assert!(floor.check(Some(1.0), 0.8).is_ok()); // local DP at the floor
//! assert!(floor.check(Some(1.0), 0.1).is_err()); // too little noise
//! assert!(floor.check(Some(5.0), 4.0).is_err()); // clipping norm above the floor's
//! assert!(floor.check(None, 0.0).is_err()); // DP switched off by the server
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The least privacy a node accepts in any round (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DpFloor {
    /// The largest clipping norm `C` the node accepts. Default 1.0.
    pub clipping_norm: f64,
    /// The least noise multiplier `z` of the noise the node adds itself (relative to the
    /// round's clipping norm, before the split over `noise_shares`). Default 1.0.
    pub noise_multiplier: f64,
    /// Over how many nodes the noise may be split (1 = local DP). Default 1.
    pub noise_shares: usize,
}

impl Default for DpFloor {
    fn default() -> Self {
        DpFloor {
            clipping_norm: 1.0,
            noise_multiplier: 1.0,
            noise_shares: 1,
        }
    }
}

impl DpFloor {
    /// A floor for local DP (`noise_shares = 1`).
    pub fn new(clipping_norm: f64, noise_multiplier: f64) -> Self {
        DpFloor {
            clipping_norm,
            noise_multiplier,
            noise_shares: 1,
        }
    }

    /// Accept distributed noise split over at most `shares` nodes.
    pub fn with_noise_shares(mut self, shares: usize) -> Self {
        self.noise_shares = shares;
        self
    }

    /// Check every field.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        if !(self.clipping_norm.is_finite() && self.clipping_norm > 0.0) {
            return Err(Error::config("dp_floor.clipping_norm", "must be positive"));
        }
        if !(self.noise_multiplier.is_finite() && self.noise_multiplier >= 0.0) {
            return Err(Error::config("dp_floor.noise_multiplier", "must be >= 0"));
        }
        if self.noise_shares == 0 {
            return Err(Error::config("dp_floor.noise_shares", "must be >= 1"));
        }
        Ok(())
    }

    /// The least noise std this node must add itself when updates are clipped to
    /// `clipping_norm`.
    pub fn min_noise_std(&self, clipping_norm: f64) -> f64 {
        self.noise_multiplier * clipping_norm / (self.noise_shares as f64).sqrt()
    }

    /// Check a round's request: `clipping_norm` (`None`: the server asks for no clipping)
    /// and the noise std the node is asked to add to its own clipped update.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an invalid floor; [`Error::Privacy`] when the request
    /// gives less privacy than the floor.
    pub fn check(&self, clipping_norm: Option<f64>, noise_std: f64) -> Result<()> {
        self.validate()?;
        let Some(c) = clipping_norm.filter(|c| *c > 0.0) else {
            return Err(Error::Privacy {
                reason: "this node requires DP, but the round does not clip updates".into(),
            });
        };
        if !c.is_finite() || c > self.clipping_norm {
            return Err(Error::Privacy {
                reason: format!(
                    "the round clips to {c}, above this node's floor {}",
                    self.clipping_norm
                ),
            });
        }
        let least = self.min_noise_std(c);
        if !(noise_std.is_finite() && noise_std >= least * (1.0 - 1e-9)) {
            return Err(Error::Privacy {
                reason: format!(
                    "the round asks this node for noise std {noise_std}, below its floor {least}"
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server's attacks on a node's privacy settings are refused: no DP, a larger norm,
    /// less noise, noise split over more nodes than the node accepts.
    #[test]
    fn a_server_cannot_lower_a_nodes_privacy() {
        let floor = DpFloor::new(1.0, 1.0).with_noise_shares(4);
        assert!(floor.check(Some(1.0), 0.5).is_ok()); // zC/√4
        assert!(floor.check(Some(0.5), 0.25).is_ok()); // smaller norm, proportionally less
        for (c, std) in [
            (None, 10.0),
            (Some(0.0), 1.0),
            (Some(2.0), 10.0),
            (Some(1.0), 0.0),
        ] {
            assert!(
                matches!(floor.check(c, std), Err(Error::Privacy { .. })),
                "{c:?} {std}"
            );
        }
        // split over 16 nodes: each adds zC/4 < zC/2
        assert!(floor.check(Some(1.0), 0.25).is_err());
        assert!(matches!(
            DpFloor::new(1.0, 1.0)
                .with_noise_shares(0)
                .check(Some(1.0), 1.0),
            Err(Error::InvalidConfig { .. })
        ));
    }
}
