//! `evsim real`: run a scenario against a real Kafka broker through rdkafka, judge it with the
//! same checkers, and compare it with the simulator's run of the same seed.

use crate::run::{aggregate, print_table, summarise};
use crate::{EXIT_BAD_INPUT, EXIT_HELD, EXIT_VIOLATED, load_scenario};
use evsim_real::diff::{Difference, compare};
use evsim_real::{BrokerKind, BrokerOptions, RealFault, run_real};
use evsim_sim::{RunOutcome, run_scenario};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Copy, Clone, Debug, clap::ValueEnum)]
enum Broker {
    /// Apache Kafka 4.1.1 (from Maven Central, cached): a KRaft controller and the scenario's
    /// brokers, started and stopped here, in network namespaces when run as root.
    Kafka,
    /// librdkafka's mock cluster, in process: several brokers, fault controls, no install.
    Mock,
    /// A Kafka you run yourself, at --bootstrap (its topics must be new or empty).
    External,
}

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  evsim real scenarios/order-basic.toml                      # Apache Kafka, started and stopped here\n  evsim real scenarios/order-failover-acks1-real.toml        # three brokers, a broker killed for real\n  evsim real scenarios/order-basic.toml --broker mock        # librdkafka's mock cluster\n  evsim real scenarios/order-basic.toml --broker external --bootstrap localhost:9092\n  evsim real scenarios/order-basic.toml --json\n\nThe same service code runs on tokio with rdkafka (bundled librdkafka) doing the I/O; the run \
takes the scenario's wall-clock time (it ends early once everything is consumed and committed). \
On Apache Kafka every fault is performed or the run does not start: a broker killed (SIGKILL) \
and restarted, partitions and packet loss as iptables rules in the broker's network namespace, \
service and consumer crashes, consumer pauses, DB and platform outages. On the mock cluster, \
faults it cannot perform are reported as skipped. Afterwards \
the simulator runs the same scenario and seed, and every difference in key placement, final \
domain state and verdicts is listed.\n\nExit codes: 0 every claimed invariant held; 1 a claimed \
invariant was violated (or the run moved nothing); 2 bad input, or the broker cannot be started \
or reached (no Java, Kafka's jars neither cached nor downloadable, a node that does not come up, \
port in use, nothing at --bootstrap), or a fault the broker cannot perform.\n\n\
Environment: EVSIM_KAFKA_HOME (where Kafka's jars are cached), EVSIM_KAFKA_NET=loopback \
(no namespaces, no network faults), EVSIM_KEEP_KAFKA_LOGS=1 (keep the nodes' logs)."
)]
pub struct RealArgs {
    /// Scenario file (TOML), e.g. scenarios/order-basic.toml.
    scenario: PathBuf,
    /// Which broker to run against.
    #[arg(long, value_enum, default_value = "kafka")]
    broker: Broker,
    /// With --broker external: the bootstrap servers (host:port[,host:port...]).
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_bootstrap)]
    bootstrap: Option<String>,
    /// With --broker kafka on loopback (EVSIM_KAFKA_NET=loopback, or not root): the first
    /// broker's port (default: a free one).
    #[arg(long)]
    port: Option<u16>,
    /// The seed of the workload (default: the scenario's `run.seed`).
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON object on stdout instead of tables.
    #[arg(long)]
    json: bool,
    /// Write the real run's history as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    history: Option<PathBuf>,
    /// History entries to print per counterexample.
    #[arg(long, default_value_t = 12, value_name = "N")]
    story: usize,
    /// Skip the simulator's run of the same seed (no differences, no speed ratio).
    #[arg(long)]
    no_compare: bool,
}

#[derive(Serialize)]
struct SimulatorJson {
    wall_time_s: f64,
    /// How many times faster the simulator covered the same work.
    speedup: f64,
    records_produced: u64,
    differences: Vec<Difference>,
}

#[derive(Serialize)]
struct RealJson<'a> {
    target: &'static str,
    /// The whole command: broker start, groups forming, the run, broker stop.
    wall_time_s: f64,
    /// The run: workload start until everything was consumed and committed.
    run_time_s: f64,
    records_per_sec: f64,
    placement_mismatches: u64,
    faults: &'a [RealFault],
    notes: &'a [String],
    run: crate::run::RunJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    simulator: Option<SimulatorJson>,
}

pub fn real(args: RealArgs) -> u8 {
    let scenario = match load_scenario(&args.scenario) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let seed = args.seed.unwrap_or(scenario.run.seed);
    let kind = match args.broker {
        Broker::Kafka => BrokerKind::Kafka,
        Broker::Mock => BrokerKind::Mock,
        Broker::External => BrokerKind::External,
    };
    let options = BrokerOptions { bootstrap: args.bootstrap.clone(), port: args.port, ..BrokerOptions::new(kind) };
    if !args.json {
        eprintln!(
            "running {} against {} for up to {:.1} s of wall-clock time...",
            scenario.name,
            kind.name(),
            scenario.end_ms() as f64 / 1_000.0
        );
    }
    let real = match run_real(&scenario, seed, &options) {
        Ok(o) => o,
        Err(e) => {
            crate::report_error(format!("{e}"));
            return EXIT_BAD_INPUT;
        }
    };
    if let Some(path) = &args.history {
        let written = std::fs::File::create(path)
            .map_err(|e| e.to_string())
            .and_then(|f| serde_json::to_writer(std::io::BufWriter::new(f), &real.history).map_err(|e| e.to_string()));
        if let Err(e) = written {
            crate::report_error(format!("cannot write history to {}: {e}", path.display()));
            return EXIT_BAD_INPUT;
        }
    }
    let as_run = RunOutcome {
        seed,
        history_hash: real.history.hash(),
        history: real.history.clone(),
        stats: real.stats.clone(),
        verdicts: real.verdicts.clone(),
        vacuous: real.vacuous.clone(),
        stopped: None,
    };
    let mut run = aggregate(&scenario, &args.scenario, &[summarise(&as_run, args.story)]);
    // A real history is not reproducible: its hash names nothing.
    run.history_hash = None;
    let simulator = (!args.no_compare).then(|| {
        let started = Instant::now();
        let sim = run_scenario(&scenario, seed);
        let wall = started.elapsed().as_secs_f64();
        SimulatorJson {
            wall_time_s: wall,
            speedup: real.run_time.as_secs_f64() / wall.max(1e-9),
            records_produced: sim.stats.records_produced,
            differences: compare(&sim.history, &sim.verdicts, &real.history, &real.verdicts, kind.name()),
        }
    });
    let report = RealJson {
        target: kind.name(),
        wall_time_s: real.wall_time.as_secs_f64(),
        run_time_s: real.run_time.as_secs_f64(),
        records_per_sec: real.records_per_sec(),
        placement_mismatches: real.placement_mismatches,
        faults: &real.faults,
        notes: &real.notes,
        run,
        simulator,
    };
    if args.json {
        if let Err(code) = crate::print_json(&report) {
            return code;
        }
    } else {
        print_report(&report);
    }
    if real.passed() { EXIT_HELD } else { EXIT_VIOLATED }
}

fn print_report(r: &RealJson<'_>) {
    print_table(&r.run);
    println!();
    println!(
        "real run on {}: {:.1} s from the workload's start until all was consumed and committed \
         ({:.1} s with broker start and group formation), {} records acknowledged ({:.0} records/s)",
        r.target, r.run_time_s, r.wall_time_s, r.run.records_produced, r.records_per_sec
    );
    if r.placement_mismatches > 0 {
        println!(
            "PLACEMENT: librdkafka put {} record(s) on another partition than the scenario's partitioner says",
            r.placement_mismatches
        );
    }
    if !r.faults.is_empty() {
        println!("faults on {}:", r.target);
        for f in r.faults {
            match (&f.performed, &f.skipped) {
                (Some(how), _) => {
                    let mark = if f.fired { "performed" } else { "NO EFFECT" };
                    println!("  {:<50} {mark}: {how}", f.fault);
                }
                (None, Some(why)) => println!("  {:<50} SKIPPED: {why}", f.fault),
                (None, None) => println!("  {:<50} never started", f.fault),
            }
        }
    }
    for n in r.notes {
        println!("note: {n}");
    }
    if let Some(s) = &r.simulator {
        println!(
            "simulator: the same scenario and seed in {:.3} s, {:.0}x faster than the real run ({} records)",
            s.wall_time_s, s.speedup, s.records_produced
        );
        if s.differences.is_empty() {
            println!("simulator and {} agree on key placement, final domain state and every verdict", r.target);
        } else {
            println!("differences between the simulator and {}:", r.target);
            for d in &s.differences {
                println!("  [{}] {}", d.aspect, d.what);
            }
        }
    }
}

/// `--bootstrap`: one or more `host:port`, comma-separated, each with a host and a port from 1
/// to 65535; anything else is refused at once rather than after a connection timeout.
fn parse_bootstrap(s: &str) -> Result<String, String> {
    let expected = "expected host:port[,host:port...], e.g. localhost:9092";
    if s.trim().is_empty() {
        return Err(format!("the bootstrap servers are empty; {expected}"));
    }
    for server in s.split(',') {
        let server = server.trim();
        let Some((host, port)) = server.rsplit_once(':') else {
            return Err(format!("`{server}` has no port; {expected}"));
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.chars().any(char::is_whitespace) {
            return Err(format!("`{server}` has no host; {expected}"));
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(format!("`{server}`: the port `{port}` is not a number from 1 to 65535; {expected}")),
        }
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn bootstrap_servers_are_checked_at_once() {
        use super::parse_bootstrap as p;
        assert!(p("localhost:9092").is_ok());
        assert!(p("a:1,b:2").is_ok());
        assert!(p("[::1]:9092").is_ok());
        for bad in ["", " ", "garbage", "host:", ":9092", "host:0", "host:99999", "host:x"] {
            assert!(p(bad).is_err(), "{bad:?} accepted");
        }
    }
}
