//! Differential checks: what a simulated run and a real run of one scenario with one seed must
//! agree on. Each difference is reported by name; nothing is averaged away.
//!
//! - **Placement**: every key lands on the same partition of its topic.
//! - **Domain state**: the business outcome, as counts that do not depend on which of two racing
//!   requests won: final stock per product, orders and payments committed and rejected, coupons
//!   issued per coupon, effects applied per kind, tokens activated, outbox rows left.
//! - **Verdicts**: every invariant holds on both or is violated on both.

use evsim_model::checkers::Invariant;
use evsim_model::history::{History, Op, TopicId};
use evsim_sim::Verdict;
use std::collections::{BTreeMap, BTreeSet};

/// Where each key's acknowledged records landed: (topic, key) -> partitions.
pub fn placement(history: &History) -> BTreeMap<(TopicId, u64), BTreeSet<u32>> {
    let mut out: BTreeMap<(TopicId, u64), BTreeSet<u32>> = BTreeMap::new();
    for e in &history.entries {
        if let Op::SendOk { tp, key: Some(key), .. } = &e.op {
            out.entry((tp.topic, *key)).or_default().insert(tp.partition);
        }
    }
    out
}

/// The business outcome of a run, as named counts.
pub fn domain_state(history: &History) -> BTreeMap<String, i64> {
    let mut out: BTreeMap<String, i64> = BTreeMap::new();
    let mut add = |k: String, n: i64| *out.entry(k).or_default() += n;
    for e in &history.entries {
        match &e.op {
            Op::StockFinal { product, stock } => add(format!("final stock of product {product}"), *stock),
            Op::OrderCommitted { .. } => add("orders committed".into(), 1),
            Op::OrderRejected { .. } => add("orders rejected".into(), 1),
            Op::PaymentCommitted { .. } => add("payments committed".into(), 1),
            Op::PaymentRejected { .. } => add("payments rejected".into(), 1),
            Op::OrderCancelled { .. } => add("orders cancelled".into(), 1),
            Op::CouponIssued { coupon, .. } => add(format!("coupons issued of coupon {coupon}"), 1),
            Op::RankingIncremented { by, .. } => add("ranking increments (sum)".into(), i64::from(*by)),
            Op::CartDeleted { .. } => add("carts deleted".into(), 1),
            Op::PlatformSent { .. } => add("platform sends".into(), 1),
            Op::PointsAdded { points, .. } => add("points added (sum)".into(), *points),
            Op::CouponUsed { .. } => add("coupons used".into(), 1),
            Op::EmailSent { .. } => add("emails sent".into(), 1),
            Op::TokenActivated { .. } => add("tokens activated".into(), 1),
            Op::OutboxPending { .. } => add("outbox rows left INIT".into(), 1),
            _ => {}
        }
    }
    out
}

/// One way the two runs disagree.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Difference {
    /// `placement`, `domain` or `verdict`.
    pub aspect: &'static str,
    pub what: String,
}

/// Compare a simulated run with a real one (`target` names the real side in messages).
pub fn compare(
    sim: &History,
    sim_verdicts: &[Verdict],
    real: &History,
    real_verdicts: &[Verdict],
    target: &str,
) -> Vec<Difference> {
    let mut out = Vec::new();
    let (a, b) = (placement(sim), placement(real));
    let mut shown = 0;
    let mut total = 0;
    for (key, parts) in &a {
        if let Some(other) = b.get(key)
            && other != parts
        {
            total += 1;
            if shown < 10 {
                shown += 1;
                out.push(Difference {
                    aspect: "placement",
                    what: format!(
                        "key {} of topic {}: partition {:?} in the simulator, {:?} on {target}",
                        key.1,
                        sim.topic_name(key.0),
                        parts,
                        other
                    ),
                });
            }
        }
    }
    if total > shown {
        out.push(Difference { aspect: "placement", what: format!("{} more keys placed differently", total - shown) });
    }
    let (a, b) = (domain_state(sim), domain_state(real));
    let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for name in names {
        let (x, y) = (a.get(name).copied().unwrap_or(0), b.get(name).copied().unwrap_or(0));
        if x != y {
            out.push(Difference { aspect: "domain", what: format!("{name}: {x} in the simulator, {y} on {target}") });
        }
    }
    for invariant in sim_verdicts.iter().map(|v| v.invariant) {
        let held = |vs: &[Verdict]| vs.iter().find(|v| v.invariant == invariant).map(|v| v.violations.is_empty());
        if let (Some(x), Some(y)) = (held(sim_verdicts), held(real_verdicts))
            && x != y
        {
            let word = |h: bool| if h { "holds" } else { "is violated" };
            out.push(Difference {
                aspect: "verdict",
                what: format!("{invariant} {} in the simulator and {} on {target}", word(x), word(y)),
            });
        }
    }
    out
}

/// The entries both drivers record (the real driver cannot see the cluster's inside: ISR
/// changes, retransmissions, the controller's decisions).
pub const SHARED_ENTRIES: [&str; 8] =
    ["Send", "SendOk", "SendFailed", "Poll", "Commit", "OrderCommitted", "PaymentCommitted", "CouponIssued"];

/// What kinds of shared entries a violation cites: the evidence two drivers must agree on.
pub fn evidence(history: &History, violation: &evsim_model::checkers::Violation) -> BTreeSet<String> {
    violation
        .entries
        .iter()
        .filter_map(|&i| history.entries.get(i))
        .filter_map(|e| {
            let name = match serde_json::to_value(&e.op).ok()? {
                serde_json::Value::String(s) => s,
                serde_json::Value::Object(m) => m.keys().next()?.clone(),
                _ => return None,
            };
            SHARED_ENTRIES.contains(&name.as_str()).then_some(name)
        })
        .collect()
}

/// Whether a real run's violations match the simulator's: for each invariant in `invariants`
/// that both violate, the real run's first violation cites the same kinds of shared entries as
/// one of the simulator's violations of it. (One anomaly can show in more than one way: an
/// offset given to two records shows as two acknowledgements of it, or as an acknowledgement
/// and a poll that read the other record there; which comes first depends on timing.) `None`
/// when they match; else what differs.
pub fn evidence_differs(
    sim: &History,
    sim_verdicts: &[Verdict],
    real: &History,
    real_verdicts: &[Verdict],
    invariants: &[Invariant],
) -> Option<String> {
    let violations = |vs: &[Verdict], inv: Invariant| {
        vs.iter().find(|v| v.invariant == inv).map(|v| v.violations.clone()).unwrap_or_default()
    };
    for &inv in invariants {
        let Some(b) = violations(real_verdicts, inv).into_iter().next() else { continue };
        let shapes: BTreeSet<BTreeSet<String>> =
            violations(sim_verdicts, inv).iter().map(|a| evidence(sim, a)).collect();
        if shapes.is_empty() {
            continue;
        }
        let y = evidence(real, &b);
        if !shapes.contains(&y) {
            return Some(format!("{inv}: the simulator's violations cite {shapes:?}, the real one {y:?}"));
        }
    }
    None
}
