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
}

impl RunOutcome {
    /// Held: every claimed invariant held and the run was not vacuous.
    pub fn passed(&self) -> bool {
        self.vacuous.is_none() && self.verdicts.iter().all(|v| !v.claimed || v.violations.is_empty())
    }
}

/// Simulate `scenario` with `seed` and judge the history with every invariant.
pub fn run_scenario(scenario: &Scenario, seed: u64) -> RunOutcome {
    let (history, stats) = World::new(scenario, seed).run();
    let history_hash = history.hash();
    let verdicts = Invariant::ALL
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
    RunOutcome { seed, history, history_hash, stats, verdicts, vacuous }
}
