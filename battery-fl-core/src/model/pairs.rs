//! Branch B at inference on (target, reference) pairs, with as few first convolutions as
//! the pairs allow.
//!
//! The first convolution is linear, so `conv1(x − r) = conv1(x) − conv1(r)` (method.md
//! section 10): when the pairs share cells (K references per target, references shared
//! between targets), running it once per distinct cell is cheaper than once per pair. When
//! they do not (K = 1: as many distinct cells as pairs, or more), it is cheaper to convolve
//! each pair's difference directly, as the published code does. [`BatLiNet::pair_outputs`]
//! picks the cheaper of the two per chunk of targets. Memory stays bounded: the targets'
//! first convolutions are kept for the chunk, the references' for one group at a time, and
//! pairs pass the rest of the encoder in parts of at most `PAIR_CHUNK_VALUES` activations.

use tch::{Device, Kind, Tensor};

use super::batlinet::{index_tensor, to_tensor, BatLiNet};
use super::dataset::Dataset;
use super::net::TchResultExt;
use crate::error::Result;

/// Upper bound on the activations of one part of (target, reference) pairs after the first
/// convolution, in f32 values (256 MiB).
pub(crate) const PAIR_CHUNK_VALUES: usize = 64 << 20;

impl BatLiNet {
    /// Pairs whose first-convolution activations fit in one part.
    pub(crate) fn pairs_per_part(&self) -> usize {
        let [h1, w1] = self.net.geometry.after_conv1;
        let pair_values = self.config.conv_channels * h1 * w1;
        (PAIR_CHUNK_VALUES / pair_values.max(1)).max(1)
    }

    /// Branch-B head outputs for `pairs` = (target, reference) positions in `targets` and
    /// `references`, in the order of `pairs`; `scale` is branch B's input scale.
    pub(crate) fn pair_outputs(
        &self,
        targets: &Dataset,
        references: &Dataset,
        pairs: &[(usize, usize)],
        scale: &[f32],
    ) -> Result<Vec<f64>> {
        let per_part = self.pairs_per_part();
        let mut out = Vec::with_capacity(pairs.len());
        if self.config.clean_pairs {
            for part in pairs.chunks(per_part) {
                let diffs = targets.cleaned_pair_diffs(references, part, &self.featurizer.clean)?;
                let x = to_tensor(&diffs, self.shape, part.len(), self.device, scale)?;
                out.extend(to_f64_vec(&self.net.branch_b_diffs_in_place(&x)?)?);
            }
            return Ok(out);
        }
        let tids = distinct(pairs.iter().map(|p| p.0));
        let rids = distinct(pairs.iter().map(|p| p.1));
        if tids.len() + rids.len() >= pairs.len() {
            return self.direct_pair_outputs(targets, references, pairs, scale);
        }
        self.shared_pair_outputs(targets, references, pairs, (&tids, &rids), scale, per_part)
    }

    /// [`Self::pair_outputs`] with one first convolution per pair, on its difference.
    fn direct_pair_outputs(
        &self,
        targets: &Dataset,
        references: &Dataset,
        pairs: &[(usize, usize)],
        scale: &[f32],
    ) -> Result<Vec<f64>> {
        let mut out = Vec::with_capacity(pairs.len());
        for part in pairs.chunks(self.pairs_per_part()) {
            let x = to_tensor(
                &raw_differences(targets, references, part),
                self.shape,
                part.len(),
                self.device,
                scale,
            )?;
            out.extend(to_f64_vec(&self.net.branch_b_diffs_in_place(&x)?)?);
        }
        Ok(out)
    }

    /// [`Self::pair_outputs`] with one first convolution per distinct cell; references are
    /// convolved `per_part` at a time and pairs pass the encoder `per_part` at a time.
    fn shared_pair_outputs(
        &self,
        targets: &Dataset,
        references: &Dataset,
        pairs: &[(usize, usize)],
        (tids, rids): (&[usize], &[usize]),
        scale: &[f32],
        per_part: usize,
    ) -> Result<Vec<f64>> {
        let c1_targets = self
            .net
            .branch_b_conv1(&self.blocks(targets, tids, scale)?)?;
        let mut out = vec![f64::NAN; pairs.len()];
        for group in rids.chunks(per_part) {
            let c1_refs = self
                .net
                .branch_b_conv1(&self.blocks(references, group, scale)?)?;
            // the pairs whose reference is in this group, with their positions in `pairs`
            let members: Vec<(usize, usize, usize)> = pairs
                .iter()
                .enumerate()
                .filter_map(|(at, &(t, r))| {
                    let r = group.binary_search(&r).ok()?;
                    Some((at, position(tids, t), r))
                })
                .collect();
            for part in members.chunks(per_part) {
                let ti: Vec<usize> = part.iter().map(|m| m.1).collect();
                let ri: Vec<usize> = part.iter().map(|m| m.2).collect();
                let y = self.net.branch_b_from_conv1(
                    &c1_targets,
                    &index_tensor(&ti, self.device)?,
                    &c1_refs,
                    &index_tensor(&ri, self.device)?,
                )?;
                for (m, v) in part.iter().zip(to_f64_vec(&y)?) {
                    out[m.0] = v;
                }
            }
        }
        Ok(out)
    }

    /// The raw inputs of the cells at `ids` of `data`, scaled, as one `[n, C, H, W]` tensor.
    fn blocks(&self, data: &Dataset, ids: &[usize], scale: &[f32]) -> Result<Tensor> {
        let b = data.block();
        let mut raw = Vec::with_capacity(ids.len() * b);
        for &i in ids {
            raw.extend_from_slice(&data.raw()[i * b..(i + 1) * b]);
        }
        to_tensor(&raw, self.shape, ids.len(), self.device, scale)
    }
}

/// Sorted distinct values.
fn distinct(values: impl Iterator<Item = usize>) -> Vec<usize> {
    let mut v: Vec<usize> = values.collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Position of `x` in the sorted `v`, which holds it (`v` is built from the same pairs).
fn position(v: &[usize], x: usize) -> usize {
    let found = v.binary_search(&x);
    debug_assert!(found.is_ok(), "{x} is not among the distinct cells");
    found.unwrap_or(0)
}

/// Target-minus-reference raw inputs of `pairs`, one block per pair.
fn raw_differences(targets: &Dataset, references: &Dataset, pairs: &[(usize, usize)]) -> Vec<f32> {
    let b = targets.block();
    let mut out = Vec::with_capacity(pairs.len() * b);
    for &(t, r) in pairs {
        let x = &targets.raw()[t * b..(t + 1) * b];
        let y = &references.raw()[r * b..(r + 1) * b];
        out.extend(x.iter().zip(y).map(|(a, b)| a - b));
    }
    out
}

/// A tensor's values on the CPU as f64.
pub(crate) fn to_f64_vec(y: &Tensor) -> Result<Vec<f64>> {
    let y = y
        .f_to_device(Device::Cpu)
        .m()?
        .f_to_kind(Kind::Double)
        .m()?;
    Vec::<f64>::try_from(&y).m()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::FeaturizerConfig;
    use crate::genome::GenomeFingerprint;
    use crate::model::BatLiNetConfig;
    use rand::Rng;

    fn dataset(n: usize, shape: [usize; 3], rng: &mut crate::rng::SeededRng) -> Dataset {
        let fp = {
            let fleets = crate::data::synthetic::FleetConfig::default()
                .with_fleets(1)
                .with_cells_per_fleet(1)
                .generate()
                .expect("a synthetic cell");
            GenomeFingerprint::from_cell(&fleets[0].cells[0]).expect("its fingerprint")
        };
        let block: usize = shape.iter().product();
        let mut values = |m| (0..m).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        Dataset::new(
            (0..n).map(|i| format!("c{i}")).collect(),
            values(n * block),
            values(n * block),
            vec![Some(500.0); n],
            vec![fp; n],
            shape,
        )
        .expect("a consistent dataset")
    }

    // Sharing the first convolution (many references per target) and convolving each pair's
    // difference (K = 1) give the same outputs: the first convolution is linear.
    #[test]
    fn shared_and_direct_pairs_give_the_same_outputs() -> Result<()> {
        let featurizer = FeaturizerConfig::default()
            .with_cycles(12)
            .with_interp_dim(24);
        let config = BatLiNetConfig::default()
            .with_input_channels(vec![0, 1])
            .with_conv_channels(4);
        let model = BatLiNet::new(config, featurizer)?;
        let mut rng = crate::rng::seeded(3);
        let shape = model.shape;
        let (targets, references) = (dataset(3, shape, &mut rng), dataset(5, shape, &mut rng));
        let scale = [0.5, 2.0];
        // every target with every reference: 15 pairs over 8 distinct cells
        let many: Vec<(usize, usize)> = (0..3).flat_map(|t| (0..5).map(move |r| (t, r))).collect();
        let shared = model.pair_outputs(&targets, &references, &many, &scale)?;
        let direct = model.direct_pair_outputs(&targets, &references, &many, &scale)?;
        assert_eq!(shared.len(), 15);
        for (s, d) in shared.iter().zip(&direct) {
            assert!((s - d).abs() <= 1e-5 * (1.0 + d.abs()), "{s} vs {d}");
        }
        // in small parts: references convolved two at a time, pairs passed two at a time
        let (tids, rids) = ([0, 1, 2], [0, 1, 2, 3, 4]);
        let parts =
            model.shared_pair_outputs(&targets, &references, &many, (&tids, &rids), &scale, 2)?;
        for (p, s) in parts.iter().zip(&shared) {
            assert!(
                (p - s).abs() <= 1e-5 * (1.0 + s.abs()),
                "part size: {p} vs {s}"
            );
        }
        // one reference per target goes the direct way and keeps the pairs' order
        let one = [(2, 4), (0, 1), (1, 1)];
        let got = model.pair_outputs(&targets, &references, &one, &scale)?;
        for (p, g) in one.iter().zip(&got) {
            let want = direct[p.0 * 5 + p.1];
            assert!(
                (g - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "{g} vs {want}"
            );
        }
        Ok(())
    }
}
