//! A workflow's service and listeners as sans-IO actors (issue 15): the same protocol as the
//! compiled-in services (`crate::actor`), so that both drivers run them unchanged. The
//! workflow's state (tables, cache) and the requests' and events' field values stay with the
//! driver, which runs the executor (`super::exec`) when a transaction commits or a listener's
//! steps run; the actors decide what happens around that: transactions, publishing strategy,
//! answers, acknowledgements.
//!
//! Publishing strategies: the after-commit ones (`after-commit`, `after-commit-async`) and the
//! outbox publish what the committed transaction returned (the driver writes the outbox rows with
//! it); `in-transaction` sends the event of a preview of the transaction first and commits on
//! its acknowledgement (docs/workflow-language.md).

use crate::actor::{Command, Input, Listener, Request, Response, Service, Token};
use crate::db::Txn;
use crate::event::Message;
use crate::history::{Micros, Polled, TopicId};
use crate::publish::{Publisher, Publishing};
use crate::scenario::PublishStrategy;
use std::collections::{BTreeMap, BTreeSet};

/// The token of request `id` of request type `handler`: unique in a service that handles
/// several request types, whose ids each count from 1 (ids stay below 2^56, request types
/// below 256, so a token never reaches the outbox scheduler's).
pub fn request_token(handler: u16, id: u64) -> Token {
    debug_assert!(handler < 256 && id <= crate::history::MAX_SUBJECT);
    (u64::from(handler) << 56) | id
}

/// The request type and id of a [`request_token`].
pub fn token_request(token: Token) -> (u16, u64) {
    (((token & !WAITING) >> 56) as u16, token & crate::history::MAX_SUBJECT)
}

/// The bit that marks the send a request's steps wait for: request types stay below 128
/// ([`super::compile::MAX_REQUESTS`]), so a request's token never has it.
const WAITING: Token = 1 << 63;
const _: () = assert!(super::compile::MAX_REQUESTS < 128);

/// The token the send that request `token`'s steps wait for is made with: its delivery report
/// is told apart from those of the request's other sends.
pub fn waiting_token(token: Token) -> Token {
    token | WAITING
}

/// A `[services.*]` instance that handles a workflow's requests: each request is one
/// transaction of its handler; a committed one publishes its event by the strategy, and the
/// client is answered without waiting for any delivery report.
#[derive(Debug)]
pub struct WorkflowService {
    publisher: Publisher,
    /// Requests under way, by token ([`request_token`]), with their transaction. Memory: lost
    /// on a crash.
    pending: BTreeMap<Token, Txn>,
    /// Requests whose compensation is under way.
    compensating: BTreeSet<Token>,
}

impl WorkflowService {
    pub fn new(topic: TopicId, publishing: Publishing) -> Self {
        Self { publisher: Publisher::new(topic, publishing), pending: BTreeMap::new(), compensating: BTreeSet::new() }
    }
}

impl Service for WorkflowService {
    fn on_input(&mut self, _now: Micros, input: Input, out: &mut Vec<Command>) {
        match input {
            Input::Request(Request::Workflow { handler, id }) => {
                let token = request_token(handler, id);
                let txn = Txn::Workflow { handler, id };
                self.pending.insert(token, txn);
                if self.publisher.strategy() == PublishStrategy::InTransaction {
                    // The event is sent when the transaction reaches its publish step.
                    out.push(Command::Preview { token, handler, id });
                } else {
                    out.push(Command::Transact { token, txn });
                }
            }
            Input::WorkflowPreviewed { token, event } => {
                let Some(&txn) = self.pending.get(&token) else { return };
                match event {
                    // Sent, and the transaction waits for the acknowledgement.
                    Some(event) => self.publisher.begin(token, txn, event, out),
                    // It stops before publishing (or publishes nothing): it goes on alone.
                    None => out.push(Command::Transact { token, txn }),
                }
            }
            Input::Delivered { token, result } if token & WAITING != 0 && token != crate::publish::OUTBOX_SCHEDULER => {
                // The send the request's steps wait for: they go on (or its `.get()` throws).
                let token = token & !WAITING;
                if let Some(&Txn::Workflow { handler, id }) = self.pending.get(&token) {
                    out.push(Command::Resume { token, handler, id, sent: result.is_ok() });
                }
            }
            Input::Delivered { token, result } => {
                // In-transaction: the acknowledgement lets the transaction commit; a failed
                // send rolls it back. After-commit strategies ignore delivery reports (a failed
                // send is logged and dropped, as seed 001's service does; an outbox row stays INIT).
                let txn = self.pending.get(&token).copied();
                if self.publisher.delivered(token, &result, txn, out) {
                    self.pending.remove(&token);
                }
            }
            Input::WorkflowDone { token, committed, events, compensate, waiting } => {
                let Some(txn) = self.pending.remove(&token) else { return };
                if let Some(handler) = compensate {
                    // The request failed; its compensation runs in a transaction of its own
                    // before the client gets the error.
                    let Txn::Workflow { id, .. } = txn else { return };
                    let txn = Txn::Workflow { handler, id };
                    self.pending.insert(token, txn);
                    self.compensating.insert(token);
                    out.push(Command::Transact { token, txn });
                    return;
                }
                if self.compensating.remove(&token) {
                    // A compensation's events are published as any committed transaction's;
                    // the request it settles failed.
                    if committed {
                        for event in events {
                            self.publisher.committed(token, event, out);
                        }
                    }
                    out.push(Command::Respond { token, response: Response::Rejected });
                    return;
                }
                // What it published (nothing, when a transaction rolled back; the steps before a
                // refusing guard, for a handler without one), then the answer; or, when its steps
                // wait for the last send, that send with a token of its own and no answer yet
                // (scenario validation keeps such a service's publishing after-commit).
                let mut events = events.into_iter();
                let waited = if waiting { events.next_back() } else { None };
                for event in events {
                    self.publisher.committed(token, event, out);
                }
                if let Some(event) = waited {
                    self.publisher.committed(waiting_token(token), event, out);
                    self.pending.insert(token, txn);
                    return;
                }
                let response = if committed { Response::Ok } else { Response::Rejected };
                out.push(Command::Respond { token, response });
            }
            Input::Timer { token } => self.publisher.on_timer(token, out),
            // The outbox scheduler found rows still INIT: the relay sends them again.
            Input::OutboxDue { events, .. } => self.publisher.republish(events, out),
            Input::Request(_) | Input::TxnDone { .. } | Input::CacheDone { .. } => {}
        }
    }
}

/// A workflow's `[listeners.*]` handler, as a `@KafkaListener`: the driver runs its steps on
/// the record's event and acknowledges the record when they complete.
#[derive(Debug)]
pub struct WorkflowListener {
    pub handler: u16,
}

impl Listener for WorkflowListener {
    fn on_record(&mut self, _now: Micros, _record: &Polled, _message: &Message, out: &mut Vec<Command>) {
        out.push(Command::Steps { handler: self.handler });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::history::EventId;

    #[test]
    fn a_committed_request_publishes_after_the_commit_and_a_rejected_one_nothing() {
        let mut s = WorkflowService::new(TopicId(0), Publishing::new(PublishStrategy::AfterCommit));
        let mut out = Vec::new();
        s.on_input(0, Input::Request(Request::Workflow { handler: 0, id: 7 }), &mut out);
        assert_eq!(out, vec![Command::Transact { token: 7, txn: Txn::Workflow { handler: 0, id: 7 } }]);
        out.clear();
        let event = Message { key: Some(7), value: Event::Declared { id: EventId::order_created(7) } };
        s.on_input(
            1,
            Input::WorkflowDone { token: 7, committed: true, events: vec![event], compensate: None, waiting: false },
            &mut out,
        );
        assert_eq!(
            out,
            vec![
                Command::Produce { token: 7, topic: TopicId(0), message: event },
                Command::Respond { token: 7, response: Response::Ok }
            ]
        );
        out.clear();
        s.on_input(2, Input::Request(Request::Workflow { handler: 0, id: 8 }), &mut out);
        out.clear();
        s.on_input(
            3,
            Input::WorkflowDone { token: 8, committed: false, events: vec![], compensate: None, waiting: false },
            &mut out,
        );
        assert_eq!(out, vec![Command::Respond { token: 8, response: Response::Rejected }]);
        // A crash forgot the request: a late answer is ignored.
        out.clear();
        s.on_input(
            4,
            Input::WorkflowDone { token: 9, committed: true, events: vec![event], compensate: None, waiting: false },
            &mut out,
        );
        assert!(out.is_empty());
    }

    /// Steps that wait for a send (`send(...).get()`): the events before it are sent as usual,
    /// the one waited for with the waiting token, and the client hears nothing until its
    /// delivery report has let the steps go on (`Resume`, then a second `WorkflowDone`). The
    /// request's other delivery reports and a report for a forgotten request change nothing.
    #[test]
    fn a_request_waiting_for_its_send_goes_on_only_on_that_sends_delivery_report() {
        let mut s = WorkflowService::new(TopicId(0), Publishing::new(PublishStrategy::AfterCommit));
        let mut out = Vec::new();
        let token = request_token(2, 5);
        assert_eq!(token_request(waiting_token(token)), (2, 5));
        s.on_input(0, Input::Request(Request::Workflow { handler: 2, id: 5 }), &mut out);
        out.clear();
        let first = Message { key: Some(5), value: Event::Declared { id: EventId::order_created(5) } };
        let waited = Message { key: Some(6), value: Event::Declared { id: EventId::order_created(6) } };
        let done = |events, waiting| Input::WorkflowDone { token, committed: true, events, compensate: None, waiting };
        s.on_input(1, done(vec![first, waited], true), &mut out);
        assert_eq!(
            out,
            vec![
                Command::Produce { token, topic: TopicId(0), message: first },
                Command::Produce { token: waiting_token(token), topic: TopicId(0), message: waited },
            ]
        );
        out.clear();
        s.on_input(2, Input::Delivered { token, result: Ok(Some(1)) }, &mut out);
        assert!(out.is_empty(), "not the send it waits for: {out:?}");
        let failed = Err(crate::history::ErrorCode::MsgTimedOut);
        s.on_input(3, Input::Delivered { token: waiting_token(token), result: failed }, &mut out);
        assert_eq!(out, vec![Command::Resume { token, handler: 2, id: 5, sent: false }]);
        out.clear();
        s.on_input(4, done(vec![], false), &mut out);
        assert_eq!(out, vec![Command::Respond { token, response: Response::Ok }]);
        out.clear();
        s.on_input(5, Input::Delivered { token: waiting_token(token), result: Ok(Some(2)) }, &mut out);
        assert!(out.is_empty(), "the request is settled: {out:?}");
    }

    /// A failed request whose compensation requires a new transaction: the compensation runs
    /// next (same token and id, the compensation's handler), and the client is told the request
    /// failed only when it has finished, committed or not.
    #[test]
    fn a_compensation_runs_in_its_own_transaction_before_the_client_hears_of_the_failure() {
        let mut s = WorkflowService::new(TopicId(0), Publishing::new(PublishStrategy::AfterCommit));
        let mut out = Vec::new();
        let token = request_token(1, 5);
        s.on_input(0, Input::Request(Request::Workflow { handler: 1, id: 5 }), &mut out);
        out.clear();
        s.on_input(
            1,
            Input::WorkflowDone { token, committed: false, events: vec![], compensate: Some(4), waiting: false },
            &mut out,
        );
        assert_eq!(out, vec![Command::Transact { token, txn: Txn::Workflow { handler: 4, id: 5 } }]);
        out.clear();
        s.on_input(
            2,
            Input::WorkflowDone { token, committed: true, events: vec![], compensate: None, waiting: false },
            &mut out,
        );
        assert_eq!(out, vec![Command::Respond { token, response: Response::Rejected }]);
        out.clear();
        s.on_input(
            3,
            Input::WorkflowDone { token, committed: true, events: vec![], compensate: None, waiting: false },
            &mut out,
        );
        assert!(out.is_empty(), "settled once");
    }

    /// In the transaction: the preview's event is sent first; its acknowledgement starts the
    /// transaction, whose commit answers the client and sends nothing more. A failed send
    /// rejects the request before the transaction; a request whose preview publishes nothing
    /// goes straight to its transaction.
    #[test]
    fn in_the_transaction_the_previewed_event_is_sent_before_the_transaction_runs() {
        let mut s = WorkflowService::new(TopicId(0), Publishing::new(PublishStrategy::InTransaction));
        let mut out = Vec::new();
        let token = request_token(1, 7);
        assert_eq!(token, (1 << 56) | 7);
        s.on_input(0, Input::Request(Request::Workflow { handler: 1, id: 7 }), &mut out);
        assert_eq!(out, vec![Command::Preview { token, handler: 1, id: 7 }]);
        out.clear();
        let event = Message { key: Some(7), value: Event::Declared { id: EventId::order_created(7) } };
        s.on_input(1, Input::WorkflowPreviewed { token, event: Some(event) }, &mut out);
        assert_eq!(out, vec![Command::Produce { token, topic: TopicId(0), message: event }]);
        out.clear();
        s.on_input(2, Input::Delivered { token, result: Ok(Some(3)) }, &mut out);
        let txn = Txn::Workflow { handler: 1, id: 7 };
        assert_eq!(out, vec![Command::Transact { token, txn }]);
        out.clear();
        s.on_input(
            3,
            Input::WorkflowDone { token, committed: true, events: vec![event], compensate: None, waiting: false },
            &mut out,
        );
        assert_eq!(out, vec![Command::Respond { token, response: Response::Ok }]);
        // A failed send: rejected, no transaction.
        out.clear();
        let token = request_token(1, 8);
        s.on_input(4, Input::Request(Request::Workflow { handler: 1, id: 8 }), &mut out);
        s.on_input(5, Input::WorkflowPreviewed { token, event: Some(event) }, &mut out);
        out.clear();
        let failed = Err(crate::history::ErrorCode::MsgTimedOut);
        s.on_input(6, Input::Delivered { token, result: failed }, &mut out);
        assert_eq!(out, vec![Command::Respond { token, response: Response::Rejected }]);
        // Nothing to send: the transaction decides alone.
        out.clear();
        let token = request_token(1, 9);
        s.on_input(7, Input::Request(Request::Workflow { handler: 1, id: 9 }), &mut out);
        out.clear();
        s.on_input(8, Input::WorkflowPreviewed { token, event: None }, &mut out);
        assert_eq!(out, vec![Command::Transact { token, txn: Txn::Workflow { handler: 1, id: 9 } }]);
    }
}
