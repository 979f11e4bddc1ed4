//! order-state: an order's status only moves forward, PENDING -> PAID or PENDING -> CANCELLED,
//! never back and never out of a final state; and an order whose payment was declined for lack of
//! balance ends CANCELLED (its compensation settled) by the end of the run.

use super::{MAX_REPORTED, Violation, note_unlisted};
use crate::history::{History, Op, PaymentRejection};
use std::collections::BTreeMap;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Status {
    Pending,
    Paid,
    Cancelled,
}

pub(crate) fn check(h: &History) -> Vec<Violation> {
    // Per order: (status, the entry that set it).
    let mut orders: BTreeMap<u64, (Status, usize)> = BTreeMap::new();
    // Declined payments: order -> entry.
    let mut declined: BTreeMap<u64, usize> = BTreeMap::new();
    let mut out = Vec::new();
    let mut total = 0;
    for (i, e) in h.entries.iter().enumerate() {
        let (order, to) = match e.op {
            Op::OrderCommitted { order, .. } => (order, Status::Pending),
            Op::PaymentCommitted { order, .. } => (order, Status::Paid),
            Op::OrderCancelled { order, .. } => (order, Status::Cancelled),
            Op::PaymentRejected { order, reason: PaymentRejection::InsufficientBalance { .. }, .. } => {
                declined.entry(order).or_insert(i);
                continue;
            }
            _ => continue,
        };
        let bad = match (orders.get(&order), to) {
            (None, Status::Pending) => None,
            (None, _) => Some(format!("order {order} became {to:?} but was never created")),
            (Some(&(Status::Pending, _)), Status::Paid | Status::Cancelled) => None,
            (Some(&(from, _)), to) => Some(format!("order {order} went from {from:?} to {to:?}")),
        };
        if let Some(message) = bad {
            total += 1;
            if out.len() < MAX_REPORTED {
                let mut entries: Vec<usize> = orders.get(&order).map(|&(_, at)| at).into_iter().collect();
                entries.push(i);
                out.push(Violation::new(message, entries));
            }
        }
        orders.insert(order, (to, i));
    }
    for (order, at) in declined {
        if let Some(&(Status::Pending, created)) = orders.get(&order) {
            total += 1;
            if out.len() < MAX_REPORTED {
                out.push(Violation::new(
                    format!(
                        "order {order}'s payment was declined for lack of balance, but the order is still PENDING at \
                         the end: its compensation (restore stock, cancel) never committed"
                    ),
                    vec![created, at],
                ));
            }
        }
    }
    note_unlisted(&mut out, total, "order-state");
    out
}

#[cfg(test)]
mod tests {
    use super::check;
    use crate::checkers::testkit::{HistoryBuilder, WORKLOAD};
    use crate::history::{Op, PaymentRejection};

    fn declined(b: &mut HistoryBuilder, order: u64) -> usize {
        let reason = PaymentRejection::InsufficientBalance { balance: 0 };
        b.op(WORKLOAD, Op::PaymentRejected { order, user: 1, amount: 10, reason })
    }

    #[test]
    fn forward_moves_and_settled_compensations_pass() {
        let mut b = HistoryBuilder::new();
        b.order_committed(7, 1, 1, 9);
        b.op(WORKLOAD, Op::PaymentCommitted { order: 7, user: 1, amount: 10, balance_after: 0 });
        b.order_committed(8, 1, 1, 8);
        declined(&mut b, 8);
        b.op(WORKLOAD, Op::OrderCancelled { order: 8, product: 1, qty: 1, stock_after: 9 });
        b.order_committed(9, 1, 1, 8); // still pending, never paid for: not a violation
        assert_eq!(check(&b.build()), vec![]);
    }

    #[test]
    fn leaving_a_final_state_is_reported() {
        let mut b = HistoryBuilder::new();
        b.order_committed(7, 1, 1, 9);
        let paid = b.op(WORKLOAD, Op::PaymentCommitted { order: 7, user: 1, amount: 10, balance_after: 0 });
        let cancel = b.op(WORKLOAD, Op::OrderCancelled { order: 7, product: 1, qty: 1, stock_after: 10 });
        let ghost = b.op(WORKLOAD, Op::PaymentCommitted { order: 99, user: 1, amount: 10, balance_after: 0 });
        let v = check(&b.build());
        assert_eq!(v.len(), 2, "{v:?}");
        assert_eq!(v[0].entries, vec![paid, cancel]);
        assert!(v[0].message.contains("from Paid to Cancelled"), "{}", v[0].message);
        assert_eq!(v[1].entries, vec![ghost]);
    }

    #[test]
    fn a_declined_payment_without_compensation_is_reported() {
        let mut b = HistoryBuilder::new();
        let created = b.order_committed(8, 1, 1, 8);
        let no = declined(&mut b, 8);
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].entries, vec![created, no]);
        assert!(v[0].message.contains("compensation"), "{}", v[0].message);
    }
}
