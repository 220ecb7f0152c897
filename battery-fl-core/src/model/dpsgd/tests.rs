use approx::assert_relative_eq;
use tch::{Kind, Tensor};

use super::super::{BatLiNet, BatLiNetConfig};
use super::*;
use crate::features::FeaturizerConfig;

fn tiny(seed: u64) -> BatLiNet {
    let config = BatLiNetConfig::default()
        .with_input_channels(vec![0, 1])
        .with_conv_channels(4)
        .with_seed(seed)
        .with_progress(false);
    let featurizer = FeaturizerConfig::default()
        .with_cycles(12)
        .with_interp_dim(16);
    BatLiNet::new(config, featurizer).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(&t.to_kind(Kind::Float).contiguous().view([-1])).unwrap()
}

#[test]
fn per_cell_gradients_equal_one_backward_pass_per_cell() {
    tch::manual_seed(1);
    let mut model = tiny(3);
    let [c, h, w] = model.shape.map(|d| d as i64);
    let (b, s) = (3i64, 2i64);
    let xa = Tensor::randn([b, c, h, w], (Kind::Float, tch::Device::Cpu));
    let diffs = Tensor::randn([b, s, c, h, w], (Kind::Float, tch::Device::Cpu));
    let y_ref = Tensor::randn([b, s], (Kind::Float, tch::Device::Cpu));
    let y = Tensor::randn([b], (Kind::Float, tch::Device::Cpu));
    let (grads, losses) = model
        .per_cell_gradients(
            &xa,
            Some(&(diffs.shallow_clone(), y_ref.shallow_clone())),
            &y,
        )
        .unwrap();
    let alpha = model.config.effective_alpha();
    for i in 0..b {
        for (_, t) in model.net.named_mut() {
            let _ = t.set_requires_grad(true);
            let mut g = t.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        let ya = model.net.branch_a(&xa.narrow(0, i, 1)).unwrap();
        let yb = model
            .net
            .branch_b_diffs(&diffs.get(i))
            .unwrap()
            .f_add(&y_ref.get(i))
            .unwrap()
            .mean(Kind::Float);
        let yi = y.get(i);
        let loss = (ya.squeeze() - &yi).square() * (1.0 - alpha) + (yb - &yi).square() * alpha;
        assert_relative_eq!(
            loss.double_value(&[]),
            losses.double_value(&[i]),
            max_relative = 1e-5
        );
        loss.backward();
        for ((name, t), g) in model.net.named().into_iter().zip(&grads) {
            let want = values(&t.grad());
            let got = values(&g.get(i));
            for (a, e) in got.iter().zip(&want) {
                assert!(
                    (a - e).abs() <= 1e-5 + 1e-4 * e.abs(),
                    "{name} of cell {i}: {a} vs {e}"
                );
            }
        }
    }
}

#[test]
fn each_cell_moves_the_sum_by_at_most_the_clipping_norm() {
    let model = tiny(0);
    let shapes: Vec<Vec<i64>> = model.net.named().iter().map(|(_, t)| t.size()).collect();
    // two cells: one with a huge gradient, one with a small one
    let grads: Vec<Tensor> = shapes
        .iter()
        .map(|s| {
            let mut shape = vec![2];
            shape.extend(s);
            let g = Tensor::ones(shape.as_slice(), (Kind::Float, tch::Device::Cpu));
            let scale = Tensor::from_slice(&[100.0f32, 1e-4]);
            let mut view = vec![2];
            view.extend(std::iter::repeat_n(1, s.len()));
            g * scale.view(view.as_slice())
        })
        .collect();
    let small: f64 = shapes
        .iter()
        .map(|s| s.iter().product::<i64>() as f64 * 1e-8)
        .sum::<f64>()
        .sqrt();
    let mut noise = GaussianNoise::from_seed(0);
    // no noise: the sum of the clipped gradients, over the expected batch size 2
    let (out, clipped) = model
        .clip_and_noise(Some(grads), 0.5, 0.0, 2.0, &mut noise)
        .unwrap();
    // only the huge gradient was longer than the clipping norm
    assert_eq!(clipped, 1);
    let norm: f64 = out
        .iter()
        .map(|t| values(t).iter().map(|v| f64::from(*v).powi(2)).sum::<f64>())
        .sum::<f64>()
        .sqrt();
    // both gradients point the same way: (0.5 + small) / 2
    assert_relative_eq!(norm, (0.5 + small) / 2.0, max_relative = 1e-4);
    // no cell sampled: pure noise of std zC / expected
    let (pure, _) = model
        .clip_and_noise(None, 0.5, 2.0, 4.0, &mut noise)
        .unwrap();
    let all: Vec<f64> = pure.iter().flat_map(values).map(f64::from).collect();
    let std = (all.iter().map(|v| v * v).sum::<f64>() / all.len() as f64).sqrt();
    assert_relative_eq!(std, 0.25, max_relative = 0.15);
}

#[test]
fn a_cell_with_a_non_finite_gradient_stops_the_training() {
    let model = tiny(0);
    let grads: Vec<Tensor> = model
        .net
        .named()
        .iter()
        .enumerate()
        .map(|(i, (_, t))| {
            let mut shape = vec![2];
            shape.extend(t.size());
            let g = Tensor::ones(shape.as_slice(), (Kind::Float, tch::Device::Cpu));
            // the second cell's first weight gradient is NaN
            if i == 0 {
                let _ = g.get(1).fill_(f64::NAN);
            }
            g
        })
        .collect();
    let mut noise = GaussianNoise::from_seed(0);
    let err = model
        .clip_and_noise(Some(grads), 1.0, 1.0, 2.0, &mut noise)
        .unwrap_err();
    assert!(
        matches!(&err, crate::Error::Model { reason } if reason.contains("diverged")),
        "{err}"
    );
}

#[test]
fn the_noise_multiplier_is_found_or_checked_against_the_budget() {
    let target = DpSgdConfig {
        epsilon: Some(4.0),
        ..Default::default()
    };
    let z = target.noise_multiplier_for(0.1, 100).unwrap();
    let spent = RdpAccountant::new()
        .epsilon_after(z, 0.1, 100, 1e-5)
        .unwrap();
    assert!(spent <= 4.0 && spent > 3.99, "{spent}");
    let over = DpSgdConfig {
        noise_multiplier: Some(0.3),
        epsilon: Some(1.0),
        ..Default::default()
    };
    assert!(matches!(
        over.noise_multiplier_for(0.5, 100),
        Err(Error::BudgetExhausted { .. })
    ));
    let nothing = DpSgdConfig {
        epsilon: None,
        ..Default::default()
    };
    assert!(matches!(
        nothing.validate(),
        Err(Error::InvalidConfig { .. })
    ));
    let bad = DpSgdConfig {
        clipping_norm: 0.0,
        ..Default::default()
    };
    assert!(bad.validate().is_err());
    for scale in [0.0, f64::NAN, -1.0] {
        let bad = DpSgdConfig {
            learning_rate_scale: scale,
            ..Default::default()
        };
        assert!(
            matches!(bad.validate(), Err(Error::InvalidConfig { field, .. }) if field == "learning_rate_scale")
        );
    }
}
