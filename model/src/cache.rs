//! The simulated cache (Redis in the seeds): the product ranking sorted set and the carts.
//!
//! Redis runs as its own process: a service crash does not touch it. Commands apply at once and
//! are not transactional with the DB (that gap is what the seeds' designs must live with).

use crate::actor::CacheOp;
use crate::history::{EventId, Op};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cache {
    /// `ranking` sorted set: product -> score.
    pub ranking: BTreeMap<u32, i64>,
    /// Carts deleted so far (a cart is recreated by the next order; deleting is idempotent).
    pub carts_deleted: u64,
}

impl Cache {
    /// Apply `op`, pushing the effect it had to `facts`.
    pub fn apply(&mut self, op: CacheOp, cause: Option<EventId>, facts: &mut Vec<Op>) {
        match op {
            CacheOp::RankingIncrement { product, by } => {
                *self.ranking.entry(product).or_insert(0) += i64::from(by);
                if let Some(cause) = cause {
                    facts.push(Op::RankingIncremented { product, by, cause });
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
