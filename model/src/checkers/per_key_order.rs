//! per-key-order: for each key, each consumer group applies its records in offset order.
//!
//! Over successful `Processed` entries with a key, per (group, topic-partition, key), only the
//! first time each offset is processed counts: a record first processed at offset `a` after a
//! record of the same key at a higher offset `b > a` was first processed is a reorder. Processing
//! an offset again (redelivery after a rebalance, a crash, a retry after a failure) is not a
//! reorder: it is effect-once's business.

use super::{MAX_REPORTED, Violation, note_unlisted};
use crate::history::{GroupId, History, Op, Tp};
use std::collections::{BTreeMap, BTreeSet};

pub(crate) fn check(h: &History) -> Vec<Violation> {
    // Offsets already (successfully) processed, per (group, tp).
    let mut done: BTreeMap<(GroupId, Tp), BTreeSet<u64>> = BTreeMap::new();
    // Per (group, tp, key): the highest offset first-processed so far, and that entry.
    let mut high: BTreeMap<(GroupId, Tp, u64), (u64, usize)> = BTreeMap::new();
    let mut out = Vec::new();
    let mut total = 0usize;

    for (i, e) in h.entries.iter().enumerate() {
        let Op::Processed { group, record, ok: true } = e.op else {
            continue;
        };
        let Some(key) = record.key else { continue };
        if !done.entry((group, record.tp)).or_default().insert(record.offset) {
            continue; // processed before: a redelivery, not a reorder
        }
        match high.get_mut(&(group, record.tp, key)) {
            Some((b, b_entry)) if *b > record.offset => {
                total += 1;
                if out.len() < MAX_REPORTED {
                    let tp = format!("{}-{}", h.topic_name(record.tp.topic), record.tp.partition);
                    out.push(Violation::new(
                        format!(
                            "group {} applied key {key} out of order on {tp}: offset {} \
                             first processed (entry {i}) after offset {b} (entry {b_entry})",
                            h.group_name(group),
                            record.offset
                        ),
                        vec![*b_entry, i],
                    ));
                }
            }
            Some(slot) => *slot = (record.offset, i),
            None => {
                high.insert((group, record.tp, key), (record.offset, i));
            }
        }
    }

    note_unlisted(&mut out, total, "per-key-order");
    out
}

#[cfg(test)]
mod tests {
    use super::check;
    use crate::checkers::testkit::{CART, HistoryBuilder, R0, R1, RANKING, orders, rec};

    #[test]
    fn in_order_processing_passes() {
        let mut b = HistoryBuilder::new();
        let p = orders(0);
        b.consume(R0, RANKING, &[rec(p, 0, 7, 1), rec(p, 1, 8, 2), rec(p, 2, 7, 3)]);
        b.consume(R0, RANKING, &[rec(p, 3, 7, 4)]);
        // Another group is judged on its own.
        b.consume(R1, CART, &[rec(p, 0, 7, 1), rec(p, 2, 7, 3)]);
        assert_eq!(check(&b.build()), vec![]);
    }

    #[test]
    fn reorder_within_a_key_is_reported() {
        let mut b = HistoryBuilder::new();
        let p = orders(1);
        b.poll(R0, RANKING, &[rec(p, 4, 7, 1), rec(p, 5, 9, 2), rec(p, 6, 7, 3)]);
        // Offset 6 (key 7) handled before offset 4 (key 7), e.g. by a concurrent listener.
        let late = b.processed(R0, RANKING, rec(p, 6, 7, 3), true);
        b.processed(R0, RANKING, rec(p, 5, 9, 2), true);
        let early = b.processed(R0, RANKING, rec(p, 4, 7, 1), true);
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].entries, vec![late, early]);
        assert!(v[0].message.contains("group ranking"), "{}", v[0].message);
        assert!(v[0].message.contains("key 7"), "{}", v[0].message);
        assert!(v[0].message.contains("order-created-1"), "{}", v[0].message);
    }

    #[test]
    fn failed_then_retried_after_a_later_offset_is_a_reorder() {
        let mut b = HistoryBuilder::new();
        let p = orders(0);
        b.poll(R0, RANKING, &[rec(p, 0, 7, 1), rec(p, 1, 7, 2)]);
        b.processed(R0, RANKING, rec(p, 0, 7, 1), false);
        let later = b.processed(R0, RANKING, rec(p, 1, 7, 2), true);
        let retried = b.processed(R0, RANKING, rec(p, 0, 7, 1), true);
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].entries, vec![later, retried]);
    }

    #[test]
    fn redelivery_after_a_rebalance_is_not_a_reorder() {
        let mut b = HistoryBuilder::new();
        let p = orders(0);
        b.assigned(R0, RANKING, &[p]);
        b.consume(R0, RANKING, &[rec(p, 0, 7, 1), rec(p, 1, 7, 2), rec(p, 2, 7, 3)]);
        b.revoked(R0, RANKING, &[p]);
        // The new owner restarts from the committed offset 1: offsets 1 and 2 come again.
        b.assigned(R1, RANKING, &[p]);
        b.consume(R1, RANKING, &[rec(p, 1, 7, 2), rec(p, 2, 7, 3), rec(p, 3, 7, 4)]);
        assert_eq!(check(&b.build()), vec![]);
    }

    #[test]
    fn records_without_key_and_failures_are_ignored() {
        let mut b = HistoryBuilder::new();
        let p = orders(0);
        let mut r5 = rec(p, 5, 7, 1);
        let mut r2 = rec(p, 2, 7, 2);
        r5.key = None;
        r2.key = None;
        b.processed(R0, RANKING, r5, true);
        b.processed(R0, RANKING, r2, true);
        b.processed(R0, RANKING, rec(p, 9, 3, 3), false);
        b.processed(R0, RANKING, rec(p, 8, 3, 4), true);
        assert_eq!(check(&b.build()), vec![]);
    }
}
