//! A privacy audit of a trained BatLiNet: the loss-threshold membership-inference attack.
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

use super::{BatLiNet, Dataset};
use crate::error::{Error, Result};

/// The membership scores `−(ln ŷ − ln y)²` of labelled `cells` under `model`, predicted with
/// `references` (the attacker's, e.g. public cells).
pub fn membership_scores(
    model: &BatLiNet,
    cells: &Dataset,
    references: &Dataset,
) -> Result<Vec<f64>> {
    let lives = cells.require_labels()?;
    let predicted = model.predict(cells, references)?;
    Ok(predicted
        .iter()
        .zip(&lives)
        .map(|(p, y)| -(p.ln() - y.ln()).powi(2))
        .collect())
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
    for (what, ds) in [("members", members), ("non-members", non_members)] {
        if ds.is_empty() {
            return Err(Error::NotEnoughData {
                what: format!("{what} for the membership audit"),
                needed: 1,
                got: 0,
            });
        }
    }
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
    use super::auc;

    #[test]
    fn auc_is_the_share_of_winning_pairs() {
        assert_eq!(auc(&[3.0, 4.0], &[1.0, 2.0]), 1.0);
        assert_eq!(auc(&[1.0, 2.0], &[3.0, 4.0]), 0.0);
        assert_eq!(auc(&[1.0, 3.0], &[2.0, 2.0]), 0.5);
        assert_eq!(auc(&[2.0], &[2.0]), 0.5);
    }
}
