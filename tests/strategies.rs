//! Each consuming strategy's defining property, shown under business failures (a listener that
//! throws on some records).

mod common;

use evsim_model::checkers::Invariant;
use evsim_model::history::Op;
use evsim_model::scenario::{CommitStrategy, Scenario};
use evsim_sim::{RunOutcome, run_scenario};

fn with(strategy: CommitStrategy, error_rate: f64) -> Scenario {
    let mut s = common::shortened(common::scenario("order-basic"), 4_000);
    let c = &mut s.consumers[0];
    c.commit_strategy = strategy;
    c.consumer.enable_auto_commit = strategy == CommitStrategy::AutoCommit;
    c.handler_error_rate = error_rate;
    s
}

fn violations(o: &RunOutcome, inv: Invariant) -> usize {
    o.verdicts.iter().find(|v| v.invariant == inv).map_or(0, |v| v.violations.len())
}

fn failed_attempts(o: &RunOutcome) -> usize {
    o.history.entries.iter().filter(|e| matches!(e.op, Op::Processed { ok: false, .. })).count()
}

#[test]
fn commit_after_process_retries_a_failed_record_until_it_succeeds() {
    for strategy in [CommitStrategy::CommitAfterProcess, CommitStrategy::Idempotent] {
        retried_until_success(strategy);
    }
}

fn retried_until_success(strategy: CommitStrategy) {
    let o = run_scenario(&with(strategy, 0.05), 1);
    assert!(failed_attempts(&o) > 50, "failures happened: {}", failed_attempts(&o));
    assert_eq!(violations(&o, Invariant::EventualProcessing), 0, "nothing is lost");
    assert_eq!(violations(&o, Invariant::EffectOnce), 0, "a failure applies nothing, its retry applies once");
    assert_eq!(violations(&o, Invariant::NonmonotonicPoll), 0, "seeking back after a failure is not a poll anomaly");
    assert_eq!(violations(&o, Invariant::PollSkip), 0);
    assert_eq!(o.stats.records_consumed, o.stats.records_produced);
}

/// Seed 001's listener catches the exception and does not ack, expecting a redelivery on restart;
/// but the next records are acked, the commit moves past the failed one, and it is never seen again.
#[test]
fn ack_skips_failures_loses_the_failed_records_effects() {
    let o = run_scenario(&with(CommitStrategy::AckSkipsFailures, 0.05), 1);
    let failed = failed_attempts(&o);
    assert!(failed > 50);
    let lost = violations(&o, Invariant::EventualProcessing);
    assert!(lost > 0, "failed records are never processed");
    assert_eq!(
        o.stats.records_consumed as usize,
        o.stats.records_produced as usize - failed,
        "exactly the failed ones are lost"
    );
    assert_eq!(violations(&o, Invariant::EffectOnce), 0, "and nothing is applied twice");
}

#[test]
fn commit_before_process_is_at_most_once() {
    let o = run_scenario(&with(CommitStrategy::CommitBeforeProcess, 0.05), 1);
    assert!(violations(&o, Invariant::EventualProcessing) > 0, "a failed record was already committed past");
    assert_eq!(violations(&o, Invariant::EffectOnce), 0);
    // Every commit precedes the processing of the records it covers.
    let mut committed = std::collections::BTreeMap::new();
    for e in &o.history.entries {
        match &e.op {
            Op::Commit { offsets, error: None, .. } => {
                for (tp, next) in offsets {
                    committed.insert(*tp, *next);
                }
            }
            Op::Processed { record, .. } => {
                assert!(committed.get(&record.tp).is_some_and(|n| *n > record.offset), "processed before committed");
            }
            _ => {}
        }
    }
}

#[test]
fn without_failures_every_strategy_holds() {
    for strategy in CommitStrategy::ALL {
        let o = run_scenario(&with(strategy, 0.0), 2);
        assert!(o.passed(), "{}: {:?}", strategy.name(), o.verdicts.iter().find(|v| !v.violations.is_empty()));
        assert_eq!(failed_attempts(&o), 0);
    }
}

fn publishing(strategy: evsim_model::scenario::PublishStrategy) -> Scenario {
    let mut s = common::shortened(common::scenario("order-basic"), 4_000);
    s.services[0].publish = strategy;
    s
}

/// in-transaction publishing sends (and waits for the ack) before the commit: an order that then
/// rolls back for lack of stock leaves its event published.
#[test]
fn in_transaction_publishing_publishes_phantoms_for_rolled_back_orders() {
    use evsim_model::scenario::PublishStrategy;
    let o = run_scenario(&publishing(PublishStrategy::InTransaction), 1);
    assert!(o.stats.orders_rejected > 100, "order-basic runs short of stock");
    let phantoms = violations(&o, Invariant::NoPhantomEvent);
    assert!(phantoms > 0);
    let v = &o.verdicts.iter().find(|v| v.invariant == Invariant::NoPhantomEvent).unwrap().violations[0];
    assert!(v.message.contains("rolled back"), "{}", v.message);
    assert_eq!(violations(&o, Invariant::EventualPublication), 0, "every committed order was published first");
    // And the consumer processed events of orders that do not exist.
    assert!(o.stats.records_consumed > o.stats.orders_committed);
}

#[test]
fn after_commit_publishing_has_no_phantoms_and_publishes_everything_without_faults() {
    use evsim_model::scenario::PublishStrategy;
    for strategy in [PublishStrategy::AfterCommit, PublishStrategy::AfterCommitAsync] {
        let o = run_scenario(&publishing(strategy), 1);
        assert!(o.passed(), "{}: {:?}", strategy.name(), o.verdicts.iter().find(|v| !v.violations.is_empty()));
        assert_eq!(violations(&o, Invariant::NoPhantomEvent), 0);
        assert_eq!(o.stats.records_produced, o.stats.orders_committed);
    }
}

/// retry-then-dlq: a record that keeps failing ends on the dead-letter topic, and the group moves
/// on. It is not processed (eventual-processing says so), but it is not lost silently either:
/// every unprocessed record sits on the dead-letter topic.
#[test]
fn retry_then_dlq_parks_what_keeps_failing_on_the_dead_letter_topic() {
    use evsim_model::history::TopicId;
    use evsim_model::scenario::TopicSpec;
    let mut s = with(CommitStrategy::RetryThenDlq, 0.1);
    s.topics.push(TopicSpec { name: "order-created.DLT".into(), partitions: 1, replication_factor: 1 });
    s.consumers[0].dlq_topic = Some("order-created.DLT".into());
    s.consumers[0].retries = 1; // two attempts: about 1% of records exhaust them
    let o = run_scenario(&s, 1);
    let dlq = TopicId(1);
    let parked: std::collections::BTreeSet<_> = o
        .history
        .entries
        .iter()
        .filter_map(|e| match e.op {
            Op::SendOk { tp, value, .. } if tp.topic == dlq => Some(value),
            _ => None,
        })
        .collect();
    let unprocessed = &o.verdicts.iter().find(|v| v.invariant == Invariant::EventualProcessing).unwrap().violations;
    assert!(!parked.is_empty() && !unprocessed.is_empty(), "some records fail both attempts");
    // Exactly the dead-lettered events go unprocessed.
    let processed: std::collections::BTreeSet<_> = o
        .history
        .entries
        .iter()
        .filter_map(|e| match e.op {
            Op::Processed { record, ok: true, .. } => Some(record.value),
            _ => None,
        })
        .collect();
    let committed: std::collections::BTreeSet<_> =
        o.history.entries.iter().filter_map(|e| e.op.expected_event()).collect();
    let unprocessed: std::collections::BTreeSet<_> = committed.difference(&processed).copied().collect();
    assert_eq!(unprocessed, parked, "exactly the dead-lettered records go unprocessed");
    assert_eq!(violations(&o, Invariant::EffectOnce), 0);
    assert_eq!(o.stats.records_consumed as usize + parked.len(), o.stats.orders_committed as usize);
}

/// auto-commit: the client commits what earlier polls returned, whatever the listener did with it;
/// a record whose handling failed is simply passed by.
#[test]
fn auto_commit_passes_failed_records_by() {
    let o = run_scenario(&with(CommitStrategy::AutoCommit, 0.05), 1);
    let failed = failed_attempts(&o);
    assert!(failed > 50);
    assert!(violations(&o, Invariant::EventualProcessing) > 0, "failed records are never retried");
    assert_eq!(o.stats.records_consumed as usize, o.stats.records_produced as usize - failed);
}
