//! No panic reaches a user: every number of the reference scenario, replaced by an extreme value,
//! either parses into a scenario that runs to the end, or is refused with a located error.

mod common;

use evsim_model::scenario::Scenario;
use evsim_sim::run_scenario;

#[test]
fn extreme_values_are_refused_or_run_without_panicking() {
    let text = std::fs::read_to_string(common::root().join("scenarios/order-basic.toml")).unwrap();
    // Every integer literal on a `key = value` line (not in comments), one at a time.
    let mut sites = Vec::new();
    for (ln, line) in text.lines().enumerate() {
        let code = line.split('#').next().unwrap();
        if let Some(eq) = code.find('=') {
            let value = code[eq + 1..].trim();
            if !value.is_empty() && value.chars().all(|c| c.is_ascii_digit() || c == '_' || c == '-' || c == '.') {
                sites.push((ln, value.to_string()));
            }
        }
    }
    assert!(sites.len() >= 15, "found {} numeric settings", sites.len());
    let extremes =
        ["0", "-1", "1", "9223372036854775807", "18446744073709551615", "1e300", "0.0000001", "\"x\"", "true"];
    let mut refused = 0;
    let mut ran = 0;
    for (ln, value) in &sites {
        for x in extremes {
            let mutated: String = text
                .lines()
                .enumerate()
                .map(|(i, l)| if i == *ln { l.replacen(value.as_str(), x, 1) } else { l.to_string() })
                .collect::<Vec<_>>()
                .join("\n");
            match Scenario::parse("mutated.toml", &mutated) {
                Err(e) => {
                    assert!(e.line > 0 || !e.message.is_empty(), "an error says where or what: {e}");
                    refused += 1;
                }
                Ok(mut s) => {
                    // Keep the run small: what matters is that nothing overflows or hangs.
                    s.run.duration_ms = s.run.duration_ms.min(300);
                    s.run.quiet_period_ms = s.run.quiet_period_ms.min(2_000);
                    s.workload.rate_per_sec = s.workload.rate_per_sec.min(2_000.0);
                    if s.workload.products > 100_000 || s.workload.users == 0 {
                        continue;
                    }
                    let _ = run_scenario(&s, 1);
                    ran += 1;
                }
            }
        }
    }
    assert!(refused > 50 && ran > 20, "refused {refused}, ran {ran}");
}

/// Many brokers and partitions: the producer's sender looks only at partitions with queued
/// batches, so a wide cluster costs what its traffic costs.
#[test]
fn a_wide_cluster_runs() {
    let mut s = common::scenario("order-basic");
    s.brokers = 100;
    s.topics[0].partitions = 5_000;
    s.run.duration_ms = 500;
    s.run.quiet_period_ms = 5_000;
    let o = run_scenario(&s, 1);
    assert!(o.stats.records_consumed > 100, "{:?}", o.stats);
    assert!(o.passed(), "{:?}", o.verdicts.iter().find(|v| !v.violations.is_empty()));
}

#[test]
fn every_fault_kind_drawn_at_random_runs_to_the_end_on_every_workflow() {
    use evsim_model::scenario::{FaultKind, SwarmSpec};
    // Three replicated brokers, every workflow, and up to six faults of every kind per run, drawn
    // from the seed: each run ends (no panic, no overflow in a debug build) and reports every
    // planned fault as started.
    for name in ["payment-basic", "order-outbox", "coupon-seed003", "waiting-queue-global", "fanout-seed000"] {
        let mut s = common::scenario(name);
        s.brokers = 3;
        for t in &mut s.topics {
            t.replication_factor = 3;
        }
        s.run.duration_ms = s.run.duration_ms.min(4_000);
        s.run.quiet_period_ms = 8_000;
        s.swarm = Some(SwarmSpec {
            kinds: FaultKind::ALL.to_vec(),
            max_faults: 6,
            max_for_ms: 3_000,
            max_loss_rate: 0.5,
            targets: Vec::new(),
        });
        for seed in 1..=8 {
            let o = run_scenario(&s, seed);
            assert!(!o.stats.faults.is_empty(), "{name} seed {seed}: no fault drawn");
            assert!(o.stats.faults.iter().all(|f| f.started), "{name} seed {seed}: {:?}", o.stats.faults);
            assert!(o.stats.records_produced > 0, "{name} seed {seed}: nothing produced");
        }
    }
}
