//! liveness: by the end of the run (the quiet period after the workload and faults stopped), every
//! consumer group has committed up to the end of every partition it reads, and the outbox holds
//! no row still INIT.

use super::{MAX_REPORTED, Violation, note_unlisted};
use crate::describe::event;
use crate::history::{History, Op};

pub(crate) fn check(h: &History) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut total = 0;
    for (i, e) in h.entries.iter().enumerate() {
        let message = match e.op {
            Op::FinalLag { group, tp, lag } => format!(
                "group {} still has {lag} record(s) of {}-{} to commit at the end of the run",
                h.group_name(group),
                h.topic_name(tp.topic),
                tp.partition
            ),
            Op::OutboxPending { event: ev } => {
                format!("the outbox row of {} is still INIT at the end of the run", event(h, ev))
            }
            _ => continue,
        };
        total += 1;
        if out.len() < MAX_REPORTED {
            out.push(Violation::new(message, vec![i]));
        }
    }
    note_unlisted(&mut out, total, "liveness");
    out
}

#[cfg(test)]
mod tests {
    use super::check;
    use crate::checkers::testkit::{HistoryBuilder, RANKING, WORKLOAD, ev, orders};
    use crate::history::Op;

    #[test]
    fn a_caught_up_run_passes() {
        let mut b = HistoryBuilder::new();
        b.op(WORKLOAD, Op::OutboxInserted { event: ev(7) });
        b.op(WORKLOAD, Op::OutboxMarked { event: ev(7) });
        assert_eq!(check(&b.build()), vec![]);
    }

    #[test]
    fn lag_and_pending_outbox_rows_are_reported() {
        let mut b = HistoryBuilder::new();
        let lag = b.op(WORKLOAD, Op::FinalLag { group: RANKING, tp: orders(1), lag: 3 });
        let pending = b.op(WORKLOAD, Op::OutboxPending { event: ev(7) });
        let v = check(&b.build());
        assert_eq!(v.len(), 2, "{v:?}");
        assert_eq!((v[0].entries.clone(), v[1].entries.clone()), (vec![lag], vec![pending]));
        assert!(v[0].message.contains("3 record(s)"), "{}", v[0].message);
    }
}
