//! queue-fifo and queue-rate: waiting-queue tokens activate in the order their users entered
//! each concert's queue, and an activator group activates at most M tokens per N seconds. A
//! workflow declares the same promises for any listener (`fifo`, `rate`): its effects on the
//! records of one key follow the order they were sent, and its group takes at most M effects per
//! window. Both read the history once, keeping state per queue (key) and per group.

use super::{MAX_REPORTED, Violation, note_unlisted};
use crate::describe::event;
use crate::history::{EventKind, GroupId, History, Micros, Op};
use std::collections::{BTreeMap, BTreeSet};

/// Items entering queues and taking effect: an item's first effect must not come after the
/// first effect of an item that entered its queue later.
struct Fifo<I, Q> {
    /// Item -> (its queue, its place there, the entry that entered it).
    entered: BTreeMap<I, (Q, u64, usize)>,
    next_place: BTreeMap<Q, u64>,
    /// Per queue: the furthest place that took effect so far, and that effect's entry.
    furthest: BTreeMap<Q, (u64, usize)>,
    took_effect: BTreeSet<I>,
}

/// An item that took effect after one that entered its queue after it.
struct Jump<Q> {
    queue: Q,
    place: u64,
    entered: usize,
    ahead: u64,
    ahead_effect: usize,
}

impl<I: Ord + Copy, Q: Ord + Copy> Fifo<I, Q> {
    fn new() -> Self {
        Self {
            entered: BTreeMap::new(),
            next_place: BTreeMap::new(),
            furthest: BTreeMap::new(),
            took_effect: BTreeSet::new(),
        }
    }

    /// `item` entered `queue` at entry `at` (again: no new place).
    fn enter(&mut self, item: I, queue: Q, at: usize) {
        if self.entered.contains_key(&item) {
            return;
        }
        let n = self.next_place.entry(queue).or_insert(0);
        self.entered.insert(item, (queue, *n, at));
        *n += 1;
    }

    /// `item` took effect at entry `at`: the jump it shows, if this is its first effect and an
    /// item that entered after it took effect before.
    fn take_effect(&mut self, item: I, at: usize) -> Option<Jump<Q>> {
        if !self.took_effect.insert(item) {
            return None; // again, after a redelivery: not an ordering question
        }
        let &(queue, place, entered) = self.entered.get(&item)?;
        match self.furthest.get(&queue) {
            Some(&(ahead, ahead_effect)) if ahead > place => Some(Jump { queue, place, entered, ahead, ahead_effect }),
            _ => {
                self.furthest.insert(queue, (place, at));
                None
            }
        }
    }
}

/// The bursts in `times` (effects' times and entries, in time order): more than `max` within
/// `interval` of each other. One per burst: (how many, the first's entry, the last's entry).
fn bursts(times: &[(Micros, usize)], max: u32, interval: Micros) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut reported_until = 0;
    for end in 0..times.len() {
        while times[end].0 - times[start].0 >= interval {
            start += 1;
        }
        let n = end - start + 1;
        if n > max as usize && end >= reported_until {
            reported_until = end + n;
            out.push((n, times[start].1, times[end].1));
        }
    }
    out
}

pub(crate) fn check_fifo(h: &History) -> Vec<Violation> {
    let mut fifo = Fifo::new();
    let mut out = Vec::new();
    let mut total = 0;
    for (i, e) in h.entries.iter().enumerate() {
        match e.op {
            Op::QueueEntered { token, concert, .. } => fifo.enter(token, concert, i),
            Op::TokenActivated { token, .. } => {
                let Some(j) = fifo.take_effect(token, i) else { continue };
                total += 1;
                if out.len() < MAX_REPORTED {
                    out.push(Violation::new(
                        format!(
                            "token {token} entered concert {}'s queue at place {} but was activated after the token at \
                             place {}",
                            j.queue, j.place, j.ahead
                        ),
                        vec![j.entered, j.ahead_effect, i],
                    ));
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
        for (n, first, last) in bursts(&acts, tokens, interval) {
            total += 1;
            if out.len() < MAX_REPORTED {
                out.push(Violation::new(
                    format!(
                        "group {} activated {n} tokens within {} ms, more than its {tokens}",
                        h.group_name(group),
                        interval / 1_000
                    ),
                    vec![limit_entry, first, last],
                ));
            }
        }
    }
    note_unlisted(&mut out, total, "queue-rate");
    out
}

/// A workflow's `fifo` invariant `name`: listener `handler` takes effect on the records of
/// `kind` that share a key in the order the application sent them (their first `Send`).
pub(crate) fn check_declared_fifo(h: &History, name: &str, handler: u16, kind: EventKind) -> Vec<Violation> {
    let mut fifo = Fifo::new();
    let mut out = Vec::new();
    let mut total = 0;
    for (i, e) in h.entries.iter().enumerate() {
        match e.op {
            Op::Send { key, value, .. } if value.kind() == kind => fifo.enter(value, key, i),
            Op::Effect { handler: by, cause, .. } if by == handler => {
                let Some(j) = fifo.take_effect(cause, i) else { continue };
                total += 1;
                if out.len() < MAX_REPORTED {
                    let key = j.queue.map_or_else(|| "no key".to_string(), |k| format!("key {k}"));
                    out.push(Violation::new(
                        format!(
                            "{} was sent {} with {key} but took effect at {} after the record sent {}",
                            event(h, cause),
                            ordinal(j.place),
                            h.handler_name(handler),
                            ordinal(j.ahead)
                        ),
                        vec![j.entered, j.ahead_effect, i],
                    ));
                }
            }
            _ => {}
        }
    }
    note_unlisted(&mut out, total, name);
    out
}

/// A workflow's `rate` invariant `name`: each group running listener `handler` takes at most
/// `max` effects within any `per_us`.
pub(crate) fn check_declared_rate(h: &History, name: &str, handler: u16, max: u32, per_us: Micros) -> Vec<Violation> {
    let mut times: BTreeMap<GroupId, Vec<(Micros, usize)>> = BTreeMap::new();
    for (i, e) in h.entries.iter().enumerate() {
        if let Op::Effect { group, handler: by, .. } = e.op
            && by == handler
        {
            times.entry(group).or_default().push((e.time, i));
        }
    }
    let mut out = Vec::new();
    let mut total = 0;
    for (group, effects) in times {
        for (n, first, last) in bursts(&effects, max, per_us) {
            total += 1;
            if out.len() < MAX_REPORTED {
                out.push(Violation::new(
                    format!(
                        "{} (group {}) took {n} effects within {} ms, more than the {max} promised",
                        h.handler_name(handler),
                        h.group_name(group),
                        per_us / 1_000
                    ),
                    vec![first, last],
                ));
            }
        }
    }
    note_unlisted(&mut out, total, name);
    out
}

/// "1st", "2nd", ... for a place counted from 0.
fn ordinal(place: u64) -> String {
    let n = place + 1;
    let suffix = match (n % 10, n % 100) {
        (1, x) if x != 11 => "st",
        (2, x) if x != 12 => "nd",
        (3, x) if x != 13 => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::{check_fifo, check_rate};
    use crate::checkers::Invariant;
    use crate::checkers::testkit::{HistoryBuilder, R0, RANKING, SERVICE, WORKLOAD, ev, orders};
    use crate::history::{EventKind, History, InvariantInfo, Judged, Op};

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

    /// A workflow's `fifo` (listener handler 1 over `order-created`, kind 0) and `rate`
    /// (at most 2 effects per 10 ms) claims, in the header.
    fn declare(h: &mut History) {
        let info = |name: &str, judged| InvariantInfo {
            name: name.into(),
            table: String::new(),
            condition: String::new(),
            judged,
        };
        h.header.handlers = vec!["enter-queue".into(), "activator".into()];
        h.header.invariants = vec![
            info("in-order", Judged::Fifo { handler: 1, event: EventKind(0) }),
            info("paced", Judged::Rate { handler: 1, max: 2, per_us: 10_000 }),
        ];
    }

    fn effect(b: &mut HistoryBuilder, id: u64) -> usize {
        b.op(R0, Op::Effect { group: RANKING, cause: ev(id), handler: 1, step: 0 })
    }

    #[test]
    fn a_declared_fifo_follows_the_send_order_per_key() {
        let mut b = HistoryBuilder::new();
        b.send(orders(0), Some(1), 10);
        b.send(orders(0), Some(1), 11);
        b.send(orders(1), Some(2), 12); // another key is another queue
        effect(&mut b, 12);
        effect(&mut b, 10);
        b.op(R0, Op::Effect { group: RANKING, cause: ev(11), handler: 0, step: 0 }); // another handler
        effect(&mut b, 11);
        effect(&mut b, 10); // again, after a redelivery
        let mut h = b.build();
        declare(&mut h);
        assert_eq!(Invariant::declared("in-order").check(&h), vec![]);

        let mut b = HistoryBuilder::new();
        let first = b.send(orders(0), Some(1), 10);
        b.send(orders(0), Some(1), 11);
        b.send(orders(0), Some(1), 11); // sent again: its place is its first send's
        let jumped = effect(&mut b, 11);
        let late = effect(&mut b, 10);
        let mut h = b.build();
        declare(&mut h);
        let v = Invariant::declared("in-order").check(&h);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].entries, vec![first, jumped, late]);
        assert!(
            v[0].message.contains(
                "order-created(order 10) was sent 1st with key 1 but took effect at activator after the \
                                   record sent 2nd"
            ),
            "{}",
            v[0].message
        );
    }

    #[test]
    fn a_declared_rate_counts_one_listener_s_effects_per_window() {
        let mut b = HistoryBuilder::new();
        b.send(orders(0), Some(1), 1);
        effect(&mut b, 1);
        effect(&mut b, 2);
        b.op(SERVICE, Op::Effect { group: RANKING, cause: ev(3), handler: 0, step: 0 }); // not the listener's
        for _ in 0..10 {
            b.op(WORKLOAD, Op::Crashed); // 10 ms pass
        }
        effect(&mut b, 3);
        effect(&mut b, 4);
        let mut h = b.build();
        declare(&mut h);
        assert_eq!(Invariant::declared("paced").check(&h), vec![]);

        let mut b = HistoryBuilder::new();
        let first = effect(&mut b, 1);
        effect(&mut b, 2);
        let third = effect(&mut b, 3);
        let mut h = b.build();
        declare(&mut h);
        let v = Invariant::declared("paced").check(&h);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].entries, vec![first, third]);
        assert!(
            v[0].message.contains("activator (group ranking) took 3 effects within 10 ms, more than the 2 promised")
        );
    }
}
