//! Rényi DP of the Poisson-subsampled Gaussian mechanism, and its conversion to (ε, δ).
//!
//! The maths follows Google's `dp-accounting` (`rdp_privacy_accountant`), so that epsilons
//! agree with it:
//!
//! - sampling rate `q = 1`: the plain Gaussian mechanism, `RDP(α) = α / (2z²)`;
//! - `0 < q < 1`: `RDP(α) = log A_α / (α − 1)`, where `A_α` is a binomial sum in log space for
//!   integer `α` (Mironov, Talwar, Zhang 2019, Sec. 3.2) and a pair of erfc-weighted series
//!   for fractional `α` (ibid., Sec. 3.3; an order whose series does not settle within 1000
//!   terms gets `+∞`, i.e. is ignored);
//! - `q = 0`: 0;
//! - (ε, δ): `ε = min_α RDP(α) + log((α−1)/α) − (log δ + log α)/(α − 1)` (Canonne, Kamath,
//!   Steinke 2020, Prop. 12), for orders `α > 1.01`; an order whose RDP `r` already gives
//!   `δ ≥ √(1 − e^{−r})` (the KL bound) yields `ε = 0`; the result is clipped at 0.
//!
//! ```
//! use battery_fl_core::dp::rdp::{default_orders, epsilon_from_rdp, rdp_poisson_subsampled_gaussian};
//!
//! let orders = default_orders();
//! assert_eq!(orders.len(), 156);
//! let rdp = rdp_poisson_subsampled_gaussian(1.0, 1.0, &orders)?;
//! assert_eq!(rdp[0], 1.1 / 2.0); // q = 1: α / (2z²)
//! let (eps, order) = epsilon_from_rdp(&orders, &rdp, 1e-5)?;
//! assert!((eps - 4.7285).abs() < 1e-3);
//! assert!(order > 1.0);
//! # Ok::<(), battery_fl_core::Error>(())
//! ```

use crate::error::{Error, Result};

/// Largest RDP order accepted (integer orders cost `α` terms each).
pub const MAX_ORDER: f64 = 10_000.0;

/// Terms of the fractional-order series before an order is given up (`+∞`).
const MAX_FRAC_TERMS: u32 = 1000;

/// `dp-accounting`'s default orders: 1.1 to 10.9 in steps of 0.1, the integers 11 to 63, and
/// 128, 256, 512, 1024 (156 orders).
pub fn default_orders() -> Vec<f64> {
    let mut orders: Vec<f64> = (1..100).map(|x| 1.0 + f64::from(x) / 10.0).collect();
    orders.extend((11..64).map(f64::from));
    orders.extend([128.0, 256.0, 512.0, 1024.0]);
    orders
}

/// Check a list of orders: non-empty, each finite, in (1, [`MAX_ORDER`]].
///
/// # Errors
/// [`Error::InvalidConfig`] for a bad list.
pub fn check_orders(orders: &[f64]) -> Result<()> {
    if orders.is_empty() {
        return Err(Error::config("orders", "at least one RDP order is needed"));
    }
    if let Some(a) = orders.iter().find(|&&a| !(a > 1.0 && a <= MAX_ORDER)) {
        return Err(Error::config(
            "orders",
            format!("each order must be in (1, {MAX_ORDER}], got {a}"),
        ));
    }
    Ok(())
}

/// Check a noise multiplier and sampling rate.
///
/// # Errors
/// [`Error::InvalidConfig`] unless `z > 0` and `0 ≤ q ≤ 1`, both finite.
pub fn check_gaussian(noise_multiplier: f64, sample_rate: f64) -> Result<()> {
    if !(noise_multiplier.is_finite() && noise_multiplier > 0.0) {
        return Err(Error::config(
            "noise_multiplier",
            format!("must be positive and finite, got {noise_multiplier}"),
        ));
    }
    if !(0.0..=1.0).contains(&sample_rate) {
        return Err(Error::config(
            "sample_rate",
            format!("must be in [0, 1], got {sample_rate}"),
        ));
    }
    Ok(())
}

/// RDP at each order of one step of the Gaussian mechanism with noise multiplier `z`
/// (noise std / L2 sensitivity) under Poisson sampling with rate `q`, for add-or-remove-one
/// neighbours.
///
/// # Errors
/// [`Error::InvalidConfig`] for bad `z`, `q` or orders (see [`check_gaussian`], [`check_orders`]).
pub fn rdp_poisson_subsampled_gaussian(
    noise_multiplier: f64,
    sample_rate: f64,
    orders: &[f64],
) -> Result<Vec<f64>> {
    check_gaussian(noise_multiplier, sample_rate)?;
    check_orders(orders)?;
    Ok(orders
        .iter()
        .map(|&a| rdp_one_order(sample_rate, noise_multiplier, a))
        .collect())
}

fn rdp_one_order(q: f64, sigma: f64, alpha: f64) -> f64 {
    if q == 0.0 {
        0.0
    } else if q == 1.0 {
        alpha / (2.0 * sigma * sigma)
    } else if alpha.fract() == 0.0 {
        log_a_int(q, sigma, alpha) / (alpha - 1.0)
    } else {
        log_a_frac(q, sigma, alpha) / (alpha - 1.0)
    }
}

/// `log(exp(x) + exp(y))`.
fn log_add(x: f64, y: f64) -> f64 {
    let (lo, hi) = if x < y { (x, y) } else { (y, x) };
    if lo == f64::NEG_INFINITY || hi == f64::INFINITY {
        return hi;
    }
    (lo - hi).exp().ln_1p() + hi
}

/// `log |binom(n, k)|` through `log |Γ|` (also for fractional `n`).
fn log_binom(n: f64, k: f64) -> f64 {
    libm::lgamma(n + 1.0) - libm::lgamma(k + 1.0) - libm::lgamma(n - k + 1.0)
}

/// `log erfc(x)`, accurate far into the tail where `erfc` underflows.
fn log_erfc(x: f64) -> f64 {
    if x <= 10.0 {
        return libm::erfc(x).ln();
    }
    // erfc(x) = exp(−x²) / (x √π) · Σ_k (−1)^k (2k−1)!! / (2x²)^k  (asymptotic; tiny terms here)
    let inv = 1.0 / (2.0 * x * x);
    let (mut term, mut series) = (1.0, 1.0);
    for k in 1..10 {
        term *= -f64::from(2 * k - 1) * inv;
        series += term;
    }
    -x * x - x.ln() - 0.5 * std::f64::consts::PI.ln() + series.ln()
}

/// `log A_α` for integer `α` and `0 < q < 1`.
fn log_a_int(q: f64, sigma: f64, alpha: f64) -> f64 {
    let (log_q, log_1mq) = (q.ln(), (-q).ln_1p());
    let two_s2 = 2.0 * sigma * sigma;
    let mut acc = f64::NEG_INFINITY;
    let mut i = 0.0;
    while i <= alpha {
        let s = log_binom(alpha, i) + i * log_q + (alpha - i) * log_1mq + (i * i - i) / two_s2;
        acc = log_add(acc, s);
        i += 1.0;
    }
    acc
}

/// `log A_α` for fractional `α` and `0 < q < 1`: two series split at
/// `z0 = σ² log(1/q − 1) + 1/2`; `+∞` if they do not settle.
fn log_a_frac(q: f64, sigma: f64, alpha: f64) -> f64 {
    let (log_q, log_1mq) = (q.ln(), (-q).ln_1p());
    let two_s2 = 2.0 * sigma * sigma;
    let z0 = sigma * sigma * (1.0 / q - 1.0).ln() + 0.5;
    let scale = std::f64::consts::SQRT_2 * sigma;
    let log_half = 0.5f64.ln();
    let (mut a0, mut a1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let (mut last0, mut last1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for n in 0..MAX_FRAC_TERMS {
        let i = f64::from(n);
        let j = alpha - i;
        let coef = log_binom(alpha, i);
        let s0 = coef
            + i * log_q
            + j * log_1mq
            + (i * i - i) / two_s2
            + log_half
            + log_erfc((i - z0) / scale);
        let s1 = coef
            + j * log_q
            + i * log_1mq
            + (j * j - j) / two_s2
            + log_half
            + log_erfc((z0 - j) / scale);
        a0 = log_add(a0, s0);
        a1 = log_add(a1, s1);
        let total = log_add(a0, a1);
        if s0 < last0 && s1 < last1 && s0.max(s1) < total - 30.0 {
            return total;
        }
        (last0, last1) = (s0, s1);
    }
    f64::INFINITY
}

/// Convert RDP values to `(ε, optimal order)` at `δ` (see the module docs). `ε` is `+∞`
/// when no order gives a finite bound.
///
/// # Errors
/// [`Error::Shape`] if `orders` and `rdp` differ in length; [`Error::InvalidConfig`] for
/// bad orders or `δ` outside (0, 1).
pub fn epsilon_from_rdp(orders: &[f64], rdp: &[f64], delta: f64) -> Result<(f64, f64)> {
    if orders.len() != rdp.len() {
        return Err(Error::Shape {
            what: "RDP values per order".into(),
            expected: vec![orders.len()],
            got: vec![rdp.len()],
        });
    }
    check_orders(orders)?;
    if !(delta > 0.0 && delta < 1.0) {
        return Err(Error::config(
            "delta",
            format!("must be in (0, 1), got {delta}"),
        ));
    }
    let mut best = (f64::INFINITY, orders[0]);
    for (&a, &r) in orders.iter().zip(rdp) {
        let eps = if r.is_nan() {
            f64::INFINITY
        } else if r <= 0.0 || delta * delta + (-r).exp_m1() > 0.0 {
            0.0
        } else if a > 1.01 {
            r + (-1.0 / a).ln_1p() - (delta * a).ln() / (a - 1.0)
        } else {
            f64::INFINITY
        };
        if eps < best.0 {
            best = (eps, a);
        }
    }
    Ok((best.0.max(0.0), best.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_orders_match_dp_accounting() {
        let o = default_orders();
        assert_eq!(
            (o[0], o[98], o[99], o[151], o[155]),
            (1.1, 10.9, 11.0, 63.0, 1024.0)
        );
        assert_eq!(o.iter().filter(|a| a.fract() == 0.0).count(), 9 + 53 + 4);
    }

    #[test]
    fn log_erfc_is_continuous_into_the_tail() {
        for x in [-3.0, 0.0, 1.0, 5.0, 9.99] {
            assert!((log_erfc(x) - libm::erfc(x).ln()).abs() < 1e-12);
        }
        let (a, b) = (log_erfc(10.0), log_erfc(10.0 + 1e-9));
        assert!((a - b).abs() < 1e-6, "{a} {b}");
        assert!((log_erfc(10.0) - libm::erfc(10.0).ln()).abs() < 1e-10);
        assert!(log_erfc(40.0).is_finite() && log_erfc(40.0) < -1600.0);
    }

    #[test]
    fn subsampling_never_hurts_and_q_zero_is_free() -> Result<()> {
        let o = default_orders();
        let full = rdp_poisson_subsampled_gaussian(1.0, 1.0, &o)?;
        let sub = rdp_poisson_subsampled_gaussian(1.0, 0.1, &o)?;
        let none = rdp_poisson_subsampled_gaussian(1.0, 0.0, &o)?;
        assert!(sub.iter().filter(|r| r.is_finite()).count() > 100);
        for k in 0..o.len() {
            // like dp-accounting, low fractional orders whose series does not settle are +∞
            // (excluded); every other order must not lose from subsampling
            let ok = sub[k] == f64::INFINITY || (sub[k] <= full[k] && sub[k] >= 0.0);
            assert!(ok, "order {}", o[k]);
            assert_eq!(none[k], 0.0);
        }
        Ok(())
    }

    #[test]
    fn integer_and_fractional_formulas_agree_near_integers() {
        // RDP is continuous in α: the two series must meet the binomial sum
        let (q, s) = (0.05, 1.3);
        for a in [3.0, 7.0, 20.0] {
            let int = log_a_int(q, s, a) / (a - 1.0);
            let frac = log_a_frac(q, s, a + 1e-7) / (a + 1e-7 - 1.0);
            assert!(
                (int - frac).abs() < 1e-4 * int.abs().max(1e-6),
                "α={a}: {int} vs {frac}"
            );
        }
    }

    #[test]
    fn kl_branch_and_bad_inputs() {
        assert_eq!(
            epsilon_from_rdp(&[2.0], &[0.0], 1e-5).ok(),
            Some((0.0, 2.0))
        );
        assert_eq!(
            epsilon_from_rdp(&[2.0], &[1e-12], 0.5).ok(),
            Some((0.0, 2.0))
        );
        assert!(matches!(
            epsilon_from_rdp(&[2.0], &[], 1e-5),
            Err(Error::Shape { .. })
        ));
        for d in [0.0, 1.0, f64::NAN] {
            assert!(epsilon_from_rdp(&[2.0], &[1.0], d).is_err());
        }
        assert!(rdp_poisson_subsampled_gaussian(0.0, 0.5, &[2.0]).is_err());
        assert!(rdp_poisson_subsampled_gaussian(1.0, 1.5, &[2.0]).is_err());
        assert!(rdp_poisson_subsampled_gaussian(1.0, 0.5, &[1.0]).is_err());
    }
}
