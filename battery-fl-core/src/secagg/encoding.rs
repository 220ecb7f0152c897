//! Fixed-point encoding of weighted model deltas (secure-aggregation.md §3.4).
//!
//! Client u with delta x_u (the update w_local − w_global, **not** raw weights) and weight
//! w_u ≤ W sends `[q_u] ‖ Q_u` where q_u = round(w_u/W · T), d_u = q_u/T, and
//! Q_u = SR((clip(d_u·x_u, −c, c) + c) · T/(2c)) ∈ {0, …, T} with unbiased stochastic rounding
//! SR (E[SR(v)] = v). The server gets S = Σ_{u∈A} of these vectors (no wrap-around because
//! n·T < M), and decodes X = S_{1..}·2c/T − |A|·c ≈ Σ d_u·x_u (that is the (|A|−1)·c
//! correction after the per-vector −c) and the weighted mean X·T/q_tot with
//! q_tot = S_0 = Σ q_u.
//!
//! ```
//! use battery_fl_core::secagg::encoding::{decode, encode};
//! use battery_fl_core::secagg::SecAggConfig;
//!
//! let cfg = SecAggConfig::new(3);
//! let a = encode(&cfg, 0, &[0.5, -1.0], 100.0, &[1; 32])?;
//! let b = encode(&cfg, 1, &[1.5, 1.0], 300.0, &[2; 32])?;
//! let sum: Vec<u64> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
//! let out = decode(&cfg, &sum, 2)?;
//! // weighted mean (0.5*100 + 1.5*300)/400 = 1.25 and (-100 + 300)/400 = 0.5
//! assert!((out.mean[0] - 1.25).abs() < 1e-3 && (out.mean[1] - 0.5).abs() < 1e-3);
//! assert!((out.total_weight - 400.0).abs() < 1e-3);
//! # Ok::<(), battery_fl_core::Error>(())
//! ```

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;

use super::config::SecAggConfig;
use super::prg::CHUNK;
use super::ClientId;
use crate::error::{Error, Result, UpdateRejection};

const TWO_POW_M32: f64 = 1.0 / 4_294_967_296.0;

/// The decoded aggregate.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The weighted mean Σ q_u·x_u / Σ q_u of the survivors' deltas.
    pub mean: Vec<f32>,
    /// The survivors' total weight Σ q_u·W/T (their weights, quantized to multiples of W/T).
    pub total_weight: f64,
    /// The exact integer weight sum Σ q_u.
    pub quantized_weight: u64,
}

/// The integer weight q = round(w/W · T); rejects weights that are negative, non-finite or
/// above W (they could overflow the modulus).
pub fn quantize_weight(config: &SecAggConfig, client: ClientId, weight: f64) -> Result<u64> {
    if !(weight.is_finite() && weight >= 0.0 && weight <= config.max_weight) {
        return Err(Error::RejectedUpdate {
            client_id: client.to_string(),
            reason: UpdateRejection::InvalidWeight { weight },
        });
    }
    Ok(((weight / config.max_weight) * config.target_range as f64).round() as u64)
}

/// Encode a delta and its weight as `[q] ‖ Q` (length `delta.len() + 1`, entries in
/// {0, …, T}). `rounding_seed` keys the stochastic rounding (ChaCha20, one stream per
/// chunk), so the encoding is reproducible and parallel.
pub fn encode(
    config: &SecAggConfig,
    client: ClientId,
    delta: &[f32],
    weight: f64,
    rounding_seed: &[u8; 32],
) -> Result<Vec<u64>> {
    config.validate()?;
    if let Some(index) = delta.iter().position(|x| !x.is_finite()) {
        return Err(Error::RejectedUpdate {
            client_id: client.to_string(),
            reason: UpdateRejection::NonFinite { index },
        });
    }
    let q = quantize_weight(config, client, weight)?;
    let t = config.target_range as f64;
    let c = config.clipping_range;
    let d = q as f64 / t;
    let scale = t / (2.0 * c);
    let tmax = config.target_range;
    let mut out = vec![0u64; delta.len() + 1];
    out[0] = q;
    out[1..]
        .par_chunks_mut(CHUNK)
        .zip(delta.par_chunks(CHUNK))
        .enumerate()
        .for_each(|(j, (o, x))| {
            let mut rng = ChaCha20Rng::from_seed(*rounding_seed);
            rng.set_stream(j as u64);
            for (o, &x) in o.iter_mut().zip(x) {
                let v = ((d * f64::from(x)).clamp(-c, c) + c) * scale;
                let f = v.floor();
                // 32 uniform bits per coordinate: P(up) = ⌈(v − f)·2³²⌉/2³², bias < 2⁻³²
                let up = u64::from((rng.next_u32() as f64) * TWO_POW_M32 < v - f);
                *o = (f as u64 + up).min(tmax);
            }
        });
    Ok(out)
}

/// Check that an unmasked sum `[q_tot] ‖ R` can come from `num_survivors` well-formed
/// encodings: every entry, the weight prefix included, must lie in [0, |A|·T] (|A| =
/// `num_survivors`, T = `target_range`), since each encoding has entries in {0, …, T} and
/// n·T < M rules out wrap-around. An entry outside means some client sent an out-of-range
/// encoding (e.g. T·3 in one coordinate, or a negative value mod M), which would otherwise
/// shift the decoded mean silently: refused with [`Error::SecAgg`] at stage `decode`.
///
/// This is a sanity bound on the sum, not a per-client range proof: a client can still shift
/// a coordinate by less than the headroom |A|·T − R without being noticed.
pub fn check_range(config: &SecAggConfig, sum: &[u64], num_survivors: usize) -> Result<()> {
    let bound = (num_survivors as u128) * u128::from(config.target_range);
    let Some(&q_tot) = sum.first() else {
        return Err(Error::Shape {
            what: "encoded sum".into(),
            expected: vec![1],
            got: vec![0],
        });
    };
    if num_survivors == 0 || u128::from(q_tot) > bound {
        return Err(Error::SecAgg {
            stage: "decode".into(),
            reason: format!("weight sum {q_tot} impossible for {num_survivors} survivors"),
        });
    }
    if let Some(j) = sum
        .par_iter()
        .skip(1)
        .position_any(|&r| u128::from(r) > bound)
    {
        return Err(Error::SecAgg {
            stage: "decode".into(),
            reason: format!(
                "coordinate {j} of the sum is {} > |A|*T = {bound}: a client sent an \
                 out-of-range encoding",
                sum[j + 1]
            ),
        });
    }
    Ok(())
}

/// The weight prefix `q_tot` and the coordinates `R` of an unmasked sum, after
/// [`check_range`].
fn split_sum<'a>(
    config: &SecAggConfig,
    sum: &'a [u64],
    num_survivors: usize,
) -> Result<(u64, &'a [u64])> {
    check_range(config, sum, num_survivors)?;
    match sum.split_first() {
        Some((&q_tot, rest)) => Ok((q_tot, rest)),
        None => Err(Error::Shape {
            what: "encoded sum".into(),
            expected: vec![1],
            got: vec![0],
        }),
    }
}

/// Decode the unmasked sum `[q_tot] ‖ R` of `num_survivors` encoded vectors.
pub fn decode(config: &SecAggConfig, sum: &[u64], num_survivors: usize) -> Result<Decoded> {
    let (q_tot, rest) = split_sum(config, sum, num_survivors)?;
    if q_tot == 0 {
        return Err(Error::Aggregation {
            reason: "survivors' total weight is zero".into(),
        });
    }
    let t = config.target_range as f64;
    let c = config.clipping_range;
    let step = 2.0 * c / t;
    let offset = num_survivors as f64 * c;
    let factor = t / q_tot as f64;
    let mean = rest
        .par_iter()
        .map(|&r| ((r as f64 * step - offset) * factor) as f32)
        .collect();
    Ok(Decoded {
        mean,
        total_weight: q_tot as f64 * config.max_weight / t,
        quantized_weight: q_tot,
    })
}

/// Decode the unmasked sum `[q_tot] ‖ R` of `num_survivors` encoded vectors to the recovered
/// sum X = Σ d_u·x_u (before division by the total weight), where d_u = q_u/T. For clients
/// that all send weight W (`max_weight`), d_u = 1 and X is the plain sum of their (clipped,
/// quantized) deltas.
pub fn decode_sum(config: &SecAggConfig, sum: &[u64], num_survivors: usize) -> Result<Vec<f32>> {
    let (_, rest) = split_sum(config, sum, num_survivors)?;
    let step = 2.0 * config.clipping_range / config.target_range as f64;
    let offset = num_survivors as f64 * config.clipping_range;
    Ok(rest
        .par_iter()
        .map(|&r| (r as f64 * step - offset) as f32)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_range() -> Result<()> {
        let cfg = SecAggConfig::new(3)
            .with_target_range(1000)
            .with_clipping_range(1.0);
        // weight W: d = 1; +c -> T, -c -> 0, 0 -> T/2, beyond c clipped
        let e = encode(&cfg, 0, &[1.0, -1.0, 0.0, 50.0, -50.0], 1000.0, &[0; 32])?;
        assert_eq!(e, vec![1000, 1000, 0, 500, 1000, 0]);
        let e = encode(&cfg, 0, &[0.3; 1000], 700.0, &[1; 32])?;
        assert!(e[1..].iter().all(|&v| v <= 1000));
        assert_eq!(e[0], 700);
        Ok(())
    }

    #[test]
    fn stochastic_rounding_is_unbiased() -> Result<()> {
        let cfg = SecAggConfig::new(3)
            .with_target_range(10)
            .with_clipping_range(1.0);
        // v = (0.13 + 1) * 5 = 5.65: the mean of Q must approach 5.65
        let n = 200_000;
        let e = encode(&cfg, 0, &vec![0.13; n], 1000.0, &[5; 32])?;
        let mean = e[1..].iter().sum::<u64>() as f64 / n as f64;
        assert!(e[1..].iter().all(|&v| v == 5 || v == 6));
        assert!((mean - 5.65).abs() < 0.005, "mean {mean}");
        Ok(())
    }

    #[test]
    fn rejects_bad_inputs() {
        let cfg = SecAggConfig::new(3);
        assert!(matches!(
            encode(&cfg, 4, &[0.0, f32::NAN], 1.0, &[0; 32]),
            Err(Error::RejectedUpdate {
                reason: UpdateRejection::NonFinite { index: 1 },
                ..
            })
        ));
        for w in [-1.0, f64::INFINITY, 1000.5] {
            assert!(matches!(
                encode(&cfg, 4, &[0.0], w, &[0; 32]),
                Err(Error::RejectedUpdate {
                    reason: UpdateRejection::InvalidWeight { .. },
                    ..
                })
            ));
        }
        assert!(decode(&cfg, &[], 1).is_err());
        assert!(decode(&cfg, &[0, 5], 1).is_err());
        assert!(decode(&cfg, &[u64::from(u32::MAX), 5], 1).is_err());
    }

    #[test]
    fn out_of_range_coordinates_are_refused() -> Result<()> {
        let cfg = SecAggConfig::new(3).with_target_range(1000);
        // two survivors: every entry must be <= 2000
        assert!(decode(&cfg, &[1500, 0, 2000, 1000], 2).is_ok());
        for bad in [vec![1500, 2001, 5], vec![1500, 5, u64::from(u32::MAX)]] {
            match decode(&cfg, &bad, 2) {
                Err(Error::SecAgg { stage, reason }) => {
                    assert_eq!(stage, "decode");
                    assert!(reason.contains("out-of-range"), "{reason}");
                }
                other => panic!("expected a range error, got {other:?}"),
            }
            assert!(decode_sum(&cfg, &bad, 2).is_err());
        }
        Ok(())
    }

    #[test]
    fn decode_sum_recovers_the_plain_sum_at_full_weight() -> Result<()> {
        let cfg = SecAggConfig::new(3).with_max_weight(1.0);
        let xs = [[0.25f32, -1.5, 3.0], [1.0, 0.5, -2.0], [-0.75, 0.0, 0.125]];
        let mut sum = vec![0u64; 4];
        for (i, x) in xs.iter().enumerate() {
            let e = encode(&cfg, i as u64, x, 1.0, &[i as u8; 32])?;
            sum.iter_mut().zip(e).for_each(|(s, e)| *s += e);
        }
        let got = decode_sum(&cfg, &sum, 3)?;
        let step = 2.0 * cfg.clipping_range / cfg.target_range as f64;
        for (k, g) in got.iter().enumerate() {
            let want: f32 = xs.iter().map(|x| x[k]).sum();
            // each of the 3 encodings rounds by less than one step
            assert!(
                (f64::from(g - want)).abs() < 3.0 * step,
                "{k}: {g} vs {want}"
            );
        }
        // the weighted mean of equal weights is the sum over the survivors
        let mean = decode(&cfg, &sum, 3)?.mean;
        for (g, m) in got.iter().zip(&mean) {
            assert!((g / 3.0 - m).abs() < 1e-6);
        }
        assert!(decode_sum(&cfg, &[], 1).is_err());
        assert!(decode_sum(&cfg, &[u64::from(u32::MAX), 5], 1).is_err());
        Ok(())
    }

    #[test]
    fn reproducible() -> Result<()> {
        let cfg = SecAggConfig::new(3);
        let x: Vec<f32> = (0..20_000).map(|i| (i as f32 * 0.001).sin()).collect();
        assert_eq!(
            encode(&cfg, 0, &x, 10.0, &[7; 32])?,
            encode(&cfg, 0, &x, 10.0, &[7; 32])?
        );
        assert_ne!(
            encode(&cfg, 0, &x, 10.0, &[7; 32])?,
            encode(&cfg, 0, &x, 10.0, &[8; 32])?
        );
        Ok(())
    }
}
