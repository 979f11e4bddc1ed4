//! eventual-processing: every committed business fact's event is published and then processed by
//! every group subscribed to the topic it was published to, by the end of the run (the quiet
//! period gives the system time to settle).
//!
//! For each entry whose `expected_event()` is some event `ev`: there must be a `Send` of `ev`
//! (else "never published"); and for each group subscribed to a topic `ev` was sent to, a
//! successful `Processed` of a record of that topic whose value is `ev` (else one violation per
//! missing group, showing the fact, its sends and their delivery reports).

use super::{MAX_REPORTED, Violation, note_unlisted};
use crate::history::{EventId, GroupId, History, NodeId, Op, TopicId, Tp};
use std::collections::{BTreeMap, BTreeSet};

/// A poll that handed out a record: (entry, tp, offset, consumer).
type PollSite = (usize, Tp, u64, NodeId);
/// A successful commit: (entry, offsets).
type CommitSite = (usize, Vec<(Tp, u64)>);

/// What a group did with the records of one event that it did not process: the polls that
/// handed them out, the failed attempts, its dead-letter parking, the commits past them, and
/// crashes of the consumers that held them. Shared with no-silent-loss.
#[derive(Default)]
pub(super) struct GroupTrail {
    /// Per (event, group): the polls that returned a record of the event: (entry, tp, offset, consumer).
    polls: BTreeMap<(EventId, GroupId), Vec<PollSite>>,
    failed: BTreeMap<(EventId, GroupId), Vec<usize>>,
    dead_lettered: BTreeMap<(EventId, GroupId), usize>,
    /// Per group: its successful commits, (entry, offsets).
    commits: BTreeMap<GroupId, Vec<CommitSite>>,
    /// Per process: its crashes.
    crashes: BTreeMap<NodeId, Vec<usize>>,
}

/// The topics records were parked on (sends to them are the dead-letter copies, not the
/// record's own sends).
pub(super) fn dead_letter_topics(h: &History) -> BTreeSet<TopicId> {
    h.entries
        .iter()
        .filter_map(|e| match &e.op {
            Op::DeadLettered { to, .. } => Some(to.topic),
            _ => None,
        })
        .collect()
}

impl GroupTrail {
    /// The trail of every group in `h`: built only when there is a violation to explain (it
    /// indexes every polled record).
    pub(super) fn of(h: &History) -> Self {
        let mut t = GroupTrail::default();
        for (i, e) in h.entries.iter().enumerate() {
            match &e.op {
                Op::Poll { group, records } => {
                    for r in records {
                        t.polls.entry((r.value, *group)).or_default().push((i, r.tp, r.offset, e.process));
                    }
                }
                Op::Processed { group, record, ok: false } => {
                    t.failed.entry((record.value, *group)).or_default().push(i)
                }
                Op::DeadLettered { group, record, .. } => {
                    t.dead_lettered.entry((record.value, *group)).or_insert(i);
                }
                Op::Commit { group, offsets, error: None, .. } => {
                    t.commits.entry(*group).or_default().push((i, offsets.clone()))
                }
                Op::Crashed => t.crashes.entry(e.process).or_default().push(i),
                _ => {}
            }
        }
        t
    }

    /// The dead-letter parking of `ev` by `g`, if any.
    pub(super) fn dead_lettered(&self, ev: EventId, g: GroupId) -> Option<usize> {
        self.dead_lettered.get(&(ev, g)).copied()
    }

    /// The entries that explain why `g` never processed `ev`: its failed attempts; the first
    /// two polls that handed a record of it out; after each, the first commit of the group that
    /// moved past it (so it would not come back) and the crash of the consumer that held it.
    pub(super) fn explain(&self, ev: EventId, g: GroupId) -> Vec<usize> {
        let mut out: Vec<usize> = self.failed.get(&(ev, g)).cloned().unwrap_or_default();
        out.extend(self.dead_lettered(ev, g));
        for &(poll, tp, offset, consumer) in
            self.polls.get(&(ev, g)).map(Vec::as_slice).unwrap_or_default().iter().take(2)
        {
            out.push(poll);
            let past = self.commits.get(&g).and_then(|c| {
                c.iter().find(|(i, offsets)| *i > poll && offsets.iter().any(|&(t, o)| t == tp && o > offset))
            });
            if let Some(&(commit, _)) = past {
                out.push(commit);
            }
            if let Some(&crash) = self.crashes.get(&consumer).and_then(|c| c.iter().find(|&&i| i > poll)) {
                out.push(crash);
            }
        }
        out
    }
}

pub(crate) fn check(h: &History) -> Vec<Violation> {
    let dead_letter_topics = dead_letter_topics(h);
    let mut trail: Option<GroupTrail> = None;
    // What the producers did with each event (dead-letter sends apart), and which groups
    // processed it from which topic.
    let mut sends: BTreeMap<EventId, Vec<usize>> = BTreeMap::new();
    let mut reports: BTreeMap<EventId, Vec<usize>> = BTreeMap::new();
    let mut processed: BTreeSet<(EventId, GroupId, TopicId)> = BTreeSet::new();
    for (i, e) in h.entries.iter().enumerate() {
        match &e.op {
            Op::Send { value, tp, .. } if !dead_letter_topics.contains(&tp.topic) => {
                sends.entry(*value).or_default().push(i)
            }
            Op::SendOk { value, tp, .. } | Op::SendFailed { value, tp, .. }
                if !dead_letter_topics.contains(&tp.topic) =>
            {
                reports.entry(*value).or_default().push(i)
            }
            Op::Processed { group, record, ok: true } => {
                processed.insert((record.value, *group, record.tp.topic));
            }
            _ => {}
        }
    }

    let mut out = Vec::new();
    let mut total = 0usize;
    for (i, e) in h.entries.iter().enumerate() {
        let Some(ev) = e.op.expected_event() else {
            continue;
        };
        let Some(ev_sends) = sends.get(&ev) else {
            total += 1;
            if out.len() < MAX_REPORTED {
                out.push(Violation::new(
                    format!("the fact of entry {i} committed but its event {} was never published", h.event_label(ev)),
                    vec![i],
                ));
            }
            continue;
        };
        let topics: BTreeSet<TopicId> = ev_sends
            .iter()
            .filter_map(|&s| match h.entries[s].op {
                Op::Send { tp, .. } => Some(tp.topic),
                _ => None,
            })
            .collect();
        // Each subscribed group, with the topics (of those `ev` went to) it subscribes to.
        let mut groups: BTreeMap<GroupId, Vec<TopicId>> = BTreeMap::new();
        for &t in &topics {
            for g in h.subscribers(t) {
                groups.entry(g).or_default().push(t);
            }
        }
        for (g, ts) in groups {
            if ts.iter().any(|&t| processed.contains(&(ev, g, t))) {
                continue;
            }
            total += 1;
            if out.len() < MAX_REPORTED {
                let trail = trail.get_or_insert_with(|| GroupTrail::of(h));
                let ev_reports = reports.get(&ev).map(Vec::as_slice).unwrap_or_default();
                let acked = ev_reports.iter().filter(|&&r| matches!(h.entries[r].op, Op::SendOk { .. })).count();
                let names: Vec<&str> = ts.iter().map(|&t| h.topic_name(t)).collect();
                let attempts = trail.failed.get(&(ev, g)).map_or(0, Vec::len);
                let mut entries = vec![i];
                entries.extend(ev_sends);
                entries.extend(ev_reports);
                entries.extend(trail.explain(ev, g));
                let mut how = String::new();
                if attempts > 0 {
                    how.push_str(&format!("; its handling failed {attempts} time(s) and was not retried to success"));
                }
                if let Some(d) = trail.dead_lettered(ev, g)
                    && let Op::DeadLettered { to, offset, .. } = h.entries[d].op
                {
                    how.push_str(&format!(
                        "; the group parked it on the dead-letter topic at {}-{}@{} (entry {d})",
                        h.topic_name(to.topic),
                        to.partition,
                        offset.map_or_else(|| "?".to_string(), |o| o.to_string())
                    ));
                }
                out.push(Violation::new(
                    format!(
                        "group {} never processed {} (fact at entry {i}): sent {} time(s) to {}, \
                         {} acked, {} failed{how}",
                        h.group_name(g),
                        h.event_label(ev),
                        ev_sends.len(),
                        names.join(", "),
                        acked,
                        ev_reports.len() - acked
                    ),
                    entries,
                ));
            }
        }
    }

    note_unlisted(&mut out, total, "eventual-processing");
    out
}

#[cfg(test)]
mod tests {
    use super::check;
    use crate::checkers::testkit::{C0, CART, HistoryBuilder, ORDERS, PAYMENTS, R0, RANKING, orders, payments, rec};

    #[test]
    fn published_and_processed_by_every_group_passes() {
        let mut b = HistoryBuilder::new();
        b.stock_initialised(1, 10);
        b.order_committed(7, 1, 1, 9);
        b.produce(orders(1), 7, 0);
        b.consume(R0, RANKING, &[rec(orders(1), 0, 7, 7)]);
        b.consume(C0, CART, &[rec(orders(1), 0, 7, 7)]);
        // Rejected orders are no business fact: nothing is expected of them.
        b.order_rejected(8, 1, 100, 9);
        assert_eq!(check(&b.build()), vec![]);
    }

    /// A record whose handling failed and was never retried to success (an ack that skipped it)
    /// is not processed: the failed attempts are part of the story.
    #[test]
    fn a_failed_attempt_is_not_processing_and_shows_in_the_story() {
        let mut b = HistoryBuilder::new();
        let fact = b.order_committed(7, 1, 1, 9);
        let (s, ok) = b.produce(orders(1), 7, 0);
        let poll = b.poll(R0, RANKING, &[rec(orders(1), 0, 7, 7)]);
        let failed = b.processed(R0, RANKING, rec(orders(1), 0, 7, 7), false);
        b.consume(C0, CART, &[rec(orders(1), 0, 7, 7)]);
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "only the ranking group misses it: {v:?}");
        assert_eq!(v[0].entries, vec![fact, s, ok, poll, failed]);
        assert!(v[0].message.contains("failed 1 time(s)"), "{}", v[0].message);
    }

    #[test]
    fn never_published_is_reported() {
        let mut b = HistoryBuilder::new();
        let fact = b.order_committed(7, 1, 1, 9);
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].entries, vec![fact]);
        assert!(v[0].message.contains("never published"), "{}", v[0].message);
    }

    #[test]
    fn a_group_that_never_processed_is_reported_with_sends_and_reports() {
        let mut b = HistoryBuilder::new();
        let fact = b.order_committed(7, 1, 1, 9);
        let s1 = b.send(orders(1), Some(7), 7);
        let f1 = b.send_failed(orders(1), Some(7), 7);
        let s2 = b.send(orders(1), Some(7), 7);
        let ok = b.send_ok(orders(1), Some(7), 7, Some(3));
        b.consume(R0, RANKING, &[rec(orders(1), 3, 7, 7)]);
        // cart polled it, but its handler failed and it never succeeded.
        let poll = b.poll(C0, CART, &[rec(orders(1), 3, 7, 7)]);
        let failed = b.processed(C0, CART, rec(orders(1), 3, 7, 7), false);
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].entries, vec![fact, s1, f1, s2, ok, poll, failed]);
        assert!(v[0].message.contains("group cart"), "{}", v[0].message);
        assert!(v[0].message.contains("1 acked, 1 failed"), "{}", v[0].message);
    }

    #[test]
    fn processing_from_another_topic_does_not_count() {
        // `cart` subscribes to both topics; `ranking` only to order-created.
        let mut b = HistoryBuilder::with_groups(&[("ranking", &[ORDERS]), ("cart", &[ORDERS, PAYMENTS])]);
        b.order_committed(7, 1, 1, 9);
        b.produce(orders(0), 7, 0);
        b.consume(R0, RANKING, &[rec(orders(0), 0, 7, 7)]);
        // A record of the same value on another topic is not the published one.
        b.consume(C0, CART, &[rec(payments(0), 0, 7, 7)]);
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].message.contains("group cart"), "{}", v[0].message);
    }

    #[test]
    fn groups_not_subscribed_are_not_required() {
        let mut b = HistoryBuilder::with_groups(&[("ranking", &[ORDERS]), ("cart", &[PAYMENTS])]);
        b.order_committed(7, 1, 1, 9);
        b.produce(orders(0), 7, 0);
        b.consume(R0, RANKING, &[rec(orders(0), 0, 7, 7)]);
        assert_eq!(check(&b.build()), vec![]);
    }
}
