//! balance: a balance never goes below zero, each payment writes the balance it must (no lost
//! update), and each order is charged at most once.

use super::{MAX_REPORTED, Violation, note_unlisted};
use crate::history::{History, Op};
use std::collections::BTreeMap;

pub(crate) fn check(h: &History) -> Vec<Violation> {
    // Per user: (entry of the last write, running balance).
    let mut users: BTreeMap<u64, (usize, i64)> = BTreeMap::new();
    // Per order: the entries that charged it.
    let mut charges: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    let mut out = Vec::new();
    let mut total = 0;
    let mut report = |out: &mut Vec<Violation>, v: Violation| {
        total += 1;
        if out.len() < MAX_REPORTED {
            out.push(v);
        }
    };
    for (i, e) in h.entries.iter().enumerate() {
        match e.op {
            Op::BalanceInitialised { user, balance } => {
                users.insert(user, (i, balance));
            }
            Op::PaymentCommitted { order, user, amount, balance_after } => {
                if balance_after < 0 {
                    report(
                        &mut out,
                        Violation::new(
                            format!("order {order} left user {user}'s balance at {balance_after} (< 0)"),
                            vec![i],
                        ),
                    );
                }
                if let Some(&(last, running)) = users.get(&user)
                    && running - amount != balance_after
                {
                    report(
                        &mut out,
                        Violation::new(
                            format!(
                                "lost update on user {user}'s balance: it was {running}, order {order} took {amount} \
                                 so it must write {}, but it wrote {balance_after}",
                                running - amount
                            ),
                            vec![last, i],
                        ),
                    );
                }
                users.insert(user, (i, balance_after));
                charges.entry(order).or_default().push(i);
            }
            _ => {}
        }
    }
    let mut twice: Vec<(u64, Vec<usize>)> = charges.into_iter().filter(|(_, c)| c.len() > 1).collect();
    twice.sort_by_key(|(_, c)| c[1]);
    for (order, entries) in twice {
        report(&mut out, Violation::new(format!("order {order} was charged {} times", entries.len()), entries));
    }
    note_unlisted(&mut out, total, "balance");
    out
}

#[cfg(test)]
mod tests {
    use super::check;
    use crate::checkers::testkit::{HistoryBuilder, WORKLOAD};
    use crate::history::Op;

    fn paid(b: &mut HistoryBuilder, order: u64, user: u64, amount: i64, balance_after: i64) -> usize {
        b.op(WORKLOAD, Op::PaymentCommitted { order, user, amount, balance_after })
    }

    #[test]
    fn consistent_payments_pass() {
        let mut b = HistoryBuilder::new();
        b.op(WORKLOAD, Op::BalanceInitialised { user: 1, balance: 100 });
        paid(&mut b, 7, 1, 60, 40);
        paid(&mut b, 8, 1, 40, 0);
        assert_eq!(check(&b.build()), vec![]);
    }

    #[test]
    fn negative_lost_update_and_double_charge_are_reported() {
        let mut b = HistoryBuilder::new();
        let init = b.op(WORKLOAD, Op::BalanceInitialised { user: 1, balance: 100 });
        let first = paid(&mut b, 7, 1, 60, 40);
        let stale = paid(&mut b, 8, 1, 60, 40); // read 100 again: a lost update
        let twice = paid(&mut b, 7, 1, 60, -20); // order 7 charged again, below zero
        let v = check(&b.build());
        assert_eq!(v.len(), 3, "{v:?}");
        assert_eq!(v[0].entries, vec![first, stale]);
        assert!(v[0].message.contains("lost update"), "{}", v[0].message);
        assert!(v[1].message.contains("< 0") && v[1].entries == vec![twice], "{:?}", v[1]);
        assert!(v[2].message.contains("charged 2 times") && v[2].entries == vec![first, twice], "{:?}", v[2]);
        let _ = init;
    }
}
