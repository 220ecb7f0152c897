//! Training: `fit`, local training for federation (FedProx), and head fine-tuning for
//! transfer (the optimizer, schedule and weight averaging are in `optim`).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tch::{Kind, Reduction, Tensor};

use super::batlinet::{index_tensor, to_tensor, BatLiNet};
use super::config::ReferenceSelection;
use super::dataset::{Dataset, InputScales};
use super::labels::LabelTransform;
use super::net::{Net, TchResultExt};
use super::optim::{AdamW, WeightAverage};
use super::params::ModelParams;
use super::reference::select_references;
use crate::error::{Error, Result};

/// Which weights a training run may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trainable {
    /// Every weight (ordinary training).
    #[default]
    All,
    /// Only the shared head: transfer with frozen encoders.
    HeadOnly,
    /// The head and both projection convolutions (`conv3`): transfer with frozen feature
    /// extractors.
    HeadAndProjections,
}

impl Trainable {
    pub(crate) fn allows(self, name: &str) -> bool {
        match self {
            Trainable::All => true,
            Trainable::HeadOnly => name.starts_with("head."),
            Trainable::HeadAndProjections => name.starts_with("head.") || name.contains(".conv3."),
        }
    }
}

/// Options of one training run on top of the model's [`BatLiNetConfig`](super::BatLiNetConfig).
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Epochs for this run (default: the config's `epochs`).
    pub epochs: Option<usize>,
    /// Seed for batching and reference draws (default: the config's `seed`); federated rounds
    /// pass a per-round seed.
    pub seed: Option<u64>,
    /// FedProx proximal weight mu: the loss gains `(mu / 2) ||w − w_global||²` (default 0).
    pub mu: f64,
    /// The global weights of the proximal term (required when `mu > 0`).
    pub global: Option<ModelParams>,
    /// Which weights train (default all).
    pub trainable: Trainable,
    /// Learning rate for this run (default: the config's).
    pub learning_rate: Option<f64>,
}

/// What a training run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Mean training loss of each epoch.
    pub epoch_losses: Vec<f64>,
    /// Optimizer steps taken.
    pub steps: usize,
}

impl BatLiNet {
    /// The label transform fitted on the labelled cells of `ds` (with the configured grouping).
    pub(crate) fn fit_label_transform(&mut self, ds: &Dataset) -> Result<()> {
        self.labels = Some(LabelTransform::fit_grouped(
            &ds.require_labels()?,
            &ds.cathodes(),
            self.config.label_grouping,
        )?);
        Ok(())
    }

    /// Let the weights `trainable` allows require grad (the rest frozen) and start AdamW over
    /// them at rate `lr`.
    pub(crate) fn start_training(&mut self, trainable: Trainable, lr: f64) -> Result<AdamW> {
        for (name, t) in self.net.named_mut() {
            let _ = t.f_set_requires_grad(trainable.allows(&name)).m()?;
        }
        AdamW::new(
            &trainable_tensors(&mut self.net, trainable),
            lr,
            self.config.weight_decay,
        )
    }
}

pub(crate) fn trainable_tensors(net: &mut Net, trainable: Trainable) -> Vec<&mut Tensor> {
    net.named_mut()
        .into_iter()
        .filter(|(n, _)| trainable.allows(n))
        .map(|(_, t)| t)
        .collect()
}

/// FedProx: the proximal term `(mu / 2) ||w − w_global||²` a client's loss gains, over the
/// weights that train.
pub(crate) struct Proximal {
    mu: f64,
    /// The global weights, in `ModelParams` (name) order, on the model's device.
    global: Vec<Tensor>,
}

impl Proximal {
    /// The term of a run with `opts` (`None` when `mu` is 0).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when `mu` is negative or not finite, or positive without
    /// global weights; the error of [`ModelParams::check_compatible`] when the global
    /// weights do not fit `model`.
    pub(crate) fn new(model: &BatLiNet, opts: &TrainOptions) -> Result<Option<Self>> {
        if opts.mu < 0.0 || !opts.mu.is_finite() {
            return Err(Error::config("mu", "must be >= 0"));
        }
        let global = match (&opts.global, opts.mu > 0.0) {
            (Some(g), true) => {
                model.params()?.check_compatible(g)?;
                g
            }
            (None, true) => {
                return Err(Error::config(
                    "global",
                    "FedProx (mu > 0) needs the global weights",
                ))
            }
            _ => return Ok(None),
        };
        let global = global
            .params()
            .iter()
            .map(|p| {
                let dims: Vec<i64> = p.shape.iter().map(|&d| d as i64).collect();
                Tensor::f_from_slice(&p.data)
                    .m()?
                    .f_reshape(dims.as_slice())
                    .m()?
                    .f_to_device(model.device)
                    .m()
            })
            .collect::<Result<_>>()?;
        Ok(Some(Proximal {
            mu: opts.mu,
            global,
        }))
    }

    /// `(mu / 2) Σ ||w − w_global||²` over the weights of `net` that `trainable` allows.
    ///
    /// # Shapes
    /// returns a scalar `[]`.
    pub(crate) fn term(&self, net: &Net, trainable: Trainable) -> Result<Tensor> {
        let mut prox = Tensor::f_zeros([], (Kind::Float, net.head.device())).m()?;
        for ((name, p), g) in net.named().into_iter().zip(&self.global) {
            if trainable.allows(&name) {
                let d = p.f_sub(g).m()?;
                prox = prox.f_add(&d.f_mul(&d).m()?.f_sum(Kind::Float).m()?).m()?;
            }
        }
        prox.f_mul_scalar(self.mu / 2.0).m()
    }
}

/// Branch B's training references for `batch` (positions in the `n` training cells): `s` per
/// target, target after target. Each is drawn uniformly from the other training cells, or
/// with genome selection from the target's `pool` of genome-nearest ones; a lone training
/// cell is its own reference (nothing is drawn).
fn draw_references(
    batch: &[usize],
    s: usize,
    n: usize,
    pool: Option<&[Vec<usize>]>,
    rng: &mut impl Rng,
) -> Vec<usize> {
    batch
        .iter()
        .flat_map(|&t| (0..s).map(move |_| t))
        .map(|t| {
            if n == 1 {
                return t;
            }
            if let Some(pool) = pool {
                return pool[t][rng.random_range(0..pool[t].len())];
            }
            let r = rng.random_range(0..n - 1);
            if r >= t {
                r + 1
            } else {
                r
            }
        })
        .collect()
}

pub(crate) fn progress(show: bool, epochs: usize) -> ProgressBar {
    let bar = ProgressBar::new(epochs as u64);
    if show && std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{bar:30} {pos}/{len} epochs {msg} [{elapsed}<{eta}]")
        {
            bar.set_style(style);
        }
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}

impl BatLiNet {
    /// Fit the label transform and the input scales on `train`, then train for the
    /// configured epochs.
    pub fn fit(&mut self, train: &Dataset) -> Result<TrainReport> {
        self.check_dataset(train, "training")?;
        self.fit_label_transform(train)?;
        let mut scales = InputScales::from_stats(&train.input_stats(), train.shape())?;
        if let Some(pool) = self.training_reference_pool(train)? {
            // branch B sees only these pairs: scale it by their differences, not by those of
            // two random cells (across chemistries those are several times larger)
            scales.branch_b = train.pair_rms(
                pool.iter()
                    .enumerate()
                    .flat_map(|(t, rs)| rs.iter().map(move |&r| (t, r))),
            );
        }
        self.set_input_scales(scales)?;
        self.train(train, &TrainOptions::default())
    }

    /// With genome selection, each training cell's `inference_references` genome-nearest
    /// other training cells: branch B draws its training references from them, as inference
    /// does. `None` with random selection (references uniform over the training cells, as
    /// published) or one branch.
    fn training_reference_pool(&self, train: &Dataset) -> Result<Option<Vec<Vec<usize>>>> {
        if self.config.selection != ReferenceSelection::Genome
            || self.config.effective_alpha() == 0.0
            || train.len() < 2
        {
            return Ok(None);
        }
        let mut unused = crate::rng::seeded(0); // genome selection draws nothing
        select_references(
            train,
            train,
            self.config.inference_references,
            ReferenceSelection::Genome,
            &mut unused,
        )
        .map(Some)
    }

    /// Train on `train` with the model's current label transform and input scales (federated
    /// clients use the federation's shared ones). Each step draws fresh random references for branch B from
    /// `train` itself (never the target's own cell when another exists).
    pub fn train(&mut self, train: &Dataset, opts: &TrainOptions) -> Result<TrainReport> {
        let _memory = crate::runtime::MemoryScope::enter();
        let labels = self.labels.ok_or_else(|| Error::Model {
            reason: "no label transform: use fit, or set one".into(),
        })?;
        self.check_dataset(train, "training")?;
        let y: Vec<f32> = train
            .require_labels()?
            .iter()
            .zip(train.cathodes())
            .map(|(&l, c)| labels.forward_for(l, c) as f32)
            .collect();
        let n = train.len();
        if n == 0 {
            return Err(Error::NotEnoughData {
                what: "training cells".into(),
                needed: 1,
                got: 0,
            });
        }
        let proximal = Proximal::new(self, opts)?;
        let alpha = self.config.effective_alpha();
        let s = self.config.train_references;
        let epochs = opts.epochs.unwrap_or(self.config.epochs);
        let lr = opts.learning_rate.unwrap_or(self.config.learning_rate);
        let mut rng = crate::rng::substream(opts.seed.unwrap_or(self.config.seed), 11);
        let pool = self.training_reference_pool(train)?;
        let device = self.device;

        let scales = self.scales_or_unit();
        let xa_all = to_tensor(train.branch_a(), self.shape, n, device, &scales.branch_a)?;
        let raw_all = to_tensor(train.raw(), self.shape, n, device, &scales.branch_b)?;
        let y_all = Tensor::f_from_slice(&y).m()?.f_to_device(device).m()?;

        // parameters: trainable ones require grad, the rest are frozen
        let trainable = opts.trainable;
        let names: Vec<String> = self.net.named_mut().into_iter().map(|(n, _)| n).collect();
        let mut opt = self.start_training(trainable, lr)?;

        let bar = progress(self.config.progress, epochs);
        let mut report = TrainReport {
            epoch_losses: Vec::with_capacity(epochs),
            steps: 0,
        };
        let steps_per_epoch = n.div_ceil(self.config.batch_size);
        let total_steps = (epochs * steps_per_epoch).max(1);
        let mut averaged = WeightAverage::new(self.config.weight_averaging, epochs);
        let mut order: Vec<usize> = (0..n).collect();
        for epoch in 0..epochs {
            order.shuffle(&mut rng);
            let (mut total, mut count) = (0.0, 0usize);
            for batch in order.chunks(self.config.batch_size) {
                let b = batch.len();
                let bt = index_tensor(batch, device)?;
                let xa = xa_all.f_index_select(0, &bt).m()?;
                let yt = y_all.f_index_select(0, &bt).m()?;
                let ya = self.net.branch_a(&xa)?;
                let mut loss = ya
                    .f_mse_loss(&yt, Reduction::Mean)
                    .m()?
                    .f_mul_scalar(1.0 - alpha)
                    .m()?;
                if alpha > 0.0 {
                    let refs = draw_references(batch, s, n, pool.as_deref(), &mut rng);
                    let pair_out = if self.config.clean_pairs {
                        // the published route: clean each difference, then all of branch B
                        let pairs: Vec<(usize, usize)> = batch
                            .iter()
                            .flat_map(|&t| std::iter::repeat_n(t, s))
                            .zip(refs.iter().copied())
                            .collect();
                        let diffs =
                            train.cleaned_pair_diffs(train, &pairs, &self.featurizer.clean)?;
                        let x =
                            to_tensor(&diffs, self.shape, pairs.len(), device, &scales.branch_b)?;
                        self.net.branch_b_diffs(&x)?
                    } else {
                        // each pair's difference in input space, then all of branch B: in
                        // training this is faster than sharing first convolutions between
                        // pairs (BENCHMARKS.md "Model speed", session 15)
                        let targets: Vec<usize> = batch
                            .iter()
                            .flat_map(|&t| std::iter::repeat_n(t, s))
                            .collect();
                        let x = raw_all
                            .f_index_select(0, &index_tensor(&targets, device)?)
                            .m()?
                            .f_sub(
                                &raw_all
                                    .f_index_select(0, &index_tensor(&refs, device)?)
                                    .m()?,
                            )
                            .m()?;
                        self.net.branch_b_diffs(&x)?
                    };
                    let yb = pair_out
                        .f_add(&y_all.f_index_select(0, &index_tensor(&refs, device)?).m()?)
                        .m()?
                        .f_view([b as i64, s as i64])
                        .m()?
                        .f_mean_dim(1, false, Kind::Float)
                        .m()?;
                    loss = loss
                        .f_add(
                            &yb.f_mse_loss(&yt, Reduction::Mean)
                                .m()?
                                .f_mul_scalar(alpha)
                                .m()?,
                        )
                        .m()?;
                }
                if let Some(proximal) = &proximal {
                    loss = loss.f_add(&proximal.term(&self.net, trainable)?).m()?;
                }
                loss.f_backward().m()?;
                opt.lr = self.config.lr_schedule.rate(lr, report.steps, total_steps);
                opt.step(&mut trainable_tensors(&mut self.net, trainable))?;
                let l = loss.f_double_value(&[]).m()?;
                if !l.is_finite() {
                    return Err(Error::Model {
                        reason: format!("training diverged: loss {l}"),
                    });
                }
                total += l * b as f64;
                count += b;
                report.steps += 1;
            }
            averaged.add(epoch, &trainable_tensors(&mut self.net, trainable))?;
            let mean = total / count.max(1) as f64;
            report.epoch_losses.push(mean);
            bar.set_message(format!("loss {mean:.4}"));
            bar.inc(1);
        }
        bar.finish_and_clear();
        averaged.write_into(&mut trainable_tensors(&mut self.net, trainable))?;
        for (_, t) in self.net.named_mut() {
            let _ = t.f_set_requires_grad(false).m()?;
        }
        debug_assert_eq!(names.len(), self.net.named_mut().len());
        Ok(report)
    }

    /// Transfer by fine-tuning: keep the encoders (or all but the projections) frozen and
    /// train the shared head on a few target-chemistry cells, keeping the source label
    /// transform.
    pub fn fine_tune(
        &mut self,
        target: &Dataset,
        trainable: Trainable,
        epochs: usize,
    ) -> Result<TrainReport> {
        if trainable == Trainable::All {
            return Err(Error::config(
                "trainable",
                "fine-tuning freezes the encoders: use HeadOnly or HeadAndProjections",
            ));
        }
        self.train(
            target,
            &TrainOptions {
                epochs: Some(epochs),
                trainable,
                ..Default::default()
            },
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn references_are_other_cells_or_from_the_pool_and_a_lone_cell_draws_nothing() {
        let mut rng = crate::rng::seeded(3);
        let refs = draw_references(&[0, 4, 2], 50, 5, None, &mut rng);
        assert_eq!(refs.len(), 150);
        for (i, &r) in refs.iter().enumerate() {
            assert!(r < 5 && r != [0, 4, 2][i / 50], "target {i}: {r}");
        }
        let pool = vec![vec![1], vec![0, 2], vec![1]];
        let refs = draw_references(&[1, 0], 3, 3, Some(&pool), &mut rng);
        assert!(refs[..3].iter().all(|r| pool[1].contains(r)) && refs[3..] == [1, 1, 1]);
        let before = rng.clone();
        assert_eq!(draw_references(&[0], 2, 1, None, &mut rng), [0, 0]);
        assert_eq!(rng, before);
    }
}
