//! Seed 001's order workflow: `OrderService` and `OrderEventConsumer` as sans-IO actors.

use crate::actor::{CacheOp, Command, ExternalCall, Input, Listener, Request, Response, Service, Token};
use crate::db::{Txn, TxnOutcome};
use crate::event::{Event, Message};
use crate::history::{Micros, Polled, TopicId};
use crate::publish::{Publisher, Publishing};
use std::collections::BTreeMap;

/// `OrderService.createOrder` (seed 001): one DB transaction deducts the stock under a
/// pessimistic lock and saves the order PENDING; its `order-created` event (key = orderId) is
/// published as the publishing strategy says:
/// - `after-commit` (seed 001): sent after the commit; a failed send is logged and dropped, the
///   order stays created ("Kafka 발행 실패는 주 비즈니스에 영향을 주지 않음");
/// - `in-transaction`: sent and acknowledged inside the transaction, before the commit (a failed
///   send rolls the order back; a rollback after the send leaves a published event for an order
///   that does not exist);
/// - `after-commit-async` (seed 004's `@Async @TransactionalEventListener(AFTER_COMMIT)`): after
///   the commit the send is handed to a worker pool and happens `async_delay_us` later; pending
///   sends live in memory and die with the process.
#[derive(Debug)]
pub struct OrderService {
    publisher: Publisher,
    /// Requests under way, by token (= order id). Memory: lost on a crash.
    pending: BTreeMap<Token, Request>,
}

impl OrderService {
    pub fn new(topic: TopicId, publishing: Publishing) -> Self {
        Self { publisher: Publisher::new(topic, publishing), pending: BTreeMap::new() }
    }

    /// The order request's event and transaction (only order requests reach this service).
    fn parts(req: &Request) -> (Message, Txn) {
        let Request::CreateOrder { order, user, product, qty } = *req else { unreachable!("an order request") };
        let event = Message { key: Some(order), value: Event::OrderCreated { order, user, product, qty } };
        (event, Txn::CreateOrder { order, user, product, qty })
    }
}

impl Service for OrderService {
    fn on_input(&mut self, _now: Micros, input: Input, out: &mut Vec<Command>) {
        match input {
            Input::Request(req) => {
                let Request::CreateOrder { order, .. } = req else { return };
                self.pending.insert(order, req);
                let (event, txn) = Self::parts(&req);
                self.publisher.begin(order, txn, event, out);
            }
            Input::TxnDone { token, outcome } => {
                let Some(req) = self.pending.remove(&token) else { return };
                match outcome {
                    TxnOutcome::Committed => {
                        self.publisher.committed(token, Self::parts(&req).0, out);
                        // Answer the client without waiting for any delivery report.
                        out.push(Command::Respond { token, response: Response::Ok });
                    }
                    TxnOutcome::RolledBack(_) => out.push(Command::Respond { token, response: Response::Rejected }),
                }
            }
            Input::Timer { token } => self.publisher.on_timer(token, out),
            Input::OutboxDue { events, .. } => self.publisher.republish(events, out),
            Input::CacheDone { .. } | Input::WorkflowDone { .. } | Input::WorkflowPreviewed { .. } => {}
            Input::Delivered { token, result } => {
                let txn = self.pending.get(&token).map(|req| Self::parts(req).1);
                if self.publisher.delivered(token, &result, txn, out) {
                    self.pending.remove(&token);
                }
            }
        }
    }
}

/// `OrderEventConsumer` (seed 001): for each `order-created` record, increments the product
/// ranking (Redis ZINCRBY) and deletes the user's cart, then acknowledges.
#[derive(Debug, Default)]
pub struct OrderEventConsumer;

impl Listener for OrderEventConsumer {
    fn on_record(&mut self, _now: Micros, record: &Polled, message: &Message, out: &mut Vec<Command>) {
        let cause = Some(record.value);
        match message.value {
            Event::OrderCreated { user, product, qty, .. } => {
                out.push(Command::Cache { op: CacheOp::RankingIncrement { product, by: qty }, cause });
                out.push(Command::Cache { op: CacheOp::DeleteCart { user }, cause });
                out.push(Command::Ack);
            }
            // Not this listener's business: acknowledge and move on.
            Event::PaymentCompleted { .. }
            | Event::CouponIssueRequest { .. }
            | Event::WaitingToken { .. }
            | Event::Declared { .. } => out.push(Command::Ack),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{EventId, Tp};
    use crate::scenario::PublishStrategy;

    #[test]
    fn publishes_only_after_the_transaction_commits() {
        let mut s = OrderService::new(TopicId(0), Publishing::new(PublishStrategy::AfterCommit));
        let mut out = Vec::new();
        s.on_input(0, Input::Request(Request::CreateOrder { order: 7, user: 1, product: 2, qty: 3 }), &mut out);
        assert_eq!(out.len(), 1);
        assert!(matches!(out[0], Command::Transact { token: 7, .. }), "first the transaction, nothing sent yet");
        out.clear();
        s.on_input(1, Input::TxnDone { token: 7, outcome: TxnOutcome::Committed }, &mut out);
        assert!(matches!(out[0], Command::Produce { token: 7, message: Message { key: Some(7), .. }, .. }));
        assert!(matches!(out[1], Command::Respond { response: Response::Ok, .. }));
    }

    #[test]
    fn a_rolled_back_order_publishes_nothing() {
        let mut s = OrderService::new(TopicId(0), Publishing::new(PublishStrategy::AfterCommit));
        let mut out = Vec::new();
        s.on_input(0, Input::Request(Request::CreateOrder { order: 7, user: 1, product: 2, qty: 3 }), &mut out);
        out.clear();
        let rb = TxnOutcome::RolledBack(crate::db::Rollback::InsufficientStock { product: 2, stock: 0 });
        s.on_input(1, Input::TxnDone { token: 7, outcome: rb }, &mut out);
        assert_eq!(out, vec![Command::Respond { token: 7, response: Response::Rejected }]);
    }

    #[test]
    fn consumer_updates_ranking_and_cart_then_acks() {
        let mut c = OrderEventConsumer;
        let mut out = Vec::new();
        let ev = Event::OrderCreated { order: 7, user: 1, product: 2, qty: 3 };
        let rec = Polled { tp: Tp { topic: TopicId(0), partition: 1 }, offset: 4, key: Some(7), value: ev.id() };
        c.on_record(0, &rec, &Message { key: Some(7), value: ev }, &mut out);
        let cause = Some(EventId::order_created(7));
        assert_eq!(
            out,
            vec![
                Command::Cache { op: CacheOp::RankingIncrement { product: 2, by: 3 }, cause },
                Command::Cache { op: CacheOp::DeleteCart { user: 1 }, cause },
                Command::Ack
            ]
        );
    }
}

/// Seed 000's order-completed fan-out: one listener per consumer group, each doing one thing with
/// the same `OrderCompletedEvent` (an order event on its topic).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FanOut {
    /// `PointConsumer`: 1% of the order's value as points.
    Points,
    /// `CouponConsumer`: the coupon the order used is marked used.
    CouponUse,
    /// `EmailConsumer`: the confirmation e-mail.
    Email,
}

/// A listener of seed 000's fan-out.
#[derive(Debug)]
pub struct FanOutConsumer(pub FanOut);

impl Listener for FanOutConsumer {
    fn on_record(&mut self, _now: Micros, record: &Polled, message: &Message, out: &mut Vec<Command>) {
        if let Event::OrderCreated { user, qty, .. } = message.value {
            let call = match self.0 {
                FanOut::Points => ExternalCall::AddPoints { user, points: i64::from(qty) * 100 },
                FanOut::CouponUse => ExternalCall::UseCoupon { user },
                FanOut::Email => ExternalCall::SendEmail { user },
            };
            out.push(Command::External { call, cause: Some(record.value) });
        }
        out.push(Command::Ack);
    }
}
