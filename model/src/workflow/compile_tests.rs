//! The workflow compiler: the bundled order workflow compiles to what the Rust order service
//! does, and each kind of bad input is an error at the file, line and column of its cause.

use super::expr::{Type, Value};
use super::*;
use crate::scenario::line_col;

const ORDER: &str = include_str!("../../../scenarios/workflows/order.toml");

fn order() -> Workflow {
    compile("order.toml", ORDER, &[]).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_order_workflow_compiles_to_seed_001s_order_service() {
    let wf = order();
    assert_eq!(wf.name, "order");
    let product = &wf.tables[wf.table("product").expect("product") as usize];
    assert_eq!(product.fields, vec![("stock".to_string(), Type::Int)]);
    assert_eq!((product.initial_rows, product.initial_values.clone()), (50, vec![Value::Int(300)]));
    let orders = &wf.tables[wf.table("orders").expect("orders") as usize];
    assert_eq!(orders.fields.len(), 4);
    assert_eq!(wf.enums[0], vec!["PENDING", "PAID", "CANCELLED"]);

    let ev = &wf.events[wf.event("order-created").expect("event") as usize];
    assert_eq!((ev.topic.as_str(), ev.key, ev.subject), ("order-created", Some(0), 0));

    let r = wf.request("create-order").expect("create-order");
    assert_eq!(r.service, "order-service");
    assert_eq!(r.rate_per_sec, 1000.0);
    // The file's order is the order of the draws: user, product, qty, as OrderService's workload.
    assert_eq!(
        r.fields,
        vec![
            ("user".to_string(), Draw::Uniform { lo: 0, hi: 4999 }),
            ("product".to_string(), Draw::Zipf { n: 50, s: 1.0 }),
            ("qty".to_string(), Draw::Uniform { lo: 1, hi: 3 }),
        ]
    );
    let t = &r.handler.transaction;
    assert!(matches!(t[0], Step::Read { lock: Lock::ForUpdate, into: 4, missing: Otherwise::Reject, .. }));
    assert!(matches!(t[1], Step::Require { otherwise: Otherwise::Reject, .. }));
    assert!(matches!(&t[2], Step::Update { from: 4, set, .. } if set.len() == 1));
    assert!(matches!(&t[3], Step::Insert { values, .. } if values.len() == 4));
    assert!(matches!(&t[4], Step::Publish { event: 0, values, wait: false } if values.len() == 4));
    // request.id, user, product, qty, then the product row's stock.
    assert_eq!(r.handler.frame, 5);

    let l = wf.listener("order-event-consumer").expect("listener");
    assert_eq!(l.handler.after.len(), 2);
    assert!(matches!(wf.invariants[0], InvariantDecl::Always { ref name, .. } if name == "no-oversell"));
}

#[test]
fn a_guard_evaluates_against_its_frame() {
    let wf = order();
    let r = wf.request("create-order").expect("create-order");
    let Step::Require { cond, .. } = &r.handler.transaction[1] else { panic!("a require") };
    // id 7, user 1, product 2, qty 3; stock 3 then 2.
    let frame = |stock| vec![Value::Int(7), Value::Int(1), Value::Int(2), Value::Int(3), Value::Int(stock)];
    assert_eq!(cond.eval(&frame(3)), Ok(Value::Bool(true)));
    assert_eq!(cond.eval(&frame(2)), Ok(Value::Bool(false)));
    let Step::Update { set, .. } = &r.handler.transaction[2] else { panic!("an update") };
    assert_eq!(set[0].1.eval(&frame(3)), Ok(Value::Int(0)));
}

#[test]
fn a_scenario_binds_parameters() {
    let wf =
        compile("order.toml", ORDER, &[("products".into(), Param::Int(7)), ("rate_per_sec".into(), Param::Float(5.0))])
            .expect("bound");
    assert_eq!(wf.tables[wf.table("product").expect("product") as usize].initial_rows, 7);
    assert_eq!(wf.request("create-order").expect("r").rate_per_sec, 5.0);
    assert!(matches!(wf.request("create-order").expect("r").fields[1].1, Draw::Zipf { n: 7, .. }));
    let e = compile("order.toml", ORDER, &[("products".into(), Param::Str("many".into()))]).expect_err("a string");
    assert!(e.message.contains("an integer for params.products (the type of its default"), "{e}");
    assert!(e.message.ends_with("not a string"), "{e}");
    let e = compile("order.toml", ORDER, &[("prodcuts".into(), Param::Int(7))]).expect_err("unknown");
    assert!(e.message.contains("products") && e.message.contains("prodcuts"), "{e}");
    let e = compile("order.toml", ORDER, &[("products".into(), Param::Int(20_000_000))]).expect_err("too many rows");
    assert!(e.message.contains("at most 10000000 initial rows"), "{e}");
    assert_eq!((e.line, e.column), line_col(ORDER, ORDER.find("\"params.products\", values").expect("count")));
}

/// Replace `from` with `to` in the order workflow: the error must be at the first character of
/// `at` (searched in the changed text, after `to`'s start when `at` is in it) and say `says`.
fn bad(from: &str, to: &str, at: &str, says: &str) {
    bad_in(("order.toml", ORDER), from, to, at, says);
}

/// [`bad`] in workflow file `text`, named `file`.
fn bad_in((file, text): (&str, &str), from: &str, to: &str, at: &str, says: &str) {
    assert!(text.contains(from), "the workflow has no `{from}`");
    let text = text.replacen(from, to, 1);
    let e = compile(file, &text, &[]).expect_err(to);
    let start = text.find(to).unwrap_or(0);
    let pos = text[start..].find(at).map(|i| start + i).or_else(|| text.find(at)).expect("the place");
    assert_eq!((e.line, e.column), line_col(&text, pos), "{to}: {e}");
    assert!(e.message.contains(says), "{to}: `{}` does not say `{says}`", e.message);
    assert!(e.to_string().starts_with(&format!("{file}:")), "{e}");
}

#[test]
fn an_unknown_name_is_an_error_at_its_place() {
    bad(
        "product.stock >= request.qty",
        "product.stok >= request.qty",
        "product.stok",
        "a field of table product (stock)",
    );
    bad(
        "by = \"event.qty\"",
        "by = \"event.amount\"",
        "event.amount",
        "a field of the event (order_id, user, product, qty)",
    );
    bad("read = \"product\"", "read = \"products\"", "\"products\"", "a declared table (orders, product)");
    bad(
        "event = \"order-created\"",
        "event = \"order-creatd\"",
        "\"order-creatd\"",
        "a declared event (order-created)",
    );
    bad("{ publish = \"order-created\"", "{ publish = \"order-cancelled\"", "\"order-cancelled\"", "a declared event");
    bad("{ zincrby = \"ranking\"", "{ zincrby = \"rank\"", "\"rank\"", "a declared cache structure (cart, ranking)");
    bad("params.users - 1", "params.user - 1", "\"uniform(0", "a declared parameter");
    bad(
        "always = \"product.stock >= 0\"",
        "always = \"product.stock >= orders.qty\"",
        "orders.qty",
        "one table per invariant",
    );
    bad("key = \"order_id\"", "key = \"order\"", "\"order\"", "a field of event order-created");
}

#[test]
fn a_type_error_is_an_error_at_its_operator() {
    bad("product.stock >= request.qty", "product.stock >= 'ten'", ">=", "both sides of `>=` of one type");
    bad("status = \"'PENDING'\"", "status = \"'PENDNG'\"", "'PENDNG'", "one of PENDING, PAID, CANCELLED");
    bad(
        "require = \"product.stock >= request.qty\"",
        "require = \"product.stock - request.qty\"",
        "product.stock -",
        "a boolean here",
    );
    bad("fields = { stock = \"int\" }", "fields = { stock = \"integer\" }", "\"integer\"", "a type: \"int\"");
    bad("type = \"sorted-set\"", "type = \"zset\"", "\"zset\"", "a cache type");
}

#[test]
fn a_step_is_one_verb_with_its_own_options() {
    bad(
        "{ del = \"cart\", key = \"event.user\" }",
        "{ del = \"cart\", zincrby = \"ranking\" }",
        "{ del",
        "exactly one verb per step",
    );
    bad(
        "{ del = \"cart\", key = \"event.user\" }",
        "{ del = \"cart\", key = \"event.user\", by = \"1\" }",
        "{ del",
        "`by` only with",
    );
    bad("lock = \"for-update\"", "lok = \"for-update\"", "lok", "unknown field `lok`");
    bad("lock = \"for-update\"", "lock = \"exclusive\"", "\"exclusive\"", "a lock");
    bad("otherwise = \"reject\"", "otherwise = \"rollback\"", "\"rollback\"", "\"reject\" or \"throw\"");
    bad(
        "{ del = \"cart\", key = \"event.user\" }",
        "{ read = \"product\", id = \"event.product\" }",
        "{ read",
        "inside the `transaction` list",
    );
    bad(
        "qty = \"request.qty\", status",
        "status",
        "{ insert",
        "a value for every field of table orders: `qty` is missing",
    );
    bad(
        "{ read = \"product\", id = \"request.product\", lock = \"for-update\" },",
        "",
        "product.stock >= request.qty",
        "is not read before it",
    );
}

#[test]
fn requests_need_rates_and_distributions() {
    bad("rate_per_sec = \"params.rate_per_sec\"", "rate_per_sec = 0", "0\n", "a rate per second above 0");
    bad("uniform(1, params.quantity_max)", "uniform(3, 1)", "\"uniform(3, 1)", "0 <= lo <= hi");
    bad("zipf(params.products, params.zipf_exponent)", "zipf(params.products, hot)", "\"zipf", "a Zipf exponent");
    bad("zipf(params.products, params.zipf_exponent)", "zipf(20_000_000)", "\"zipf", "from 1 to 10000000 values");
    bad("uniform(1, params.quantity_max)", "normal(1, 2)", "normal(1", "uniform(lo, hi), zipf(n, s) or a constant");
}

#[test]
fn names_used_in_expressions_are_identifiers() {
    bad("[tables.orders]", "[tables.order-rows]", "order-rows", "a table name usable in expressions");
    bad("[cache.cart]", "[cache.params]", "params", "a cache name usable in expressions");
}

#[test]
fn a_step_that_cannot_be_reached_is_an_error() {
    // A guard with one answer, false: nothing after it runs, the order never commits.
    bad(
        "require = \"product.stock >= request.qty\"",
        "require = \"params.users < 0\"",
        "\"params.users < 0\"",
        "a condition that can hold",
    );
    bad(
        "require = \"product.stock >= request.qty\"",
        "require = \"params.users / 0 > 1\"",
        "\"params.users / 0",
        "a condition that can be evaluated: division by zero",
    );
    // A guard that always holds is harmless.
    let text = ORDER.replacen("product.stock >= request.qty", "params.users > 0", 1);
    compile("order.toml", &text, &[]).unwrap_or_else(|e| panic!("{e}"));
    // A listener of an event nothing publishes.
    let publish = "  { publish = \"order-created\", values = { order_id = \"request.id\", user = \"request.user\", product = \"request.product\", qty = \"request.qty\" } },\n";
    bad(
        publish,
        "",
        "\"order-created\"\nsteps",
        "nothing publishes `order-created`, so listener `order-event-consumer` can never run",
    );
}

#[test]
fn a_listener_runs_when_a_listener_that_runs_publishes_its_event() {
    // order-created -> order-event-consumer publishes ranked -> audit-ranking, which comes first
    // (in the file and by name): it can run because of a listener that comes after it.
    let chain = ORDER
        .replacen(
            "  { del = \"cart\", key = \"event.user\" },\n]",
            "  { del = \"cart\", key = \"event.user\" },\n  { publish = \"ranked\", values = { product = \"event.product\" } },\n]",
            1,
        )
        .replacen(
            "[listeners.order-event-consumer]",
            "[listeners.audit-ranking]\nevent = \"ranked\"\nsteps = [{ del = \"cart\", key = \"event.product\" }]\n\n\
             [listeners.order-event-consumer]",
            1,
        )
        .replacen(
            "[events.order-created]",
            "[events.ranked]\ntopic = \"ranked\"\nkey = \"product\"\nfields = { product = \"int\" }\n\n[events.order-created]",
            1,
        );
    let wf = compile("order.toml", &chain, &[]).unwrap_or_else(|e| panic!("{e}\n{chain}"));
    assert_eq!(wf.listeners.len(), 2);
    // Without the order's publication, neither listener can run: the first by name is named.
    let publish = "  { publish = \"order-created\", values = { order_id = \"request.id\", user = \"request.user\", product = \"request.product\", qty = \"request.qty\" } },\n";
    let e = compile("order.toml", &chain.replacen(publish, "", 1), &[]).expect_err("dead listeners");
    assert!(e.message.contains("listener `audit-ranking` can never run"), "{e}");
}

const PAYMENT: &str = include_str!("../../../scenarios/workflows/payment.toml");

/// Replace `from` with `to` in the payment workflow; the error is at `at` (searched from
/// `to`'s start) and says `says`.
fn bad_payment(from: &str, to: &str, at: &str, says: &str) {
    bad_in(("payment.toml", PAYMENT), from, to, at, says);
}

#[test]
fn the_payment_workflow_compiles_its_follow_up_compensation_and_drawn_balances() {
    let wf = compile("payment.toml", PAYMENT, &[]).unwrap_or_else(|e| panic!("{e}"));
    let pay = wf.request("pay").expect("pay");
    let create = wf.requests.iter().position(|r| r.name == "create-order").expect("create-order") as u16;
    assert_eq!(pay.follows, Some(FollowUp { parent: create, delay_us: 100_000 }));
    assert_eq!(pay.rate_per_sec, 0.0);
    // amount = parent.qty * params.price, read from the order's slots (id, user, product, qty).
    let Draw::Parent(amount, Type::Int) = &pay.fields[1].1 else { panic!("{:?}", pay.fields) };
    let parent = [Value::Int(7), Value::Int(3), Value::Int(1), Value::Int(2)];
    assert_eq!(amount.eval(&parent), Ok(Value::Int(20_000)));
    let c = &wf.compensations[pay.compensation.expect("a compensation") as usize];
    assert_eq!((c.propagation, c.handler.transaction.len()), (Propagation::RequiresNew, 5));
    assert!(matches!(pay.handler.transaction[3], Step::Require { compensate: true, otherwise: Otherwise::Throw, .. }));
    assert_eq!(wf.handler_name(wf.compensation_handler(1).expect("pay's")), "pay/compensation");
    let users = &wf.tables[wf.table("users").expect("users") as usize];
    assert_eq!(
        users.initial_draws,
        vec![(0, RowDraw::Chance { p: 0.1, then: Value::Int(0), otherwise: Value::Int(100_000) })]
    );
    let bound = compile("payment.toml", PAYMENT, &[("compensation".into(), Param::Str("required".into()))]);
    let bound = bound.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(bound.compensations[0].propagation, Propagation::Required);
}

#[test]
fn follow_ups_and_compensations_are_checked_where_written() {
    bad_payment(
        "follows = \"create-order\"",
        "follows = \"create\"",
        "\"create\"",
        "a declared request (create-order, pay)",
    );
    bad_payment("follows = \"create-order\"", "follows = \"pay\"", "\"pay\"", "comes back to itself");
    bad_payment(
        "follows = \"create-order\"",
        "rate_per_sec = 5.0\nfollows = \"create-order\"",
        "pay]",
        "exactly one of `rate_per_sec`",
    );
    bad_payment("delay_ms = \"params.pay_after_ms\"", "delay_ms = -1", "-1", "a delay from 0 to 86400000 ms");
    bad_payment(
        "rate_per_sec = \"params.rate_per_sec\"",
        "rate_per_sec = \"params.rate_per_sec\"\ndelay_ms = 5",
        "5",
        "`delay_ms` only with `follows`",
    );
    bad_payment(
        "\"parent.qty * params.price\"",
        "\"parent.quantity * params.price\"",
        "parent.quantity",
        "a field of the parent (id, user, product, qty)",
    );
    bad_payment(
        "propagation = \"params.compensation\"",
        "propagation = \"nested\"",
        "\"nested\"",
        "a propagation: \"required\"",
    );
    bad_payment(
        "otherwise = \"throw\", compensate = true",
        "otherwise = \"throw\"",
        "[requests.pay.compensation]",
        "none does, so it can never run",
    );
    bad_payment(
        "{ require = \"product.stock >= request.qty\", otherwise = \"reject\" }",
        "{ require = \"product.stock >= request.qty\", otherwise = \"reject\", compensate = true }",
        "true }",
        "`compensate` on a `require` in the `transaction` of a request that declares",
    );
    bad_payment(
        "{ del = \"cart\", key = \"event.user\" }",
        "{ del = \"cart\", key = \"event.user\", compensate = true }",
        "{ del",
        "`compensate` only with require",
    );
    bad_payment(
        "\"chance(params.insufficient_balance_rate, 0, params.balance)\"",
        "\"chance(1.5, 0, params.balance)\"",
        "\"chance(1.5",
        "a probability from 0 to 1",
    );
    bad_payment(
        "\"chance(params.insufficient_balance_rate, 0, params.balance)\"",
        "\"chance(0.5, 0, 'rich')\"",
        "\"chance(0.5",
        "an integer here",
    );
}

#[test]
fn a_uniqueness_invariant_names_fields_of_one_table() {
    let claim = "always = \"product.stock >= 0\"";
    bad(
        claim,
        "unique = [\"orders.user\", \"product.stock\"]",
        "\"product.stock\"",
        "fields of one table per invariant",
    );
    bad(
        claim,
        "unique = [\"orders.buyer\"]",
        "\"orders.buyer\"",
        "a field of table orders (user, product, qty, status)",
    );
    bad(claim, "unique = [\"order.user\"]", "\"order.user\"", "a declared table (orders, product)");
    bad(claim, "unique = [\"user\"]", "\"user\"", "a table's field (table.field)");
    bad(claim, "unique = []", "[]", "one or more fields of a table");
    bad(claim, "unique = [\"orders.user\", \"orders.user\"]", "\"orders.user\"]", "each field once");
    bad(
        claim,
        "unique = [\"orders.user\"]\nalways = \"product.stock >= 0\"",
        "[invariants",
        "exactly one of `always`, `eventually`, `unique`, `fifo`, `rate` or `transition`",
    );
}

#[test]
fn a_caught_duplicate_is_an_insert_s_and_a_conditional_constraint_needs_one() {
    let update = "{ update = \"product\", set = { stock = \"product.stock - request.qty\" } }";
    let caught =
        "{ update = \"product\", set = { stock = \"product.stock - request.qty\" }, on_duplicate = \"reject\" }";
    bad(update, caught, "{ update", "`on_duplicate` only with insert, not with `update`");
    let insert = "status = \"'PENDING'\" } }";
    bad(insert, "status = \"'PENDING'\" }, on_duplicate = \"ignore\" }", "\"ignore\"", "\"reject\" or \"throw\"");
    let table = "fields = { stock = \"int\" }\n";
    bad(
        table,
        "fields = { stock = \"int\" }\nunique_when = \"true\"\n",
        "\"true\"",
        "`unique_when` on a table with `unique`",
    );
    bad(
        table,
        "fields = { stock = \"int\" }\nunique = [[\"stock\"]]\nunique_when = \"params.products\"\n",
        "params.products\"",
        "a boolean",
    );
}

#[test]
fn a_transition_invariant_reads_a_row_as_it_was_and_as_written() {
    let claim = "always = \"product.stock >= 0\"";
    let forward = "transition = \"orders\"\nholds = \"old.status == new.status or old.status == 'PENDING'\"";
    let text = ORDER.replacen(claim, forward, 1);
    let wf = compile("order.toml", &text, &[]).unwrap_or_else(|e| panic!("{e}"));
    let orders = wf.table("orders").expect("orders");
    assert!(matches!(&wf.invariants[0], InvariantDecl::Transition { table, .. } if *table == orders));
    assert_eq!(wf.invariants[0].text(), "old.status == new.status or old.status == 'PENDING'");

    bad(claim, "transition = \"orders\"\nholds = \"old.stat == 'PAID'\"", "old.stat", "a field of table orders");
    bad(
        claim,
        "transition = \"orders\"\nholds = \"orders.status == 'PAID'\"",
        "orders.status",
        "old.<field> or new.<field>",
    );
    bad(claim, "transition = \"order\"\nholds = \"true\"", "\"order\"", "a declared table (orders, product)");
    bad(claim, "transition = \"orders\"", "\"orders\"", "`holds = ");
    bad(claim, "holds = \"true\"\nunique = [\"orders.user\"]", "\"true\"", "`holds` with `transition");
    bad(claim, "transition = \"orders\"\nholds = \"old.qty\"", "old.qty", "a boolean");
}

const QUEUE: &str = include_str!("../../../scenarios/workflows/queue.toml");

#[test]
fn fifo_and_rate_claims_name_a_listener_and_a_pace() {
    let wf = compile("queue.toml", QUEUE, &[("interval_ms".into(), Param::Int(500))]).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = wf.invariants.iter().map(InvariantDecl::name).collect();
    assert_eq!(names, ["queue-fifo", "queue-rate"]);
    assert_eq!(
        wf.invariants[0],
        InvariantDecl::Fifo { name: "queue-fifo".into(), listener: 0, text: "fifo(token-activator)".into() }
    );
    assert!(matches!(wf.invariants[1], InvariantDecl::Rate { listener: 0, max: 10, per_us: 500_000, .. }));
    assert_eq!((wf.invariants[0].table(), wf.invariants[1].text()), (None, "rate(token-activator, 10 per 500 ms)"));

    let q = ("queue.toml", QUEUE);
    let fifo = "fifo = \"token-activator\"";
    bad_in(q, fifo, "fifo = \"activator\"", "\"activator\"", "a declared listener (token-activator), not `activator`");
    bad_in(q, fifo, "fifo = \"token-activator\"\nalways = \"1 > 0\"", "[invariants.queue-fifo]", "exactly one of");
    let rate = "max = \"params.tokens_per_interval\"";
    bad_in(q, rate, "max = \"0\"", "\"0\"", "from 1 to 1000000 effects, found 0");
    bad_in(q, rate, "max = \"'ten'\"", "'ten'", "an integer");
    bad_in(q, "per_ms = \"params.interval_ms\"", "per_ms = \"0\"", "\"0\"", "a window from 1 to 86400000 ms");
    bad_in(q, "listener = \"token-activator\", max", "listener = \"api\", max", "\"api\"", "a declared listener");
    bad_in(
        q,
        "per_ms = \"params.interval_ms\"",
        "per_ms = \"params.interval_ms\", burst = 2",
        "burst",
        "unknown field",
    );
}

const COUPON: &str = include_str!("../../../scenarios/workflows/coupon.toml");

#[test]
fn steps_exist_where_their_condition_holds_and_double_clicks_are_bounded() {
    let variant = |dedup: &str| {
        let wf = compile("coupon.toml", COUPON, &[("dedup".into(), Param::Str(dedup.into()))]);
        wf.unwrap_or_else(|e| panic!("{e}")).request("issue-coupon").expect("issue-coupon").handler.after.len()
    };
    assert_eq!((variant("cache-set"), variant("none")), (3, 1), "SADD and its guard only with the Redis set");
    let wf = compile("coupon.toml", COUPON, &[]).unwrap_or_else(|e| panic!("{e}"));
    let d = wf.request("issue-coupon").expect("issue-coupon").duplicate.clone();
    assert_eq!(d, Some(Duplicate { rate: 0.05, after_us: 10_000 }));

    let bad_coupon = |from: &str, to: &str, at: &str, says: &str| bad_in(("coupon.toml", COUPON), from, to, at, says);
    bad_coupon(
        "when = \"params.dedup == 'cache-set'\" }",
        "when = \"params.dedup\" }",
        "params.dedup\" }",
        "a boolean here",
    );
    bad_coupon(
        "when = \"params.dedup == 'cache-set'\" }",
        "when = \"params.dedupe == 'x'\" }",
        "params.dedupe",
        "a declared parameter",
    );
    // The SADD gone, its answer is not there for the guard.
    bad_coupon(
        "as = \"added\", when = \"params.dedup == 'cache-set'\" }",
        "as = \"added\", when = \"false\" }",
        "added\", otherwise",
        "a name this step can see",
    );
    bad_coupon("rate = \"params.duplicate_request_rate\"", "rate = 2", "2,", "a probability from 0 to 1");
    bad_coupon("after_ms = 10", "after_ms = -10", "-10", "a delay from 0 to 86400000 ms");
}

/// An external system's declaration: an error rate and outage windows, constants (numbers or
/// parameters), each refused at its place when it is not one; a call names it, and a call to a
/// system the file does not declare stays a call that always answers.
#[test]
fn an_external_system_has_an_error_rate_and_outage_windows() {
    let cart = "[cache.cart]\ntype = \"keys\"\n";
    let systems =
        "[systems.email]\nerror_rate = \"params.email_errors\"\noutages_ms = [[2000, \"params.email_back_ms\"]]\n\n";
    let steps = "  { del = \"cart\", key = \"event.user\" },\n";
    let text = ORDER
        .replacen("[params]\n", "[params]\nemail_errors = 0.0\nemail_back_ms = 4000\n", 1)
        .replacen(cart, &format!("{cart}\n{systems}"), 1)
        .replacen(steps, &format!("{steps}  {{ call = \"email\" }},\n  {{ call = \"sms\" }},\n"), 1);
    let params = [("email_errors".into(), Param::Float(0.25)), ("email_back_ms".into(), Param::Int(4500))];
    let wf = compile("order.toml", &text, &params).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        wf.systems,
        vec![System { name: "email".into(), error_rate: 0.25, outages_us: vec![(2_000_000, 4_500_000)] }]
    );
    assert!(wf.systems[0].down_at(2_000_000) && wf.systems[0].down_at(4_499_999) && !wf.systems[0].down_at(4_500_000));
    let calls: Vec<(&str, Option<u16>)> = wf.listeners[0]
        .handler
        .after
        .iter()
        .filter_map(|s| match s {
            Step::Call { system, declared } => Some((system.as_str(), *declared)),
            _ => None,
        })
        .collect();
    assert_eq!(calls, [("email", Some(0)), ("sms", None)]);

    let t = ("order.toml", text.as_str());
    let rate = "error_rate = \"params.email_errors\"";
    bad_in(t, rate, "error_rate = 1.5", "1.5", "a probability from 0 to 1");
    let window = "[[2000, \"params.email_back_ms\"]]";
    bad_in(t, window, "[[5000, 3000]]", "[5000, 3000]", "0 <= start < end <= 86400000, not [5000, 3000]");
    bad_in(t, window, "[[1, 2, 3]]", "[1, 2, 3]", "an outage window [start, end] in ms");
    bad_in(t, window, "[[0, \"params.nope\"]]", "params.nope", "");
    bad_in(t, rate, "latency_ms = 5", "latency_ms", "unknown field");
}

/// `wait = true` (a blocking send) belongs to a request's steps after its transaction: in a
/// transaction, a listener or a compensation it is refused at the option. `sismember` names its
/// answer. The coupon workflow's add-after-send API compiles to a check, a send that waits,
/// then the SADD.
#[test]
fn a_blocking_send_is_a_request_s_and_sismember_names_its_answer() {
    let publish = "{ publish = \"order-created\", values = { order_id = \"request.id\"";
    let waiting = "{ publish = \"order-created\", wait = true, values = { order_id = \"request.id\"";
    bad(publish, waiting, "true", "only in a request's `steps`");
    let del = "{ del = \"cart\", key = \"event.user\" },";
    let listener_waits = "{ del = \"cart\", key = \"event.user\" },\n  { publish = \"order-created\", wait = true, values = { order_id = \"event.order_id\", user = \"event.user\", product = \"event.product\", qty = \"event.qty\" } },";
    bad(del, listener_waits, "true", "a listener's or a compensation's blocking send");
    bad(del, "{ del = \"cart\", key = \"event.user\", wait = true },", "{ del", "`wait` only with publish");

    const COUPON: &str = include_str!("../../../scenarios/workflows/coupon.toml");
    let coupon = ("coupon.toml", COUPON);
    let check =
        "{ sismember = \"coupon_requests\", key = \"request.coupon\", member = \"request.user\", as = \"present\",";
    let unnamed = "{ sismember = \"coupon_requests\", key = \"request.coupon\", member = \"request.user\",";
    let bindings = [("dedup".to_string(), Param::Str("cache-set-after-send".into()))];
    let text = coupon.1.replacen(check, unnamed, 1);
    let e = compile(coupon.0, &text, &bindings).expect_err("a sismember without `as`");
    assert_eq!((e.line, e.column), line_col(&text, text.find(unnamed).expect("there")), "{e}");
    assert!(e.message.contains("`as` for `sismember`"), "{e}");

    let wf = compile("coupon.toml", COUPON, &bindings).unwrap_or_else(|e| panic!("{e}"));
    let h = &wf.request("issue-coupon").expect("issue-coupon").handler;
    assert!(h.waits());
    assert!(matches!(&h.after[0], Step::Cache { command: CacheCommand::Sismember { .. }, answer: Some(_), .. }));
    assert!(matches!(&h.after[1], Step::Require { .. }));
    assert!(matches!(&h.after[2], Step::Publish { wait: true, .. }));
    assert!(matches!(&h.after[3], Step::Cache { command: CacheCommand::Sadd { .. }, answer: None, .. }));
    assert!(
        !compile("coupon.toml", COUPON, &[]).expect("compiles").request("issue-coupon").expect("r").handler.waits()
    );
}
