//! An RDP accountant: composes Poisson-subsampled Gaussian steps over rounds and reports
//! (ε, δ), with an optional budget that refuses steps beyond `max_epsilon`.
//!
//! Composition sums RDP per order; the conversion is [`epsilon_from_rdp`]. Numbers agree
//! with Google's `dp-accounting` `RdpAccountant` (default orders, add-or-remove-one
//! neighbours). In federated learning a "step" is one round, `q` is the client sampling rate
//! and the guarantee is client-level (one whole client added or removed): the sum of `m`
//! clipped updates has sensitivity `C` and carries noise `zC` in central and distributed
//! mode (see [`RoundNoise`](super::RoundNoise)).
//!
//! ```
//! use battery_fl_core::dp::RdpAccountant;
//! use battery_fl_core::Error;
//!
//! let mut acc = RdpAccountant::new().with_max_epsilon(8.0, 1e-5)?;
//! acc.step(1.0, 1.0, 1)?;
//! assert!((acc.epsilon(1e-5)? - 4.7285).abs() < 1e-3);
//! acc.step(1.0, 1.0, 1)?; // ε ≈ 7.08
//! let before = acc.clone();
//! assert!(matches!(acc.step(1.0, 1.0, 1), Err(Error::BudgetExhausted { .. }))); // ε ≈ 9.01
//! assert_eq!(acc, before);
//! # Ok::<(), battery_fl_core::Error>(())
//! ```

use serde::{Deserialize, Serialize};

use super::rdp::{
    check_gaussian, check_orders, default_orders, epsilon_from_rdp, rdp_poisson_subsampled_gaussian,
};
use crate::error::{Error, Result};

/// A privacy budget: steps that would push ε at `delta` above `max_epsilon` are refused.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrivacyBudget {
    /// The largest ε allowed.
    pub max_epsilon: f64,
    /// The δ at which ε is measured.
    pub delta: f64,
}

/// Rényi-DP accountant for the Poisson-subsampled Gaussian mechanism.
///
/// Serializable (for checkpoints); orders whose RDP is infinite are written as `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RdpAccountant {
    orders: Vec<f64>,
    #[serde(with = "inf_as_null")]
    rdp: Vec<f64>,
    steps: u64,
    budget: Option<PrivacyBudget>,
}

impl Default for RdpAccountant {
    fn default() -> Self {
        Self::new()
    }
}

impl RdpAccountant {
    /// An empty accountant over [`default_orders`], without a budget.
    pub fn new() -> Self {
        let orders = default_orders();
        RdpAccountant {
            rdp: vec![0.0; orders.len()],
            orders,
            steps: 0,
            budget: None,
        }
    }

    /// An empty accountant over custom orders.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for bad orders ([`check_orders`]).
    pub fn with_orders(orders: Vec<f64>) -> Result<Self> {
        check_orders(&orders)?;
        Ok(RdpAccountant {
            rdp: vec![0.0; orders.len()],
            orders,
            steps: 0,
            budget: None,
        })
    }

    /// Refuse steps that would make ε at `delta` exceed `max_epsilon`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] unless `max_epsilon > 0` is finite and `0 < delta < 1`.
    pub fn with_max_epsilon(mut self, max_epsilon: f64, delta: f64) -> Result<Self> {
        if !(max_epsilon.is_finite() && max_epsilon > 0.0) {
            return Err(Error::config(
                "max_epsilon",
                format!("must be positive and finite, got {max_epsilon}"),
            ));
        }
        if !(delta > 0.0 && delta < 1.0) {
            return Err(Error::config(
                "delta",
                format!("must be in (0, 1), got {delta}"),
            ));
        }
        self.budget = Some(PrivacyBudget { max_epsilon, delta });
        Ok(self)
    }

    /// The budget, if any.
    pub fn budget(&self) -> Option<PrivacyBudget> {
        self.budget
    }

    /// The RDP orders.
    pub fn orders(&self) -> &[f64] {
        &self.orders
    }

    /// The accumulated RDP at each order (`+∞` for orders that give no bound).
    pub fn rdp(&self) -> &[f64] {
        &self.rdp
    }

    /// The number of steps composed so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    fn check_state(&self) -> Result<()> {
        if self.orders.len() != self.rdp.len() {
            return Err(Error::Shape {
                what: "accountant RDP values per order".into(),
                expected: vec![self.orders.len()],
                got: vec![self.rdp.len()],
            });
        }
        check_orders(&self.orders)
    }

    fn rdp_after(&self, noise_multiplier: f64, sample_rate: f64, steps: u64) -> Result<Vec<f64>> {
        self.check_state()?;
        check_gaussian(noise_multiplier, sample_rate)?;
        let one = rdp_poisson_subsampled_gaussian(noise_multiplier, sample_rate, &self.orders)?;
        let t = steps as f64;
        Ok(self
            .rdp
            .iter()
            .zip(&one)
            .map(|(&acc, &r)| {
                if r == 0.0 || steps == 0 {
                    acc
                } else {
                    acc + t * r
                }
            })
            .collect())
    }

    /// ε at `delta` if `steps` more steps with `(z, q)` were composed; the state is not touched.
    ///
    /// # Errors
    /// As [`step`](Self::step), except for the budget.
    pub fn epsilon_after(
        &self,
        noise_multiplier: f64,
        sample_rate: f64,
        steps: u64,
        delta: f64,
    ) -> Result<f64> {
        let rdp = self.rdp_after(noise_multiplier, sample_rate, steps)?;
        Ok(epsilon_from_rdp(&self.orders, &rdp, delta)?.0)
    }

    /// Compose `steps` rounds of the Gaussian mechanism with noise multiplier `z` under
    /// Poisson sampling with rate `q` (`q = 1`: every client takes part).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] unless `z > 0` and `0 ≤ q ≤ 1` (finite);
    /// [`Error::BudgetExhausted`] if a budget is set and ε would exceed it. On any error the
    /// state is unchanged.
    pub fn step(&mut self, noise_multiplier: f64, sample_rate: f64, steps: u64) -> Result<()> {
        let rdp = self.rdp_after(noise_multiplier, sample_rate, steps)?;
        let total = self
            .steps
            .checked_add(steps)
            .ok_or_else(|| Error::config("steps", "step count overflows u64"))?;
        if let Some(b) = self.budget {
            let (epsilon, _) = epsilon_from_rdp(&self.orders, &rdp, b.delta)?;
            if epsilon > b.max_epsilon {
                return Err(Error::BudgetExhausted {
                    epsilon,
                    max_epsilon: b.max_epsilon,
                });
            }
        }
        self.rdp = rdp;
        self.steps = total;
        Ok(())
    }

    /// The current ε at `delta`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] unless `0 < delta < 1`.
    pub fn epsilon(&self, delta: f64) -> Result<f64> {
        Ok(self.epsilon_and_order(delta)?.0)
    }

    /// The current ε at `delta` and the RDP order that attains it.
    ///
    /// # Errors
    /// As [`epsilon`](Self::epsilon).
    pub fn epsilon_and_order(&self, delta: f64) -> Result<(f64, f64)> {
        self.check_state()?;
        epsilon_from_rdp(&self.orders, &self.rdp, delta)
    }
}

/// Serde for `Vec<f64>` where `+∞` travels as `null` (JSON has no infinity).
mod inf_as_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(|&x| if x.is_finite() { Some(x) } else { None })
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        let v = Vec::<Option<f64>>::deserialize(d)?;
        Ok(v.into_iter().map(|x| x.unwrap_or(f64::INFINITY)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_participation_is_analytic() -> Result<()> {
        let mut acc = RdpAccountant::new();
        acc.step(2.0, 1.0, 5)?;
        for (a, r) in acc.orders().iter().zip(acc.rdp()) {
            assert!((r - 5.0 * a / 8.0).abs() < 1e-12);
        }
        assert_eq!(acc.steps(), 5);
        Ok(())
    }

    #[test]
    fn invalid_inputs_are_typed_and_harmless() -> Result<()> {
        let mut acc = RdpAccountant::new();
        acc.step(1.0, 0.1, 3)?;
        let before = acc.clone();
        for (z, q) in [
            (0.0, 0.5),
            (-1.0, 0.5),
            (f64::NAN, 0.5),
            (f64::INFINITY, 0.5),
            (1.0, -0.1),
            (1.0, 1.1),
            (1.0, f64::NAN),
        ] {
            assert!(
                matches!(acc.step(z, q, 1), Err(Error::InvalidConfig { .. })),
                "{z} {q}"
            );
        }
        assert!(matches!(acc.epsilon(0.0), Err(Error::InvalidConfig { .. })));
        assert!(RdpAccountant::with_orders(vec![]).is_err());
        assert!(RdpAccountant::with_orders(vec![0.5]).is_err());
        assert!(RdpAccountant::new().with_max_epsilon(-1.0, 1e-5).is_err());
        assert!(RdpAccountant::new().with_max_epsilon(1.0, 2.0).is_err());
        assert_eq!(acc, before);
        Ok(())
    }

    #[test]
    fn serde_round_trip_keeps_infinities() -> Result<()> {
        let mut acc = RdpAccountant::with_orders(vec![2.0, 3.0])?.with_max_epsilon(10.0, 1e-6)?;
        acc.step(1.5, 0.01, 7)?;
        acc.rdp[1] = f64::INFINITY;
        let json = serde_json::to_string(&acc).map_err(|e| Error::Privacy {
            reason: e.to_string(),
        })?;
        let back: RdpAccountant = serde_json::from_str(&json).map_err(|e| Error::Privacy {
            reason: e.to_string(),
        })?;
        assert_eq!(back, acc);
        Ok(())
    }
}
