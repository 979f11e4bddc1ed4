//! Workflow files run by the simulator (issue 15): seed 001's order creation written in the
//! language, as it is and with its flaw put back, judged by the invariants it declares.

mod common;

use evsim_model::checkers::Invariant;
use evsim_model::history::Op;

fn no_oversell(o: &evsim_sim::RunOutcome) -> &[evsim_model::checkers::Violation] {
    &o.verdicts.iter().find(|v| v.invariant == Invariant::NoOversell).expect("a verdict").violations
}

/// Without the guard on the stock (seed 001's `if (product.getStock() < quantity) throw`), the
/// hot products sell below zero: the declared `no-oversell` fires at the commit that wrote the
/// row. With it, the same requests hold.
#[test]
fn the_order_workflow_without_its_stock_guard_oversells() {
    let text = common::order_workflow_text();
    let guard = "  { require = \"product.stock >= request.qty\", otherwise = \"reject\" },\n";
    assert!(text.contains(guard));
    let flawed = common::order_basic_as_workflow(&text.replacen(guard, "", 1));
    let o = evsim_sim::run_scenario(&flawed, 1);
    let v = no_oversell(&o);
    assert!(!v.is_empty(), "no oversell without the guard");
    assert!(v[0].message.contains("breaks `product.stock >= 0`"), "{}", v[0].message);
    let commit = v[0].entries[0];
    assert!(matches!(o.history.entries[commit].op, Op::TxnCommitted { .. }), "{:?}", o.history.entries[commit]);
    assert!(!o.passed());

    let fixed = evsim_sim::run_scenario(&common::order_basic_as_workflow(&text), 1);
    assert_eq!(no_oversell(&fixed), &[] as &[evsim_model::checkers::Violation]);
    assert!(fixed.passed(), "{:?}", fixed.vacuous);
}

/// order-basic with `from` replaced by `to` in the order workflow, run with seed 1: the run
/// must stop without verdicts; returns why.
fn stopped(from: &str, to: &str) -> String {
    let text = common::order_workflow_text();
    assert!(text.contains(from), "the order workflow has no `{from}`");
    let o = evsim_sim::run_scenario(&common::order_basic_as_workflow(&text.replacen(from, to, 1)), 1);
    assert!(!o.passed());
    o.stopped.expect("stopped")
}

/// An expression that overflows stops the run's verdicts: the workflow is wrong, and no
/// verdict is given rather than a wrong one.
#[test]
fn an_expression_that_overflows_gives_no_verdict() {
    let why = stopped(
        "set = { stock = \"product.stock - request.qty\" }",
        "set = { stock = \"product.stock - request.qty * 9223372036854775807\" }",
    );
    assert!(why.contains("create-order, step 3") && why.contains("overflow"), "{why}");
}

/// An event whose subject is negative cannot be told apart from another: no verdict.
#[test]
fn a_negative_event_subject_gives_no_verdict() {
    let why = stopped("order_id = \"request.id\"", "order_id = \"0 - request.id\"");
    assert!(why.contains("event order-created published with subject -"), "{why}");
}

/// Two events on one topic: the order listener acts on `order-created` records only, and a
/// record of the other event passes through it without effect (its fields are not an order's).
#[test]
fn a_listener_acts_on_its_own_event_only() {
    let text = common::order_workflow_text()
        + r#"
[events.order-noted]
topic = "order-created"
key = "note_id"
fields = { note_id = "int", user = "int" }

[requests.note-order]
service = "order-service"
rate_per_sec = 200
fields = { user = "uniform(0, params.users - 1)" }
transaction = [
  { publish = "order-noted", values = { note_id = "request.id", user = "request.user" } },
]
"#;
    let o = evsim_sim::run_scenario(&common::order_basic_as_workflow(&text), 1);
    let violated: Vec<_> = o
        .verdicts
        .iter()
        .filter(|v| !v.violations.is_empty())
        .map(|v| (v.invariant, &v.violations[0].message))
        .collect();
    assert!(o.passed(), "{:?} {:?} {violated:?}", o.stopped, o.vacuous);
    let header = &o.history;
    let (mut orders, mut notes_read, mut effects) = (0, 0, 0);
    for e in &o.history.entries {
        match &e.op {
            Op::TxnCommitted { event: Some(ev), .. } if header.event_name(ev.kind()) == "order-created" => orders += 1,
            Op::Processed { record, ok: true, .. } if header.event_name(record.value.kind()) == "order-noted" => {
                notes_read += 1
            }
            Op::Effect { cause, .. } => {
                assert_eq!(header.event_name(cause.kind()), "order-created", "an effect of another event");
                effects += 1;
            }
            _ => {}
        }
    }
    assert!(notes_read > 1_000, "the listener read the notes: {notes_read}");
    assert_eq!(effects, 2 * orders, "ZINCRBY and DEL for each order, nothing for a note");
}

/// A uniqueness invariant over the order workflow, "each user orders at most once": without a
/// constraint it breaks at the commit of a user's second order; with a unique constraint on
/// `orders.user` the second order's insert throws (DataIntegrityViolationException), the
/// transaction rolls back, and the same requests hold it.
#[test]
fn a_uniqueness_invariant_fires_without_a_constraint_and_holds_with_one() {
    let claim = "\n[invariants.one-order-per-user]\nunique = [\"orders.user\"]\n";
    let text = common::order_workflow_text() + claim;
    let verdict = |o: &evsim_sim::RunOutcome| {
        let inv = Invariant::declared("one-order-per-user");
        o.verdicts.iter().find(|v| v.invariant == inv).expect("a verdict").violations.clone()
    };
    let o = evsim_sim::run_scenario(&common::order_basic_as_workflow(&text), 1);
    let v = verdict(&o);
    assert!(!v.is_empty(), "5,000 users, thousands of orders: some user ordered twice");
    assert!(v[0].message.contains("breaks `unique(orders.user)`"), "{}", v[0].message);
    assert!(matches!(o.history.entries[v[0].entries[0]].op, Op::TxnCommitted { .. }));

    let line = "fields = { user = \"int\", product = \"int\", qty = \"int\", status = [\"PENDING\", \"PAID\", \"CANCELLED\"] }\n";
    assert!(text.contains(line));
    let constrained = text.replacen(line, &format!("{line}unique = [[\"user\"]]\n"), 1);
    let o = evsim_sim::run_scenario(&common::order_basic_as_workflow(&constrained), 1);
    assert_eq!(verdict(&o), vec![]);
    let rolled_back = o.history.entries.iter().filter(|e| matches!(e.op, Op::TxnRolledBack { .. })).count();
    assert!(rolled_back > 1_000, "second orders refused by the constraint: {rolled_back}");
}

/// A listener that produces to another topic: `shipper` publishes `order-shipped` for each
/// order it reads, with a KafkaTemplate of its own group (its sends are its consumers'
/// entries), and `notifier` consumes it with the fields it carries. Every committed order is
/// e-mailed once, and the chain's records move through the cluster like the service's.
#[test]
fn a_listener_publishes_to_another_topic_for_the_next_listener() {
    let o = evsim_sim::run_scenario(&common::with_listener_chain(common::scenario("order-basic")), 1);
    assert!(o.passed(), "{:?} {:?}", o.stopped, o.vacuous);
    let h = &o.history;
    let handler = |name: &str| h.header.handlers.iter().position(|x| x == name).expect("a handler") as u16;
    let (shipper, notifier, ranking) = (handler("shipper"), handler("notifier"), handler("order-event-consumer"));
    let (mut orders, mut shipped_sends, mut acked, mut emails) = (0, 0, 0, 0);
    for e in &h.entries {
        match &e.op {
            Op::TxnCommitted { event: Some(_), .. } => orders += 1,
            Op::Send { value, .. } if h.event_name(value.kind()) == "order-shipped" => {
                assert!(h.node_name(e.process).starts_with("shipper-"), "sent by {}", h.node_name(e.process));
                shipped_sends += 1;
            }
            Op::SendOk { value, .. } if h.event_name(value.kind()) == "order-shipped" => acked += 1,
            Op::Effect { handler: x, .. } if *x == notifier => emails += 1,
            Op::Effect { handler: x, .. } => assert!(*x == shipper || *x == ranking, "an effect of handler {x}"),
            _ => {}
        }
    }
    assert!(orders > 4_000, "{orders} orders");
    assert_eq!((shipped_sends, acked, emails), (orders, orders, orders), "one shipment and one e-mail per order");
    assert_eq!(o.stats.handler_failures, 0, "every record carried its quantity");
}

/// A publishing listener's KafkaTemplate takes the group's producer settings
/// (`[consumers.<name>.producer]`): with `linger.ms = 200`, `shipper`'s sends wait for their
/// batch to fill or the linger to pass, so they are acknowledged about 100 ms later on average,
/// against a few milliseconds with the Java producer's defaults; every shipment still arrives.
#[test]
fn a_publishing_listeners_template_sends_with_its_groups_producer_settings() {
    let latency = |linger_ms: Option<u64>| {
        let mut s = common::with_listener_chain(common::scenario("order-basic"));
        if let Some(ms) = linger_ms {
            s.consumers.iter_mut().find(|c| c.name == "shipper").expect("shipper").producer.linger_ms = ms;
        }
        let o = evsim_sim::run_scenario(&s, 1);
        assert!(o.passed(), "{:?} {:?}", o.stopped, o.vacuous);
        let h = &o.history;
        let mut sent = std::collections::BTreeMap::new();
        let (mut total, mut acked) = (0u64, 0u64);
        for e in &h.entries {
            match &e.op {
                Op::Send { value, .. } if h.event_name(value.kind()) == "order-shipped" => {
                    sent.insert(*value, e.time);
                }
                Op::SendOk { value, .. } if h.event_name(value.kind()) == "order-shipped" => {
                    total += e.time - sent[value];
                    acked += 1;
                }
                _ => {}
            }
        }
        assert!(acked > 4_000 && acked == sent.len() as u64, "{acked} of {} shipments acknowledged", sent.len());
        total / acked
    };
    let (default, lingering) = (latency(None), latency(Some(200)));
    assert!(default < 20_000, "{default} us with linger.ms = 5");
    assert!(lingering > 60_000 && lingering <= 200_000 + default, "{lingering} us with linger.ms = 200");
}

/// A workflow run's statistics are named after what the workflow declares, and add up with the
/// run's other figures: every create-order request decided, each consumed record's two cache
/// commands, and the payment workflow's compensation counted under its own name, once per
/// payment that rolled back.
#[test]
fn a_workflow_runs_statistics_are_named_after_its_requests_and_listeners() {
    let o = evsim_sim::run_scenario(&common::order_basic_as_workflow(&common::order_workflow_text()), 1);
    let w = o.stats.workflow.as_ref().expect("a workflow run has its statistics");
    let create = &w.requests["create-order"];
    assert_eq!(create.requested, o.stats.requests);
    assert_eq!(create.committed + create.rolled_back, create.requested, "every request decided");
    assert!(create.committed > 1000 && create.rolled_back > 1000, "{create:?}");
    assert_eq!(create.committed, o.stats.records_produced);
    assert_eq!(w.listeners["order-event-consumer"].effects, 2 * o.stats.records_consumed, "ZINCRBY and DEL");
    assert_eq!(w.requests.len() + w.listeners.len(), 2);

    let o = evsim_sim::run_scenario(&common::scenario("payment-workflow"), 1);
    let w = o.stats.workflow.as_ref().expect("a workflow run has its statistics");
    let (pay, compensation) = (&w.requests["pay"], &w.requests["pay/compensation"]);
    assert!(pay.rolled_back > 0, "{pay:?}");
    assert_eq!((compensation.requested, compensation.committed), (0, pay.rolled_back));
    assert!(w.listeners.contains_key("payment-event-consumer"), "{:?}", w.listeners.keys());
    // Without a workflow there is nothing to name.
    let basic = evsim_sim::run_scenario(&common::scenario("order-basic"), 1);
    assert_eq!(basic.stats.workflow, None);
}

/// The order workflow with its listener also calling an e-mail provider declared with `system`
/// (after its cache commands, so a failed call leaves them applied and the record retried).
fn order_with_email(system: &str) -> evsim_model::scenario::Scenario {
    let text = common::order_workflow_text();
    let del = "  { del = \"cart\", key = \"event.user\" },\n";
    assert!(text.contains(del) && text.contains("[cache.cart]"));
    let text = text.replacen(del, &format!("{del}  {{ call = \"email\" }},\n"), 1).replacen(
        "[cache.cart]",
        &format!("[systems.email]\n{system}\n\n[cache.cart]"),
        1,
    );
    common::order_basic_as_workflow(&text)
}

/// A declared external system fails every call in its outage windows, and only there; the
/// listener throws, its error handler retries, and the run says how many calls failed. A window
/// no call meets makes the run vacuous, as a planned fault that never fired.
#[test]
fn an_external_system_fails_calls_in_its_outage_windows() {
    let o = evsim_sim::run_scenario(&order_with_email("outages_ms = [[3000, 5000]]"), 1);
    let email = &o.stats.workflow.as_ref().expect("named statistics").systems["email"];
    assert!(email.failed_down > 10 && email.calls > email.failed_down + 1000, "{email:?}");
    assert_eq!(email.failed_error, 0);
    let failed: Vec<u64> =
        o.history.entries.iter().filter(|e| matches!(e.op, Op::Processed { ok: false, .. })).map(|e| e.time).collect();
    assert!(!failed.is_empty());
    assert!(failed.iter().all(|&t| (3_000_000..5_000_000).contains(&t)), "a failure outside the window: {failed:?}");
    assert_eq!(o.vacuous, None);

    let late = evsim_sim::run_scenario(&order_with_email("outages_ms = [[80000000, 80001000]]"), 1);
    let why = late.vacuous.expect("a window no call met");
    assert!(why.contains("external system `email` were never met"), "{why}");
}

/// A declared error rate fails about that share of calls, drawn from the run's own `external`
/// stream: the same seed gives the same failures, and adding the system changes no request.
#[test]
fn an_external_systems_error_rate_fails_that_share_of_calls_the_same_way_each_time() {
    let s = order_with_email("error_rate = 0.2");
    let (a, b) = (evsim_sim::run_scenario(&s, 3), evsim_sim::run_scenario(&s, 3));
    assert_eq!(a.history_hash, b.history_hash);
    let email = &a.stats.workflow.as_ref().expect("named statistics").systems["email"];
    let share = email.failed_error as f64 / email.calls as f64;
    assert!((0.15..0.25).contains(&share), "{email:?}");
    assert_eq!(email.failed_down, 0);
    let plain = evsim_sim::run_scenario(&common::order_basic_as_workflow(&common::order_workflow_text()), 3);
    let requested =
        |o: &evsim_sim::RunOutcome| o.history.entries.iter().filter(|e| matches!(e.op, Op::Requested { .. })).count();
    assert_eq!(requested(&a), requested(&plain), "the workload stream is untouched");
}

/// Seed 003's own alternative, `dedup = "cache-set-after-send"`: the coupon API checks the set
/// (SISMEMBER), sends and waits for the acknowledgement (`send(...).get()`), and only then adds
/// the user. With the API's producer lingering 20 ms, each send is acknowledged more than 10 ms
/// after it was made, so a double click (10 ms later) finds the user not yet added: it is sent
/// too, and the issuer gives that user a second coupon (coupon-once). Seed 003's design, adding
/// first, refuses the double click whatever the send's latency. The same requests arrive in
/// both runs.
#[test]
fn seed_003s_add_after_send_waits_for_the_acknowledgement_and_lets_a_quick_double_click_through() {
    let run = |dedup: &str| {
        let mut s = common::with_coupon_workflow_dedup(common::scenario("coupon-seed003"), Some(dedup));
        s.services.iter_mut().find(|x| x.name == "coupon-api").expect("the API").producer.linger_ms = 20;
        let o = evsim_sim::run_scenario(&s, 1);
        assert_eq!(o.stopped, None);
        let h = &o.history;
        let sends = h.entries.iter().filter(|e| matches!(e.op, Op::Send { .. })).count();
        let refused = h.entries.iter().filter(|e| matches!(e.op, Op::Refused { .. })).count();
        assert_eq!(o.stats.workflow.as_ref().expect("stats").requests["issue-coupon"].refused, refused as u64);
        let once = Invariant::declared("coupon-once");
        let violated = o.verdicts.iter().any(|v| v.invariant == once && !v.violations.is_empty());
        (sends, refused, violated)
    };
    let (first, after) = (run("cache-set"), run("cache-set-after-send"));
    assert!(first.1 > 1_000 && !first.2, "adding first refuses every repeat: {first:?}");
    assert_eq!(first.0 + first.1, after.0 + after.1, "every request is sent or refused, once");
    assert!(after.0 > first.0 + 10, "double clicks got through while the first send waited: {after:?} {first:?}");
    assert!(after.2, "a user was issued the coupon twice: {after:?}");
}

/// A request that waits for its send is made on the request's own thread: a service that hands
/// its sends to an `@Async` worker (`after-commit-async`) is refused at its `publish`, and
/// `after-commit` is accepted.
#[test]
fn a_request_that_waits_for_its_send_needs_after_commit_publishing() {
    let path = common::root().join("scenarios/coupon-seed003.toml");
    let base = std::fs::read_to_string(&path).expect("coupon-seed003");
    let text = base
        .replace("kind = \"coupon-api\"\n", "")
        .replace("kind = \"coupon-issuer\"\n", "")
        .replace("coupon_rate_per_sec = 200", "coupon_rate_per_sec = 0")
        .replacen("dedup = \"cache-set\"", "publish = \"after-commit\"", 1)
        + "\n[workflow]\nfile = \"workflows/coupon.toml\"\nparams = { dedup = \"cache-set-after-send\" }\n";
    let file = path.display().to_string();
    let s = evsim_sim::files::parse_scenario(&file, &text).unwrap_or_else(|e| panic!("{e}"));
    assert!(s.workflow.as_ref().expect("a workflow").request("issue-coupon").expect("issue-coupon").handler.waits());
    let text = text.replace("publish = \"after-commit\"", "publish = \"after-commit-async\"");
    let e = evsim_sim::files::parse_scenario(&file, &text).expect_err("async publishing refused");
    assert!(e.message.contains("wait for a send"), "{e}");
    assert_eq!(
        e.line,
        text[..text.find("publish = \"after-commit-async\"").expect("there")].lines().count() + 1,
        "{e}"
    );
}
