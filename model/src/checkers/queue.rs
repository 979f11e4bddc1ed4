//! queue-fifo and queue-rate: waiting-queue tokens activate in the order their users entered
//! each concert's queue, and an activator group activates at most M tokens per N seconds.

use super::{MAX_REPORTED, Violation, note_unlisted};
use crate::history::{GroupId, History, Micros, Op};
use std::collections::BTreeMap;

pub(crate) fn check_fifo(h: &History) -> Vec<Violation> {
    // token -> (concert, entry index in its queue, entry entry)
    let mut entered: BTreeMap<u64, (u32, u64, usize)> = BTreeMap::new();
    let mut next_position: BTreeMap<u32, u64> = BTreeMap::new();
    // Per concert: the latest-entered token activated so far (its position, its activation entry).
    let mut furthest: BTreeMap<u32, (u64, usize)> = BTreeMap::new();
    let mut activated: BTreeMap<u64, ()> = BTreeMap::new();
    let mut out = Vec::new();
    let mut total = 0;
    for (i, e) in h.entries.iter().enumerate() {
        match e.op {
            Op::QueueEntered { token, concert, .. } => {
                let n = next_position.entry(concert).or_insert(0);
                entered.insert(token, (concert, *n, i));
                *n += 1;
            }
            Op::TokenActivated { token, concert, .. } => {
                if activated.insert(token, ()).is_some() {
                    continue; // re-activation after a redelivery: not an ordering question
                }
                let Some(&(_, position, entry)) = entered.get(&token) else { continue };
                match furthest.get(&concert) {
                    Some(&(ahead, by)) if ahead > position => {
                        total += 1;
                        if out.len() < MAX_REPORTED {
                            out.push(Violation::new(
                                format!(
                                    "token {token} entered concert {concert}'s queue at place {position} but was activated \
                                     after the token at place {ahead}"
                                ),
                                vec![entry, by, i],
                            ));
                        }
                    }
                    _ => {
                        furthest.insert(concert, (position, i));
                    }
                }
            }
            _ => {}
        }
    }
    note_unlisted(&mut out, total, "queue-fifo");
    out
}

pub(crate) fn check_rate(h: &History) -> Vec<Violation> {
    let mut limits: BTreeMap<GroupId, (u32, Micros, usize)> = BTreeMap::new();
    let mut times: BTreeMap<GroupId, Vec<(Micros, usize)>> = BTreeMap::new();
    for (i, e) in h.entries.iter().enumerate() {
        match e.op {
            Op::QueueRateLimit { group, tokens, interval_us } => {
                limits.insert(group, (tokens, interval_us, i));
            }
            Op::TokenActivated { group, .. } => times.entry(group).or_default().push((e.time, i)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    let mut total = 0;
    for (group, acts) in times {
        let Some(&(tokens, interval, limit_entry)) = limits.get(&group) else { continue };
        // Sliding window: activations within `interval` of each other.
        let mut start = 0;
        let mut reported_until = 0;
        for end in 0..acts.len() {
            while acts[end].0 - acts[start].0 >= interval {
                start += 1;
            }
            let n = end - start + 1;
            if n > tokens as usize && end >= reported_until {
                total += 1;
                reported_until = end + n; // one report per burst
                if out.len() < MAX_REPORTED {
                    out.push(Violation::new(
                        format!(
                            "group {} activated {n} tokens within {} ms, more than its {tokens}",
                            h.group_name(group),
                            interval / 1_000
                        ),
                        vec![limit_entry, acts[start].1, acts[end].1],
                    ));
                }
            }
        }
    }
    note_unlisted(&mut out, total, "queue-rate");
    out
}

#[cfg(test)]
mod tests {
    use super::{check_fifo, check_rate};
    use crate::checkers::testkit::{HistoryBuilder, RANKING, WORKLOAD};
    use crate::history::Op;

    fn enter(b: &mut HistoryBuilder, token: u64, concert: u32) -> usize {
        b.op(WORKLOAD, Op::QueueEntered { token, concert, user: token })
    }

    fn activate(b: &mut HistoryBuilder, token: u64, concert: u32) -> usize {
        b.op(WORKLOAD, Op::TokenActivated { group: RANKING, token, concert, user: token })
    }

    #[test]
    fn in_order_activation_within_the_rate_passes() {
        let mut b = HistoryBuilder::new();
        b.op(WORKLOAD, Op::QueueRateLimit { group: RANKING, tokens: 2, interval_us: 10_000 });
        for t in 0..4 {
            enter(&mut b, t, 1);
        }
        enter(&mut b, 9, 2); // another concert's queue is its own
        activate(&mut b, 9, 2); // builder steps 1 ms per entry; a 10 ms window holds these two
        activate(&mut b, 0, 1);
        b.op(WORKLOAD, Op::StockFinal { product: 0, stock: 0 }); // time passes
        for _ in 0..12 {
            b.op(WORKLOAD, Op::StockFinal { product: 0, stock: 0 });
        }
        activate(&mut b, 1, 1);
        activate(&mut b, 2, 1);
        let h = b.build();
        assert_eq!(check_fifo(&h), vec![]);
        assert_eq!(check_rate(&h), vec![]);
    }

    #[test]
    fn out_of_order_and_too_fast_are_reported() {
        let mut b = HistoryBuilder::new();
        let limit = b.op(WORKLOAD, Op::QueueRateLimit { group: RANKING, tokens: 2, interval_us: 10_000 });
        let first = enter(&mut b, 0, 1);
        enter(&mut b, 1, 1);
        enter(&mut b, 2, 1);
        let jumped = activate(&mut b, 1, 1);
        let late = activate(&mut b, 0, 1);
        let third = activate(&mut b, 2, 1);
        let h = b.build();
        let v = check_fifo(&h);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].entries, vec![first, jumped, late]);
        let v = check_rate(&h);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].entries, vec![limit, jumped, third]);
        assert!(v[0].message.contains("3 tokens within 10 ms"), "{}", v[0].message);
    }
}
