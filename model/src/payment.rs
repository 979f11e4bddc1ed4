//! Seed 001's payment workflow: `PaymentService` (with its compensation) and the data-platform
//! sender consuming `payment-completed`, as sans-IO actors.

use crate::actor::{Command, ExternalCall, Input, Listener, Request, Response, Service, Token};
use crate::db::{Rollback, Txn, TxnOutcome};
use crate::event::{Event, Message};
use crate::history::{Micros, Polled, TopicId};
use crate::scenario::{Compensation, PublishStrategy};
use std::collections::BTreeMap;

/// `PaymentService.processPayment` (seed 001): one transaction locks the order, deducts the
/// balance, marks the order PAID and creates the payment and shipping rows; `payment-completed`
/// (key = orderId) is published as the publishing strategy says. When the balance is short, the
/// compensation restores the stock and cancels the order: in its own transaction
/// (`separate-transaction`, REQUIRES_NEW), or inside the failing one (`same-transaction`, the seed's
/// code as written: the rethrown exception rolls the compensation back with everything else).
#[derive(Debug)]
pub struct PaymentService {
    topic: TopicId,
    publish: PublishStrategy,
    compensation: Compensation,
    async_delay_us: Micros,
    /// Payments under way, by token (= order id). Memory: lost on a crash.
    pending: BTreeMap<Token, Request>,
    /// Compensations under way, by token.
    compensating: BTreeMap<Token, ()>,
    queued: BTreeMap<Token, Message>,
    pub failed_sends: u64,
}

impl PaymentService {
    pub fn new(topic: TopicId, publish: PublishStrategy, compensation: Compensation, async_delay_us: Micros) -> Self {
        Self {
            topic,
            publish,
            compensation,
            async_delay_us,
            pending: BTreeMap::new(),
            compensating: BTreeMap::new(),
            queued: BTreeMap::new(),
            failed_sends: 0,
        }
    }

    fn event(req: &Request) -> Option<Message> {
        match *req {
            Request::Pay { order, user, amount } => {
                Some(Message { key: Some(order), value: Event::PaymentCompleted { order, user, amount } })
            }
            Request::CreateOrder { .. } | Request::IssueCoupon { .. } => None,
        }
    }
}

impl Service for PaymentService {
    fn on_input(&mut self, _now: Micros, input: Input, out: &mut Vec<Command>) {
        match input {
            Input::Request(req) => {
                let Request::Pay { order, user, amount } = req else { return };
                self.pending.insert(order, req);
                match self.publish {
                    PublishStrategy::InTransaction => {
                        let message = Self::event(&req).expect("a payment has an event");
                        out.push(Command::Produce { token: order, topic: self.topic, message });
                    }
                    _ => out.push(Command::Transact { token: order, txn: Txn::Pay { order, user, amount } }),
                }
            }
            Input::TxnDone { token, outcome } => {
                if self.compensating.remove(&token).is_some() {
                    out.push(Command::Respond { token, response: Response::Rejected });
                    return;
                }
                let Some(req) = self.pending.remove(&token) else { return };
                match outcome {
                    TxnOutcome::Committed => {
                        let message = Self::event(&req).expect("a payment has an event");
                        match self.publish {
                            PublishStrategy::AfterCommit => {
                                out.push(Command::Produce { token, topic: self.topic, message })
                            }
                            PublishStrategy::AfterCommitAsync => {
                                self.queued.insert(token, message);
                                out.push(Command::Timer { token, after_us: self.async_delay_us });
                            }
                            PublishStrategy::InTransaction => {}
                        }
                        out.push(Command::Respond { token, response: Response::Ok });
                    }
                    TxnOutcome::RolledBack(Rollback::InsufficientBalance { .. }) => match self.compensation {
                        Compensation::SeparateTransaction => {
                            let Request::Pay { order, .. } = req else { return };
                            self.compensating.insert(token, ());
                            out.push(Command::Transact { token, txn: Txn::CompensateOrder { order } });
                        }
                        // The compensation ran inside the transaction that the rethrow rolled back.
                        Compensation::SameTransaction => {
                            out.push(Command::Respond { token, response: Response::Rejected })
                        }
                    },
                    TxnOutcome::RolledBack(_) => out.push(Command::Respond { token, response: Response::Rejected }),
                }
            }
            Input::Timer { token } => {
                if let Some(message) = self.queued.remove(&token) {
                    out.push(Command::Produce { token, topic: self.topic, message });
                }
            }
            Input::CacheDone { .. } => {}
            Input::Delivered { token, result } => {
                if result.is_err() {
                    self.failed_sends += 1;
                }
                if self.publish == PublishStrategy::InTransaction
                    && let Some(Request::Pay { order, user, amount }) = self.pending.get(&token).copied()
                {
                    if result.is_ok() {
                        out.push(Command::Transact { token, txn: Txn::Pay { order, user, amount } });
                    } else {
                        self.pending.remove(&token);
                        out.push(Command::Respond { token, response: Response::Rejected });
                    }
                }
            }
        }
    }
}

/// `PaymentEventConsumer` (seed 001): sends each `payment-completed` event to the external data
/// platform (`DataPlatformService`), then acknowledges.
#[derive(Debug, Default)]
pub struct PaymentEventConsumer;

impl Listener for PaymentEventConsumer {
    fn on_record(&mut self, _now: Micros, record: &Polled, message: &Message, out: &mut Vec<Command>) {
        if let Event::PaymentCompleted { .. } = message.value {
            out.push(Command::External { call: ExternalCall::DataPlatformSend, cause: Some(record.value) });
        }
        out.push(Command::Ack);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::EventId;

    fn pay(s: &mut PaymentService, outcome: TxnOutcome) -> Vec<Command> {
        let mut out = Vec::new();
        s.on_input(0, Input::Request(Request::Pay { order: 5, user: 2, amount: 300 }), &mut out);
        assert!(matches!(out[0], Command::Transact { txn: Txn::Pay { order: 5, .. }, .. }));
        out.clear();
        s.on_input(1, Input::TxnDone { token: 5, outcome }, &mut out);
        out
    }

    #[test]
    fn a_paid_order_publishes_payment_completed_after_the_commit() {
        let mut s = PaymentService::new(TopicId(1), PublishStrategy::AfterCommit, Compensation::SeparateTransaction, 0);
        let out = pay(&mut s, TxnOutcome::Committed);
        assert!(
            matches!(&out[0], Command::Produce { message, .. } if message.value.id() == EventId::payment_completed(5))
        );
        assert!(matches!(out[1], Command::Respond { response: Response::Ok, .. }));
    }

    #[test]
    fn a_short_balance_compensates_in_its_own_transaction_or_not_at_all() {
        let short = TxnOutcome::RolledBack(Rollback::InsufficientBalance { balance: 10 });
        let mut s = PaymentService::new(TopicId(1), PublishStrategy::AfterCommit, Compensation::SeparateTransaction, 0);
        let out = pay(&mut s, short);
        assert_eq!(out, vec![Command::Transact { token: 5, txn: Txn::CompensateOrder { order: 5 } }]);
        let mut s = PaymentService::new(TopicId(1), PublishStrategy::AfterCommit, Compensation::SameTransaction, 0);
        let out = pay(&mut s, short);
        assert_eq!(
            out,
            vec![Command::Respond { token: 5, response: Response::Rejected }],
            "rolled back with the payment"
        );
    }
}
