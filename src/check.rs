//! `evsim check`: property-based search for a counterexample, shrunk to the smallest story and
//! written as a replayable scenario file.

use crate::{EXIT_BAD_INPUT, EXIT_HELD, EXIT_VIOLATED, load_scenario};
use evsim_model::describe::story_entries;
use evsim_sim::run_scenario;
use evsim_sim::search::{SearchResult, counterexample_toml, recovery, search, search_space};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(after_help = "The search draws fault schedules from the scenario's [swarm] table (or, without one, \
from every fault kind the scenario has targets for), together with a seed and a workload length per \
case. Each case runs on after its last fault ends for as long as recovery may take (the longest \
timeout recovery waits on, TCP's back-off and a reconnection, then the scenario's own quiet period), \
so liveness and the eventual-* invariants are judged only once recovery was possible. With --robust N \
a case fails only if it fails on N consecutive seeds, so that the counterexample does not rest on one \
exact timing (use it before replaying on Apache Kafka with `evsim real`). A case whose \
violations are all listed in the scenario's [[check.expected]] (known counterexamples, each with the \
Kafka behaviour behind it) is counted as expected and the search goes on. The first case that violates \
a claimed invariant otherwise is shrunk: fewer faults, shorter and earlier faults, a shorter workload \
(fewer records), as long as the same kind of failure remains. The shrunk case is written as a \
scenario file that `evsim run` replays exactly.\n\nExamples:\n  evsim check \
scenarios/order-acks1-search.toml --cases 64\n  evsim check scenarios/order-acks1-search.toml --seed 7 --out /tmp/ce.toml\n  evsim check my-design.toml --robust 3 --out ce.toml; evsim real ce.toml\n\n\
Exit codes: 0 no case violated a claimed invariant; 1 a counterexample was found; 2 bad input.")]
pub struct CheckArgs {
    /// Scenario file (TOML) to search.
    scenario: PathBuf,
    /// Generated cases to run before giving up.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    cases: u32,
    /// Seed of the search itself (the same seed searches the same cases).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Most shrinking steps after a failure.
    #[arg(long, default_value_t = 256, value_name = "N")]
    shrink_iters: u32,
    /// Where to write the counterexample scenario (default: <scenario name>-counterexample.toml).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// A case counts as a counterexample only if it violates the same invariant on N
    /// consecutive seeds (its own and the next N-1: other arrivals, jitter and loss draws of the
    /// same fault schedule). Use 3 or more for a counterexample to replay with `evsim real`: one
    /// that rests on one exact timing (a record acknowledged 0.2 ms before a partition) is left
    /// out and counted as fragile.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    robust: u32,
    /// History entries to print in the story.
    #[arg(long, default_value_t = 16, value_name = "N")]
    story: usize,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct ExpectedJson {
    invariants: Vec<&'static str>,
    faults: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    condition: Option<&'static str>,
    why: String,
    runs: u32,
}

#[derive(Serialize)]
struct CheckJson {
    scenario: String,
    cases: u32,
    runs: u64,
    found: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    invariant: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u64>,
    faults: Vec<String>,
    /// How long each case ran on after its last fault (at least), for recovery.
    recovery_ms: u64,
    /// The longest timeout recovery waits on, by its Kafka name, and its value.
    recovery_longest_timeout: (&'static str, u64),
    /// Per `[[check.expected]]` entry: its invariant, why, and the runs it covered.
    expected: Vec<ExpectedJson>,
    story: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    counterexample_file: Option<String>,
    /// Whether running the written file gave the same violation.
    #[serde(skip_serializing_if = "Option::is_none")]
    replayed: Option<bool>,
    /// `--robust`: the consecutive seeds a case must fail on.
    robust: u32,
    /// Cases that failed on their own seed but not on every one of the `robust` seeds.
    fragile: u32,
}

pub fn check(args: CheckArgs) -> u8 {
    let scenario = match load_scenario(&args.scenario) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let space = search_space(&scenario);
    let bar = if args.json { ProgressBar::hidden() } else { ProgressBar::new_spinner() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos} runs {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let kinds: Vec<&str> = space.kinds.iter().map(|k| k.name()).collect();
    bar.set_message(format!(
        "searching {} cases of up to {} faults ({})",
        args.cases,
        space.max_faults,
        kinds.join(", ")
    ));
    // The recovery of the longest fault the search can draw, to say how long cases run on.
    let longest = evsim_model::scenario::FaultSpec {
        kind: evsim_model::scenario::FaultKind::NetworkPartition,
        at_ms: 0,
        for_ms: Some(space.max_for_ms),
        target: None,
        peer: None,
        direction: evsim_model::scenario::Direction::Both,
        rate: 0.0,
        delay_ms: 0,
    };
    let recovery = recovery(&scenario, &[longest]);
    let result = match search(&scenario, args.cases, args.seed, args.shrink_iters, args.robust, &|| bar.inc(1)) {
        Ok(r) => r,
        Err(e) => {
            bar.finish_and_clear();
            crate::report_error(format!("{}: {e}", args.scenario.display()));
            return EXIT_BAD_INPUT;
        }
    };
    let runs = bar.position();
    bar.finish_and_clear();
    let file = args.scenario.display().to_string();
    let mut report = CheckJson {
        scenario: scenario.name.clone(),
        cases: args.cases,
        runs,
        found: false,
        invariant: None,
        message: None,
        seed: None,
        duration_ms: None,
        faults: Vec::new(),
        recovery_ms: recovery.ms,
        recovery_longest_timeout: recovery.longest_timeout,
        expected: Vec::new(),
        story: Vec::new(),
        counterexample_file: None,
        replayed: None,
        robust: args.robust,
        fragile: 0,
    };
    let expected_json = |runs: &[u32]| -> Vec<ExpectedJson> {
        scenario
            .check
            .expected
            .iter()
            .zip(runs)
            .map(|(e, &runs)| ExpectedJson {
                invariants: e.invariants.iter().map(|i| i.name()).collect(),
                faults: e.faults.iter().map(|k| k.name()).collect(),
                condition: e.condition.map(|c| c.name()),
                why: e.why.clone(),
                runs,
            })
            .collect()
    };
    let code = match result {
        SearchResult::Held { cases, expected, fragile } => {
            report.expected = expected_json(&expected);
            report.fragile = fragile;
            if !args.json {
                let seen: u32 = expected.iter().sum();
                let how = if seen == 0 {
                    "every claimed invariant held".to_string()
                } else {
                    "every claimed invariant held but for the expected counterexamples below".to_string()
                };
                println!("scenario {} ({file}): {cases} generated cases ({runs} runs), {how}", scenario.name);
                println!("fault kinds searched: {}", kinds.join(", "));
                print_recovery(&report);
                print_fragile(&report);
                print_expected(&report);
            }
            EXIT_HELD
        }
        SearchResult::Found { shrunk, invariant, outcome, expected, fragile } => {
            report.expected = expected_json(&expected);
            report.fragile = fragile;
            let violation = outcome
                .verdicts
                .iter()
                .find(|v| v.invariant == invariant)
                .and_then(|v| v.violations.first())
                .expect("a violated invariant has a violation");
            report.found = true;
            report.invariant = Some(invariant.name());
            report.message = Some(violation.message.clone());
            report.seed = Some(shrunk.seed);
            report.duration_ms = Some(shrunk.duration_ms);
            report.faults = shrunk.faults.iter().map(|f| f.describe()).collect();
            report.story = story_entries(&outcome.history, &violation.entries)
                .into_iter()
                .take(args.story)
                .map(|i| outcome.history.describe(i))
                .collect();
            let out =
                args.out.clone().unwrap_or_else(|| PathBuf::from(format!("{}-counterexample.toml", scenario.name)));
            let written = std::fs::read_to_string(&args.scenario)
                .map_err(|e| e.to_string())
                .and_then(|text| {
                    // The workflow file by an absolute path: the counterexample may be written elsewhere.
                    let workflow = match &scenario.workflow_file {
                        Some(f) => Some(
                            std::path::absolute(f)
                                .map_err(|e| format!("cannot resolve the workflow file {f}: {e}"))?
                                .display()
                                .to_string(),
                        ),
                        None => None,
                    };
                    counterexample_toml(&text, &file, &scenario, &shrunk, invariant, workflow.as_deref())
                })
                .and_then(|toml| std::fs::write(&out, &toml).map(|()| toml).map_err(|e| e.to_string()));
            match written {
                Ok(toml) => {
                    report.counterexample_file = Some(out.display().to_string());
                    // Replay the file as a user would: parse it and run its seed.
                    let replay = evsim_sim::files::parse_scenario(&out.display().to_string(), &toml)
                        .map(|s| {
                            let o = run_scenario(&s, s.run.seed);
                            o.history_hash == outcome.history_hash
                                && o.verdicts.iter().any(|v| v.invariant == invariant && !v.violations.is_empty())
                        })
                        .unwrap_or(false);
                    report.replayed = Some(replay);
                }
                Err(e) => {
                    crate::report_error(format!("cannot write the counterexample to {}: {e}", out.display()));
                    return EXIT_BAD_INPUT;
                }
            }
            if !args.json {
                print_found(&report, &file);
            }
            EXIT_VIOLATED
        }
    };
    if args.json {
        if let Err(code) = crate::print_json(&report) {
            return code;
        }
    }
    code
}

fn print_recovery(r: &CheckJson) {
    let (name, ms) = r.recovery_longest_timeout;
    println!(
        "each case ran on for at least {} ms after its last fault ended, for recovery (longest timeout: {name} = {ms} ms)",
        r.recovery_ms
    );
}

fn print_fragile(r: &CheckJson) {
    if r.fragile > 0 {
        println!(
            "fragile: {} case(s) violated a claim on their own seed but not on all {} consecutive seeds (--robust)",
            r.fragile, r.robust
        );
    }
}

fn print_expected(r: &CheckJson) {
    for e in r.expected.iter().filter(|e| e.runs > 0) {
        let mut when = e.faults.join(", ");
        if let Some(c) = e.condition {
            when = if when.is_empty() { c.to_string() } else { format!("{when}; {c}") };
        }
        println!("expected: {} under {when}, in {} run(s): {}", e.invariants.join(", "), e.runs, e.why);
    }
}

fn print_found(r: &CheckJson, file: &str) {
    println!("scenario {} ({file}): counterexample found after {} runs", r.scenario, r.runs);
    print_recovery(r);
    print_fragile(r);
    print_expected(r);
    if r.robust > 1 {
        println!("it fails on {} consecutive seeds from its own", r.robust);
    }
    println!("{} violated: {}", r.invariant.unwrap_or("?"), r.message.as_deref().unwrap_or(""));
    println!(
        "\nshrunk to {} fault(s), a {} ms workload, seed {}:",
        r.faults.len(),
        r.duration_ms.unwrap_or(0),
        r.seed.unwrap_or(0)
    );
    for f in &r.faults {
        println!("  {f}");
    }
    println!("\nthe story:");
    for e in &r.story {
        println!("  {e}");
    }
    if let Some(f) = &r.counterexample_file {
        let replay = if r.replayed == Some(true) {
            "replayed from the file: the same history and the same violation"
        } else {
            "WARNING: replaying the file did not give the same history (please report this evsim bug)"
        };
        println!("\ncounterexample written to {f}\n{replay}\nreplay it with: evsim run {f}");
    }
}
