//! First-come-first-served coupons (seeds 002, 003): limits, duplicates, and the dedup variants.

mod common;

use evsim_model::checkers::Invariant;
use evsim_model::history::Op;
use evsim_model::scenario::CouponDedup;
use evsim_sim::{RunOutcome, run_scenario};

fn violations(o: &RunOutcome, inv: Invariant) -> usize {
    o.verdicts.iter().find(|v| v.invariant == inv).map_or(0, |v| v.violations.len())
}

#[test]
fn seed003_issues_exactly_the_quantity_once_per_user() {
    let s = common::scenario("coupon-seed003");
    for seed in 1..=3 {
        let o = run_scenario(&s, seed);
        assert!(o.passed(), "seed {seed}: {:?}", o.verdicts.iter().find(|v| !v.violations.is_empty()));
        assert_eq!(o.stats.coupons_issued, 100, "seed {seed}: first come, first served, all 100 go");
        let refused = o.history.entries.iter().filter(|e| matches!(e.op, Op::CouponRequestRefused { .. })).count();
        assert!(refused > 50, "seed {seed}: the Redis set refused repeat requests ({refused})");
    }
}

#[test]
fn without_dedup_double_clicks_get_two_coupons_and_a_unique_constraint_stops_them() {
    let o = run_scenario(&common::scenario("coupon-no-dedup"), 1);
    assert!(violations(&o, Invariant::CouponOnce) > 0);
    assert_eq!(violations(&o, Invariant::CouponLimit), 0, "the limit is counted in the issuing transaction");

    let mut s = common::scenario("coupon-no-dedup");
    s.services[0].dedup = CouponDedup::DbUnique;
    let o = run_scenario(&s, 1);
    assert!(o.passed(), "{:?}", o.verdicts.iter().find(|v| !v.violations.is_empty()));
    let blocked =
        o.history.entries.iter().filter(|e| matches!(e.op, Op::CouponNotIssued { sold_out: false, .. })).count();
    assert!(blocked > 0, "the unique constraint rejected duplicates");
}
