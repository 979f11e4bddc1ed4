//! The history format: every operation of a run, as typed, serialisable entries.
//!
//! A history is what the checkers judge and what a failing seed hands to a person. It is written by
//! a driver (the simulator, later the real Kafka runner) from what it observed: a request arriving,
//! a DB transaction committing, a record sent, acknowledged, polled, processed, an offset commit and
//! its result, a rebalance. Entries carry virtual time (microseconds since the run began), the
//! process that did the operation, and the outcome.
//!
//! Entries are compact (numeric ids into the header's name tables) because the simulator writes
//! millions of them per second and the history hash covers every byte.

use crate::scenario::FaultKind;
use serde::{Deserialize, Serialize};

/// Virtual time in microseconds since the start of the run.
pub type Micros = u64;

/// A process of the run: a service instance, a consumer, a broker, the coordinator, the workload.
/// Index into [`Header::nodes`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u16);

/// A topic. Index into [`Header::topics`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicId(pub u16);

/// A consumer group. Index into [`Header::groups`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupId(pub u16);

/// A topic partition, Kafka's `TopicPartition`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Tp {
    pub topic: TopicId,
    pub partition: u32,
}

/// What kind of business event a record carries: an index into the history header's
/// [`Header::events`], where its name, its subject and its dependencies are declared.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventKind(pub u8);

/// The most event kinds one run declares (an [`EventId`] keeps the kind in its top byte).
pub const MAX_EVENT_KINDS: usize = 256;

/// An event kind as the header declares it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventInfo {
    /// Its name (`order-created`).
    pub name: String,
    /// What its subject identifies (`order`): `order-created(order 7)` in stories.
    pub subject: String,
    /// Whether it announces a committed DB fact (an order, a payment), as opposed to carrying a
    /// request that no transaction stands behind (a coupon request): what `no-phantom-event`
    /// judges.
    pub announces_fact: bool,
    /// The event kind, with the same subject, whose effects this one's effects depend on (a
    /// payment's on its order's): what `causal-order` judges.
    pub depends_on: Option<EventKind>,
}

/// The identity of a business event, and so of a record's value: one business fact gives one
/// event, whichever send attempt carries it. Two offsets holding the same `EventId` for one key
/// are a duplicate.
///
/// Packed in one `u64` (the kind in the top byte, the subject below, so subjects stay under
/// 2^56) because it sits in most history entries; it serialises as `{kind, subject}`, and orders
/// as (kind, subject).
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(u64);

const SUBJECT_BITS: u32 = 56;
const SUBJECT_MASK: u64 = (1 << SUBJECT_BITS) - 1;
/// The largest event subject an [`EventId`] holds.
pub const MAX_SUBJECT: u64 = SUBJECT_MASK;

impl EventId {
    pub fn new(kind: EventKind, subject: u64) -> Self {
        debug_assert!(subject <= SUBJECT_MASK, "event subjects are below 2^56");
        Self((u64::from(kind.0) << SUBJECT_BITS) | (subject & SUBJECT_MASK))
    }

    pub fn kind(self) -> EventKind {
        EventKind((self.0 >> SUBJECT_BITS) as u8)
    }

    pub fn subject(self) -> u64 {
        self.0 & SUBJECT_MASK
    }

    pub fn order_created(order: u64) -> Self {
        Self::new(crate::event::ORDER_CREATED, order)
    }

    pub fn payment_completed(order: u64) -> Self {
        Self::new(crate::event::PAYMENT_COMPLETED, order)
    }

    pub fn coupon_issue_request(request: u64) -> Self {
        Self::new(crate::event::COUPON_ISSUE_REQUEST, request)
    }

    pub fn waiting_token(token: u64) -> Self {
        Self::new(crate::event::WAITING_TOKEN, token)
    }
}

/// `EventId`'s serialised form: the same bytes and JSON as a plain `{kind, subject}` struct.
#[derive(Serialize, Deserialize)]
#[serde(rename = "EventId")]
struct EventIdForm {
    kind: EventKind,
    subject: u64,
}

impl Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        EventIdForm { kind: self.kind(), subject: self.subject() }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = EventIdForm::deserialize(d)?;
        if f.subject > SUBJECT_MASK {
            return Err(serde::de::Error::custom("an event subject must be below 2^56"));
        }
        Ok(Self::new(f.kind, f.subject))
    }
}

impl std::fmt::Debug for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventId").field("kind", &self.kind()).field("subject", &self.subject()).finish()
    }
}

/// Why a payment transaction rolled back.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentRejection {
    /// The user's balance was below the amount (`InsufficientBalanceException`).
    InsufficientBalance { balance: i64 },
    /// The order was not PENDING (already paid or cancelled).
    OrderNotPending,
}

/// Kafka error codes, by Kafka's own names, that a history can show.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    IllegalGeneration,
    RebalanceInProgress,
    UnknownMemberId,
    NotEnoughReplicas,
    NotLeaderOrFollower,
    RequestTimedOut,
    /// The producer gave up on a record (`delivery.timeout.ms`); librdkafka's `_MSG_TIMED_OUT`.
    MsgTimedOut,
    /// `OUT_OF_ORDER_SEQUENCE_NUMBER` (idempotent producer).
    OutOfOrderSequenceNumber,
    /// `INVALID_PRODUCER_EPOCH`: a batch from an epoch older than the partition has seen.
    InvalidProducerEpoch,
    /// `DUPLICATE_SEQUENCE_NUMBER`: what tansu 0.6 answers a retried idempotent batch it already
    /// has (Kafka answers success with the first write's offset). Seen on the real backend only.
    DuplicateSequenceNumber,
    /// Any other error a real client reported, by librdkafka's numeric code.
    Other(i32),
    /// `NOT_COORDINATOR`: the broker asked is not (or no longer) the group's coordinator.
    NotCoordinator,
    /// `NETWORK_EXCEPTION`: the connection broke while the request was in flight (the Java
    /// client's `DisconnectException`).
    NetworkException,
}

/// Why a client's connection ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DisconnectReason {
    /// A request got no answer within the client's request timeout (`request.timeout.ms`, the
    /// replica fetcher's `replica.socket.timeout.ms`): the Java `NetworkClient` closes the
    /// connection, failing every request in flight on it.
    RequestTimeout,
    /// The peer answered with a reset (it restarted and no longer knows the connection).
    Reset,
    /// TCP gave up after `tcp_retries2` (15) unanswered retransmissions (about 15 minutes).
    TcpRetriesExhausted,
    /// A new connection was not established within `socket.connection.setup.timeout.ms`.
    SetupTimeout,
    /// The consumer marked its group coordinator unknown (NOT_COORDINATOR, or no answer in
    /// time) and closed the coordinator connection to look for the new one.
    CoordinatorUnknown,
}

/// Why a member left or was removed from a group.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LeaveReason {
    /// No heartbeat within `session.timeout.ms`: the coordinator removed it.
    SessionTimeout,
    /// No `poll()` within `max.poll.interval.ms`: the client left the group by itself.
    PollTimeout,
    /// It did not rejoin a rebalance in time (the rebalance timeout is `max.poll.interval.ms`).
    RebalanceTimeout,
}

/// One record as a poll returned it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Polled {
    pub tp: Tp,
    pub offset: u64,
    pub key: Option<u64>,
    pub value: EventId,
}

/// One operation of a run. Variants are grouped by layer: the domain (orders, stock, effects),
/// the producer, the consumer and its group.
///
/// New variants go at the end: the history hash encodes each variant's position, so inserting one
/// in the middle would change the hash of every recorded run that never uses it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    // --- domain: setup and final state -------------------------------------------------------
    /// A product's stock when the run starts.
    StockInitialised { product: u32, stock: i64 },
    /// A product's stock when the run ends (read from the DB after the quiet period).
    StockFinal { product: u32, stock: i64 },

    // --- domain: orders (seed 001) --------------------------------------------------------------
    /// A client asked `OrderService` to create an order.
    OrderRequested { order: u64, user: u64, product: u32, qty: u32 },
    /// The order transaction committed: stock deducted under the row lock, order saved PENDING.
    /// `stock_after` is the product's stock the transaction wrote.
    OrderCommitted { order: u64, user: u64, product: u32, qty: u32, stock_after: i64 },
    /// The order transaction rolled back: not enough stock (`stock` is what it read).
    OrderRejected { order: u64, product: u32, qty: u32, stock: i64 },

    // --- domain: downstream effects ----------------------------------------------------------
    /// The product ranking (Redis ZINCRBY) was incremented because of `cause`.
    RankingIncremented { product: u32, by: u32, cause: EventId },
    /// The user's cart was deleted because of `cause`.
    CartDeleted { user: u64, cause: EventId },

    // --- producer --------------------------------------------------------------------------------
    /// The application handed a record to the producer (`send()`); the partitioner chose
    /// `partition`.
    Send { tp: Tp, key: Option<u64>, value: EventId },
    /// The delivery report said the record is written. `offset` is `None` with `acks=0`.
    SendOk { tp: Tp, key: Option<u64>, value: EventId, offset: Option<u64> },
    /// The delivery report said the send failed.
    SendFailed { tp: Tp, key: Option<u64>, value: EventId, error: ErrorCode },

    // --- consumer ------------------------------------------------------------------------------
    /// A `poll()` returned these records (empty polls are not recorded).
    Poll { group: GroupId, records: Vec<Polled> },
    /// The listener finished handling a record: `ok = false` when the handler failed.
    Processed { group: GroupId, record: Polled, ok: bool },
    /// An offset commit completed. `offsets` are next-offset-to-read. `error` is `None` on success.
    Commit { group: GroupId, generation: i32, offsets: Vec<(Tp, u64)>, error: Option<ErrorCode> },
    /// The consumer was given these partitions (`onPartitionsAssigned`).
    Assigned { group: GroupId, generation: i32, partitions: Vec<Tp> },
    /// The consumer gave these partitions up (`onPartitionsRevoked` / `onPartitionsLost`).
    Revoked { group: GroupId, partitions: Vec<Tp> },
    /// The consumer left its group by itself (recorded by the consumer).
    LeftGroup { group: GroupId, reason: LeaveReason },

    // --- processes ----------------------------------------------------------------------------------
    /// The process crashed: its memory is lost; what it stored durably (DB, Kafka) is kept.
    Crashed,

    // --- group coordinator -------------------------------------------------------------------------
    /// The coordinator started a rebalance of `group` (a member joined, left or went silent).
    RebalanceStarted { group: GroupId },
    /// A rebalance completed: a new generation with these members.
    GenerationStarted { group: GroupId, generation: i32, members: Vec<NodeId> },

    // --- appended later (variants are append-only: the history hash encodes their position) ----
    /// The coordinator removed `member` from the group (recorded by the coordinator; the member
    /// itself finds out later, from a failed heartbeat, commit or join).
    MemberRemoved { group: GroupId, member: NodeId, reason: LeaveReason },
    /// An idempotent consumer found the record's event in its processed table and acknowledged
    /// it without applying anything.
    DuplicateSkipped { group: GroupId, record: Polled },

    // --- payments (seed 001) ------------------------------------------------------------------
    /// A user's balance when the run starts.
    BalanceInitialised { user: u64, balance: i64 },
    /// A client asked `PaymentService` to pay for an order.
    PaymentRequested { order: u64, user: u64, amount: i64 },
    /// The payment transaction committed: balance deducted, order PAID, payment and shipping rows.
    PaymentCommitted { order: u64, user: u64, amount: i64, balance_after: i64 },
    /// The payment transaction rolled back.
    PaymentRejected { order: u64, user: u64, amount: i64, reason: PaymentRejection },
    /// The compensation committed: the order's stock restored and the order CANCELLED.
    OrderCancelled { order: u64, product: u32, qty: u32, stock_after: i64 },
    /// The external data platform received the payment (`DataPlatformService`).
    PlatformSent { cause: EventId },

    // --- first-come-first-served coupons (seeds 002, 003) --------------------------------------
    /// A coupon's quantity when the run starts.
    CouponInitialised { coupon: u32, quantity: u32 },
    /// A client asked for coupon `coupon`.
    CouponRequested { request: u64, coupon: u32, user: u64 },
    /// The API's Redis set already held this user for this coupon: the request was refused
    /// before it was sent.
    CouponRequestRefused { request: u64, coupon: u32, user: u64 },
    /// The issuer's transaction inserted the user's coupon; `issued` is the coupon's count after.
    CouponIssued { request: u64, coupon: u32, user: u64, issued: u32 },
    /// The issuer's transaction rolled back: sold out, or the unique constraint on (coupon, user).
    CouponNotIssued { request: u64, coupon: u32, user: u64, sold_out: bool },

    // --- transactional outbox (seed 002) and the end of a run --------------------------------
    /// The business transaction also inserted the event's outbox row (status INIT).
    OutboxInserted { event: EventId },
    /// The outbox's own consumer marked the event's row PUBLISHED.
    OutboxMarked { event: EventId },
    /// At the end of the run, the event's outbox row is still INIT.
    OutboxPending { event: EventId },
    /// At the end of the run, `group` had `lag` records of `tp` left to commit.
    FinalLag { group: GroupId, tp: Tp, lag: u64 },

    // --- order-completed fan-out (seed 000) ----------------------------------------------------
    /// `PointConsumer` credited the user's points for the order.
    PointsAdded { user: u64, points: i64, cause: EventId },
    /// `CouponConsumer` marked the coupon the order used as used.
    CouponUsed { user: u64, cause: EventId },
    /// `EmailConsumer` sent the order confirmation e-mail.
    EmailSent { user: u64, cause: EventId },

    // --- waiting queue (seed 002) --------------------------------------------------------------
    /// The activator group's promise: at most `tokens` activations per `interval_us`.
    QueueRateLimit { group: GroupId, tokens: u32, interval_us: Micros },
    /// The queue API accepted a user into the concert's queue with this token.
    QueueEntered { token: u64, concert: u32, user: u64 },
    /// The activator enabled the token: the user may enter.
    TokenActivated { group: GroupId, token: u64, concert: u32, user: u64 },

    // Faults.
    /// Fault number `fault` of the run's schedule started (recorded by the process it hits, or
    /// by `workload` for the DB and for a consumer group's platform).
    FaultStarted { fault: u16, kind: FaultKind },
    /// Fault number `fault` ended (a crashed process restarts: memory empty, DB as committed).
    FaultEnded { fault: u16, kind: FaultKind },
    /// A partition's leader changed: `leader` leads from `epoch` on (None: offline, no replica
    /// can lead). `log_end` is the new leader's log end; followers truncate to it.
    LeaderElected { tp: Tp, leader: Option<NodeId>, epoch: u32, log_end: u64, unclean: bool },
    /// A broker restarted with its log cut back to what it had flushed.
    LogRecovered { tp: Tp, log_end: u64, lost: u64 },
    /// The consumer's position was beyond the leader's log end (OFFSET_OUT_OF_RANGE): it moved
    /// to `to` as `auto.offset.reset` says.
    OffsetReset { group: GroupId, tp: Tp, from: u64, to: u64 },
    /// A partition's in-sync replicas changed (a follower fell behind, caught up, or was fenced).
    IsrChanged { tp: Tp, isr: Vec<NodeId> },

    // --- the network and the control plane (appended) ------------------------------------------
    /// A segment this process sent to `peer` was dropped (a partition, packet loss, a machine
    /// that was down) and got through on TCP retransmission number `retransmissions`, `late_us`
    /// after it was first sent; `queued` messages had waited behind it (TCP delivers in order).
    Retransmitted { peer: NodeId, retransmissions: u32, late_us: Micros, queued: u32 },
    /// This client's connection to `peer` ended; `in_flight` requests on it failed.
    /// `coordinator` marks a consumer's group coordinator connection.
    Disconnected { peer: NodeId, reason: DisconnectReason, in_flight: u32, coordinator: bool },
    /// This client's new connection to `peer` is established: the handshake got through after
    /// `syns` SYN transmissions, `after_us` after the client started connecting.
    Connected { peer: NodeId, syns: u32, after_us: Micros, coordinator: bool },
    /// The controller fenced `broker`: no heartbeat reached it within
    /// `broker.session.timeout.ms` (the broker crashed, or is cut off from the controller).
    BrokerFenced { broker: NodeId },
    /// The controller unfenced `broker`: its heartbeats arrive again.
    BrokerUnfenced { broker: NodeId },
    /// Where `group`'s coordinator is: recorded when the run starts and whenever the leadership
    /// of the group's `__consumer_offsets` partition moves (`None`: no replica can lead, and
    /// the group has no coordinator: COORDINATOR_NOT_AVAILABLE).
    Coordinator { group: GroupId, coordinator: Option<NodeId> },
    /// The group's error handler gave `record` up and parked it on a dead-letter topic: the
    /// broker acknowledged it at `to`, offset `offset` (Spring's `DeadLetterPublishingRecoverer`).
    /// The record is not processed, but it is not lost either.
    DeadLettered { group: GroupId, record: Box<Polled>, to: Tp, offset: Option<u64> },
    /// This process's connection to `peer` closed while a segment it sent was still dropped
    /// and waiting for retransmission (first sent `late_us` ago, retransmitted
    /// `retransmissions` times): it never got through, and neither did the `queued` messages
    /// behind it (a lost request, or a lost answer the client gave up waiting for).
    Discarded { peer: NodeId, retransmissions: u32, late_us: Micros, queued: u32 },

    // --- workflows (issue 15): what a workflow file's handlers do, in the terms of its own
    // declarations; `handler` indexes the header's `handlers` ---------------------------------
    /// The workload sent request `id` (sequential per request type) to the handler of its type.
    Requested { handler: u16, id: u64 },
    /// The handler's transaction for input `id` committed; `event` is the event it publishes,
    /// if it publishes one.
    TxnCommitted { handler: u16, id: u64, event: Option<EventId> },
    /// The handler's transaction for input `id` rolled back (a rejection or an exception);
    /// `event` is the event it would have published, when that event's subject depends on the
    /// input alone.
    TxnRolledBack { handler: u16, id: u64, event: Option<EventId> },
    /// A listener of `group` took effect because of `cause`: step `step` of its handler (a
    /// committed write, a cache command or an external call). One effect per (group, event,
    /// step) is what effect-once counts.
    Effect { group: GroupId, cause: EventId, handler: u16, step: u16 },
    /// Row `row` breaks the workflow's declared invariant `invariant` (an index into the
    /// header's `invariants`): an `always` one right after the commit that wrote it, an
    /// `eventually` one at the end of the run.
    InvariantBroken { invariant: u16, row: i64 },
    /// Request `id` of request type `handler`, whose handler has no transaction, was refused
    /// by a guard (the client gets an error; nothing was written).
    Refused { handler: u16, id: u64 },
    /// A listener of `group` rejected `cause` at step `step` of its handler (a guard with
    /// `otherwise = "reject"`): its transaction rolled back, and the record is acknowledged.
    ListenerRejected { group: GroupId, cause: EventId, handler: u16, step: u16 },
}

impl Op {
    /// The event that this committed business fact must publish, if it is such a fact.
    pub fn expected_event(&self) -> Option<EventId> {
        match self {
            Op::OrderCommitted { order, .. } => Some(EventId::order_created(*order)),
            Op::PaymentCommitted { order, .. } => Some(EventId::payment_completed(*order)),
            Op::TxnCommitted { event, .. } => *event,
            _ => None,
        }
    }

    /// The event that this rolled-back business fact would have published, if it is one.
    pub fn rolled_back_event(&self) -> Option<EventId> {
        match self {
            Op::OrderRejected { order, .. } => Some(EventId::order_created(*order)),
            Op::PaymentRejected { order, .. } => Some(EventId::payment_completed(*order)),
            Op::TxnRolledBack { event, .. } => *event,
            _ => None,
        }
    }

    /// The event that caused this downstream effect, if it is an effect.
    pub fn effect_cause(&self) -> Option<EventId> {
        match self {
            Op::RankingIncremented { cause, .. }
            | Op::CartDeleted { cause, .. }
            | Op::PlatformSent { cause }
            | Op::PointsAdded { cause, .. }
            | Op::CouponUsed { cause, .. }
            | Op::EmailSent { cause, .. }
            | Op::Effect { cause, .. } => Some(*cause),
            _ => None,
        }
    }
}

/// One entry of a history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub time: Micros,
    pub process: NodeId,
    pub op: Op,
}

/// A topic as the header names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: u32,
}

/// A consumer group as the header names it, with the topics it subscribes to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    pub name: String,
    pub topics: Vec<TopicId>,
    /// Whether the design claims this group applies each event's effect exactly once (an
    /// outbox marker, whose second mark changes nothing, makes no such claim).
    pub effect_once: bool,
}

/// A workflow's declared invariant as the header names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvariantInfo {
    pub name: String,
    /// The table whose rows it judges (empty for one over the history's messages).
    pub table: String,
    /// Its condition, as written.
    pub condition: String,
    /// How the checkers judge it.
    #[serde(default)]
    pub judged: Judged,
}

/// How a workflow's declared invariant is judged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Judged {
    /// From the run's `InvariantBroken` entries: a condition on rows, or a uniqueness.
    #[default]
    Rows,
    /// Handler `handler` (a listener) takes effect on the records of event `event` that share
    /// a key in the order the application sent them (their first `Send` entries).
    Fifo { handler: u16, event: EventKind },
    /// Each group running handler `handler` takes at most `max` effects within any `per_us`.
    Rate { handler: u16, max: u32, per_us: Micros },
}

/// Names and the shape of the run, so that entries can stay numeric.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub scenario: String,
    pub seed: u64,
    /// `NodeId` -> process name (`order-service-0`, `broker-1`, `workload`, ...).
    pub nodes: Vec<String>,
    pub topics: Vec<TopicInfo>,
    pub groups: Vec<GroupInfo>,
    /// `EventKind` -> the event kind's declaration.
    pub events: Vec<EventInfo>,
    /// A workflow's handlers, by the `handler` of its entries: its request types' names, then
    /// its listeners' (empty for the compiled-in services).
    pub handlers: Vec<String>,
    /// A workflow's declared invariants, by the `invariant` of `InvariantBroken` entries. An
    /// invariant declared here is judged from those entries, under its name (a declared
    /// `no-oversell` replaces the compiled-in checker of that name).
    pub invariants: Vec<InvariantInfo>,
    /// When the workload stopped sending requests (and faults stop, once there are faults).
    pub quiet_from: Micros,
    /// When the run ended.
    pub end: Micros,
}

/// A whole run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub header: Header,
    pub entries: Vec<Entry>,
}

impl History {
    pub fn new(header: Header) -> Self {
        Self { header, entries: Vec::new() }
    }

    #[inline]
    pub fn push(&mut self, time: Micros, process: NodeId, op: Op) {
        self.entries.push(Entry { time, process, op });
    }

    pub fn node_name(&self, id: NodeId) -> &str {
        self.header.nodes.get(id.0 as usize).map(String::as_str).unwrap_or("?")
    }

    pub fn topic_name(&self, id: TopicId) -> &str {
        self.header.topics.get(id.0 as usize).map(|t| t.name.as_str()).unwrap_or("?")
    }

    pub fn group_name(&self, id: GroupId) -> &str {
        self.header.groups.get(id.0 as usize).map(|g| g.name.as_str()).unwrap_or("?")
    }

    /// An event kind's name (`order-created`), or `event-<n>` for a kind the header does not
    /// declare.
    pub fn event_name(&self, kind: EventKind) -> std::borrow::Cow<'_, str> {
        match self.header.events.get(kind.0 as usize) {
            Some(e) => std::borrow::Cow::Borrowed(e.name.as_str()),
            None => std::borrow::Cow::Owned(format!("event-{}", kind.0)),
        }
    }

    /// An event in short: `order-created#7`.
    pub fn event_label(&self, e: EventId) -> String {
        format!("{}#{}", self.event_name(e.kind()), e.subject())
    }

    /// A workflow handler's name (`create-order`), or `handler-<n>`.
    pub fn handler_name(&self, handler: u16) -> std::borrow::Cow<'_, str> {
        match self.header.handlers.get(handler as usize) {
            Some(h) => std::borrow::Cow::Borrowed(h.as_str()),
            None => std::borrow::Cow::Owned(format!("handler-{handler}")),
        }
    }

    /// Whether events of `kind` announce a committed DB fact.
    pub fn announces_fact(&self, kind: EventKind) -> bool {
        self.header.events.get(kind.0 as usize).is_some_and(|e| e.announces_fact)
    }

    /// The earlier event whose effects `e`'s effects depend on (a payment's on its order's).
    pub fn depends_on(&self, e: EventId) -> Option<EventId> {
        let dep = self.header.events.get(e.kind().0 as usize)?.depends_on?;
        Some(EventId::new(dep, e.subject()))
    }

    /// Groups that subscribe to `topic`.
    pub fn subscribers(&self, topic: TopicId) -> impl Iterator<Item = GroupId> + '_ {
        self.header
            .groups
            .iter()
            .enumerate()
            .filter(move |(_, g)| g.topics.contains(&topic))
            .map(|(i, _)| GroupId(i as u16))
    }

    /// A stable 64-bit hash of the whole history (header and entries).
    ///
    /// The bytes hashed are the history's postcard encoding (a wire format that postcard 1.x keeps
    /// stable) fed to FNV-1a 64; both are pinned here so that a seed's hash means the same thing
    /// across releases.
    pub fn hash(&self) -> u64 {
        let mut h = crate::stable_hash::Fnv1a::new();
        // Serialising into a hasher cannot fail: every type here is plain data.
        postcard::to_io(self, &mut h).expect("history serialises");
        h.finish()
    }

    /// A one-line, human-readable rendering of entry `i`, for counterexamples and stories.
    pub fn describe(&self, i: usize) -> String {
        crate::describe::describe(self, i)
    }
}

#[cfg(test)]
mod size {
    /// A run keeps every entry in memory (docs/scenario-format.md, "Limits"): a variant with a
    /// large payload boxes it rather than growing every entry.
    #[test]
    fn an_entry_stays_72_bytes() {
        assert_eq!(std::mem::size_of::<super::Entry>(), 72);
        assert_eq!(std::mem::size_of::<super::Op>(), 56);
    }
}
