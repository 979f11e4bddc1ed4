//! Seed 002's concert waiting queue: order and rate of token activation.

mod common;

use evsim_model::checkers::Invariant;
use evsim_model::history::Op;
use evsim_sim::{RunOutcome, run_scenario};

fn violations(o: &RunOutcome, inv: Invariant) -> usize {
    o.verdicts.iter().find(|v| v.invariant == inv).map_or(0, |v| v.violations.len())
}

#[test]
fn a_global_queue_activates_in_order_at_the_promised_rate_and_drains() {
    let o = run_scenario(&common::scenario("waiting-queue-global"), 1);
    assert!(o.passed(), "{:?}", o.verdicts.iter().find(|v| !v.violations.is_empty()));
    let entered = o.history.entries.iter().filter(|e| matches!(e.op, Op::QueueEntered { .. })).count();
    let activated = o.history.entries.iter().filter(|e| matches!(e.op, Op::TokenActivated { .. })).count();
    assert!(entered > 150 && activated == entered, "{activated} of {entered} activated");
}

#[test]
fn an_activator_per_partition_multiplies_the_rate_but_keeps_each_concerts_order() {
    let o = run_scenario(&common::scenario("waiting-queue-per-concert"), 1);
    assert!(violations(&o, Invariant::QueueRate) > 0, "three activators, each at the promised rate");
    assert_eq!(violations(&o, Invariant::QueueFifo), 0, "one concert, one partition, one activator: in order");
    assert_eq!(violations(&o, Invariant::Liveness), 0);
}
