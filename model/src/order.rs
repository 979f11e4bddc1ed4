//! Seed 001's order workflow: `OrderService` and `OrderEventConsumer` as sans-IO actors.

use crate::actor::{CacheOp, Command, Input, Listener, Request, Response, Service, Token};
use crate::db::{Txn, TxnOutcome};
use crate::event::{Event, Message};
use crate::history::{Micros, Polled, TopicId};
use std::collections::BTreeMap;

/// `OrderService.createOrder` (seed 001): one DB transaction deducts the stock under a
/// pessimistic lock and saves the order PENDING; after the commit, `order-created` is sent with
/// key = orderId. A failed send is logged and dropped: the order stays created (the seed's
/// "Kafka 발행 실패는 주 비즈니스에 영향을 주지 않음").
#[derive(Debug)]
pub struct OrderService {
    topic: TopicId,
    /// Requests whose transaction is under way, by token (= order id). Lost on a crash.
    pending: BTreeMap<Token, Request>,
    /// Sends whose delivery report failed (what the seed's logger.error would show).
    pub failed_sends: u64,
}

impl OrderService {
    pub fn new(topic: TopicId) -> Self {
        Self { topic, pending: BTreeMap::new(), failed_sends: 0 }
    }
}

impl Service for OrderService {
    fn on_input(&mut self, _now: Micros, input: Input, out: &mut Vec<Command>) {
        match input {
            Input::Request(req) => {
                let Request::CreateOrder { order, user, product, qty } = req;
                self.pending.insert(order, req);
                out.push(Command::Transact { token: order, txn: Txn::CreateOrder { order, user, product, qty } });
            }
            Input::TxnDone { token, outcome } => {
                let Some(Request::CreateOrder { order, user, product, qty }) = self.pending.remove(&token) else {
                    return;
                };
                match outcome {
                    TxnOutcome::Committed => {
                        // After commit: publish, then answer the client without waiting for the ack.
                        let message =
                            Message { key: Some(order), value: Event::OrderCreated { order, user, product, qty } };
                        out.push(Command::Produce { token, topic: self.topic, message });
                        out.push(Command::Respond { token, response: Response::Ok });
                    }
                    TxnOutcome::RolledBack(_) => out.push(Command::Respond { token, response: Response::Rejected }),
                }
            }
            Input::Delivered { result, .. } => {
                if result.is_err() {
                    self.failed_sends += 1;
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{EventId, Tp};

    #[test]
    fn publishes_only_after_the_transaction_commits() {
        let mut s = OrderService::new(TopicId(0));
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
        let mut s = OrderService::new(TopicId(0));
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
