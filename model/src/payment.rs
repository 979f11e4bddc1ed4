//! Seed 001's payment workflow: `PaymentService` (with its compensation) and the data-platform
//! sender consuming `payment-completed`, as sans-IO actors.

use crate::actor::{Command, ExternalCall, Input, Listener, Request, Response, Service, Token};
use crate::db::{Rollback, Txn, TxnOutcome};
use crate::event::{Event, Message};
use crate::history::{Micros, Polled, TopicId};
use crate::publish::{Publisher, Publishing};
use crate::scenario::Compensation;
use std::collections::BTreeMap;

/// `PaymentService.processPayment` (seed 001): one transaction locks the order, deducts the
/// balance, marks the order PAID and creates the payment and shipping rows; `payment-completed`
/// (key = orderId) is published as the publishing strategy says. When the balance is short, the
/// compensation restores the stock and cancels the order: in its own transaction
/// (`separate-transaction`, REQUIRES_NEW), or inside the failing one (`same-transaction`, the seed's
/// code as written: the rethrown exception rolls the compensation back with everything else).
#[derive(Debug)]
pub struct PaymentService {
    publisher: Publisher,
    compensation: Compensation,
    /// Payments under way, by token (= order id). Memory: lost on a crash.
    pending: BTreeMap<Token, Request>,
    /// Compensations under way, by token.
    compensating: BTreeMap<Token, ()>,
}

impl PaymentService {
    pub fn new(topic: TopicId, publishing: Publishing, compensation: Compensation) -> Self {
        Self {
            publisher: Publisher::new(topic, publishing),
            compensation,
            pending: BTreeMap::new(),
            compensating: BTreeMap::new(),
        }
    }

    /// The payment request's event and transaction (only payments reach this service).
    fn parts(req: &Request) -> (Message, Txn) {
        let Request::Pay { order, user, amount } = *req else { unreachable!("a payment request") };
        let event = Message { key: Some(order), value: Event::PaymentCompleted { order, user, amount } };
        (event, Txn::Pay { order, user, amount })
    }
}

impl Service for PaymentService {
    fn on_input(&mut self, _now: Micros, input: Input, out: &mut Vec<Command>) {
        match input {
            Input::Request(req) => {
                let Request::Pay { order, .. } = req else { return };
                self.pending.insert(order, req);
                let (event, txn) = Self::parts(&req);
                self.publisher.begin(order, txn, event, out);
            }
            Input::TxnDone { token, outcome } => {
                if self.compensating.remove(&token).is_some() {
                    out.push(Command::Respond { token, response: Response::Rejected });
                    return;
                }
                let Some(req) = self.pending.remove(&token) else { return };
                match outcome {
                    TxnOutcome::Committed => {
                        self.publisher.committed(token, Self::parts(&req).0, out);
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
    use crate::scenario::PublishStrategy;

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
        let mut s = PaymentService::new(
            TopicId(1),
            Publishing::new(PublishStrategy::AfterCommit),
            Compensation::SeparateTransaction,
        );
        let out = pay(&mut s, TxnOutcome::Committed);
        assert!(
            matches!(&out[0], Command::Produce { message, .. } if message.value.id() == EventId::payment_completed(5))
        );
        assert!(matches!(out[1], Command::Respond { response: Response::Ok, .. }));
    }

    #[test]
    fn a_short_balance_compensates_in_its_own_transaction_or_not_at_all() {
        let short = TxnOutcome::RolledBack(Rollback::InsufficientBalance { balance: 10 });
        let mut s = PaymentService::new(
            TopicId(1),
            Publishing::new(PublishStrategy::AfterCommit),
            Compensation::SeparateTransaction,
        );
        let out = pay(&mut s, short);
        assert_eq!(out, vec![Command::Transact { token: 5, txn: Txn::CompensateOrder { order: 5 } }]);
        let mut s = PaymentService::new(
            TopicId(1),
            Publishing::new(PublishStrategy::AfterCommit),
            Compensation::SameTransaction,
        );
        let out = pay(&mut s, short);
        assert_eq!(
            out,
            vec![Command::Respond { token: 5, response: Response::Rejected }],
            "rolled back with the payment"
        );
    }
}
