//! The publishing strategies: how a service publishes the event of a business transaction. One
//! place for every service, so that a strategy means the same thing in each.

use crate::actor::{Command, Token};
use crate::db::Txn;
use crate::event::Message;
use crate::history::{ErrorCode, Micros, TopicId};
use crate::scenario::PublishStrategy;
use std::collections::BTreeMap;

/// The token of the outbox scheduler's timer and of its re-publications.
pub const OUTBOX_SCHEDULER: Token = u64::MAX;

/// A service's publishing settings.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Publishing {
    pub strategy: PublishStrategy,
    /// `after-commit-async`: how long a queued send waits for a worker.
    pub async_delay_us: Micros,
    /// `outbox`: how often the scheduler scans the outbox.
    pub outbox_scan_us: Micros,
    /// `outbox`: how old an INIT row must be before the scheduler re-publishes it.
    pub outbox_retry_after_us: Micros,
}

impl Publishing {
    pub fn new(strategy: PublishStrategy) -> Self {
        Self { strategy, async_delay_us: 1_000, outbox_scan_us: 1_000_000, outbox_retry_after_us: 5_000_000 }
    }
}

/// Carries out a publishing strategy for one service instance. Its memory (queued async sends)
/// dies with the process; an outbox row lives in the DB.
#[derive(Debug)]
pub struct Publisher {
    topic: TopicId,
    cfg: Publishing,
    queued: BTreeMap<Token, Message>,
}

impl Publisher {
    pub fn new(topic: TopicId, cfg: Publishing) -> Self {
        Self { topic, cfg, queued: BTreeMap::new() }
    }

    #[inline]
    pub fn strategy(&self) -> PublishStrategy {
        self.cfg.strategy
    }

    #[inline]
    fn produce(&self, token: Token, message: Message) -> Command {
        Command::Produce { token, topic: self.topic, message }
    }

    /// Start the business transaction `txn`, whose commit publishes `event`.
    #[inline]
    pub fn begin(&mut self, token: Token, txn: Txn, event: Message, out: &mut Vec<Command>) {
        match self.cfg.strategy {
            // The send goes first; the transaction waits for its acknowledgement.
            PublishStrategy::InTransaction => out.push(self.produce(token, event)),
            PublishStrategy::AfterCommit | PublishStrategy::AfterCommitAsync => {
                out.push(Command::Transact { token, txn })
            }
            PublishStrategy::Outbox => out.push(Command::TransactWithOutbox { token, txn, event }),
        }
    }

    /// A delivery report for `token`, whose request still waits with transaction `txn` (if
    /// any). With in-transaction publishing, the acknowledgement runs the transaction; a failed
    /// send rolls it back before it touched the DB, and the client is answered. Returns whether
    /// the request is over.
    pub fn delivered(
        &self,
        token: Token,
        result: &Result<Option<u64>, ErrorCode>,
        txn: Option<Txn>,
        out: &mut Vec<Command>,
    ) -> bool {
        let (PublishStrategy::InTransaction, Some(txn)) = (self.cfg.strategy, txn) else { return false };
        if result.is_ok() {
            out.push(Command::Transact { token, txn });
            false
        } else {
            out.push(Command::Respond { token, response: crate::actor::Response::Rejected });
            true
        }
    }

    /// The transaction committed: publish as the strategy says.
    #[inline]
    pub fn committed(&mut self, token: Token, event: Message, out: &mut Vec<Command>) {
        match self.cfg.strategy {
            // The outbox relay publishes after the commit too; the row makes it recoverable.
            PublishStrategy::AfterCommit | PublishStrategy::Outbox => out.push(self.produce(token, event)),
            PublishStrategy::AfterCommitAsync => {
                self.queued.insert(token, event);
                out.push(Command::Timer { token, after_us: self.cfg.async_delay_us });
            }
            PublishStrategy::InTransaction => {}
        }
    }

    /// A timer fired: an async worker's turn, or the outbox scheduler's.
    #[inline]
    pub fn on_timer(&mut self, token: Token, out: &mut Vec<Command>) {
        if token == OUTBOX_SCHEDULER && self.cfg.strategy == PublishStrategy::Outbox {
            out.push(Command::ScanOutbox { token, older_than_us: self.cfg.outbox_retry_after_us });
            out.push(Command::Timer { token, after_us: self.cfg.outbox_scan_us });
        } else if let Some(message) = self.queued.remove(&token) {
            out.push(self.produce(token, message));
        }
    }

    /// The outbox rows the scheduler found still INIT: publish them again.
    pub fn republish(&mut self, events: Vec<Message>, out: &mut Vec<Command>) {
        for message in events {
            out.push(self.produce(OUTBOX_SCHEDULER, message));
        }
    }
}

/// The outbox's own consumer (seed 002): reads the service's topic and marks each event's outbox
/// row PUBLISHED, so that the scheduler stops re-publishing it.
#[derive(Debug, Default)]
pub struct OutboxMarker;

impl crate::actor::Listener for OutboxMarker {
    fn on_record(&mut self, _now: Micros, record: &crate::history::Polled, _message: &Message, out: &mut Vec<Command>) {
        out.push(Command::Transact { token: record.offset, txn: Txn::MarkOutboxPublished { event: record.value } });
        out.push(Command::Ack);
    }
}
