//! L2 clipping of a model update.
//!
//! An update `Δ` is scaled by `min(1, C / ‖Δ‖₂)` so that its L2 norm is at most `C`: the
//! sensitivity bound that the Gaussian mechanism is calibrated to. The norm is taken over all
//! tensors together (flat L2, as in Flower and Andrew et al. 2021).
//!
//! ```
//! use battery_fl_core::dp::clip_l2_slice;
//!
//! let mut update = [3.0_f32, 4.0];
//! let out = clip_l2_slice(&mut update, 1.0)?;
//! assert_eq!(out.norm, 5.0);
//! assert!(out.clipped);
//! assert!((update[0] - 0.6).abs() < 1e-6 && (update[1] - 0.8).abs() < 1e-6);
//!
//! let mut small = [0.3_f32, 0.4];
//! assert!(!clip_l2_slice(&mut small, 1.0)?.clipped);
//! assert_eq!(small, [0.3, 0.4]); // untouched
//! # Ok::<(), battery_fl_core::Error>(())
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::ModelParams;

/// The scale applied to a clipped update is `C / ‖Δ‖ · (1 − SAFETY)`: rounding each
/// coordinate to `f32` moves the norm by a relative 2⁻²⁴ at most, so this margin keeps the
/// clipped norm at or below `C` exactly, not merely up to rounding.
const SAFETY: f64 = 1.0 / (1u64 << 22) as f64;

/// What clipping did to one update.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClipOutcome {
    /// The L2 norm before clipping (accumulated in `f64`).
    pub norm: f64,
    /// True when the norm exceeded the bound and the update was scaled down. Adaptive
    /// clipping counts the complement (`!clipped`, i.e. `‖Δ‖ ≤ C`).
    pub clipped: bool,
    /// The factor the update was multiplied by (1.0 when not clipped).
    pub factor: f64,
}

impl ClipOutcome {
    /// True when the update was within the bound (`‖Δ‖ ≤ C`): the bit `b` of adaptive clipping.
    pub fn unclipped(&self) -> bool {
        !self.clipped
    }
}

fn check_bound(clipping_norm: f64) -> Result<()> {
    if !(clipping_norm.is_finite() && clipping_norm > 0.0) {
        return Err(Error::config(
            "clipping_norm",
            format!("must be positive and finite, got {clipping_norm}"),
        ));
    }
    Ok(())
}

fn outcome(norm: f64, clipping_norm: f64) -> Result<ClipOutcome> {
    if !norm.is_finite() {
        return Err(Error::Privacy {
            reason: format!("cannot clip an update with non-finite values (norm {norm})"),
        });
    }
    if norm <= clipping_norm {
        return Ok(ClipOutcome {
            norm,
            clipped: false,
            factor: 1.0,
        });
    }
    Ok(ClipOutcome {
        norm,
        clipped: true,
        factor: clipping_norm / norm * (1.0 - SAFETY),
    })
}

fn scale(values: &mut [f32], factor: f64) {
    values
        .iter_mut()
        .for_each(|v| *v = (f64::from(*v) * factor) as f32);
}

/// The L2 norm of a slice, accumulated in `f64`.
pub fn l2_norm(values: &[f32]) -> f64 {
    values
        .iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        .sqrt()
}

/// Clip a flat update in place to L2 norm `clipping_norm`.
///
/// Updates with `‖Δ‖ ≤ C` are left bit-for-bit unchanged; larger ones keep their direction
/// and end with a norm of at most `C`.
///
/// # Errors
/// [`Error::InvalidConfig`] if `clipping_norm` is not positive and finite;
/// [`Error::Privacy`] if the update holds NaN or infinite values (nothing is changed then).
pub fn clip_l2_slice(update: &mut [f32], clipping_norm: f64) -> Result<ClipOutcome> {
    check_bound(clipping_norm)?;
    let out = outcome(l2_norm(update), clipping_norm)?;
    if out.clipped {
        scale(update, out.factor);
    }
    Ok(out)
}

/// Clip a [`ModelParams`] update in place to flat L2 norm `clipping_norm` (over all tensors).
///
/// Same contract as [`clip_l2_slice`].
///
/// # Errors
/// As [`clip_l2_slice`].
pub fn clip_l2(update: &mut ModelParams, clipping_norm: f64) -> Result<ClipOutcome> {
    check_bound(clipping_norm)?;
    let out = outcome(update.l2_norm(), clipping_norm)?;
    if out.clipped {
        update.values_mut().for_each(|v| scale(v, out.factor));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipped_norm_never_exceeds_bound() -> Result<()> {
        for (i, c) in [1e-3, 0.1, 1.0, 3.7, 1e3].into_iter().enumerate() {
            let mut v: Vec<f32> = (0..10_001)
                .map(|k| ((k * 7919 + i) % 97) as f32 - 48.3)
                .collect();
            let before = v.clone();
            let out = clip_l2_slice(&mut v, c)?;
            assert!(out.clipped);
            assert!(l2_norm(&v) <= c, "norm {} > {c}", l2_norm(&v));
            assert!(l2_norm(&v) >= c * (1.0 - 1e-5));
            // same direction: every coordinate scaled by the same positive factor
            for (a, b) in v.iter().zip(&before) {
                assert!(
                    (f64::from(*a) - f64::from(*b) * out.factor).abs()
                        <= 1e-6 * f64::from(b.abs()).max(1e-30)
                );
            }
        }
        Ok(())
    }

    #[test]
    fn bad_bound_and_non_finite_are_errors() {
        let mut v = [1.0_f32, 2.0];
        for c in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                clip_l2_slice(&mut v, c),
                Err(Error::InvalidConfig { .. })
            ));
        }
        let mut bad = [1.0_f32, f32::NAN];
        assert!(matches!(
            clip_l2_slice(&mut bad, 1.0),
            Err(Error::Privacy { .. })
        ));
        assert_eq!(v, [1.0, 2.0]);
    }

    #[test]
    fn zero_update_and_exact_bound_are_unclipped() -> Result<()> {
        let mut z = [0.0_f32; 4];
        assert!(clip_l2_slice(&mut z, 1.0)?.unclipped());
        let mut e = [3.0_f32, 4.0];
        let out = clip_l2_slice(&mut e, 5.0)?;
        assert!(!out.clipped && out.factor == 1.0 && e == [3.0, 4.0]);
        Ok(())
    }
}
