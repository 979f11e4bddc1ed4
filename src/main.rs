//! `evsim`: the command line. Thin glue over `evsim-model` (scenarios, checkers) and `evsim-sim`
//! (the deterministic simulator).

mod bench;
mod check;
mod real;
mod report;
mod run;
mod sweep;
mod workflow;

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
(or a run moved no records, or a planned fault never fired); 2 bad input or environment.\n\nStart with:\n  evsim run scenarios/order-basic.toml\n  evsim run scenarios/order-basic.toml --seeds 100\n  evsim run scenarios/order-basic.toml --seed 7 --json\n  evsim run scenarios/order-failover-acks1.toml      # faults from the scenario's schedule\n  evsim check scenarios/order-acks1-search.toml      # search fault schedules, shrink a failure\n  evsim sweep scenarios/coupon-seed003.toml --vary workload.coupons=1,10,100 --seeds 20\n  evsim report scenarios/order-failover-acks1.toml --out out/failover   # HTML, Markdown, charts\n  evsim workflow scenarios/workflows/order.toml      # compile a workflow file (the workflow language)"
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
    /// Run a scenario against real Kafka (Apache Kafka started here, librdkafka's mock cluster, or yours)
    /// and compare it with the simulator.
    Real(real::RealArgs),
    /// Run the cartesian product of varied settings (any scenario key), N seeds each, and
    /// compare them.
    Sweep(sweep::SweepArgs),
    /// Write a design-review report (HTML, Markdown, JSON, charts) of a scenario or a sweep.
    Report(report::ReportArgs),
    /// Measure simulated records per second end to end (produce, deliver, process, commit).
    Bench(bench::BenchArgs),
    /// Compile a workflow file (the workflow language) and show what it declares, or where it
    /// is wrong.
    Workflow(workflow::WorkflowArgs),
}

/// Whether the command was asked for `--json`: errors (exit 2) are then also printed on stdout,
/// as `{"error": "...", "exit_code": 2}`.
static JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The first error reported, for the JSON error object.
static ERROR: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Tell the user about an error that makes the command exit 2: on stderr, and kept for the JSON
/// error object with `--json`.
pub fn report_error(message: impl std::fmt::Display) {
    let message = message.to_string();
    eprintln!("error: {message}");
    let mut first = ERROR.lock().unwrap_or_else(|e| e.into_inner());
    first.get_or_insert(message);
}

/// The event budget of one run: `MAX_EVENTS_PER_RUN`, or less with `EVSIM_EVENT_BUDGET` (a
/// tighter limit for fuzzing and CI; it cannot raise the budget).
pub fn event_budget() -> u64 {
    std::env::var("EVSIM_EVENT_BUDGET").ok().and_then(|v| v.parse().ok()).unwrap_or(u64::MAX)
}

/// `report_error`, then the exit code for bad input or environment.
pub fn bad_input(message: impl std::fmt::Display) -> u8 {
    report_error(message);
    EXIT_BAD_INPUT
}

/// With `--json`, an exit 2 prints its error on stdout too (nothing else went there).
fn json_error(code: u8) {
    if code == EXIT_BAD_INPUT && JSON.load(std::sync::atomic::Ordering::Relaxed) {
        let message = ERROR.lock().unwrap_or_else(|e| e.into_inner()).take();
        let message = message.unwrap_or_else(|| "bad input or environment (see stderr)".to_string());
        println!("{}", serde_json::json!({ "error": message, "exit_code": code }));
    }
}

fn main() -> ExitCode {
    JSON.store(std::env::args_os().any(|a| a == "--json"), std::sync::atomic::Ordering::Relaxed);
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version: not an error.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            let first =
                e.to_string().lines().next().unwrap_or("bad arguments").trim_start_matches("error: ").to_string();
            ERROR.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(first);
            json_error(EXIT_BAD_INPUT);
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
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
        Command::Workflow(args) => workflow::workflow(args),
    };
    json_error(code);
    ExitCode::from(code)
}

/// Print `value` as pretty JSON on stdout; on failure print the error and return the exit code.
pub fn print_json(value: &impl serde::Serialize) -> Result<(), u8> {
    match serde_json::to_string_pretty(value) {
        Ok(s) => {
            println!("{s}");
            Ok(())
        }
        Err(e) => Err(bad_input(format!("cannot render JSON: {e}"))),
    }
}

/// Read a text file (`what` names it in errors): its name and text, or the exit code after
/// printing where the first byte that is not UTF-8 stands.
pub fn read_text(path: &std::path::Path, what: &str) -> Result<(String, String), u8> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| bad_input(format!("cannot read {what} {name}: {e}")))?;
    match String::from_utf8(bytes) {
        Ok(s) => Ok((name, s)),
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let text = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
            let (line, column) = evsim_model::scenario::line_col(&text, valid);
            Err(bad_input(format!(
                "{name}:{line}:{column}: this byte is not UTF-8 (byte {valid} of the file); expected a UTF-8 text file"
            )))
        }
    }
}

/// Read and parse a scenario file; on failure print the error and return the exit code.
pub fn load_scenario(path: &std::path::Path) -> Result<evsim_model::scenario::Scenario, u8> {
    let (name, source) = read_text(path, "scenario")?;
    evsim_sim::files::parse_scenario(&name, &source).map_err(bad_input)
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
