//! The consumer client (`KafkaConsumer`) and the listener container around it (Spring's
//! `KafkaMessageListenerContainer`): group membership, fetching, `poll()`, commits, and the
//! application thread that hands records to a listener one at a time.
//!
//! Java client behaviour reproduced here:
//! - the application rejoins a rebalance only from inside `poll()`: a consumer busy processing a
//!   batch keeps the group waiting (up to the rebalance timeout, `max.poll.interval.ms`);
//! - the heartbeat thread sends heartbeats every `heartbeat.interval.ms`, and leaves the group
//!   when the application has not called `poll()` for `max.poll.interval.ms`;
//! - `enable.auto.commit` commits, inside `poll()`, the positions returned by earlier polls once
//!   `auto.commit.interval.ms` has passed, and synchronously before rejoining (`onJoinPrepare`);
//! - eager protocols (range) revoke every partition before rejoining; cooperative-sticky revokes
//!   only what moves and rejoins once more;
//! - a commit from a consumer that is not a member of the current generation fails.

use super::{CoordinatorRequest, Msg, TpMap};
use crate::world::{Ev, World};
use evsim_model::actor::Command;
use evsim_model::event::Message;
use evsim_model::history::{ErrorCode, GroupId, Micros, NodeId, Polled, TopicId, Tp};
use evsim_model::registry::AnyListener;
use evsim_model::scenario::{AssignmentStrategy, ConsumerSpec};
use std::collections::{BTreeMap, VecDeque};

mod membership;
mod poll;

/// The consumer's `request.timeout.ms` for coordinator requests (Java default 30000).
const COORDINATOR_REQUEST_TIMEOUT_US: Micros = 30_000_000;

/// The container's `poll()` timeout (Spring's `ContainerProperties.pollTimeout` default).
pub const POLL_TIMEOUT_US: Micros = 5_000_000;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Membership {
    /// Not in the group (never joined, left, or fenced): the next `poll()` joins.
    Unjoined,
    /// Committing synchronously before rejoining (auto-commit's `onJoinPrepare`).
    PreparingJoin,
    Joining,
    Syncing,
    /// Assigned; fetching committed offsets for new partitions.
    AwaitingOffsets,
    Stable,
}

#[derive(Debug)]
enum App {
    /// Inside `poll()`, waiting for records or for the group.
    InPoll,
    /// Handling the records of the last poll (`Consumer::batch`), one at a time.
    Processing { next: usize },
    /// Waiting for a synchronous commit.
    Committing,
    /// Between polls, by design (`pause_between_polls_ms`).
    Paused,
    /// Waiting for the dead-letter send of a record that exhausted its retries; `more` says
    /// whether records of the batch follow it.
    DeadLettering { more: bool },
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum CommitKind {
    /// The container's commit after a batch (`commitSync`).
    AfterBatch,
    /// Auto-commit inside `poll()` (`commitAsync`).
    Auto,
    /// Auto-commit before rejoining (`commitSync` in `onJoinPrepare`).
    BeforeJoin,
    /// commit-before-process: the poll's positions, before the listener sees the records.
    BeforeProcess,
    /// librdkafka's auto-commit: the stored offsets, from a background timer.
    Background,
}

/// Attempts Spring's `DefaultErrorHandler` gives a failing record (1 + `FixedBackOff(0, 9)`).
pub const DEFAULT_ERROR_HANDLER_ATTEMPTS: u32 = 10;

/// One consumer instance with its listener.
#[derive(Debug)]
pub struct Consumer {
    /// False once the process crashed: events addressed to it are dropped.
    pub alive: bool,
    /// A paused process (a long GC pause) does nothing before this time.
    pub paused_until: Micros,
    pub node: NodeId,
    pub group: GroupId,
    pub topics: Vec<TopicId>,
    pub spec: ConsumerSpec,
    /// This instance's `group.instance.id` (static membership), if the group sets one.
    pub instance_id: Option<String>,
    member_id: Option<String>,
    generation: i32,
    membership: Membership,
    rejoin_needed: bool,
    assigned: Vec<Tp>,
    /// Next offset `poll()` returns, per assigned partition.
    positions: TpMap,
    /// Next offset to fetch.
    fetch_positions: TpMap,
    buffer: VecDeque<(Tp, u64, Message)>,
    fetch_in_flight: Vec<Option<u64>>,
    next_fetch: u64,
    heartbeat_epoch: u32,
    app: App,
    app_epoch: u32,
    /// When the application last called `poll()`.
    last_poll: Micros,
    /// One pending `PollIntervalCheck` / `PollTimeout` at a time: each re-arms itself from
    /// `last_poll` when it fires early, so the queue holds no stale timers.
    poll_check_armed: bool,
    poll_timeout_armed: bool,
    next_auto_commit: Micros,
    /// The records of the last poll.
    batch: Vec<(Polled, Message)>,
    /// Offsets (next to read) acknowledged by the listener since the last commit, per partition.
    acked: Vec<(Tp, u64)>,
    /// Failed attempts per record still being retried: (partition, offset, attempts).
    failures: Vec<(Tp, u64, u32)>,
    /// With retry-then-dlq: the dead-letter publisher's producer and the dead-letter topic.
    pub dlq: Option<(u16, TopicId)>,
    next_dead_letter: u64,
    /// The dead-letter send under way: (token, record).
    dead_letter: Option<(u64, Polled)>,
    commits: BTreeMap<u64, CommitKind>,
    next_commit: u64,
    /// Bumped by every JoinGroup, SyncGroup and OffsetFetch sent (to tell a timeout of the
    /// request still awaited from a stale one).
    coordinator_epoch: u32,
    listener: AnyListener,
    commands: Vec<Command>,
}

impl Consumer {
    pub fn new(node: NodeId, group: GroupId, topics: Vec<TopicId>, spec: ConsumerSpec) -> Self {
        let listener = AnyListener::new(spec.kind);
        Self {
            alive: true,
            paused_until: 0,
            node,
            group,
            topics,
            spec,
            instance_id: None,
            member_id: None,
            generation: -1,
            membership: Membership::Unjoined,
            rejoin_needed: false,
            assigned: Vec::new(),
            positions: TpMap::default(),
            fetch_positions: TpMap::default(),
            buffer: VecDeque::new(),
            fetch_in_flight: Vec::new(),
            next_fetch: 0,
            heartbeat_epoch: 0,
            app: App::InPoll,
            app_epoch: 0,
            last_poll: 0,
            poll_check_armed: false,
            poll_timeout_armed: false,
            next_auto_commit: 0,
            batch: Vec::new(),
            acked: Vec::new(),
            failures: Vec::new(),
            dlq: None,
            next_dead_letter: 0,
            dead_letter: None,
            commits: BTreeMap::new(),
            next_commit: 0,
            coordinator_epoch: 0,
            listener,
            commands: Vec::new(),
        }
    }

    /// The listener acknowledged `record`: the next commit may cover it.
    fn ack(&mut self, record: Polled) {
        match self.acked.iter_mut().find(|(tp, _)| *tp == record.tp) {
            Some((_, o)) => *o = (*o).max(record.offset + 1),
            None => self.acked.push((record.tp, record.offset + 1)),
        }
    }

    /// The error a commit fails with before it is sent, when the member is not in an active
    /// generation: CommitFailedException (no member) or RebalanceInProgressException.
    fn local_commit_error(&self) -> ErrorCode {
        if self.member_id.is_none() { ErrorCode::UnknownMemberId } else { ErrorCode::RebalanceInProgress }
    }

    /// Whether `poll()` may return records now: when stable, and, with the cooperative protocol
    /// (KIP-429), also while rejoining, from the partitions the member still owns. Eager
    /// members own nothing while they rejoin.
    fn consuming(&self) -> bool {
        match self.membership {
            Membership::Stable => true,
            Membership::Joining | Membership::Syncing => {
                self.spec.consumer.partition_assignment_strategy == AssignmentStrategy::CooperativeSticky
            }
            _ => false,
        }
    }

    /// The fetch in flight to `broker`, if any.
    pub(crate) fn fetch_in_flight_to(&self, broker: u16) -> Option<u64> {
        self.fetch_in_flight.get(broker as usize).copied().flatten()
    }

    /// The generation a JoinGroup of this member carries (-1 before its first assignment).
    pub(crate) fn generation_for_join(&self) -> i32 {
        self.generation
    }

    fn reset_generation(&mut self, forget_member: bool) {
        self.generation = -1;
        if forget_member {
            self.member_id = None;
        }
        self.membership = Membership::Unjoined;
        self.heartbeat_epoch += 1;
    }
}

impl World {
    pub(crate) fn consumer_start(&mut self, c: u16) {
        let brokers = self.broker_nodes.len();
        let now = self.now();
        let cons = &mut self.consumers[c as usize];
        cons.fetch_in_flight = vec![None; brokers];
        cons.next_auto_commit = now + cons.spec.consumer.auto_commit_interval_ms * 1_000;
        if cons.spec.consumer.enable_auto_commit && cons.spec.consumer.enable_auto_offset_store {
            let at = cons.next_auto_commit;
            self.q.schedule_at(at, crate::world::Ev::AutoCommitTick { consumer: c });
        }
        self.app_poll(c);
    }
    pub(super) fn send_to_coordinator(&mut self, c: u16, req: CoordinatorRequest) {
        let node = self.consumers[c as usize].node;
        let group = self.consumers[c as usize].group.0 as usize;
        let host = self.broker_nodes[self.groups[group].host as usize];
        // With faults a request or its answer may be lost: the client gives up on it after
        // its `request.timeout.ms` (30 s) and tries again (a heartbeat is simply sent again at
        // the next tick).
        let timeout = if self.faulty {
            let at = self.now() + COORDINATOR_REQUEST_TIMEOUT_US;
            match &req {
                CoordinatorRequest::JoinGroup { .. }
                | CoordinatorRequest::SyncGroup { .. }
                | CoordinatorRequest::OffsetFetch { .. } => {
                    let cons = &mut self.consumers[c as usize];
                    cons.coordinator_epoch += 1;
                    Some((at, Ev::CoordinatorTimeout { consumer: c, epoch: cons.coordinator_epoch }))
                }
                CoordinatorRequest::OffsetCommit { commit, generation, .. } => {
                    Some((at, Ev::CommitTimeout { consumer: c, commit: *commit, generation: *generation }))
                }
                CoordinatorRequest::Heartbeat { .. } | CoordinatorRequest::LeaveGroup { .. } => None,
            }
        } else {
            None
        };
        self.send_msg(node, host, Msg::ToCoordinator(req));
        if let Some((at, ev)) = timeout {
            self.q.schedule_at(at, ev);
        }
    }

    /// A JoinGroup, SyncGroup or OffsetFetch got no answer in time: start the join over (the
    /// member id is kept; the coordinator knows it if it is still a member).
    pub(crate) fn coordinator_timeout(&mut self, c: u16, epoch: u32) {
        let cons = &mut self.consumers[c as usize];
        let waiting =
            matches!(cons.membership, Membership::Joining | Membership::Syncing | Membership::AwaitingOffsets);
        if cons.coordinator_epoch != epoch || !waiting {
            return;
        }
        cons.membership = Membership::Unjoined;
        self.poll_step(c);
    }

    /// An OffsetCommit got no answer in time: it failed (the Java client's TimeoutException).
    pub(crate) fn commit_timeout(&mut self, c: u16, commit: u64, generation: i32) {
        if self.consumers[c as usize].commits.contains_key(&commit) {
            self.commit_done(c, commit, generation, Vec::new(), Some(ErrorCode::RequestTimedOut), false);
        }
    }
}
