//! Property-based search for counterexamples (`evsim check`): proptest generates fault
//! schedules (and seeds and run lengths) for a scenario, runs each case, and when a claimed
//! invariant fails, shrinks the case to the fewest faults, the fewest records and the shortest
//! time that still violate it.
//!
//! The search is deterministic: its own seed drives proptest's RNG (ChaCha), and every field of
//! proptest's configuration that it would otherwise read from `PROPTEST_*` environment
//! variables is set here.

use crate::run::{RunOutcome, run_scenario};
use evsim_model::checkers::Invariant;
use evsim_model::history::{NodeId, Op, TopicId, Tp};
use evsim_model::scenario::{Condition, Direction, FaultKind, FaultSpec, Scenario, SwarmSpec};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};
use std::collections::BTreeMap;

/// One generated case: a seed, how long the workload runs, and the fault schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    pub seed: u64,
    pub duration_ms: u64,
    pub faults: Vec<FaultSpec>,
}

impl Case {
    /// The scenario this case runs: the base with this seed, length and schedule (the base's
    /// own `[[faults]]` and `[swarm]` are replaced), running on after its last fault ends for
    /// as long as recovery may take (see [`recovery`]) before the verdicts are judged.
    pub fn scenario(&self, base: &Scenario) -> Scenario {
        let mut s = base.clone();
        s.run.seed = self.seed;
        s.run.duration_ms = self.duration_ms;
        s.faults = self.faults.clone();
        s.swarm = None;
        let last_end = self.faults.iter().map(|f| f.at_ms + f.for_ms.unwrap_or(0)).max().unwrap_or(0);
        let needed = (last_end + recovery(base, &self.faults).ms).saturating_sub(self.duration_ms);
        s.run.quiet_period_ms = s.run.quiet_period_ms.max(needed);
        s
    }
}

/// How long a run needs after its last fault ends before liveness and the eventual-*
/// invariants can be judged: the longest timeout recovery may wait on, plus TCP's back-off and a
/// reconnection after a network fault, plus the scenario's own quiet period (the time its design
/// takes to drain a backlog).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    pub ms: u64,
    /// The longest timeout, by its Kafka name.
    pub longest_timeout: (&'static str, u64),
}

/// The recovery time of `s` under `faults`.
pub fn recovery(s: &Scenario, faults: &[FaultSpec]) -> Recovery {
    let b = &s.broker;
    let mut timeouts: Vec<(&'static str, u64)> = vec![
        ("replica.lag.time.max.ms", b.replica_lag_time_max_ms),
        ("broker.session.timeout.ms", b.broker_session_timeout_ms + b.broker_heartbeat_interval_ms),
        ("replica.socket.timeout.ms", b.replica_socket_timeout_ms),
    ];
    for p in s.services.iter().map(|x| &x.producer) {
        timeouts.push(("request.timeout.ms", p.request_timeout_ms));
        timeouts.push(("delivery.timeout.ms", p.delivery_timeout_ms));
    }
    for x in &s.services {
        if x.publish == evsim_model::scenario::PublishStrategy::Outbox {
            timeouts.push(("outbox_retry_after_ms", x.outbox_retry_after_ms + x.outbox_scan_ms));
        }
    }
    for c in s.consumers.iter().map(|x| &x.consumer) {
        timeouts.push(("session.timeout.ms", c.session_timeout_ms + c.heartbeat_interval_ms));
        timeouts.push(("request.timeout.ms", c.request_timeout_ms + c.fetch_max_wait_ms));
        // A JoinGroup waits up to the rebalance timeout and 5 s more before the client gives up.
        timeouts.push(("max.poll.interval.ms", c.max_poll_interval_ms + 5_000));
        timeouts.push(("default.api.timeout.ms", c.default_api_timeout_ms));
    }
    let longest_timeout = timeouts.into_iter().max_by_key(|&(_, ms)| ms).unwrap_or(("none", 0));
    // After a network fault of length L, the next retransmission comes within about L more
    // (the back-off doubles, up to 120 s); a client that closed its connection reconnects
    // within its longest connection setup timeout and reconnect back-off.
    let longest_network = faults.iter().filter(|f| f.kind.is_network()).filter_map(|f| f.for_ms).max();
    let tcp = longest_network.map_or(0, |l| {
        let setup = s
            .services
            .iter()
            .map(|x| x.producer.connection)
            .chain(s.consumers.iter().map(|x| x.consumer.connection))
            .chain([evsim_model::scenario::ConnectionConfig::default()])
            .map(|c| c.setup_timeout_max_ms + c.reconnect_backoff_max_ms)
            .max()
            .unwrap_or(0);
        l.min(120_000) + crate::net::TCP_RTO_MIN_US / 1_000 + setup
    });
    Recovery { ms: longest_timeout.1 + tcp + s.run.quiet_period_ms, longest_timeout }
}

/// What a search found.
#[derive(Debug)]
pub enum SearchResult {
    /// Every case held, or violated only what the scenario's `[[check.expected]]` lists.
    /// `expected[i]`: the runs whose violations expected entry `i` covered. `fragile`: cases
    /// (generated or tried while shrinking) that violated a claim on their own seed but not on
    /// every one of the `robust` seeds.
    Held { cases: u32, expected: Vec<u32>, fragile: u32 },
    /// A case violated a claimed invariant that no expected entry covers (on each of the
    /// `robust` seeds): the failing case shrunk.
    Found { shrunk: Case, invariant: Invariant, outcome: Box<RunOutcome>, expected: Vec<u32>, fragile: u32 },
}

/// The fault kinds and limits a search draws from: the scenario's `[swarm]`, or, without one,
/// every kind that has a target in the scenario.
pub fn search_space(s: &Scenario) -> SwarmSpec {
    if let Some(sw) = &s.swarm {
        return sw.clone();
    }
    let kinds = FaultKind::ALL.into_iter().filter(|&k| !crate::faults::fault_targets(s, k).is_empty()).collect();
    SwarmSpec { kinds, max_faults: 4, max_for_ms: 10_000, max_loss_rate: 0.3, targets: Vec::new() }
}

/// The proptest strategy for cases of `base` within `space`.
fn case_strategy(base: &Scenario, space: &SwarmSpec) -> impl Strategy<Value = Case> + use<> {
    let duration = base.run.duration_ms;
    let min_duration = (duration / 10).max(100).min(duration);
    let per_kind: Vec<(FaultKind, Vec<Option<String>>)> = space
        .kinds
        .iter()
        .map(|&k| (k, crate::faults::swarm_targets(base, space, k)))
        .filter(|(_, t)| !t.is_empty())
        .collect();
    let max_for = space.max_for_ms.max(1);
    let max_loss = space.max_loss_rate;
    let fault = (0..per_kind.len(), any::<prop::sample::Index>(), 0..duration, 1..=max_for, 1u32..=100, 1u64..=1_000)
        .prop_map(move |(k, target, at_ms, for_ms, loss, delay_ms)| {
            let (kind, targets) = &per_kind[k];
            FaultSpec {
                kind: *kind,
                at_ms,
                for_ms: Some(for_ms),
                target: targets[target.index(targets.len())].clone(),
                peer: None,
                direction: Direction::Both,
                rate: if *kind == FaultKind::NetworkLoss { max_loss * f64::from(loss) / 100.0 } else { 0.0 },
                delay_ms: if *kind == FaultKind::NetworkDelay { delay_ms } else { 0 },
            }
        });
    let max_faults = space.max_faults.max(1) as usize;
    // Seeds stay below 2^63: a TOML integer is an i64, and the counterexample file holds the seed.
    ((0..=i64::MAX as u64).no_shrink(), min_duration..=duration, prop::collection::vec(fault, 1..=max_faults))
        .prop_map(|(seed, duration_ms, faults)| Case { seed, duration_ms, faults })
}

/// How a case's run is judged.
#[derive(Debug, PartialEq)]
enum Judged {
    /// It held, or proved nothing (a fault that did nothing, or nothing moved).
    Held,
    /// Every claimed invariant it violates is covered by these expected entries.
    Expected(Vec<usize>),
    /// It violates this claimed invariant, which nothing expected covers.
    Violated(Invariant),
}

/// Judge the run `o` of `faults` against the claims and the expected counterexamples of `base`.
fn judge(base: &Scenario, faults: &[FaultSpec], o: &RunOutcome) -> Judged {
    if o.vacuous.is_some() || o.stopped.is_some() {
        return Judged::Held; // proves nothing either way
    }
    let mut covered = Vec::new();
    for v in o.verdicts.iter().filter(|v| base.run.invariants.contains(&v.invariant) && !v.violations.is_empty()) {
        let cover = base.check.expected.iter().position(|e| {
            e.invariants.contains(&v.invariant)
                && (e.faults.is_empty() || faults.iter().any(|f| e.faults.contains(&f.kind)))
                && e.condition.is_none_or(|c| condition_holds(c, base, o))
        });
        match cover {
            Some(i) => covered.push(i),
            None => return Judged::Violated(v.invariant),
        }
    }
    if covered.is_empty() { Judged::Held } else { Judged::Expected(covered) }
}

/// Whether `c` holds in the run `o` of `s`.
pub fn condition_holds(c: Condition, s: &Scenario, o: &RunOutcome) -> bool {
    match c {
        Condition::UnflushedLastReplica => {
            // Per partition: its in-sync replicas as the history tells them (all of them at the
            // start), and the brokers that came back from a crash without unflushed records.
            let mut isr: BTreeMap<Tp, Vec<NodeId>> = BTreeMap::new();
            let mut global = 0;
            for (t, topic) in s.topics.iter().enumerate() {
                for p in 0..topic.partitions {
                    let replicas = (0..topic.replication_factor as usize)
                        .map(|k| NodeId(crate::cluster::preferred_leader(global + k, s.brokers) + 1))
                        .collect();
                    isr.insert(Tp { topic: TopicId(t as u16), partition: p }, replicas);
                    global += 1;
                }
            }
            let mut lost: BTreeMap<Tp, Vec<NodeId>> = BTreeMap::new();
            o.history.entries.iter().any(|e| match &e.op {
                Op::IsrChanged { tp, isr: now } => {
                    isr.insert(*tp, now.clone());
                    false
                }
                Op::LogRecovered { tp, lost: n, .. } if *n > 0 => {
                    lost.entry(*tp).or_default().push(e.process);
                    false
                }
                Op::LeaderElected { tp, leader: Some(b), unclean: false, .. } => {
                    isr.get(tp).is_some_and(|i| i.as_slice() == [*b]) && lost.get(tp).is_some_and(|l| l.contains(b))
                }
                _ => false,
            })
        }
    }
}

/// Whether `case`, which violated `inv` on its own seed, violates it on the `robust - 1` seeds
/// after its own as well (other arrivals, jitter and loss draws: other timings of the same
/// schedule).
fn violates_on_every_seed(base: &Scenario, case: &Case, inv: Invariant, robust: u32, progress: &dyn Fn()) -> bool {
    (1..u64::from(robust)).all(|i| {
        // Seeds stay below 2^63, as the cases' own (a TOML integer holds them).
        let seed = case.seed.wrapping_add(i) & (i64::MAX as u64);
        let other = Case { seed, ..case.clone() };
        let o = run_scenario(&other.scenario(base), seed);
        progress();
        judge(base, &case.faults, &o) == Judged::Violated(inv)
    })
}

/// Search `cases` generated cases of `base`, with proptest's RNG seeded from `seed`; shrink the
/// first failure with at most `shrink_iters` steps. A case fails only if it violates the same
/// claimed invariant on `robust` consecutive seeds (its own and the next; 1: its own only), so
/// that with `robust` > 1 a counterexample that rests on one exact timing, which a real
/// cluster would rarely repeat, is left out and counted as fragile. `progress` is called
/// after every case run (generated or shrinking).
pub fn search(
    base: &Scenario,
    cases: u32,
    seed: u64,
    shrink_iters: u32,
    robust: u32,
    progress: &dyn Fn(),
) -> Result<SearchResult, String> {
    let robust = robust.max(1);
    let fragile = std::cell::Cell::new(0u32);
    let space = search_space(base);
    if !space.kinds.iter().any(|&k| !crate::faults::swarm_targets(base, &space, k).is_empty()) {
        let kinds: Vec<&str> = space.kinds.iter().map(|k| k.name()).collect();
        return Err(format!("none of the fault kinds to search ({}) has a target in this scenario", kinds.join(", ")));
    }
    let config = Config {
        cases,
        max_local_rejects: 0,
        max_global_rejects: 0,
        max_flat_map_regens: 0,
        failure_persistence: None,
        source_file: None,
        test_name: None,
        max_shrink_time: 0,
        max_shrink_iters: shrink_iters,
        max_default_size_range: 100,
        verbose: 0,
        rng_algorithm: RngAlgorithm::ChaCha,
        ..Config::default()
    };
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &key));
    let expected = std::cell::RefCell::new(vec![0u32; base.check.expected.len()]);
    // The first case that stopped at the run budget: without a counterexample, the search then
    // vouches for nothing.
    let stopped: std::cell::RefCell<Option<String>> = std::cell::RefCell::new(None);
    let result = runner.run(&case_strategy(base, &space), |case| {
        let o = run_scenario(&case.scenario(base), case.seed);
        progress();
        if let Some(why) = &o.stopped {
            stopped
                .borrow_mut()
                .get_or_insert_with(|| format!("the case with seed {} stopped early: {why}", case.seed));
        }
        match judge(base, &case.faults, &o) {
            Judged::Violated(inv) if violates_on_every_seed(base, &case, inv, robust, progress) => {
                Err(TestCaseError::fail(inv.name()))
            }
            Judged::Violated(_) => {
                fragile.set(fragile.get() + 1);
                Ok(())
            }
            Judged::Expected(entries) => {
                let mut counts = expected.borrow_mut();
                for i in entries {
                    counts[i] += 1;
                }
                Ok(())
            }
            Judged::Held => Ok(()),
        }
    });
    let expected = expected.into_inner();
    match result {
        Ok(()) => match stopped.into_inner() {
            Some(why) => Err(why),
            None => Ok(SearchResult::Held { cases, expected, fragile: fragile.get() }),
        },
        Err(TestError::Fail(_, shrunk)) => {
            let outcome = run_scenario(&shrunk.scenario(base), shrunk.seed);
            let Judged::Violated(invariant) = judge(base, &shrunk.faults, &outcome) else {
                unreachable!("the shrunk case fails: proptest kept it because it did")
            };
            Ok(SearchResult::Found { shrunk, invariant, outcome: Box::new(outcome), expected, fragile: fragile.get() })
        }
        Err(TestError::Abort(why)) => Err(format!("the search stopped: {why}")),
    }
}

/// The counterexample as a scenario file: the original text's settings with the case's seed,
/// run length and fault schedule (the original's comments, key order and dotted keys are kept;
/// a header says where the file came from). `workflow_file`: where the workflow file the
/// scenario names is, for a counterexample written elsewhere than the scenario (an absolute
/// path, so that the file replays from anywhere).
pub fn counterexample_toml(
    original: &str,
    file: &str,
    base: &Scenario,
    case: &Case,
    invariant: Invariant,
    workflow_file: Option<&str>,
) -> Result<String, String> {
    use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, value};
    // The original text, edited in place: comments, order and Kafka's dotted keys stay as written.
    let mut doc: DocumentMut = original.parse().map_err(|e| format!("cannot re-read {file}: {e}"))?;
    doc.remove("swarm");
    if let Some(path) = workflow_file {
        let workflow =
            doc.get_mut("workflow").and_then(Item::as_table_like_mut).ok_or("the scenario has no [workflow] table")?;
        workflow.insert("file", value(path));
    }
    let seed = i64::try_from(case.seed).map_err(|_| format!("seed {} does not fit a TOML integer", case.seed))?;
    // `[run]` or an inline `run = { ... }`.
    let run = doc.get_mut("run").and_then(Item::as_table_like_mut).ok_or("the scenario has no [run] table")?;
    run.insert("seed", value(seed));
    run.insert("duration_ms", value(case.duration_ms as i64));
    // The quiet period the case ran with (recovery after its last fault).
    let quiet = case.scenario(base).run.quiet_period_ms;
    run.insert("quiet_period_ms", value(quiet as i64));
    let mut faults = ArrayOfTables::new();
    for f in &case.faults {
        let mut t = Table::new();
        t["kind"] = value(f.kind.name());
        if let Some(target) = &f.target {
            t["target"] = value(target.as_str());
        }
        if let Some(peer) = &f.peer {
            t["peer"] = value(peer.as_str());
        }
        if f.kind.is_network() && f.direction != Direction::Both {
            t["direction"] = value(f.direction.name());
        }
        if f.kind == FaultKind::NetworkLoss {
            t["rate"] = value(f.rate);
        }
        if f.kind == FaultKind::NetworkDelay {
            t["delay_ms"] = value(f.delay_ms as i64);
        }
        t["at_ms"] = value(f.at_ms as i64);
        if let Some(d) = f.for_ms {
            t["for_ms"] = value(d as i64);
        }
        faults.push(t);
    }
    doc.remove("faults");
    doc.insert("faults", Item::ArrayOfTables(faults));
    Ok(format!(
        "# Counterexample found by `evsim check {file}`: {} is violated.\n# Replay: evsim run <this file>\n\n{doc}",
        invariant.name()
    ))
}
