//! Every checker's story, for a known violation, contains the entries that explain it: the
//! violation's own entries, and the cluster events around it (a fault, a crash) that
//! `story_entries` adds. One case per invariant; a new invariant without a case fails the test.

use super::Invariant;
use super::testkit::{C0, CART, HistoryBuilder, R0, R1, RANKING, SERVICE, WORKLOAD, orders, payments, rec};
use crate::describe::story_entries;
use crate::history::{EventId, History, NodeId, Op, Polled};
use crate::scenario::FaultKind;

/// A known violation of an invariant: the history, and the entries its story must contain.
struct Case {
    invariant: Invariant,
    history: History,
    must: Vec<usize>,
}

/// A fault starting and a process crashing right after `b`'s last entry: cluster events every
/// story from an earlier entry on must show.
fn trouble(b: &mut HistoryBuilder) -> Vec<usize> {
    vec![b.op(NodeId(1), Op::FaultStarted { fault: 0, kind: FaultKind::ServiceCrash }), b.op(SERVICE, Op::Crashed)]
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let mut case = |invariant: Invariant, build: &dyn Fn(&mut HistoryBuilder) -> Vec<usize>| {
        let mut b = HistoryBuilder::new();
        let must = build(&mut b);
        out.push(Case { invariant, history: b.build(), must });
    };

    case(Invariant::NoOversell, &|b| {
        let init = b.stock_initialised(1, 1);
        b.order_committed(10, 1, 1, 0);
        let mut m = trouble(b);
        let bad = b.order_committed(11, 1, 1, -1);
        b.stock_final(1, -1);
        m.extend([init, bad]);
        m
    });
    case(Invariant::Balance, &|b| {
        b.op(WORKLOAD, Op::BalanceInitialised { user: 1, balance: 10 });
        let neg = b.op(WORKLOAD, Op::PaymentCommitted { order: 7, user: 1, amount: 60, balance_after: -50 });
        let mut m = trouble(b);
        m.push(neg);
        m
    });
    case(Invariant::OrderState, &|b| {
        b.order_committed(7, 1, 1, 9);
        let paid = b.op(WORKLOAD, Op::PaymentCommitted { order: 7, user: 1, amount: 10, balance_after: 0 });
        let mut m = trouble(b);
        let cancel = b.op(WORKLOAD, Op::OrderCancelled { order: 7, product: 1, qty: 1, stock_after: 10 });
        m.extend([paid, cancel]);
        m
    });
    case(Invariant::CouponLimit, &|b| {
        let init = b.op(WORKLOAD, Op::CouponInitialised { coupon: 1, quantity: 1 });
        b.op(WORKLOAD, Op::CouponIssued { request: 1, coupon: 1, user: 10, issued: 1 });
        let mut m = trouble(b);
        let over = b.op(WORKLOAD, Op::CouponIssued { request: 2, coupon: 1, user: 11, issued: 2 });
        m.extend([init, over]);
        m
    });
    case(Invariant::CouponOnce, &|b| {
        b.op(WORKLOAD, Op::CouponInitialised { coupon: 1, quantity: 5 });
        let first = b.op(WORKLOAD, Op::CouponIssued { request: 1, coupon: 1, user: 10, issued: 1 });
        let mut m = trouble(b);
        let again = b.op(WORKLOAD, Op::CouponIssued { request: 2, coupon: 1, user: 10, issued: 2 });
        m.extend([first, again]);
        m
    });
    case(Invariant::QueueFifo, &|b| {
        let first = b.op(WORKLOAD, Op::QueueEntered { token: 0, concert: 1, user: 0 });
        b.op(WORKLOAD, Op::QueueEntered { token: 1, concert: 1, user: 1 });
        let mut m = trouble(b);
        let jumped = b.op(R0, Op::TokenActivated { group: RANKING, token: 1, concert: 1, user: 1 });
        let late = b.op(R0, Op::TokenActivated { group: RANKING, token: 0, concert: 1, user: 0 });
        m.extend([first, jumped, late]);
        m
    });
    case(Invariant::QueueRate, &|b| {
        let limit = b.op(WORKLOAD, Op::QueueRateLimit { group: RANKING, tokens: 1, interval_us: 10_000 });
        b.op(WORKLOAD, Op::QueueEntered { token: 0, concert: 1, user: 0 });
        b.op(WORKLOAD, Op::QueueEntered { token: 1, concert: 1, user: 1 });
        let a = b.op(R0, Op::TokenActivated { group: RANKING, token: 0, concert: 1, user: 0 });
        let mut m = trouble(b);
        let c = b.op(R0, Op::TokenActivated { group: RANKING, token: 1, concert: 1, user: 1 });
        m.extend([limit, a, c]);
        m
    });
    case(Invariant::NoPhantomEvent, &|b| {
        let (_, ack) = b.produce(orders(0), 7, 0);
        let mut m = trouble(b);
        let rb = b.order_rejected(7, 1, 5, 2);
        m.extend([ack, rb]);
        m
    });
    case(Invariant::EventualPublication, &|b| {
        let fact = b.order_committed(8, 1, 1, 8);
        let s = b.send(orders(0), Some(8), 8);
        let mut m = trouble(b);
        m.extend([fact, s]);
        m
    });
    case(Invariant::PerKeyOrder, &|b| {
        let p = orders(1);
        b.poll(R0, RANKING, &[rec(p, 4, 7, 1), rec(p, 6, 7, 3)]);
        let late = b.processed(R0, RANKING, rec(p, 6, 7, 3), true);
        let mut m = trouble(b);
        let early = b.processed(R0, RANKING, rec(p, 4, 7, 1), true);
        m.extend([late, early]);
        m
    });
    case(Invariant::CausalOrder, &|b| {
        let pay = Polled { tp: payments(0), offset: 0, key: Some(7), value: EventId::payment_completed(7) };
        b.poll(R0, RANKING, &[pay]);
        let early = b.processed(R0, RANKING, pay, true);
        let mut m = trouble(b);
        b.poll(R0, RANKING, &[rec(orders(0), 0, 7, 7)]);
        let late = b.processed(R0, RANKING, rec(orders(0), 0, 7, 7), true);
        m.extend([early, late]);
        m
    });
    // A record the group's handler failed on, committed past by a later ack: the failed
    // attempt, the poll that handed it out and the commit that moved past it.
    case(Invariant::EventualProcessing, &|b| {
        let fact = b.order_committed(7, 1, 1, 9);
        let (s, ok, poll, failed, commit) = b.skipped_after_a_failure();
        let mut m = trouble(b);
        m.extend([fact, s, ok, poll, failed, commit]);
        m
    });
    // librdkafka's background auto-commit: records handed out by a poll, the later position
    // committed in the background, then the crash before they were handled.
    case(Invariant::NoSilentLoss, &|b| {
        let (_, ok) = b.produce(orders(0), 7, 0);
        b.consume(C0, CART, &[rec(orders(0), 0, 7, 7)]);
        let poll = b.poll(R0, RANKING, &[rec(orders(0), 0, 7, 7)]);
        let commit = b.op(R0, Op::Commit { group: RANKING, generation: 1, offsets: vec![(orders(0), 1)], error: None });
        let crash = b.op(R0, Op::Crashed);
        vec![ok, poll, commit, crash]
    });
    case(Invariant::Liveness, &|b| {
        let lag = b.op(WORKLOAD, Op::FinalLag { group: RANKING, tp: orders(1), lag: 3 });
        let mut m = trouble(b);
        m.push(lag);
        m
    });
    case(Invariant::EffectOnce, &|b| {
        let p = orders(1);
        b.poll(R0, RANKING, &[rec(p, 1, 2, 2)]);
        let first = b.processed(R0, RANKING, rec(p, 1, 2, 2), true);
        let mut m = trouble(b);
        b.poll(R1, RANKING, &[rec(p, 1, 2, 2)]);
        let second = b.processed(R1, RANKING, rec(p, 1, 2, 2), true);
        m.extend([first, second]);
        m
    });
    case(Invariant::LostWrite, &|b| {
        let p = orders(0);
        b.produce(p, 1, 0);
        let (_, lost) = b.produce(p, 2, 1);
        b.produce(p, 3, 2);
        let mut m = trouble(b);
        let read = b.poll(R0, RANKING, &[rec(p, 0, 1, 1), rec(p, 2, 3, 3)]);
        m.extend([lost, read]);
        m
    });
    case(Invariant::Duplicate, &|b| {
        let p = orders(1);
        let (_, first) = b.produce(p, 5, 0);
        let mut m = trouble(b);
        b.send(p, Some(5), 5);
        let again = b.send_ok(p, Some(5), 5, Some(1));
        m.extend([first, again]);
        m
    });
    case(Invariant::InconsistentOffsets, &|b| {
        let p = orders(1);
        let (_, ok) = b.produce(p, 1, 0);
        let mut m = trouble(b);
        let (_, ok2) = b.produce(p, 2, 0);
        m.extend([ok, ok2]);
        m
    });
    // A late response, the request timeout and the retry that landed behind a later send.
    case(Invariant::NonmonotonicSend, &|b| {
        use crate::history::DisconnectReason;
        let p = orders(0);
        let first = b.send(p, Some(7), 1);
        b.send(p, Some(7), 2);
        let late =
            b.op(NodeId(0), Op::Retransmitted { peer: SERVICE, retransmissions: 2, late_us: 600_000, queued: 1 });
        let lost = b.op(NodeId(0), Op::Discarded { peer: SERVICE, retransmissions: 1, late_us: 300_000, queued: 0 });
        let timeout = b.op(
            SERVICE,
            Op::Disconnected {
                peer: NodeId(0),
                reason: DisconnectReason::RequestTimeout,
                in_flight: 2,
                coordinator: false,
            },
        );
        let second_ok = b.send_ok(p, Some(7), 2, Some(0));
        let retried_ok = b.send_ok(p, Some(7), 1, Some(1));
        let _ = (second_ok, retried_ok);
        // The earlier send (1) landed after the later one (2): the story shows both sends, their
        // acknowledgements, the late and the lost segment and the timeout.
        vec![first, late, lost, timeout, second_ok, retried_ok]
    });
    case(Invariant::NonmonotonicPoll, &|b| {
        let p = orders(0);
        let first = b.poll(R0, RANKING, &[rec(p, 0, 1, 1), rec(p, 1, 2, 2)]);
        let mut m = trouble(b);
        let again = b.poll(R0, RANKING, &[rec(p, 1, 2, 2), rec(p, 2, 3, 3)]);
        m.extend([first, again]);
        m
    });
    case(Invariant::PollSkip, &|b| {
        let p = orders(1);
        let first = b.poll(R0, RANKING, &[rec(p, 0, 1, 1)]);
        let mut m = trouble(b);
        let jump = b.poll(R0, RANKING, &[rec(p, 3, 2, 2)]);
        m.extend([first, jump]);
        m
    });
    let _ = CART;
    out
}

#[test]
fn every_checker_tells_the_story_of_a_known_violation() {
    let cases = cases();
    for invariant in Invariant::ALL {
        let case = cases.iter().find(|c| c.invariant == invariant);
        let case = case.unwrap_or_else(|| panic!("no story case for {invariant}"));
        let violations = invariant.check(&case.history);
        assert!(!violations.is_empty(), "{invariant}: the known violation was not found");
        let story = story_entries(&case.history, &violations[0].entries);
        for &i in &case.must {
            assert!(
                story.contains(&i),
                "{invariant}: the story lacks entry {i} ({}):\n{}",
                case.history.describe(i),
                story.iter().map(|&j| case.history.describe(j)).collect::<Vec<_>>().join("\n")
            );
        }
    }
}
