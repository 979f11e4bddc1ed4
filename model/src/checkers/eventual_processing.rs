//! eventual-processing: every committed business fact's event is published and then processed by
//! every group subscribed to the topic it was published to, by the end of the run (the quiet
//! period gives the system time to settle).
//!
//! For each entry whose `expected_event()` is some event `ev`: there must be a `Send` of `ev`
//! (else "never published"); and for each group subscribed to a topic `ev` was sent to, a
//! successful `Processed` of a record of that topic whose value is `ev` (else one violation per
//! missing group, showing the fact, its sends and their delivery reports).

use super::{MAX_REPORTED, Violation, note_unlisted};
use crate::history::{EventId, GroupId, History, Op, TopicId};
use std::collections::{BTreeMap, BTreeSet};

fn event(e: EventId) -> String {
    format!("{:?}#{}", e.kind(), e.subject())
}

pub(crate) fn check(h: &History) -> Vec<Violation> {
    // What the producers did with each event, and which groups processed it from which topic.
    let mut sends: BTreeMap<EventId, Vec<usize>> = BTreeMap::new();
    let mut reports: BTreeMap<EventId, Vec<usize>> = BTreeMap::new();
    let mut processed: BTreeSet<(EventId, GroupId, TopicId)> = BTreeSet::new();
    // Failed handling attempts, to show in the story of an event that was never processed.
    let mut failed: BTreeMap<(EventId, GroupId), Vec<usize>> = BTreeMap::new();
    for (i, e) in h.entries.iter().enumerate() {
        match &e.op {
            Op::Send { value, .. } => sends.entry(*value).or_default().push(i),
            Op::SendOk { value, .. } | Op::SendFailed { value, .. } => reports.entry(*value).or_default().push(i),
            Op::Processed { group, record, ok: true } => {
                processed.insert((record.value, *group, record.tp.topic));
            }
            Op::Processed { group, record, ok: false } => failed.entry((record.value, *group)).or_default().push(i),
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
                    format!("the fact of entry {i} committed but its event {} was never published", event(ev)),
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
                let ev_reports = reports.get(&ev).map(Vec::as_slice).unwrap_or_default();
                let acked = ev_reports.iter().filter(|&&r| matches!(h.entries[r].op, Op::SendOk { .. })).count();
                let names: Vec<&str> = ts.iter().map(|&t| h.topic_name(t)).collect();
                let attempts = failed.get(&(ev, g)).map(Vec::as_slice).unwrap_or_default();
                let mut entries = vec![i];
                entries.extend(ev_sends);
                entries.extend(ev_reports);
                entries.extend(attempts);
                let tried = if attempts.is_empty() {
                    String::new()
                } else {
                    format!("; its handling failed {} time(s) and was not retried to success", attempts.len())
                };
                out.push(Violation::new(
                    format!(
                        "group {} never processed {} (fact at entry {i}): sent {} time(s) to {}, \
                         {} acked, {} failed{tried}",
                        h.group_name(g),
                        event(ev),
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
        b.poll(R0, RANKING, &[rec(orders(1), 0, 7, 7)]);
        let failed = b.processed(R0, RANKING, rec(orders(1), 0, 7, 7), false);
        b.consume(C0, CART, &[rec(orders(1), 0, 7, 7)]);
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "only the ranking group misses it: {v:?}");
        assert_eq!(v[0].entries, vec![fact, s, ok, failed]);
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
        b.poll(C0, CART, &[rec(orders(1), 3, 7, 7)]);
        let failed = b.processed(C0, CART, rec(orders(1), 3, 7, 7), false);
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].entries, vec![fact, s1, f1, s2, ok, failed]);
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
