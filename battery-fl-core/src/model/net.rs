//! The two-branch network in libtorch: two identical CNN encoders and one shared linear head.
//!
//! Weights are plain tensors named like a PyTorch `state_dict` (`branch_a.conv1.weight`, ...,
//! `head.weight`), initialized from our seeded generator (PyTorch's default uniform bounds,
//! ±1/sqrt(fan_in)), so initialization does not depend on libtorch's global RNG.

use tch::{Device, Kind, Tensor};

use super::config::Geometry;
use super::params::ModelParams;
use crate::error::{Error, Result};
use crate::rng::SeededRng;

pub(crate) fn tch_err(e: tch::TchError) -> Error {
    Error::Model {
        reason: e.to_string(),
    }
}

/// `?`-friendly conversion of libtorch errors.
pub(crate) trait TchResultExt<T> {
    fn m(self) -> Result<T>;
}

impl<T> TchResultExt<T> for std::result::Result<T, tch::TchError> {
    fn m(self) -> Result<T> {
        self.map_err(tch_err)
    }
}

fn i64s(v: [usize; 2]) -> [i64; 2] {
    [v[0] as i64, v[1] as i64]
}

/// `x` (`[N, C, H, W]`) stored channels-last (`[N, H, W, C]` in memory, the same logical
/// shape). libtorch's convolutions and pools follow the input's layout, and on the CPU they
/// are faster channels-last: the convolutions skip their layout conversions and the pools
/// vectorize over channels (BENCHMARKS.md "Model speed").
pub(crate) fn channels_last(x: &Tensor) -> Result<Tensor> {
    x.f_permute([0, 2, 3, 1])
        .m()?
        .f_contiguous()
        .m()?
        .f_permute([0, 3, 1, 2])
        .m()
}

/// One CNN encoder: conv, ReLU, avg-pool, conv, ReLU, avg-pool, whole-map conv, ReLU.
#[derive(Debug)]
pub(crate) struct Encoder {
    pub(crate) w1: Tensor,
    pub(crate) b1: Tensor,
    pub(crate) w2: Tensor,
    pub(crate) b2: Tensor,
    pub(crate) w3: Tensor,
    pub(crate) b3: Tensor,
}

fn uniform(rng: &mut SeededRng, shape: &[usize], fan_in: usize, device: Device) -> Result<Tensor> {
    use rand::Rng;
    let bound = 1.0 / (fan_in as f64).sqrt();
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|_| rng.random_range(-bound..bound) as f32)
        .collect();
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    Tensor::f_from_slice(&data)
        .m()?
        .f_reshape(dims.as_slice())
        .m()?
        .f_to_device(device)
        .m()
}

impl Encoder {
    fn init(
        rng: &mut SeededRng,
        g: &Geometry,
        c_in: usize,
        c: usize,
        device: Device,
    ) -> Result<Self> {
        let k = |[h, w]: [usize; 2]| h * w;
        let f1 = c_in * k(g.conv1);
        let f2 = c * k(g.conv2);
        let f3 = c * k(g.conv3);
        Ok(Encoder {
            w1: uniform(rng, &[c, c_in, g.conv1[0], g.conv1[1]], f1, device)?,
            b1: uniform(rng, &[c], f1, device)?,
            w2: uniform(rng, &[c, c, g.conv2[0], g.conv2[1]], f2, device)?,
            b2: uniform(rng, &[c], f2, device)?,
            w3: uniform(rng, &[c, c, g.conv3[0], g.conv3[1]], f3, device)?,
            b3: uniform(rng, &[c], f3, device)?,
        })
    }

    fn named(&self, prefix: &str) -> Vec<(String, &Tensor)> {
        [
            ("conv1.weight", &self.w1),
            ("conv1.bias", &self.b1),
            ("conv2.weight", &self.w2),
            ("conv2.bias", &self.b2),
            ("conv3.weight", &self.w3),
            ("conv3.bias", &self.b3),
        ]
        .into_iter()
        .map(|(n, t)| (format!("{prefix}.{n}"), t))
        .collect()
    }

    /// The first convolution without its bias (linear in the input).
    ///
    /// # Shapes
    /// `[N, C_in, H, W]` -> `[N, C, H - k1h + 1, W - k1w + 1]`.
    pub(crate) fn conv1_linear(&self, x: &Tensor) -> Result<Tensor> {
        channels_last(x)?
            .f_conv2d::<Tensor>(&self.w1, None, [1, 1], [0, 0], [1, 1], 1)
            .m()
    }

    /// Everything after the first convolution's linear part (bias, ReLU, pool, conv, ReLU,
    /// pool, projection, ReLU) on a tensor it may overwrite: the bias and the first ReLU act
    /// in place (inference only).
    ///
    /// # Shapes
    /// `[N, C, H1, W1]` -> `[N, C]`.
    pub(crate) fn after_conv1_in_place(&self, mut c1: Tensor, g: &Geometry) -> Result<Tensor> {
        let c = self.b1.size()[0];
        let _ = c1.f_add_(&self.b1.f_view([1, c, 1, 1]).m()?).m()?;
        let _ = c1.f_relu_().m()?;
        self.after_first_activation(&c1, g)
    }

    /// Pool, conv, ReLU, pool, projection, ReLU: the encoder after its first activation.
    fn after_first_activation(&self, a1: &Tensor, g: &Geometry) -> Result<Tensor> {
        a1.f_avg_pool2d(i64s(g.pool1), i64s(g.pool1), [0, 0], false, true, None)
            .m()?
            .f_conv2d(&self.w2, Some(&self.b2), [1, 1], [0, 0], [1, 1], 1)
            .m()?
            .f_relu()
            .m()?
            .f_avg_pool2d(i64s(g.pool2), i64s(g.pool2), [0, 0], false, true, None)
            .m()?
            .f_conv2d(&self.w3, Some(&self.b3), [1, 1], [0, 0], [1, 1], 1)
            .m()?
            .f_relu()
            .m()?
            .f_flatten(1, -1)
            .m()
    }

    /// The whole encoder.
    ///
    /// # Shapes
    /// `[N, C_in, H, W]` -> `[N, C]`.
    pub(crate) fn forward(&self, x: &Tensor, g: &Geometry) -> Result<Tensor> {
        // bias inside the convolution; the ReLU may overwrite the convolution's output, which
        // its backward pass does not read
        let mut c1 = channels_last(x)?
            .f_conv2d(&self.w1, Some(&self.b1), [1, 1], [0, 0], [1, 1], 1)
            .m()?;
        let _ = c1.f_relu_().m()?;
        self.after_first_activation(&c1, g)
    }
}

/// Branch A, optional branch B, and the shared head `Linear(C -> 1, bias = false)`.
#[derive(Debug)]
pub(crate) struct Net {
    pub(crate) a: Encoder,
    pub(crate) b: Option<Encoder>,
    pub(crate) head: Tensor,
    pub(crate) geometry: Geometry,
}

impl Net {
    pub(crate) fn init(
        seed: u64,
        geometry: Geometry,
        c_in: usize,
        c: usize,
        two_branches: bool,
        device: Device,
    ) -> Result<Self> {
        let mut rng = crate::rng::seeded(seed);
        let a = Encoder::init(&mut rng, &geometry, c_in, c, device)?;
        let b = if two_branches {
            Some(Encoder::init(&mut rng, &geometry, c_in, c, device)?)
        } else {
            None
        };
        let head = uniform(&mut rng, &[1, c], c, device)?;
        Ok(Net {
            a,
            b,
            head,
            geometry,
        })
    }

    /// Named tensors, sorted by name (the `ModelParams` order).
    pub(crate) fn named(&self) -> Vec<(String, &Tensor)> {
        let mut v = self.a.named("branch_a");
        if let Some(b) = &self.b {
            v.extend(b.named("branch_b"));
        }
        v.push(("head.weight".into(), &self.head));
        v.sort_by(|x, y| x.0.cmp(&y.0));
        v
    }

    /// The shared head.
    ///
    /// # Shapes
    /// `[N, C]` -> `[N]`.
    pub(crate) fn head(&self, h: &Tensor) -> Result<Tensor> {
        h.f_matmul(&self.head.f_tr().m()?).m()?.f_flatten(0, -1).m()
    }

    /// Branch B's first convolution (linear part) of raw inputs `[U, C_in, H, W]`.
    pub(crate) fn branch_b_conv1(&self, raw: &Tensor) -> Result<Tensor> {
        let b = self.b.as_ref().ok_or_else(|| Error::Model {
            reason: "single-branch model has no branch B".into(),
        })?;
        b.conv1_linear(raw)
    }

    /// Branch B through the head on pairs given by first convolutions: pair `p` is
    /// `(c1_targets[targets[p]], c1_refs[references[p]])`. Because the first convolution is
    /// linear, `conv1(x - r) = conv1(x) - conv1(r)`: at inference it runs once per distinct
    /// cell instead of once per pair (method.md section 10; `model/pairs.rs`).
    /// Inference only: activations are overwritten in place.
    ///
    /// # Shapes
    /// returns `[P]`.
    pub(crate) fn branch_b_from_conv1(
        &self,
        c1_targets: &Tensor,
        targets: &Tensor,
        c1_refs: &Tensor,
        references: &Tensor,
    ) -> Result<Tensor> {
        let b = self.b.as_ref().ok_or_else(|| Error::Model {
            reason: "single-branch model has no branch B".into(),
        })?;
        // rows picked in the channels-last layout's own order (`[N, H, W, C]`, contiguous),
        // where picking cells is a copy of whole blocks
        let pick =
            |c1: &Tensor, at: &Tensor| c1.f_permute([0, 2, 3, 1]).m()?.f_index_select(0, at).m();
        let mut diff = pick(c1_targets, targets)?;
        let _ = diff.f_sub_(&pick(c1_refs, references)?).m()?;
        let diff = diff.f_permute([0, 3, 1, 2]).m()?;
        self.head(&b.after_conv1_in_place(diff, &self.geometry)?)
    }

    /// [`Self::branch_b_diffs`] at inference (the first activations overwritten in place).
    pub(crate) fn branch_b_diffs_in_place(&self, diffs: &Tensor) -> Result<Tensor> {
        let b = self.b.as_ref().ok_or_else(|| Error::Model {
            reason: "single-branch model has no branch B".into(),
        })?;
        self.head(&b.after_conv1_in_place(b.conv1_linear(diffs)?, &self.geometry)?)
    }

    /// Branch B through the head on explicit target-minus-reference differences.
    ///
    /// # Shapes
    /// `[P, C_in, H, W]` -> `[P]`.
    pub(crate) fn branch_b_diffs(&self, diffs: &Tensor) -> Result<Tensor> {
        let b = self.b.as_ref().ok_or_else(|| Error::Model {
            reason: "single-branch model has no branch B".into(),
        })?;
        self.head(&b.forward(diffs, &self.geometry)?)
    }

    /// Branch A through the head.
    ///
    /// # Shapes
    /// `[N, C_in, H, W]` -> `[N]`.
    pub(crate) fn branch_a(&self, x: &Tensor) -> Result<Tensor> {
        self.head(&self.a.forward(x, &self.geometry)?)
    }

    pub(crate) fn to_params(&self) -> Result<ModelParams> {
        let mut out = Vec::new();
        for (name, t) in self.named() {
            let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
            let flat = t
                .f_detach()
                .m()?
                .f_to_device(Device::Cpu)
                .m()?
                .f_to_kind(Kind::Float)
                .m()?
                .f_contiguous()
                .m()?
                .f_view([-1])
                .m()?;
            let data = Vec::<f32>::try_from(&flat).m()?;
            out.push((name, shape, data));
        }
        ModelParams::new(out)
    }

    pub(crate) fn load_params(&mut self, params: &ModelParams) -> Result<()> {
        let expected = self.to_params()?;
        expected.check_compatible(params)?;
        let device = self.head.device();
        let tensors = self.named_mut();
        tch::no_grad(|| -> Result<()> {
            for ((_, t), p) in tensors.into_iter().zip(params.params()) {
                let dims: Vec<i64> = p.shape.iter().map(|&d| d as i64).collect();
                let src = Tensor::f_from_slice(&p.data)
                    .m()?
                    .f_reshape(dims.as_slice())
                    .m()?
                    .f_to_device(device)
                    .m()?;
                t.f_copy_(&src).m()?;
            }
            Ok(())
        })
    }

    /// Mutable named tensors, sorted by name (the `ModelParams` order).
    pub(crate) fn named_mut(&mut self) -> Vec<(String, &mut Tensor)> {
        fn enc<'a>(e: &'a mut Encoder, p: &str) -> Vec<(String, &'a mut Tensor)> {
            vec![
                (format!("{p}.conv1.weight"), &mut e.w1),
                (format!("{p}.conv1.bias"), &mut e.b1),
                (format!("{p}.conv2.weight"), &mut e.w2),
                (format!("{p}.conv2.bias"), &mut e.b2),
                (format!("{p}.conv3.weight"), &mut e.w3),
                (format!("{p}.conv3.bias"), &mut e.b3),
            ]
        }
        let mut v = enc(&mut self.a, "branch_a");
        if let Some(b) = self.b.as_mut() {
            v.extend(enc(b, "branch_b"));
        }
        v.push(("head.weight".into(), &mut self.head));
        v.sort_by(|x, y| x.0.cmp(&y.0));
        v
    }
}
