//! Speed of the BatLiNet model on this machine: one training step (forward, backward,
//! AdamW) and inference throughput with K references, on random inputs.
//!
//! ```text
//! cargo run --release --features tch --example bench_model -- \
//!     [--channels 6] [--cycles 100] [--dim 1000] [--batch 32] [--refs 2] [--steps 3] \
//!     [--conv 32] [--infer-k 1,32,64] [--infer-cells 32] [--threads N] [--dp]
//! ```
//!
//! `--dp` also times a record-level DP-SGD step (`BatLiNet::train_private`: per-cell
//! gradients, clipping, noise) on the same batch, with public references drawn from other
//! random cells.
//! Compare with `scripts/bench_torch_step.py` (the same architecture in PyTorch).

use std::time::Instant;

use anyhow::Result;
use battery_fl_core::features::FeaturizerConfig;
use battery_fl_core::genome::GenomeFingerprint;
use battery_fl_core::model::{
    BatLiNet, BatLiNetConfig, Dataset, DpSgdConfig, LabelTransform, ReferenceSelection,
    TrainOptions,
};
use clap::Parser;
use rand::Rng;

/// Speed of the BatLiNet model on this machine: one training step (forward, backward,
/// AdamW) and inference throughput with K references, on random inputs.
#[derive(Debug, Parser)]
#[command(args_override_self = true)]
struct Args {
    /// Input channels of the random cells.
    #[arg(long, default_value_t = 6)]
    channels: usize,
    /// Cycles (rows) of each input.
    #[arg(long, default_value_t = 100)]
    cycles: usize,
    /// Points per cycle (columns) of each input.
    #[arg(long, default_value_t = 1000)]
    dim: usize,
    /// Training batch size (cells per step).
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// References per training cell.
    #[arg(long, default_value_t = 2)]
    refs: usize,
    /// Timed training steps (after one warm-up step).
    #[arg(long, default_value_t = 3)]
    steps: usize,
    /// Convolution channels C of the model.
    #[arg(long, default_value_t = 32)]
    conv: usize,
    /// Inference reference counts K to time, comma-separated.
    #[arg(
        long,
        value_name = "K,...",
        value_delimiter = ',',
        default_value = "1,32,64",
        action = clap::ArgAction::Set
    )]
    infer_k: Vec<usize>,
    /// Cells predicted per inference timing.
    #[arg(long, default_value_t = 32)]
    infer_cells: usize,
    /// Hold one `runtime::MemoryScope` over the whole program (a user's training loop in one
    /// scope) instead of the library's own scope per `train` / `predict` call.
    #[arg(long)]
    hold_memory: bool,
    /// libtorch intra-op threads (default: libtorch's choice).
    #[arg(long, value_name = "N")]
    threads: Option<i32>,
    /// Also time a DP-SGD step (per-cell gradients, clipping, noise) at the same shapes.
    #[arg(long)]
    dp: bool,
}

fn main() -> Result<()> {
    let Args {
        channels: c,
        cycles: h,
        dim: w,
        batch,
        refs,
        steps,
        conv,
        infer_k,
        infer_cells,
        hold_memory,
        threads,
        dp,
    } = Args::parse();
    let _memory = hold_memory.then(battery_fl_core::runtime::MemoryScope::enter);
    if let Some(n) = threads {
        tch::set_num_threads(n);
    }
    let n = batch
        .max(infer_cells)
        .max(infer_k.iter().copied().max().unwrap_or(1) + 1);
    let mut rng = battery_fl_core::rng::seeded(0);
    let fp = {
        let cells = battery_fl_core::data::synthetic::FleetConfig::default()
            .with_fleets(1)
            .with_cells_per_fleet(1)
            .generate()?;
        GenomeFingerprint::from_cell(&cells[0].cells[0])?
    };
    let block = c * h * w;
    let ds = |m: usize, rng: &mut battery_fl_core::rng::SeededRng, prefix: &str| {
        Dataset::new(
            (0..m).map(|i| format!("{prefix}{i}")).collect(),
            (0..m * block)
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect(),
            (0..m * block)
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect(),
            (0..m)
                .map(|_| Some(rng.random_range(200.0..2000.0)))
                .collect(),
            vec![fp.clone(); m],
            [c, h, w],
        )
    };
    let train = ds(batch, &mut rng, "c")?;
    let pool = ds(n, &mut rng, "p")?;
    let featurizer = FeaturizerConfig::default()
        .with_cycles(h)
        .with_interp_dim(w);
    let config = BatLiNetConfig::default()
        .with_input_channels((0..c).collect())
        .with_conv_channels(conv)
        .with_batch_size(batch)
        .with_train_references(refs)
        .with_progress(false);
    let mut model = BatLiNet::new(config, featurizer)?;
    model.set_label_transform(LabelTransform::fit(&train.require_labels()?)?);
    println!(
        "threads {}, input ({c}, {h}, {w}), C = {conv}, params {}",
        tch::get_num_threads(),
        model.params()?.num_scalars()
    );
    // one warm-up step, then timed steps (one epoch of `batch` cells = one step)
    model.train(
        &train,
        &TrainOptions {
            epochs: Some(1),
            ..Default::default()
        },
    )?;
    let t0 = Instant::now();
    model.train(
        &train,
        &TrainOptions {
            epochs: Some(steps),
            ..Default::default()
        },
    )?;
    let per_step = t0.elapsed().as_secs_f64() / steps as f64;
    println!("train step (batch {batch}, {refs} refs): {per_step:.3} s");
    if dp {
        // q = 1: every cell each step, one step per epoch; references from the other cells
        let config = DpSgdConfig {
            noise_multiplier: Some(1.0),
            epsilon: None,
            seed: Some(0),
            ..Default::default()
        };
        let epochs = |e| TrainOptions {
            epochs: Some(e),
            ..Default::default()
        };
        // DP-SGD reads the public cells' statistics
        model.set_public_statistics(&pool)?;
        model.train_private(&train, &pool, &config, &epochs(1))?;
        let t0 = Instant::now();
        model.train_private(&train, &pool, &config, &epochs(steps))?;
        let dp_step = t0.elapsed().as_secs_f64() / steps as f64;
        println!(
            "DP-SGD step (batch {batch}, {refs} refs): {dp_step:.3} s ({:.2}x the plain step)",
            dp_step / per_step
        );
    }
    let targets = pool.subset(&(0..infer_cells).collect::<Vec<_>>())?;
    for k in infer_k {
        let t0 = Instant::now();
        let preds = model.predict_with(&targets, &pool, k, ReferenceSelection::Random, 0)?;
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "inference K = {k}: {:.2} cells/s ({} cells in {secs:.2} s)",
            preds.len() as f64 / secs,
            preds.len()
        );
    }
    Ok(())
}
