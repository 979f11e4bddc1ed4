//! `evsim bench`: simulated records per second, end to end, in a release build.
//!
//! A record counts once it has been produced, delivered to a consumer, processed by the listener
//! and its offset committed: the throughput is records consumed per second of wall time. Two
//! figures are reported: the simulation alone, and the whole run (simulation, every checker and
//! the history hash), which is what `evsim run` costs per seed.

use crate::{EXIT_BAD_INPUT, EXIT_HELD, EXIT_VIOLATED};
use evsim_model::checkers::Invariant;
use evsim_sim::{World, run_scenario};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
#[command(
    after_help = "Build with --release for meaningful figures:\n  cargo run --release -- bench scenarios/order-basic.toml --orders 10000\n  cargo run --release -- bench scenarios/order-basic.toml --orders 1000000 --repeat 3\n  cargo run --release -- bench scenarios/order-failover-acks-all.toml                   # with faults\n  cargo run --release -- bench scenarios/order-failover-acks-all.toml --without-faults  # its baseline\n  cargo run --release -- bench scenarios/order-workflow.toml --set workflow.params.stock_per_product=30000 --set workflow.params.users=10000  # order-basic's bench, as a workflow"
)]
pub struct BenchArgs {
    /// Scenario to measure.
    #[arg(default_value = "scenarios/order-basic.toml")]
    scenario: PathBuf,
    /// Requests (orders, coupon requests, a workflow's requests) to simulate: the workload runs
    /// for requests / rate seconds of simulated time (10,000 is order-basic as written), at the
    /// sum of the rates of every request stream. The compiled-in workload's users and stock grow
    /// with it (so that orders keep committing); a workflow's parameters stay as the scenario
    /// binds them (grow them with --set).
    #[arg(long, default_value_t = 10_000)]
    orders: u64,
    /// Change a setting before measuring, as `evsim sweep --set` does (repeatable):
    /// `--set workflow.params.stock_per_product=30000`.
    #[arg(long, value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Repetitions; the best and the median are reported.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Remove the scenario's faults ([[faults]] and [swarm]) first: the fault-free baseline of
    /// the same cluster and workload, to compare a fault scenario against.
    #[arg(long)]
    without_faults: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct BenchJson {
    scenario: String,
    /// Scheduled faults in the measured runs (0 with --without-faults).
    faults: usize,
    orders: u64,
    records: u64,
    history_entries: usize,
    sim_seconds_best: f64,
    sim_seconds_median: f64,
    sim_records_per_sec_best: f64,
    sim_records_per_sec_median: f64,
    full_run_seconds_best: f64,
    full_run_seconds_median: f64,
    full_run_records_per_sec_best: f64,
    all_invariants_held: bool,
}

fn best_median(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2])
}

pub fn bench(args: BenchArgs) -> u8 {
    let (name, source) = match crate::read_text(&args.scenario, "scenario") {
        Ok(read) => read,
        Err(code) => return code,
    };
    let mut scenario = match evsim_sim::files::parse_scenario(&name, &source) {
        Ok(s) => s,
        Err(e) => return crate::bad_input(e),
    };
    if !args.set.is_empty() {
        // The same text with the settings changed.
        let changed = args
            .set
            .iter()
            .map(|s| evsim_reports::vary::parse_set(s))
            .collect::<Result<Vec<_>, _>>()
            .and_then(|sets| evsim_reports::vary::Base::new(&name, &source, &sets)?.scenario(&[], &[], "--set"));
        scenario = match changed {
            Ok(s) => s,
            Err(e) => {
                crate::report_error(e);
                return EXIT_BAD_INPUT;
            }
        };
    }
    let faults = if args.without_faults {
        scenario.faults.clear();
        scenario.swarm = None;
        0
    } else {
        scenario.faults.len()
    };
    let max = evsim_model::scenario::MAX_REQUESTS_PER_RUN;
    if args.orders == 0 || args.repeat == 0 || args.orders > max {
        crate::report_error(format!("--orders must be from 1 to {max} and --repeat at least 1"));
        return EXIT_BAD_INPUT;
    }
    // Keep the scenario's rates; stretch the workload to the requested number of requests.
    let w = &scenario.workload;
    // A workflow's request types that arrive at their own rate (follow-ups come after them).
    let arriving = scenario.workflow.iter().flat_map(|wf| &wf.requests).filter(|r| r.follows.is_none());
    let rate =
        w.rate_per_sec + w.coupon_rate_per_sec + w.queue_rate_per_sec + arriving.map(|r| r.rate_per_sec).sum::<f64>();
    if rate <= 0.0 {
        crate::report_error(
            "the scenario's workload sends no requests (rate_per_sec, coupon_rate_per_sec and queue_rate_per_sec are 0, \
             and it has no workflow requests)",
        );
        return EXIT_BAD_INPUT;
    }
    let duration_ms = ((args.orders as f64 / rate) * 1_000.0).ceil() as u64;
    scenario.run.duration_ms = duration_ms.max(1);
    // Users scale with the run so that coupon requests are not all refused as repeats.
    scenario.workload.users = scenario.workload.users.max(args.orders.min(u64::from(u32::MAX)) as u32);
    // Stock scales with the run so that orders keep flowing rather than being rejected.
    scenario.workload.stock_per_product =
        scenario.workload.stock_per_product.max((args.orders * u64::from(scenario.workload.quantity_max)) as i64);

    let mut sim = Vec::new();
    let mut full = Vec::new();
    let mut records = 0;
    let mut entries = 0;
    let mut held = true;
    for _ in 0..args.repeat {
        let t = Instant::now();
        let (history, stats) = World::new(&scenario, args.seed).run();
        sim.push(t.elapsed().as_secs_f64());
        records = stats.records_consumed;
        entries = history.entries.len();
        drop(history);

        let t = Instant::now();
        let outcome = run_scenario(&scenario, args.seed);
        full.push(t.elapsed().as_secs_f64());
        held = outcome.passed();
        drop(outcome);
    }
    let (sim_best, sim_median) = best_median(sim);
    let (full_best, full_median) = best_median(full);
    let r = BenchJson {
        scenario: scenario.name.clone(),
        faults,
        orders: args.orders,
        records,
        history_entries: entries,
        sim_seconds_best: sim_best,
        sim_seconds_median: sim_median,
        sim_records_per_sec_best: records as f64 / sim_best,
        sim_records_per_sec_median: records as f64 / sim_median,
        full_run_seconds_best: full_best,
        full_run_seconds_median: full_median,
        full_run_records_per_sec_best: records as f64 / full_best,
        all_invariants_held: held,
    };
    if args.json {
        if let Err(code) = crate::print_json(&r) {
            return code;
        }
    } else {
        if cfg!(debug_assertions) {
            println!("warning: debug build; use `cargo run --release -- bench` for real figures");
        }
        println!(
            "scenario {}: {} requests, {} records end to end, {} history entries, {} scheduled fault(s)",
            r.scenario, r.orders, r.records, r.history_entries, r.faults
        );
        println!(
            "simulation:         best {:.4} s ({:.0} records/s), median {:.4} s ({:.0} records/s)",
            r.sim_seconds_best, r.sim_records_per_sec_best, r.sim_seconds_median, r.sim_records_per_sec_median
        );
        println!(
            "full run (+{} checkers, hash): best {:.4} s ({:.0} records/s), median {:.4} s",
            Invariant::ALL.len(),
            r.full_run_seconds_best,
            r.full_run_records_per_sec_best,
            r.full_run_seconds_median
        );
    }
    if held { EXIT_HELD } else { EXIT_VIOLATED }
}
