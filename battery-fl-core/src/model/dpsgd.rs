//! Record-level differential privacy for BatLiNet's local training: DP-SGD per cell.
//!
//! **The unit is one cell's record.** Each step samples the fleet's cells independently with
//! rate `q = batch_size / n` (Poisson sampling, what the accountant assumes), computes each
//! sampled cell's gradient, clips it to L2 norm `C`, sums, adds Gaussian noise of std `z·C`
//! to every coordinate and divides by the expected batch size `q·n` (Abadi et al. 2016, as
//! Opacus does). The RDP accountant composes the steps; `(ε, δ)` is what the released weights
//! reveal about any one cell.
//!
//! **The pair problem.** BatLiNet's branch B trains on (target, reference) pairs, so a cell is
//! also other cells' reference, and a per-target clip alone would not bound its influence.
//! Here branch B's training references come only from a *public* reference set (cells whose
//! data is public: the open cells the library ships, or cells generated from a public seed),
//! never from the private cells. A private cell then enters exactly one term of a step, its own
//! (branch A on its curves, branch B on its differences to public references), and clipping
//! that term's gradient bounds its influence by `C`. For the same reason the label transform
//! and input scales must not be read off the private cells: set them from the public cells
//! first ([`BatLiNet::set_public_statistics`]). Inference with the fleet's own cells as
//! references stays at home and is not released.
//!
//! **Per-cell gradients in one backward pass.** Every weight is expanded to one copy per
//! sampled cell (`[B, …]`) and the batch runs through grouped convolutions (`groups = B`, each
//! cell through its own copy) and a per-cell head; one backward pass of the summed loss leaves
//! each cell's gradient in its copy's gradient (the "expanded weights" route of PyTorch's
//! per-sample gradients), with no per-cell backward passes.
//!
//! **The step size.** Private steps use the learning rate times
//! `DpSgdConfig::learning_rate_scale` (default 3). Adam divides each weight's step by the
//! running scale of its gradient, and under DP-SGD that scale is the noise's, far above the
//! clipped signal: at plain training's rate the signal moves each weight too little per step.
//! The factor changes no step's sensitivity and spends nothing.
//!
//! **Averaging the iterates.** With `BatLiNetConfig::weight_averaging` the trained weights
//! are the mean of the last epochs' end-of-epoch weights, as in [`train`](BatLiNet::train).
//! The guarantee covers every iterate (each is a function of the noisy sums released so far),
//! so their mean is post-processing and spends nothing. (On the synthetic fleets it did not
//! lower DP-SGD's error: BENCHMARKS.md, session 20.)
//!
//! **What is reported.** ε covers one call of [`BatLiNet::train_private`]. Calls that train
//! on the same cells again (federated rounds, personalization) compose: add their RDP, for
//! example with one [`RdpAccountant`] stepped once per call with the report's noise
//! multiplier, sampling rate and steps. Which cells a step samples is drawn from the OS (or
//! from the noise seed in tests), never from the model's public seed.

use rand::Rng;
use tch::{Kind, Tensor};

pub use super::dpsgd_config::{DpSgdConfig, DpSgdReport};

use super::batlinet::{index_tensor, to_tensor, BatLiNet};
use super::config::Geometry;
use super::dataset::{Dataset, InputScales};
use super::labels::LabelTransform;
use super::net::TchResultExt;
use super::optim::{AdamW, WeightAverage};
use super::train::{progress, trainable_tensors, Proximal, TrainOptions};
use crate::dp::{GaussianNoise, RdpAccountant};
use crate::error::{Error, Result};

/// One weight expanded to a copy per cell, requiring grad (or not, when it does not train).
struct Expanded {
    copies: Vec<Tensor>,
}

impl BatLiNet {
    /// Fit the label transform and input scales on `public` cells (labelled), as DP-SGD
    /// requires: statistics of the private cells would be released outside the guarantee.
    pub fn set_public_statistics(&mut self, public: &Dataset) -> Result<()> {
        self.check_dataset(public, "public")?;
        self.fit_label_transform(public)?;
        self.set_input_scales(InputScales::from_stats(
            &public.input_stats(),
            public.shape(),
        )?)
    }

    /// Make a fresh model ready for DP-SGD on `public` cells: their statistics
    /// ([`set_public_statistics`](Self::set_public_statistics)) and, with
    /// `dp.public_pretraining`, weights trained on them without noise (the model's own epochs,
    /// batch and seed). It reads only the public cells, so it spends nothing, provided the
    /// model is fresh: weights already trained on private cells would stay in the start.
    ///
    /// # Errors
    /// Those of [`set_public_statistics`](Self::set_public_statistics) and
    /// [`train`](Self::train).
    pub fn start_private(&mut self, public: &Dataset, dp: &DpSgdConfig) -> Result<()> {
        self.set_public_statistics(public)?;
        if dp.public_pretraining {
            self.train(public, &TrainOptions::default())?;
        }
        Ok(())
    }

    /// Train on private `train` cells with record-level DP-SGD (see the module docs); branch
    /// B's references are drawn from the `public` cells only. The label transform and input
    /// scales must be set (from public cells: [`set_public_statistics`](Self::set_public_statistics)).
    /// `opts` as for [`train`](Self::train) (epochs, seed, FedProx term, learning rate; every
    /// weight trains); the learning rate, given or the model's, is multiplied by
    /// `dp.learning_rate_scale`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for invalid settings, a public cell that is also a private one,
    /// or partial training; [`Error::BudgetExhausted`] when the given noise multiplier would
    /// spend more than `dp.epsilon` (nothing trains); the errors of [`train`](Self::train).
    pub fn train_private(
        &mut self,
        train: &Dataset,
        public: &Dataset,
        dp: &DpSgdConfig,
        opts: &TrainOptions,
    ) -> Result<DpSgdReport> {
        let _memory = crate::runtime::MemoryScope::enter();
        let labels = self.require_labels()?;
        self.check_dataset(train, "training")?;
        if opts.trainable != super::Trainable::All {
            return Err(Error::config("trainable", "DP-SGD trains every weight"));
        }
        if self.config.clean_pairs {
            return Err(Error::config(
                "clean_pairs",
                "DP-SGD trains branch B on raw differences; cleaned pairs are not supported",
            ));
        }
        if let Some(id) = public.shared_cell(train) {
            return Err(Error::config(
                "public",
                format!("cell {id} is private (a training cell) and cannot be a public reference"),
            ));
        }
        // the statistics the network reads must be the public cells', not the private ones'
        let mut public_model = BatLiNet::new(self.config.clone(), self.featurizer.clone())?;
        public_model.set_public_statistics(public)?;
        if public_model.labels != self.labels || public_model.scales != self.scales {
            return Err(Error::config(
                "statistics",
                "the label transform and input scales must be the public cells' \
                 (set_public_statistics with the same public cells)",
            ));
        }
        let alpha = self.config.effective_alpha();
        if alpha > 0.0 {
            self.check_dataset(public, "public")?;
            if public.is_empty() {
                return Err(Error::NotEnoughData {
                    what: "public reference cells".into(),
                    needed: 1,
                    got: 0,
                });
            }
        }
        let n = train.len();
        if n == 0 {
            return Err(Error::NotEnoughData {
                what: "training cells".into(),
                needed: 1,
                got: 0,
            });
        }
        let epochs = opts.epochs.unwrap_or(self.config.epochs);
        let q = (self.config.batch_size as f64 / n as f64).min(1.0);
        let per_epoch = (1.0 / q).round().max(1.0) as u64;
        let total = epochs as u64 * per_epoch;
        let z = dp.noise_multiplier_for(q, total)?;
        let mut noise = GaussianNoise::from_optional_seed(dp.seed)?;
        let proximal = Proximal::new(self, opts)?;
        let lr = opts.learning_rate.unwrap_or(self.config.learning_rate) * dp.learning_rate_scale;
        // which cells each step samples must stay secret (the accountant's amplification by
        // sampling assumes it): drawn from the OS like the noise, unless the noise is seeded
        let mut rng = match dp.seed {
            Some(s) => crate::rng::substream(s, 13),
            None => crate::rng::from_os()?,
        };

        let scales = self.scales_or_unit();
        let device = self.device;
        let xa_all = to_tensor(train.branch_a(), self.shape, n, device, &scales.branch_a)?;
        let raw_all = to_tensor(train.raw(), self.shape, n, device, &scales.branch_b)?;
        let y_all = normalized(train, &labels)?.f_to_device(device).m()?;
        let (pub_raw, pub_y) = if alpha > 0.0 {
            let raw = to_tensor(
                public.raw(),
                self.shape,
                public.len(),
                device,
                &scales.branch_b,
            )?;
            (
                Some(raw),
                Some(normalized(public, &labels)?.f_to_device(device).m()?),
            )
        } else {
            (None, None)
        };

        let mut opt = self.start_training(opts.trainable, lr)?;
        let bar = progress(self.config.progress, epochs);
        let mut report = DpSgdReport {
            epoch_losses: Vec::with_capacity(epochs),
            steps: 0,
            sample_rate: q,
            noise_multiplier: z,
            epsilon: 0.0,
            delta: dp.delta,
            clipped_fraction: 0.0,
        };
        let s = self.config.train_references;
        let expected = q * n as f64;
        let mut averaged = WeightAverage::new(self.config.weight_averaging, epochs);
        let (mut clipped_cells, mut sampled_cells) = (0usize, 0usize);
        for epoch in 0..epochs {
            let (mut sum, mut count) = (0.0, 0usize);
            for _ in 0..per_epoch {
                let batch: Vec<usize> = (0..n).filter(|_| rng.random_bool(q)).collect();
                let grads = if batch.is_empty() {
                    None
                } else {
                    let bt = index_tensor(&batch, device)?;
                    let xa = xa_all.f_index_select(0, &bt).m()?;
                    let y = y_all.f_index_select(0, &bt).m()?;
                    let pairs = match (&pub_raw, &pub_y) {
                        (Some(raw), Some(py)) => {
                            let refs: Vec<usize> = (0..batch.len() * s)
                                .map(|_| rng.random_range(0..public.len()))
                                .collect();
                            Some(self.public_pairs(&raw_all, &bt, raw, py, &refs, s)?)
                        }
                        _ => None,
                    };
                    let (grads, losses) = self.per_cell_gradients(&xa, pairs.as_ref(), &y)?;
                    sum += losses.f_sum(Kind::Double).m()?.f_double_value(&[]).m()?;
                    count += batch.len();
                    Some(grads)
                };
                let (noisy, clipped) =
                    self.clip_and_noise(grads, dp.clipping_norm, z, expected, &mut noise)?;
                clipped_cells += clipped;
                sampled_cells += batch.len();
                self.apply_gradient(&noisy, proximal.as_ref(), &mut opt, lr, report.steps, total)?;
                report.steps += 1;
            }
            averaged.add(
                epoch,
                &trainable_tensors(&mut self.net, super::Trainable::All),
            )?;
            let mean = sum / count.max(1) as f64;
            report.epoch_losses.push(mean);
            bar.set_message(format!("loss {mean:.4}"));
            bar.inc(1);
        }
        bar.finish_and_clear();
        // averaging released iterates is post-processing: it spends no privacy
        averaged.write_into(&mut trainable_tensors(&mut self.net, super::Trainable::All))?;
        for (_, t) in self.net.named_mut() {
            let _ = t.f_set_requires_grad(false).m()?;
        }
        report.clipped_fraction = clipped_cells as f64 / sampled_cells.max(1) as f64;
        report.epsilon = RdpAccountant::new().epsilon_after(z, q, report.steps, dp.delta)?;
        Ok(report)
    }

    /// Branch-B inputs of the sampled targets against public references `refs` (`s` per
    /// target): the differences `[B, s, C, H, W]` and the references' normalized labels
    /// `[B, s]`.
    fn public_pairs(
        &self,
        raw_all: &Tensor,
        batch: &Tensor,
        pub_raw: &Tensor,
        pub_y: &Tensor,
        refs: &[usize],
        s: usize,
    ) -> Result<(Tensor, Tensor)> {
        let [c, h, w] = self.shape.map(|d| d as i64);
        let b = batch.size()[0];
        let rt = index_tensor(refs, self.device)?;
        let targets = raw_all.f_index_select(0, batch).m()?.f_unsqueeze(1).m()?;
        let references = pub_raw
            .f_index_select(0, &rt)
            .m()?
            .f_view([b, s as i64, c, h, w])
            .m()?;
        let diffs = targets.f_sub(&references).m()?;
        let y_ref = pub_y
            .f_index_select(0, &rt)
            .m()?
            .f_view([b, s as i64])
            .m()?;
        Ok((diffs, y_ref))
    }

    /// Each cell's gradient of its own loss, in one backward pass: per weight `[B, …]` (in
    /// `Net::named` order; `None` for the second branch of a single-branch model), and the
    /// per-cell losses `[B]`.
    ///
    /// # Shapes
    /// `xa`: `[B, C, H, W]`; `pairs`: differences `[B, s, C, H, W]` and reference labels
    /// `[B, s]`; `y`: `[B]`.
    pub(crate) fn per_cell_gradients(
        &self,
        xa: &Tensor,
        pairs: Option<&(Tensor, Tensor)>,
        y: &Tensor,
    ) -> Result<(Vec<Tensor>, Tensor)> {
        let b = xa.size()[0];
        let alpha = self.config.effective_alpha();
        let expanded = self.expanded(b)?;
        let named = self.net.named();
        let find = |prefix: &str| -> Vec<&Tensor> {
            named
                .iter()
                .zip(&expanded.copies)
                .filter(|((n, _), _)| n.starts_with(prefix))
                .map(|(_, e)| e)
                .collect()
        };
        let head = find("head")[0];
        let g = &self.net.geometry;
        let a = grouped_encoder(
            &group(xa.f_unsqueeze(1).m()?)?,
            &encoder(&find("branch_a."))?,
            g,
            b,
        )?;
        let ya = per_cell_head(&a, head)?.f_squeeze_dim(0).m()?;
        let mut losses = ya
            .f_sub(y)
            .m()?
            .f_square()
            .m()?
            .f_mul_scalar(1.0 - alpha)
            .m()?;
        if let (Some((diffs, y_ref)), true) = (pairs, alpha > 0.0) {
            let enc = grouped_encoder(
                &group(diffs.shallow_clone())?,
                &encoder(&find("branch_b."))?,
                g,
                b,
            )?;
            // [s, B] outputs plus their references' labels, averaged over the references
            let yb = per_cell_head(&enc, head)?
                .f_add(&y_ref.f_tr().m()?)
                .m()?
                .f_mean_dim(0, false, Kind::Float)
                .m()?;
            let term = yb.f_sub(y).m()?.f_square().m()?.f_mul_scalar(alpha).m()?;
            losses = losses.f_add(&term).m()?;
        }
        losses.f_sum(Kind::Float).m()?.f_backward().m()?;
        let grads = expanded
            .copies
            .iter()
            .map(|e| {
                let g = e.f_grad().m()?;
                if g.defined() {
                    g.f_detach().m()
                } else {
                    e.f_zeros_like().m()
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((grads, losses.f_detach().m()?))
    }

    /// A copy of every weight per cell, `[B, …]`, requiring grad.
    fn expanded(&self, b: i64) -> Result<Expanded> {
        let copies = self
            .net
            .named()
            .into_iter()
            .map(|(_, t)| {
                let mut shape = vec![b];
                shape.extend(t.size());
                let copy = t
                    .f_detach()
                    .m()?
                    .f_unsqueeze(0)
                    .m()?
                    .f_expand(shape.as_slice(), false)
                    .m()?
                    .f_contiguous()
                    .m()?;
                copy.f_set_requires_grad(true).m()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Expanded { copies })
    }

    /// The clipped sum of the per-cell gradients plus Gaussian noise of std `z·C`, over the
    /// expected batch size; pure noise when no cell was sampled.
    fn clip_and_noise(
        &self,
        grads: Option<Vec<Tensor>>,
        clipping_norm: f64,
        z: f64,
        expected: f64,
        noise: &mut GaussianNoise,
    ) -> Result<(Vec<Tensor>, usize)> {
        let shapes: Vec<Vec<i64>> = self.net.named().iter().map(|(_, t)| t.size()).collect();
        let mut clipped = 0;
        let summed: Vec<Tensor> = match grads {
            None => shapes
                .iter()
                .map(|s| Tensor::f_zeros(s.as_slice(), (Kind::Float, self.device)).m())
                .collect::<Result<_>>()?,
            Some(grads) => {
                let b = grads[0].size()[0];
                let mut sq = Tensor::f_zeros([b], (Kind::Float, self.device)).m()?;
                for g in &grads {
                    let per = g
                        .f_reshape([b, -1])
                        .m()?
                        .f_square()
                        .m()?
                        .f_sum_dim_intlist(1, false, Kind::Float)
                        .m()?;
                    sq = sq.f_add(&per).m()?;
                }
                let norms = sq.f_sqrt().m()?;
                // a NaN or infinite gradient cannot be clipped (its factor is NaN): the training
                // diverged, and a step with it would write NaN into every weight
                let finite = norms
                    .f_isfinite()
                    .m()?
                    .f_all()
                    .m()?
                    .f_int64_value(&[])
                    .m()?
                    != 0;
                if !finite {
                    return Err(Error::Model {
                        reason: "training diverged: a cell's gradient is not finite".into(),
                    });
                }
                clipped = norms
                    .f_gt(clipping_norm)
                    .m()?
                    .f_sum(Kind::Int64)
                    .m()?
                    .f_int64_value(&[])
                    .m()? as usize;
                let factors = norms
                    .f_add_scalar(1e-12)
                    .m()?
                    .f_reciprocal()
                    .m()?
                    .f_mul_scalar(clipping_norm)
                    .m()?
                    .f_clamp_max(1.0)
                    .m()?;
                grads
                    .iter()
                    .map(|g| {
                        let mut view = vec![b];
                        view.extend(std::iter::repeat_n(1, g.dim() - 1));
                        g.f_mul(&factors.f_view(view.as_slice()).m()?)
                            .m()?
                            .f_sum_dim_intlist(0, false, Kind::Float)
                            .m()
                    })
                    .collect::<Result<_>>()?
            }
        };
        let std = z * clipping_norm;
        let noisy = summed
            .into_iter()
            .map(|g| {
                let mut values = vec![0f32; g.numel()];
                noise.add_to_slice(&mut values, std)?;
                let n = Tensor::f_from_slice(&values)
                    .m()?
                    .f_view(g.size().as_slice())
                    .m()?
                    .f_to_device(self.device)
                    .m()?;
                g.f_add(&n).m()?.f_div_scalar(expected).m()
            })
            .collect::<Result<_>>()?;
        Ok((noisy, clipped))
    }

    /// One optimizer step with `gradient` (per weight, `Net::named` order), plus the FedProx
    /// term's own gradient (it reads only the public global weights).
    fn apply_gradient(
        &mut self,
        gradient: &[Tensor],
        proximal: Option<&Proximal>,
        opt: &mut AdamW,
        lr: f64,
        step: u64,
        total: u64,
    ) -> Result<()> {
        // a surrogate whose gradient is exactly `gradient`
        let mut surrogate = Tensor::f_zeros([], (Kind::Float, self.device)).m()?;
        for ((_, w), g) in self.net.named().into_iter().zip(gradient) {
            let term = w.f_mul(g).m()?.f_sum(Kind::Float).m()?;
            surrogate = surrogate.f_add(&term).m()?;
        }
        if let Some(p) = proximal {
            surrogate = surrogate
                .f_add(&p.term(&self.net, super::Trainable::All)?)
                .m()?;
        }
        surrogate.f_backward().m()?;
        opt.lr = self
            .config
            .lr_schedule
            .rate(lr, step as usize, total as usize);
        opt.step(&mut trainable_tensors(&mut self.net, super::Trainable::All))
    }
}

/// Normalized labels of `ds` as a float tensor on the CPU.
fn normalized(ds: &Dataset, labels: &LabelTransform) -> Result<Tensor> {
    let y: Vec<f32> = ds
        .require_labels()?
        .iter()
        .zip(ds.cathodes())
        .map(|(&l, c)| labels.forward_for(l, c) as f32)
        .collect();
    Tensor::f_from_slice(&y).m()
}

/// `[B, N, C, H, W]` -> `[N, B·C, H, W]`: the cells side by side in the channels, for grouped
/// convolutions.
fn group(x: Tensor) -> Result<Tensor> {
    let s = x.size();
    x.f_permute([1, 0, 2, 3, 4])
        .m()?
        .f_reshape([s[1], s[0] * s[2], s[3], s[4]])
        .m()
}

/// An encoder's six expanded weights, in `Encoder::named` order.
fn encoder<'a>(w: &[&'a Tensor]) -> Result<[&'a Tensor; 6]> {
    // `Net::named` sorts by name: conv1.bias, conv1.weight, conv2.bias, ...
    let [b1, w1, b2, w2, b3, w3] = w else {
        return Err(Error::Model {
            reason: format!("an encoder has 6 weights, got {}", w.len()),
        });
    };
    Ok([*w1, *b1, *w2, *b2, *w3, *b3])
}

/// The encoder on grouped input `[N, B·C_in, H, W]`, each cell through its own weights
/// (`[B, …]`): `[N, B, C]`.
fn grouped_encoder(x: &Tensor, w: &[&Tensor; 6], g: &Geometry, b: i64) -> Result<Tensor> {
    let conv = |x: &Tensor, w: &Tensor, bias: &Tensor| -> Result<Tensor> {
        let s = w.size();
        let weight = w.f_reshape([s[0] * s[1], s[2], s[3], s[4]]).m()?;
        let bias = bias.f_reshape([s[0] * s[1]]).m()?;
        x.f_conv2d(&weight, Some(&bias), [1, 1], [0, 0], [1, 1], b)
            .m()
    };
    let pool = |x: &Tensor, p: [usize; 2]| {
        let p = [p[0] as i64, p[1] as i64];
        x.f_avg_pool2d(p, p, [0, 0], false, true, None).m()
    };
    let a1 = pool(&conv(x, w[0], w[1])?.f_relu().m()?, g.pool1)?;
    let a2 = pool(&conv(&a1, w[2], w[3])?.f_relu().m()?, g.pool2)?;
    let a3 = conv(&a2, w[4], w[5])?.f_relu().m()?;
    let n = a3.size()[0];
    a3.f_reshape([n, b, -1]).m()
}

/// The shared head per cell: `[N, B, C]` features and `[B, 1, C]` weights -> `[N, B]`.
fn per_cell_head(h: &Tensor, head: &Tensor) -> Result<Tensor> {
    let s = head.size();
    h.f_mul(&head.f_view([1, s[0], s[2]]).m()?)
        .m()?
        .f_sum_dim_intlist(2, false, Kind::Float)
        .m()
}

#[cfg(test)]
mod tests;
