//! effect-once: no consumer group applies one event's effect more than once.
//!
//! Per (group, event), the successful `Processed` entries are counted; more than one is a
//! violation listing all of them (redelivery after a rebalance or a crash, or a duplicate record,
//! handled twice). Failed handling (`ok = false`) applied nothing and does not count. Domain effect
//! entries carry no group, so the count is over `Processed`.

use super::{MAX_REPORTED, Violation, note_unlisted};
use crate::history::{EventId, GroupId, History, Op};

pub(crate) fn check(h: &History) -> Vec<Violation> {
    let mut done: Vec<(GroupId, EventId, usize)> = h
        .entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e.op {
            Op::Processed { group, record, ok: true }
                if h.header.groups.get(group.0 as usize).is_none_or(|g| g.effect_once) =>
            {
                Some((group, record.value, i))
            }
            _ => None,
        })
        .collect();
    done.sort_unstable();

    // Each (group, event) handled more than once: the range of `done` holding it, ordered by the
    // entry that handled it the second time (where the violation shows).
    let mut twice: Vec<(usize, std::ops::Range<usize>)> = done
        .chunk_by(|a, b| (a.0, a.1) == (b.0, b.1))
        .scan(0usize, |start, run| {
            let range = *start..*start + run.len();
            *start += run.len();
            Some((run.len() > 1).then(|| (run[1].2, range)))
        })
        .flatten()
        .collect();
    let total = twice.len();
    twice.sort_unstable_by_key(|&(second, _)| second);

    let mut out: Vec<Violation> = twice
        .into_iter()
        .take(MAX_REPORTED)
        .map(|(_, range)| {
            let run = &done[range];
            let (group, ev, _) = run[0];
            let entries: Vec<usize> = run.iter().map(|&(_, _, i)| i).collect();
            let places: Vec<String> = run
                .iter()
                .map(|&(_, _, i)| match &h.entries[i].op {
                    Op::Processed { record, .. } => format!(
                        "{}-{}@{} by {}",
                        h.topic_name(record.tp.topic),
                        record.tp.partition,
                        record.offset,
                        h.node_name(h.entries[i].process)
                    ),
                    _ => unreachable!("only Processed entries are collected"),
                })
                .collect();
            Violation::new(
                format!(
                    "group {} applied {} {} times: {}{}",
                    h.group_name(group),
                    h.event_label(ev),
                    run.len(),
                    places.iter().take(4).cloned().collect::<Vec<_>>().join(", "),
                    if places.len() > 4 { format!(", ... ({} more)", places.len() - 4) } else { String::new() }
                ),
                entries,
            )
        })
        .collect();

    note_unlisted(&mut out, total, "effect-once");
    out
}

#[cfg(test)]
mod tests {
    use super::check;
    use crate::checkers::testkit::{C0, CART, HistoryBuilder, R0, R1, RANKING, orders, rec};

    #[test]
    fn each_event_once_per_group_passes() {
        let mut b = HistoryBuilder::new();
        let p = orders(0);
        b.consume(R0, RANKING, &[rec(p, 0, 1, 1), rec(p, 1, 2, 2)]);
        // Another group handling the same events is its own effect.
        b.consume(C0, CART, &[rec(p, 0, 1, 1), rec(p, 1, 2, 2)]);
        // A failure then a successful retry applied the effect once.
        b.poll(R0, RANKING, &[rec(p, 2, 3, 3)]);
        b.processed(R0, RANKING, rec(p, 2, 3, 3), false);
        b.processed(R0, RANKING, rec(p, 2, 3, 3), true);
        assert_eq!(check(&b.build()), vec![]);
    }

    #[test]
    fn redelivery_after_a_rebalance_is_reported() {
        let mut b = HistoryBuilder::new();
        let p = orders(1);
        b.assigned(R0, RANKING, &[p]);
        b.poll(R0, RANKING, &[rec(p, 0, 1, 1), rec(p, 1, 2, 2)]);
        b.processed(R0, RANKING, rec(p, 0, 1, 1), true);
        let first = b.processed(R0, RANKING, rec(p, 1, 2, 2), true);
        // R0 never committed; the partition moves to R1, which starts again from offset 1.
        b.revoked(R0, RANKING, &[p]);
        b.assigned(R1, RANKING, &[p]);
        b.poll(R1, RANKING, &[rec(p, 1, 2, 2)]);
        let second = b.processed(R1, RANKING, rec(p, 1, 2, 2), true);
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].entries, vec![first, second]);
        assert!(v[0].message.contains("group ranking"), "{}", v[0].message);
        assert!(v[0].message.contains("2 times"), "{}", v[0].message);
        assert!(v[0].message.contains("order-created-1@1 by ranking-1"), "{}", v[0].message);
    }

    #[test]
    fn a_duplicate_record_handled_twice_is_reported_in_history_order() {
        let mut b = HistoryBuilder::new();
        let p = orders(0);
        // Event 9 twice (offsets 0 and 2), then event 5 twice (a later violation).
        let a = b.processed(R0, RANKING, rec(p, 0, 9, 9), true);
        b.processed(R0, RANKING, rec(p, 1, 5, 5), true);
        let c = b.processed(R0, RANKING, rec(p, 2, 9, 9), true);
        b.processed(R0, RANKING, rec(p, 3, 5, 5), true);
        let v = check(&b.build());
        assert_eq!(v.len(), 2, "{v:?}");
        assert_eq!(v[0].entries, vec![a, c]);
        assert_eq!(v[1].entries, vec![1, 3]);
    }
}
