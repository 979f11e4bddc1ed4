//! The sans-IO service protocol: a service reacts to an [`Input`] and pushes [`Command`]s into a
//! buffer it is handed. It never performs I/O, never reads a clock and never sleeps, so the
//! simulator and the real Kafka runner can drive the very same service.
//!
//! The shape follows stateright's actors: state plus `on_*` handlers that emit outputs.

use crate::db::{Txn, TxnOutcome};
use crate::event::Message;
use crate::history::{ErrorCode, Micros, Polled, TopicId};

/// A request id, a pending transaction or a pending send: chosen by the service, echoed back by
/// the driver with the result.
pub type Token = u64;

/// A client request from the workload.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `POST /orders`.
    CreateOrder { order: u64, user: u64, product: u32, qty: u32 },
    /// `POST /payments`.
    Pay { order: u64, user: u64, amount: i64 },
    /// `POST /coupons/{id}/issue` (seeds 002, 003).
    IssueCoupon { request: u64, coupon: u32, user: u64 },
    /// `POST /concerts/{id}/queue` (seed 002).
    EnterQueue { token: u64, concert: u32, user: u64 },
    /// Request `id` of a workflow's request type `handler`; the driver keeps its fields.
    Workflow { handler: u16, id: u64 },
}

/// The service's answer to a request.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Ok,
    Rejected,
}

/// What a driver hands a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Request(Request),
    /// A DB transaction the service asked for has finished.
    TxnDone {
        token: Token,
        outcome: TxnOutcome,
    },
    /// A producer delivery report: the offset written (`None` with `acks=0`) or the error.
    Delivered {
        token: Token,
        result: Result<Option<u64>, ErrorCode>,
    },
    /// A timer the service set with [`Command::Timer`] fired.
    Timer {
        token: Token,
    },
    /// The answer to a [`Command::CacheCall`]: whether the set gained the member (SADD's 1).
    CacheDone {
        token: Token,
        added: bool,
    },
    /// The answer to a [`Command::ScanOutbox`]: the events of the due rows.
    OutboxDue {
        token: Token,
        events: Vec<Message>,
    },
    /// A workflow transaction ([`crate::db::Txn::Workflow`]) has finished: whether it
    /// committed, and the events it publishes; for a rolled-back request, the compensation
    /// handler to run next in a transaction of its own, if it has one (`requires-new`).
    ///
    /// With `waiting`, the request's steps wait for the last of `events` to be acknowledged
    /// (`send(...).get()`): the service sends it with a token of its own ([`crate::workflow::
    /// service::waiting_token`]) and, on its delivery report, asks for [`Command::Resume`]; a
    /// `WorkflowDone` follows when the steps go on.
    WorkflowDone {
        token: Token,
        committed: bool,
        events: Vec<Message>,
        compensate: Option<u16>,
        waiting: bool,
    },
    /// The answer to a [`Command::Preview`]: the event the transaction publishes when it
    /// reaches its `publish` step, if it reaches one.
    WorkflowPreviewed {
        token: Token,
        event: Option<Message>,
    },
}

/// A Redis command (the seeds' cache and ranking store).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CacheOp {
    /// `ZINCRBY ranking <by> <product>`.
    RankingIncrement { product: u32, by: u32 },
    /// `DEL cart:<user>`.
    DeleteCart { user: u64 },
    /// `SADD coupon:<coupon>:requested <user>` (seed 003): answered by [`Input::CacheDone`].
    AddCouponRequest { request: u64, coupon: u32, user: u64 },
}

/// What a service asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Run a DB transaction; the result comes back as [`Input::TxnDone`].
    Transact { token: Token, txn: Txn },
    /// Hand a record to the producer (`send()`); the delivery report comes back as
    /// [`Input::Delivered`].
    Produce { token: Token, topic: TopicId, message: Message },
    /// Apply a cache command now. `cause` is the event whose handling this is.
    Cache { op: CacheOp, cause: Option<crate::history::EventId> },
    /// Answer the client's request.
    Respond { token: Token, response: Response },
    /// A listener acknowledges the record it was handed (manual ack).
    Ack,
    /// Wake the service with [`Input::Timer`] after `after_us` (in-memory: lost on a crash).
    Timer { token: Token, after_us: Micros },
    /// Run a DB transaction that also inserts `event`'s outbox row (status INIT) if it commits.
    TransactWithOutbox { token: Token, txn: Txn, event: Message },
    /// Read the outbox rows still INIT that were inserted at least `older_than_us` ago; the
    /// answer comes back as [`Input::OutboxDue`].
    ScanOutbox { token: Token, older_than_us: Micros },
    /// A Redis command whose answer the service needs, as [`Input::CacheDone`].
    CacheCall { token: Token, op: CacheOp },
    /// Call an external system now (it may be down: the driver then fails the handler).
    External { call: ExternalCall, cause: Option<crate::history::EventId> },
    /// A workflow listener: run handler `handler`'s steps on the record's event; the driver
    /// acknowledges the record when they complete.
    Steps { handler: u16 },
    /// In-transaction publishing of a workflow's event: run request `id`'s transaction up to
    /// its `publish` step against the current rows, writing nothing, for the event it sends
    /// before the commit; the answer comes back as [`Input::WorkflowPreviewed`].
    Preview { token: Token, handler: u16, id: u64 },
    /// Request `id`'s steps, blocked on a send, go on: `sent` says whether the broker
    /// acknowledged it. The answer comes back as [`Input::WorkflowDone`].
    Resume { token: Token, handler: u16, id: u64, sent: bool },
}

/// A call to a system outside the architecture.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ExternalCall {
    /// `DataPlatformService.send` (seed 001's payment-completed consumer).
    DataPlatformSend,
    /// `PointService.addPoints` (seed 000's `PointConsumer`).
    AddPoints { user: u64, points: i64 },
    /// `CouponService.use` (seed 000's `CouponConsumer`).
    UseCoupon { user: u64 },
    /// `EmailService.send` (seed 000's `EmailConsumer`): an external mail server.
    SendEmail { user: u64 },
    /// The waiting queue's activator enables a token (seed 002).
    ActivateToken { token: u64, concert: u32, user: u64 },
}

impl ExternalCall {
    /// The history entry that records this call's effect, made because of `cause` by a listener
    /// of `group`: what both drivers record when a listener's external call succeeds.
    pub fn effect(self, cause: crate::history::EventId, group: crate::history::GroupId) -> crate::history::Op {
        use crate::history::Op;
        match self {
            ExternalCall::DataPlatformSend => Op::PlatformSent { cause },
            ExternalCall::AddPoints { user, points } => Op::PointsAdded { user, points, cause },
            ExternalCall::UseCoupon { user } => Op::CouponUsed { user, cause },
            ExternalCall::SendEmail { user } => Op::EmailSent { user, cause },
            ExternalCall::ActivateToken { token, concert, user } => Op::TokenActivated { group, token, concert, user },
        }
    }
}

/// A service driven by requests, transaction results and delivery reports.
pub trait Service {
    fn on_input(&mut self, now: Micros, input: Input, out: &mut Vec<Command>);
}

/// A record listener (`@KafkaListener`): handles one record at a time and acknowledges it, or not.
pub trait Listener {
    /// Handle one record. Push [`Command::Ack`] when it succeeded and may be committed.
    fn on_record(&mut self, now: Micros, record: &Polled, message: &Message, out: &mut Vec<Command>);
}
