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
//! - a commit from a consumer that is not a member of the current generation fails;
//! - the group coordinator is found with FindCoordinator, and looked for again when it answers
//!   NOT_COORDINATOR, when a request to it times out, or when no heartbeat answer came within
//!   `session.timeout.ms`; requests to it wait while it is unknown and fail after
//!   `request.timeout.ms`; a synchronous commit retries retriable errors until
//!   `default.api.timeout.ms` (60 s).

use super::{CoordinatorRequest, Msg, TpMap};
use crate::net::{Channel, Conn};
use crate::world::{Ev, World};
use evsim_model::actor::Command;
use evsim_model::event::Message;
use evsim_model::history::{DisconnectReason, ErrorCode, GroupId, Micros, NodeId, Op, Polled, TopicId, Tp};
use evsim_model::registry::AnyListener;
use evsim_model::scenario::{AssignmentStrategy, ConsumerSpec};
use std::collections::{BTreeMap, VecDeque};

mod membership;
mod poll;

/// What a JoinGroup may take beyond the rebalance timeout before the client gives up on it
/// (the Java client's `JOIN_GROUP_TIMEOUT_LAPSE`).
const JOIN_GROUP_TIMEOUT_LAPSE_US: Micros = 5_000_000;

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

/// A commit the consumer waits for.
#[derive(Debug)]
struct PendingCommit {
    kind: CommitKind,
    offsets: Vec<(Tp, u64)>,
    /// A synchronous commit retries retriable errors until then.
    deadline: Micros,
    /// Sends so far (a timeout of an earlier send is stale).
    attempt: u32,
    /// Sent to the coordinator and not answered yet (not waiting for the coordinator or for a
    /// retry).
    in_flight: bool,
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

impl CommitKind {
    /// `commitSync`: retries retriable errors until `default.api.timeout.ms`.
    fn synchronous(self) -> bool {
        matches!(self, CommitKind::AfterBatch | CommitKind::BeforeJoin | CommitKind::BeforeProcess)
    }
}

/// Whether `new` replaces `queued` in the queue of requests waiting for the coordinator: a
/// retry of the same commit, or another JoinGroup, SyncGroup or OffsetFetch (one of each is
/// live at a time).
fn supersedes(new: &CoordinatorRequest, queued: &CoordinatorRequest) -> bool {
    use CoordinatorRequest as R;
    match (new, queued) {
        (R::OffsetCommit { commit: a, .. }, R::OffsetCommit { commit: b, .. }) => a == b,
        (R::JoinGroup { .. }, R::JoinGroup { .. })
        | (R::SyncGroup { .. }, R::SyncGroup { .. })
        | (R::OffsetFetch { .. }, R::OffsetFetch { .. }) => true,
        _ => false,
    }
}

/// Whether a coordinator request failing with `e` means the coordinator must be looked for
/// again (and the request retried there).
fn coordinator_error(e: ErrorCode) -> bool {
    matches!(e, ErrorCode::NotCoordinator | ErrorCode::RequestTimedOut | ErrorCode::NetworkException)
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
    /// A workflow listener that publishes: its group's `KafkaTemplate` (a producer index).
    pub template: Option<u16>,
    next_dead_letter: u64,
    /// The dead-letter send under way: (token, record).
    dead_letter: Option<(u64, Polled)>,
    commits: BTreeMap<u64, PendingCommit>,
    next_commit: u64,
    /// Bumped by every JoinGroup, SyncGroup and OffsetFetch sent (to tell a timeout of the
    /// request still awaited from a stale one).
    coordinator_epoch: u32,
    /// The broker this consumer takes for its group's coordinator; `None` while unknown.
    coordinator: Option<u16>,
    /// Requests waiting for the coordinator to be found (each is dropped if it timed out).
    coordinator_queue: Vec<CoordinatorRequest>,
    /// A FindCoordinator is under way (or its retry is scheduled).
    finding: bool,
    /// The broker the FindCoordinator in flight went to (`None` while its retry waits).
    find_broker: Option<u16>,
    /// When the heartbeat still waiting for its answer was sent.
    heartbeat_sent: Option<Micros>,
    /// Bumped by every FindCoordinator sent (to tell a stale timeout).
    find_epoch: u32,
    /// The broker the next FindCoordinator goes to (round-robin over the brokers).
    find_cursor: u16,
    /// When a heartbeat (or join) answer last came from the coordinator.
    last_coordinator_answer: Micros,
    listener: AnyListener,
    commands: Vec<Command>,
}

impl Consumer {
    /// A consumer instance of `spec`'s group; `workflow_listener`: the workflow handler its
    /// listener runs instead of the compiled-in one, if any.
    pub fn new(
        node: NodeId,
        group: GroupId,
        topics: Vec<TopicId>,
        spec: ConsumerSpec,
        workflow_listener: Option<u16>,
    ) -> Self {
        let listener = match workflow_listener {
            Some(handler) => AnyListener::Workflow(evsim_model::workflow::service::WorkflowListener { handler }),
            None => AnyListener::new(spec.kind),
        };
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
            template: None,
            next_dead_letter: 0,
            dead_letter: None,
            commits: BTreeMap::new(),
            next_commit: 0,
            coordinator_epoch: 0,
            coordinator: None,
            coordinator_queue: Vec::new(),
            finding: false,
            find_broker: None,
            heartbeat_sent: None,
            find_epoch: 0,
            find_cursor: 0,
            last_coordinator_answer: 0,
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
    /// Send `req` to the group coordinator, or queue it until the coordinator is found. With
    /// faults a request or its answer may be lost: the client gives up on it after its
    /// `request.timeout.ms` (a JoinGroup after the rebalance timeout and 5 s more), and a
    /// heartbeat is simply sent again at the next tick.
    pub(super) fn send_to_coordinator(&mut self, c: u16, req: CoordinatorRequest) {
        let now = self.now();
        let cons = &mut self.consumers[c as usize];
        let request_timeout = cons.spec.consumer.request_timeout_ms * 1_000;
        let timeout = if self.faulty {
            match &req {
                CoordinatorRequest::JoinGroup { .. } => {
                    let rebalance = cons.spec.consumer.max_poll_interval_ms * 1_000;
                    cons.coordinator_epoch += 1;
                    let at = now + request_timeout.max(rebalance + JOIN_GROUP_TIMEOUT_LAPSE_US);
                    Some((at, Ev::CoordinatorTimeout { consumer: c, epoch: cons.coordinator_epoch }))
                }
                CoordinatorRequest::SyncGroup { .. } | CoordinatorRequest::OffsetFetch { .. } => {
                    cons.coordinator_epoch += 1;
                    Some((now + request_timeout, Ev::CoordinatorTimeout { consumer: c, epoch: cons.coordinator_epoch }))
                }
                CoordinatorRequest::OffsetCommit { commit, .. } => {
                    let attempt = cons.commits.get(commit).map_or(0, |p| p.attempt);
                    Some((now + request_timeout, Ev::CommitTimeout { consumer: c, commit: *commit, attempt }))
                }
                CoordinatorRequest::Heartbeat { .. } | CoordinatorRequest::LeaveGroup { .. } => None,
            }
        } else {
            None
        };
        if let Some((at, ev)) = timeout {
            self.q.schedule_at(at, ev);
        }
        let cons = &mut self.consumers[c as usize];
        match cons.coordinator {
            Some(broker) => {
                if let CoordinatorRequest::OffsetCommit { commit, .. } = &req
                    && let Some(p) = cons.commits.get_mut(commit)
                {
                    p.in_flight = true;
                }
                let (from, to) = (cons.node, self.broker_nodes[broker as usize]);
                self.send_msg(from, to, Msg::ToCoordinator { broker, req });
            }
            // Nobody to heartbeat to; the heartbeat thread looks for the coordinator instead.
            None if matches!(req, CoordinatorRequest::Heartbeat { .. }) => self.find_coordinator(c),
            None => {
                // At most one request of each kind waits (a retry replaces what it retries).
                cons.coordinator_queue.retain(|queued| !supersedes(&req, queued));
                cons.coordinator_queue.push(req);
                self.find_coordinator(c);
            }
        }
    }

    /// Ask a broker which one coordinates the group (FindCoordinator), unless already asking.
    /// The Java client asks its least loaded node; the simulator goes round the brokers,
    /// preferring one it is connected to.
    pub(super) fn find_coordinator(&mut self, c: u16) {
        let cons = &self.consumers[c as usize];
        if cons.finding || cons.coordinator.is_some() {
            return;
        }
        let n = self.broker_nodes.len() as u16;
        let node = cons.node;
        let start = cons.find_cursor;
        let order = (0..n).map(|k| (start + k) % n);
        let broker = order
            .clone()
            .find(|&b| self.net.established(self.data_conn(node, self.broker_nodes[b as usize])))
            .unwrap_or(start % n);
        let cons = &mut self.consumers[c as usize];
        cons.finding = true;
        cons.find_broker = Some(broker);
        cons.find_epoch += 1;
        cons.find_cursor = (broker + 1) % n;
        let (epoch, timeout) = (cons.find_epoch, cons.spec.consumer.request_timeout_ms * 1_000);
        self.send_msg(node, self.broker_nodes[broker as usize], Msg::FindCoordinator { consumer: c, broker });
        if self.faulty {
            let at = self.now() + timeout;
            self.q.schedule_at(at, Ev::FindCoordinatorTimeout { consumer: c, epoch });
        }
    }

    /// A broker answered FindCoordinator: send what waited for the coordinator, or look again
    /// after `retry.backoff.ms` (COORDINATOR_NOT_AVAILABLE).
    pub(crate) fn consumer_found_coordinator(&mut self, c: u16, asked: u16, coordinator: Option<u16>) {
        let now = self.now();
        let cons = &mut self.consumers[c as usize];
        if !cons.finding || cons.coordinator.is_some() || cons.find_broker != Some(asked) {
            return; // an answer to a FindCoordinator given up on
        }
        cons.find_epoch += 1;
        cons.find_broker = None;
        let Some(broker) = coordinator else {
            let epoch = cons.find_epoch;
            let at = now + cons.spec.consumer.retry_backoff_ms * 1_000;
            self.q.schedule_at(at, Ev::FindCoordinatorRetry { consumer: c, epoch });
            return;
        };
        cons.finding = false;
        cons.coordinator = Some(broker);
        cons.last_coordinator_answer = now;
        let queued = std::mem::take(&mut cons.coordinator_queue);
        for req in queued {
            // What timed out while it waited is not sent (the Java client drops expired
            // unsent requests).
            let cons = &self.consumers[c as usize];
            let live = match &req {
                CoordinatorRequest::OffsetCommit { commit, .. } => cons.commits.contains_key(commit),
                CoordinatorRequest::JoinGroup { .. } => cons.membership == Membership::Joining,
                CoordinatorRequest::SyncGroup { .. } => cons.membership == Membership::Syncing,
                CoordinatorRequest::OffsetFetch { .. } => cons.membership == Membership::AwaitingOffsets,
                CoordinatorRequest::Heartbeat { .. } | CoordinatorRequest::LeaveGroup { .. } => true,
            };
            if live {
                let cons = &mut self.consumers[c as usize];
                if let CoordinatorRequest::OffsetCommit { commit, .. } = &req
                    && let Some(p) = cons.commits.get_mut(commit)
                {
                    p.in_flight = true;
                }
                let (from, to) = (cons.node, self.broker_nodes[broker as usize]);
                self.send_msg(from, to, Msg::ToCoordinator { broker, req });
            }
        }
    }

    /// A FindCoordinator got no answer in time: close that connection (which fails it and
    /// everything else in flight on it) and ask the next broker after `retry.backoff.ms`.
    pub(crate) fn find_coordinator_timeout(&mut self, c: u16, epoch: u32) {
        let cons = &self.consumers[c as usize];
        let Some(asked) = cons.find_broker.filter(|_| cons.finding && cons.find_epoch == epoch) else {
            return;
        };
        let conn = self.data_conn(cons.node, self.broker_nodes[asked as usize]);
        self.close_connection(conn);
        self.client_disconnected(conn, DisconnectReason::RequestTimeout, None);
    }

    /// The connection to `broker` ended with a FindCoordinator in flight on it: ask again
    /// after `retry.backoff.ms`.
    pub(crate) fn find_coordinator_lost(&mut self, c: u16, broker: u16) {
        let now = self.now();
        let cons = &mut self.consumers[c as usize];
        if !cons.finding || cons.find_broker != Some(broker) {
            return;
        }
        cons.find_broker = None;
        cons.find_epoch += 1;
        let epoch = cons.find_epoch;
        let at = now + cons.spec.consumer.retry_backoff_ms * 1_000;
        self.q.schedule_at(at, Ev::FindCoordinatorRetry { consumer: c, epoch });
    }

    pub(crate) fn find_coordinator_retry(&mut self, c: u16, epoch: u32) {
        let cons = &mut self.consumers[c as usize];
        if !cons.finding || cons.find_epoch != epoch {
            return;
        }
        cons.finding = false;
        self.find_coordinator(c);
    }

    /// The coordinator is gone as far as this consumer knows (`markCoordinatorUnknown`): close
    /// its connection, which fails every request in flight on it (commits with a retriable
    /// error, a join in progress starts over), and look for it again. `timed_out`: the commit
    /// whose timeout found it dead (it fails with REQUEST_TIMED_OUT, the others with
    /// NETWORK_EXCEPTION).
    pub(super) fn coordinator_dead_with(&mut self, c: u16, reason: DisconnectReason, timed_out: Option<u64>) {
        let cons = &mut self.consumers[c as usize];
        let Some(broker) = cons.coordinator.take() else { return };
        cons.heartbeat_sent = None;
        let conn = Conn { client: cons.node, server: self.broker_nodes[broker as usize], chan: Channel::Coordinator };
        let commits: Vec<u64> = cons.commits.iter().filter(|(_, p)| p.in_flight).map(|(&id, _)| id).collect();
        let joining =
            matches!(cons.membership, Membership::Joining | Membership::Syncing | Membership::AwaitingOffsets);
        let in_flight = commits.len() as u32 + u32::from(joining);
        self.close_connection(conn);
        self.record(conn.client, Op::Disconnected { peer: conn.server, reason, in_flight, coordinator: true });
        self.find_coordinator(c);
        let generation = self.consumers[c as usize].generation;
        for id in commits {
            let error = if Some(id) == timed_out { ErrorCode::RequestTimedOut } else { ErrorCode::NetworkException };
            self.commit_done(c, id, generation, Some(error), false);
        }
        if joining {
            self.coordinator_requests_failed(c);
        }
    }

    pub(super) fn coordinator_dead(&mut self, c: u16, reason: DisconnectReason) {
        self.coordinator_dead_with(c, reason, None);
    }

    /// The coordinator connection to `broker` broke (a reset, TCP giving up).
    pub(crate) fn consumer_coordinator_lost(&mut self, c: u16, broker: u16, reason: DisconnectReason) {
        if self.consumers[c as usize].coordinator == Some(broker) {
            self.coordinator_dead(c, reason);
        }
    }

    /// The JoinGroup, SyncGroup or OffsetFetch in flight failed: an OffsetFetch is asked again
    /// (of the coordinator, once found); a join starts over (the member id and generation are
    /// kept; the coordinator knows them if it still has them).
    fn coordinator_requests_failed(&mut self, c: u16) {
        let cons = &mut self.consumers[c as usize];
        match cons.membership {
            Membership::AwaitingOffsets => {
                let missing: Vec<Tp> =
                    cons.assigned.iter().filter(|tp| !cons.positions.contains_key(tp)).copied().collect();
                let (group, generation) = (cons.group.0, cons.generation);
                let req = CoordinatorRequest::OffsetFetch { group, consumer: c, partitions: missing, generation };
                self.send_to_coordinator(c, req);
            }
            Membership::Joining | Membership::Syncing => {
                cons.coordinator_epoch += 1;
                cons.membership = Membership::Unjoined;
                self.poll_step(c);
            }
            _ => {}
        }
    }

    /// A JoinGroup, SyncGroup or OffsetFetch got no answer in time: the coordinator is taken
    /// for dead and the join starts over.
    pub(crate) fn coordinator_timeout(&mut self, c: u16, epoch: u32) {
        let cons = &mut self.consumers[c as usize];
        let waiting =
            matches!(cons.membership, Membership::Joining | Membership::Syncing | Membership::AwaitingOffsets);
        if cons.coordinator_epoch != epoch || !waiting {
            return;
        }
        if cons.coordinator.is_some() {
            self.coordinator_dead(c, DisconnectReason::RequestTimeout);
        } else {
            // It timed out waiting for the coordinator to be found.
            self.coordinator_requests_failed(c);
        }
    }

    /// An OffsetCommit got no answer in time: the coordinator is taken for dead, and the commit
    /// fails with a timeout (retried by a synchronous commit while `default.api.timeout.ms`
    /// allows).
    pub(crate) fn commit_timeout(&mut self, c: u16, commit: u64, attempt: u32) {
        let cons = &self.consumers[c as usize];
        let Some(pending) = cons.commits.get(&commit) else { return };
        if pending.attempt != attempt {
            return;
        }
        if pending.in_flight && cons.coordinator.is_some() {
            self.coordinator_dead_with(c, DisconnectReason::RequestTimeout, Some(commit));
        } else {
            // It timed out waiting for the coordinator to be found.
            let generation = cons.generation;
            self.commit_done(c, commit, generation, Some(ErrorCode::RequestTimedOut), false);
        }
    }
}
