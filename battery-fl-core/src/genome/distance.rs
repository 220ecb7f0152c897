//! The fingerprint distance and a small nearest-neighbour index.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{GenomeFingerprint, Signature};

/// Weights of the fingerprint distance.
///
/// The distance is a weighted sum of per-part distances:
///
/// | part | per-part distance | default weight |
/// | --- | --- | --- |
/// | cathode | 0 if equal, else 1 | 1.0 |
/// | anode | 0 if equal, else 1 | 0.3 |
/// | electrolyte | 0 if equal, else 1 | 0.2 |
/// | form factor | 0 if equal, else 1 | 0.2 |
/// | nominal capacity | \|ln(a / b)\| | 0.5 |
/// | voltage window | \|Δmin\| + \|Δmax\| (V) | 0.5 |
/// | composition | total variation ½ Σ \|a_e − b_e\| | 1.0 |
/// | purity | mean over impurities of \|log10(1 + ppm_a) − log10(1 + ppm_b)\| | 0.1 |
/// | signature | see [`GenomeWeights::signature_distance`] | 2.0 |
///
/// Unknown categorical fields compare equal when both are unknown; a known against an unknown
/// value counts `missing` (default 0.5) for that part. Every part is a metric on its own
/// domain, so the sum is zero on identical fingerprints and symmetric; the signature part is
/// a true metric (a weighted Euclidean distance on fixed-length vectors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenomeWeights {
    /// Cathode mismatch.
    pub cathode: f64,
    /// Anode mismatch.
    pub anode: f64,
    /// Electrolyte mismatch.
    pub electrolyte: f64,
    /// Form-factor mismatch.
    pub form_factor: f64,
    /// Log ratio of nominal capacities.
    pub nominal_capacity: f64,
    /// Voltage-window difference, per volt.
    pub voltage_window: f64,
    /// Composition total variation.
    pub composition: f64,
    /// Mean log10 impurity difference.
    pub purity: f64,
    /// Signature distance.
    pub signature: f64,
    /// Per-part distance when one side knows a field and the other does not.
    pub missing: f64,
    /// Inside the signature: weight of the V(Q) RMS difference (per volt).
    pub curve: f64,
    /// Inside the signature: weight of the dQ/dV RMS difference (per 1/V).
    pub dqdv: f64,
    /// Inside the signature: weight of the capacity-ratio difference.
    pub capacity_ratio: f64,
}

impl Default for GenomeWeights {
    fn default() -> Self {
        GenomeWeights {
            cathode: 1.0,
            anode: 0.3,
            electrolyte: 0.2,
            form_factor: 0.2,
            nominal_capacity: 0.5,
            voltage_window: 0.5,
            composition: 1.0,
            purity: 0.1,
            signature: 2.0,
            missing: 0.5,
            curve: 1.0,
            dqdv: 0.05,
            capacity_ratio: 1.0,
        }
    }
}

impl GenomeWeights {
    /// Weights that look at the electrochemical signature only.
    pub fn signature_only() -> Self {
        GenomeWeights {
            cathode: 0.0,
            anode: 0.0,
            electrolyte: 0.0,
            form_factor: 0.0,
            nominal_capacity: 0.0,
            voltage_window: 0.0,
            composition: 0.0,
            purity: 0.0,
            signature: 1.0,
            ..Default::default()
        }
    }

    /// The weighted fingerprint distance.
    pub fn distance(&self, a: &GenomeFingerprint, b: &GenomeFingerprint) -> f64 {
        let cat = |x: &Option<String>, y: &Option<String>| match (x, y) {
            (Some(x), Some(y)) => f64::from(u8::from(x != y)),
            (None, None) => 0.0,
            _ => self.missing,
        };
        let window = match (a.voltage_window, b.voltage_window) {
            (Some((l1, h1)), Some((l2, h2))) => (l1 - l2).abs() + (h1 - h2).abs(),
            (None, None) => 0.0,
            _ => self.missing,
        };
        self.cathode * cat(&a.cathode, &b.cathode)
            + self.anode * cat(&a.anode, &b.anode)
            + self.electrolyte * cat(&a.electrolyte, &b.electrolyte)
            + self.form_factor * cat(&a.form_factor, &b.form_factor)
            + self.nominal_capacity
                * (a.nominal_capacity_ah.ln() - b.nominal_capacity_ah.ln()).abs()
            + self.voltage_window * window
            + self.composition * total_variation(&a.composition, &b.composition)
            + self.purity * purity_distance(&a.purity_ppm, &b.purity_ppm)
            + self.signature * self.signature_distance(&a.signature, &b.signature)
    }

    /// Distance between signatures: `sqrt(curve² · mean((Va − Vb)²) + dqdv² · mean((Da −
    /// Db)²) + capacity_ratio² · (ra − rb)²)`, a weighted Euclidean metric. Signatures of
    /// different lengths are compared on their common prefix.
    pub fn signature_distance(&self, a: &Signature, b: &Signature) -> f64 {
        let msd = |x: &[f64], y: &[f64]| {
            let n = x.len().min(y.len());
            if n == 0 {
                return 0.0;
            }
            x.iter().zip(y).map(|(p, q)| (p - q) * (p - q)).sum::<f64>() / n as f64
        };
        let dr = a.capacity_ratio - b.capacity_ratio;
        (self.curve * self.curve * msd(&a.v_of_q, &b.v_of_q)
            + self.dqdv * self.dqdv * msd(&a.dqdv, &b.dqdv)
            + self.capacity_ratio * self.capacity_ratio * dr * dr)
            .sqrt()
    }
}

fn total_variation(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>) -> f64 {
    let keys = a
        .keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>();
    0.5 * keys
        .into_iter()
        .map(|k| (a.get(k).copied().unwrap_or(0.0) - b.get(k).copied().unwrap_or(0.0)).abs())
        .sum::<f64>()
}

fn purity_distance(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>) -> f64 {
    let keys = a
        .keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>();
    if keys.is_empty() {
        return 0.0;
    }
    let n = keys.len() as f64;
    let l = |m: &BTreeMap<String, f64>, k: &String| {
        (1.0 + m.get(k).copied().unwrap_or(0.0).max(0.0)).log10()
    };
    keys.into_iter()
        .map(|k| (l(a, k) - l(b, k)).abs())
        .sum::<f64>()
        / n
}

/// A brute-force k-nearest index over fingerprints (fleets hold hundreds to thousands of
/// cells, where a linear scan is fast and exact).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GenomeIndex {
    fingerprints: Vec<GenomeFingerprint>,
    weights: GenomeWeights,
}

impl GenomeIndex {
    /// An index with the default weights.
    pub fn new(fingerprints: Vec<GenomeFingerprint>) -> Self {
        GenomeIndex {
            fingerprints,
            weights: GenomeWeights::default(),
        }
    }

    /// An index with custom weights.
    pub fn with_weights(fingerprints: Vec<GenomeFingerprint>, weights: GenomeWeights) -> Self {
        GenomeIndex {
            fingerprints,
            weights,
        }
    }

    /// Number of fingerprints.
    pub fn len(&self) -> usize {
        self.fingerprints.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.fingerprints.is_empty()
    }

    /// The fingerprints, in insertion order.
    pub fn fingerprints(&self) -> &[GenomeFingerprint] {
        &self.fingerprints
    }

    /// The distance from `query` to the fingerprint at `position` (infinite past the end).
    pub fn distance_to(&self, query: &GenomeFingerprint, position: usize) -> f64 {
        self.fingerprints
            .get(position)
            .map_or(f64::INFINITY, |f| self.weights.distance(query, f))
    }

    /// The `k` nearest fingerprints to `query` as `(position, distance)`, nearest first; ties
    /// keep insertion order. Returns fewer than `k` when the index is smaller.
    pub fn nearest(&self, query: &GenomeFingerprint, k: usize) -> Vec<(usize, f64)> {
        self.nearest_where(query, k, |_| true)
    }

    /// Like [`nearest`](Self::nearest), over the positions for which `keep` is true (for
    /// example, excluding the query's own cell from its references).
    pub fn nearest_where(
        &self,
        query: &GenomeFingerprint,
        k: usize,
        keep: impl Fn(usize) -> bool,
    ) -> Vec<(usize, f64)> {
        let mut all: Vec<(usize, f64)> = self
            .fingerprints
            .iter()
            .enumerate()
            .filter(|(i, _)| keep(*i))
            .map(|(i, f)| (i, self.weights.distance(query, f)))
            .collect();
        let k = k.min(all.len());
        if k == 0 {
            return Vec::new();
        }
        let by = |a: &(usize, f64), b: &(usize, f64)| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0));
        all.select_nth_unstable_by(k - 1, by);
        all.truncate(k);
        all.sort_by(by);
        all
    }
}
