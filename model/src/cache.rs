//! The simulated cache (Redis in the seeds): the product ranking sorted set and the carts.
//!
//! Redis runs as its own process: a service crash does not touch it. Commands apply at once and
//! are not transactional with the DB (that gap is what the seeds' designs must live with).

use crate::actor::CacheOp;
use crate::history::{EventId, Op};
use std::collections::BTreeSet;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cache {
    /// `ranking` sorted set: score by product id (ids are dense, so a vector is the set).
    pub ranking: Vec<i64>,
    /// Carts deleted so far (a cart is recreated by the next order; deleting is idempotent).
    pub carts_deleted: u64,
    /// `coupon:{id}:requested` sets (seed 003): (coupon, user).
    pub coupon_requests: BTreeSet<(u32, u64)>,
}

impl Cache {
    /// Apply `op`, pushing the effect it had to `facts`.
    pub fn apply(&mut self, op: CacheOp, cause: Option<EventId>, facts: &mut Vec<Op>) {
        match op {
            CacheOp::RankingIncrement { product, by } => {
                let i = product as usize;
                if self.ranking.len() <= i {
                    self.ranking.resize(i + 1, 0);
                }
                self.ranking[i] += i64::from(by);
                if let Some(cause) = cause {
                    facts.push(Op::RankingIncremented { product, by, cause });
                }
            }
            CacheOp::AddCouponRequest { request, coupon, user } => {
                if !self.coupon_requests.insert((coupon, user)) {
                    facts.push(Op::CouponRequestRefused { request, coupon, user });
                }
            }
            CacheOp::DeleteCart { user } => {
                self.carts_deleted += 1;
                if let Some(cause) = cause {
                    facts.push(Op::CartDeleted { user, cause });
                }
            }
        }
    }
}
