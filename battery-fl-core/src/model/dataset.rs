//! Featurized cells ready for the network: branch-A inputs, raw inputs for inter-cell
//! differences, labels and fingerprints.

use std::borrow::Borrow;
use std::sync::Arc;

use super::config::{BatLiNetConfig, InterFeatures};
use crate::data::{Cell, LabelConfig};
use crate::error::{Error, Result};
use crate::features::{clean_all, FeatureCleanConfig, Features, Featurizer};
use crate::genome::GenomeFingerprint;
use rayon::prelude::*;

mod scales;
pub use scales::{InputScales, InputStats};

/// One cell's branch-A block, raw block, label and fingerprint.
type CellInputs = (Vec<f32>, Vec<f32>, Option<f64>, GenomeFingerprint);

/// [`Error::Shape`] unless the dataset array `what` holds `expected` values.
fn check_len(what: &str, expected: usize, got: usize) -> Result<()> {
    if expected == got {
        return Ok(());
    }
    Err(Error::Shape {
        what: format!("dataset {what}"),
        expected: vec![expected],
        got: vec![got],
    })
}

/// Network inputs for a set of cells.
///
/// Built by featurizing cells ([`Dataset::from_cells`], [`Dataset::for_config`]) or from
/// arrays with the checked [`Dataset::new`]; the per-cell arrays always agree in length.
///
/// # Shapes
/// [`branch_a`](Self::branch_a) and [`raw`](Self::raw) hold `len()` blocks of
/// `channels x height x width` f32 values each.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Cell ids, in order.
    cell_ids: Vec<String>,
    /// Cleaned intra-cell differences (branch A input), one block per cell. Shared, not
    /// copied, between clones: a fleet's data is cloned into a federation and its baselines.
    branch_a: Arc<[f32]>,
    /// The features inter-cell differences are formed from (branch B): the cycle-filtered
    /// raw features, or a copy of `branch_a` (see `inter`).
    raw: Arc<[f32]>,
    /// What `raw` holds: raw curves (the default) or cycle differences
    /// ([`Dataset::with_inter_features`]).
    inter: InterFeatures,
    /// Cycle lives, when known (`None` for cells to predict).
    labels: Vec<Option<f64>>,
    /// Genome fingerprints (for genome-nearest reference selection).
    fingerprints: Vec<GenomeFingerprint>,
    /// (channels, height, width) of one block.
    shape: [usize; 3],
}

impl Dataset {
    /// A dataset of `cell_ids.len()` cells from its arrays: `branch_a` (cleaned intra-cell
    /// differences) and `raw` (the cycle-filtered raw features inter-cell differences are
    /// formed from) hold one block of `shape` (channels, cycles, grid points) per cell, and
    /// `labels` (cycle lives, `None` for cells to predict) and `fingerprints` one entry per
    /// cell. The inter-cell features are [`InterFeatures::Raw`]; see
    /// [`Dataset::with_inter_features`].
    ///
    /// # Errors
    /// [`Error::Shape`] naming the first array whose length does not fit the number of cells.
    pub fn new(
        cell_ids: Vec<String>,
        branch_a: Vec<f32>,
        raw: Vec<f32>,
        labels: Vec<Option<f64>>,
        fingerprints: Vec<GenomeFingerprint>,
        shape: [usize; 3],
    ) -> Result<Self> {
        let n = cell_ids.len();
        let block: usize = shape.iter().product();
        check_len("branch_a", n * block, branch_a.len())?;
        check_len("raw", n * block, raw.len())?;
        check_len("labels", n, labels.len())?;
        check_len("fingerprints", n, fingerprints.len())?;
        Ok(Dataset {
            cell_ids,
            branch_a: branch_a.into(),
            raw: raw.into(),
            inter: InterFeatures::Raw,
            labels,
            fingerprints,
            shape,
        })
    }

    /// This dataset with other labels (one per cell, `None` for unlabelled cells).
    ///
    /// # Errors
    /// [`Error::Shape`] when `labels` does not hold one entry per cell.
    pub fn with_labels(mut self, labels: Vec<Option<f64>>) -> Result<Self> {
        check_len("labels", self.len(), labels.len())?;
        self.labels = labels;
        Ok(self)
    }

    /// This dataset with other genome fingerprints (one per cell).
    ///
    /// # Errors
    /// [`Error::Shape`] when `fingerprints` does not hold one entry per cell.
    pub fn with_fingerprints(mut self, fingerprints: Vec<GenomeFingerprint>) -> Result<Self> {
        check_len("fingerprints", self.len(), fingerprints.len())?;
        self.fingerprints = fingerprints;
        Ok(self)
    }

    /// Cell ids, in order.
    pub fn cell_ids(&self) -> &[String] {
        &self.cell_ids
    }

    /// The first cell of `self` that `other` holds too, by id (none for disjoint sets, as
    /// training and calibration cells must be).
    pub fn shared_cell(&self, other: &Dataset) -> Option<&str> {
        self.cell_ids
            .iter()
            .find(|id| other.cell_ids.contains(id))
            .map(String::as_str)
    }

    /// Cleaned intra-cell differences (branch A input): [`len`](Self::len) blocks of
    /// [`shape`](Self::shape).
    pub fn branch_a(&self) -> &[f32] {
        &self.branch_a
    }

    /// The features inter-cell differences are formed from (branch B input):
    /// [`len`](Self::len) blocks of [`shape`](Self::shape), the cycle-filtered raw features or
    /// a copy of [`branch_a`](Self::branch_a) (see [`inter`](Self::inter)).
    pub fn raw(&self) -> &[f32] {
        &self.raw
    }

    /// What [`raw`](Self::raw) holds: raw curves (the default) or cycle differences
    /// ([`Dataset::with_inter_features`]).
    pub fn inter(&self) -> InterFeatures {
        self.inter
    }

    /// Cycle lives, when known (`None` for cells to predict), one per cell.
    pub fn labels(&self) -> &[Option<f64>] {
        &self.labels
    }

    /// Genome fingerprints (for genome-nearest reference selection), one per cell.
    pub fn fingerprints(&self) -> &[GenomeFingerprint] {
        &self.fingerprints
    }

    /// (channels, height, width) of one block.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Featurize `cells` (in parallel; owned or borrowed, `&[Cell]` or `&[&Cell]`) and keep
    /// the requested channels. Labels come from `label` (recorded or computed; censored cells
    /// get `None`).
    pub fn from_cells<C: Borrow<Cell> + Sync>(
        cells: &[C],
        featurizer: &Featurizer,
        channels: &[usize],
        label: &LabelConfig,
    ) -> Result<Self> {
        let [c_all, h, w] = featurizer.output_shape();
        if let Some(&c) = channels.iter().find(|&&c| c >= c_all) {
            return Err(Error::config(
                "input_channels",
                format!("channel {c} >= {c_all}"),
            ));
        }
        let per_cell: Vec<CellInputs> = cells
            .par_iter()
            .map(|cell| {
                let cell = cell.borrow();
                let a = featurizer.branch_a(cell)?;
                // inter-cell differences use raw features after the cycle filter only, with
                // flagged rows replaced by their nearest kept row; the filter is per cell, so
                // filtering once here equals filtering per pair
                let mut raw = featurizer.transform(cell)?;
                crate::features::filter_cycles_fill(&mut raw, &featurizer.config().clean);
                let pick = |f: &[f32]| {
                    let mut out = Vec::with_capacity(channels.len() * h * w);
                    for &c in channels {
                        out.extend_from_slice(&f[c * h * w..(c + 1) * h * w]);
                    }
                    out
                };
                let life = cell.cycle_life(label)?.cycles().map(f64::from);
                Ok((
                    pick(a.as_slice()),
                    pick(raw.as_slice()),
                    life,
                    GenomeFingerprint::from_cell(cell)?,
                ))
            })
            .collect::<Result<_>>()?;
        let mut branch_a = Vec::with_capacity(cells.len() * channels.len() * h * w);
        let mut raws = Vec::with_capacity(cells.len() * channels.len() * h * w);
        let mut labels = Vec::with_capacity(cells.len());
        let mut fingerprints = Vec::with_capacity(cells.len());
        for (a, raw, life, fp) in per_cell {
            branch_a.extend(a);
            raws.extend(raw);
            labels.push(life);
            fingerprints.push(fp);
        }
        Ok(Dataset {
            cell_ids: cells.iter().map(|c| c.borrow().id().to_string()).collect(),
            branch_a: branch_a.into(),
            raw: raws.into(),
            inter: InterFeatures::Raw,
            labels,
            fingerprints,
            shape: [channels.len(), h, w],
        })
    }

    /// Featurize `cells` as a model of `config` reads them: its input channels, and its
    /// inter-cell features ([`Dataset::with_inter_features`]).
    pub fn for_config<C: Borrow<Cell> + Sync>(
        cells: &[C],
        featurizer: &Featurizer,
        config: &BatLiNetConfig,
        label: &LabelConfig,
    ) -> Result<Self> {
        Self::from_cells(cells, featurizer, &config.input_channels, label)?
            .with_inter_features(config.inter_features)
    }

    /// This dataset with inter-cell differences formed from `inter` features: for
    /// [`InterFeatures::CycleDifference`], `raw` becomes a copy of `branch_a`. The raw curves
    /// are then gone, so going back to [`InterFeatures::Raw`] is an error (featurize again).
    ///
    /// ```
    /// # use battery_fl_core::data::{synthetic::FleetConfig, LabelConfig};
    /// # use battery_fl_core::features::{Featurizer, FeaturizerConfig};
    /// use battery_fl_core::model::{Dataset, InterFeatures};
    /// # let cells: Vec<_> = FleetConfig::default().with_fleets(1).with_cells_per_fleet(2)
    /// #     .generate()?.into_iter().flat_map(|f| f.cells).collect();
    /// let featurizer = Featurizer::new(FeaturizerConfig::default().with_interp_dim(32))?;
    /// let ds = Dataset::from_cells(&cells, &featurizer, &[1], &LabelConfig::default())?;
    /// let ds = ds.with_inter_features(InterFeatures::CycleDifference)?;
    /// assert_eq!(ds.raw(), ds.branch_a());
    /// assert!(ds.with_inter_features(InterFeatures::Raw).is_err());
    /// # Ok::<(), battery_fl_core::Error>(())
    /// ```
    pub fn with_inter_features(mut self, inter: InterFeatures) -> Result<Self> {
        match (self.inter, inter) {
            (a, b) if a == b => {}
            (InterFeatures::Raw, InterFeatures::CycleDifference) => {
                self.raw = Arc::clone(&self.branch_a);
                self.inter = inter;
            }
            (from, to) => {
                return Err(Error::config(
                    "inter_features",
                    format!("a dataset of {from:?} features cannot become {to:?}: featurize the cells again"),
                ))
            }
        }
        Ok(self)
    }

    /// Each cell's cathode chemistry from its genome (`None` when unknown).
    pub fn cathodes(&self) -> Vec<Option<&str>> {
        self.fingerprints
            .iter()
            .map(|f| f.cathode.as_deref())
            .collect()
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.cell_ids.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.cell_ids.is_empty()
    }

    /// Values per cell block.
    pub fn block(&self) -> usize {
        self.shape.iter().product()
    }

    /// The cells at `positions`, as a new dataset.
    pub fn subset(&self, positions: &[usize]) -> Result<Self> {
        let b = self.block();
        if let Some(&p) = positions.iter().find(|&&p| p >= self.len()) {
            return Err(Error::NotEnoughData {
                what: format!("cell position {p}"),
                needed: p + 1,
                got: self.len(),
            });
        }
        let take = |v: &[f32]| {
            positions
                .iter()
                .flat_map(|&p| v[p * b..(p + 1) * b].iter().copied())
                .collect()
        };
        Ok(Dataset {
            cell_ids: positions
                .iter()
                .map(|&p| self.cell_ids[p].clone())
                .collect(),
            branch_a: take(&self.branch_a),
            raw: take(&self.raw),
            inter: self.inter,
            labels: positions.iter().map(|&p| self.labels[p]).collect(),
            fingerprints: positions
                .iter()
                .map(|&p| self.fingerprints[p].clone())
                .collect(),
            shape: self.shape,
        })
    }

    /// Concatenate datasets of the same shape.
    pub fn concat(parts: &[&Dataset]) -> Result<Self> {
        let Some(first) = parts.first() else {
            return Err(Error::NotEnoughData {
                what: "datasets to concatenate".into(),
                needed: 1,
                got: 0,
            });
        };
        let mut out = Dataset {
            shape: first.shape,
            inter: first.inter,
            ..Dataset::empty(first.shape)
        };
        // one allocation each: these arrays can hold gigabytes, and growing them by doubling
        // would pass through twice that
        let total: usize = parts.iter().map(|p| p.branch_a.len()).sum();
        let (mut branch_a, mut raw) = (Vec::with_capacity(total), Vec::with_capacity(total));
        for p in parts {
            if p.shape != first.shape {
                return Err(Error::Shape {
                    what: "dataset blocks".into(),
                    expected: first.shape.to_vec(),
                    got: p.shape.to_vec(),
                });
            }
            if p.inter != first.inter {
                return Err(Error::config(
                    "inter_features",
                    format!(
                        "cannot concatenate datasets of {:?} and {:?} inter-cell features",
                        first.inter, p.inter
                    ),
                ));
            }
            out.cell_ids.extend(p.cell_ids.iter().cloned());
            branch_a.extend_from_slice(&p.branch_a);
            raw.extend_from_slice(&p.raw);
            out.labels.extend_from_slice(&p.labels);
            out.fingerprints.extend(p.fingerprints.iter().cloned());
        }
        out.branch_a = branch_a.into();
        out.raw = raw.into();
        Ok(out)
    }

    fn empty(shape: [usize; 3]) -> Self {
        Dataset {
            cell_ids: vec![],
            branch_a: Arc::new([]),
            raw: Arc::new([]),
            inter: InterFeatures::Raw,
            labels: vec![],
            fingerprints: vec![],
            shape,
        }
    }

    /// Input statistics of this dataset.
    pub fn input_stats(&self) -> InputStats {
        let [c, h, w] = self.shape;
        let plane = h * w;
        let block = c * plane;
        let mut st = InputStats {
            cells: self.len() as f64,
            sum_sq_a: vec![0.0; c],
            sum_sq_raw: vec![0.0; c],
            sum_raw: vec![0.0; block],
        };
        let sq = |v: &[f32]| v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>();
        for (k, (a, r)) in self
            .branch_a
            .chunks(plane)
            .zip(self.raw.chunks(plane))
            .enumerate()
        {
            st.sum_sq_a[k % c] += sq(a);
            st.sum_sq_raw[k % c] += sq(r);
        }
        for cell in self.raw.chunks(block) {
            st.sum_raw
                .iter_mut()
                .zip(cell)
                .for_each(|(s, &x)| *s += f64::from(x));
        }
        st
    }

    /// Per-channel root mean square of the raw target-minus-reference differences over
    /// `pairs` (positions in this dataset): the branch-B input scale when references are
    /// chosen by a rule (1 for an all-zero channel or no pairs).
    pub fn pair_rms(&self, pairs: impl IntoIterator<Item = (usize, usize)>) -> Vec<f32> {
        let [c, h, w] = self.shape;
        let plane = h * w;
        let block = c * plane;
        let mut sum_sq = vec![0.0f64; c];
        let mut count = 0usize;
        for (i, j) in pairs {
            count += 1;
            for (ch, s) in sum_sq.iter_mut().enumerate() {
                let x = &self.raw[i * block + ch * plane..i * block + (ch + 1) * plane];
                let r = &self.raw[j * block + ch * plane..j * block + (ch + 1) * plane];
                *s += x
                    .iter()
                    .zip(r)
                    .map(|(a, b)| f64::from(a - b).powi(2))
                    .sum::<f64>();
            }
        }
        sum_sq
            .iter()
            .map(|s| {
                let v = (s / (count * plane).max(1) as f64).sqrt();
                if v.is_finite() && v > 1e-12 {
                    v as f32
                } else {
                    1.0
                }
            })
            .collect()
    }

    /// Fully cleaned target-minus-reference differences (edge smoothing, glitch removal and
    /// cycle filter on each difference, as the published code cleans branch B's input), one
    /// block per `(target, reference)` pair: targets index `self`, references `references`.
    pub fn cleaned_pair_diffs(
        &self,
        references: &Dataset,
        pairs: &[(usize, usize)],
        clean: &FeatureCleanConfig,
    ) -> Result<Vec<f32>> {
        let b = self.block();
        let diff = |&(t, r): &(usize, usize)| -> Result<Vec<f32>> {
            let (Some(x), Some(y)) = (
                self.raw.get(t * b..(t + 1) * b),
                references.raw.get(r * b..(r + 1) * b),
            ) else {
                return Err(Error::config(
                    "pairs",
                    format!("pair ({t}, {r}) out of range"),
                ));
            };
            let d: Vec<f32> = x.iter().zip(y).map(|(a, c)| a - c).collect();
            let mut f = Features::from_vec(d, self.shape)?;
            clean_all(&mut f, clean);
            Ok(f.into_vec())
        };
        let parts: Vec<Vec<f32>> = pairs.par_iter().map(diff).collect::<Result<_>>()?;
        Ok(parts.concat())
    }

    /// Labels of every cell; an error naming the first unlabelled cell.
    pub fn require_labels(&self) -> Result<Vec<f64>> {
        self.labels
            .iter()
            .zip(&self.cell_ids)
            .map(|(l, id)| {
                l.ok_or_else(|| Error::InvalidData {
                    cell_id: id.clone(),
                    cycle: None,
                    field: "cycle_life".into(),
                    reason: "no cycle-life label (censored or missing)".into(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
