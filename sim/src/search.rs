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
use evsim_model::scenario::{Direction, FaultKind, FaultSpec, Scenario, SwarmSpec};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};

/// One generated case: a seed, how long the workload runs, and the fault schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    pub seed: u64,
    pub duration_ms: u64,
    pub faults: Vec<FaultSpec>,
}

impl Case {
    /// The scenario this case runs: the base with this seed, length and schedule (the base's
    /// own `[[faults]]` and `[swarm]` are replaced).
    pub fn scenario(&self, base: &Scenario) -> Scenario {
        let mut s = base.clone();
        s.run.seed = self.seed;
        s.run.duration_ms = self.duration_ms;
        s.faults = self.faults.clone();
        s.swarm = None;
        s
    }
}

/// What a search found.
#[derive(Debug)]
pub enum SearchResult {
    /// Every case held.
    Held { cases: u32 },
    /// A case violated a claimed invariant: the original failing case and its shrunk form.
    Found { shrunk: Case, invariant: Invariant, outcome: Box<RunOutcome> },
}

/// The fault kinds and limits a search draws from: the scenario's `[swarm]`, or, without one,
/// every kind that has a target in the scenario.
pub fn search_space(s: &Scenario) -> SwarmSpec {
    if let Some(sw) = &s.swarm {
        return sw.clone();
    }
    let mut kinds = vec![FaultKind::BrokerCrash, FaultKind::NetworkLoss, FaultKind::NetworkPartition];
    if !s.services.is_empty() {
        kinds.push(FaultKind::ServiceCrash);
    }
    if !s.consumers.is_empty() {
        kinds.extend([FaultKind::ConsumerCrash, FaultKind::ConsumerPause]);
    }
    SwarmSpec { kinds, max_faults: 4, max_for_ms: 10_000, max_loss_rate: 0.3 }
}

/// The proptest strategy for cases of `base` within `space`.
fn case_strategy(base: &Scenario, space: &SwarmSpec) -> impl Strategy<Value = Case> + use<> {
    let duration = base.run.duration_ms;
    let min_duration = (duration / 10).max(100).min(duration);
    let per_kind: Vec<(FaultKind, Vec<Option<String>>)> = space
        .kinds
        .iter()
        .map(|&k| (k, crate::faults::fault_targets(base, k)))
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

/// The first claimed invariant `o` violates, if the run is not vacuous.
fn violated(base: &Scenario, o: &RunOutcome) -> Option<Invariant> {
    if o.vacuous.is_some() {
        return None; // a fault that did nothing, or nothing moved: not a counterexample
    }
    o.verdicts
        .iter()
        .find(|v| base.run.invariants.contains(&v.invariant) && !v.violations.is_empty())
        .map(|v| v.invariant)
}

/// Search `cases` generated cases of `base`, with proptest's RNG seeded from `seed`; shrink the
/// first failure with at most `shrink_iters` steps. `progress` is called after every case run
/// (generated or shrinking).
pub fn search(
    base: &Scenario,
    cases: u32,
    seed: u64,
    shrink_iters: u32,
    progress: &dyn Fn(),
) -> Result<SearchResult, String> {
    let space = search_space(base);
    if !space.kinds.iter().any(|&k| !crate::faults::fault_targets(base, k).is_empty()) {
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
    let result = runner.run(&case_strategy(base, &space), |case| {
        let o = run_scenario(&case.scenario(base), case.seed);
        progress();
        match violated(base, &o) {
            Some(inv) => Err(TestCaseError::fail(inv.name())),
            None => Ok(()),
        }
    });
    match result {
        Ok(()) => Ok(SearchResult::Held { cases }),
        Err(TestError::Fail(_, shrunk)) => {
            let outcome = run_scenario(&shrunk.scenario(base), shrunk.seed);
            let invariant = violated(base, &outcome).expect("the shrunk case fails: proptest kept it because it did");
            Ok(SearchResult::Found { shrunk, invariant, outcome: Box::new(outcome) })
        }
        Err(TestError::Abort(why)) => Err(format!("the search stopped: {why}")),
    }
}

/// The counterexample as a scenario file: the original text's settings with the case's seed,
/// run length and fault schedule (comments of the original are not kept; a header says where
/// the file came from).
pub fn counterexample_toml(original: &str, file: &str, case: &Case, invariant: Invariant) -> Result<String, String> {
    let mut doc: toml::Table = original.parse().map_err(|e| format!("cannot re-read {file}: {e}"))?;
    doc.remove("swarm");
    let run = doc.get_mut("run").and_then(|r| r.as_table_mut()).ok_or("the scenario has no [run] table")?;
    let seed = i64::try_from(case.seed).map_err(|_| format!("seed {} does not fit a TOML integer", case.seed))?;
    run.insert("seed".into(), toml::Value::Integer(seed));
    run.insert("duration_ms".into(), toml::Value::Integer(case.duration_ms as i64));
    let faults: Vec<toml::Value> = case
        .faults
        .iter()
        .map(|f| {
            let mut t = toml::Table::new();
            t.insert("kind".into(), f.kind.name().into());
            if let Some(target) = &f.target {
                t.insert("target".into(), target.as_str().into());
            }
            if let Some(peer) = &f.peer {
                t.insert("peer".into(), peer.as_str().into());
            }
            if f.kind.is_network() && f.direction != Direction::Both {
                t.insert("direction".into(), f.direction.name().into());
            }
            if f.kind == FaultKind::NetworkLoss {
                t.insert("rate".into(), f.rate.into());
            }
            if f.kind == FaultKind::NetworkDelay {
                t.insert("delay_ms".into(), (f.delay_ms as i64).into());
            }
            t.insert("at_ms".into(), (f.at_ms as i64).into());
            if let Some(d) = f.for_ms {
                t.insert("for_ms".into(), (d as i64).into());
            }
            toml::Value::Table(t)
        })
        .collect();
    doc.insert("faults".into(), toml::Value::Array(faults));
    let body = toml::to_string(&doc).map_err(|e| format!("cannot write the counterexample: {e}"))?;
    Ok(format!(
        "# Counterexample found by `evsim check {file}`: {} is violated.\n# Replay: evsim run <this file>\n\n{body}",
        invariant.name()
    ))
}
