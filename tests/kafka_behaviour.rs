//! The simulator reproduces Kafka's documented behaviour, and the checkers see its consequences.

mod common;

use evsim_model::checkers::Invariant;
use evsim_model::history::{History, LeaveReason, Op};
use evsim_model::scenario::{Acks, AssignmentStrategy, OffsetReset, Partitioner};
use evsim_sim::{RunOutcome, run_scenario};

fn violations(o: &RunOutcome, inv: Invariant) -> usize {
    o.verdicts.iter().find(|v| v.invariant == inv).map_or(0, |v| v.violations.len())
}

fn count(h: &History, pred: impl Fn(&Op) -> bool) -> usize {
    h.entries.iter().filter(|e| pred(&e.op)).count()
}

#[test]
fn order_basic_holds_every_invariant_over_many_seeds() {
    let s = common::shortened(common::scenario("order-basic"), 3_000);
    for seed in 1..=15 {
        let o = run_scenario(&s, seed);
        assert!(o.vacuous.is_none(), "seed {seed}: {:?}", o.vacuous);
        for v in &o.verdicts {
            assert!(v.violations.is_empty(), "seed {seed}: {} violated: {:?}", v.invariant, v.violations.first());
        }
        assert!(o.stats.records_consumed >= 1_000, "seed {seed}: only {} records moved", o.stats.records_consumed);
        assert_eq!(
            o.stats.records_produced, o.stats.orders_committed,
            "seed {seed}: every committed order is published"
        );
    }
}

#[test]
fn keyed_records_land_where_the_java_partitioner_puts_them() {
    let s = common::shortened(common::scenario("order-basic"), 1_000);
    let o = run_scenario(&s, 1);
    let mut checked = 0;
    for e in &o.history.entries {
        if let Op::Send { tp, key: Some(k), .. } = e.op {
            let expected = evsim_sim::cluster::partitioner::partition_for_key(k.to_string().as_bytes(), 3);
            assert_eq!(tp.partition, expected, "key {k}");
            checked += 1;
        }
    }
    assert!(checked > 100);

    // librdkafka's default partitioner (CRC32) places keys elsewhere: a run that must agree with the
    // Java client has to say partitioner = "murmur2_random".
    let mut crc = s.clone();
    crc.services[0].producer.partitioner = Partitioner::Crc32;
    let o2 = run_scenario(&crc, 1);
    let moved = o
        .history
        .entries
        .iter()
        .zip(&o2.history.entries)
        .filter(|(a, b)| matches!((&a.op, &b.op), (Op::Send { tp: x, .. }, Op::Send { tp: y, .. }) if x != y))
        .count();
    assert!(moved > 10, "CRC32 and murmur2 should disagree on many keys, disagreed on {moved}");
}

/// `enable.auto.commit=true` and a listener slower than `max.poll.interval.ms`: the member leaves
/// the group, the group rebalances, the partition goes elsewhere from the last committed offset,
/// and the records are processed again.
#[test]
fn a_consumer_slower_than_max_poll_interval_is_expelled_and_its_records_redelivered() {
    let o = run_scenario(&common::scenario("order-slow-consumer"), 1);
    let h = &o.history;
    let poll_timeouts = count(h, |op| matches!(op, Op::LeftGroup { reason: LeaveReason::PollTimeout, .. }));
    assert!(poll_timeouts >= 1, "the slow member must leave the group on its own");
    assert!(o.stats.rebalances >= 3, "expulsions cause rebalances ({})", o.stats.rebalances);
    assert!(violations(&o, Invariant::EffectOnce) > 0, "redelivered records are applied twice");
    assert!(o.stats.records_consumed > o.stats.records_produced, "more handled than produced: redelivery");
    assert!(!o.passed(), "the scenario claims effect-once, which Kafka does not give it here");
    // Back in poll() after being expelled, the member's auto-commit fails on the client
    // (CommitFailedException) before it rejoins.
    let failed =
        count(h, |op| matches!(op, Op::Commit { error: Some(evsim_model::history::ErrorCode::UnknownMemberId), .. }));
    assert!(failed >= 1, "the expelled member's commit fails");
    // The log itself is fine: no lost write, no duplicate in the log, polls in order per member.
    for inv in [Invariant::LostWrite, Invariant::Duplicate, Invariant::NonmonotonicPoll, Invariant::PollSkip] {
        assert_eq!(violations(&o, inv), 0, "{inv}");
    }
}

#[test]
fn the_same_consumer_with_small_batches_stays_in_the_group() {
    let o = run_scenario(&common::scenario("order-slow-consumer-fixed"), 1);
    assert_eq!(count(&o.history, |op| matches!(op, Op::LeftGroup { .. } | Op::MemberRemoved { .. })), 0);
    assert!(o.passed(), "{:?}", o.verdicts.iter().filter(|v| !v.violations.is_empty()).collect::<Vec<_>>());
    assert_eq!(o.stats.records_consumed, o.stats.records_produced);
}

/// `auto.offset.reset=latest` with consumers that join after the first orders: the group starts at
/// the log end and never sees those orders' events. Kafka does this; the checker reports it.
#[test]
fn auto_offset_reset_latest_skips_what_was_written_before_the_group_started() {
    let mut s = common::shortened(common::scenario("order-basic"), 5_000);
    s.consumers[0].consumer.auto_offset_reset = OffsetReset::Latest;
    let o = run_scenario(&s, 1);
    let missed = violations(&o, Invariant::EventualProcessing);
    assert!(missed > 0, "orders placed during group.initial.rebalance.delay.ms are never processed");
    // The log is intact: nothing lost at the broker, it was simply never read by this group.
    assert_eq!(violations(&o, Invariant::LostWrite), 0);
    s.consumers[0].consumer.auto_offset_reset = OffsetReset::Earliest;
    assert_eq!(violations(&run_scenario(&s, 1), Invariant::EventualProcessing), 0);
}

#[test]
fn cooperative_sticky_assignment_also_holds() {
    let mut s = common::shortened(common::scenario("order-basic"), 3_000);
    s.consumers[0].consumer.partition_assignment_strategy = AssignmentStrategy::CooperativeSticky;
    let o = run_scenario(&s, 2);
    assert!(o.passed(), "{:?}", o.vacuous);
    let assigned = count(&o.history, |op| matches!(op, Op::Assigned { .. }));
    assert!(assigned >= 3, "every member got an assignment ({assigned})");
}

#[test]
fn acks_zero_reports_no_offsets() {
    let mut s = common::shortened(common::scenario("order-basic"), 2_000);
    s.services[0].producer.acks = Acks::None;
    s.services[0].producer.enable_idempotence = false;
    let o = run_scenario(&s, 1);
    let with_offset = count(&o.history, |op| matches!(op, Op::SendOk { offset: Some(_), .. }));
    let without = count(&o.history, |op| matches!(op, Op::SendOk { offset: None, .. }));
    assert_eq!(with_offset, 0, "acks=0 never learns the offset");
    assert!(without > 100);
    assert!(o.passed());
}

#[test]
fn committed_offsets_are_the_next_offset_to_read() {
    let s = common::scenario("order-basic");
    let o = run_scenario(&s, 1);
    // For every successful commit, the committed offset is one past a record the member processed.
    let mut processed = std::collections::BTreeSet::new();
    let mut commits = 0;
    for e in &o.history.entries {
        match &e.op {
            Op::Processed { record, ok: true, .. } => {
                processed.insert((record.tp, record.offset));
            }
            Op::Commit { offsets, error: None, .. } => {
                for (tp, next) in offsets {
                    assert!(
                        processed.contains(&(*tp, next - 1)),
                        "commit {next} on {tp:?} without processing {}",
                        next - 1
                    );
                    commits += 1;
                }
            }
            _ => {}
        }
    }
    assert!(commits > 10, "only {commits} commits");
}

/// Auto-commit as the Java client does it: inside `poll()`, once `auto.commit.interval.ms` has
/// passed, it commits the positions of records returned by earlier polls.
#[test]
fn auto_commit_commits_earlier_polls_positions_every_interval() {
    use evsim_model::scenario::CommitStrategy;
    let mut s = common::scenario("order-basic");
    s.consumers[0].commit_strategy = CommitStrategy::AutoCommit;
    s.consumers[0].consumer.enable_auto_commit = true;
    let interval = s.consumers[0].consumer.auto_commit_interval_ms * 1_000;
    let o = run_scenario(&s, 4);
    assert!(o.passed(), "auto-commit with fast processing is at-least-once and here loses nothing");
    let mut returned = std::collections::BTreeSet::new();
    let mut last_commit: std::collections::BTreeMap<u16, u64> = Default::default();
    let mut commits = 0;
    for e in &o.history.entries {
        match &e.op {
            Op::Poll { records, .. } => {
                for r in records {
                    returned.insert((e.process, r.tp, r.offset));
                }
            }
            Op::Assigned { .. } => {
                // onJoinComplete restarts the auto-commit timer: the next commit is an interval away.
                last_commit.insert(e.process.0, e.time);
            }
            Op::Revoked { .. } => {
                last_commit.remove(&e.process.0);
            }
            Op::Commit { offsets, error: None, .. } => {
                for (tp, next) in offsets {
                    assert!(
                        returned.contains(&(e.process, *tp, next - 1)),
                        "committed {next} before poll returned {}",
                        next - 1
                    );
                }
                if let Some(prev) = last_commit.insert(e.process.0, e.time) {
                    // A request sent >= interval apart can arrive a little sooner than that (jitter).
                    assert!(
                        e.time - prev + 1_000 >= interval,
                        "commits {prev} and {} closer than the interval",
                        e.time
                    );
                }
                commits += 1;
            }
            _ => {}
        }
    }
    assert!(commits >= 6, "{commits} auto-commits");
}

/// Two consumer groups on one topic each get every record: eventual-processing requires both,
/// and each group's offsets are its own.
#[test]
fn every_group_subscribed_to_a_topic_processes_every_event() {
    let mut s = common::shortened(common::scenario("order-basic"), 3_000);
    let mut audit = s.consumers[0].clone();
    audit.name = "audit".into();
    audit.consumer.group_id = "audit".into();
    audit.instances = 1;
    s.consumers.push(audit);
    let o = run_scenario(&s, 1);
    assert!(o.passed(), "{:?}", o.verdicts.iter().find(|v| !v.violations.is_empty()));
    assert_eq!(o.history.header.groups.len(), 2);
    // Each record is processed once per group.
    assert_eq!(o.stats.records_consumed, 2 * o.stats.records_produced);

    // If one group never runs (no instance), eventual-processing names that group.
    let mut idle = s.clone();
    idle.consumers[1].instances = 0;
    let o = run_scenario(&idle, 1);
    let v = &o.verdicts.iter().find(|v| v.invariant == Invariant::EventualProcessing).unwrap().violations;
    assert!(!v.is_empty() && v[0].message.contains("audit"), "{:?}", v.first());
}
