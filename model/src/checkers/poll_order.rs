//! nonmonotonic-poll and poll-skip: one consumer's successive polls of a partition, with no
//! rebalance between them, go backwards or repeat / jump past an offset.
//!
//! Per (consumer process, group, topic-partition), walking that process's polls in history order:
//! within one poll a partition's records must be consecutive increasing offsets, and a poll's
//! first record of a partition must be the previous record's offset + 1. An offset at or below the
//! previous one is nonmonotonic-poll; one above previous + 1 is poll-skip.
//!
//! What legitimately moves a consumer's position, and so resets or relaxes the tracking:
//! - an `Assigned`, `Revoked` or `LeftGroup` of that process for that group: a rebalance moves the
//!   position to the committed offset (back, or forward to the log end with
//!   `auto.offset.reset=latest`), so tracking starts again for every partition of that group;
//! - a failed `Processed` of that process for that group: the error handler may seek back to the
//!   failed record (Spring's `DefaultErrorHandler` seeks every partition of the failed poll to its
//!   first unprocessed record), so the next poll of each partition may go back, once, without
//!   being nonmonotonic. Going forward past previous + 1 is still a skip.

use super::{MAX_REPORTED, Violation, note_unlisted};
use crate::history::{GroupId, History, NodeId, Op, Tp};
use std::collections::BTreeMap;

#[derive(Copy, Clone, PartialEq, Eq)]
enum Kind {
    Nonmonotonic,
    Skip,
}

/// Where a consumer process stands on a partition.
struct Position {
    /// The last offset it polled.
    last: u64,
    /// The poll that returned it.
    entry: usize,
    /// A failed handling since then may have sought back: the next poll may go back.
    may_rewind: bool,
}

pub(crate) fn check_nonmonotonic(h: &History) -> Vec<Violation> {
    check(h, Kind::Nonmonotonic)
}

pub(crate) fn check_skip(h: &History) -> Vec<Violation> {
    check(h, Kind::Skip)
}

fn check(h: &History, want: Kind) -> Vec<Violation> {
    let mut positions: BTreeMap<(NodeId, GroupId), BTreeMap<Tp, Position>> = BTreeMap::new();
    let mut out = Vec::new();
    let mut total = 0usize;

    for (i, e) in h.entries.iter().enumerate() {
        match &e.op {
            Op::Poll { group, records } => {
                let mine = positions.entry((e.process, *group)).or_default();
                for r in records {
                    let Some(pos) = mine.get_mut(&r.tp) else {
                        mine.insert(r.tp, Position { last: r.offset, entry: i, may_rewind: false });
                        continue;
                    };
                    let same_poll = pos.entry == i;
                    let found = if r.offset <= pos.last && (same_poll || !pos.may_rewind) {
                        Some(Kind::Nonmonotonic)
                    } else if r.offset > pos.last.saturating_add(1) {
                        Some(Kind::Skip)
                    } else {
                        None
                    };
                    if found == Some(want) {
                        total += 1;
                        if out.len() < MAX_REPORTED {
                            let tp = format!("{}-{}", h.topic_name(r.tp.topic), r.tp.partition);
                            let who = format!("{} (group {})", h.node_name(e.process), h.group_name(*group));
                            let (o, last) = (r.offset, pos.last);
                            let when = if same_poll {
                                "in the same poll".to_string()
                            } else {
                                format!("(entry {}) with no rebalance between", pos.entry)
                            };
                            let message = match want {
                                Kind::Nonmonotonic => {
                                    format!(
                                        "{who} polled {tp}@{o} after @{last} {when}: \
                                         it went back or repeated"
                                    )
                                }
                                Kind::Skip => format!(
                                    "{who} polled {tp}@{o} after @{last} {when}: \
                                     it skipped {} offset(s)",
                                    o - last - 1
                                ),
                            };
                            out.push(Violation::new(message, vec![pos.entry, i]));
                        }
                    }
                    *pos = Position { last: r.offset, entry: i, may_rewind: false };
                }
            }
            Op::Processed { group, ok: false, .. } => {
                if let Some(mine) = positions.get_mut(&(e.process, *group)) {
                    for pos in mine.values_mut() {
                        pos.may_rewind = true;
                    }
                }
            }
            Op::Assigned { group, .. } | Op::Revoked { group, .. } | Op::LeftGroup { group, .. } => {
                positions.remove(&(e.process, *group));
            }
            _ => {}
        }
    }

    let name = match want {
        Kind::Nonmonotonic => "nonmonotonic-poll",
        Kind::Skip => "poll-skip",
    };
    note_unlisted(&mut out, total, name);
    out
}

#[cfg(test)]
mod tests {
    use super::{check_nonmonotonic, check_skip};
    use crate::checkers::testkit::{C0, CART, HistoryBuilder, R0, R1, RANKING, orders, rec};

    #[test]
    fn consecutive_polls_pass() {
        let mut b = HistoryBuilder::new();
        let (p0, p1) = (orders(0), orders(1));
        b.assigned(R0, RANKING, &[p0, p1]);
        b.poll(R0, RANKING, &[rec(p0, 0, 1, 1), rec(p1, 5, 2, 2), rec(p0, 1, 3, 3)]);
        b.poll(R0, RANKING, &[rec(p1, 6, 4, 4), rec(p0, 2, 5, 5)]);
        // Another group and another process each keep their own position.
        b.poll(C0, CART, &[rec(p0, 0, 1, 1)]);
        b.poll(R1, RANKING, &[rec(p0, 0, 1, 1)]);
        b.poll(R0, RANKING, &[rec(p0, 3, 6, 6)]);
        let h = b.build();
        assert_eq!(check_nonmonotonic(&h), vec![]);
        assert_eq!(check_skip(&h), vec![]);
    }

    #[test]
    fn going_back_without_rebalance_is_nonmonotonic() {
        let mut b = HistoryBuilder::new();
        let p = orders(0);
        let first = b.poll(R0, RANKING, &[rec(p, 0, 1, 1), rec(p, 1, 2, 2)]);
        let again = b.poll(R0, RANKING, &[rec(p, 1, 2, 2), rec(p, 2, 3, 3)]);
        let h = b.build();
        let v = check_nonmonotonic(&h);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].entries, vec![first, again]);
        assert!(
            v[0].message.contains("ranking-0 (group ranking) polled order-created-0@1 after @1"),
            "{}",
            v[0].message
        );
        assert_eq!(check_skip(&h), vec![]);
    }

    #[test]
    fn jumping_forward_without_rebalance_is_a_skip() {
        let mut b = HistoryBuilder::new();
        let p = orders(1);
        let first = b.poll(R0, RANKING, &[rec(p, 0, 1, 1)]);
        let jump = b.poll(R0, RANKING, &[rec(p, 3, 2, 2)]);
        let h = b.build();
        let v = check_skip(&h);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].entries, vec![first, jump]);
        assert!(v[0].message.contains("skipped 2 offset(s)"), "{}", v[0].message);
        assert_eq!(check_nonmonotonic(&h), vec![]);
    }

    /// The coordinator removing a member is not a rebalance the member saw: a skip across it is
    /// still the member's skip.
    #[test]
    fn a_removal_by_the_coordinator_does_not_excuse_a_skip() {
        use crate::history::{LeaveReason, NodeId, Op};
        let mut b = HistoryBuilder::new();
        let p = orders(1);
        let first = b.poll(R0, RANKING, &[rec(p, 0, 1, 1)]);
        b.op(NodeId(5), Op::MemberRemoved { group: RANKING, member: R0, reason: LeaveReason::SessionTimeout });
        let jump = b.poll(R0, RANKING, &[rec(p, 3, 2, 2)]);
        let h = b.build();
        let v = check_skip(&h);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].entries, vec![first, jump]);
    }

    #[test]
    fn disorder_within_one_poll_is_reported_against_that_poll() {
        let mut b = HistoryBuilder::new();
        let p = orders(0);
        let poll = b.poll(R0, RANKING, &[rec(p, 4, 1, 1), rec(p, 6, 2, 2), rec(p, 5, 3, 3)]);
        let h = b.build();
        let skip = check_skip(&h);
        assert_eq!(skip.len(), 1, "{skip:?}");
        assert_eq!(skip[0].entries, vec![poll]);
        assert!(skip[0].message.contains("in the same poll"), "{}", skip[0].message);
        let back = check_nonmonotonic(&h);
        assert_eq!(back.len(), 1, "{back:?}");
        assert_eq!(back[0].entries, vec![poll]);
    }

    #[test]
    fn redelivery_after_a_rebalance_passes() {
        let mut b = HistoryBuilder::new();
        let p = orders(0);
        b.assigned(R0, RANKING, &[p]);
        b.poll(R0, RANKING, &[rec(p, 0, 1, 1), rec(p, 1, 2, 2), rec(p, 2, 3, 3)]);
        // Eager rebalance: revoked, then assigned again, back at the committed offset 1.
        b.revoked(R0, RANKING, &[p]);
        b.assigned(R0, RANKING, &[p]);
        b.poll(R0, RANKING, &[rec(p, 1, 2, 2), rec(p, 2, 3, 3)]);
        // Removed from the group (session timeout), rejoined, and reset to the log end.
        b.left(R0, RANKING);
        b.poll(R0, RANKING, &[rec(p, 9, 4, 4)]);
        let h = b.build();
        assert_eq!(check_nonmonotonic(&h), vec![]);
        assert_eq!(check_skip(&h), vec![]);
    }

    #[test]
    fn a_rebalance_of_another_group_resets_nothing() {
        let mut b = HistoryBuilder::new();
        let p = orders(0);
        let first = b.poll(R0, RANKING, &[rec(p, 0, 1, 1), rec(p, 1, 2, 2)]);
        b.assigned(R0, CART, &[p]);
        b.assigned(R1, RANKING, &[p]);
        let again = b.poll(R0, RANKING, &[rec(p, 0, 1, 1)]);
        let v = check_nonmonotonic(&b.build());
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].entries, vec![first, again]);
    }

    #[test]
    fn seek_back_after_a_failed_record_passes_once() {
        let mut b = HistoryBuilder::new();
        let p = orders(0);
        b.poll(R0, RANKING, &[rec(p, 0, 1, 1), rec(p, 1, 2, 2), rec(p, 2, 3, 3)]);
        b.processed(R0, RANKING, rec(p, 0, 1, 1), true);
        b.processed(R0, RANKING, rec(p, 1, 2, 2), false);
        // The error handler seeks back to the failed offset 1.
        let retry = b.poll(R0, RANKING, &[rec(p, 1, 2, 2), rec(p, 2, 3, 3)]);
        b.processed(R0, RANKING, rec(p, 1, 2, 2), true);
        b.processed(R0, RANKING, rec(p, 2, 3, 3), true);
        let back = b.poll(R0, RANKING, &[rec(p, 2, 3, 3)]);
        let h = b.build();
        let v = check_nonmonotonic(&h);
        // The seek after the failure is fine; going back again with no failure is not.
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].entries, vec![retry, back]);
        assert_eq!(check_skip(&h), vec![]);
    }
}
