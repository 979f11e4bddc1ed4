//! First-come-first-served coupon issuance (seeds 002, 003): the request API and the issuer
//! consumer group, as sans-IO actors.

use crate::actor::{CacheOp, Command, Input, Listener, Request, Response, Service, Token};
use crate::db::Txn;
use crate::event::{Event, Message};
use crate::history::{Micros, Polled, TopicId};
use crate::scenario::CouponDedup;
use std::collections::BTreeMap;

/// The coupon request API: sends each request to `coupon-issue-request` with key = couponId.
/// With `cache-set` dedup (seed 003), a Redis set is checked and written before the send, and a
/// user already in it is refused.
#[derive(Debug)]
pub struct CouponApi {
    topic: TopicId,
    dedup: CouponDedup,
    /// Requests waiting for their Redis answer. Memory: lost on a crash.
    pending: BTreeMap<Token, Request>,
}

impl CouponApi {
    pub fn new(topic: TopicId, dedup: CouponDedup) -> Self {
        Self { topic, dedup, pending: BTreeMap::new() }
    }

    fn send(&self, req: Request, out: &mut Vec<Command>) {
        let Request::IssueCoupon { request, coupon, user } = req else { return };
        let message =
            Message { key: Some(u64::from(coupon)), value: Event::CouponIssueRequest { request, coupon, user } };
        out.push(Command::Produce { token: request, topic: self.topic, message });
        out.push(Command::Respond { token: request, response: Response::Ok });
    }
}

impl Service for CouponApi {
    fn on_input(&mut self, _now: Micros, input: Input, out: &mut Vec<Command>) {
        match input {
            Input::Request(req) => {
                let Request::IssueCoupon { request, coupon, user } = req else { return };
                match self.dedup {
                    CouponDedup::CacheSet => {
                        self.pending.insert(request, req);
                        let op = CacheOp::AddCouponRequest { request, coupon, user };
                        out.push(Command::CacheCall { token: request, op });
                    }
                    CouponDedup::DbUnique | CouponDedup::None => self.send(req, out),
                }
            }
            Input::CacheDone { token, added } => {
                let Some(req) = self.pending.remove(&token) else { return };
                if added {
                    self.send(req, out);
                } else {
                    out.push(Command::Respond { token, response: Response::Rejected });
                }
            }
            Input::TxnDone { .. }
            | Input::Delivered { .. }
            | Input::Timer { .. }
            | Input::OutboxDue { .. }
            | Input::WorkflowDone { .. }
            | Input::WorkflowPreviewed { .. } => {}
        }
    }
}

/// The coupon issuer (`CouponIssueConsumer`): for each request, one DB transaction counts the
/// coupon's issued rows and inserts the user's coupon if any are left.
#[derive(Debug, Default)]
pub struct CouponIssuer;

impl Listener for CouponIssuer {
    fn on_record(&mut self, _now: Micros, _record: &Polled, message: &Message, out: &mut Vec<Command>) {
        if let Event::CouponIssueRequest { request, coupon, user } = message.value {
            out.push(Command::Transact { token: request, txn: Txn::IssueCoupon { request, coupon, user } });
        }
        out.push(Command::Ack);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(api: &mut CouponApi) -> Vec<Command> {
        let mut out = Vec::new();
        api.on_input(0, Input::Request(Request::IssueCoupon { request: 3, coupon: 1, user: 9 }), &mut out);
        out
    }

    #[test]
    fn the_cache_set_is_checked_before_the_send() {
        let mut api = CouponApi::new(TopicId(0), CouponDedup::CacheSet);
        let out = request(&mut api);
        assert!(matches!(out[..], [Command::CacheCall { token: 3, .. }]), "nothing sent yet: {out:?}");
        let mut out = Vec::new();
        api.on_input(1, Input::CacheDone { token: 3, added: false }, &mut out);
        assert_eq!(out, vec![Command::Respond { token: 3, response: Response::Rejected }]);
    }

    #[test]
    fn without_the_cache_the_request_is_sent_keyed_by_coupon() {
        let mut api = CouponApi::new(TopicId(0), CouponDedup::None);
        let out = request(&mut api);
        assert!(matches!(&out[0], Command::Produce { message: Message { key: Some(1), .. }, .. }), "{out:?}");
    }
}
