//! `evsim`: the command line. Thin glue over `evsim-model` (scenarios, checkers) and `evsim-sim`
//! (the deterministic simulator).

mod bench;
mod check;
mod real;
mod report;
mod run;
mod sweep;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit code: every claimed invariant held.
pub const EXIT_HELD: u8 = 0;
/// Exit code: a claimed invariant was violated (or a run was vacuous).
pub const EXIT_VIOLATED: u8 = 1;
/// Exit code: bad input (scenario file, arguments) or environment.
pub const EXIT_BAD_INPUT: u8 = 2;

#[derive(Parser)]
#[command(
    name = "evsim",
    version,
    about = "Deterministic simulator and verification suite for Kafka-based event architectures",
    long_about = "evsim runs e-commerce event workflows (orders, payments, coupons, outbox, waiting \
queues) against a simulated Kafka cluster, deterministically: one seed is one exact, replayable \
run. Every run's history is judged by invariants (no oversell, per-key order, eventual \
processing, lost writes, duplicates, ...), so a design claim can be settled with evidence.",
    after_help = "Exit codes: 0 every claimed invariant held; 1 a claimed invariant was violated \
(or a run moved no records, or a planned fault never fired); 2 bad input or environment.\n\nStart with:\n  evsim run scenarios/order-basic.toml\n  evsim run scenarios/order-basic.toml --seeds 100\n  evsim run scenarios/order-basic.toml --seed 7 --json\n  evsim run scenarios/order-failover-acks1.toml      # faults from the scenario's schedule\n  evsim check scenarios/order-acks1-search.toml      # search fault schedules, shrink a failure\n  evsim sweep scenarios/coupon-seed003.toml --vary workload.coupons=1,10,100 --seeds 20\n  evsim report scenarios/order-failover-acks1.toml --out out/failover   # HTML, Markdown, charts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log what the simulator does (repeat for more detail); logs go to stderr.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate a scenario and judge every run with the invariants.
    Run(run::RunArgs),
    /// Search generated fault schedules for a counterexample and shrink it to the smallest story.
    Check(check::CheckArgs),
    /// Run a scenario against a real Kafka broker (tansu, librdkafka's mock cluster, or yours)
    /// and compare it with the simulator.
    Real(real::RealArgs),
    /// Run the cartesian product of varied settings (any scenario key), N seeds each, and
    /// compare them.
    Sweep(sweep::SweepArgs),
    /// Write a design-review report (HTML, Markdown, JSON, charts) of a scenario or a sweep.
    Report(report::ReportArgs),
    /// Measure simulated records per second end to end (produce, deliver, process, commit).
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("EVSIM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
    let code = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Check(args) => check::check(args),
        Command::Bench(args) => bench::bench(args),
        Command::Real(args) => real::real(args),
        Command::Sweep(args) => sweep::sweep(args),
        Command::Report(args) => report::report(args),
    };
    ExitCode::from(code)
}

/// Print `value` as pretty JSON on stdout; on failure print the error and return the exit code.
pub fn print_json(value: &impl serde::Serialize) -> Result<(), u8> {
    match serde_json::to_string_pretty(value) {
        Ok(s) => {
            println!("{s}");
            Ok(())
        }
        Err(e) => {
            eprintln!("error: cannot render JSON: {e}");
            Err(EXIT_BAD_INPUT)
        }
    }
}

/// Read and parse a scenario file; on failure print the error and return the exit code.
pub fn load_scenario(path: &std::path::Path) -> Result<evsim_model::scenario::Scenario, u8> {
    let name = path.display().to_string();
    let source = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot read scenario {name}: {e}");
            return Err(EXIT_BAD_INPUT);
        }
    };
    evsim_model::scenario::Scenario::parse(&name, &source).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_BAD_INPUT
    })
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
