//! Grouping fleets like with like by a summary of their cells' genome fingerprints, so that
//! averaging does not blur different chemistries into one mean.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::genome::GenomeFingerprint;

/// What a fleet's cells are, in aggregate: the chemistry mix and the centroid of their
/// discharge-curve signatures. Shared with the coordinator instead of the cells.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetSummary {
    /// Fraction of cells per cathode (`?` for unknown).
    pub chemistry_mix: BTreeMap<String, f64>,
    /// Mean normalized discharge V(Q) curve, V.
    pub signature_centroid: Vec<f64>,
}

impl FleetSummary {
    /// Summarize a fleet's fingerprints (at least one).
    pub fn from_fingerprints(fps: &[GenomeFingerprint]) -> Result<Self> {
        let Some(first) = fps.first() else {
            return Err(Error::NotEnoughData {
                what: "fingerprints for a fleet summary".into(),
                needed: 1,
                got: 0,
            });
        };
        let n = fps.len() as f64;
        let mut mix = BTreeMap::new();
        let mut centroid = vec![0.0; first.signature.v_of_q.len()];
        for fp in fps {
            *mix.entry(fp.cathode.clone().unwrap_or_else(|| "?".into()))
                .or_insert(0.0) += 1.0 / n;
            for (c, v) in centroid.iter_mut().zip(&fp.signature.v_of_q) {
                *c += v / n;
            }
        }
        Ok(FleetSummary {
            chemistry_mix: mix,
            signature_centroid: centroid,
        })
    }

    /// Distance: total variation between chemistry mixes plus the RMS difference (V) of the
    /// signature centroids.
    pub fn distance(&self, other: &Self) -> f64 {
        let keys: std::collections::BTreeSet<&String> = self
            .chemistry_mix
            .keys()
            .chain(other.chemistry_mix.keys())
            .collect();
        let tv = 0.5
            * keys
                .into_iter()
                .map(|k| {
                    (self.chemistry_mix.get(k).unwrap_or(&0.0)
                        - other.chemistry_mix.get(k).unwrap_or(&0.0))
                    .abs()
                })
                .sum::<f64>();
        let n = self
            .signature_centroid
            .len()
            .min(other.signature_centroid.len())
            .max(1) as f64;
        let rms = (self
            .signature_centroid
            .iter()
            .zip(&other.signature_centroid)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        tv + rms
    }
}

/// Average-linkage agglomerative clustering: merge the closest groups while their mean
/// pairwise distance is below `threshold`. Returns the group of each fleet, numbered by first
/// appearance.
pub fn cluster_fleets(summaries: &[FleetSummary], threshold: f64) -> Vec<usize> {
    let n = summaries.len();
    let d: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| summaries[i].distance(&summaries[j]))
                .collect()
        })
        .collect();
    let mut groups: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
    loop {
        let mut best: Option<(f64, usize, usize)> = None;
        for a in 0..groups.len() {
            for b in a + 1..groups.len() {
                let link = groups[a]
                    .iter()
                    .flat_map(|&i| groups[b].iter().map(move |&j| (i, j)))
                    .map(|(i, j)| d[i][j])
                    .sum::<f64>()
                    / (groups[a].len() * groups[b].len()) as f64;
                if link < threshold && best.is_none_or(|(l, _, _)| link < l) {
                    best = Some((link, a, b));
                }
            }
        }
        let Some((_, a, b)) = best else { break };
        let merged = groups.remove(b);
        groups[a].extend(merged);
    }
    let mut of = vec![0; n];
    groups.sort_by_key(|g| g.iter().copied().min().unwrap_or(0));
    for (gi, g) in groups.iter().enumerate() {
        for &i in g {
            of[i] = gi;
        }
    }
    of
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(mix: &[(&str, f64)], level: f64) -> FleetSummary {
        FleetSummary {
            chemistry_mix: mix.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            signature_centroid: vec![level; 8],
        }
    }

    #[test]
    fn like_fleets_group_together() {
        let s = [
            summary(&[("LFP", 0.8), ("NMC", 0.2)], 3.2),
            summary(&[("NMC", 0.7), ("NCA", 0.3)], 3.7),
            summary(&[("LFP", 0.7), ("NMC", 0.3)], 3.25),
            summary(&[("LCO", 0.8), ("NMC", 0.2)], 3.8),
        ];
        assert_eq!(cluster_fleets(&s, 0.4), vec![0, 1, 0, 2]);
        assert_eq!(cluster_fleets(&s, 0.0), vec![0, 1, 2, 3]);
        assert_eq!(cluster_fleets(&s, 10.0), vec![0, 0, 0, 0]);
        assert_eq!(s[0].distance(&s[0]), 0.0);
    }
}
