//! What a run measured, read off its history in one pass: throughput, end-to-end latency,
//! duplicated effects, reordered sends and consumer lag, plus the fault and rebalance periods
//! the lag chart shades.
//!
//! The checkers say *whether* an invariant held; these say *how much*, so that a sweep can plot a
//! trade-off. Every figure is defined on the history alone, so it means the same on a simulated
//! and on a real run.

use evsim_model::history::{EventId, GroupId, History, Micros, Op, Tp};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Percentiles of a latency distribution, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub samples: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples_us` (microseconds); `None` when there are none.
    pub fn of(samples_us: &[Micros]) -> Option<Self> {
        if samples_us.is_empty() {
            return None;
        }
        let mut sorted = samples_us.to_vec();
        sorted.sort_unstable();
        let rank = |p: f64| {
            let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted[i] as f64 / 1_000.0
        };
        Some(Self {
            samples: sorted.len() as u64,
            p50_ms: rank(0.50),
            p90_ms: rank(0.90),
            p99_ms: rank(0.99),
            max_ms: sorted[sorted.len() - 1] as f64 / 1_000.0,
        })
    }
}

/// The figures of one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Records consumer groups finished handling (each record once per group, summed over the
    /// groups) per simulated second, from the first record handled to the last (n records, n - 1
    /// gaps): the rate the consumers sustained once they had formed their groups.
    pub throughput_rps: f64,
    /// Request to downstream effect: from a client's request to the first time each kind of
    /// effect it causes is applied (an order's ranking increment and its cart deletion are two
    /// samples; a coupon request's issue or refusal by the issuer is one).
    pub latency: Option<Percentiles>,
    /// Effects applied again for an event that already had that effect (points credited twice,
    /// a coupon issued twice for one request...), summed over events.
    pub duplicate_effects: u64,
    /// Acknowledged values written at more than one offset (Jepsen's duplicate), counted once per
    /// extra offset.
    pub log_duplicates: u64,
    /// Sends acknowledged at a lower offset than an earlier send of the same producer and key.
    pub reordered_sends: u64,
    /// The largest lag of any consumer group during the run (acknowledged records not yet
    /// committed by the group).
    pub max_lag: u64,
    /// The lag left at the end of the run, summed over groups and partitions.
    pub final_lag: u64,
}

/// A kind of downstream effect, for latency and duplicate counting.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Effect {
    Ranking,
    Cart,
    Platform,
    Points,
    CouponUse,
    Email,
    CouponOutcome,
    TokenActivated,
    /// A workflow listener's step (handler, step).
    Workflow(u16, u16),
}

/// The effect an entry applies and the event it answers, if it is one. `counts_twice`: whether
/// applying it again is a duplicated effect (a second refusal of a coupon request changes
/// nothing; a second issue is a second coupon).
fn effect(op: &Op) -> Option<(Effect, EventId, bool)> {
    Some(match op {
        Op::RankingIncremented { cause, .. } => (Effect::Ranking, *cause, true),
        Op::CartDeleted { cause, .. } => (Effect::Cart, *cause, true),
        Op::PlatformSent { cause } => (Effect::Platform, *cause, true),
        Op::PointsAdded { cause, .. } => (Effect::Points, *cause, true),
        Op::CouponUsed { cause, .. } => (Effect::CouponUse, *cause, true),
        Op::EmailSent { cause, .. } => (Effect::Email, *cause, true),
        Op::CouponIssued { request, .. } => (Effect::CouponOutcome, EventId::coupon_issue_request(*request), true),
        Op::CouponNotIssued { request, .. } => (Effect::CouponOutcome, EventId::coupon_issue_request(*request), false),
        Op::TokenActivated { token, .. } => (Effect::TokenActivated, EventId::waiting_token(*token), true),
        Op::Effect { cause, handler, step, .. } => (Effect::Workflow(*handler, *step), *cause, true),
        _ => return None,
    })
}

/// The event a client request will cause, if the entry is a request.
fn request(op: &Op) -> Option<EventId> {
    Some(match op {
        Op::OrderRequested { order, .. } => EventId::order_created(*order),
        Op::PaymentRequested { order, .. } => EventId::payment_completed(*order),
        Op::CouponRequested { request, .. } => EventId::coupon_issue_request(*request),
        Op::QueueEntered { token, .. } => EventId::waiting_token(*token),
        _ => return None,
    })
}

/// Request-to-effect latencies of a run, in microseconds, in the order the effects happened. A
/// workflow's request is tied to its event when its transaction commits with it.
pub fn latencies(h: &History) -> Vec<Micros> {
    let mut asked: BTreeMap<EventId, Micros> = BTreeMap::new();
    let mut workflow_requests: BTreeMap<(u16, u64), Micros> = BTreeMap::new();
    let mut seen: BTreeSet<(Effect, EventId)> = BTreeSet::new();
    let mut out = Vec::new();
    for e in &h.entries {
        if let Some(ev) = request(&e.op) {
            asked.entry(ev).or_insert(e.time);
        } else if let Op::Requested { handler, id } = e.op {
            workflow_requests.entry((handler, id)).or_insert(e.time);
        } else if let Op::TxnCommitted { handler, id, event: Some(ev) } = e.op {
            if let Some(at) = workflow_requests.remove(&(handler, id)) {
                asked.entry(ev).or_insert(at);
            }
        } else if let Some((kind, ev, _)) = effect(&e.op)
            && seen.insert((kind, ev))
            && let Some(&at) = asked.get(&ev)
        {
            out.push(e.time.saturating_sub(at));
        }
    }
    out
}

/// One consumer group's lag over the run: `(time, lag)` at every change.
#[derive(Clone, Debug, PartialEq)]
pub struct LagSeries {
    pub group: String,
    pub points: Vec<(Micros, u64)>,
}

/// Each group's lag over time: acknowledged records of its topics (the log end that the
/// delivery reports show) minus the offsets it has committed.
pub fn lag_series(h: &History) -> Vec<LagSeries> {
    let groups = h.header.groups.len();
    let mut log_end: BTreeMap<Tp, u64> = BTreeMap::new();
    let mut committed: Vec<BTreeMap<Tp, u64>> = vec![BTreeMap::new(); groups];
    let mut lag: Vec<u64> = vec![0; groups];
    let mut out: Vec<LagSeries> =
        h.header.groups.iter().map(|g| LagSeries { group: g.name.clone(), points: vec![(0, 0)] }).collect();
    let lag_of = |g: usize, tp: Tp, end: &BTreeMap<Tp, u64>, committed: &[BTreeMap<Tp, u64>]| {
        end.get(&tp).copied().unwrap_or(0).saturating_sub(committed[g].get(&tp).copied().unwrap_or(0))
    };
    for e in &h.entries {
        match &e.op {
            Op::SendOk { tp, offset: Some(o), .. } => {
                let old = log_end.get(tp).copied().unwrap_or(0);
                if *o < old {
                    continue;
                }
                let before: Vec<u64> = (0..groups).map(|g| lag_of(g, *tp, &log_end, &committed)).collect();
                log_end.insert(*tp, o + 1);
                for (g, series) in out.iter_mut().enumerate() {
                    if !h.header.groups[g].topics.contains(&tp.topic) {
                        continue;
                    }
                    lag[g] = lag[g] - before[g] + lag_of(g, *tp, &log_end, &committed);
                    series.points.push((e.time, lag[g]));
                }
            }
            Op::Commit { group: GroupId(g), offsets, error: None, .. } => {
                let g = *g as usize;
                if g >= groups {
                    continue;
                }
                for (tp, o) in offsets {
                    let before = lag_of(g, *tp, &log_end, &committed);
                    committed[g].insert(*tp, *o);
                    lag[g] = lag[g] - before + lag_of(g, *tp, &log_end, &committed);
                }
                out[g].points.push((e.time, lag[g]));
            }
            _ => {}
        }
    }
    out
}

/// What a period of the run was: a fault, or a rebalance of a group.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeriodKind {
    Fault,
    Rebalance,
}

/// A stretch of the run the lag chart shades.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Period {
    pub kind: PeriodKind,
    pub from: Micros,
    pub to: Micros,
    pub label: String,
}

/// Faults (start to end) and rebalances (the coordinator starting one to the next generation).
pub fn periods(h: &History) -> Vec<Period> {
    let mut out = Vec::new();
    let mut faults: BTreeMap<u16, (Micros, String)> = BTreeMap::new();
    let mut rebalancing: BTreeMap<GroupId, Micros> = BTreeMap::new();
    for e in &h.entries {
        match &e.op {
            Op::FaultStarted { fault, kind } => {
                let label = format!("fault #{fault} {} ({})", kind.name(), h.node_name(e.process));
                faults.insert(*fault, (e.time, label));
            }
            Op::FaultEnded { fault, .. } => {
                if let Some((from, label)) = faults.remove(fault) {
                    out.push(Period { kind: PeriodKind::Fault, from, to: e.time, label });
                }
            }
            Op::RebalanceStarted { group } => {
                rebalancing.entry(*group).or_insert(e.time);
            }
            Op::GenerationStarted { group, .. } => {
                if let Some(from) = rebalancing.remove(group) {
                    let label = format!("rebalance of {}", h.group_name(*group));
                    out.push(Period { kind: PeriodKind::Rebalance, from, to: e.time, label });
                }
            }
            _ => {}
        }
    }
    let end = h.header.end;
    out.extend(faults.into_values().map(|(from, label)| Period { kind: PeriodKind::Fault, from, to: end, label }));
    out.extend(rebalancing.into_iter().map(|(g, from)| Period {
        kind: PeriodKind::Rebalance,
        from,
        to: end,
        label: format!("rebalance of {}", h.group_name(g)),
    }));
    out.sort_by(|a, b| (a.from, a.to, &a.label).cmp(&(b.from, b.to, &b.label)));
    out
}

/// Every figure of [`Metrics`] for one history.
pub fn measure(h: &History) -> Metrics {
    let mut handled: BTreeSet<(GroupId, Tp, u64)> = BTreeSet::new();
    let mut first_handled: Option<Micros> = None;
    let mut last_handled: Micros = 0;
    let mut applied: BTreeMap<(Effect, EventId), u64> = BTreeMap::new();
    let mut offsets: BTreeMap<EventId, BTreeSet<(Tp, u64)>> = BTreeMap::new();
    // Per producer, partition and key: its values in the order it sent them.
    let mut sent: BTreeMap<(u16, Tp, u64), Vec<EventId>> = BTreeMap::new();
    let mut acked: BTreeMap<(u16, EventId), u64> = BTreeMap::new();
    let mut final_lag = 0;
    for e in &h.entries {
        match &e.op {
            Op::Send { tp, key: Some(k), value } => {
                // A value sent again (an outbox re-publish) keeps its place: its first send.
                let values = sent.entry((e.process.0, *tp, *k)).or_default();
                if !values.contains(value) {
                    values.push(*value);
                }
            }
            Op::SendOk { tp, value, offset: Some(o), .. } => {
                offsets.entry(*value).or_default().insert((*tp, *o));
                acked.entry((e.process.0, *value)).or_insert(*o);
            }
            Op::Processed { group, record, ok: true } | Op::DuplicateSkipped { group, record } => {
                if handled.insert((*group, record.tp, record.offset)) {
                    first_handled.get_or_insert(e.time);
                    last_handled = e.time;
                }
            }
            Op::FinalLag { lag, .. } => final_lag += lag,
            op => {
                if let Some((kind, ev, counts)) = effect(op)
                    && counts
                {
                    *applied.entry((kind, ev)).or_default() += 1;
                }
            }
        }
    }
    let window = last_handled.saturating_sub(first_handled.unwrap_or(0));
    // n records handled over the n - 1 gaps between the first and the last.
    let throughput_rps = if window == 0 { 0.0 } else { handled.len().saturating_sub(1) as f64 / (window as f64 / 1e6) };
    let mut reordered_sends = 0;
    for ((process, _, _), values) in &sent {
        let mut highest: Option<u64> = None;
        for v in values {
            if let Some(&o) = acked.get(&(*process, *v)) {
                if highest.is_some_and(|h| o < h) {
                    reordered_sends += 1;
                }
                highest = Some(highest.map_or(o, |h| h.max(o)));
            }
        }
    }
    let max_lag = lag_series(h).iter().flat_map(|s| s.points.iter().map(|p| p.1)).max().unwrap_or(0);
    Metrics {
        throughput_rps,
        latency: Percentiles::of(&latencies(h)),
        duplicate_effects: applied.values().map(|n| n - 1).sum(),
        log_duplicates: offsets.values().map(|o| o.len() as u64 - 1).sum(),
        reordered_sends,
        max_lag,
        final_lag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evsim_model::history::{GroupInfo, Header, NodeId, Polled, TopicId, TopicInfo};

    fn history() -> History {
        History::new(Header {
            scenario: "t".into(),
            seed: 1,
            nodes: vec!["workload".into(), "broker-0".into(), "svc-0".into(), "consumer-0".into()],
            topics: vec![TopicInfo { name: "t".into(), partitions: 1 }],
            groups: vec![GroupInfo { name: "g".into(), topics: vec![TopicId(0)], effect_once: true }],
            events: evsim_model::event::builtin_events(),
            handlers: Vec::new(),
            invariants: Vec::new(),
            quiet_from: 1_000_000,
            end: 2_000_000,
        })
    }

    const TP: Tp = Tp { topic: TopicId(0), partition: 0 };
    const SVC: NodeId = NodeId(2);
    const CONSUMER: NodeId = NodeId(3);

    fn polled(offset: u64, order: u64) -> Polled {
        Polled { tp: TP, offset, key: Some(order), value: EventId::order_created(order) }
    }

    /// Order `order` requested at `t`, sent, acknowledged at `offset`, processed with a
    /// ranking effect 10 ms later, committed.
    fn order(h: &mut History, t: Micros, order: u64, offset: u64) {
        let value = EventId::order_created(order);
        h.push(t, NodeId(0), Op::OrderRequested { order, user: 1, product: 0, qty: 1 });
        h.push(t + 1_000, SVC, Op::Send { tp: TP, key: Some(7), value });
        h.push(t + 2_000, SVC, Op::SendOk { tp: TP, key: Some(7), value, offset: Some(offset) });
        h.push(t + 9_000, CONSUMER, Op::Processed { group: GroupId(0), record: polled(offset, order), ok: true });
        h.push(t + 10_000, CONSUMER, Op::RankingIncremented { product: 0, by: 1, cause: value });
        h.push(
            t + 11_000,
            CONSUMER,
            Op::Commit { group: GroupId(0), generation: 1, offsets: vec![(TP, offset + 1)], error: None },
        );
    }

    #[test]
    fn a_clean_run_measures_latency_throughput_and_no_anomalies() {
        let mut h = history();
        order(&mut h, 0, 1, 0);
        order(&mut h, 100_000, 2, 1);
        let m = measure(&h);
        assert_eq!(m.latency.as_ref().map(|l| (l.samples, l.p50_ms, l.max_ms)), Some((2, 10.0, 10.0)));
        // 2 records handled, the first at 9 ms and the last at 109 ms: one every 100 ms.
        assert!((m.throughput_rps - 10.0).abs() < 1e-6, "{}", m.throughput_rps);
        assert_eq!((m.duplicate_effects, m.log_duplicates, m.reordered_sends), (0, 0, 0));
        assert_eq!(m.max_lag, 1);
        let lag = lag_series(&h);
        assert_eq!(lag[0].points.last(), Some(&(111_000, 0)));
    }

    #[test]
    fn redelivered_effects_duplicates_and_reordering_are_counted() {
        let mut h = history();
        order(&mut h, 0, 1, 0);
        // The same record handled again after a rebalance: a second ranking increment.
        let value = EventId::order_created(1);
        h.push(50_000, CONSUMER, Op::Processed { group: GroupId(0), record: polled(0, 1), ok: true });
        h.push(50_000, CONSUMER, Op::RankingIncremented { product: 0, by: 1, cause: value });
        // A retried send written twice (offsets 1 and 2), and a later send landing before it.
        let (a, b) = (EventId::order_created(2), EventId::order_created(3));
        h.push(60_000, SVC, Op::Send { tp: TP, key: Some(7), value: a });
        h.push(60_001, SVC, Op::Send { tp: TP, key: Some(7), value: b });
        h.push(61_000, SVC, Op::SendOk { tp: TP, key: Some(7), value: b, offset: Some(1) });
        h.push(62_000, SVC, Op::SendOk { tp: TP, key: Some(7), value: a, offset: Some(2) });
        h.push(63_000, SVC, Op::SendOk { tp: TP, key: Some(7), value: a, offset: Some(3) });
        // a sent again later (a re-publish) is not a reordering of its own.
        h.push(64_000, SVC, Op::Send { tp: TP, key: Some(7), value: a });
        let m = measure(&h);
        assert_eq!(m.duplicate_effects, 1);
        assert_eq!(m.log_duplicates, 1);
        assert_eq!(m.reordered_sends, 1, "b was sent after a but landed before it");
    }

    /// A workflow's request is tied to its event at the commit, and a listener step's effect
    /// applied twice is a duplicate; a rolled-back request has no latency.
    #[test]
    fn workflow_requests_and_effects_are_measured_as_the_compiled_in_ones() {
        let mut h = history();
        let ev = EventId::order_created(5);
        h.push(1_000, NodeId(0), Op::Requested { handler: 0, id: 5 });
        h.push(1_000, NodeId(0), Op::Requested { handler: 0, id: 6 });
        h.push(3_000, SVC, Op::TxnCommitted { handler: 0, id: 5, event: Some(ev) });
        h.push(3_000, SVC, Op::TxnRolledBack { handler: 0, id: 6, event: Some(EventId::order_created(6)) });
        h.push(21_000, CONSUMER, Op::Effect { group: GroupId(0), cause: ev, handler: 1, step: 0 });
        h.push(22_000, CONSUMER, Op::Effect { group: GroupId(0), cause: ev, handler: 1, step: 1 });
        h.push(40_000, CONSUMER, Op::Effect { group: GroupId(0), cause: ev, handler: 1, step: 0 });
        assert_eq!(latencies(&h), vec![20_000, 21_000]);
        assert_eq!(measure(&h).duplicate_effects, 1);
    }

    #[test]
    fn periods_pair_fault_and_rebalance_starts_with_their_ends() {
        use evsim_model::scenario::FaultKind;
        let mut h = history();
        h.push(10, NodeId(1), Op::FaultStarted { fault: 0, kind: FaultKind::BrokerCrash });
        h.push(20, NodeId(0), Op::RebalanceStarted { group: GroupId(0) });
        h.push(30, NodeId(0), Op::GenerationStarted { group: GroupId(0), generation: 2, members: vec![] });
        let p = periods(&h);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].kind, p[0].from, p[0].to), (PeriodKind::Fault, 10, 2_000_000), "never ended: to the end");
        assert_eq!(p[0].label, "fault #0 broker-crash (broker-0)");
        assert_eq!((p[1].kind, p[1].from, p[1].to), (PeriodKind::Rebalance, 20, 30));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let p = Percentiles::of(&(1..=100).map(|i| i * 1_000).collect::<Vec<_>>()).unwrap();
        assert_eq!((p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms), (50.0, 90.0, 99.0, 100.0));
        assert!(Percentiles::of(&[]).is_none());
    }
}
