//! Differential privacy: clipping, noise scales per mode, determinism, adaptive clipping
//! direction (the Flower 1.41 sign bug), and the RDP accountant.

use battery_fl_core::dp::{
    clip_l2, clip_l2_slice, effective_noise_multiplier, AdaptiveClipConfig, AdaptiveClipState,
    DpConfig, DpMode, GaussianNoise, RdpAccountant, RoundNoise,
};
use battery_fl_core::model::ModelParams;
use battery_fl_core::{Error, Result};

fn params(values: &[f32]) -> Result<ModelParams> {
    let (a, b) = values.split_at(values.len() / 3);
    ModelParams::new(vec![
        ("a".into(), vec![a.len()], a.to_vec()),
        ("b".into(), vec![b.len()], b.to_vec()),
    ])
}

fn std_and_mean(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = v
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / (n - 1.0);
    (var.sqrt(), mean)
}

// ---------------------------------------------------------------- clipping

#[test]
fn clip_bounds_norm_keeps_direction_and_spares_small_updates() -> Result<()> {
    let raw: Vec<f32> = (0..3000).map(|i| ((i * 37) % 101) as f32 - 50.0).collect();
    let mut p = params(&raw)?;
    let norm = p.l2_norm();
    let out = clip_l2(&mut p, 2.5)?;
    assert!(out.clipped && (out.norm - norm).abs() < 1e-9 * norm);
    assert!(p.l2_norm() <= 2.5 && p.l2_norm() > 2.5 * (1.0 - 1e-5));
    // direction: cosine similarity 1
    let after = p.flatten();
    let dot: f64 = after
        .iter()
        .zip(&raw)
        .map(|(&a, &b)| f64::from(a) * f64::from(b))
        .sum();
    assert!((dot / (p.l2_norm() * norm) - 1.0).abs() < 1e-6);

    // an update inside the ball is bit-for-bit untouched
    let mut small = params(&raw)?;
    small.scale(1e-3);
    let copy = small.clone();
    let out = clip_l2(&mut small, 2.5)?;
    assert!(out.unclipped() && out.factor == 1.0);
    assert_eq!(small, copy);

    // slice and params agree
    let mut flat = raw.clone();
    clip_l2_slice(&mut flat, 2.5)?;
    assert_eq!(flat, after);
    Ok(())
}

// ---------------------------------------------------------------- noise scales per mode

const COORDS: usize = 200_000;

#[test]
fn central_noise_on_sum_and_mean_has_the_documented_std() -> Result<()> {
    let round = DpConfig::new(1.5, 0.4)
        .with_mode(DpMode::Central)
        .round_noise(8)?;
    let mut noise = GaussianNoise::from_seed(11);
    let mut sum = params(&vec![0.0; COORDS])?;
    round.add_server_noise_to_sum(&mut sum, &mut noise)?;
    let (s, m) = std_and_mean(&sum.flatten());
    assert!(
        (s / 0.6 - 1.0).abs() < 0.02 && m.abs() < 0.01,
        "std {s} mean {m}"
    );
    let mut mean = params(&vec![0.0; COORDS])?;
    round.add_server_noise_to_mean(&mut mean, &mut noise)?;
    let (s, m) = std_and_mean(&mean.flatten());
    assert!(
        (s / (0.6 / 8.0) - 1.0).abs() < 0.02 && m.abs() < 0.002,
        "std {s} mean {m}"
    );
    // the clients add nothing in central mode
    let mut update = params(&[0.0; 30])?;
    round.add_client_noise(&mut update, &mut noise)?;
    assert!(update.flatten().iter().all(|&v| v == 0.0));
    Ok(())
}

#[test]
fn local_noise_per_client_is_z_c() -> Result<()> {
    let round = RoundNoise::new(DpMode::Local, 2.0, 0.25, 5)?;
    let mut update = params(&vec![0.0; COORDS])?;
    round.add_client_noise(&mut update, &mut GaussianNoise::from_seed(12))?;
    let (s, m) = std_and_mean(&update.flatten());
    assert!(
        (s / 0.5 - 1.0).abs() < 0.02 && m.abs() < 0.01,
        "std {s} mean {m}"
    );
    Ok(())
}

#[test]
fn distributed_noises_sum_to_z_c() -> Result<()> {
    let n = 10;
    let round = RoundNoise::new(DpMode::Distributed, 1.0, 3.0, n)?;
    assert!((round.client_std() - 3.0 / (n as f64).sqrt()).abs() < 1e-12);
    let mut sum = vec![0.0_f64; COORDS];
    for client in 0..n {
        // each client has its own generator
        let mut update = params(&vec![0.0; COORDS])?;
        round.add_client_noise(
            &mut update,
            &mut GaussianNoise::from_seed(100 + client as u64),
        )?;
        let (s, _) = std_and_mean(&update.flatten());
        assert!((s / round.client_std() - 1.0).abs() < 0.02);
        sum.iter_mut()
            .zip(update.flatten())
            .for_each(|(a, b)| *a += f64::from(b));
    }
    let sum32: Vec<f32> = sum.iter().map(|&v| v as f32).collect();
    let (s, m) = std_and_mean(&sum32);
    assert!(
        (s / 3.0 - 1.0).abs() < 0.02 && m.abs() < 0.03,
        "std {s} mean {m}"
    );
    Ok(())
}

// ---------------------------------------------------------------- determinism

#[test]
fn seeded_noise_reproduces_and_os_noise_does_not() -> Result<()> {
    let run = |mut g: GaussianNoise| -> Result<Vec<f32>> {
        let mut v = vec![0.0_f32; 100_000];
        g.add_to_slice(&mut v, 1.0)?;
        g.add_to_slice(&mut v, 1.0)?;
        Ok(v)
    };
    assert_eq!(
        run(GaussianNoise::from_seed(5))?,
        run(GaussianNoise::from_seed(5))?
    );
    assert_ne!(
        run(GaussianNoise::from_seed(5))?,
        run(GaussianNoise::from_seed(6))?
    );
    assert_eq!(
        run(GaussianNoise::from_key([7; 32]))?,
        run(GaussianNoise::from_key([7; 32]))?
    );
    assert_ne!(
        run(GaussianNoise::from_os()?)?,
        run(GaussianNoise::from_os()?)?
    );
    // config plumbing: seed → reproducible, None → OS
    let seeded = DpConfig::default().with_seed(5);
    assert_eq!(
        run(seeded.noise_source()?)?,
        run(GaussianNoise::from_seed(5))?
    );
    assert_ne!(
        run(DpConfig::default().noise_source()?)?,
        run(DpConfig::default().noise_source()?)?
    );
    // independent of the number of threads
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| Error::Privacy {
            reason: e.to_string(),
        })?;
    let one_thread = pool.install(|| run(GaussianNoise::from_seed(5)))?;
    assert_eq!(one_thread, run(GaussianNoise::from_seed(5))?);
    Ok(())
}

// ---------------------------------------------------------------- adaptive clipping

/// Clip a batch of updates of the given norms at the state's current `C` and report the
/// unclipped flags, as a server would see them.
fn round_flags(state: &AdaptiveClipState, norms: &[f32]) -> Result<Vec<bool>> {
    norms
        .iter()
        .map(|&n| {
            let mut u = [n * 0.6, n * 0.8];
            Ok(clip_l2_slice(&mut u, state.clipping_norm())?.unclipped())
        })
        .collect()
}

#[test]
fn adaptive_clip_grows_when_everything_is_clipped() -> Result<()> {
    // The Flower 1.41 scenario: updates of norm 20 ≫ C0 = 1, no count noise, γ = 0.5, η = 0.2.
    // Flower shrinks C (1 → 0.905 → 0.819 → 0.741); Andrew et al. grow it (1 → e^0.1 → e^0.2 …).
    let cfg = AdaptiveClipConfig::default()
        .with_target_unclipped_quantile(0.5)
        .with_learning_rate(0.2)
        .with_count_noise_std(0.0);
    let mut state = AdaptiveClipState::new(1.0, cfg)?;
    let mut noise = GaussianNoise::from_seed(0);
    let mut seq = vec![state.clipping_norm()];
    for _ in 0..3 {
        let flags = round_flags(&state, &[20.0, 20.0])?;
        seq.push(state.update(&flags, &mut noise)?);
    }
    for (r, c) in seq.iter().enumerate() {
        assert!(
            (c - (0.1 * r as f64).exp()).abs() < 1e-12,
            "round {r}: C = {c}, sequence {seq:?}"
        );
    }
    assert!(seq.windows(2).all(|w| w[1] > w[0]));
    Ok(())
}

#[test]
fn adaptive_clip_shrinks_when_nothing_is_clipped_and_tracks_the_quantile() -> Result<()> {
    let cfg = AdaptiveClipConfig::default().with_count_noise_std(0.0);
    let mut state = AdaptiveClipState::new(1.0, cfg)?;
    let mut noise = GaussianNoise::from_seed(0);
    for r in 1..=3 {
        let flags = round_flags(&state, &[1e-3; 4])?;
        let c = state.update(&flags, &mut noise)?;
        assert!((c - (-0.1 * f64::from(r)).exp()).abs() < 1e-12);
    }
    // norms 1..=100: C converges to around the median (50), from above and from below
    let norms: Vec<f32> = (1..=100).map(|i| i as f32).collect();
    for start in [0.5, 500.0] {
        let mut state = AdaptiveClipState::new(
            start,
            AdaptiveClipConfig::default().with_count_noise_std(0.0),
        )?;
        for _ in 0..400 {
            let flags = round_flags(&state, &norms)?;
            state.update(&flags, &mut noise)?;
        }
        assert!(
            (40.0..60.0).contains(&state.clipping_norm()),
            "start {start}: C = {}",
            state.clipping_norm()
        );
    }
    Ok(())
}

#[test]
fn adaptive_clip_with_default_noise_moves_the_right_way_on_average() -> Result<()> {
    // 100 clients → σ_b = 5: b̃ is noisy but C still grows when everything is clipped
    let mut state = AdaptiveClipState::new(1.0, AdaptiveClipConfig::default())?;
    let mut noise = GaussianNoise::from_seed(21);
    for _ in 0..20 {
        state.update(&[false; 100], &mut noise)?;
    }
    assert!(
        (state.clipping_norm().ln() - 2.0).abs() < 0.2,
        "ln C = {}",
        state.clipping_norm().ln()
    );
    Ok(())
}

#[test]
fn effective_noise_multiplier_formula_and_limits() -> Result<()> {
    for (z, sb) in [(1.0, 1.0), (0.5, 3.0), (1.9, 1.0)] {
        let zd = effective_noise_multiplier(z, sb)?;
        assert!((zd.powi(-2) + (2.0 * sb).powi(-2) - z.powi(-2)).abs() < 1e-12);
        assert!(zd > z);
    }
    assert!(matches!(
        effective_noise_multiplier(2.0, 1.0),
        Err(Error::Privacy { .. })
    ));
    let state = AdaptiveClipState::new(1.0, AdaptiveClipConfig::default())?;
    // default σ_b = m/20: 10 clients → σ_b = 0.5, z = 1 is not < 1
    assert!(state.round_noise(DpMode::Central, 1.0, 10).is_err());
    let r = state.round_noise(DpMode::Central, 1.0, 100)?;
    assert!((r.noise_multiplier - effective_noise_multiplier(1.0, 5.0)?).abs() < 1e-15);
    Ok(())
}

// ---------------------------------------------------------------- accountant

#[test]
fn accountant_hand_values() -> Result<()> {
    let mut acc = RdpAccountant::new();
    acc.step(1.0, 1.0, 1)?;
    let (eps, order) = acc.epsilon_and_order(1e-5)?;
    assert!(
        (eps - 4.7285).abs() < 5e-4 && order > 1.0,
        "{eps} at {order}"
    );
    acc.step(1.0, 1.0, 2)?;
    assert!((acc.epsilon(1e-5)? - 9.0100).abs() < 5e-4);
    // q = 1 by hand: ε = min_α Tα/(2z²) + log((α−1)/α) − (log δ + log α)/(α−1)
    let (t, z, d) = (3.0, 1.0, 1e-5_f64);
    let hand = acc
        .orders()
        .iter()
        .filter(|&&a| a > 1.01)
        .map(|&a| t * a / (2.0 * z * z) + ((a - 1.0) / a).ln() - (d.ln() + a.ln()) / (a - 1.0))
        .fold(f64::INFINITY, f64::min);
    assert!((acc.epsilon(d)? - hand).abs() < 1e-12);
    Ok(())
}

#[test]
fn accountant_is_monotone_in_rounds_and_noise() -> Result<()> {
    let eps = |z: f64, q: f64, t: u64| -> Result<f64> {
        let mut acc = RdpAccountant::new();
        acc.step(z, q, t)?;
        acc.epsilon(1e-5)
    };
    for q in [1.0, 0.1, 0.01] {
        let by_t: Vec<f64> = [1, 10, 100, 1000]
            .iter()
            .map(|&t| eps(1.0, q, t))
            .collect::<Result<_>>()?;
        assert!(by_t.windows(2).all(|w| w[1] > w[0]), "q={q}: {by_t:?}");
        let by_z: Vec<f64> = [0.7, 1.0, 2.0, 5.0]
            .iter()
            .map(|&z| eps(z, q, 100))
            .collect::<Result<_>>()?;
        assert!(by_z.windows(2).all(|w| w[1] < w[0]), "q={q}: {by_z:?}");
    }
    // composing step by step equals composing at once
    let mut acc = RdpAccountant::new();
    for _ in 0..10 {
        acc.step(1.1, 0.05, 1)?;
    }
    assert!((acc.epsilon(1e-5)? - eps(1.1, 0.05, 10)?).abs() < 1e-9);
    assert_eq!(eps(1.0, 0.0, 100)?, 0.0);
    Ok(())
}

#[test]
fn budget_exhaustion_is_typed_and_leaves_state_unchanged() -> Result<()> {
    let cfg = DpConfig::new(1.0, 1.0).with_max_epsilon(8.0);
    let mut acc = cfg.accountant()?;
    acc.step(1.0, 1.0, 2)?; // ε ≈ 7.08
    let before = acc.clone();
    match acc.step(1.0, 1.0, 1) {
        Err(Error::BudgetExhausted {
            epsilon,
            max_epsilon,
        }) => {
            assert!((epsilon - 9.01).abs() < 1e-2 && max_epsilon == 8.0)
        }
        other => panic!("expected BudgetExhausted, got {other:?}"),
    }
    assert_eq!(acc, before);
    assert!((acc.epsilon_after(1.0, 1.0, 1, 1e-5)? - 9.01).abs() < 1e-2);
    assert_eq!(acc, before);
    // a cheaper step still fits
    acc.step(100.0, 0.01, 1)?;
    assert_eq!(acc.steps(), 3);
    Ok(())
}

#[test]
fn accountant_rejects_invalid_inputs_with_typed_errors() {
    let mut acc = RdpAccountant::new();
    for (z, q) in [
        (0.0, 1.0),
        (-0.5, 1.0),
        (f64::NAN, 1.0),
        (1.0, 1.01),
        (1.0, -1e-9),
        (1.0, f64::INFINITY),
    ] {
        assert!(
            matches!(acc.step(z, q, 1), Err(Error::InvalidConfig { .. })),
            "z={z} q={q}"
        );
    }
    for d in [0.0, -1.0, 1.0, f64::NAN] {
        assert!(
            matches!(acc.epsilon(d), Err(Error::InvalidConfig { .. })),
            "delta={d}"
        );
    }
    assert_eq!(acc.steps(), 0);
}

#[test]
fn dp_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<DpConfig>();
    check::<GaussianNoise>();
    check::<RoundNoise>();
    check::<AdaptiveClipState>();
    check::<RdpAccountant>();
}
