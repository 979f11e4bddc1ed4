//! eventual-publication: every committed business fact's event was published before the run
//! ended (which is the quiet period after the workload and faults stopped): acknowledged by the
//! broker, or read from the log by a consumer. A send whose delivery report said it timed out
//! may still have been written (librdkafka's POSSIBLY_PERSISTED: the broker had the request when
//! the client gave up); a consumer that read it proves it was.

use super::{MAX_REPORTED, Violation, note_unlisted};
use crate::describe::event;
use crate::history::{EventId, History, Op};
use std::collections::{BTreeMap, BTreeSet};

pub(crate) fn check(h: &History) -> Vec<Violation> {
    let mut acked: BTreeSet<EventId> = BTreeSet::new();
    let mut attempts: BTreeMap<EventId, Vec<usize>> = BTreeMap::new();
    for (i, e) in h.entries.iter().enumerate() {
        match &e.op {
            Op::SendOk { value, .. } => {
                acked.insert(*value);
            }
            Op::Poll { records, .. } => acked.extend(records.iter().map(|r| r.value)),
            Op::Send { value, .. } | Op::SendFailed { value, .. } => attempts.entry(*value).or_default().push(i),
            _ => {}
        }
    }
    let mut out = Vec::new();
    let mut total = 0;
    for (i, e) in h.entries.iter().enumerate() {
        let Some(ev) = e.op.expected_event() else { continue };
        if acked.contains(&ev) {
            continue;
        }
        total += 1;
        if out.len() < MAX_REPORTED {
            let tried = attempts.get(&ev).map(Vec::as_slice).unwrap_or_default();
            let mut entries = vec![i];
            entries.extend(tried);
            let how = if tried.is_empty() {
                "it was never sent".to_string()
            } else {
                format!("{} send attempt(s) and report(s), none acknowledged, and no consumer read it", tried.len())
            };
            out.push(Violation::new(
                format!("{} committed (entry {i}) but was never published: {how}", event(h, ev)),
                entries,
            ));
        }
    }
    note_unlisted(&mut out, total, "eventual-publication");
    out
}

#[cfg(test)]
mod tests {
    use super::check;
    use crate::checkers::testkit::{HistoryBuilder, orders};

    #[test]
    fn an_acknowledged_event_passes_even_with_acks_zero() {
        let mut b = HistoryBuilder::new();
        b.order_committed(7, 1, 1, 9);
        b.send(orders(0), Some(7), 7);
        b.send_ok(orders(0), Some(7), 7, None);
        b.order_rejected(8, 1, 9, 9); // a rollback owes no event
        assert_eq!(check(&b.build()), vec![]);
    }

    #[test]
    fn a_timed_out_send_that_a_consumer_read_was_published() {
        use crate::checkers::testkit::{C0, RANKING, rec};
        let mut b = HistoryBuilder::new();
        b.order_committed(7, 1, 1, 9);
        b.send(orders(0), Some(7), 7);
        b.send_failed(orders(0), Some(7), 7); // timed out while the broker had it
        b.poll(C0, RANKING, &[rec(orders(0), 0, 7, 7)]);
        assert_eq!(check(&b.build()), vec![]);
    }

    #[test]
    fn a_committed_fact_without_an_acknowledged_event_is_reported() {
        let mut b = HistoryBuilder::new();
        let lost = b.order_committed(7, 1, 1, 9); // after-commit send died with the process
        let failed = b.order_committed(8, 1, 1, 8);
        let s = b.send(orders(0), Some(8), 8);
        let f = b.send_failed(orders(0), Some(8), 8);
        let v = check(&b.build());
        assert_eq!(v.len(), 2, "{v:?}");
        assert_eq!(v[0].entries, vec![lost]);
        assert!(v[0].message.contains("never sent"), "{}", v[0].message);
        assert_eq!(v[1].entries, vec![failed, s, f]);
    }
}
