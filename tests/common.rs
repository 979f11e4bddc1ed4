//! Shared helpers for the integration tests.
#![allow(dead_code)]

use evsim_model::history::{History, Op};
use evsim_model::scenario::{Direction, FaultKind, FaultSpec, Scenario};
use std::path::PathBuf;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Parse `scenarios/<name>.toml`.
pub fn scenario(name: &str) -> Scenario {
    let path = root().join("scenarios").join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    evsim_sim::files::parse_scenario(&path.display().to_string(), &text).unwrap_or_else(|e| panic!("{e}"))
}

/// The names of the files in `scenarios/`, sorted.
pub fn scenario_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("scenarios"))
        .expect("scenarios/")
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "toml").then(|| p.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    names.sort();
    names
}

/// A short version of a scenario, for tests that run many seeds in a debug build.
pub fn shortened(mut s: Scenario, duration_ms: u64) -> Scenario {
    s.run.duration_ms = duration_ms;
    s
}

/// A fault of `kind` on `target` from `at_ms` for `for_ms`, both directions, no rate or delay.
pub fn fault(kind: FaultKind, target: Option<&str>, at_ms: u64, for_ms: u64) -> FaultSpec {
    FaultSpec {
        kind,
        at_ms,
        for_ms: Some(for_ms),
        target: target.map(str::to_string),
        peer: None,
        direction: Direction::Both,
        rate: 0.0,
        delay_ms: 0,
    }
}

/// A fresh directory for one test's files, unique to this process: `evsim-<name>-<pid>` in the
/// system's temp dir. The test removes it when it is done.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("evsim-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// A scenario cut down to run in a few seconds of wall-clock time: `duration_ms` of workload at
/// `rate` orders (or coupon requests, queue entries) per second, and a quiet period long enough
/// for the groups to catch up. No infrastructure faults: those are added by the tests that want
/// them.
pub fn for_real(mut s: Scenario, duration_ms: u64, rate: f64) -> Scenario {
    s.run.duration_ms = duration_ms;
    s.run.quiet_period_ms = 20_000;
    s.faults.clear();
    s.swarm = None;
    let w = &mut s.workload;
    if w.rate_per_sec > 0.0 {
        w.rate_per_sec = rate;
    }
    if w.coupon_rate_per_sec > 0.0 {
        w.coupon_rate_per_sec = rate;
    }
    if w.queue_rate_per_sec > 0.0 {
        w.queue_rate_per_sec = rate;
    }
    // A workflow's request types too.
    if let Some(wf) = s.workflow.as_mut() {
        for r in &mut std::sync::Arc::make_mut(wf).requests {
            if r.follows.is_none() {
                r.rate_per_sec = rate;
            }
        }
    }
    for c in &mut s.consumers {
        // Groups form (and a member lost in the first join is expelled) in seconds, not 45 s.
        c.consumer.session_timeout_ms = c.consumer.session_timeout_ms.min(10_000);
        c.consumer.heartbeat_interval_ms = c.consumer.heartbeat_interval_ms.min(1_000);
    }
    s
}

/// The longest wait, in µs, between a record's send and its acknowledgement.
pub fn longest_ack_wait(h: &History) -> u64 {
    let mut sent = std::collections::BTreeMap::new();
    let mut longest = 0;
    for e in &h.entries {
        match &e.op {
            Op::Send { value, .. } => {
                sent.entry(*value).or_insert(e.time);
            }
            Op::SendOk { value, .. } => {
                if let Some(&t) = sent.get(value) {
                    longest = longest.max(e.time - t);
                }
            }
            _ => {}
        }
    }
    longest
}

/// `scenarios/workflows/order.toml`, seed 001's order creation in the workflow language.
#[allow(dead_code)]
pub fn order_workflow_text() -> String {
    let path = root().join("scenarios/workflows/order.toml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The order workflow `text` with its `publish` step moved to the start of its transaction:
/// the compiled-in service publishing in the transaction sends before it touches the stock.
pub fn order_workflow_sending_first(text: &str) -> String {
    let publish = "  { publish = \"order-created\", values = { order_id = \"request.id\", user = \"request.user\", product = \"request.product\", qty = \"request.qty\" } },\n";
    let first = "transaction = [\n";
    assert!(text.contains(publish) && text.contains(first), "not the order workflow");
    text.replacen(publish, "", 1).replacen(first, &format!("{first}{publish}"), 1)
}

/// order-basic with its order service and listener run from the workflow file `text` (the
/// order workflow, or a variant of it), bound to the scenario's workload settings.
#[allow(dead_code)]
pub fn order_basic_as_workflow(text: &str) -> Scenario {
    with_order_workflow(scenario("order-basic"), text)
}

/// Scenario `s` with its `order-service` and `order-event-consumer` tables run from the
/// workflow file `text`, bound to its workload settings (a uniform product distribution draws
/// `uniform(0, products - 1)`, as the compiled-in workload does).
#[allow(dead_code)]
pub fn with_order_workflow(mut s: Scenario, text: &str) -> Scenario {
    use evsim_model::workflow::compile;
    let w = &s.workload;
    let (text, exponent) = match w.product_distribution {
        evsim_model::scenario::ProductDistribution::Zipf(x) => (text.to_string(), x),
        evsim_model::scenario::ProductDistribution::Uniform => {
            (text.replacen("zipf(params.products, params.zipf_exponent)", "uniform(0, params.products - 1)", 1), 1.0)
        }
    };
    let bindings = order_bindings(w, exponent);
    s.workflow = Some(std::sync::Arc::new(compile("order.toml", &text, &bindings).unwrap_or_else(|e| panic!("{e}"))));
    s
}

/// The order workflow's parameters as workload `w` sets them (products drawn Zipf with
/// `exponent`).
#[allow(dead_code)]
fn order_bindings(
    w: &evsim_model::scenario::WorkloadSpec,
    exponent: f64,
) -> Vec<(String, evsim_model::workflow::Param)> {
    use evsim_model::workflow::Param;
    vec![
        ("products".to_string(), Param::Int(i64::from(w.products))),
        ("stock_per_product".to_string(), Param::Int(w.stock_per_product)),
        ("users".to_string(), Param::Int(i64::from(w.users))),
        ("quantity_max".to_string(), Param::Int(i64::from(w.quantity_max))),
        ("rate_per_sec".to_string(), Param::Float(w.rate_per_sec)),
        ("zipf_exponent".to_string(), Param::Float(exponent)),
    ]
}

/// The payment workflow's text (`scenarios/workflows/payment.toml`).
#[allow(dead_code)]
pub fn payment_workflow_text() -> String {
    let path = root().join("scenarios/workflows/payment.toml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Scenario `s` (seed 001's orders and payments) with its order and payment services and both
/// listeners run from the payment workflow `text`, bound to its workload settings and to its
/// payment service's compensation (`separate-transaction` is `requires-new`,
/// `same-transaction` is `required`).
#[allow(dead_code)]
pub fn with_payment_workflow(mut s: Scenario, text: &str) -> Scenario {
    use evsim_model::scenario::{Compensation, ProductDistribution, ServiceKind};
    use evsim_model::workflow::{Param, compile};
    let w = &s.workload;
    let ProductDistribution::Zipf(exponent) = w.product_distribution else { panic!("the payment scenarios are Zipf") };
    let payment = s.services.iter().find(|x| x.kind == ServiceKind::PaymentService).expect("a payment service");
    let propagation = match payment.compensation {
        Compensation::SeparateTransaction => "requires-new",
        Compensation::SameTransaction => "required",
    };
    let mut bindings = order_bindings(w, exponent);
    bindings.extend([
        ("price".to_string(), Param::Int(w.price)),
        ("balance".to_string(), Param::Int(w.balance)),
        ("insufficient_balance_rate".to_string(), Param::Float(w.insufficient_balance_rate)),
        ("pay_after_ms".to_string(), Param::Int(w.pay_after_ms as i64)),
        ("compensation".to_string(), Param::Str(propagation.to_string())),
    ]);
    s.workflow = Some(std::sync::Arc::new(compile("payment.toml", text, &bindings).unwrap_or_else(|e| panic!("{e}"))));
    s
}

/// Scenario `s` (seed 000's fan-out) with its order service and its three listeners run from
/// `scenarios/workflows/fanout.toml`, bound to its workload settings.
#[allow(dead_code)]
pub fn with_fanout_workflow(mut s: Scenario) -> Scenario {
    use evsim_model::scenario::ProductDistribution;
    let path = root().join("scenarios/workflows/fanout.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let ProductDistribution::Zipf(exponent) = s.workload.product_distribution else { panic!("fanout is Zipf") };
    let bindings = order_bindings(&s.workload, exponent);
    let wf = evsim_model::workflow::compile("fanout.toml", &text, &bindings).unwrap_or_else(|e| panic!("{e}"));
    s.workflow = Some(std::sync::Arc::new(wf));
    s
}

/// Scenario `s` (seeds 002/003's coupons) with its coupon API and issuer group run from
/// `scenarios/workflows/coupon.toml`, bound to its workload settings and its API's dedup.
#[allow(dead_code)]
pub fn with_coupon_workflow(s: Scenario) -> Scenario {
    with_coupon_workflow_dedup(s, None)
}

/// [`with_coupon_workflow`] with the workflow's `dedup` parameter set to `dedup` when given
/// (`cache-set-after-send` has no compiled-in form).
#[allow(dead_code)]
pub fn with_coupon_workflow_dedup(mut s: Scenario, dedup: Option<&str>) -> Scenario {
    use evsim_model::scenario::{CouponDedup, ServiceKind};
    use evsim_model::workflow::Param;
    let path = root().join("scenarios/workflows/coupon.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let api = s.services.iter().find(|x| x.kind == ServiceKind::CouponApi).expect("a coupon API");
    let dedup = dedup.unwrap_or(match api.dedup {
        CouponDedup::None => "none",
        CouponDedup::CacheSet => "cache-set",
        CouponDedup::DbUnique => "db-unique",
    });
    let w = &s.workload;
    let bindings = [
        ("users".to_string(), Param::Int(i64::from(w.users))),
        ("coupons".to_string(), Param::Int(i64::from(w.coupons))),
        ("coupon_quantity".to_string(), Param::Int(i64::from(w.coupon_quantity))),
        ("rate_per_sec".to_string(), Param::Float(w.coupon_rate_per_sec)),
        ("duplicate_request_rate".to_string(), Param::Float(w.duplicate_request_rate)),
        ("dedup".to_string(), Param::Str(dedup.to_string())),
    ];
    let wf = evsim_model::workflow::compile("coupon.toml", &text, &bindings).unwrap_or_else(|e| panic!("{e}"));
    s.workflow = Some(std::sync::Arc::new(wf));
    s
}

/// Scenario `s` (seed 002's waiting queue) with its queue API and activator group run from
/// `scenarios/workflows/queue.toml`, bound to its workload and its activator's pace (the
/// tokens it polls at once, the pause between polls: the rate it promises).
#[allow(dead_code)]
pub fn with_queue_workflow(mut s: Scenario) -> Scenario {
    use evsim_model::workflow::Param;
    let path = root().join("scenarios/workflows/queue.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let activator = s.consumers.iter().find(|c| c.name == "token-activator").expect("an activator group");
    let w = &s.workload;
    let bindings = [
        ("users".to_string(), Param::Int(i64::from(w.users))),
        ("concerts".to_string(), Param::Int(i64::from(w.concerts))),
        ("rate_per_sec".to_string(), Param::Float(w.queue_rate_per_sec)),
        ("tokens_per_interval".to_string(), Param::Int(i64::from(activator.consumer.max_poll_records))),
        ("interval_ms".to_string(), Param::Int(activator.pause_between_polls_ms as i64)),
    ];
    let wf = evsim_model::workflow::compile("queue.toml", &text, &bindings).unwrap_or_else(|e| panic!("{e}"));
    s.workflow = Some(std::sync::Arc::new(wf));
    s
}

/// Scenario `s` (order-basic's shape, with its `order-created` topic and `order-event-consumer`
/// group) with the order workflow and a chain of listeners after it: `shipper` calls the
/// warehouse for each created order and publishes `order-shipped` (topic `order-shipped`, key
/// the order id) with its KafkaTemplate; `notifier` reads it and e-mails, throwing if the
/// record's quantity did not come with it. Both groups are copies of order-event-consumer.
#[allow(dead_code)]
pub fn with_listener_chain(mut s: Scenario) -> Scenario {
    let text = order_workflow_text()
        + r#"
[events.order-shipped]
topic = "order-shipped"
key = "order_id"
fields = { order_id = "int", qty = "int" }

[listeners.shipper]
event = "order-created"
steps = [
  { call = "warehouse" },
  { publish = "order-shipped", values = { order_id = "event.order_id", qty = "event.qty" } },
]

[listeners.notifier]
event = "order-shipped"
steps = [
  { require = "event.qty >= 1", otherwise = "throw" },
  { call = "email" },
]
"#;
    let mut topic = s.topics.iter().find(|t| t.name == "order-created").expect("order-created").clone();
    topic.name = "order-shipped".into();
    s.topics.push(topic);
    let base = s.consumers.iter().find(|c| c.name == "order-event-consumer").expect("the order listener").clone();
    for (name, topic) in [("shipper", "order-created"), ("notifier", "order-shipped")] {
        let mut c = base.clone();
        c.name = name.into();
        c.consumer.group_id = name.into();
        c.topics = vec![topic.into()];
        s.consumers.push(c);
    }
    with_order_workflow(s, &text)
}
