//! Intra-cell (cycle) and inter-cell (cell) differences, and the two branch inputs.
//!
//! - [`intra_diff`]: `x[c, r, :] - x[c, base, :]` for every channel `c` and row `r`: how each
//!   cycle's curves moved since an early base cycle. Feeds branch A after full cleaning
//!   ([`branch_a_input`]).
//! - [`inter_diff`]: `target - reference`, element-wise, for two cells featurized with the
//!   same settings. Feeds branch B ([`branch_b_input`]): each cell's raw features get only
//!   the cycle filter (c), with flagged cycles replaced by their nearest kept cycle
//!   ([`super::filter_cycles_fill`]) rather than zeroed, before the subtraction. Because (c)
//!   is applied per cell, the branch B input stays `f(target) - f(reference)`, so anything
//!   linear computed on it (the first convolution) can be computed once per cell and reused
//!   across pairs.
//!
//! NaN results (only possible from infinite inputs, `inf - inf`) become 0.
//!
//! Note: the published training code filters only the target, subtracts the unfiltered
//! reference and runs the full cleaning (a, b, c) on each difference, which also zeroes a
//! cycle that was zeroed in the target (its difference row, `-reference`, is then an
//! outlier). Filling flagged cycles per cell avoids that failure without per-pair cleaning.
//! Call [`super::clean_all`] on the result to get the published per-pair cleaning as well.

use super::{clean_all, filter_cycles_fill, FeatureCleanConfig, Features};
use crate::error::{Error, Result};

fn nan_to_zero(v: f32) -> f32 {
    if v.is_nan() {
        0.0
    } else {
        v
    }
}

/// Intra-cell difference: every row minus the row `base_row` of the same channel.
/// The base row itself becomes exactly 0 (for finite values).
///
/// # Errors
/// [`Error::InvalidConfig`] (field `base_row`) when `base_row >= cycles`.
pub fn intra_diff(raw: &Features, base_row: usize) -> Result<Features> {
    let [channels, cycles, dim] = raw.shape();
    if base_row >= cycles {
        return Err(Error::config(
            "base_row",
            format!("row {base_row} is outside the {cycles} cycle rows"),
        ));
    }
    let mut out = raw.clone();
    let data = out.as_mut_slice();
    for c in 0..channels {
        let block = &mut data[c * cycles * dim..(c + 1) * cycles * dim];
        let (before, rest) = block.split_at_mut(base_row * dim);
        let (base, after) = rest.split_at_mut(dim);
        for row in before
            .chunks_exact_mut(dim)
            .chain(after.chunks_exact_mut(dim))
        {
            for (v, &b) in row.iter_mut().zip(base.iter()) {
                *v = nan_to_zero(*v - b);
            }
        }
        // x - x is 0 for finite x and NaN (-> 0) otherwise
        base.fill(0.0);
    }
    Ok(out)
}

/// Inter-cell difference `target - reference`.
///
/// # Errors
/// [`Error::Shape`] when the shapes differ.
pub fn inter_diff(target: &Features, reference: &Features) -> Result<Features> {
    if target.shape() != reference.shape() {
        return Err(Error::Shape {
            what: "reference features (inter-cell difference)".into(),
            expected: target.shape().to_vec(),
            got: reference.shape().to_vec(),
        });
    }
    let mut out = target.clone();
    for (v, &r) in out.as_mut_slice().iter_mut().zip(reference.as_slice()) {
        *v = nan_to_zero(*v - r);
    }
    Ok(out)
}

/// Branch A input: [`intra_diff`] against `base_row`, then edge smoothing, glitch removal
/// and the cycle filter ([`clean_all`]).
pub fn branch_a_input(
    raw: &Features,
    base_row: usize,
    clean: &FeatureCleanConfig,
) -> Result<Features> {
    let mut x = intra_diff(raw, base_row)?;
    clean_all(&mut x, clean);
    Ok(x)
}

/// Branch B input: [`filter_cycles_fill`] on each cell's raw features, then [`inter_diff`].
///
/// With many references, filter each cell once with [`filter_cycles_fill`] and call
/// [`inter_diff`] per pair instead.
pub fn branch_b_input(
    target_raw: &Features,
    reference_raw: &Features,
    clean: &FeatureCleanConfig,
) -> Result<Features> {
    let mut t = target_raw.clone();
    filter_cycles_fill(&mut t, clean);
    let mut r = reference_raw.clone();
    filter_cycles_fill(&mut r, clean);
    inter_diff(&t, &r)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ramp(shape: [usize; 3], scale: f32) -> Features {
        let n: usize = shape.iter().product();
        Features::from_vec((0..n).map(|k| scale * k as f32).collect(), shape).unwrap()
    }

    #[test]
    fn intra_diff_subtracts_the_base_row_per_channel() {
        let x = ramp([2, 3, 4], 1.0);
        let d = intra_diff(&x, 1).unwrap();
        assert!(d.row(0, 1).iter().chain(d.row(1, 1)).all(|&v| v == 0.0));
        assert_eq!(d.row(0, 0), &[-4.0; 4]);
        assert_eq!(d.row(1, 2), &[4.0; 4]);
        assert!(matches!(
            intra_diff(&x, 3),
            Err(Error::InvalidConfig { .. })
        ));
    }

    #[test]
    fn inter_diff_checks_shapes() {
        let a = ramp([2, 3, 4], 2.0);
        let b = ramp([2, 3, 4], 1.0);
        assert_eq!(inter_diff(&a, &b).unwrap(), b);
        assert!(inter_diff(&a, &a)
            .unwrap()
            .as_slice()
            .iter()
            .all(|&v| v == 0.0));
        assert!(matches!(
            inter_diff(&a, &ramp([2, 4, 3], 1.0)),
            Err(Error::Shape { .. })
        ));
    }
}
