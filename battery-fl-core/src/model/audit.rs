//! A privacy audit of a trained BatLiNet: membership-inference attacks, the loss threshold and
//! the likelihood ratio.
//!
//! The attacker holds the released model, a cell's curves and its life, and guesses that the
//! cell was in the training set when the model's error on it is small (Yeom et al. 2018). Its
//! power over every threshold is the AUC of the scores `−(ln ŷ − ln y)²` of member cells
//! against non-member cells of the same distribution: 0.5 is chance, 1 a perfect attack. A
//! model trained with DP-SGD at ε per cell bounds every attack's true-positive rate at a given
//! false-positive rate `α` by `e^ε α + δ`; the audit measures what a real attacker gets.
//!
//! The attack predicts with the references the attacker can see (public cells): the fleet's
//! own references stay at home.
//!
//! The stronger attack is the likelihood-ratio attack (LiRA, Carlini et al. 2022), offline: the
//! attacker trains shadow models with the same recipe on cells of the same population that are
//! neither members nor candidates, learns from them how well a model that never saw a cell
//! fits it (some cells are hard for every model, some easy), and asks for each candidate how
//! unusual the released model's fit is under that law ([`likelihood_ratio_scores`],
//! [`membership_lira_auc`]). A loss threshold calls every easy cell a member; LiRA does not.

use super::{BatLiNet, Dataset};
use crate::error::{Error, Result};

/// The membership scores `−(ln ŷ − ln y)²` of labelled `cells` under `model`, predicted with
/// `references` (the attacker's, e.g. public cells).
pub fn membership_scores(
    model: &BatLiNet,
    cells: &Dataset,
    references: &Dataset,
) -> Result<Vec<f64>> {
    Ok(log_errors(model, cells, references)?
        .iter()
        .map(|e| -e.powi(2))
        .collect())
}

/// The signed log errors `ln ŷ − ln y` of labelled `cells` under `model`, predicted with
/// `references`.
fn log_errors(model: &BatLiNet, cells: &Dataset, references: &Dataset) -> Result<Vec<f64>> {
    let lives = cells.require_labels()?;
    let predicted = model.predict(cells, references)?;
    Ok(predicted
        .iter()
        .zip(&lives)
        .map(|(p, y)| p.ln() - y.ln())
        .collect())
}

/// The offline likelihood-ratio attack's membership scores (higher: more likely a member).
///
/// `target[i]` is the released model's signed log error `ln ŷ − ln y` on candidate cell `i`,
/// `shadows[s][i]` shadow model `s`'s on the same cell; no shadow model trained on any
/// candidate. Cell `i`'s error under a model that never saw it is modelled as
/// `E ~ N(μ_i, σ²)`, `μ_i` the shadows' mean on it and `σ²` their variance around the per-cell
/// means pooled over all cells (a global variance, the better choice with few shadow models;
/// Carlini et al. 2022, §VI). The score is `−ln P(|E| ≤ |target[i]|)`: how unlikely it is that
/// a model which never saw the cell fits it as well as the released model does.
///
/// # Errors
/// [`Error::NotEnoughData`] with fewer than two shadow models or no cells;
/// [`Error::Shape`] when a shadow's length differs from the target's; [`Error::Model`] when a
/// log error is not finite (a model predicted a non-positive or infinite life).
pub fn likelihood_ratio_scores(target: &[f64], shadows: &[Vec<f64>]) -> Result<Vec<f64>> {
    if shadows.len() < 2 {
        return Err(Error::NotEnoughData {
            what: "shadow models for the likelihood-ratio attack".into(),
            needed: 2,
            got: shadows.len(),
        });
    }
    if target.is_empty() {
        return Err(Error::NotEnoughData {
            what: "candidate cells for the likelihood-ratio attack".into(),
            needed: 1,
            got: 0,
        });
    }
    let n = target.len();
    if let Some(bad) = shadows.iter().find(|s| s.len() != n) {
        return Err(Error::Shape {
            what: "a shadow model's log errors (one per candidate cell)".into(),
            expected: vec![n],
            got: vec![bad.len()],
        });
    }
    if target
        .iter()
        .chain(shadows.iter().flatten())
        .any(|v| !v.is_finite())
    {
        return Err(Error::Model {
            reason: "a log error of the likelihood-ratio attack is not finite".into(),
        });
    }
    let k = shadows.len() as f64;
    let means: Vec<f64> = (0..n)
        .map(|i| shadows.iter().map(|s| s[i]).sum::<f64>() / k)
        .collect();
    let ss: f64 = shadows
        .iter()
        .flat_map(|s| s.iter().zip(&means).map(|(e, m)| (e - m).powi(2)))
        .sum();
    // a floor keeps identical shadows (a degenerate recipe) from dividing by zero
    let sigma = (ss / (n as f64 * (k - 1.0))).sqrt().max(1e-9);
    Ok(target
        .iter()
        .zip(&means)
        .map(|(&e, &mu)| -fits_as_well(e.abs(), mu, sigma).max(f64::MIN_POSITIVE).ln())
        .collect())
}

/// `P(|E| ≤ a)` for `E ~ N(mu, sigma²)`, as a difference of upper-tail probabilities on the
/// side away from the mean, so that a cell fitted far better than the shadows fit it (both
/// bounds deep in one tail) keeps a precise small probability.
fn fits_as_well(a: f64, mu: f64, sigma: f64) -> f64 {
    let upper = (a - mu) / sigma;
    let lower = (-a - mu) / sigma;
    // Q(x) = P(Z > x) = erfc(x / √2) / 2
    let q = |x: f64| 0.5 * libm::erfc(x / std::f64::consts::SQRT_2);
    if lower > 0.0 {
        q(lower) - q(upper)
    } else {
        // Φ(x) = Q(−x)
        q(-upper) - q(-lower)
    }
}

/// The offline likelihood-ratio attack's AUC ([`likelihood_ratio_scores`]) of `members`
/// against `non_members` under `model`, with the attacker's `shadows` (trained with the same
/// recipe on cells that are neither) and `references` (the attacker's, e.g. public cells).
///
/// # Errors
/// [`Error::NotEnoughData`] without members, non-members or two shadow models;
/// [`Error::Model`] when a model predicts a life whose log error is not finite; the errors of
/// prediction.
pub fn membership_lira_auc(
    model: &BatLiNet,
    shadows: &[BatLiNet],
    members: &Dataset,
    non_members: &Dataset,
    references: &Dataset,
) -> Result<f64> {
    require_both(members, non_members)?;
    // one law for all candidates: the global variance pools members and non-members alike
    let errors = |m: &BatLiNet| -> Result<Vec<f64>> {
        let mut e = log_errors(m, members, references)?;
        e.extend(log_errors(m, non_members, references)?);
        Ok(e)
    };
    let shadow_errors = shadows.iter().map(errors).collect::<Result<Vec<_>>>()?;
    let scores = likelihood_ratio_scores(&errors(model)?, &shadow_errors)?;
    let (ins, outs) = scores.split_at(members.len());
    Ok(auc(ins, outs))
}

/// [`Error::NotEnoughData`] unless both sides of a membership audit hold a cell.
fn require_both(members: &Dataset, non_members: &Dataset) -> Result<()> {
    for (what, ds) in [("members", members), ("non-members", non_members)] {
        if ds.is_empty() {
            return Err(Error::NotEnoughData {
                what: format!("{what} for the membership audit"),
                needed: 1,
                got: 0,
            });
        }
    }
    Ok(())
}

/// The loss-threshold attack's AUC: the chance that a random member scores above a random
/// non-member (ties count half; the Mann-Whitney statistic).
///
/// # Errors
/// [`Error::NotEnoughData`] without members or non-members; the errors of prediction.
pub fn membership_auc(
    model: &BatLiNet,
    members: &Dataset,
    non_members: &Dataset,
    references: &Dataset,
) -> Result<f64> {
    require_both(members, non_members)?;
    let ins = membership_scores(model, members, references)?;
    let outs = membership_scores(model, non_members, references)?;
    Ok(auc(&ins, &outs))
}

/// The Mann-Whitney AUC of `positives` above `negatives`.
pub(crate) fn auc(positives: &[f64], negatives: &[f64]) -> f64 {
    let wins: f64 = positives
        .iter()
        .map(|p| {
            negatives
                .iter()
                .map(|n| match p.total_cmp(n) {
                    std::cmp::Ordering::Greater => 1.0,
                    std::cmp::Ordering::Equal => 0.5,
                    std::cmp::Ordering::Less => 0.0,
                })
                .sum::<f64>()
        })
        .sum();
    wins / (positives.len() * negatives.len()) as f64
}

#[cfg(test)]
mod tests {
    use super::{auc, fits_as_well, likelihood_ratio_scores};
    use crate::error::Error;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal, Uniform};

    #[test]
    fn fits_as_well_is_the_folded_normal_cdf() {
        // P(|E| <= 1.96) for a standard normal
        approx::assert_abs_diff_eq!(fits_as_well(1.96, 0.0, 1.0), 0.9500, epsilon = 1e-4);
        // far in the tail: P(|E| <= 1) with E ~ N(10, 1) = Φ(-9) - Φ(-11), still resolved
        let p = fits_as_well(1.0, 10.0, 1.0);
        assert!(p > 1.0e-19 && p < 1.2e-19, "{p}");
        assert_eq!(fits_as_well(1.0, -10.0, 1.0), p);
    }

    #[test]
    fn the_likelihood_ratio_attack_sees_members_that_a_loss_threshold_misses() {
        // cells of very unequal difficulty (a per-cell bias every model shares, uniform in ±1 in ln
        // life) and a model that memorized its members: their error shrinks by 30 %
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let noise = Normal::new(0.0, 0.05).unwrap();
        let bias: Vec<f64> = Uniform::new(-1.0, 1.0)
            .unwrap()
            .sample_iter(&mut rng)
            .take(200)
            .collect();
        let shadows: Vec<Vec<f64>> = (0..6)
            .map(|_| bias.iter().map(|b| b + noise.sample(&mut rng)).collect())
            .collect();
        let target: Vec<f64> = bias
            .iter()
            .enumerate()
            .map(|(i, b)| if i < 100 { 0.7 * b } else { *b } + noise.sample(&mut rng))
            .collect();
        let scores = likelihood_ratio_scores(&target, &shadows).unwrap();
        let lira = auc(&scores[..100], &scores[100..]);
        let loss: Vec<f64> = target.iter().map(|e| -e * e).collect();
        let threshold = auc(&loss[..100], &loss[100..]);
        assert!(lira > 0.85, "LiRA AUC {lira}");
        assert!(
            lira > threshold + 0.15,
            "LiRA {lira}, loss threshold {threshold}"
        );
        // a model that never saw its candidates: chance
        let fresh: Vec<f64> = bias.iter().map(|b| b + noise.sample(&mut rng)).collect();
        let scores = likelihood_ratio_scores(&fresh, &shadows).unwrap();
        let chance = auc(&scores[..100], &scores[100..]);
        assert!((chance - 0.5).abs() < 0.1, "AUC without members {chance}");
    }

    #[test]
    fn the_likelihood_ratio_attack_rejects_what_it_cannot_read() {
        let one = [vec![0.1, 0.2]];
        assert!(matches!(
            likelihood_ratio_scores(&[0.0, 0.0], &one),
            Err(Error::NotEnoughData {
                needed: 2,
                got: 1,
                ..
            })
        ));
        assert!(matches!(
            likelihood_ratio_scores(&[], &[vec![], vec![]]),
            Err(Error::NotEnoughData {
                needed: 1,
                got: 0,
                ..
            })
        ));
        let ragged = [vec![0.1, 0.2], vec![0.1]];
        assert!(matches!(
            likelihood_ratio_scores(&[0.0, 0.0], &ragged),
            Err(Error::Shape { .. })
        ));
        let two = [vec![0.1, 0.2], vec![0.3, 0.1]];
        assert!(matches!(
            likelihood_ratio_scores(&[f64::NAN, 0.0], &two),
            Err(Error::Model { .. })
        ));
        // identical shadows: finite scores, no division by zero
        let same = [vec![0.1, 0.2], vec![0.1, 0.2]];
        let s = likelihood_ratio_scores(&[0.1, 0.0], &same).unwrap();
        assert!(s.iter().all(|v| v.is_finite()) && s[1] > s[0], "{s:?}");
    }

    #[test]
    fn auc_is_the_share_of_winning_pairs() {
        assert_eq!(auc(&[3.0, 4.0], &[1.0, 2.0]), 1.0);
        assert_eq!(auc(&[1.0, 2.0], &[3.0, 4.0]), 0.0);
        assert_eq!(auc(&[1.0, 3.0], &[2.0, 2.0]), 0.5);
        assert_eq!(auc(&[2.0], &[2.0]), 0.5);
    }
}
