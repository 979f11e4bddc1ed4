//! lost-write (Jepsen's): a record that must have committed, below (or at) an offset that a
//! consumer read while reading over it, that no poll ever returned.
//!
//! A record "must have committed" when its delivery report gave it an offset (`SendOk` with
//! `Some(offset)`), or when a poll returned it; only the first kind can be lost, since the second
//! was read. With `acks=0` the offset is unknown, so such a record cannot be placed and is not
//! judged. An acknowledged record at `tp@offset` is lost when no poll of any group ever returned
//! that (tp, offset, value) and some consumer read over the offset: one consumer process of one
//! group, between two rebalances of that group as that process saw them (`Assigned`, `Revoked`,
//! `LeftGroup`), polled offsets `lo..=hi` of that partition with `lo <= offset <= hi`. (At
//! `offset == hi` that consumer read another value at the offset: the acknowledged one is gone.)
//!
//! Judging over such a run, rather than over "the lowest and highest offset a group ever polled",
//! keeps the checker sound when a group legitimately never reads some offsets: a group that joins
//! with `auto.offset.reset=latest` starts at the log end, and so does a partition that moves to
//! another member before any offset was committed for it.

use super::{MAX_REPORTED, Violation, note_unlisted};
use crate::history::{EventId, GroupId, History, NodeId, Op, Tp};
use std::collections::BTreeMap;

/// One consumer process's successive polls of one partition, with no rebalance in between.
struct Run {
    node: NodeId,
    group: GroupId,
    tp: Tp,
    lo: u64,
    hi: u64,
    /// Per poll of the run: (the highest offset polled in the run so far, the poll entry).
    polls: Vec<(u64, usize)>,
}

pub(crate) fn check(h: &History) -> Vec<Violation> {
    let mut runs: Vec<Run> = Vec::new();
    let mut active: BTreeMap<(NodeId, GroupId), BTreeMap<Tp, usize>> = BTreeMap::new();
    let mut reads: Vec<(Tp, u64, EventId)> = Vec::new();
    let mut acked: Vec<(Tp, u64, EventId, usize)> = Vec::new();
    let mut touched: Vec<usize> = Vec::new();

    for (i, e) in h.entries.iter().enumerate() {
        match &e.op {
            Op::SendOk { tp, value, offset: Some(o), .. } => acked.push((*tp, *o, *value, i)),
            Op::Poll { group, records } => {
                let mine = active.entry((e.process, *group)).or_default();
                touched.clear();
                for r in records {
                    reads.push((r.tp, r.offset, r.value));
                    let run = *mine.entry(r.tp).or_insert_with(|| {
                        runs.push(Run {
                            node: e.process,
                            group: *group,
                            tp: r.tp,
                            lo: r.offset,
                            hi: r.offset,
                            polls: Vec::new(),
                        });
                        runs.len() - 1
                    });
                    let run_ref = &mut runs[run];
                    run_ref.lo = run_ref.lo.min(r.offset);
                    run_ref.hi = run_ref.hi.max(r.offset);
                    if !touched.contains(&run) {
                        touched.push(run);
                    }
                }
                for &run in &touched {
                    let hi = runs[run].hi;
                    runs[run].polls.push((hi, i));
                }
            }
            Op::Assigned { group, .. } | Op::Revoked { group, .. } | Op::LeftGroup { group, .. } => {
                active.remove(&(e.process, *group));
            }
            _ => {}
        }
    }

    reads.sort_unstable();
    reads.dedup();
    // Offsets some consumer read over, per partition: the runs' ranges, merged.
    let mut covered: Vec<(Tp, u64, u64)> = runs.iter().map(|r| (r.tp, r.lo, r.hi)).collect();
    covered.sort_unstable();
    let mut merged: Vec<(Tp, u64, u64)> = Vec::with_capacity(covered.len());
    for (tp, lo, hi) in covered {
        match merged.last_mut() {
            Some((ltp, _, lhi)) if *ltp == tp && lo <= lhi.saturating_add(1) => *lhi = (*lhi).max(hi),
            _ => merged.push((tp, lo, hi)),
        }
    }
    let is_covered = |tp: Tp, o: u64| {
        let n = merged.partition_point(|&(t, lo, _)| (t, lo) <= (tp, o));
        n > 0 && merged[n - 1].0 == tp && merged[n - 1].2 >= o
    };

    // One judgement per acknowledged (tp, offset, value), at its first delivery report.
    acked.sort_unstable_by_key(|&(tp, o, v, i)| (tp, o, v, i));
    acked.dedup_by_key(|&mut (tp, o, v, _)| (tp, o, v));
    let mut lost: Vec<(usize, Tp, u64, EventId)> = acked
        .into_iter()
        .filter(|&(tp, o, v, _)| reads.binary_search(&(tp, o, v)).is_err() && is_covered(tp, o))
        .map(|(tp, o, v, i)| (i, tp, o, v))
        .collect();
    lost.sort_unstable();
    let total = lost.len();
    lost.truncate(MAX_REPORTED);

    // The send each reported record came from: the last `Send` of it before its report.
    // (tp, value) -> [(report entry, that send)].
    type ReportSends = Vec<(usize, Option<usize>)>;
    let mut sends: BTreeMap<(Tp, EventId), ReportSends> = BTreeMap::new();
    for &(i, tp, _, v) in &lost {
        sends.entry((tp, v)).or_default().push((i, None));
    }
    for (i, e) in h.entries.iter().enumerate() {
        if let Op::Send { tp, value, .. } = e.op
            && let Some(wanted) = sends.get_mut(&(tp, value))
        {
            for (report, send) in wanted.iter_mut() {
                if i < *report {
                    *send = Some(i);
                }
            }
        }
    }

    let mut out: Vec<Violation> = lost
        .iter()
        .map(|&(i, tp, o, v)| {
            let covers = |r: &&Run| r.tp == tp && r.lo <= o && o <= r.hi;
            let run = runs.iter().find(covers).expect("a lost record lies in some run");
            // The last poll of the run that stayed below `o`, and the first that reached it.
            let k = run.polls.partition_point(|&(hi, _)| hi < o);
            let mut entries = vec![i, run.polls[k].1];
            if k > 0 {
                entries.push(run.polls[k - 1].1);
            }
            entries.extend(sends[&(tp, v)].iter().find(|(r, _)| *r == i).and_then(|&(_, s)| s));
            let tp_name = format!("{}-{}", h.topic_name(tp.topic), tp.partition);
            Violation::new(
                format!(
                    "{} acknowledged at {tp_name}@{o} (entry {i}) was never read, \
                     yet {} of group {} read {tp_name} from @{} to @{} over it",
                    h.event_label(v),
                    h.node_name(run.node),
                    h.group_name(run.group),
                    run.lo,
                    run.hi
                ),
                entries,
            )
        })
        .collect();

    note_unlisted(&mut out, total, "lost-write");
    out
}

#[cfg(test)]
mod tests {
    use super::check;
    use crate::checkers::testkit::{C0, CART, HistoryBuilder, R0, R1, RANKING, orders, rec};

    #[test]
    fn everything_read_passes() {
        let mut b = HistoryBuilder::new();
        let p = orders(0);
        b.produce(p, 1, 0);
        b.produce(p, 2, 1);
        b.produce(p, 3, 2);
        b.consume(R0, RANKING, &[rec(p, 0, 1, 1), rec(p, 1, 2, 2)]);
        b.consume(R0, RANKING, &[rec(p, 2, 3, 3)]);
        // Acked above everything read: unseen, not lost.
        b.produce(p, 4, 3);
        assert_eq!(check(&b.build()), vec![]);
    }

    #[test]
    fn acked_record_read_over_but_never_read_is_lost() {
        let mut b = HistoryBuilder::new();
        let p = orders(1);
        b.produce(p, 1, 0);
        let (send, ok) = b.produce(p, 2, 1);
        b.produce(p, 3, 2);
        let before = b.poll(R0, RANKING, &[rec(p, 0, 1, 1)]);
        // Offset 1 is gone (say, truncated by an unclean election); the consumer reads 2 next.
        let past = b.poll(R0, RANKING, &[rec(p, 2, 3, 3)]);
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].entries, vec![send, ok, before, past]);
        assert!(v[0].message.contains("order-created-1@1"), "{}", v[0].message);
        assert!(v[0].message.contains("group ranking"), "{}", v[0].message);
    }

    #[test]
    fn acked_record_replaced_at_its_offset_is_lost() {
        let mut b = HistoryBuilder::new();
        let p = orders(0);
        b.produce(p, 1, 0);
        let (send, ok) = b.produce(p, 2, 1);
        // Leader failover truncated offset 1; a later record took it.
        b.produce(p, 3, 1);
        let poll = b.poll(R0, RANKING, &[rec(p, 0, 1, 1), rec(p, 1, 3, 3)]);
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].entries, vec![send, ok, poll]);
    }

    #[test]
    fn late_group_with_offset_reset_latest_passes() {
        let mut b = HistoryBuilder::new();
        let p = orders(0);
        for o in 0..5 {
            b.produce(p, o, o);
        }
        // ranking read everything; cart joined late and started at the log end (offset 3).
        b.assigned(R0, RANKING, &[p]);
        b.poll(R0, RANKING, &(0..5).map(|o| rec(p, o, o, o)).collect::<Vec<_>>());
        b.assigned(C0, CART, &[p]);
        b.poll(C0, CART, &[rec(p, 3, 3, 3), rec(p, 4, 4, 4)]);
        assert_eq!(check(&b.build()), vec![]);

        // And if nobody read 0..3, they are unread by everyone, but nobody read over them.
        let mut b = HistoryBuilder::new();
        for o in 0..5 {
            b.produce(p, o, o);
        }
        b.assigned(C0, CART, &[p]);
        b.poll(C0, CART, &[rec(p, 3, 3, 3), rec(p, 4, 4, 4)]);
        assert_eq!(check(&b.build()), vec![]);
    }

    #[test]
    fn reset_to_latest_after_a_rebalance_is_not_a_lost_write() {
        let mut b = HistoryBuilder::new();
        let p = orders(0);
        for o in 0..6 {
            b.produce(p, o, o);
        }
        b.assigned(R0, RANKING, &[p]);
        b.poll(R0, RANKING, &[rec(p, 0, 0, 0), rec(p, 1, 1, 1)]);
        b.revoked(R0, RANKING, &[p]);
        // No committed offset: the new owner resets to the log end.
        b.assigned(R1, RANKING, &[p]);
        b.poll(R1, RANKING, &[rec(p, 5, 5, 5)]);
        assert_eq!(check(&b.build()), vec![]);

        // Without the rebalance between them, the same reads skip over 2..=4: lost.
        let mut b = HistoryBuilder::new();
        for o in 0..6 {
            b.produce(p, o, o);
        }
        b.poll(R0, RANKING, &[rec(p, 0, 0, 0), rec(p, 1, 1, 1)]);
        b.poll(R0, RANKING, &[rec(p, 5, 5, 5)]);
        let v = check(&b.build());
        assert_eq!(v.len(), 3, "{v:?}");
        assert!(v[0].message.contains("@2"), "{}", v[0].message);
    }

    #[test]
    fn acks_0_without_offset_and_failed_sends_are_not_judged() {
        let mut b = HistoryBuilder::new();
        let p = orders(0);
        b.produce(p, 1, 0);
        b.send(p, Some(2), 2);
        b.send_ok(p, Some(2), 2, None);
        b.send(p, Some(3), 3);
        b.send_failed(p, Some(3), 3);
        b.produce(p, 4, 1);
        b.poll(R0, RANKING, &[rec(p, 0, 1, 1), rec(p, 1, 4, 4)]);
        assert_eq!(check(&b.build()), vec![]);
    }

    #[test]
    fn a_record_read_by_another_group_is_not_lost() {
        let mut b = HistoryBuilder::new();
        let p = orders(0);
        b.produce(p, 1, 0);
        b.produce(p, 2, 1);
        b.produce(p, 3, 2);
        b.poll(R0, RANKING, &[rec(p, 0, 1, 1)]);
        b.poll(R0, RANKING, &[rec(p, 2, 3, 3)]);
        b.poll(C0, CART, &[rec(p, 1, 2, 2)]);
        // (ranking skipped offset 1: that is poll-skip's business, not a lost write.)
        assert_eq!(check(&b.build()), vec![]);
    }
}
