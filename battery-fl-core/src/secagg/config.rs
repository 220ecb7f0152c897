//! [`SecAggConfig`]: the parameters of one secure-aggregation round, and [`ClientPolicy`]: the
//! parameters a client accepts.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod policy;

pub use policy::ClientPolicy;

/// Parameters of a SecAgg+ round (secure-aggregation.md §3.2, §3.4).
///
/// | field | default | meaning |
/// |---|---|---|
/// | `num_clients` (n) | 10 | clients sampled for the round |
/// | `neighbours` (k) | `None` = complete graph (k = n, i.e. SecAgg) | neighbourhood size **including the client itself** (as in Flower): odd, 3 ≤ k < n, or k = n |
/// | `threshold` (t) | `None` = ⌈2k/3⌉ | Shamir threshold; must satisfy k/2 < t ≤ k |
/// | `clipping_range` (c) | 8.0 | weighted deltas are clipped to [−c, c] |
/// | `target_range` (T) | 2²² | quantization levels: values map to {0, …, T} |
/// | `modulus_bits` (b) | 32 | arithmetic mod M = 2^b, b ∈ {32, 64} |
/// | `max_weight` (W) | 1000.0 | largest client weight; q_u = round(w_u/W · T) |
///
/// `validate()` also checks the no-wrap-around condition n·T < M (which implies
/// Σ q_u ≤ n·T < M for the weight prefix).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecAggConfig {
    /// Number of sampled clients n (default 10).
    pub num_clients: usize,
    /// Neighbourhood size k including the client itself; `None` means the complete graph
    /// (k = n, plain SecAgg). Sparse SecAgg+ graphs need an odd k with 3 ≤ k < n
    /// (default `None`).
    pub neighbours: Option<usize>,
    /// Shamir threshold t, with k/2 < t ≤ k; `None` means ⌈2k/3⌉ (default `None`).
    pub threshold: Option<usize>,
    /// Clipping range c > 0 of the weighted deltas (default 8.0).
    pub clipping_range: f64,
    /// Target range T ≥ 2 of the quantization (default 2²² = 4 194 304).
    pub target_range: u64,
    /// Modulus bits b ∈ {32, 64}; M = 2^b (default 32).
    pub modulus_bits: u32,
    /// Largest client weight W > 0, e.g. the largest number of training examples
    /// (default 1000.0).
    pub max_weight: f64,
}

impl Default for SecAggConfig {
    fn default() -> Self {
        SecAggConfig {
            num_clients: 10,
            neighbours: None,
            threshold: None,
            clipping_range: 8.0,
            target_range: 1 << 22,
            modulus_bits: 32,
            max_weight: 1000.0,
        }
    }
}

/// An odd neighbourhood size of about 2·log₂(n) (at least 3), capped at n (complete graph):
/// a convenient sparse SecAgg+ choice for benchmarks. For production, choose k and t from
/// Bell et al. (2020), Table 2, for the targeted dropout and corruption rates.
pub fn log_neighbours(n: usize) -> usize {
    let k = (2.0 * (n.max(2) as f64).log2()).round() as usize;
    let k = if k.is_multiple_of(2) { k + 1 } else { k };
    k.max(3).min(n)
}

impl SecAggConfig {
    /// The default config for `num_clients` clients (complete graph).
    pub fn new(num_clients: usize) -> Self {
        SecAggConfig {
            num_clients,
            ..Default::default()
        }
    }

    /// Set the neighbourhood size k (including the client itself).
    pub fn with_neighbours(mut self, k: usize) -> Self {
        self.neighbours = Some(k);
        self
    }

    /// Set the Shamir threshold t.
    pub fn with_threshold(mut self, t: usize) -> Self {
        self.threshold = Some(t);
        self
    }

    /// Set the clipping range c.
    pub fn with_clipping_range(mut self, c: f64) -> Self {
        self.clipping_range = c;
        self
    }

    /// Set the target range T.
    pub fn with_target_range(mut self, t: u64) -> Self {
        self.target_range = t;
        self
    }

    /// Set the modulus bits b (32 or 64).
    pub fn with_modulus_bits(mut self, b: u32) -> Self {
        self.modulus_bits = b;
        self
    }

    /// Set the maximal weight W.
    pub fn with_max_weight(mut self, w: f64) -> Self {
        self.max_weight = w;
        self
    }

    /// The effective neighbourhood size k (n for the complete graph).
    pub fn k(&self) -> usize {
        self.neighbours.unwrap_or(self.num_clients)
    }

    /// The effective threshold t (⌈2k/3⌉ unless set).
    pub fn t(&self) -> usize {
        let k = self.k();
        self.threshold
            .unwrap_or_else(|| (2 * k).div_ceil(3).max(k / 2 + 1))
    }

    /// The modulus minus one, i.e. the bit mask 2^b − 1.
    pub fn modulus_mask(&self) -> u64 {
        if self.modulus_bits >= 64 {
            u64::MAX
        } else {
            (1u64 << self.modulus_bits) - 1
        }
    }

    /// Check every field; returns [`Error::InvalidConfig`] naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        let n = self.num_clients;
        if n < 3 {
            return Err(Error::config(
                "num_clients",
                format!("need at least 3 clients, got {n}"),
            ));
        }
        if u32::try_from(n).is_err() {
            return Err(Error::config("num_clients", "at most 2^32 - 1 clients"));
        }
        let k = self.k();
        if k != n && (k < 3 || k > n || k.is_multiple_of(2)) {
            return Err(Error::config(
                "neighbours",
                format!("k must be odd with 3 <= k < n, or k = n (n = {n}), got {k}"),
            ));
        }
        let t = self.t();
        if 2 * t <= k || t > k {
            return Err(Error::config(
                "threshold",
                format!("need k/2 < t <= k (k = {k}), got t = {t}"),
            ));
        }
        if !(self.clipping_range.is_finite() && self.clipping_range > 0.0) {
            return Err(Error::config("clipping_range", "must be finite and > 0"));
        }
        if !(self.max_weight.is_finite() && self.max_weight > 0.0) {
            return Err(Error::config("max_weight", "must be finite and > 0"));
        }
        if self.modulus_bits != 32 && self.modulus_bits != 64 {
            return Err(Error::config("modulus_bits", "must be 32 or 64"));
        }
        let tr = self.target_range;
        if tr < 2 {
            return Err(Error::config("target_range", "must be >= 2"));
        }
        // No wrap-around: the sum of n values in {0..T} (and of n weights q_u <= T) stays < M.
        let bound = (n as u128) * (tr as u128);
        if bound >= (1u128 << self.modulus_bits) {
            return Err(Error::config(
                "target_range",
                format!(
                    "overflow: n*T = {n}*{tr} = {bound} must be < M = 2^{}",
                    self.modulus_bits
                ),
            ));
        }
        // Stochastic rounding works in f64: keep T exactly representable with headroom.
        if tr > (1u64 << 52) {
            return Err(Error::config(
                "target_range",
                "must be <= 2^52 (f64 precision)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        let c = SecAggConfig::default();
        c.validate().map_err(|e| e.to_string()).ok();
        assert!(c.validate().is_ok());
        assert_eq!(c.k(), 10);
        assert_eq!(c.t(), 7);
    }

    #[test]
    fn rejects_bad_fields() {
        let bad = [
            SecAggConfig::new(2),
            SecAggConfig::new(10).with_neighbours(4),
            SecAggConfig::new(10).with_neighbours(11),
            SecAggConfig::new(10).with_neighbours(1),
            SecAggConfig::new(10).with_threshold(5),
            SecAggConfig::new(10).with_threshold(11),
            SecAggConfig::new(10).with_clipping_range(0.0),
            SecAggConfig::new(10).with_max_weight(f64::NAN),
            SecAggConfig::new(10).with_modulus_bits(16),
            SecAggConfig::new(10).with_target_range(1),
        ];
        for c in bad {
            assert!(
                matches!(c.validate(), Err(Error::InvalidConfig { .. })),
                "{c:?}"
            );
        }
    }

    #[test]
    fn overflow_check() {
        // 1024 * 2^22 = 2^32: wraps with b = 32, fine with b = 64.
        let c = SecAggConfig::new(1024);
        match c.validate() {
            Err(Error::InvalidConfig { field, reason }) => {
                assert_eq!(field, "target_range");
                assert!(reason.contains("overflow"));
            }
            other => panic!("expected overflow error, got {other:?}"),
        }
        assert!(SecAggConfig::new(1023).validate().is_ok());
        assert!(SecAggConfig::new(1024)
            .with_modulus_bits(64)
            .validate()
            .is_ok());
    }

    #[test]
    fn log_neighbours_is_odd() {
        assert_eq!(log_neighbours(10), 7);
        assert_eq!(log_neighbours(50), 11);
        assert_eq!(log_neighbours(100), 13);
        assert_eq!(log_neighbours(3), 3);
        for n in 3..200 {
            let k = log_neighbours(n);
            assert!(k == n || (k % 2 == 1 && k >= 3 && k < n));
        }
    }
}
