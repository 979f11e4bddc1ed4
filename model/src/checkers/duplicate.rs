//! duplicate: the same value stands at two or more offsets of one key.
//!
//! Per (topic-partition, key, value), the distinct offsets where the value is known to stand, from
//! delivery reports (`SendOk` with an offset) and from polls. More than one offset is a duplicate
//! (a retried send whose first attempt was written, a re-publication after a crash, ...). The
//! counterexample shows, per offset, the first entry that placed the value there.

use super::{MAX_REPORTED, Violation, note_unlisted};
use crate::history::{EventId, History, Op, Tp};

/// Where the history shows a value standing: (tp, key, value, offset, the entry that shows it).
type Placement = (Tp, Option<u64>, EventId, u64, usize);

pub(crate) fn check(h: &History) -> Vec<Violation> {
    let mut seen: Vec<Placement> = Vec::new();
    for (i, e) in h.entries.iter().enumerate() {
        match &e.op {
            Op::SendOk { tp, key, value, offset: Some(o) } => seen.push((*tp, *key, *value, *o, i)),
            Op::Poll { records, .. } => seen.extend(records.iter().map(|r| (r.tp, r.key, r.value, r.offset, i))),
            _ => {}
        }
    }
    seen.sort_unstable();
    // One row per (tp, key, value, offset): its first entry.
    seen.dedup_by_key(|&mut (tp, k, v, o, _)| (tp, k, v, o));

    // Each (tp, key, value) at two or more offsets, ordered by where the second offset showed.
    let mut dups: Vec<(usize, &[Placement])> = seen
        .chunk_by(|a, b| (a.0, a.1, a.2) == (b.0, b.1, b.2))
        .filter(|run| run.len() > 1)
        .map(|run| {
            let mut firsts: Vec<usize> = run.iter().map(|r| r.4).collect();
            firsts.sort_unstable();
            (firsts[1], run)
        })
        .collect();
    let total = dups.len();
    dups.sort_unstable_by_key(|&(shown, _)| shown);

    let mut out: Vec<Violation> = dups
        .into_iter()
        .take(MAX_REPORTED)
        .map(|(_, run)| {
            let (tp, key, v, _, _) = run[0];
            let offsets: Vec<String> = run.iter().map(|r| r.3.to_string()).collect();
            Violation::new(
                format!(
                    "{} (key {}) stands at {} offsets of {}-{}: {}",
                    h.event_label(v),
                    key.map_or_else(|| "null".to_string(), |k| k.to_string()),
                    run.len(),
                    h.topic_name(tp.topic),
                    tp.partition,
                    offsets.join(", ")
                ),
                run.iter().map(|r| r.4).collect(),
            )
        })
        .collect();

    note_unlisted(&mut out, total, "duplicate");
    out
}

#[cfg(test)]
mod tests {
    use super::check;
    use crate::checkers::testkit::{C0, CART, HistoryBuilder, R0, RANKING, orders, rec};

    #[test]
    fn one_offset_per_value_passes() {
        let mut b = HistoryBuilder::new();
        let p = orders(0);
        b.produce(p, 1, 0);
        b.produce(p, 2, 1);
        // Read twice (two groups, and a redelivery): still one offset each.
        b.consume(R0, RANKING, &[rec(p, 0, 1, 1), rec(p, 1, 2, 2)]);
        b.consume(R0, RANKING, &[rec(p, 1, 2, 2)]);
        b.consume(C0, CART, &[rec(p, 0, 1, 1), rec(p, 1, 2, 2)]);
        // The same value on another partition is another key's business.
        b.produce(orders(1), 1, 0);
        // acks=0: no offset, nothing to place.
        b.send(p, Some(1), 1);
        b.send_ok(p, Some(1), 1, None);
        assert_eq!(check(&b.build()), vec![]);
    }

    #[test]
    fn retried_send_written_twice_is_reported() {
        let mut b = HistoryBuilder::new();
        let p = orders(1);
        // The first attempt was written at 0, its response lost; the retry landed at 1.
        b.send(p, Some(5), 5);
        let ok = b.send_ok(p, Some(5), 5, Some(1));
        b.produce(p, 6, 2);
        let poll = b.poll(R0, RANKING, &[rec(p, 0, 5, 5), rec(p, 1, 5, 5), rec(p, 2, 6, 6)]);
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "{v:?}");
        // Offset 1 first shown by the send-ok, offset 0 by the poll.
        assert_eq!(v[0].entries, vec![ok, poll]);
        assert!(v[0].message.contains("order-created-1: 0, 1"), "{}", v[0].message);
        assert!(v[0].message.contains("key 5"), "{}", v[0].message);
    }

    #[test]
    fn duplicates_are_listed_in_history_order() {
        let mut b = HistoryBuilder::new();
        let p = orders(0);
        let a0 = b.send_ok(p, Some(9), 9, Some(0));
        let b0 = b.send_ok(p, Some(3), 3, Some(1));
        let b1 = b.send_ok(p, Some(3), 3, Some(2));
        let a1 = b.send_ok(p, Some(9), 9, Some(3));
        let a2 = b.send_ok(p, Some(9), 9, Some(4));
        let v = check(&b.build());
        assert_eq!(v.len(), 2, "{v:?}");
        assert_eq!(v[0].entries, vec![b0, b1]);
        assert_eq!(v[1].entries, vec![a0, a1, a2]);
        assert!(v[1].message.contains("3 offsets"), "{}", v[1].message);
    }
}
