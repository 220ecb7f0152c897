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

use anyhow::{bail, Context, Result};
use battery_fl_core::dp::RdpAccountant;

const USAGE: &str =
    "usage: dp_epsilon --noise-multiplier Z --sample-rate Q --rounds T --delta D [--rdp]
  --noise-multiplier Z   noise std / clipping norm, > 0
  --sample-rate Q        probability that a client takes part in a round, in [0, 1]
  --rounds T             number of rounds (integer >= 0)
  --delta D              target delta, in (0, 1)
  --rdp                  also print `rdp ORDER VALUE` for every RDP order";

struct Args {
    noise_multiplier: f64,
    sample_rate: f64,
    rounds: u64,
    delta: f64,
    print_rdp: bool,
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Option<Args>> {
    let (mut z, mut q, mut t, mut d, mut print_rdp) = (None, None, None, None, false);
    while let Some(flag) = argv.next() {
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--rdp" => {
                print_rdp = true;
                continue;
            }
            _ => {}
        }
        let value = argv
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let float = |v: &str| {
            v.parse::<f64>()
                .with_context(|| format!("{flag}: `{v}` is not a number"))
        };
        match flag.as_str() {
            "--noise-multiplier" => z = Some(float(&value)?),
            "--sample-rate" => q = Some(float(&value)?),
            "--delta" => d = Some(float(&value)?),
            "--rounds" => {
                let rounds = value.parse::<u64>();
                t = Some(
                    rounds
                        .with_context(|| format!("--rounds: `{value}` is not an integer >= 0"))?,
                );
            }
            other => bail!("unknown argument `{other}`"),
        }
    }
    Ok(Some(Args {
        noise_multiplier: z.context("--noise-multiplier is required")?,
        sample_rate: q.context("--sample-rate is required")?,
        rounds: t.context("--rounds is required")?,
        delta: d.context("--delta is required")?,
        print_rdp,
    }))
}

fn run() -> Result<()> {
    let Some(args) = parse(std::env::args().skip(1))? else {
        println!("{USAGE}");
        return Ok(());
    };
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
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
