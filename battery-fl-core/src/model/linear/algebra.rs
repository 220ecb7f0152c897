//! The normal equations of the standardized ridge fit, and their Cholesky solve (the systems
//! are at most 14 x 14).

use super::{FeatureSet, LinearModel, LinearStatistics, Standardization};
use crate::error::{Error, Result};

/// `A = Zᵀ Z + λ P` and `b = Zᵀ y + λ P w₀` for the columns of `set`, from the raw sums:
/// with `z_c = (x_c − m_c) / s_c`, `Σ z_a z_b = (Σ x_a x_b − m_b Σ x_a − m_a Σ x_b + n m_a m_b)
/// / (s_a s_b)`. `P` is the identity but for the intercept. Row-major `d x d`.
pub(super) fn normal_equations(
    stats: &LinearStatistics,
    standardization: &Standardization,
    set: FeatureSet,
    lambda: f64,
    prior: Option<&LinearModel>,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let n = stats.count();
    if n < 1.0 {
        return Err(Error::NotEnoughData {
            what: "labelled cells for a linear fit".into(),
            needed: 1,
            got: 0,
        });
    }
    let cols = set.columns();
    let d = cols.len();
    let (m, s) = (&standardization.mean, &standardization.scale);
    let y = LinearStatistics::label_column();
    let mut a = vec![0.0; d * d];
    let mut b = vec![0.0; d];
    for (i, &ca) in cols.iter().enumerate() {
        for (j, &cb) in cols.iter().enumerate() {
            a[i * d + j] =
                (stats.gram(ca, cb) - m[cb] * stats.gram(ca, 0) - m[ca] * stats.gram(0, cb)
                    + n * m[ca] * m[cb])
                    / (s[ca] * s[cb]);
        }
        b[i] = (stats.gram(ca, y) - m[ca] * stats.gram(0, y)) / s[ca];
        if i > 0 {
            a[i * d + i] += lambda;
            if let Some(p) = prior {
                b[i] += lambda * p.weights[i];
            }
        }
    }
    Ok((a, b))
}

/// Lower-triangular `L` with `L Lᵀ = a` (`d x d`, row-major); a tiny ridge (1e-10 of the mean
/// diagonal) keeps a singular-by-rounding system solvable.
pub(super) fn cholesky(a: &[f64], d: usize) -> Result<Vec<f64>> {
    let jitter = 1e-10 * (0..d).map(|i| a[i * d + i].abs()).sum::<f64>() / d as f64;
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let mut sum = a[i * d + j] + if i == j { jitter } else { 0.0 };
            for k in 0..j {
                sum -= l[i * d + k] * l[j * d + k];
            }
            if i == j {
                if !(sum > 0.0 && sum.is_finite()) {
                    return Err(Error::Model {
                        reason: format!(
                            "linear fit: the normal equations are not positive definite (pivot {i})"
                        ),
                    });
                }
                l[i * d + i] = sum.sqrt();
            } else {
                l[i * d + j] = sum / l[j * d + j];
            }
        }
    }
    Ok(l)
}

/// Solve `L Lᵀ x = b`.
pub(super) fn cholesky_solve(l: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut y = vec![0.0; d];
    for i in 0..d {
        let s: f64 = (0..i).map(|k| l[i * d + k] * y[k]).sum();
        y[i] = (b[i] - s) / l[i * d + i];
    }
    let mut x = vec![0.0; d];
    for i in (0..d).rev() {
        let s: f64 = (i + 1..d).map(|k| l[k * d + i] * x[k]).sum();
        x[i] = (y[i] - s) / l[i * d + i];
    }
    x
}

/// `(L Lᵀ)⁻¹`, row-major.
pub(super) fn inverse(l: &[f64], d: usize) -> Vec<f64> {
    let mut inv = vec![0.0; d * d];
    for j in 0..d {
        let mut e = vec![0.0; d];
        e[j] = 1.0;
        for (i, v) in cholesky_solve(l, &e, d).into_iter().enumerate() {
            inv[i * d + j] = v;
        }
    }
    inv
}

/// Project the symmetric `d x d` matrix `a` (row-major) onto the positive semi-definite
/// cone in place: eigen-decompose it by cyclic Jacobi rotations and drop its negative
/// eigenvalues (the nearest such matrix in Frobenius norm).
pub(super) fn psd_projection(a: &mut [f64], d: usize) {
    let mut m = a.to_vec();
    let mut v = vec![0.0; d * d];
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    let scale: f64 = m.iter().map(|x| x * x).sum::<f64>().max(f64::MIN_POSITIVE);
    for _sweep in 0..64 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i * d + j].powi(2))
            .sum();
        if off <= 1e-26 * scale {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = m[p * d + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (m[q * d + q] - m[p * d + p]) / (2.0 * apq);
                let t = if theta >= 0.0 { 1.0 } else { -1.0 }
                    / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                let rotate = |x: &mut [f64], at_p: usize, at_q: usize| {
                    let (xp, xq) = (x[at_p], x[at_q]);
                    x[at_p] = c * xp - s * xq;
                    x[at_q] = s * xp + c * xq;
                };
                for k in 0..d {
                    rotate(&mut m, k * d + p, k * d + q);
                }
                for k in 0..d {
                    rotate(&mut m, p * d + k, q * d + k);
                }
                for k in 0..d {
                    rotate(&mut v, k * d + p, k * d + q);
                }
            }
        }
    }
    for i in 0..d {
        for j in 0..d {
            a[i * d + j] = (0..d)
                .map(|k| v[i * d + k] * m[k * d + k].max(0.0) * v[j * d + k])
                .sum();
        }
    }
}

/// Solve the symmetric positive definite system `a x = b`.
#[cfg(test)]
pub(super) fn solve_spd(a: &[f64], b: &[f64], d: usize) -> Result<Vec<f64>> {
    Ok(cholesky_solve(&cholesky(a, d)?, b, d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn cholesky_solves_a_known_system() {
        let a = [4.0, 2.0, 0.6, 2.0, 5.0, 1.0, 0.6, 1.0, 3.0];
        let x = [1.0, -2.0, 0.5];
        let b: Vec<f64> = (0..3)
            .map(|i| (0..3).map(|j| a[i * 3 + j] * x[j]).sum())
            .collect();
        let got = solve_spd(&a, &b, 3).unwrap();
        for (g, w) in got.iter().zip(x) {
            assert_relative_eq!(*g, w, epsilon = 1e-9);
        }
        assert!(matches!(
            solve_spd(&[1.0, 2.0, 2.0, 1.0], &[1.0, 1.0], 2),
            Err(Error::Model { .. })
        ));
    }

    #[test]
    fn psd_projection_keeps_a_psd_matrix_and_drops_negative_eigenvalues() {
        let mut a = [4.0, 2.0, 0.6, 2.0, 5.0, 1.0, 0.6, 1.0, 3.0];
        let before = a;
        psd_projection(&mut a, 3);
        for (x, y) in a.iter().zip(before) {
            assert_relative_eq!(*x, y, epsilon = 1e-10);
        }
        // eigenvalues 3 and -1 along (1, 1) and (1, -1): only the first stays
        let mut b = [1.0, 2.0, 2.0, 1.0];
        psd_projection(&mut b, 2);
        for x in b {
            assert_relative_eq!(x, 1.5, epsilon = 1e-10);
        }
    }
}
