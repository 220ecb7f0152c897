//! Public ranges of the early-life features and of ln(life): what bounds one cell's share of
//! the [`LinearStatistics`], so that noise can hide it (record-level differential privacy,
//! [`RecordPrivacy`](crate::dp::RecordPrivacy)).
//!
//! Each value is clamped to its range and mapped affinely onto `[-1, 1]`; a feature a cell
//! lacks is read as the middle of its range (0 once mapped). A cell's design row then has
//! squared norm at most 13 (intercept, 10 features, one cathode indicator, the label), so its
//! share of the statistics (the upper triangle of its outer product) has L2 norm at most
//! `√((13² + 13) / 2) = √91` ([`statistics_sensitivity`]). Only the features a model may use
//! need to be released: the others are read as missing, which bounds the share tighter. The
//! per-feature presence counts are not released (they would add to the share, and noisy
//! counts of a few dozen cells say nothing): every released feature counts as every cell's,
//! and a fleet whose cells lack one scores the models that read it as useless to it. The map
//! is affine in the row (the intercept is 1), so the summed statistics of the mapped rows map
//! back exactly to those of the clamped rows.
//!
//! The ranges must not be read off the data they protect: the defaults are physical ranges
//! for LFP, NMC, NCA, LCO and LMO cells cycled between -20 and 60 °C at up to 6 C charge and
//! 10 C discharge, with lives of 50 to 20 000 cycles. Narrower ranges mean less noise for
//! the same ε (one cell's share is bounded in the mapped units), wider ones less clamping.

use serde::{Deserialize, Serialize};

use super::algebra::psd_projection;
use super::statistics::{at, GRAM_LEN, LABEL, ROW};
use super::{LinearRow, LinearStatistics, LINEAR_STATISTICS_LEN};
use crate::error::{Error, Result};
use crate::features::{EARLY_LIFE_FEATURES, EARLY_LIFE_FEATURE_COUNT};

/// L2 norm bound of one cell's share of the mapped statistics when `features` early-life
/// features are released (see the module docs): its row has squared norm at most
/// `s = features + 3`, so `√((s² + s) / 2)`; `√91` for all ten.
pub fn statistics_sensitivity(features: usize) -> f64 {
    let s = (features + 3) as f64;
    ((s * s + s) / 2.0).sqrt()
}

/// Public `(low, high)` ranges of the early-life features (in
/// [`EARLY_LIFE_FEATURES`] order) and of ln(cycle life).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PublicRanges {
    /// One `(low, high)` per early-life feature.
    pub features: Vec<(f64, f64)>,
    /// Range of ln(cycle life) (default ln 10 to ln 20 000).
    pub log_life: (f64, f64),
}

impl Default for PublicRanges {
    fn default() -> Self {
        PublicRanges {
            features: vec![
                (-8.0, -1.0), // log10 var ΔQ(V), Ah²
                (-4.0, 0.0),  // log10 |min ΔQ(V)|, Ah
                (-7.0, -2.0), // log10 fade slope per cycle (floored at 1e-7)
                (0.7, 1.2),   // early capacity / nominal
                (-0.2, 0.05), // fade between the early and late cycle / nominal
                (-20.0, 60.0),
                (0.0, 6.0),
                (0.0, 10.0),
                (-7.0, -2.0), // log10 linear fade rate per cycle (floored at 1e-7)
                (-7.0, -1.0), // log10 square-root fade coefficient (floored at 1e-7)
            ],
            log_life: (50f64.ln(), 20_000f64.ln()),
        }
    }
}

impl PublicRanges {
    /// Reject a wrong number of ranges and empty or non-finite ones.
    pub fn validate(&self) -> Result<()> {
        if self.features.len() != EARLY_LIFE_FEATURE_COUNT {
            return Err(Error::InvalidConfig {
                field: "ranges.features".into(),
                reason: format!(
                    "needs one range per early-life feature ({EARLY_LIFE_FEATURE_COUNT}), got {}",
                    self.features.len()
                ),
            });
        }
        let named = EARLY_LIFE_FEATURES
            .iter()
            .copied()
            .zip(&self.features)
            .chain([("log_life", &self.log_life)]);
        for (name, &(lo, hi)) in named {
            if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                return Err(Error::InvalidConfig {
                    field: format!("ranges.{name}"),
                    reason: format!("needs finite low < high, got ({lo}, {hi})"),
                });
            }
        }
        Ok(())
    }

    /// `(a, b)` of the map `x -> a x + b` of each design-row column (identity for the
    /// intercept and the cathode indicators).
    fn map(&self) -> [(f64, f64); ROW] {
        let mut m = [(1.0, 0.0); ROW];
        let onto = |(lo, hi): (f64, f64)| (2.0 / (hi - lo), -(lo + hi) / (hi - lo));
        for (k, &r) in self.features.iter().enumerate() {
            m[1 + k] = onto(r);
        }
        m[LABEL] = onto(self.log_life);
        m
    }

    /// The design row of a labelled cell, clamped to the ranges, a missing or unreleased
    /// feature read as the middle of its range.
    fn clamped(&self, row: &LinearRow) -> Result<[f64; ROW]> {
        row.require_label()?;
        let mut r = row.full();
        for (k, &(lo, hi)) in self.features.iter().enumerate() {
            r[1 + k] = match row.features.values[k] {
                Some(v) => v.clamp(lo, hi),
                None => (lo + hi) / 2.0,
            };
        }
        r[LABEL] = r[LABEL].clamp(self.log_life.0, self.log_life.1);
        Ok(r)
    }

    /// How many values of labelled `rows` lie outside the ranges (and are clamped).
    pub fn clamped_count(&self, rows: &[LinearRow]) -> usize {
        rows.iter()
            .map(|row| {
                let features = row
                    .features
                    .values
                    .iter()
                    .zip(&self.features)
                    .filter(|(v, (lo, hi))| v.is_some_and(|v| v < *lo || v > *hi))
                    .count();
                let label = row
                    .log_life
                    .is_some_and(|y| y < self.log_life.0 || y > self.log_life.1);
                features + usize::from(label)
            })
            .sum()
    }

    /// Statistics of the clamped `rows` with only the early-life features `released` (the
    /// others read as missing), without presence counts: what [`unmap`](Self::unmap) gives
    /// back from the sum of [`mapped`](Self::mapped) vectors.
    pub fn statistics(&self, rows: &[LinearRow], released: &[usize]) -> Result<LinearStatistics> {
        self.validate()?;
        let rows: Vec<LinearRow> = rows
            .iter()
            .map(|r| {
                let mut r = r.clone();
                for (k, v) in r.features.values.iter_mut().enumerate() {
                    if !released.contains(&k) {
                        *v = None;
                    }
                }
                r
            })
            .collect();
        let mut values = LinearStatistics::from_rows(&rows)?.values;
        values.fill(0.0);
        for row in &rows {
            let r = self.clamped(row)?;
            for i in 0..ROW {
                for j in i..ROW {
                    values[at(i, j)] += r[i] * r[j];
                }
            }
        }
        Ok(LinearStatistics { values })
    }

    /// The statistics in the mapped coordinates, where one cell's share has L2 norm at most
    /// [`statistics_sensitivity`] of the released features: the vector a fleet noises and
    /// sends.
    pub fn mapped(&self, stats: &LinearStatistics) -> Result<Vec<f64>> {
        self.validate()?;
        let m = self.map();
        let gram = full_gram(&stats.values);
        let mut out = stats.values.clone();
        for i in 0..ROW {
            for j in i..ROW {
                // (a_i x_i + b_i x_0)(a_j x_j + b_j x_0) summed over the cells
                let (ai, bi) = m[i];
                let (aj, bj) = m[j];
                let g = |p: usize, q: usize| gram[p * ROW + q];
                out[at(i, j)] = if i == 0 {
                    aj * g(0, j) + bj * g(0, 0)
                } else {
                    ai * aj * g(i, j) + ai * bj * g(i, 0) + bi * aj * g(0, j) + bi * bj * g(0, 0)
                };
            }
        }
        Ok(out)
    }

    /// Statistics back from a (noisy) sum of [`mapped`](Self::mapped) vectors of the
    /// `released` features: counts are rounded and kept at zero or above, a cathode with no
    /// cell keeps no weight, the Gram matrix is projected onto the positive semi-definite cone
    /// (which may move the counts by a fraction), and every released feature counts as every
    /// cell's. Post-processing only: it reads nothing but `values`.
    pub fn unmap(&self, values: &[f64], released: &[usize]) -> Result<LinearStatistics> {
        self.validate()?;
        if values.len() != LINEAR_STATISTICS_LEN || values.iter().any(|v| !v.is_finite()) {
            return Err(Error::Shape {
                what: "mapped linear statistics (finite)".into(),
                expected: vec![LINEAR_STATISTICS_LEN],
                got: vec![values.len()],
            });
        }
        // counts first (the intercept and the cathode indicators are not mapped): the cells,
        // each cathode's cells, a cathode with none keeps no weight; then the nearest
        // positive semi-definite matrix, so every fit on it is well posed
        let mut gram = full_gram(values);
        let count = |v: f64| v.round().max(0.0);
        gram[0] = count(gram[0]);
        for c in 1 + EARLY_LIFE_FEATURE_COUNT..LABEL {
            let n = count((gram[c] + gram[c * ROW + c]) / 2.0);
            for j in 0..ROW {
                if n == 0.0 {
                    gram[c * ROW + j] = 0.0;
                    gram[j * ROW + c] = 0.0;
                }
            }
            for (p, q) in [(0, c), (c, 0), (c, c)] {
                gram[p * ROW + q] = n;
            }
        }
        psd_projection(&mut gram, ROW);
        let m = self.map();
        // x_i = (u_i − b_i u_0) / a_i, with u_0 = x_0 = 1
        let inv: Vec<(f64, f64)> = m.iter().map(|&(a, b)| (1.0 / a, -b / a)).collect();
        let g = |p: usize, q: usize| gram[p * ROW + q];
        let mut out = values.to_vec();
        for i in 0..ROW {
            for j in i..ROW {
                let (ai, bi) = inv[i];
                let (aj, bj) = inv[j];
                out[at(i, j)] = if i == 0 {
                    aj * g(0, j) + bj * g(0, 0)
                } else {
                    ai * aj * g(i, j) + ai * bj * g(i, 0) + bi * aj * g(0, j) + bi * bj * g(0, 0)
                };
            }
        }
        // feature presence: a released feature counts as every cell's
        let n = out[at(0, 0)];
        for (k, v) in out[GRAM_LEN..].iter_mut().enumerate() {
            *v = if released.contains(&k) { n } else { 0.0 };
        }
        Ok(LinearStatistics { values: out })
    }
}

/// The symmetric `ROW x ROW` matrix of the upper triangle in `values`, row-major.
fn full_gram(values: &[f64]) -> Vec<f64> {
    let mut g = vec![0.0; ROW * ROW];
    for i in 0..ROW {
        for j in 0..ROW {
            g[i * ROW + j] = values[at(i, j)];
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::EarlyLifeFeatures;
    use crate::model::FeatureSet;
    use approx::assert_relative_eq;

    const ALL: [usize; EARLY_LIFE_FEATURE_COUNT] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];

    fn distance(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            .sqrt()
    }

    /// A row with the eight first features given and the fade split of a typical cell.
    fn row(id: &str, features: [Option<f64>; 8], cathode: usize, life: f64) -> LinearRow {
        let mut values = [Some(-4.0); EARLY_LIFE_FEATURE_COUNT];
        values[9] = Some(-3.0);
        values[..8].copy_from_slice(&features);
        LinearRow {
            cell_id: id.into(),
            features: EarlyLifeFeatures { values },
            cathode: Some(cathode),
            log_life: Some(life.ln()),
        }
    }

    fn rows() -> Vec<LinearRow> {
        vec![
            row(
                "a",
                [
                    Some(-4.0),
                    Some(-2.0),
                    Some(-5.0),
                    Some(1.0),
                    Some(-0.01),
                    None,
                    None,
                    None,
                ],
                1,
                800.0,
            ),
            row(
                "b",
                [
                    Some(-3.0),
                    Some(-1.5),
                    Some(-4.5),
                    Some(0.98),
                    Some(-0.02),
                    None,
                    None,
                    None,
                ],
                1,
                500.0,
            ),
            // out of range: clamped
            row(
                "c",
                [
                    Some(-12.0),
                    Some(-1.0),
                    Some(-4.0),
                    Some(0.97),
                    Some(-0.03),
                    None,
                    None,
                    None,
                ],
                4,
                30_000.0,
            ),
        ]
    }

    #[test]
    fn the_map_and_its_inverse_give_back_the_clamped_statistics() {
        let ranges = PublicRanges::default();
        let stats = ranges.statistics(&rows(), &ALL).unwrap();
        let back = ranges.unmap(&ranges.mapped(&stats).unwrap(), &ALL).unwrap();
        for (a, b) in stats.as_slice()[..GRAM_LEN].iter().zip(back.as_slice()) {
            assert_relative_eq!(*a, *b, epsilon = 1e-9, max_relative = 1e-9);
        }
        // presence is not released: every released feature reads as every cell's
        assert!(stats.as_slice()[GRAM_LEN..].iter().all(|c| *c == 0.0));
        assert!(back.as_slice()[GRAM_LEN..]
            .iter()
            .all(|c| (c - 3.0).abs() < 1e-6));
        let some = ranges
            .unmap(&ranges.mapped(&stats).unwrap(), &[0, 2])
            .unwrap();
        assert!(some.has_features(FeatureSet::Variance) && !some.has_features(FeatureSet::Full));
        assert_eq!(ranges.clamped_count(&rows()), 2);
        // clamped rows: the third cell reads at the range ends
        assert_relative_eq!(stats.gram(0, 1), -4.0 - 3.0 - 8.0);
        assert_relative_eq!(
            stats.gram(0, LABEL),
            800f64.ln() + 500f64.ln() + 20_000f64.ln()
        );
        // a missing feature reads as the middle of its range
        assert_relative_eq!(stats.gram(0, 6), 3.0 * 20.0);
    }

    #[test]
    fn one_cell_moves_the_mapped_statistics_by_at_most_the_sensitivity() {
        let ranges = PublicRanges::default();
        let extreme = row(
            "x",
            [
                Some(0.0),
                Some(1.0),
                Some(-1.0),
                Some(1.5),
                Some(0.2),
                Some(70.0),
                Some(10.0),
                Some(20.0),
            ],
            0,
            20_000.0,
        );
        let mut extreme = extreme;
        extreme.features.values[8] = Some(0.0);
        extreme.features.values[9] = Some(-9.0);
        let mut with = rows();
        with.push(extreme);
        let a = ranges
            .mapped(&ranges.statistics(&rows(), &ALL).unwrap())
            .unwrap();
        let b = ranges
            .mapped(&ranges.statistics(&with, &ALL).unwrap())
            .unwrap();
        let shift = distance(&a, &b);
        // the extreme cell attains the bound
        assert_relative_eq!(shift, statistics_sensitivity(10), max_relative = 1e-9);
        assert_relative_eq!(
            statistics_sensitivity(10),
            91f64.sqrt(),
            max_relative = 1e-15
        );
        // and with one feature released, the tighter one
        let one = |rows: &[LinearRow]| {
            ranges
                .mapped(&ranges.statistics(rows, &[0]).unwrap())
                .unwrap()
        };
        let (a, b) = (one(&rows()), one(&with));
        let shift = distance(&a, &b);
        assert_relative_eq!(shift, statistics_sensitivity(1), max_relative = 1e-9);
        assert_relative_eq!(
            statistics_sensitivity(1),
            10f64.sqrt(),
            max_relative = 1e-15
        );
    }

    #[test]
    fn bad_ranges_and_vectors_are_typed_errors() {
        let mut r = PublicRanges::default();
        r.features[2] = (1.0, 1.0);
        assert!(
            matches!(r.validate(), Err(Error::InvalidConfig { field, .. }) if field.contains("log_fade_slope"))
        );
        r.features.pop();
        assert!(r.validate().is_err());
        let ok = PublicRanges::default();
        assert!(ok.unmap(&[0.0; 3], &ALL).is_err());
        assert!(ok
            .unmap(&vec![f64::NAN; LINEAR_STATISTICS_LEN], &ALL)
            .is_err());
    }

    #[test]
    fn noisy_statistics_come_back_usable() {
        let ranges = PublicRanges::default();
        let stats = ranges.statistics(&rows(), &ALL).unwrap();
        let mut v = ranges.mapped(&stats).unwrap();
        for (k, x) in v.iter_mut().enumerate() {
            *x += if k % 2 == 0 { 2.5 } else { -2.5 };
        }
        let back = ranges.unmap(&v, &ALL).unwrap();
        let g = full_gram(back.as_slice());
        // positive semi-definite: every principal 1x1 and 2x2 minor is non-negative
        for i in 0..ROW {
            assert!(g[i * ROW + i] >= -1e-9);
            for j in 0..ROW {
                let minor = g[i * ROW + i] * g[j * ROW + j] - g[i * ROW + j].powi(2);
                assert!(
                    minor >= -1e-6 * (1.0 + g[i * ROW + i] * g[j * ROW + j]),
                    "{i} {j}"
                );
            }
        }
        assert!(back.as_slice().iter().all(|v| v.is_finite()));
        // (3 cells; the noise and the projection move the count, never below zero)
        assert!(back.count() > 0.0);
        // cathode counts are noisy too, never negative
        assert!((0..5).all(|c| back.cathode_count(c) >= -1e-9));
    }
}
