//! coupon-limit and coupon-once: coupons issued for a coupon id never exceed its quantity, and no
//! user holds two copies of one coupon id.

use super::{MAX_REPORTED, Violation, note_unlisted};
use crate::history::{History, Op};
use std::collections::BTreeMap;

pub(crate) fn check_limit(h: &History) -> Vec<Violation> {
    let mut quantity: BTreeMap<u32, (usize, u32)> = BTreeMap::new();
    let mut issued: BTreeMap<u32, u32> = BTreeMap::new();
    let mut out = Vec::new();
    let mut total = 0;
    for (i, e) in h.entries.iter().enumerate() {
        match e.op {
            Op::CouponInitialised { coupon, quantity: q } => {
                quantity.insert(coupon, (i, q));
            }
            Op::CouponIssued { request, coupon, user, .. } => {
                let n = issued.entry(coupon).or_insert(0);
                *n += 1;
                if let Some(&(init, q)) = quantity.get(&coupon)
                    && *n > q
                {
                    total += 1;
                    if out.len() < MAX_REPORTED {
                        out.push(Violation::new(
                            format!("coupon {coupon} issued {n} times (to user {user}, request {request}) but only {q} exist"),
                            vec![init, i],
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    note_unlisted(&mut out, total, "coupon-limit");
    out
}

pub(crate) fn check_once(h: &History) -> Vec<Violation> {
    let mut holders: BTreeMap<(u32, u64), Vec<usize>> = BTreeMap::new();
    for (i, e) in h.entries.iter().enumerate() {
        if let Op::CouponIssued { coupon, user, .. } = e.op {
            holders.entry((coupon, user)).or_default().push(i);
        }
    }
    let mut twice: Vec<((u32, u64), Vec<usize>)> = holders.into_iter().filter(|(_, v)| v.len() > 1).collect();
    twice.sort_by_key(|(_, v)| v[1]);
    let total = twice.len();
    let mut out: Vec<Violation> = twice
        .into_iter()
        .take(MAX_REPORTED)
        .map(|((coupon, user), entries)| {
            Violation::new(format!("user {user} holds {} copies of coupon {coupon}", entries.len()), entries)
        })
        .collect();
    note_unlisted(&mut out, total, "coupon-once");
    out
}

#[cfg(test)]
mod tests {
    use super::{check_limit, check_once};
    use crate::checkers::testkit::{HistoryBuilder, WORKLOAD};
    use crate::history::Op;

    fn issued(b: &mut HistoryBuilder, request: u64, coupon: u32, user: u64, issued: u32) -> usize {
        b.op(WORKLOAD, Op::CouponIssued { request, coupon, user, issued })
    }

    #[test]
    fn within_the_limit_and_once_per_user_passes() {
        let mut b = HistoryBuilder::new();
        b.op(WORKLOAD, Op::CouponInitialised { coupon: 1, quantity: 2 });
        issued(&mut b, 1, 1, 10, 1);
        issued(&mut b, 2, 1, 11, 2);
        b.op(WORKLOAD, Op::CouponNotIssued { request: 3, coupon: 1, user: 12, sold_out: true });
        let h = b.build();
        assert_eq!(check_limit(&h), vec![]);
        assert_eq!(check_once(&h), vec![]);
    }

    #[test]
    fn over_issuing_and_double_copies_are_reported() {
        let mut b = HistoryBuilder::new();
        let init = b.op(WORKLOAD, Op::CouponInitialised { coupon: 1, quantity: 2 });
        let first = issued(&mut b, 1, 1, 10, 1);
        issued(&mut b, 2, 1, 11, 2);
        let third = issued(&mut b, 3, 1, 10, 3);
        let h = b.build();
        let v = check_limit(&h);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].entries, vec![init, third]);
        let v = check_once(&h);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].entries, vec![first, third]);
        assert!(v[0].message.contains("2 copies"), "{}", v[0].message);
    }
}
