//! nonmonotonic-send (Jepsen's): a producer's later send for a key lands at or before its
//! earlier send.
//!
//! Per producer process and (topic-partition, key), the sends in the order the application made
//! them (`Send` entries), each placed by its delivery report (`SendOk` with an offset). A send
//! whose offset is at or below the offset of an earlier send of the same key by the same process
//! is a reorder on the wire: a retried batch landing behind a later one (retries with more than
//! one request in flight and no idempotence). Sends without a known offset (acks=0, failures)
//! are not judged. The story shows what made the retry land late: the producer's disconnects
//! (its request timed out), and the requests or answers that were lost (discarded with the
//! connection) or late (retransmitted), between the earlier send and the later one's
//! acknowledgement.

use super::{Violation, in_history_order};
use crate::history::{EventId, History, NodeId, Op, Tp};
use std::collections::BTreeMap;

pub(crate) fn check(h: &History) -> Vec<Violation> {
    // Per (process, tp, key): the sends in order, as (value, the Send entry).
    let mut sends: BTreeMap<(NodeId, Tp, u64), Vec<(EventId, usize)>> = BTreeMap::new();
    // Per (process, tp, value): where the delivery report placed it, and that entry.
    let mut placed: BTreeMap<(NodeId, Tp, EventId), (u64, usize)> = BTreeMap::new();
    // Per producer process: its network trouble, (entry, is a disconnect).
    let mut trouble: BTreeMap<NodeId, Vec<(usize, bool)>> = BTreeMap::new();
    for (i, e) in h.entries.iter().enumerate() {
        match &e.op {
            Op::Disconnected { coordinator: false, .. } => trouble.entry(e.process).or_default().push((i, true)),
            Op::Retransmitted { peer, .. } | Op::Discarded { peer, .. } => {
                trouble.entry(e.process).or_default().push((i, false));
                trouble.entry(*peer).or_default().push((i, false));
            }
            Op::Send { tp, key: Some(k), value } => {
                let list = sends.entry((e.process, *tp, *k)).or_default();
                if !list.iter().any(|(v, _)| v == value) {
                    list.push((*value, i));
                }
            }
            Op::SendOk { tp, value, offset: Some(o), .. } => {
                placed.entry((e.process, *tp, *value)).or_insert((*o, i));
            }
            _ => {}
        }
    }
    let mut found: Vec<(usize, Violation)> = Vec::new();
    for ((node, tp, key), list) in &sends {
        // The highest offset of an earlier send, with its send and report entries.
        let mut high: Option<(u64, usize, usize)> = None;
        for &(value, send) in list {
            let Some(&(offset, ok)) = placed.get(&(*node, *tp, value)) else { continue };
            match high {
                Some((h_off, h_send, h_ok)) if offset <= h_off => {
                    let message = format!(
                        "{} sent {} (key {key}) after an earlier send of the key, but it landed at {}-{}@{offset}, \
                         at or before the earlier one's offset {h_off}",
                        h.node_name(*node),
                        h.event_label(value),
                        h.topic_name(tp.topic),
                        tp.partition,
                    );
                    let mut entries = vec![h_send, h_ok, send, ok];
                    // Every disconnect in between, and the first few late segments.
                    let between = trouble.get(node).into_iter().flatten().filter(|(i, _)| (h_send..ok).contains(i));
                    let (disconnects, late): (Vec<_>, Vec<_>) = between.partition(|(_, d)| *d);
                    entries.extend(disconnects.iter().map(|(i, _)| *i));
                    entries.extend(late.iter().take(4).map(|(i, _)| *i));
                    found.push((ok, Violation::new(message, entries)));
                }
                Some((h_off, _, _)) if offset < h_off => {}
                _ => high = Some((offset, send, ok)),
            }
        }
    }
    in_history_order(found, "nonmonotonic-send")
}

#[cfg(test)]
mod tests {
    use super::check;
    use crate::checkers::testkit::{HistoryBuilder, orders};

    #[test]
    fn sends_landing_in_order_pass() {
        let mut b = HistoryBuilder::new();
        let p = orders(0);
        b.send(p, Some(7), 1);
        b.send(p, Some(7), 2);
        b.send(p, Some(8), 3);
        b.send_ok(p, Some(7), 1, Some(0));
        b.send_ok(p, Some(8), 3, Some(1)); // another key may land anywhere
        b.send_ok(p, Some(7), 2, Some(2));
        // A failed send and an acks=0 send are not placed.
        b.send(p, Some(7), 4);
        b.send_failed(p, Some(7), 4);
        b.send(p, Some(7), 5);
        b.send_ok(p, Some(7), 5, None);
        assert_eq!(check(&b.build()), vec![]);
    }

    #[test]
    fn a_retried_send_landing_behind_a_later_one_is_reported() {
        let mut b = HistoryBuilder::new();
        let p = orders(1);
        let s1 = b.send(p, Some(7), 1);
        let s2 = b.send(p, Some(7), 2);
        // The first batch's request was lost; the second landed at 0, the retry of the first at 1.
        let ok2 = b.send_ok(p, Some(7), 2, Some(0));
        let ok1 = b.send_ok(p, Some(7), 1, Some(1));
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].entries, vec![s1, s2, ok2, ok1]);
        assert!(v[0].message.contains("order-created-1@0"), "{}", v[0].message);
        assert!(v[0].message.contains("offset 1"), "{}", v[0].message);
    }
}
