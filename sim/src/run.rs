//! Running a scenario: one seed gives a history, the checkers judge it, and a run that moved no
//! records fails as vacuous.

use crate::world::{Stats, World};
use evsim_model::checkers::{Invariant, Violation};
use evsim_model::history::History;
use evsim_model::scenario::Scenario;

/// One invariant's verdict on one run.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    pub invariant: Invariant,
    /// Whether the scenario claims this invariant (a violation of a claimed one fails the run).
    pub claimed: bool,
    pub violations: Vec<Violation>,
}

/// Everything one run produced.
#[derive(Debug)]
pub struct RunOutcome {
    pub seed: u64,
    pub history: History,
    pub history_hash: u64,
    pub stats: Stats,
    pub verdicts: Vec<Verdict>,
    /// Why the run proves nothing (no records moved), if so.
    pub vacuous: Option<String>,
    /// Why the run stopped before its end (it reached the event budget), if it did: such a run
    /// is no verdict at all, and `evsim` exits 2.
    pub stopped: Option<String>,
}

impl RunOutcome {
    /// Held: every claimed invariant held and the run was not vacuous.
    pub fn passed(&self) -> bool {
        self.stopped.is_none()
            && self.vacuous.is_none()
            && self.verdicts.iter().all(|v| !v.claimed || v.violations.is_empty())
    }
}

/// Simulate `scenario` with `seed` and judge the history with every invariant.
pub fn run_scenario(scenario: &Scenario, seed: u64) -> RunOutcome {
    run_scenario_observed(scenario, seed, u64::MAX, &mut |_| {})
}

/// `run_scenario`, telling `observe` the simulated time as the run goes (for a progress bar),
/// with at most `max_events` events (`MAX_EVENTS_PER_RUN` at most).
pub fn run_scenario_observed(
    scenario: &Scenario,
    seed: u64,
    max_events: u64,
    observe: &mut dyn FnMut(u64),
) -> RunOutcome {
    let mut world = World::new(scenario, seed);
    world.limit_events(max_events);
    let (history, stats) = world.run_observed(observe);
    let stopped = stats.event_budget_exhausted_at.map(|at| {
        let budget = if stats.memory_bytes >= evsim_model::scenario::MAX_RUN_MEMORY_BYTES {
            format!(
                "its history and logs reached the memory budget of {} MB (after {} events)",
                evsim_model::scenario::MAX_RUN_MEMORY_BYTES >> 20,
                stats.events
            )
        } else {
            format!(
                "having processed its budget of {} events (at most 1,000,000,000, about a minute of simulation; \
                 EVSIM_EVENT_BUDGET lowers it)",
                stats.events
            )
        };
        format!(
            "the run stopped at {:.3} s of simulated time, {budget}: its settings keep the cluster busier than any \
             design review needs (a fetch or heartbeat loop with no wait, a retry storm, a quiet period of years); \
             shorten the run or relax them",
            at as f64 / 1e6,
        )
    });
    let stopped = stopped.or_else(|| {
        stats.workflow_error.as_ref().map(|e| {
            format!("the workflow is wrong: an expression failed ({e}); no verdict is given rather than a wrong one")
        })
    });
    let history_hash = history.hash();
    let verdicts = Invariant::of(scenario)
        .into_iter()
        .map(|invariant| Verdict {
            invariant,
            claimed: scenario.run.invariants.contains(&invariant),
            violations: invariant.check(&history),
        })
        .collect();
    let vacuous = if stats.records_produced == 0 {
        Some("no record was produced".to_string())
    } else if stats.records_consumed == 0 {
        Some("no record was consumed".to_string())
    } else if let Some(why) =
        stats.workflow.as_ref().zip(scenario.workflow.as_ref()).and_then(|(w, wf)| w.outage_never_met(wf))
    {
        Some(why)
    } else {
        stats.faults.iter().find(|f| !f.fired).map(|f| {
            if f.started {
                format!(
                    "planned fault `{}` had no effect (it touched no message, or its target was already down)",
                    f.fault
                )
            } else {
                format!("planned fault `{}` never started", f.fault)
            }
        })
    };
    RunOutcome { seed, history, history_hash, stats, verdicts, vacuous, stopped }
}
