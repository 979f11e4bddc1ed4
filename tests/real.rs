//! The real backend's quick protocol tests: the same services on rdkafka against librdkafka's
//! in-process mock cluster, judged by the same checkers, compared with the simulator. Apache
//! Kafka's are in tests/kafka.rs and tests/differential.rs.

mod common;

use common::for_real;
use evsim_model::checkers::Invariant;
use evsim_model::scenario::{FaultKind, Partitioner, PublishStrategy, Scenario};
use evsim_real::diff::{Difference, compare};
use evsim_real::{BrokerKind, BrokerOptions, RealOutcome, run_real};
use evsim_sim::{RunOutcome, run_scenario};

fn real(s: &Scenario, kind: BrokerKind) -> RealOutcome {
    run_real(s, s.run.seed, &BrokerOptions::new(kind)).unwrap_or_else(|e| panic!("{} on {}: {e}", s.name, kind.name()))
}

fn differences(sim: &RunOutcome, real: &RealOutcome) -> Vec<Difference> {
    compare(&sim.history, &sim.verdicts, &real.history, &real.verdicts, real.target.name())
}

/// Neither run is vacuous: both moved records end to end and fired their faults.
fn assert_moved(sim: &RunOutcome, real: &RealOutcome) {
    assert_eq!(sim.vacuous, None, "the simulated run proves nothing");
    assert_eq!(real.vacuous, None, "the real run proves nothing");
}

fn violated(verdicts: &[evsim_sim::Verdict], inv: Invariant) -> bool {
    verdicts.iter().any(|v| v.invariant == inv && !v.violations.is_empty())
}

/// Run `s` on the simulator and on `kind`; both must move records and agree on everything.
fn assert_agree(s: &Scenario, kind: BrokerKind) -> (RunOutcome, RealOutcome) {
    let sim = run_scenario(s, s.run.seed);
    let real = real(s, kind);
    assert!(real.stats.records_produced > 0 && real.stats.records_consumed > 0, "{}: {:?}", s.name, real.vacuous);
    assert_eq!(real.placement_mismatches, 0, "{}: librdkafka placed records elsewhere", s.name);
    let diffs = differences(&sim, &real);
    assert!(diffs.is_empty(), "{} on {}: {diffs:#?}", s.name, kind.name());
    (sim, real)
}

#[test]
fn mock_cluster_runs_order_basic_like_the_simulator() {
    let s = for_real(common::scenario("order-basic"), 2_000, 100.0);
    let (sim, real) = assert_agree(&s, BrokerKind::Mock);
    assert!(real.passed(), "{:?}", real.verdicts);
    assert_eq!(sim.stats.orders_committed, real.stats.orders_committed);
    assert!(real.history.entries.iter().any(|e| matches!(e.op, evsim_model::history::Op::Commit { .. })));
}

/// The order workflow (scenarios/order-workflow.toml, its order service and listener as data)
/// runs on rdkafka as in the simulator: the same requests, decisions, placement and verdicts,
/// with the workflow's entries. Without its stock guard, both oversell.
#[test]
fn mock_cluster_runs_a_workflow_like_the_simulator() {
    use evsim_model::history::Op;
    let s = for_real(common::scenario("order-workflow"), 2_000, 100.0);
    let (sim, real) = assert_agree(&s, BrokerKind::Mock);
    assert!(real.passed(), "{:?}", real.verdicts);
    assert_eq!(sim.stats.orders_committed, real.stats.orders_committed);
    let count = |h: &evsim_model::history::History, f: fn(&Op) -> bool| h.entries.iter().filter(|e| f(&e.op)).count();
    let effects = count(&real.history, |op| matches!(op, Op::Effect { .. }));
    assert_eq!(effects, 2 * real.stats.orders_committed as usize, "ZINCRBY and DEL for each order");
    assert_eq!(count(&real.history, |op| matches!(op, Op::OrderRequested { .. })), 0);
    // The statistics named after the workflow's requests and listeners agree too.
    let named = real.stats.workflow.as_ref().expect("named statistics");
    assert_eq!(named.requests["create-order"].committed, real.stats.orders_committed);
    assert_eq!(named.listeners["order-event-consumer"].effects, effects as u64);
    assert_eq!(sim.stats.workflow, real.stats.workflow);
    assert_eq!(real.history.header.handlers, vec!["create-order", "order-event-consumer"]);

    let text = common::order_workflow_text();
    let guard = "  { require = \"product.stock >= request.qty\", otherwise = \"reject\" },\n";
    let mut base = for_real(common::scenario("order-basic"), 2_000, 100.0);
    base.workload.stock_per_product = 2;
    let flawed = common::with_order_workflow(base, &text.replacen(guard, "", 1));
    let (sim, real) = assert_agree(&flawed, BrokerKind::Mock);
    assert!(violated(&sim.verdicts, Invariant::NoOversell) && violated(&real.verdicts, Invariant::NoOversell));
}

/// Seed 001's orders and payments as data (scenarios/payment-workflow.toml): the follow-up
/// payments, the drawn balances and the compensation run on rdkafka as in the simulator, with
/// the same decisions, placement and verdicts. With the compensation joining the failing
/// transaction (`required`, the seed's code as written), order-state fails on both.
#[test]
fn mock_cluster_runs_the_payment_workflow_like_the_simulator() {
    use evsim_model::history::{History, Op};
    let s = for_real(common::scenario("payment-workflow"), 2_000, 100.0);
    let (sim, real) = assert_agree(&s, BrokerKind::Mock);
    assert!(real.passed(), "{:?}", real.verdicts);
    let count = |h: &History, handler: u16| {
        h.entries.iter().filter(|e| matches!(e.op, Op::TxnCommitted { handler: x, .. } if x == handler)).count()
    };
    // Handlers: create-order, pay, the two listeners, pay/compensation.
    let (paid, compensated) = (count(&real.history, 1), count(&real.history, 4));
    assert!(paid > 100 && compensated > 0, "{paid} payments, {compensated} compensations");
    assert_eq!((count(&sim.history, 1), count(&sim.history, 4)), (paid, compensated));

    let mut base = for_real(common::scenario("payment-basic"), 2_000, 100.0);
    let payment = base.services.iter_mut().find(|x| x.kind == evsim_model::scenario::ServiceKind::PaymentService);
    payment.expect("a payment service").compensation = evsim_model::scenario::Compensation::SameTransaction;
    let rolled_back = common::with_payment_workflow(base, &common::payment_workflow_text());
    let (sim, real) = assert_agree(&rolled_back, BrokerKind::Mock);
    let order_state = Invariant::declared("order-state");
    assert!(violated(&sim.verdicts, order_state) && violated(&real.verdicts, order_state));
    assert_eq!(count(&real.history, 4), 0, "no compensation committed");
    // Its tables still name compiled-in kinds; the workflow, not the compiled-in workload, ran.
    let compiled = real.history.entries.iter().filter(|e| matches!(e.op, Op::OrderRequested { .. })).count();
    assert_eq!((compiled, real.stats.requests), (0, sim.stats.requests));
}

/// Seeds 002/003's coupons as data (`workflows/coupon.toml`): the API without a transaction
/// (a Redis set first, refusing repeats), double clicks, and the issuer counting under the
/// coupon's row lock run on rdkafka as in the simulator, with the same decisions, placement
/// and verdicts; the same with the db-unique dedup, whose caught constraint rejects records.
#[test]
fn mock_cluster_runs_the_coupon_workflow_like_the_simulator() {
    use evsim_model::history::{History, Op};
    use evsim_model::scenario::CouponDedup;
    let count = |h: &History, f: fn(&Op) -> bool| h.entries.iter().filter(|e| f(&e.op)).count();
    for dedup in [CouponDedup::CacheSet, CouponDedup::DbUnique] {
        let mut base = common::scenario("coupon-seed003");
        base.services[0].dedup = dedup;
        base.workload.coupon_quantity = 1_000_000; // never sold out: refusals are the dedup's
        base.workload.users = 100;
        let s = for_real(common::with_coupon_workflow(base), 2_000, 100.0);
        let (sim, real) = assert_agree(&s, BrokerKind::Mock);
        assert!(real.passed(), "{dedup:?}: {:?}", real.verdicts);
        let refusals = |h: &History| match dedup {
            CouponDedup::CacheSet => count(h, |op| matches!(op, Op::Refused { .. })),
            _ => count(h, |op| matches!(op, Op::ListenerRejected { .. })),
        };
        assert!(refusals(&real.history) > 10, "{dedup:?}: {} refusals", refusals(&real.history));
        assert_eq!(refusals(&real.history), refusals(&sim.history), "{dedup:?}");
    }
}

/// Seed 002's waiting queue as data (`workflows/queue.toml`): the API sends tokens without a
/// transaction and the activator group, paced by its polls, activates them; the declared
/// `fifo` and `rate` invariants are judged from the real run's sends and effects as from the
/// simulator's, with the same verdicts: one partition and one activator hold both, a partition
/// and an activator per concert break the promised rate on both.
#[test]
fn mock_cluster_runs_the_waiting_queue_workflow_like_the_simulator() {
    for (name, rate_holds) in [("waiting-queue-global", true), ("waiting-queue-per-concert", false)] {
        let s = for_real(common::with_queue_workflow(common::scenario(name)), 3_000, 20.0);
        let (sim, real) = assert_agree(&s, BrokerKind::Mock);
        for o in [&sim.verdicts, &real.verdicts] {
            assert!(!violated(o, Invariant::declared("queue-fifo")), "{name}");
            assert_eq!(violated(o, Invariant::declared("queue-rate")), !rate_holds, "{name}");
        }
    }
}

/// A listener that produces to another topic (`common::with_listener_chain`: `shipper`
/// publishes `order-shipped` with its group's KafkaTemplate, `notifier` reads it) runs on
/// rdkafka as in the simulator: the same decisions, placement and verdicts, and one e-mail per
/// committed order on both. The template sends with its group's producer settings (a
/// `linger.ms` of its own here, which librdkafka must accept).
#[test]
fn mock_cluster_runs_a_listener_that_publishes_like_the_simulator() {
    use evsim_model::history::{History, Op};
    let mut s = for_real(common::with_listener_chain(common::scenario("order-basic")), 2_000, 100.0);
    s.consumers.iter_mut().find(|c| c.name == "shipper").expect("shipper").producer.linger_ms = 20;
    let (sim, real) = assert_agree(&s, BrokerKind::Mock);
    assert!(real.passed(), "{:?}", real.verdicts);
    let emails = |h: &History| {
        let notifier = h.header.handlers.iter().position(|x| x == "notifier").expect("notifier") as u16;
        h.entries.iter().filter(|e| matches!(e.op, Op::Effect { handler, .. } if handler == notifier)).count() as u64
    };
    assert_eq!(emails(&real.history), real.stats.orders_committed);
    assert_eq!(emails(&sim.history), sim.stats.orders_committed);
    assert!(real.stats.orders_committed > 100, "{} orders", real.stats.orders_committed);
}

/// Seed 003's add-after-send API (`dedup = "cache-set-after-send"`) on rdkafka: each request
/// waits for its send's delivery report before its SADD, as in the simulator. With 50 users
/// most requests repeat a user, and they are refused only if the SADDs after the acknowledged
/// sends ran; every request is sent or refused.
#[test]
fn mock_cluster_resumes_a_request_blocked_on_its_send_like_the_simulator() {
    use evsim_model::history::{History, Op};
    let mut s = for_real(common::scenario("coupon-seed003"), 2_000, 100.0);
    s.workload.users = 50;
    let s = common::with_coupon_workflow_dedup(s, Some("cache-set-after-send"));
    let sim = run_scenario(&s, s.run.seed);
    let real = real(&s, BrokerKind::Mock);
    assert_eq!(real.vacuous, None);
    let count = |h: &History, f: fn(&Op) -> bool| h.entries.iter().filter(|e| f(&e.op)).count() as u64;
    for (name, h, stats) in [("sim", &sim.history, &sim.stats), ("real", &real.history, &real.stats)] {
        let requested = stats.workflow.as_ref().expect("stats").requests["issue-coupon"].requested;
        let (sent, acked) =
            (count(h, |op| matches!(op, Op::Send { .. })), count(h, |op| matches!(op, Op::SendOk { .. })));
        let refused = count(h, |op| matches!(op, Op::Refused { .. }));
        assert!(refused > requested / 2, "{name}: {refused} of {requested} refused: the SADDs after the sends ran");
        assert_eq!((sent + refused, acked), (requested, sent), "{name}");
    }
}

/// The order workflow publishing through the outbox, and in its transaction (publish first,
/// as the compiled-in service sends before touching the stock): the real driver previews,
/// sends, commits and writes outbox rows as the simulator does.
#[test]
fn mock_cluster_runs_a_workflow_s_outbox_and_in_transaction_publishing_like_the_simulator() {
    use evsim_model::history::Op;
    let text = common::order_workflow_text();
    let send_first = common::order_workflow_sending_first(&text);
    for (name, text) in [("order-outbox", &text), ("order-publish-in-transaction", &send_first)] {
        let mut base = for_real(common::scenario(name), 2_000, 100.0);
        // Few units of stock: rolled-back orders too (phantom events when sent first).
        base.workload.stock_per_product = 3;
        let s = common::with_order_workflow(base, text);
        let (sim, real) = assert_agree(&s, BrokerKind::Mock);
        assert_eq!(sim.stats.orders_committed, real.stats.orders_committed, "{name}");
        assert!(real.stats.orders_rejected > 0, "{name}: every order committed");
        let count = |f: fn(&Op) -> bool| real.history.entries.iter().filter(|e| f(&e.op)).count() as u64;
        if name == "order-outbox" {
            assert_eq!(count(|op| matches!(op, Op::OutboxInserted { .. })), real.stats.orders_committed);
            assert!(real.passed(), "{:?}", real.verdicts);
        } else {
            assert!(violated(&real.verdicts, Invariant::NoPhantomEvent), "{name}: no phantom event");
            assert_eq!(
                count(|op| matches!(op, Op::Send { .. })),
                real.stats.orders_committed + real.stats.orders_rejected
            );
        }
    }
}

#[test]
fn a_wrong_simulator_partitioner_is_caught_by_the_differential_check() {
    let s = for_real(common::scenario("order-basic"), 1_000, 100.0);
    let real = real(&s, BrokerKind::Mock);
    // The simulator set to librdkafka's default partitioner (CRC32) instead of murmur2: the
    // same keys land elsewhere, and the comparison must say so.
    let mut wrong = s.clone();
    for svc in &mut wrong.services {
        svc.producer.partitioner = Partitioner::Crc32;
    }
    let sim = run_scenario(&wrong, wrong.run.seed);
    let diffs = differences(&sim, &real);
    assert!(diffs.iter().any(|d| d.aspect == "placement"), "no placement difference reported: {diffs:#?}");
    // With the right partitioner there is none.
    let sim = run_scenario(&s, s.run.seed);
    assert!(differences(&sim, &real).iter().all(|d| d.aspect != "placement"));
}

/// A service crash right after the workload's first second: with after-commit publishing the
/// orders whose events were still in the producer's buffer are never published (weak); with the
/// outbox the scheduler publishes them once the service is back (strong). Both drivers must
/// flag the same invariant for the weak design and hold it for the strong one.
#[test]
fn mock_cluster_service_crash_flags_after_commit_and_holds_outbox() {
    let base = for_real(common::scenario("order-basic"), 2_000, 200.0);
    for (publish, weak) in [(PublishStrategy::AfterCommit, true), (PublishStrategy::Outbox, false)] {
        let mut s = base.clone();
        for svc in &mut s.services {
            svc.publish = publish;
            svc.producer.linger_ms = 200; // a full buffer when the process dies
        }
        if publish == PublishStrategy::Outbox {
            s = common::scenario("order-outbox");
            s = for_real(s, 2_000, 200.0);
            for svc in &mut s.services {
                svc.producer.linger_ms = 200;
            }
        }
        let target = format!("{}-0", s.services[0].name);
        s.faults.push(common::fault(FaultKind::ServiceCrash, Some(&target), 1_000, 500));
        let sim = run_scenario(&s, s.run.seed);
        let real = real(&s, BrokerKind::Mock);
        assert!(real.faults.iter().all(|f| f.performed.is_some() && f.fired), "{:?}", real.faults);
        assert_moved(&sim, &real);
        let inv = Invariant::EventualPublication;
        assert_eq!(violated(&sim.verdicts, inv), weak, "simulator, {publish:?}");
        assert_eq!(violated(&real.verdicts, inv), weak, "mock cluster, {publish:?}: {:?}", real.verdicts);
    }
}

/// A workflow's declared external system is down in its outage window on the real backend too
/// (the window in the run's wall-clock time): calls in it fail, the listener's error handler
/// retries, and the run counts them.
#[test]
fn mock_cluster_fails_calls_to_an_external_system_in_its_outage_window() {
    let text = common::order_workflow_text();
    let del = "  { del = \"cart\", key = \"event.user\" },\n";
    let text = text.replacen(del, &format!("{del}  {{ call = \"email\" }},\n"), 1).replacen(
        "[cache.cart]",
        "[systems.email]\noutages_ms = [[600, 1400]]\n\n[cache.cart]",
        1,
    );
    let s = for_real(common::order_basic_as_workflow(&text), 2_000, 100.0);
    let run = real(&s, BrokerKind::Mock);
    let email = &run.stats.workflow.as_ref().expect("named statistics").systems["email"];
    assert!(email.failed_down > 0 && email.calls > email.failed_down, "{email:?}");
    assert!(run.history.entries.iter().any(|e| matches!(e.op, evsim_model::history::Op::Processed { ok: false, .. })));
    assert_eq!(run.vacuous, None);
}
