//! The label transform: cycle life to the normalized log label the network learns, pooled or
//! within cathode chemistries (read from each cell's genome), and back, bounded.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How far a prediction may leave the training labels, in standard deviations of log cycle
/// life: predictions are bounded to `exp(mean ± max(4·std, ln 10))` around the geometric-mean
/// training life (training labels lie inside unless they are 4-sigma outliers; see
/// [`PREDICTION_BOUND_MIN_FACTOR`] for the floor). Beyond it a model extrapolates; a
/// prediction that hit the bound is reported ([`LabelTransform::inverse_bounded`],
/// `BatLiNet::predict_bounded`, `LinearModel::predict_rows`).
pub const PREDICTION_BOUND_SIGMAS: f64 = 4.0;

/// The bound never comes closer than this factor to the geometric-mean training life: cells
/// trained on a narrow range of lives (one MATR batch: 300-713 cycles, 4 sigma = a factor 2.4)
/// may meet cells that live three times longer (the next batch: up to 2237), which a
/// 4-sigma bound alone would cap. The bound is there to stop absurd outputs (1e19 cycles),
/// not plausible extrapolation.
pub const PREDICTION_BOUND_MIN_FACTOR: f64 = 10.0;

/// The prediction bound in log space for log-life moments `mean`, `std`:
/// `mean ± max(PREDICTION_BOUND_SIGMAS · std, ln PREDICTION_BOUND_MIN_FACTOR)`.
///
/// ```
/// use battery_fl_core::model::log_prediction_bounds;
/// let (lo, hi) = log_prediction_bounds(6.0, 1.0); // wide labels: 4 sigma
/// assert_eq!((lo, hi), (2.0, 10.0));
/// let (lo, hi) = log_prediction_bounds(6.0, 0.2); // narrow labels: a factor 10
/// assert!((hi - 6.0 - 10f64.ln()).abs() < 1e-12 && (6.0 - lo - 10f64.ln()).abs() < 1e-12);
/// ```
pub fn log_prediction_bounds(mean: f64, std: f64) -> (f64, f64) {
    let half = (PREDICTION_BOUND_SIGMAS * std).max(PREDICTION_BOUND_MIN_FACTOR.ln());
    (mean - half, mean + half)
}

/// Cathode chemistries that get their own label moments under
/// [`LabelGrouping::Cathode`], in the fixed order in which every fleet sends its statistics
/// (cells of other or unknown cathodes read the pooled moments).
pub const LABEL_GROUPS: [&str; 5] = ["LCO", "LFP", "LMO", "NCA", "NMC"];

/// Pseudo-count of the shrinkage of a group's moments toward the pooled ones: a group of `n`
/// cells gets `(n · group + GROUP_PRIOR_CELLS · pooled) / (n + GROUP_PRIOR_CELLS)`, so a
/// chemistry seen in two cells borrows most of its scale from the others (empirical Bayes).
pub const GROUP_PRIOR_CELLS: f64 = 4.0;

/// Whether cycle lives are normalized once over all cells or within cathode chemistries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelGrouping {
    /// One mean and spread of log life over all training cells (as published).
    #[default]
    Pooled,
    /// One mean and spread per cathode chemistry of [`LABEL_GROUPS`] (from the genome),
    /// shrunk toward the pooled ones. The network then learns where a cell lies within its
    /// chemistry's lives, which its difference features (each cell against its own base
    /// cycle) can tell, instead of each chemistry's typical life, which they largely cannot.
    Cathode,
}

/// Mean and standard deviation of ln(cycle life).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LabelMoments {
    /// Mean of ln(cycle life).
    pub mean: f64,
    /// Standard deviation of ln(cycle life) (population).
    pub std: f64,
}

/// Count, Σ ln(life) and Σ ln(life)² of a set of labels: what fleets sum to share a transform.
pub type LabelSums = [f64; 3];

/// y' = (ln y − mean) / std, with the moments of the cell's cathode group when it has one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LabelTransform {
    /// Mean of ln(cycle life) over all training cells.
    pub mean: f64,
    /// Standard deviation of ln(cycle life) over all training cells (population).
    pub std: f64,
    /// Per [`LABEL_GROUPS`] entry, that chemistry's shrunk moments (`None`: pooled ones).
    #[serde(default, skip_serializing_if = "no_groups")]
    pub groups: [Option<LabelMoments>; LABEL_GROUPS.len()],
}

fn no_groups(g: &[Option<LabelMoments>; LABEL_GROUPS.len()]) -> bool {
    g.iter().all(Option::is_none)
}

/// The [`LABEL_GROUPS`] position of a cathode, if it has one.
pub fn label_group(cathode: Option<&str>) -> Option<usize> {
    let c = cathode?;
    LABEL_GROUPS.iter().position(|g| g.eq_ignore_ascii_case(c))
}

/// Count, Σ ln(life) and Σ ln(life)² of `lives` (all finite and positive).
pub fn label_sums(lives: &[f64]) -> Result<LabelSums> {
    if let Some(v) = lives.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
        return Err(Error::config(
            "labels",
            format!("cycle lives must be positive, got {v}"),
        ));
    }
    let logs = lives.iter().map(|v| v.ln());
    Ok([
        lives.len() as f64,
        logs.clone().sum(),
        logs.map(|l| l * l).sum(),
    ])
}

/// The pooled sums followed by the sums of each [`LABEL_GROUPS`] entry: `3 · (1 + groups)`
/// numbers, the layout fleets sum for [`LabelTransform::from_grouped_sums`].
pub fn grouped_label_sums(lives: &[f64], cathodes: &[Option<&str>]) -> Result<Vec<f64>> {
    if lives.len() != cathodes.len() {
        return Err(Error::Shape {
            what: "cathodes per label".into(),
            expected: vec![lives.len()],
            got: vec![cathodes.len()],
        });
    }
    let mut out = label_sums(lives)?.to_vec();
    for g in 0..LABEL_GROUPS.len() {
        let mine: Vec<f64> = lives
            .iter()
            .zip(cathodes)
            .filter(|(_, c)| label_group(**c) == Some(g))
            .map(|(l, _)| *l)
            .collect();
        out.extend(label_sums(&mine)?);
    }
    Ok(out)
}

impl LabelTransform {
    /// Pooled moments agreed elsewhere (no groups).
    pub fn new(mean: f64, std: f64) -> Self {
        LabelTransform {
            mean,
            std,
            groups: [None; LABEL_GROUPS.len()],
        }
    }

    /// Fit on cycle lives (all positive; at least one), pooled.
    pub fn fit(lives: &[f64]) -> Result<Self> {
        let [n, s, ss] = label_sums(lives)?;
        Self::from_sums(n, s, ss)
    }

    /// Fit on cycle lives with the cathode of each cell (`cathodes[i]` for `lives[i]`).
    pub fn fit_grouped(
        lives: &[f64],
        cathodes: &[Option<&str>],
        grouping: LabelGrouping,
    ) -> Result<Self> {
        match grouping {
            LabelGrouping::Pooled => Self::fit(lives),
            LabelGrouping::Cathode => {
                Self::from_grouped_sums(&grouped_label_sums(lives, cathodes)?, grouping)
            }
        }
    }

    /// From federated sufficient statistics of ln(life): count, sum and sum of squares.
    pub fn from_sums(count: f64, sum: f64, sum_sq: f64) -> Result<Self> {
        let m = moments(count, sum, sum_sq)?;
        Ok(LabelTransform {
            mean: m.mean,
            std: m.std,
            groups: [None; LABEL_GROUPS.len()],
        })
    }

    /// From [`grouped_label_sums`] (summed over fleets): the pooled moments, and under
    /// [`LabelGrouping::Cathode`] each group's moments shrunk toward them
    /// ([`GROUP_PRIOR_CELLS`]). Counts are rounded (a secure sum carries them to ~4e-7).
    pub fn from_grouped_sums(sums: &[f64], grouping: LabelGrouping) -> Result<Self> {
        let expected = 3 * (1 + LABEL_GROUPS.len());
        if sums.len() != expected {
            return Err(Error::Shape {
                what: "grouped label sums".into(),
                expected: vec![expected],
                got: vec![sums.len()],
            });
        }
        let mut t = Self::from_sums(sums[0].round(), sums[1], sums[2])?;
        if grouping == LabelGrouping::Cathode {
            let pooled_var = t.std * t.std;
            for (g, slot) in t.groups.iter_mut().enumerate() {
                let [n, s, ss] = [sums[3 + 3 * g].round(), sums[4 + 3 * g], sums[5 + 3 * g]];
                if n < 1.0 {
                    continue;
                }
                let mean = s / n;
                let var = (ss / n - mean * mean).max(0.0);
                let k = GROUP_PRIOR_CELLS;
                let shrunk_mean = (n * mean + k * t.mean) / (n + k);
                let shrunk_var = (n * var + k * pooled_var) / (n + k);
                *slot = Some(from_moments(shrunk_mean, shrunk_var)?);
            }
        }
        Ok(t)
    }

    /// The moments a cell of `cathode` is read with.
    pub fn moments(&self, cathode: Option<&str>) -> LabelMoments {
        label_group(cathode)
            .and_then(|g| self.groups[g])
            .unwrap_or(LabelMoments {
                mean: self.mean,
                std: self.std,
            })
    }

    /// Cycle life -> normalized label (pooled moments).
    pub fn forward(&self, life: f64) -> f64 {
        self.forward_for(life, None)
    }

    /// Cycle life of a cell of `cathode` -> normalized label.
    pub fn forward_for(&self, life: f64, cathode: Option<&str>) -> f64 {
        let m = self.moments(cathode);
        (life.ln() - m.mean) / m.std
    }

    /// Normalized label -> cycle life (pooled moments).
    pub fn inverse(&self, y: f64) -> f64 {
        self.inverse_for(y, None)
    }

    /// Normalized label of a cell of `cathode` -> cycle life.
    pub fn inverse_for(&self, y: f64, cathode: Option<&str>) -> f64 {
        let m = self.moments(cathode);
        (y * m.std + m.mean).exp()
    }

    /// Normalized label -> cycle life bounded to [`log_prediction_bounds`] around the
    /// training labels ([`PREDICTION_BOUND_SIGMAS`] standard deviations, at least a factor
    /// [`PREDICTION_BOUND_MIN_FACTOR`] either way), and whether the bound was hit (a NaN
    /// stays NaN and counts as bounded).
    ///
    /// ```
    /// use battery_fl_core::model::LabelTransform;
    /// let t = LabelTransform::from_sums(1.0, 7.0, 49.0)?; // mean 7, no spread: std 1
    /// assert_eq!(t.inverse_bounded(0.0), (7.0_f64.exp(), false));
    /// let (life, bounded) = t.inverse_bounded(80.0); // what once printed 1.4e19 cycles
    /// assert!(bounded && (life - 11.0_f64.exp()).abs() < 1e-6);
    /// # Ok::<(), battery_fl_core::Error>(())
    /// ```
    pub fn inverse_bounded(&self, y: f64) -> (f64, bool) {
        self.inverse_bounded_for(y, None)
    }

    /// As [`inverse_bounded`](Self::inverse_bounded) for a cell of `cathode` (bounded around
    /// its group's labels).
    pub fn inverse_bounded_for(&self, y: f64, cathode: Option<&str>) -> (f64, bool) {
        let b = self.bound_for(cathode);
        if y.is_nan() {
            return (f64::NAN, true);
        }
        (self.inverse_for(y.clamp(-b, b), cathode), y.abs() > b)
    }

    /// The bound on the normalized label of a cell of `cathode`: `|y| <= max(4, ln 10 / std)`
    /// (see [`log_prediction_bounds`]).
    pub fn bound_for(&self, cathode: Option<&str>) -> f64 {
        let m = self.moments(cathode);
        let (_, hi) = self.log_bounds_for(cathode);
        (hi - m.mean) / m.std
    }

    /// The prediction bound of a cell of `cathode` in ln(life) (see
    /// [`log_prediction_bounds`]): where intervals are clipped.
    pub fn log_bounds_for(&self, cathode: Option<&str>) -> (f64, f64) {
        let m = self.moments(cathode);
        log_prediction_bounds(m.mean, m.std)
    }

    /// Whether every mean is finite and every spread finite and positive.
    pub fn is_valid(&self) -> bool {
        let ok = |m: &LabelMoments| m.mean.is_finite() && m.std.is_finite() && m.std > 0.0;
        ok(&self.moments(None)) && self.groups.iter().flatten().all(ok)
    }
}

fn moments(count: f64, sum: f64, sum_sq: f64) -> Result<LabelMoments> {
    if count.is_nan() || count < 1.0 {
        return Err(Error::NotEnoughData {
            what: "label transform".into(),
            needed: 1,
            got: 0,
        });
    }
    let mean = sum / count;
    from_moments(mean, (sum_sq / count - mean * mean).max(0.0))
}

fn from_moments(mean: f64, var: f64) -> Result<LabelMoments> {
    // a single cell (or identical lives) has zero spread: scale by 1 instead of dividing by 0
    let std = if var > 1e-12 { var.sqrt() } else { 1.0 };
    if !(mean.is_finite() && std.is_finite()) {
        return Err(Error::config("labels", "non-finite label statistics"));
    }
    Ok(LabelMoments { mean, std })
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn label_transform_round_trips_and_matches_sums() {
        let lives = [300.0, 800.0, 1500.0];
        let t = LabelTransform::fit(&lives).unwrap();
        for l in lives {
            assert_relative_eq!(t.inverse(t.forward(l)), l, max_relative = 1e-12);
        }
        let logs: Vec<f64> = lives.iter().map(|v: &f64| v.ln()).collect();
        let s = LabelTransform::from_sums(3.0, logs.iter().sum(), logs.iter().map(|v| v * v).sum())
            .unwrap();
        assert_relative_eq!(s.mean, t.mean, epsilon = 1e-12);
        assert_relative_eq!(s.std, t.std, epsilon = 1e-9);
        assert!(LabelTransform::fit(&[]).is_err());
        assert!(LabelTransform::fit(&[0.0]).is_err());
        assert_eq!(LabelTransform::fit(&[500.0]).unwrap().std, 1.0);
    }

    #[test]
    fn cathode_groups_read_each_chemistry_within_its_own_lives_shrunk_toward_the_pool() {
        // LFP lives near 2000, NMC near 500; one cell of unknown cathode
        let lives = [1800.0, 2000.0, 2200.0, 2100.0, 450.0, 500.0, 550.0, 900.0];
        let cathodes = [
            Some("LFP"),
            Some("lfp"),
            Some("LFP"),
            Some("LFP"),
            Some("NMC"),
            Some("NMC"),
            Some("NMC"),
            None,
        ];
        let pooled = LabelTransform::fit(&lives).unwrap();
        let grouped =
            LabelTransform::fit_grouped(&lives, &cathodes, LabelGrouping::Cathode).unwrap();
        assert_eq!(grouped.moments(None), pooled.moments(None));
        assert_eq!(grouped.moments(Some("LCO")), pooled.moments(None));
        let lfp = grouped.moments(Some("LFP"));
        let nmc = grouped.moments(Some("NMC"));
        // each group's mean lies between its own and the pooled mean, by the stated weights
        let own = |xs: &[f64]| xs.iter().map(|v| v.ln()).sum::<f64>() / xs.len() as f64;
        let k = GROUP_PRIOR_CELLS;
        let want = (4.0 * own(&lives[..4]) + k * pooled.mean) / (4.0 + k);
        assert_relative_eq!(lfp.mean, want, epsilon = 1e-12);
        assert!(nmc.mean < pooled.mean && nmc.mean > own(&lives[4..7]));
        // a typical LFP cell and a typical NMC cell read closer together within their groups
        // than the pooled transform puts them (with 3-4 cells a group keeps half its own
        // moments)
        let grouped_gap =
            grouped.forward_for(2000.0, Some("LFP")) - grouped.forward_for(500.0, Some("NMC"));
        let pooled_gap = pooled.forward(2000.0) - pooled.forward(500.0);
        assert!(
            pooled_gap > 2.0 && grouped_gap < 0.75 * pooled_gap,
            "{grouped_gap} {pooled_gap}"
        );
        for (l, c) in lives.iter().zip(cathodes) {
            let y = grouped.forward_for(*l, c);
            assert_relative_eq!(grouped.inverse_for(y, c), *l, max_relative = 1e-12);
        }
        // summed per-fleet sums give the pooled fit
        let a = grouped_label_sums(&lives[..3], &cathodes[..3]).unwrap();
        let b = grouped_label_sums(&lives[3..], &cathodes[3..]).unwrap();
        let total: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        let summed = LabelTransform::from_grouped_sums(&total, LabelGrouping::Cathode).unwrap();
        assert_relative_eq!(summed.moments(Some("NMC")).std, nmc.std, epsilon = 1e-9);
        // pooled grouping ignores the groups; a wrong layout is a typed error
        let p = LabelTransform::from_grouped_sums(&total, LabelGrouping::Pooled).unwrap();
        assert!(no_groups(&p.groups));
        assert_relative_eq!(p.moments(Some("LFP")).std, pooled.std, epsilon = 1e-12);
        assert!(matches!(
            LabelTransform::from_grouped_sums(&total[1..], LabelGrouping::Cathode),
            Err(Error::Shape { .. })
        ));
        assert!(grouped_label_sums(&lives, &cathodes[1..]).is_err());
        // the pooled form serializes as before; groups round-trip
        let json = serde_json::to_string(&pooled).unwrap();
        assert!(!json.contains("groups"));
        let back: LabelTransform = serde_json::from_str(&json).unwrap();
        assert_eq!(back, pooled);
        let back: LabelTransform =
            serde_json::from_str(&serde_json::to_string(&grouped).unwrap()).unwrap();
        assert_eq!(back, grouped);
    }
}
