//! causal-order: within a consumer group, an event's effects are not applied before the effects
//! of the event they depend on (a payment's before its order's).
//!
//! Kafka orders records within a partition only. `payment-completed` and `order-created` of one
//! order share a key but not a topic, so a group that reads both can apply the payment first.

use super::{MAX_REPORTED, Violation, note_unlisted};
use crate::describe::event;
use crate::history::{EventId, GroupId, History, Op};
use std::collections::BTreeMap;

pub(crate) fn check(h: &History) -> Vec<Violation> {
    // First successful processing of each event per group.
    let mut first: BTreeMap<(GroupId, EventId), usize> = BTreeMap::new();
    for (i, e) in h.entries.iter().enumerate() {
        if let Op::Processed { group, record, ok: true } = e.op {
            first.entry((group, record.value)).or_insert(i);
        }
    }
    let mut found: Vec<(usize, usize, GroupId, EventId, EventId)> = Vec::new();
    for (&(group, ev), &at) in &first {
        let Some(dep) = h.depends_on(ev) else { continue };
        // The dependency applied later by the same group: out of causal order.
        if let Some(&dep_at) = first.get(&(group, dep))
            && dep_at > at
        {
            found.push((at, dep_at, group, ev, dep));
        }
    }
    found.sort_unstable();
    let total = found.len();
    let mut out: Vec<Violation> = found
        .into_iter()
        .take(MAX_REPORTED)
        .map(|(at, dep_at, group, ev, dep)| {
            Violation::new(
                format!(
                    "group {} applied {} before {}, which it depends on",
                    h.group_name(group),
                    event(h, ev),
                    event(h, dep)
                ),
                vec![at, dep_at],
            )
        })
        .collect();
    note_unlisted(&mut out, total, "causal-order");
    out
}

#[cfg(test)]
mod tests {
    use super::check;
    use crate::checkers::testkit::{HistoryBuilder, R0, RANKING, orders, payments, rec};
    use crate::history::{EventId, Polled};

    fn pay(partition_offset: u64, order: u64) -> Polled {
        Polled { tp: payments(0), offset: partition_offset, key: Some(order), value: EventId::payment_completed(order) }
    }

    #[test]
    fn the_order_before_its_payment_passes() {
        let mut b = HistoryBuilder::new();
        b.consume(R0, RANKING, &[rec(orders(0), 0, 7, 7)]);
        b.consume(R0, RANKING, &[pay(0, 7)]);
        b.consume(R0, RANKING, &[pay(1, 8)]); // order 8 never seen by this group: not judged here
        assert_eq!(check(&b.build()), vec![]);
    }

    #[test]
    fn a_payment_applied_before_its_order_is_reported() {
        let mut b = HistoryBuilder::new();
        b.poll(R0, RANKING, &[pay(0, 7)]);
        let early = b.processed(R0, RANKING, pay(0, 7), true);
        b.poll(R0, RANKING, &[rec(orders(0), 0, 7, 7)]);
        let late = b.processed(R0, RANKING, rec(orders(0), 0, 7, 7), true);
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].entries, vec![early, late]);
        assert!(v[0].message.contains("before order-created(order 7)"), "{}", v[0].message);
    }
}
