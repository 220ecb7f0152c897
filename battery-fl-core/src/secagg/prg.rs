//! The mask PRG: ChaCha20 keyed with a full 256-bit seed, expanded in streaming fashion.
//!
//! Coordinate i of the mask of seed s, for modulus M = 2^b (b ∈ {32, 64}), is the i-th
//! little-endian b-bit word of the ChaCha20 keystream of key s and nonce
//! `⌊i / CHUNK⌋` (64-bit little endian, then four zero bytes), restarted at block 0 for each
//! chunk of [`CHUNK`] coordinates. Taking exactly b bits per coordinate makes every entry
//! exactly uniform on Z_M (no modulo bias, unlike Flower's `randint(0, M−1)`), and the
//! per-chunk nonce lets chunks be generated independently and in parallel, adding the
//! keystream into the output in place.
//!
//! ```
//! use battery_fl_core::secagg::prg::{apply_masks, mask_values, MaskTerm};
//!
//! let (a, b) = ([1u8; 32], [2u8; 32]);
//! let mut y = vec![5u64; 10];
//! // add PRG(a), subtract PRG(b), then undo both: back to the input
//! apply_masks(&mut y, &[MaskTerm::add(a), MaskTerm::sub(b)], 32)?;
//! apply_masks(&mut y, &[MaskTerm::sub(a), MaskTerm::add(b)], 32)?;
//! assert_eq!(y, vec![5u64; 10]);
//! assert!(mask_values(&a, 10, 32)?.iter().all(|&v| v < 1 << 32));
//! # Ok::<(), battery_fl_core::Error>(())
//! ```

use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;
use rayon::prelude::*;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Coordinates per ChaCha20 nonce (and per parallel work item).
pub const CHUNK: usize = 8192;

/// One mask to add or subtract: `sign · PRG(seed)`.
#[derive(Clone)]
pub struct MaskTerm {
    seed: Zeroizing<[u8; 32]>,
    negate: bool,
}

impl std::fmt::Debug for MaskTerm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaskTerm")
            .field("negate", &self.negate)
            .finish_non_exhaustive()
    }
}

impl MaskTerm {
    /// `+PRG(seed)`.
    pub fn add(seed: [u8; 32]) -> Self {
        MaskTerm {
            seed: Zeroizing::new(seed),
            negate: false,
        }
    }

    /// `−PRG(seed)`.
    pub fn sub(seed: [u8; 32]) -> Self {
        MaskTerm {
            seed: Zeroizing::new(seed),
            negate: true,
        }
    }

    /// `+PRG(seed)` if `positive`, else `−PRG(seed)`.
    pub fn signed(seed: [u8; 32], positive: bool) -> Self {
        MaskTerm {
            seed: Zeroizing::new(seed),
            negate: !positive,
        }
    }
}

fn bytes_per_value(bits: u32) -> Result<usize> {
    match bits {
        32 => Ok(4),
        64 => Ok(8),
        _ => Err(Error::config(
            "modulus_bits",
            format!("must be 32 or 64, got {bits}"),
        )),
    }
}

fn chunk_nonce(chunk: usize) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[..8].copy_from_slice(&(chunk as u64).to_le_bytes());
    nonce
}

/// Write the raw keystream of `seed` for chunk `chunk` into `buf`.
fn keystream(seed: &[u8; 32], chunk: usize, buf: &mut [u8]) -> Result<()> {
    let mut cipher = ChaCha20::new(&(*seed).into(), &chunk_nonce(chunk).into());
    cipher.try_write_keystream(buf).map_err(|_| Error::SecAgg {
        stage: "prg".into(),
        reason: "ChaCha20 keystream exhausted".into(),
    })
}

fn add_chunk(out: &mut [u64], buf: &[u8], negate: bool, bpv: usize) {
    match (bpv, negate) {
        (4, false) => out.iter_mut().zip(buf.chunks_exact(4)).for_each(|(o, c)| {
            *o = o.wrapping_add(u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        }),
        (4, true) => out.iter_mut().zip(buf.chunks_exact(4)).for_each(|(o, c)| {
            *o = o.wrapping_sub(u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        }),
        (_, negate) => out.iter_mut().zip(buf.chunks_exact(8)).for_each(|(o, c)| {
            let r = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            *o = if negate {
                o.wrapping_sub(r)
            } else {
                o.wrapping_add(r)
            }
        }),
    }
}

/// Add `Σ ± PRG(seed)` to `out`, modulo 2^`bits` (`bits` ∈ {32, 64}), chunk by chunk in
/// parallel. The entries of `out` are reduced mod 2^`bits` afterwards.
pub fn apply_masks(out: &mut [u64], terms: &[MaskTerm], bits: u32) -> Result<()> {
    let bpv = bytes_per_value(bits)?;
    let mask = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    out.par_chunks_mut(CHUNK).enumerate().try_for_each_init(
        || Zeroizing::new(vec![0u8; CHUNK * bpv]),
        |buf, (j, chunk)| -> Result<()> {
            let bytes = &mut buf[..chunk.len() * bpv];
            for term in terms {
                keystream(&term.seed, j, bytes)?;
                add_chunk(chunk, bytes, term.negate, bpv);
            }
            chunk.iter_mut().for_each(|v| *v &= mask);
            Ok(())
        },
    )
}

/// The first `len` mask values of `seed` (mod 2^`bits`), for tests and diagnostics.
pub fn mask_values(seed: &[u8; 32], len: usize, bits: u32) -> Result<Vec<u64>> {
    let mut out = vec![0u64; len];
    apply_masks(&mut out, &[MaskTerm::add(*seed)], bits)?;
    Ok(out)
}

/// Generate (and discard) the raw ChaCha20 keystream that `values` mask values of `bits`
/// bits need, chunk-parallel like [`apply_masks`]; returns a checksum byte so the work
/// cannot be optimised away. This is the reference cost the masking is benchmarked against.
pub fn raw_keystream(seed: &[u8; 32], values: usize, bits: u32) -> Result<u8> {
    let bpv = bytes_per_value(bits)?;
    let chunks = values.div_ceil(CHUNK);
    (0..chunks)
        .into_par_iter()
        .try_fold(
            || (vec![0u8; CHUNK * bpv], 0u8),
            |(mut buf, acc), j| -> Result<(Vec<u8>, u8)> {
                let len = (values - j * CHUNK).min(CHUNK) * bpv;
                keystream(seed, j, &mut buf[..len])?;
                let x = acc ^ buf[0];
                Ok((buf, x))
            },
        )
        .map(|r| r.map(|(_, x)| x))
        .try_reduce(|| 0, |a, b| Ok(a ^ b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_chunk_consistent() -> Result<()> {
        let s = [7u8; 32];
        let a = mask_values(&s, 3 * CHUNK + 17, 64)?;
        let b = mask_values(&s, 3 * CHUNK + 17, 64)?;
        assert_eq!(a, b);
        // a prefix is the prefix of the longer stream
        let c = mask_values(&s, CHUNK + 5, 64)?;
        assert_eq!(&a[..CHUNK + 5], &c[..]);
        // 32-bit values are the low halves of the 64-bit words' byte stream: chunks restart
        let d = mask_values(&s, 2 * CHUNK, 32)?;
        assert!(d.iter().all(|&v| v < (1 << 32)));
        assert_eq!(d[0], a[0] & 0xffff_ffff);
        Ok(())
    }

    #[test]
    fn matches_rfc8439_keystream() -> Result<()> {
        // RFC 8439 §2.4.2 style check: the first word equals ChaCha20 block 0 of key/nonce 0.
        let key = [0u8; 32];
        let v = mask_values(&key, 1, 32)?;
        // keystream block 0 for all-zero key and nonce starts 76 b8 e0 ad
        assert_eq!(
            v[0],
            u64::from(u32::from_le_bytes([0x76, 0xb8, 0xe0, 0xad]))
        );
        Ok(())
    }

    #[test]
    fn different_seeds_give_different_streams() -> Result<()> {
        let a = mask_values(&[1; 32], 64, 32)?;
        let b = mask_values(&[2; 32], 64, 32)?;
        assert_ne!(a, b);
        let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
        assert!(same <= 1);
        Ok(())
    }

    #[test]
    fn bits_are_balanced() -> Result<()> {
        // each of the 64 bit positions is set about half the time
        let v = mask_values(&[9; 32], 20_000, 64)?;
        for bit in 0..64 {
            let ones = v.iter().filter(|&&x| x >> bit & 1 == 1).count() as f64;
            let z = (ones - 10_000.0) / (20_000.0f64 * 0.25).sqrt();
            assert!(z.abs() < 5.0, "bit {bit}: z = {z}");
        }
        Ok(())
    }

    #[test]
    fn raw_keystream_runs() -> Result<()> {
        raw_keystream(&[1; 32], 3 * CHUNK + 1, 32)?;
        assert!(raw_keystream(&[1; 32], 10, 16).is_err());
        Ok(())
    }
}
