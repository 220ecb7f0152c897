//! Secure sums of float64 statistics (label moments, input scales, the linear model's sums),
//! the one encoding the in-process federation and the Flower nodes share.
//!
//! Every party sends at the full weight W = 1, so the weight prefix of the unmasked sum must
//! be |A|·T. Each value v (|v| ≤ [`STATISTICS_BOUND`]) travels as an f32 high part and its f32
//! remainder (the protocol's inputs are f32); the sum is decoded from the integer sum (high
//! and low parts added as integers, then one conversion to f64), on the finest grid that
//! cannot wrap a 64-bit modulus: 2·bound/T with T = 2^min(52, 62 − bits(n)), about 4e-7 per
//! coordinate for fewer than 1024 parties (each party's stochastic rounding moves a value
//! by less than one grid step).
//!
//! ```
//! use battery_fl_core::secagg::statistics::{decode_statistics, encode_statistics, statistics_config};
//! use battery_fl_core::secagg::encoding::encode;
//!
//! let config = statistics_config(3, None, None)?;
//! let mut sum = vec![0u64; 5];
//! for (id, values) in [[1.25, -3.0e6], [0.5, 7.0], [0.0, 1.0]].iter().enumerate() {
//!     let encoded = encode(&config, id as u64, &encode_statistics(values)?, 1.0, &[9; 32])?;
//!     sum.iter_mut().zip(encoded).for_each(|(s, e)| *s = s.wrapping_add(e));
//! }
//! let total = decode_statistics(&config, &sum, 3)?;
//! assert!((total[0] - 1.75).abs() < 1e-5 && (total[1] + 2_999_992.0).abs() < 1e-5);
//! # Ok::<(), battery_fl_core::Error>(())
//! ```

use super::config::SecAggConfig;
use super::encoding::check_range;
use crate::error::{Error, Result};

/// Public bound on any summed statistic: values outside ±bound are refused, never clipped.
pub const STATISTICS_BOUND: f64 = 1e9;

/// The protocol settings of a secure sum over `parties` parties (`neighbours` and
/// `threshold` as in [`SecAggConfig`]; a neighbourhood of `parties` or more is the complete
/// graph).
///
/// # Errors
/// [`Error::InvalidConfig`] when the settings do not validate (e.g. fewer than three parties).
pub fn statistics_config(
    parties: usize,
    neighbours: Option<usize>,
    threshold: Option<usize>,
) -> Result<SecAggConfig> {
    // the finest grid that cannot wrap: parties * T < 2^63
    let bits = 62 - (usize::BITS - parties.leading_zeros());
    let config = SecAggConfig {
        num_clients: parties,
        neighbours: neighbours.filter(|&k| k < parties),
        threshold,
        clipping_range: STATISTICS_BOUND,
        target_range: 1u64 << bits.min(52),
        modulus_bits: 64,
        max_weight: 1.0,
    };
    config.validate()?;
    Ok(config)
}

/// What one party masks for `values`: the f32 high parts, then the f32 remainders
/// (`2 * values.len()` entries), sent at weight 1.
///
/// # Errors
/// [`Error::InvalidConfig`] (field `statistics`) for a value that is not finite or lies
/// outside ±[`STATISTICS_BOUND`].
pub fn encode_statistics(values: &[f64]) -> Result<Vec<f32>> {
    if let Some(x) = values
        .iter()
        .find(|x| !(x.is_finite() && x.abs() <= STATISTICS_BOUND))
    {
        return Err(Error::config(
            "statistics",
            format!("{x} is outside the public bound ±{STATISTICS_BOUND}"),
        ));
    }
    let high: Vec<f32> = values.iter().map(|&x| x as f32).collect();
    let low = values
        .iter()
        .zip(&high)
        .map(|(&x, &h)| (x - f64::from(h)) as f32);
    Ok(high.iter().copied().chain(low).collect())
}

/// The float64 sum of the statistics from the unmasked integer sum `[q_tot] ‖ R` of
/// `survivors` parties' [`encode_statistics`] vectors.
///
/// # Errors
/// [`Error::SecAgg`] (stage `decode`) when the sum is out of range or its weight prefix is
/// not `survivors · T` (some party sent another weight); [`Error::Shape`] for an odd number
/// of coordinates.
pub fn decode_statistics(config: &SecAggConfig, sum: &[u64], survivors: usize) -> Result<Vec<f64>> {
    check_range(config, sum, survivors)?;
    let (&q_tot, rest) = sum.split_first().ok_or_else(|| Error::Shape {
        what: "encoded sum".into(),
        expected: vec![1],
        got: vec![0],
    })?;
    if u128::from(q_tot) != survivors as u128 * u128::from(config.target_range) {
        return Err(Error::SecAgg {
            stage: "decode".into(),
            reason: format!(
                "the weights of a secure sum do not add up ({q_tot} for {survivors} parties)"
            ),
        });
    }
    if rest.len() % 2 != 0 {
        return Err(Error::Shape {
            what: "encoded statistics (high and low parts)".into(),
            expected: vec![rest.len() + 1],
            got: vec![rest.len()],
        });
    }
    // v = r·2c/T − |A|·c = (2r − |A|·T)·c/T: the high and low parts added as integers
    // first (exact in i128), then one conversion and one scaling
    let t = i128::from(config.target_range);
    let scale = config.clipping_range / config.target_range as f64;
    let centred = |r: u64| 2 * i128::from(r) - survivors as i128 * t;
    let (high, low) = rest.split_at(rest.len() / 2);
    Ok(high
        .iter()
        .zip(low)
        .map(|(&h, &l)| (centred(h) + centred(l)) as f64 * scale)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secagg::encoding::encode;

    fn summed(config: &SecAggConfig, vectors: &[Vec<f64>], weight: f64) -> Result<Vec<u64>> {
        let mut sum = vec![0u64; 2 * vectors[0].len() + 1];
        for (i, v) in vectors.iter().enumerate() {
            let e = encode(
                config,
                i as u64,
                &encode_statistics(v)?,
                weight,
                &[i as u8; 32],
            )?;
            for (s, x) in sum.iter_mut().zip(e) {
                *s = s.wrapping_add(x);
            }
        }
        Ok(sum)
    }

    #[test]
    fn sums_are_exact_to_the_grid_over_the_whole_range() -> Result<()> {
        let vectors = vec![
            vec![1e-3, 123_456.789_012, -9.99e8, 0.0],
            vec![2e-3, 0.000_001, 4.5e8, -1.0],
            vec![-5e-4, 7.0, 1.0, 3.25],
        ];
        let config = statistics_config(3, None, None)?;
        let total = decode_statistics(&config, &summed(&config, &vectors, 1.0)?, 3)?;
        let grid = 2.0 * STATISTICS_BOUND / config.target_range as f64;
        for (i, t) in total.iter().enumerate() {
            let exact: f64 = vectors.iter().map(|v| v[i]).sum();
            assert!((t - exact).abs() <= 2.0 * 3.0 * grid, "{i}: {t} vs {exact}");
        }
        assert!(grid < 5e-7);
        Ok(())
    }

    #[test]
    fn a_party_that_sends_another_weight_is_caught() -> Result<()> {
        let config = statistics_config(3, None, None)?;
        let sum = summed(&config, &[vec![1.0], vec![2.0], vec![3.0]], 0.5)?;
        assert!(matches!(
            decode_statistics(&config, &sum, 3),
            Err(Error::SecAgg { .. })
        ));
        Ok(())
    }

    #[test]
    fn bad_values_and_shapes_are_refused() -> Result<()> {
        for bad in [f64::NAN, f64::INFINITY, 2.0 * STATISTICS_BOUND] {
            assert!(matches!(
                encode_statistics(&[1.0, bad]),
                Err(Error::InvalidConfig { .. })
            ));
        }
        let config = statistics_config(3, None, None)?;
        let t = config.target_range;
        // an odd number of coordinates cannot be high and low parts
        assert!(matches!(
            decode_statistics(&config, &[2 * t, t, t, t], 2),
            Err(Error::Shape { .. })
        ));
        assert!(statistics_config(2, None, None).is_err());
        Ok(())
    }
}
