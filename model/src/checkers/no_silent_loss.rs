//! no-silent-loss: every record in the log is processed by every group subscribed to its topic,
//! or parked by that group on a dead-letter topic where it can be found: nothing vanishes.
//!
//! The records are those the log holds as far as the history can tell: every acknowledged send
//! (`SendOk`) and every record a poll returned, apart from the sends to dead-letter topics
//! themselves. For each, and each group subscribed to its topic, there must be a successful
//! `Processed` of a record of that topic with that value, or a `DeadLettered` of it by the
//! group. Unlike eventual-processing, a dead-lettered record passes, and records that announce
//! no business fact (coupon requests, queue tokens) count too; like it, the story shows the
//! polls, the failed attempts and the commits that moved the group past the record.

use super::eventual_processing::{GroupTrail, dead_letter_topics};
use super::{MAX_REPORTED, Violation, note_unlisted};
use crate::history::{EventId, GroupId, History, Op, TopicId};

pub(crate) fn check(h: &History) -> Vec<Violation> {
    let dead_letter_topics = dead_letter_topics(h);
    let mut trail: Option<GroupTrail> = None;
    // Each record (value, topic) with the entries that show it in the log, and what the groups
    // handled: sorted vectors rather than maps (the checker runs on every run, and most records
    // appear twice, sent and polled).
    let mut records: Vec<(EventId, TopicId, usize)> = Vec::new();
    let mut handled: Vec<(EventId, GroupId, TopicId)> = Vec::new();
    for (i, e) in h.entries.iter().enumerate() {
        match &e.op {
            Op::SendOk { value, tp, .. } if !dead_letter_topics.contains(&tp.topic) => {
                records.push((*value, tp.topic, i));
            }
            Op::Poll { records: polled, .. } => {
                for r in polled.iter().filter(|r| !dead_letter_topics.contains(&r.tp.topic)) {
                    records.push((r.value, r.tp.topic, i));
                }
            }
            Op::Processed { group, record, ok: true } => handled.push((record.value, *group, record.tp.topic)),
            Op::DeadLettered { group, record, .. } => handled.push((record.value, *group, record.tp.topic)),
            _ => {}
        }
    }
    // The first entry of each record.
    records.sort_unstable();
    records.dedup_by_key(|r| (r.0, r.1));
    handled.sort_unstable();
    handled.dedup();
    let mut out = Vec::new();
    let mut total = 0usize;
    for &(value, topic, first) in &records {
        for g in h.subscribers(topic) {
            if handled.binary_search(&(value, g, topic)).is_ok() {
                continue;
            }
            total += 1;
            if out.len() < MAX_REPORTED {
                let mut entries = vec![first];
                entries.extend(trail.get_or_insert_with(|| GroupTrail::of(h)).explain(value, g));
                out.push(Violation::new(
                    format!(
                        "group {} neither processed nor dead-lettered {} of {} (in the log from entry {first}): \
                         it vanished",
                        h.group_name(g),
                        h.event_label(value),
                        h.topic_name(topic)
                    ),
                    entries,
                ));
            }
        }
    }
    // Report in the order the records appeared.
    out.sort_by_key(|v| v.entries.first().copied());
    note_unlisted(&mut out, total, "no-silent-loss");
    out
}

#[cfg(test)]
mod tests {
    use super::check;
    use crate::checkers::testkit::{C0, CART, HistoryBuilder, ORDERS, R0, RANKING, orders, payments, rec};
    use crate::history::Op;

    #[test]
    fn processed_or_parked_records_pass() {
        let mut b = HistoryBuilder::with_groups(&[("ranking", &[ORDERS]), ("cart", &[ORDERS])]);
        b.produce(orders(0), 7, 0);
        b.produce(orders(0), 8, 1);
        b.consume(R0, RANKING, &[rec(orders(0), 0, 7, 7), rec(orders(0), 1, 8, 8)]);
        b.consume(C0, CART, &[rec(orders(0), 0, 7, 7)]);
        // cart gave up on 8 and parked it: not processed, but not lost either.
        b.poll(C0, CART, &[rec(orders(0), 1, 8, 8)]);
        b.processed(C0, CART, rec(orders(0), 1, 8, 8), false);
        b.op(
            C0,
            Op::DeadLettered {
                group: CART,
                record: Box::new(rec(orders(0), 1, 8, 8)),
                to: payments(0),
                offset: Some(0),
            },
        );
        // The dead-letter send itself (to `payments` here) is no record cart must handle.
        b.send_ok(payments(0), Some(8), 8, Some(0));
        assert_eq!(check(&b.build()), vec![]);
    }

    #[test]
    fn a_record_skipped_after_a_failure_vanished_and_the_story_shows_the_commit_past_it() {
        let mut b = HistoryBuilder::new();
        let (_, ok, poll, failed, commit) = b.skipped_after_a_failure();
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].entries, vec![ok, poll, failed, commit]);
        assert!(v[0].message.contains("group ranking neither processed nor dead-lettered"), "{}", v[0].message);
    }
}
