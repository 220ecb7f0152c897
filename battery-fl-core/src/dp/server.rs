//! The coordinator's side of a DP round of a mean-based strategy for a deployment (the Flower
//! strategy): the noise each sampled node adds, the fixed public denominator, accounting
//! *before* the release, the server's own noise in central mode, and there adaptive clipping.
//! The in-process `federation::Simulation` runs the same pieces ([`release_mean`],
//! [`RoundNoise`], [`AdaptiveClipState`]) round by round itself, since it also releases
//! genome-group models and keys its noise per round.

use super::{
    check_mode, clip_l2, AdaptiveClipState, DpConfig, DpMode, GaussianNoise, RdpAccountant,
    RoundNoise,
};
use crate::error::{Error, Result};
use crate::model::ModelParams;

/// The released mean of equally weighted updates whose plain mean over the `arrived` ones is
/// `mean`: their sum over the round's fixed denominator (the sampled count, not the replies),
/// plus, in central mode, the server's noise.
///
/// # Errors
/// As [`GaussianNoise::add_to_params`].
pub fn release_mean(
    round: &RoundNoise,
    mean: &ModelParams,
    arrived: usize,
    noise: &mut GaussianNoise,
) -> Result<ModelParams> {
    let mut sum = mean.clone();
    sum.scale(arrived as f32);
    let mut released = round.mean_of_sum(&sum);
    if round.mode == DpMode::Central {
        round.add_server_noise_to_mean(&mut released, noise)?;
    }
    Ok(released)
}

/// What a coordinator needs across the rounds of a DP run: its configuration, the accountant,
/// the rounds released and, in central mode, the adaptive clipping norm. Each round's noise is
/// its own ([`GaussianNoise::for_round`]): with `config.seed` the in-process `Simulation`'s
/// (tests), else keyed from the OS.
///
/// Adaptive clipping (Andrew et al. 2021, [`AdaptiveClipState`]) needs each node's bit
/// "my update fit under `C`": in central mode without secure aggregation the server receives
/// every unclipped update (it is trusted with them; that is what central DP means) and
/// computes the bits itself, as the in-process `Simulation` does. Each round then releases the
/// mean at `z_Δ` and the noisy count of unclipped updates at `σ_b`; both are accounted, and
/// they compose to the configured `z`. In local and distributed modes, or under secure
/// aggregation, a deployment's server never sees an update's norm: each node's bit would have
/// to be noised and securely summed, which the nodes do not do yet, so `ServerDp` refuses
/// adaptive clipping there (the in-process `Simulation`, which sees every update, runs it in
/// every mode).
///
/// ```
/// use battery_fl_core::dp::{DpConfig, DpMode, ServerDp};
/// use battery_fl_core::model::ModelParams;
///
/// let config = DpConfig { mode: DpMode::Central, seed: Some(1), ..Default::default() };
/// let mut server = ServerDp::new(config, false)?;
/// let delta = |v: f32| ModelParams::new(vec![("w".into(), vec![2], vec![v, 0.0])]);
/// // three nodes sampled, two replied: each delta clipped to norm 1, summed, divided by 3
/// let mean = server.release_updates(vec![delta(4.0)?, delta(0.5)?], 3, None)?;
/// assert_eq!(server.epsilon().map(|e| e > 0.0), Some(true));
/// assert_eq!(mean.flatten().len(), 2);
/// # Ok::<(), battery_fl_core::Error>(())
/// ```
#[derive(Debug)]
pub struct ServerDp {
    config: DpConfig,
    accountant: RdpAccountant,
    epsilon: Option<f64>,
    adaptive: Option<AdaptiveClipState>,
    rounds: u64,
}

impl ServerDp {
    /// A coordinator's DP for `config`; `secure_aggregation` says whether the server sees only
    /// the sum (distributed noise is refused without it).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an invalid config, distributed noise without secure
    /// aggregation, or adaptive clipping outside central mode or with secure aggregation.
    pub fn new(config: DpConfig, secure_aggregation: bool) -> Result<Self> {
        check_mode(config.mode, secure_aggregation)?;
        if config.adaptive.is_some() && (config.mode != DpMode::Central || secure_aggregation) {
            return Err(Error::config(
                "dp.adaptive",
                "adaptive clipping needs each node's unclipped update norm: a server sees it \
                 only in central mode without secure aggregation",
            ));
        }
        Ok(ServerDp {
            accountant: config.accountant()?,
            adaptive: config.adaptive_state()?,
            config,
            epsilon: None,
            rounds: 0,
        })
    }

    /// The clipping norm of the next round: the configured one, or with adaptive clipping
    /// where the released counts have moved it.
    pub fn clipping_norm(&self) -> f64 {
        self.adaptive
            .as_ref()
            .map_or(self.config.clipping_norm, AdaptiveClipState::clipping_norm)
    }

    /// The configuration.
    pub fn config(&self) -> &DpConfig {
        &self.config
    }

    /// The noise of a round with `sampled` nodes; distributed noise is sized for
    /// `min_survivors` (the fewest survivors secure aggregation accepts, default all).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for zero sampled nodes or `min_survivors` outside `1..=sampled`.
    pub fn round_noise(&self, sampled: usize, min_survivors: Option<usize>) -> Result<RoundNoise> {
        let c = &self.config;
        // with adaptive clipping the update gets z_Δ: the count's release takes the rest of z
        let z = match &self.adaptive {
            Some(a) => a.update_noise_multiplier(c.noise_multiplier, sampled.max(1))?,
            None => c.noise_multiplier,
        };
        let round = RoundNoise::new(c.mode, z, self.clipping_norm(), sampled)?;
        match min_survivors {
            Some(t) if c.mode == DpMode::Distributed => round.with_min_survivors(t),
            _ => Ok(round),
        }
    }

    /// Release the mean of `deltas` (each node's update minus the global weights) from a
    /// round with `sampled` nodes: in central mode each clipped to the round's clipping norm
    /// (in local mode the nodes clipped before adding their noise, and clipping the noisy
    /// update again would shrink the signal, not the noise), summed with equal weights,
    /// divided by `sampled`, accounted, and noised in central mode. With adaptive clipping the
    /// noisy count of the updates that fit under the norm then moves it for the next round.
    ///
    /// # Errors
    /// [`Error::Aggregation`] without deltas or with more deltas than sampled nodes, shape
    /// errors for deltas of different shapes, and [`Error::BudgetExhausted`] when the round
    /// would exceed the budget (nothing is released and neither the accountant nor the
    /// clipping norm changes).
    pub fn release_updates(
        &mut self,
        deltas: Vec<ModelParams>,
        sampled: usize,
        min_survivors: Option<usize>,
    ) -> Result<ModelParams> {
        let arrived = deltas.len();
        let clipping_norm = self.clipping_norm();
        let mut unclipped = Vec::with_capacity(arrived);
        let mut sum: Option<ModelParams> = None;
        for mut delta in deltas {
            if self.config.mode == DpMode::Central {
                unclipped.push(clip_l2(&mut delta, clipping_norm)?.unclipped());
            }
            sum = Some(match sum {
                Some(s) => s.add(&delta)?,
                None => delta,
            });
        }
        let mut mean = sum.ok_or_else(|| Error::Aggregation {
            reason: "no update to release".into(),
        })?;
        mean.scale(1.0 / arrived as f32);
        self.release_counted(&mean, arrived, sampled, min_survivors, &unclipped)
    }

    /// Release the plain mean `mean` of `arrived` equally weighted, already clipped deltas
    /// (secure aggregation's output) from a round with `sampled` nodes: over the fixed
    /// denominator, accounted with the noise the survivors really carry, noised in central
    /// mode.
    ///
    /// # Errors
    /// As [`release_updates`](Self::release_updates); [`Error::InvalidConfig`] with adaptive
    /// clipping, which needs the updates themselves.
    pub fn release(
        &mut self,
        mean: &ModelParams,
        arrived: usize,
        sampled: usize,
        min_survivors: Option<usize>,
    ) -> Result<ModelParams> {
        if self.adaptive.is_some() {
            return Err(Error::config(
                "dp.adaptive",
                "adaptive clipping counts the updates that fit under the norm: release them \
                 with release_updates",
            ));
        }
        self.release_counted(mean, arrived, sampled, min_survivors, &[])
    }

    /// [`release`](Self::release) with each arrived update's bit "fit under the norm" for
    /// adaptive clipping (empty without it).
    fn release_counted(
        &mut self,
        mean: &ModelParams,
        arrived: usize,
        sampled: usize,
        min_survivors: Option<usize>,
        unclipped: &[bool],
    ) -> Result<ModelParams> {
        if arrived == 0 || arrived > sampled {
            return Err(Error::Aggregation {
                reason: format!("{arrived} updates from {sampled} sampled nodes"),
            });
        }
        let round = self.round_noise(sampled, min_survivors)?;
        // accounted before anything is released; no subsampling amplification (q = 1): the
        // server samples the nodes and knows who they are
        let mut accountant = self.accountant.clone();
        accountant.step(round.effective_noise_multiplier(arrived), 1.0, 1)?;
        // adaptive clipping also releases the noisy count of unclipped updates (noise σ_b for
        // the sampled count, as z_Δ was sized): a step of its own, as the Simulation's
        let mut adaptive = self.adaptive.clone();
        if let Some(a) = &adaptive {
            accountant.step(a.count_noise_multiplier(sampled), 1.0, 1)?;
        }
        let epsilon = accountant.epsilon(self.config.target_delta)?;
        // the round's own noise: with a seed the Simulation's (GaussianNoise::for_round)
        let mut noise = GaussianNoise::for_round(self.config.seed, self.rounds as usize + 1)?;
        let released = release_mean(&round, mean, arrived, &mut noise)?;
        if let Some(a) = adaptive.as_mut() {
            a.update_over(unclipped, sampled, &mut noise)?;
        }
        self.accountant = accountant;
        self.adaptive = adaptive;
        self.epsilon = Some(epsilon);
        self.rounds += 1;
        Ok(released)
    }

    /// Epsilon spent so far at the configured delta (`None` before the first release).
    pub fn epsilon(&self) -> Option<f64> {
        self.epsilon
    }

    /// Rounds released so far.
    pub fn rounds(&self) -> u64 {
        self.rounds
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dp::{effective_noise_multiplier, AdaptiveClipConfig};
    use approx::assert_relative_eq;

    fn delta(v: &[f32]) -> ModelParams {
        ModelParams::new(vec![("w".into(), vec![v.len()], v.to_vec())]).unwrap()
    }

    fn config(mode: DpMode) -> DpConfig {
        DpConfig {
            mode,
            noise_multiplier: 1.0,
            clipping_norm: 1.0,
            seed: Some(3),
            ..Default::default()
        }
    }

    #[test]
    fn central_mode_clips_each_update_and_divides_by_the_sampled_count() {
        let mut server = ServerDp::new(
            DpConfig {
                noise_multiplier: 1e-9,
                ..config(DpMode::Central)
            },
            false,
        )
        .unwrap();
        // norms 5 and 0.5: the first is clipped to 1; two of four sampled nodes replied
        let mean = server
            .release_updates(vec![delta(&[3.0, 4.0]), delta(&[0.3, 0.4])], 4, None)
            .unwrap();
        let want = [(0.6 + 0.3) / 4.0, (0.8 + 0.4) / 4.0];
        for (g, w) in mean.flatten().iter().zip(want) {
            assert_relative_eq!(*g, w, epsilon = 1e-6);
        }
    }

    #[test]
    fn local_mode_divides_by_the_sampled_count_without_clipping_again_or_server_noise() {
        let mut server = ServerDp::new(config(DpMode::Local), false).unwrap();
        // the nodes clipped and noised themselves: their (noisy) updates are summed as they are
        let mean = server
            .release_updates(vec![delta(&[3.0, 4.0]), delta(&[0.3, 0.4])], 4, None)
            .unwrap();
        let want = [(3.0 + 0.3) / 4.0, (4.0 + 0.4) / 4.0];
        for (g, w) in mean.flatten().iter().zip(want) {
            assert_relative_eq!(*g, w, epsilon = 1e-6);
        }
        // accounted with what two survivors of local noise carry: z sqrt(2) / 2 ... per round
        let mut acc = RdpAccountant::new();
        let z = server
            .round_noise(4, None)
            .unwrap()
            .effective_noise_multiplier(2);
        acc.step(z, 1.0, 1).unwrap();
        assert_relative_eq!(server.epsilon().unwrap(), acc.epsilon(1e-5).unwrap());
        assert_eq!(server.rounds(), 1);
    }

    #[test]
    fn central_mode_adds_the_servers_noise_and_a_budget_stops_before_release() {
        let mut server = ServerDp::new(
            DpConfig {
                max_epsilon: Some(6.0),
                ..config(DpMode::Central)
            },
            false,
        )
        .unwrap();
        let zero = delta(&[0.0; 1000]);
        let mean = server.release(&zero, 2, 2, None).unwrap();
        let std = (mean
            .flatten()
            .iter()
            .map(|v| f64::from(*v).powi(2))
            .sum::<f64>()
            / 1000.0)
            .sqrt();
        assert_relative_eq!(std, 0.5, max_relative = 0.1); // zC / m
        let spent = server.epsilon().unwrap();
        assert!(matches!(
            server.release(&zero, 2, 2, None),
            Err(Error::BudgetExhausted { .. })
        ));
        assert_eq!((server.epsilon(), server.rounds()), (Some(spent), 1));
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        assert!(ServerDp::new(config(DpMode::Distributed), false).is_err());
        let mut server = ServerDp::new(config(DpMode::Distributed), true).unwrap();
        assert!(server.release_updates(Vec::new(), 3, None).is_err());
        assert!(server.release(&delta(&[1.0]), 4, 3, None).is_err());
        // distributed noise sized for two survivors of three
        let round = server.round_noise(3, Some(2)).unwrap();
        assert_relative_eq!(round.effective_noise_multiplier(2), 1.0, epsilon = 1e-12);
    }

    fn adaptive(z: f64, count_noise_std: f64) -> DpConfig {
        DpConfig {
            noise_multiplier: z,
            adaptive: Some(AdaptiveClipConfig::default().with_count_noise_std(count_noise_std)),
            ..config(DpMode::Central)
        }
    }

    #[test]
    fn adaptive_clipping_moves_the_norm_by_the_released_count_and_accounts_both_releases() {
        // a count noise far below one bit: the rule is exact; z below 2 sigma_b as required
        let mut server = ServerDp::new(adaptive(1e-10, 1e-6), false).unwrap();
        assert_eq!(server.clipping_norm(), 1.0);
        // both updates longer than C = 1: none fits, so C grows by exp(0.2 * 0.5)
        let mean = server
            .release_updates(vec![delta(&[3.0, 4.0]), delta(&[0.0, 2.0])], 2, None)
            .unwrap();
        let want = [0.3, (0.8 + 1.0) / 2.0]; // clipped at the round's C = 1
        for (g, w) in mean.flatten().iter().zip(want) {
            assert_relative_eq!(*g, w, epsilon = 1e-6);
        }
        let grown = 0.1_f64.exp();
        assert_relative_eq!(server.clipping_norm(), grown, max_relative = 1e-5);
        assert_relative_eq!(
            server.round_noise(2, None).unwrap().clipping_norm,
            grown,
            max_relative = 1e-5
        );
        // both fit under the grown norm: C shrinks by exp(-0.2 * 0.5), back to 1
        server
            .release_updates(vec![delta(&[0.1, 0.0]), delta(&[0.0, 0.2])], 2, None)
            .unwrap();
        assert_relative_eq!(server.clipping_norm(), 1.0, max_relative = 1e-5);
        assert_eq!(server.rounds(), 2); // two releases each, two rounds
                                        // three sampled, two replied, both clipped: the centred estimate (0 - 2/2) / 3 + 1/2
                                        // = 1/6 of the sampled nodes fit (a node that did not reply counts half)
        server
            .release_updates(vec![delta(&[3.0, 4.0]), delta(&[0.0, 2.0])], 3, None)
            .unwrap();
        let step: f64 = 0.2 * (0.5 - 1.0 / 6.0);
        assert_relative_eq!(server.clipping_norm(), step.exp(), max_relative = 1e-5);
        assert_eq!(server.rounds(), 3);
        // each round: the mean at z_delta and the count at 2 sigma_b
        let z_delta = effective_noise_multiplier(1e-10, 1e-6).unwrap();
        let mut acc = RdpAccountant::new();
        let z3 = server.round_noise(3, None).unwrap();
        for _ in 0..2 {
            acc.step(z_delta, 1.0, 1).unwrap();
            acc.step(2e-6, 1.0, 1).unwrap();
        }
        acc.step(z3.effective_noise_multiplier(2), 1.0, 1).unwrap();
        acc.step(2e-6, 1.0, 1).unwrap();
        assert_relative_eq!(
            server.epsilon().unwrap(),
            acc.epsilon(1e-5).unwrap(),
            max_relative = 1e-12
        );
    }

    #[test]
    fn adaptive_clipping_is_refused_where_the_server_cannot_see_each_norm() {
        let local = DpConfig {
            mode: DpMode::Local,
            ..adaptive(0.1, 1.0)
        };
        let distributed = DpConfig {
            mode: DpMode::Distributed,
            ..adaptive(0.1, 1.0)
        };
        for (config, secure) in [
            (local, false),
            (distributed, true),
            (adaptive(0.1, 1.0), true),
        ] {
            let err = ServerDp::new(config, secure).unwrap_err();
            assert!(err.to_string().contains("dp.adaptive"), "{err}");
        }
        // a mean released without its updates carries no bits to count
        let mut server = ServerDp::new(adaptive(0.1, 1.0), false).unwrap();
        let err = server.release(&delta(&[1.0]), 2, 2, None).unwrap_err();
        assert!(err.to_string().contains("release_updates"), "{err}");
        assert_eq!((server.rounds(), server.clipping_norm()), (0, 1.0));
    }

    #[test]
    fn an_exhausted_budget_moves_neither_the_accountant_nor_the_norm() {
        let mut server = ServerDp::new(
            DpConfig {
                max_epsilon: Some(60.0),
                ..adaptive(0.5, 0.3)
            },
            false,
        )
        .unwrap();
        let long = || vec![delta(&[30.0, 40.0]), delta(&[0.0, 20.0])];
        server.release_updates(long(), 2, None).unwrap();
        assert!(server.clipping_norm() > 1.0); // every update was clipped: C grew
        loop {
            let (spent, norm) = (server.epsilon(), server.clipping_norm());
            match server.release_updates(long(), 2, None) {
                Ok(_) => continue,
                Err(Error::BudgetExhausted { .. }) => {}
                Err(e) => panic!("{e}"),
            }
            assert_eq!((server.epsilon(), server.clipping_norm()), (spent, norm));
            break;
        }
        let (spent, norm) = (server.epsilon(), server.clipping_norm());
        assert!(server.release_updates(long(), 2, None).is_err());
        assert_eq!((server.epsilon(), server.clipping_norm()), (spent, norm));
    }
}
