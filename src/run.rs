//! `evsim run`: simulate a scenario over one or many seeds and print the verdicts.

use crate::{EXIT_BAD_INPUT, EXIT_HELD, EXIT_VIOLATED, load_scenario};
use evsim_model::checkers::Invariant;
use evsim_model::scenario::Scenario;
use evsim_sim::{RunOutcome, Stats};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  evsim run scenarios/order-basic.toml                 # the scenario's own seed\n  evsim run scenarios/order-basic.toml --seed 42       # replay seed 42 exactly\n  evsim run scenarios/order-basic.toml --seeds 100     # seeds 1..=100, verdicts aggregated\n  evsim run scenarios/order-basic.toml --json          # one JSON object on stdout\n  evsim run scenarios/order-basic.toml --history h.json  # dump the run's history\n\nA seed is a complete bug report: the same scenario and seed give a byte-identical history \
(same history hash). The invariants a scenario claims decide the exit code; the others are \
printed as informational."
)]
pub struct RunArgs {
    /// Scenario file (TOML), e.g. scenarios/order-basic.toml.
    scenario: PathBuf,
    /// Run exactly this seed (default: the scenario's `run.seed`).
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run seeds 1..=N (N <= 100000) and aggregate the verdicts (in parallel; results do not
    /// depend on it).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    seeds: Option<u64>,
    /// Print one JSON object on stdout instead of tables.
    #[arg(long)]
    json: bool,
    /// Write the run's history as JSON to FILE (single seed only).
    #[arg(long, value_name = "FILE", conflicts_with = "seeds")]
    history: Option<PathBuf>,
    /// History entries to print per counterexample.
    #[arg(long, default_value_t = 12, value_name = "N")]
    story: usize,
    /// Worker threads for --seeds (default: the number of cores).
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Run every seed twice and compare the two histories' hashes; any difference is a
    /// determinism bug in evsim and fails the command (exit 1).
    #[arg(long)]
    verify_determinism: bool,
}

/// One counterexample, rendered.
#[derive(Clone, Debug, Serialize)]
struct Counterexample {
    seed: u64,
    message: String,
    entries: Vec<String>,
}

/// What is kept of one seed's run once its history is dropped.
pub(crate) struct SeedResult {
    seed: u64,
    hash: u64,
    /// With --verify-determinism: the second run's hash.
    rerun_hash: Option<u64>,
    stats: Stats,
    vacuous: Option<String>,
    /// Why the run stopped early (the event budget), if it did.
    stopped: Option<String>,
    /// Per invariant (in `Invariant::of(scenario)` order): violations and the first counterexample.
    verdicts: Vec<(usize, Option<Counterexample>)>,
}

pub(crate) fn summarise(o: &RunOutcome, story: usize) -> SeedResult {
    let verdicts = o
        .verdicts
        .iter()
        .map(|v| {
            let ce = v.violations.first().map(|viol| Counterexample {
                seed: o.seed,
                message: viol.message.clone(),
                entries: evsim_model::describe::story_entries(&o.history, &viol.entries)
                    .into_iter()
                    .take(story)
                    .map(|i| o.history.describe(i))
                    .collect(),
            });
            (v.violations.len(), ce)
        })
        .collect();
    SeedResult {
        seed: o.seed,
        hash: o.history_hash,
        rerun_hash: None,
        stats: o.stats.clone(),
        vacuous: o.vacuous.clone(),
        stopped: o.stopped.clone(),
        verdicts,
    }
}

/// Run one seed (twice with `verify`) and keep its summary; `progress` shows a single long run
/// advancing on a terminal.
fn run_seed(scenario: &Scenario, seed: u64, story: usize, verify: bool, progress: bool) -> (SeedResult, RunOutcome) {
    let end_ms = scenario.end_ms();
    let bar = if progress { ProgressBar::new(end_ms) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} simulated {pos}/{len} ms [{bar:30}] {elapsed} (eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let outcome =
        evsim_sim::run_scenario_observed(scenario, seed, crate::event_budget(), &mut |t| bar.set_position(t / 1_000));
    bar.finish_and_clear();
    let mut r = summarise(&outcome, story);
    if verify {
        r.rerun_hash =
            Some(evsim_sim::run_scenario_observed(scenario, seed, crate::event_budget(), &mut |_| {}).history_hash);
    }
    (r, outcome)
}

#[derive(Serialize)]
struct InvariantJson {
    name: &'static str,
    claimed: bool,
    held: u64,
    violated: u64,
    first_failing_seed: Option<u64>,
    counterexample: Option<Counterexample>,
}

#[derive(Serialize)]
pub(crate) struct RunJson {
    scenario: String,
    file: String,
    /// The workflow file the scenario runs (`[workflow] file`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    workflow: Option<String>,
    runs: u64,
    seeds: Vec<u64>,
    passed: bool,
    pub(crate) records_produced: u64,
    records_consumed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) history_hash: Option<String>,
    vacuous_runs: Vec<(u64, String)>,
    /// With --verify-determinism: seeds whose two runs differed (empty: all identical).
    #[serde(skip_serializing_if = "Option::is_none")]
    nondeterministic_seeds: Option<Vec<u64>>,
    invariants: Vec<InvariantJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stats: Option<Stats>,
}

pub fn run(args: RunArgs) -> u8 {
    let scenario = match load_scenario(&args.scenario) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let seeds: Vec<u64> = match (args.seed, args.seeds) {
        (Some(s), _) => vec![s],
        (None, Some(n)) => (1..=n).collect(),
        (None, None) => vec![scenario.run.seed],
    };
    let started = std::time::Instant::now();
    let results = if seeds.len() == 1 {
        let (result, outcome) = run_seed(&scenario, seeds[0], args.story, args.verify_determinism, !args.json);
        if let Some(path) = &args.history
            && let Err(e) = write_history(path, &outcome)
        {
            crate::report_error(format!("cannot write history to {}: {e}", path.display()));
            return EXIT_BAD_INPUT;
        }
        vec![result]
    } else {
        run_many(&scenario, &seeds, args.story, args.jobs, args.verify_determinism)
    };
    if let Some(r) = results.iter().find(|r| r.stopped.is_some()) {
        let why = r.stopped.as_deref().unwrap_or_default();
        return crate::bad_input(format!("{} seed {}: {why}", args.scenario.display(), r.seed));
    }
    let report = aggregate(&scenario, &args.scenario, &results);
    if args.json {
        if let Err(code) = crate::print_json(&report) {
            return code;
        }
    } else {
        print_table(&report);
        let wall = started.elapsed().as_secs_f64();
        let runs = results.len() * if args.verify_determinism { 2 } else { 1 };
        let simulated = scenario.end_ms() as f64 / 1_000.0 * runs as f64;
        println!(
            "speed: {simulated:.1} s of simulated cluster time in {wall:.3} s of wall time, {:.0}x faster than real time \
             (a real broker needs the scenario's own time; `evsim real` compares the two)",
            simulated / wall.max(1e-9)
        );
    }
    if report.passed { EXIT_HELD } else { EXIT_VIOLATED }
}

fn write_history(path: &std::path::Path, o: &RunOutcome) -> std::io::Result<()> {
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    serde_json::to_writer(file, &o.history).map_err(std::io::Error::other)
}

fn run_many(scenario: &Scenario, seeds: &[u64], story: usize, jobs: Option<usize>, verify: bool) -> Vec<SeedResult> {
    let jobs =
        jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).clamp(1, seeds.len());
    let bar = ProgressBar::new(seeds.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos}/{len} seeds [{bar:30}] {elapsed} (eta {eta}) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<SeedResult>> = Mutex::new(Vec::with_capacity(seeds.len()));
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&seed) = seeds.get(i) else { break };
                    let (r, outcome) = run_seed(scenario, seed, story, verify, false);
                    drop(outcome);
                    if !r
                        .verdicts
                        .iter()
                        .zip(Invariant::of(scenario))
                        .all(|((n, _), inv)| *n == 0 || !scenario.run.invariants.contains(&inv))
                    {
                        bar.set_message(format!("violation at seed {seed}"));
                    }
                    out.lock().expect("no worker panics").push(r);
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    let mut results = out.into_inner().expect("no worker panics");
    // Workers finish in any order; the report is in seed order, whatever the thread count.
    results.sort_by_key(|r| r.seed);
    results
}

pub(crate) fn aggregate(scenario: &Scenario, file: &std::path::Path, results: &[SeedResult]) -> RunJson {
    let mut invariants = Vec::new();
    for (k, inv) in Invariant::of(scenario).into_iter().enumerate() {
        let claimed = scenario.run.invariants.contains(&inv);
        let mut held = 0;
        let mut violated = 0;
        let mut first = None;
        let mut ce = None;
        for r in results {
            let (n, c) = &r.verdicts[k];
            if *n == 0 {
                held += 1;
            } else {
                violated += 1;
                if first.is_none() {
                    first = Some(r.seed);
                    ce = c.clone();
                }
            }
        }
        invariants.push(InvariantJson {
            name: inv.name(),
            claimed,
            held,
            violated,
            first_failing_seed: first,
            counterexample: ce,
        });
    }
    let vacuous_runs: Vec<(u64, String)> =
        results.iter().filter_map(|r| r.vacuous.clone().map(|v| (r.seed, v))).collect();
    let verified = results.iter().any(|r| r.rerun_hash.is_some());
    let nondeterministic_seeds: Option<Vec<u64>> = verified
        .then(|| results.iter().filter(|r| r.rerun_hash.is_some_and(|h| h != r.hash)).map(|r| r.seed).collect());
    let passed = vacuous_runs.is_empty()
        && invariants.iter().all(|i| !i.claimed || i.violated == 0)
        && nondeterministic_seeds.as_ref().is_none_or(|n| n.is_empty());
    let single = results.len() == 1;
    RunJson {
        scenario: scenario.name.clone(),
        file: file.display().to_string(),
        workflow: scenario.workflow_file.clone(),
        runs: results.len() as u64,
        seeds: results.iter().map(|r| r.seed).collect(),
        passed,
        records_produced: results.iter().map(|r| r.stats.records_produced).sum(),
        records_consumed: results.iter().map(|r| r.stats.records_consumed).sum(),
        history_hash: single.then(|| format!("{:016x}", results[0].hash)),
        vacuous_runs,
        nondeterministic_seeds,
        invariants,
        stats: single.then(|| results[0].stats.clone()),
    }
}

pub(crate) fn print_table(r: &RunJson) {
    let seeds = if r.runs == 1 {
        format!("seed {}", r.seeds[0])
    } else {
        format!("seeds {}..={}", r.seeds[0], r.seeds[r.seeds.len() - 1])
    };
    println!("scenario {} ({}), {} run(s), {seeds}", r.scenario, r.file, r.runs);
    if let Some(w) = &r.workflow {
        println!("workflow {w}");
    }
    println!("records produced {}, consumed {}", r.records_produced, r.records_consumed);
    if let Some(s) = &r.stats {
        // A workflow's requests are its own request types, not orders.
        let requests = if r.workflow.is_some() { "requests" } else { "orders requested" };
        println!(
            "{requests} {}, committed {}, rejected {}; offset commits ok {}, failed {}; rebalances {}; events {}",
            s.requests, s.orders_committed, s.orders_rejected, s.commits_ok, s.commits_failed, s.rebalances, s.events
        );
        if let Some(w) = &s.workflow {
            for (name, r) in &w.requests {
                println!(
                    "  {name}: requested {}, committed {}, rolled back {}, refused {}",
                    r.requested, r.committed, r.rolled_back, r.refused
                );
            }
            for (name, l) in &w.listeners {
                println!("  {name}: effects {}, records rejected {}", l.effects, l.rejected);
            }
        }
        if s.payments_committed + s.payments_rejected > 0 {
            println!(
                "payments committed {}, declined {}; orders cancelled by compensation {}",
                s.payments_committed, s.payments_rejected, s.orders_cancelled
            );
        }
    }
    if let Some(s) = &r.stats
        && !s.faults.is_empty()
    {
        println!(
            "faults ({} planned; {} segment(s) dropped, {} TCP retransmission(s), {} reconnection(s)):",
            s.faults.len(),
            s.messages_dropped,
            s.retransmissions,
            s.reconnects
        );
        for f in &s.faults {
            let what = if f.messages > 0 { format!(", {} message(s) touched", f.messages) } else { String::new() };
            let mark = if f.fired {
                "fired"
            } else if f.started {
                "NO EFFECT"
            } else {
                "NEVER STARTED"
            };
            println!("  {:<60} {mark}{what}", f.fault);
        }
    }
    if let Some(h) = &r.history_hash {
        println!("history hash {h}");
    }
    match &r.nondeterministic_seeds {
        Some(n) if n.is_empty() => println!("determinism: every seed ran twice with identical histories"),
        Some(n) => println!("determinism: BROKEN, seeds {n:?} gave different histories on a second run (an evsim bug)"),
        None => {}
    }
    println!();
    println!("{:<22} {:<13} {:>7} {:>9}  first failing seed", "invariant", "claimed", "held", "violated");
    for i in &r.invariants {
        let claimed = if i.claimed { "claimed" } else { "informational" };
        let first = i.first_failing_seed.map_or_else(|| "-".to_string(), |s| s.to_string());
        let mark = if i.violated == 0 {
            "ok"
        } else if i.claimed {
            "VIOLATED"
        } else {
            "violated"
        };
        println!("{:<22} {:<13} {:>7} {:>9}  {first:<8} {mark}", i.name, claimed, i.held, i.violated);
    }
    for (seed, why) in &r.vacuous_runs {
        println!("\nseed {seed} is vacuous: {why}; a run that moved nothing proves nothing");
    }
    for i in r.invariants.iter().filter(|i| i.violated > 0) {
        if let Some(ce) = &i.counterexample {
            println!("\n{} violated (seed {}): {}", i.name, ce.seed, ce.message);
            for e in &ce.entries {
                println!("  {e}");
            }
        }
    }
    println!();
    if r.passed {
        println!("verdict: every claimed invariant held");
    } else {
        println!("verdict: VIOLATED (replay with: evsim run {} --seed <seed>)", r.file);
    }
}
