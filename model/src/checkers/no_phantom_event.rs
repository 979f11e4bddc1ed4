//! no-phantom-event: no event is published for a business fact that did not commit.
//!
//! An event counts as published once the broker acknowledged it or a consumer read it. If its kind
//! announces a DB fact (an order created, a payment completed), that fact must have committed
//! somewhere in the history (before or after: in-transaction publishing sends first). A published
//! event whose fact rolled back, or never ran, is a phantom. Events that carry a request (a coupon
//! request) announce no fact and are not judged here.

use super::{MAX_REPORTED, Violation, note_unlisted};
use crate::describe::event;
use crate::history::{EventId, History, Op};
use std::collections::{BTreeMap, BTreeSet};

pub(crate) fn check(h: &History) -> Vec<Violation> {
    let mut committed: BTreeSet<EventId> = BTreeSet::new();
    let mut rolled_back: BTreeMap<EventId, usize> = BTreeMap::new();
    for (i, e) in h.entries.iter().enumerate() {
        if let Some(ev) = e.op.expected_event() {
            committed.insert(ev);
        }
        if let Some(ev) = e.op.rolled_back_event() {
            rolled_back.entry(ev).or_insert(i);
        }
    }
    // The first place each phantom shows up as published.
    let mut phantoms: BTreeMap<EventId, usize> = BTreeMap::new();
    for (i, e) in h.entries.iter().enumerate() {
        match &e.op {
            Op::SendOk { value, .. } if h.announces_fact(value.kind()) && !committed.contains(value) => {
                phantoms.entry(*value).or_insert(i);
            }
            Op::Poll { records, .. } => {
                for r in records.iter().filter(|r| h.announces_fact(r.value.kind()) && !committed.contains(&r.value)) {
                    phantoms.entry(r.value).or_insert(i);
                }
            }
            _ => {}
        }
    }
    let mut found: Vec<(usize, EventId)> = phantoms.into_iter().map(|(ev, i)| (i, ev)).collect();
    found.sort_unstable();
    let total = found.len();
    let mut out: Vec<Violation> = found
        .into_iter()
        .take(MAX_REPORTED)
        .map(|(i, ev)| match rolled_back.get(&ev) {
            Some(&rb) => Violation::new(
                format!("{} was published (entry {i}) but its transaction rolled back (entry {rb})", event(h, ev)),
                vec![rb, i],
            ),
            None => Violation::new(
                format!("{} was published (entry {i}) but its transaction never committed", event(h, ev)),
                vec![i],
            ),
        })
        .collect();
    note_unlisted(&mut out, total, "no-phantom-event");
    out
}

#[cfg(test)]
mod tests {
    use super::check;
    use crate::checkers::testkit::{HistoryBuilder, R0, RANKING, orders, rec};

    #[test]
    fn events_of_committed_orders_pass_whenever_they_are_sent() {
        let mut b = HistoryBuilder::new();
        // In-transaction publishing: the event is acknowledged before the commit.
        b.produce(orders(0), 7, 0);
        b.order_committed(7, 1, 1, 9);
        b.order_committed(8, 1, 1, 8);
        b.produce(orders(0), 8, 1);
        b.consume(R0, RANKING, &[rec(orders(0), 0, 7, 7), rec(orders(0), 1, 8, 8)]);
        assert_eq!(check(&b.build()), vec![]);
    }

    #[test]
    fn an_event_of_a_rolled_back_order_is_a_phantom() {
        let mut b = HistoryBuilder::new();
        let (_, ack) = b.produce(orders(0), 7, 0);
        let rb = b.order_rejected(7, 1, 5, 2);
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].entries, vec![ack, rb]);
        assert!(v[0].message.contains("rolled back"), "{}", v[0].message);
    }

    #[test]
    fn an_event_read_whose_order_never_ran_is_a_phantom() {
        let mut b = HistoryBuilder::new();
        let send = b.send(orders(0), Some(9), 9); // no acknowledgement: not published by itself
        let poll = b.poll(R0, RANKING, &[rec(orders(0), 0, 9, 9)]);
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].entries, vec![poll]);
        assert!(v[0].message.contains("never committed"), "{}", v[0].message);
        let _ = send;
    }

    #[test]
    fn a_request_event_announces_no_fact() {
        use crate::history::{EventId, Op, Tp};
        let mut b = HistoryBuilder::new();
        let tp = Tp { topic: orders(0).topic, partition: 0 };
        let value = EventId::coupon_issue_request(3);
        b.op(crate::checkers::testkit::SERVICE, Op::SendOk { tp, key: Some(1), value, offset: Some(0) });
        assert_eq!(check(&b.build()), vec![]);
    }

    #[test]
    fn a_send_that_was_never_acknowledged_nor_read_is_no_phantom() {
        let mut b = HistoryBuilder::new();
        b.send(orders(0), Some(9), 9);
        b.send_failed(orders(0), Some(9), 9);
        b.order_rejected(9, 1, 5, 2);
        assert_eq!(check(&b.build()), vec![]);
    }
}
