//! The (ε, δ) of a federated run with the Gaussian mechanism: `T` rounds, noise multiplier
//! `z`, Poisson client-sampling rate `q`, computed by the RDP accountant.
//!
//! ```text
//! cargo run --release --example dp_epsilon -- --noise-multiplier 1.0 --sample-rate 1.0 --rounds 3 --delta 1e-5
//! ```
//!
//! The last line printed ends with the epsilon (`epsilon = 9.009959`); the line before it
//! names the optimal RDP order. `--rdp` also prints the accumulated RDP at every order.

use std::process::ExitCode;

use anyhow::Result;
use battery_fl_core::dp::RdpAccountant;
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

/// The (ε, δ) of a federated run with the Gaussian mechanism: `T` rounds, noise multiplier
/// `z`, Poisson client-sampling rate `q`, computed by the RDP accountant.
#[derive(Debug, Parser)]
#[command(
    name = "dp_epsilon",
    args_override_self = true,
    allow_negative_numbers = true
)]
struct Args {
    /// Noise multiplier z: noise std / clipping norm, > 0.
    #[arg(long, value_name = "Z")]
    noise_multiplier: f64,
    /// Probability q that a client takes part in a round, in [0, 1].
    #[arg(long, value_name = "Q")]
    sample_rate: f64,
    /// Number of rounds T (integer >= 0).
    #[arg(long, value_name = "T")]
    rounds: u64,
    /// Target delta, in (0, 1).
    #[arg(long, value_name = "D")]
    delta: f64,
    /// Also print `rdp ORDER VALUE` for every RDP order.
    #[arg(long = "rdp")]
    print_rdp: bool,
}

fn run(args: &Args) -> Result<()> {
    let mut accountant = RdpAccountant::new();
    accountant.step(args.noise_multiplier, args.sample_rate, args.rounds)?;
    let (epsilon, order) = accountant.epsilon_and_order(args.delta)?;
    println!(
        "noise_multiplier = {}, sample_rate = {}, rounds = {}, delta = {}",
        args.noise_multiplier, args.sample_rate, args.rounds, args.delta
    );
    if args.print_rdp {
        for (a, r) in accountant.orders().iter().zip(accountant.rdp()) {
            println!("rdp {a} {r:e}");
        }
    }
    println!("optimal order = {order}");
    println!("epsilon = {epsilon:.6}");
    Ok(())
}

fn main() -> ExitCode {
    // a bad or missing flag: clap's error and usage on stderr, exit 2 (--help: stdout, exit 0)
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        // the accountant's rejection of a value, in the same form
        Err(e) => Args::command()
            .error(ErrorKind::ValueValidation, format!("{e:#}"))
            .exit(),
    }
}
