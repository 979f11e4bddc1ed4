//! Seed 000's order-completed fan-out: three consumer groups, each on its own.

mod common;

use evsim_model::checkers::Invariant;
use evsim_model::history::Op;
use evsim_model::scenario::CommitStrategy;
use evsim_sim::run_scenario;

fn count(o: &evsim_sim::RunOutcome, pred: impl Fn(&Op) -> bool) -> u64 {
    o.history.entries.iter().filter(|e| pred(&e.op)).count() as u64
}

#[test]
fn every_group_applies_its_effect_to_every_order_once() {
    let o = run_scenario(&common::shortened(common::scenario("fanout-seed000"), 3_000), 1);
    assert!(o.passed(), "{:?}", o.verdicts.iter().find(|v| !v.violations.is_empty()));
    let orders = o.stats.orders_committed;
    assert!(orders > 500);
    assert_eq!(count(&o, |op| matches!(op, Op::PointsAdded { .. })), orders);
    assert_eq!(count(&o, |op| matches!(op, Op::CouponUsed { .. })), orders);
    assert_eq!(count(&o, |op| matches!(op, Op::EmailSent { .. })), orders);
}

/// The mail server is down for 3 s and the e-mail group's listener skips failures (no ack): its
/// e-mails for those orders are lost, but the points and coupon groups, with their own offsets,
/// are untouched.
#[test]
fn one_groups_outage_does_not_touch_the_others() {
    let mut s = common::shortened(common::scenario("fanout-seed000"), 6_000);
    let email = s.consumers.iter_mut().find(|c| c.name == "email-consumer").unwrap();
    email.external_outages_ms = vec![(3_000, 6_000)];
    email.commit_strategy = CommitStrategy::AckSkipsFailures;
    let o = run_scenario(&s, 1);
    let orders = o.stats.orders_committed;
    let emails = count(&o, |op| matches!(op, Op::EmailSent { .. }));
    assert!(emails < orders, "e-mails of the outage are lost ({emails} of {orders})");
    assert_eq!(count(&o, |op| matches!(op, Op::PointsAdded { .. })), orders);
    assert_eq!(count(&o, |op| matches!(op, Op::CouponUsed { .. })), orders);
    let missing = &o.verdicts.iter().find(|v| v.invariant == Invariant::EventualProcessing).unwrap().violations;
    assert!(
        !missing.is_empty() && missing.iter().all(|v| v.message.contains("group email-consumer")),
        "{:?}",
        missing.first()
    );
}
