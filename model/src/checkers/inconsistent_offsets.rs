//! inconsistent-offsets (Jepsen's): one offset of a partition holds two different values in
//! different reads (or a read and a delivery report).
//!
//! A partition's log only ever grows, so an offset keeps its record forever, unless the log was
//! truncated under the readers and rewritten: an unclean leader election, or a broker whose
//! unflushed tail died with its machine. Per (topic-partition, offset), the values that delivery
//! reports (`SendOk` with an offset) and polls placed there; two different values are reported
//! with the first entry that showed each.

use super::{Violation, in_history_order};
use crate::history::{EventId, History, Op, Tp};

pub(crate) fn check(h: &History) -> Vec<Violation> {
    // (tp, offset, value, the first entry that showed it).
    let mut seen: Vec<(Tp, u64, EventId, usize)> = Vec::new();
    for (i, e) in h.entries.iter().enumerate() {
        match &e.op {
            Op::SendOk { tp, value, offset: Some(o), .. } => seen.push((*tp, *o, *value, i)),
            Op::Poll { records, .. } => seen.extend(records.iter().map(|r| (r.tp, r.offset, r.value, i))),
            _ => {}
        }
    }
    seen.sort_unstable();
    seen.dedup_by_key(|&mut (tp, o, v, _)| (tp, o, v));
    let mut found: Vec<(usize, Violation)> = Vec::new();
    for run in seen.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)).filter(|run| run.len() > 1) {
        let (tp, offset, ..) = run[0];
        let mut entries: Vec<usize> = run.iter().map(|r| r.3).collect();
        entries.sort_unstable();
        let values: Vec<String> = run.iter().map(|r| h.event_label(r.2)).collect();
        let message = format!(
            "{}-{}@{offset} holds {} different values: {} (the log was truncated and rewritten under its readers)",
            h.topic_name(tp.topic),
            tp.partition,
            run.len(),
            values.join(", ")
        );
        found.push((entries[1], Violation::new(message, entries)));
    }
    in_history_order(found, "inconsistent-offsets")
}

#[cfg(test)]
mod tests {
    use super::check;
    use crate::checkers::testkit::{C0, CART, HistoryBuilder, R0, RANKING, orders, rec};

    #[test]
    fn one_value_per_offset_passes_however_often_it_is_read() {
        let mut b = HistoryBuilder::new();
        let p = orders(0);
        b.produce(p, 1, 0);
        b.produce(p, 2, 1);
        b.consume(R0, RANKING, &[rec(p, 0, 1, 1), rec(p, 1, 2, 2)]);
        b.consume(C0, CART, &[rec(p, 0, 1, 1)]);
        // The same offset of another partition is another record.
        b.produce(orders(1), 9, 0);
        assert_eq!(check(&b.build()), vec![]);
    }

    #[test]
    fn an_offset_rewritten_after_truncation_is_reported() {
        let mut b = HistoryBuilder::new();
        let p = orders(1);
        let (_, ok) = b.produce(p, 1, 0);
        let read = b.poll(R0, RANKING, &[rec(p, 0, 1, 1)]);
        // An unclean election truncated offset 0 away; order 2 was written there.
        let (_, ok2) = b.produce(p, 2, 0);
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].entries, vec![ok, ok2]);
        assert!(v[0].message.contains("order-created-1@0 holds 2 different values"), "{}", v[0].message);
        let _ = read;
    }
}
