//! Stories that explain: for three violations a new user met, the story of the simulated run
//! contains the entries that explain it (not only the violation's own).

mod common;

use common::fault;
use evsim_model::checkers::Invariant;
use evsim_model::describe::story_entries;
use evsim_model::history::{DisconnectReason, Op};
use evsim_model::scenario::{CommitStrategy, FaultKind};
use evsim_sim::{RunOutcome, run_scenario};

fn story(o: &RunOutcome, inv: Invariant) -> Vec<usize> {
    let v = &o.verdicts.iter().find(|v| v.invariant == inv).unwrap().violations;
    assert!(!v.is_empty(), "{inv} held");
    story_entries(&o.history, &v[0].entries)
}

fn text(o: &RunOutcome, s: &[usize]) -> String {
    s.iter().map(|&i| o.history.describe(i)).collect::<Vec<_>>().join("\n")
}

#[test]
fn a_failed_record_never_redelivered_shows_the_commit_that_moved_past_it() {
    let o = run_scenario(&common::shortened(common::scenario("order-listener-errors"), 3_000), 1);
    let s = story(&o, Invariant::EventualProcessing);
    let h = &o.history;
    let (at, group, record) = s
        .iter()
        .find_map(|&i| match h.entries[i].op {
            Op::Processed { group, record, ok: false } => Some((i, group, record)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no failed handling in the story:\n{}", text(&o, &s)));
    let past = s.iter().any(|&i| {
        i > at
            && matches!(&h.entries[i].op, Op::Commit { group: g, offsets, error: None, .. }
                if *g == group && offsets.iter().any(|&(tp, off)| tp == record.tp && off > record.offset))
    });
    assert!(past, "the story lacks the commit past the failed record:\n{}", text(&o, &s));
}

#[test]
fn records_lost_to_background_auto_commit_show_the_poll_and_the_commit_before_the_crash() {
    // librdkafka's auto-commit: stored at poll, committed by a timer, lost when the consumer
    // crashes before handling them.
    let mut s = common::shortened(common::scenario("order-basic"), 4_000);
    let c = &mut s.consumers[0];
    c.commit_strategy = CommitStrategy::AutoCommit;
    c.consumer.enable_auto_commit = true;
    c.consumer.enable_auto_offset_store = true;
    c.consumer.auto_commit_interval_ms = 100;
    c.consumer.max_poll_records = 500;
    c.processing_time_us = 2_000; // batches take a second: the timer commits ahead of the work
    s.faults = vec![fault(FaultKind::ConsumerCrash, Some("order-event-consumer-0"), 3_500, 1_000)];
    let o = run_scenario(&s, 1);
    let st = story(&o, Invariant::EventualProcessing);
    let h = &o.history;
    let crash = st.iter().copied().find(|&i| matches!(h.entries[i].op, Op::Crashed));
    let crash = crash.unwrap_or_else(|| panic!("no crash in the story:\n{}", text(&o, &st)));
    let poll = st.iter().copied().find(|&i| i < crash && matches!(h.entries[i].op, Op::Poll { .. }));
    let commit = st.iter().copied().find(|&i| i < crash && matches!(h.entries[i].op, Op::Commit { error: None, .. }));
    assert!(poll.is_some() && commit.is_some(), "the poll and the commit before the crash:\n{}", text(&o, &st));
    assert!(poll < commit, "{}", text(&o, &st));
}

#[test]
fn a_reordered_send_shows_the_late_response_and_the_request_timeout() {
    let o = run_scenario(&common::scenario("coupon-retries-lost-responses"), 1);
    let s = story(&o, Invariant::NonmonotonicSend);
    let h = &o.history;
    let timeout =
        s.iter().any(|&i| matches!(h.entries[i].op, Op::Disconnected { reason: DisconnectReason::RequestTimeout, .. }));
    // The broker's answers that were lost (discarded with the connection) or late.
    let lost = s.iter().any(|&i| matches!(h.entries[i].op, Op::Retransmitted { .. } | Op::Discarded { .. }));
    assert!(timeout && lost, "the story lacks the timeout or the lost answer:\n{}", text(&o, &s));
}
