//! The optimizer side of training: a small AdamW of our own built from fallible libtorch
//! operations, the learning-rate schedule and stochastic weight averaging.

use tch::Tensor;

use super::config::LrSchedule;
use super::net::TchResultExt;
use crate::error::Result;

pub(crate) struct AdamW {
    pub(crate) lr: f64,
    wd: f64,
    betas: (f64, f64),
    eps: f64,
    t: i32,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl AdamW {
    pub(crate) fn new(params: &[&mut Tensor], lr: f64, wd: f64) -> Result<Self> {
        let zeros = |p: &Tensor| p.f_zeros_like().m();
        Ok(AdamW {
            lr,
            wd,
            betas: (0.9, 0.999),
            eps: 1e-8,
            t: 0,
            m: params.iter().map(|p| zeros(p)).collect::<Result<_>>()?,
            v: params.iter().map(|p| zeros(p)).collect::<Result<_>>()?,
        })
    }

    /// One decoupled-weight-decay Adam step (Loshchilov & Hutter), as `torch.optim.AdamW`.
    pub(crate) fn step(&mut self, params: &mut [&mut Tensor]) -> Result<()> {
        self.t += 1;
        let (b1, b2) = self.betas;
        let bc1 = 1.0 - b1.powi(self.t);
        let bc2 = 1.0 - b2.powi(self.t);
        tch::no_grad(|| -> Result<()> {
            for ((p, m), v) in params.iter_mut().zip(&mut self.m).zip(&mut self.v) {
                let mut g = p.f_grad().m()?;
                if !g.defined() {
                    continue;
                }
                let _ = p.f_mul_scalar_(1.0 - self.lr * self.wd).m()?;
                let _ = m
                    .f_mul_scalar_(b1)
                    .m()?
                    .f_add_(&g.f_mul_scalar(1.0 - b1).m()?)
                    .m()?;
                let _ = v
                    .f_mul_scalar_(b2)
                    .m()?
                    .f_addcmul_(&g, &g.f_mul_scalar(1.0 - b2).m()?)
                    .m()?;
                let denom = v
                    .f_div_scalar(bc2)
                    .m()?
                    .f_sqrt()
                    .m()?
                    .f_add_scalar(self.eps)
                    .m()?;
                let update = m.f_div(&denom).m()?.f_mul_scalar(self.lr / bc1).m()?;
                let _ = p.f_sub_(&update).m()?;
                let _ = g.f_zero_().m()?;
            }
            Ok(())
        })
    }
}

impl LrSchedule {
    /// Learning rate of step `step` (0-based) out of `total` for base rate `lr`.
    pub(crate) fn rate(self, lr: f64, step: usize, total: usize) -> f64 {
        match self {
            LrSchedule::Constant => lr,
            LrSchedule::Cosine => {
                let t = step as f64 / total.max(1) as f64;
                0.5 * lr * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

/// Running mean of the trainable weights at the end of each of the last epochs (stochastic
/// weight averaging); inactive when the fraction is 0.
pub(crate) struct WeightAverage {
    first_epoch: usize,
    count: f64,
    sums: Vec<Tensor>,
}

impl WeightAverage {
    pub(crate) fn new(fraction: f64, epochs: usize) -> Self {
        let averaged = (fraction * epochs as f64).ceil() as usize;
        WeightAverage {
            first_epoch: if averaged == 0 {
                usize::MAX
            } else {
                epochs - averaged.min(epochs)
            },
            count: 0.0,
            sums: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, epoch: usize, params: &[&mut Tensor]) -> Result<()> {
        if epoch < self.first_epoch {
            return Ok(());
        }
        tch::no_grad(|| -> Result<()> {
            if self.sums.is_empty() {
                self.sums = params
                    .iter()
                    .map(|p| p.f_detach_copy().m())
                    .collect::<Result<_>>()?;
            } else {
                for (s, p) in self.sums.iter_mut().zip(params) {
                    let _ = s.f_add_(p).m()?;
                }
            }
            Ok(())
        })?;
        self.count += 1.0;
        Ok(())
    }

    /// Replace the weights by their average (nothing when no epoch was averaged).
    pub(crate) fn write_into(&self, params: &mut [&mut Tensor]) -> Result<()> {
        if self.count == 0.0 {
            return Ok(());
        }
        tch::no_grad(|| -> Result<()> {
            for (p, s) in params.iter_mut().zip(&self.sums) {
                p.f_copy_(&s.f_div_scalar(self.count).m()?).m()?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    #[test]
    fn cosine_schedule_starts_at_the_rate_and_anneals_to_zero() {
        let rate = |step| LrSchedule::Cosine.rate(1e-3, step, 100);
        assert_abs_diff_eq!(rate(0), 1e-3, epsilon = 1e-15);
        assert_abs_diff_eq!(rate(50), 5e-4, epsilon = 1e-15);
        assert!(rate(99) < 1e-6 && rate(99) > 0.0);
        assert!((1..100).all(|s| rate(s) < rate(s - 1)));
        assert_eq!(LrSchedule::Constant.rate(1e-3, 99, 100), 1e-3);
    }

    #[test]
    fn weight_average_is_the_mean_of_the_last_epochs_snapshots() {
        // 4 epochs, fraction 0.5: epochs 2 and 3 are averaged, 0 and 1 are not
        let mut avg = WeightAverage::new(0.5, 4);
        let mut w = Tensor::from_slice(&[0.0f32, 0.0]);
        for (epoch, value) in [10.0f32, 20.0, 1.0, 3.0].into_iter().enumerate() {
            w.f_copy_(&Tensor::from_slice(&[value, -value])).unwrap();
            avg.add(epoch, &[&mut w]).unwrap();
        }
        avg.write_into(&mut [&mut w]).unwrap();
        assert_eq!(Vec::<f32>::try_from(&w).unwrap(), vec![2.0, -2.0]);

        // fraction 0 leaves the weights alone
        let mut none = WeightAverage::new(0.0, 4);
        none.add(3, &[&mut w]).unwrap();
        let mut z = Tensor::from_slice(&[7.0f32]);
        none.write_into(&mut [&mut z]).unwrap();
        assert_eq!(Vec::<f32>::try_from(&z).unwrap(), vec![7.0]);
    }
}
