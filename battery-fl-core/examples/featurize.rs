//! Featurize cell files into `.npy` tensors of shape (6, C, D), float32.
//!
//! ```text
//! cargo run --release --example featurize -- [--threads N] [--cycles C] [--dim D] --out DIR CELL_FILE...
//! ```
//!
//! Writes `DIR/<cell_id>.npy` for every input (a file given twice is featurized twice and
//! written twice) and ends with `featurized K cells in S s`, where S is the wall time of
//! featurization alone (loading and writing excluded), on a rayon pool of N threads
//! (default: all cores).
//!
//! Cells are processed in groups of 4 x N: each group is featurized in parallel with
//! [`Featurizer::transform_into`] into reused output buffers, then written. Memory stays
//! bounded (4 x N tensors, not K), and only the first group pays the page faults of fresh
//! output memory. S sums the featurization spans (buffer allocation included; loading and
//! writing excluded).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use battery_fl_core::data::load_cell;
use battery_fl_core::features::{Featurizer, FeaturizerConfig};
use clap::builder::RangedU64ValueParser;
use clap::Parser;
use rayon::prelude::*;

/// Featurize cell files into `.npy` tensors of shape (6, C, D), float32.
#[derive(Debug, Parser)]
#[command(args_override_self = true)]
struct Args {
    /// Threads of the featurization pool (default: all cores).
    #[arg(long, value_name = "N", value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    threads: Option<usize>,
    /// Cycles C per cell (rows of each tensor).
    #[arg(
        long,
        value_name = "C",
        default_value_t = FeaturizerConfig::default().cycles,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..)
    )]
    cycles: usize,
    /// Interpolation points D per cycle (columns of each tensor).
    #[arg(
        long,
        value_name = "D",
        default_value_t = FeaturizerConfig::default().interp_dim,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..)
    )]
    dim: usize,
    /// Output directory, created if missing: one `<cell_id>.npy` per input.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Cell files to featurize (a file given twice is featurized and written twice).
    #[arg(value_name = "CELL_FILE", required = true)]
    files: Vec<PathBuf>,
}

/// Write a float32 little-endian C-order array in npy format version 1.0.
fn write_npy(path: &Path, shape: [usize; 3], data: &[f32]) -> Result<()> {
    let dict = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}, {}), }}",
        shape[0], shape[1], shape[2]
    );
    // magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of
    // 64 bytes and terminated by a newline
    let unpadded = 10 + dict.len() + 1;
    let header_len = dict.len() + 1 + (64 - unpadded % 64) % 64;
    let header_len_u16 = u16::try_from(header_len).context("npy header too long")?;
    let mut bytes = Vec::with_capacity(10 + header_len + 4 * data.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&header_len_u16.to_le_bytes());
    bytes.extend_from_slice(dict.as_bytes());
    bytes.resize(10 + header_len - 1, b' ');
    bytes.push(b'\n');
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let mut f =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(&bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn run(args: Args) -> Result<()> {
    let featurizer = Featurizer::new(
        FeaturizerConfig::default()
            .with_cycles(args.cycles)
            .with_interp_dim(args.dim),
    )?;
    let mut builder = rayon::ThreadPoolBuilder::new();
    if let Some(n) = args.threads {
        builder = builder.num_threads(n);
    }
    let pool = builder.build().context("building the thread pool")?;

    let cells = args
        .files
        .iter()
        .map(|p| load_cell(p).with_context(|| format!("loading {}", p.display())))
        .collect::<Result<Vec<_>>>()?;

    let shape = featurizer.output_shape();
    let per_cell: usize = shape.iter().product();
    let group = 4 * pool.current_num_threads();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    let start = Instant::now();
    let mut buffers: Vec<Vec<f32>> = (0..group.min(cells.len()))
        .map(|_| vec![0.0f32; per_cell])
        .collect();
    let mut seconds = start.elapsed().as_secs_f64();
    for cells in cells.chunks(group) {
        let start = Instant::now();
        pool.install(|| {
            buffers
                .par_iter_mut()
                .zip(cells.par_iter())
                .try_for_each(|(out, cell)| featurizer.transform_into(cell, out))
        })?;
        seconds += start.elapsed().as_secs_f64();
        for (cell, x) in cells.iter().zip(&buffers) {
            write_npy(&args.out.join(format!("{}.npy", cell.id())), shape, x)?;
        }
    }
    println!("featurized {} cells in {seconds:.4} s", cells.len());
    Ok(())
}

fn main() -> std::process::ExitCode {
    // bad arguments: clap's message, exit code 2
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("featurize: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
