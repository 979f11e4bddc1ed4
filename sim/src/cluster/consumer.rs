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

use super::assignor::{self, Subscription};
use super::{
    CoordinatorRequest, CoordinatorResponse, FetchRequest, FetchResponse, JoinResult, Msg, RECORD_BYTES, TpMap,
};
use crate::world::{Ev, World};
use evsim_model::actor::{Command, Listener};
use evsim_model::event::Message;
use evsim_model::history::{ErrorCode, GroupId, LeaveReason, Micros, NodeId, Op, Polled, TopicId, Tp};
use evsim_model::order::OrderEventConsumer;
use evsim_model::scenario::{AssignmentStrategy, CommitStrategy, ConsumerSpec, OffsetReset};
use std::collections::{BTreeMap, VecDeque};

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
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum CommitKind {
    /// The container's commit after a batch (`commitSync`).
    AfterBatch,
    /// Auto-commit inside `poll()` (`commitAsync`).
    Auto,
    /// Auto-commit before rejoining (`commitSync` in `onJoinPrepare`).
    BeforeJoin,
}

/// One consumer instance with its listener.
#[derive(Debug)]
pub struct Consumer {
    /// False once the process crashed: events addressed to it are dropped.
    pub alive: bool,
    pub node: NodeId,
    pub group: GroupId,
    pub topics: Vec<TopicId>,
    pub spec: ConsumerSpec,
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
    commits: BTreeMap<u64, CommitKind>,
    next_commit: u64,
    listener: OrderEventConsumer,
    commands: Vec<Command>,
}

impl Consumer {
    pub fn new(node: NodeId, group: GroupId, topics: Vec<TopicId>, spec: ConsumerSpec) -> Self {
        Self {
            alive: true,
            node,
            group,
            topics,
            spec,
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
            commits: BTreeMap::new(),
            next_commit: 0,
            listener: OrderEventConsumer,
            commands: Vec::new(),
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
        self.app_poll(c);
    }

    fn send_to_coordinator(&mut self, c: u16, req: CoordinatorRequest) {
        let node = self.consumers[c as usize].node;
        let group = self.consumers[c as usize].group.0 as usize;
        let host = self.broker_nodes[self.groups[group].host as usize];
        self.send_msg(node, host, Msg::ToCoordinator(req));
    }

    /// The application calls `poll()`.
    fn app_poll(&mut self, c: u16) {
        let now = self.now();
        let cons = &mut self.consumers[c as usize];
        cons.app_epoch += 1;
        cons.app = App::InPoll;
        cons.last_poll = now;
        self.arm_poll_check(c);
        let cons = &mut self.consumers[c as usize];
        if !cons.poll_timeout_armed {
            cons.poll_timeout_armed = true;
            self.q.schedule_at(now + POLL_TIMEOUT_US, Ev::PollTimeout { consumer: c });
        }
        self.poll_step(c);
    }

    /// Make sure a `PollIntervalCheck` is pending for consumer `c`.
    fn arm_poll_check(&mut self, c: u16) {
        let now = self.now();
        let cons = &mut self.consumers[c as usize];
        if !cons.poll_check_armed {
            cons.poll_check_armed = true;
            let at = now + cons.spec.consumer.max_poll_interval_ms * 1_000;
            self.q.schedule_at(at, Ev::PollIntervalCheck { consumer: c });
        }
    }

    pub(crate) fn poll_timeout(&mut self, c: u16) {
        let now = self.now();
        let cons = &mut self.consumers[c as usize];
        cons.poll_timeout_armed = false;
        if !matches!(cons.app, App::InPoll) {
            return;
        }
        if now >= cons.last_poll + POLL_TIMEOUT_US {
            // poll() returned no records; the container loop polls again.
            self.app_poll(c);
        } else {
            cons.poll_timeout_armed = true;
            let at = cons.last_poll + POLL_TIMEOUT_US;
            self.q.schedule_at(at, Ev::PollTimeout { consumer: c });
        }
    }

    /// The part of `poll()` that can make progress now: group work, auto-commit, returning
    /// buffered records, or sending fetches.
    fn poll_step(&mut self, c: u16) {
        let now = self.now();
        let cons = &mut self.consumers[c as usize];
        if !matches!(cons.app, App::InPoll) {
            return;
        }
        let rejoin = match cons.membership {
            Membership::Unjoined => true,
            Membership::Stable => cons.rejoin_needed,
            _ => false,
        };
        if rejoin {
            self.begin_join(c);
        }
        let cons = &mut self.consumers[c as usize];
        if !matches!(cons.app, App::InPoll) || !cons.consuming() {
            return;
        }
        if cons.membership == Membership::Stable
            && cons.spec.consumer.enable_auto_commit
            && now >= cons.next_auto_commit
        {
            cons.next_auto_commit = now + cons.spec.consumer.auto_commit_interval_ms * 1_000;
            let offsets: Vec<(Tp, u64)> = cons.positions.iter().map(|(tp, o)| (*tp, *o)).collect();
            if !offsets.is_empty() {
                self.send_commit(c, offsets, CommitKind::Auto);
            }
        }
        let cons = &mut self.consumers[c as usize];
        if cons.buffer.is_empty() {
            return self.send_fetches(c);
        }
        let max = cons.spec.consumer.max_poll_records as usize;
        cons.batch.clear();
        let mut records = Vec::with_capacity(max.min(cons.buffer.len()));
        while records.len() < max {
            let Some((tp, offset, message)) = cons.buffer.pop_front() else {
                break;
            };
            let polled = Polled { tp, offset, key: message.key, value: message.value.id() };
            records.push(polled);
            cons.batch.push((polled, message));
        }
        // The position of each partition moves past the last record returned.
        for (polled, _) in cons.batch.iter().rev() {
            match cons.positions.get_mut(&polled.tp) {
                Some(p) if *p <= polled.offset => *p = polled.offset + 1,
                _ => {}
            }
        }
        cons.app = App::Processing { next: 0 };
        // The Java client resets its poll timer on every pass of poll()'s loop, so the
        // max.poll.interval.ms budget for this batch starts now, as poll() returns.
        cons.last_poll = now;
        self.arm_poll_check(c);
        let cons = &mut self.consumers[c as usize];
        cons.app_epoch += 1;
        let (node, group) = (cons.node, cons.group);
        self.stats.records_polled += records.len() as u64;
        self.record(node, Op::Poll { group, records });
        self.start_processing(c);
        // Fetch ahead while the application processes (the Java client pipelines fetches).
        self.send_fetches(c);
    }

    fn send_fetches(&mut self, c: u16) {
        let cons = &self.consumers[c as usize];
        if !cons.consuming() {
            return;
        }
        let max_records = (cons.spec.consumer.max_partition_fetch_bytes / RECORD_BYTES).max(1);
        let max_wait_us = cons.spec.consumer.fetch_max_wait_ms * 1_000;
        let mut per_broker: Vec<(u16, Vec<(usize, u64)>)> = Vec::new();
        for tp in &cons.assigned {
            let Some(&fetch_at) = cons.fetch_positions.get(tp) else {
                continue;
            };
            // Only partitions with nothing buffered are fetched again.
            if cons.positions.get(tp) != Some(&fetch_at) {
                continue;
            }
            let g = self.partition_index(*tp);
            let leader = self.partitions[g].leader;
            if cons.fetch_in_flight[leader as usize].is_none() {
                match per_broker.iter_mut().find(|(b, _)| *b == leader) {
                    Some((_, parts)) => parts.push((g, fetch_at)),
                    None => {
                        let mut parts = self.pools.fetch_partitions.pop().unwrap_or_default();
                        parts.push((g, fetch_at));
                        per_broker.push((leader, parts));
                    }
                }
            }
        }
        for (broker, partitions) in per_broker {
            let cons = &mut self.consumers[c as usize];
            let fetch = cons.next_fetch;
            cons.next_fetch += 1;
            cons.fetch_in_flight[broker as usize] = Some(fetch);
            let node = cons.node;
            let req = FetchRequest {
                consumer: c,
                broker,
                fetch,
                partitions,
                max_records_per_partition: max_records,
                max_wait_us,
            };
            let to = self.broker_nodes[broker as usize];
            self.send_msg(node, to, Msg::Fetch(req));
        }
    }

    pub(crate) fn consumer_fetch_response(&mut self, mut resp: FetchResponse) {
        let cons = &mut self.consumers[resp.consumer as usize];
        if cons.fetch_in_flight.get(resp.broker as usize).copied().flatten() == Some(resp.fetch) {
            cons.fetch_in_flight[resp.broker as usize] = None;
        }
        let mut start = 0;
        for &(tp, first, n) in &resp.ranges {
            let records = &resp.records[start..start + n];
            start += n;
            // Data for a partition no longer assigned, or from a stale position, is dropped.
            if cons.fetch_positions.get(&tp) != Some(&first) || !cons.assigned.contains(&tp) {
                continue;
            }
            cons.buffer.extend(records.iter().enumerate().map(|(i, m)| (tp, first + i as u64, *m)));
            cons.fetch_positions.insert(tp, first + n as u64);
        }
        resp.ranges.clear();
        resp.records.clear();
        self.pools.ranges.push(resp.ranges);
        self.pools.records.push(resp.records);
        let c = resp.consumer;
        if matches!(self.consumers[c as usize].app, App::InPoll) {
            self.poll_step(c);
        } else {
            self.send_fetches(c);
        }
    }

    fn start_processing(&mut self, c: u16) {
        let cons = &self.consumers[c as usize];
        let d = self.client_rng.jitter(cons.spec.processing_time_us, cons.spec.processing_jitter_us);
        let epoch = cons.app_epoch;
        let now = self.now();
        self.q.schedule_at(now + d, Ev::ProcessDone { consumer: c, epoch });
    }

    /// The listener finished the current record: apply its commands, then the next record or
    /// the end of the batch.
    pub(crate) fn process_done(&mut self, c: u16, epoch: u32) {
        let now = self.now();
        let cons = &mut self.consumers[c as usize];
        if cons.app_epoch != epoch {
            return;
        }
        let App::Processing { next } = &mut cons.app else {
            return;
        };
        let (record, message) = cons.batch[*next];
        *next += 1;
        let more = *next < cons.batch.len();
        let mut commands = std::mem::take(&mut cons.commands);
        cons.listener.on_record(now, &record, &message, &mut commands);
        let (node, group) = (cons.node, cons.group);
        let mut ok = false;
        for cmd in commands.drain(..) {
            match cmd {
                Command::Cache { op, cause } => {
                    self.cache.apply(op, cause, &mut self.facts);
                    for fact in self.facts.drain(..) {
                        self.history.push(now, node, fact);
                    }
                }
                Command::Ack => {
                    ok = true;
                    let acked = &mut self.consumers[c as usize].acked;
                    match acked.iter_mut().find(|(tp, _)| *tp == record.tp) {
                        Some((_, o)) => *o = (*o).max(record.offset + 1),
                        None => acked.push((record.tp, record.offset + 1)),
                    }
                }
                other => unreachable!("a listener emitted {other:?}"),
            }
        }
        self.consumers[c as usize].commands = commands;
        if ok {
            self.stats.records_consumed += 1;
        }
        self.record(node, Op::Processed { group, record, ok });
        if more {
            self.start_processing(c);
        } else {
            self.batch_done(c);
        }
    }

    fn batch_done(&mut self, c: u16) {
        let cons = &mut self.consumers[c as usize];
        if cons.spec.commit_strategy == CommitStrategy::CommitAfterProcess && !cons.acked.is_empty() {
            let mut offsets = std::mem::take(&mut cons.acked);
            offsets.sort_unstable();
            cons.app = App::Committing;
            self.send_commit(c, offsets, CommitKind::AfterBatch);
        } else {
            cons.acked.clear();
            self.app_poll(c);
        }
    }

    fn send_commit(&mut self, c: u16, offsets: Vec<(Tp, u64)>, kind: CommitKind) {
        let cons = &mut self.consumers[c as usize];
        let id = cons.next_commit;
        cons.next_commit += 1;
        cons.commits.insert(id, kind);
        let group = cons.group.0;
        match (&cons.member_id, cons.membership) {
            (Some(member_id), Membership::Stable | Membership::PreparingJoin | Membership::AwaitingOffsets) => {
                let req = CoordinatorRequest::OffsetCommit {
                    group,
                    consumer: c,
                    member_id: member_id.clone(),
                    generation: cons.generation,
                    offsets,
                    commit: id,
                };
                self.send_to_coordinator(c, req);
            }
            // Not a member of an active generation: the client fails the commit itself
            // (CommitFailedException / RebalanceInProgressException), nothing is sent.
            (_, _) => {
                let generation = cons.generation;
                let error = cons.local_commit_error();
                self.commit_done(c, id, generation, offsets, Some(error), true);
            }
        }
    }

    /// A commit finished: record it, react to fencing, and continue what waited for it. A
    /// `local` failure never left the client (not a member of an active generation).
    fn commit_done(
        &mut self,
        c: u16,
        id: u64,
        generation: i32,
        offsets: Vec<(Tp, u64)>,
        error: Option<ErrorCode>,
        local: bool,
    ) {
        let cons = &mut self.consumers[c as usize];
        let Some(kind) = cons.commits.remove(&id) else { return };
        let (node, group) = (cons.node, cons.group);
        match error {
            None => self.stats.commits_ok += 1,
            Some(e) => {
                self.stats.commits_failed += 1;
                let cons = &mut self.consumers[c as usize];
                match e {
                    _ if local => {}
                    ErrorCode::IllegalGeneration | ErrorCode::UnknownMemberId if cons.generation == generation => {
                        self.lose_partitions(c, e == ErrorCode::UnknownMemberId)
                    }
                    // The coordinator is completing a rebalance: rejoin, keep the generation.
                    ErrorCode::RebalanceInProgress => cons.rejoin_needed = true,
                    _ => {}
                }
            }
        }
        self.record(node, Op::Commit { group, generation, offsets, error });
        match kind {
            CommitKind::AfterBatch => self.app_poll(c),
            CommitKind::Auto => self.poll_step(c),
            CommitKind::BeforeJoin => {
                if self.consumers[c as usize].membership == Membership::PreparingJoin {
                    self.do_join(c);
                } else {
                    // Fenced meanwhile: the join starts over from poll().
                    self.poll_step(c);
                }
            }
        }
    }

    /// Fenced or expelled: partitions are lost (`onPartitionsLost`) and the generation reset.
    fn lose_partitions(&mut self, c: u16, forget_member: bool) {
        let cons = &mut self.consumers[c as usize];
        cons.reset_generation(forget_member);
        self.revoke_all(c);
    }

    fn revoke_all(&mut self, c: u16) {
        let cons = &mut self.consumers[c as usize];
        cons.buffer.clear();
        cons.positions.clear();
        cons.fetch_positions.clear();
        if !cons.assigned.is_empty() {
            let partitions = std::mem::take(&mut cons.assigned);
            let (node, group) = (cons.node, cons.group);
            self.record(node, Op::Revoked { group, partitions });
        }
    }

    /// `onJoinPrepare`: with auto-commit, commit positions synchronously first.
    fn begin_join(&mut self, c: u16) {
        let cons = &mut self.consumers[c as usize];
        let valid = cons.membership == Membership::Stable && cons.generation >= 0;
        if cons.spec.consumer.enable_auto_commit && !cons.positions.is_empty() {
            let offsets: Vec<(Tp, u64)> = cons.positions.iter().map(|(tp, o)| (*tp, *o)).collect();
            if valid {
                cons.membership = Membership::PreparingJoin;
                return self.send_commit(c, offsets, CommitKind::BeforeJoin);
            }
            // Not in an active generation (it left or was fenced): the Java client still tries
            // and fails the commit on the spot (CommitFailedException), then rejoins.
            let (node, group, generation) = (cons.node, cons.group, cons.generation);
            let error = Some(cons.local_commit_error());
            self.stats.commits_failed += 1;
            self.record(node, Op::Commit { group, generation, offsets, error });
        }
        self.do_join(c);
    }

    fn do_join(&mut self, c: u16) {
        let cons = &mut self.consumers[c as usize];
        let eager = cons.spec.consumer.partition_assignment_strategy == AssignmentStrategy::Range;
        if eager || cons.generation < 0 {
            self.revoke_all(c);
        }
        let cons = &mut self.consumers[c as usize];
        cons.rejoin_needed = false;
        cons.membership = Membership::Joining;
        cons.heartbeat_epoch += 1;
        let req = CoordinatorRequest::JoinGroup {
            group: cons.group.0,
            consumer: c,
            member_id: cons.member_id.clone(),
            owned: cons.assigned.clone(),
            generation: cons.generation,
        };
        self.send_to_coordinator(c, req);
    }

    pub(crate) fn consumer_coordinator_response(&mut self, resp: CoordinatorResponse) {
        match resp {
            CoordinatorResponse::JoinGroup { consumer, result } => self.on_join(consumer, result),
            CoordinatorResponse::SyncGroup { consumer, generation, result } => {
                self.on_sync(consumer, generation, result)
            }
            CoordinatorResponse::Heartbeat { consumer, generation, error } => {
                let cons = &mut self.consumers[consumer as usize];
                // As the Java client does, an answer to a heartbeat sent before the member started
                // rejoining is ignored: only a stable member acts on it.
                let stable = matches!(cons.membership, Membership::Stable | Membership::AwaitingOffsets);
                if generation != cons.generation || !stable {
                    return;
                }
                match error {
                    None => {}
                    Some(ErrorCode::RebalanceInProgress) => {
                        cons.rejoin_needed = true;
                        self.poll_step(consumer);
                    }
                    Some(e) => {
                        self.lose_partitions(consumer, e == ErrorCode::UnknownMemberId);
                        self.poll_step(consumer);
                    }
                }
            }
            CoordinatorResponse::OffsetCommit { consumer, commit, generation, offsets, error } => {
                self.commit_done(consumer, commit, generation, offsets, error, false)
            }
            CoordinatorResponse::OffsetFetch { consumer, generation, offsets } => {
                self.on_offsets(consumer, generation, offsets)
            }
        }
    }

    fn on_join(&mut self, c: u16, result: Result<JoinResult, ErrorCode>) {
        let cons = &mut self.consumers[c as usize];
        if cons.membership != Membership::Joining {
            return;
        }
        let join = match result {
            Ok(j) => j,
            Err(e) => {
                cons.reset_generation(e == ErrorCode::UnknownMemberId);
                return self.poll_step(c);
            }
        };
        cons.member_id = Some(join.member_id.clone());
        cons.generation = join.generation;
        cons.membership = Membership::Syncing;
        let assignments = join.members.map(|members| {
            let subs: Vec<Subscription> = members
                .into_iter()
                .map(|m| Subscription {
                    member_id: m.member_id,
                    topics: cons.topics.clone(),
                    owned: m.owned,
                    generation: m.generation,
                })
                .collect();
            let topics = &self.scenario.topics;
            let sizes = |t: TopicId| topics[t.0 as usize].partitions;
            let plan = match cons.spec.consumer.partition_assignment_strategy {
                AssignmentStrategy::Range => assignor::range(&subs, sizes),
                AssignmentStrategy::CooperativeSticky => assignor::cooperative_sticky(&subs, sizes),
            };
            plan.into_iter().collect::<Vec<_>>()
        });
        let req = CoordinatorRequest::SyncGroup {
            group: cons.group.0,
            consumer: c,
            member_id: join.member_id,
            generation: join.generation,
            assignments,
        };
        self.send_to_coordinator(c, req);
    }

    fn on_sync(&mut self, c: u16, generation: i32, result: Result<Vec<Tp>, ErrorCode>) {
        let now = self.now();
        let cons = &mut self.consumers[c as usize];
        if cons.membership != Membership::Syncing || generation != cons.generation {
            return;
        }
        let assignment = match result {
            Ok(a) => a,
            Err(ErrorCode::RebalanceInProgress) => {
                cons.membership = Membership::Unjoined;
                return self.poll_step(c);
            }
            Err(e) => {
                self.lose_partitions(c, e == ErrorCode::UnknownMemberId);
                return self.poll_step(c);
            }
        };
        let (node, group) = (cons.node, cons.group);
        // Cooperative: give up what moved, and rejoin so that it can be handed out.
        let revoked: Vec<Tp> = cons.assigned.iter().filter(|tp| !assignment.contains(tp)).copied().collect();
        if !revoked.is_empty() {
            for tp in &revoked {
                cons.positions.remove(tp);
                cons.fetch_positions.remove(tp);
            }
            cons.buffer.retain(|(tp, _, _)| !revoked.contains(tp));
            cons.rejoin_needed = true;
        }
        let mut assignment = assignment;
        assignment.sort_unstable();
        cons.assigned = assignment.clone();
        let missing: Vec<Tp> = assignment.iter().filter(|tp| !cons.positions.contains_key(tp)).copied().collect();
        cons.heartbeat_epoch += 1;
        let epoch = cons.heartbeat_epoch;
        let interval = cons.spec.consumer.heartbeat_interval_ms * 1_000;
        if !revoked.is_empty() {
            self.record(node, Op::Revoked { group, partitions: revoked });
        }
        self.record(node, Op::Assigned { group, generation, partitions: assignment });
        self.q.schedule_at(now + interval, Ev::HeartbeatTick { consumer: c, epoch });
        let cons = &mut self.consumers[c as usize];
        // onJoinComplete: the auto-commit timer starts over.
        cons.next_auto_commit = now + cons.spec.consumer.auto_commit_interval_ms * 1_000;
        if missing.is_empty() {
            cons.membership = Membership::Stable;
            self.poll_step(c);
        } else {
            cons.membership = Membership::AwaitingOffsets;
            let req = CoordinatorRequest::OffsetFetch { group: group.0, consumer: c, partitions: missing, generation };
            self.send_to_coordinator(c, req);
        }
    }

    fn on_offsets(&mut self, c: u16, generation: i32, offsets: Vec<(Tp, Option<u64>)>) {
        let cons = &self.consumers[c as usize];
        if cons.membership != Membership::AwaitingOffsets || generation != cons.generation {
            return;
        }
        let reset = cons.spec.consumer.auto_offset_reset;
        let mut resolved = Vec::with_capacity(offsets.len());
        for (tp, committed) in offsets {
            // Without a committed offset, `auto.offset.reset` decides (the ListOffsets lookup is
            // taken as instantaneous). `none` would raise NoOffsetForPartitionException; the
            // simulator starts from the earliest offset then and documents it.
            let p = &self.partitions[self.partition_index(tp)];
            let pos = committed.unwrap_or(match reset {
                OffsetReset::Earliest | OffsetReset::None => 0,
                OffsetReset::Latest => p.high_watermark,
            });
            resolved.push((tp, pos));
        }
        let cons = &mut self.consumers[c as usize];
        for (tp, pos) in resolved {
            cons.positions.insert(tp, pos);
            cons.fetch_positions.insert(tp, pos);
        }
        cons.membership = Membership::Stable;
        self.poll_step(c);
    }

    pub(crate) fn heartbeat_tick(&mut self, c: u16, epoch: u32) {
        let now = self.now();
        let cons = &self.consumers[c as usize];
        if cons.heartbeat_epoch != epoch {
            return;
        }
        let Some(member_id) = cons.member_id.clone() else {
            return;
        };
        let interval = cons.spec.consumer.heartbeat_interval_ms * 1_000;
        let req =
            CoordinatorRequest::Heartbeat { group: cons.group.0, consumer: c, member_id, generation: cons.generation };
        self.send_to_coordinator(c, req);
        self.q.schedule_at(now + interval, Ev::HeartbeatTick { consumer: c, epoch });
    }

    /// The heartbeat thread's check of `max.poll.interval.ms`: no `poll()` for that long means
    /// the application is stuck or slow, and the consumer leaves the group.
    pub(crate) fn poll_interval_check(&mut self, c: u16) {
        let now = self.now();
        let cons = &mut self.consumers[c as usize];
        let interval = cons.spec.consumer.max_poll_interval_ms * 1_000;
        // Inside poll() the timer keeps being reset; outside, it runs from the last return.
        if matches!(cons.app, App::InPoll) || now < cons.last_poll + interval {
            let from = if matches!(cons.app, App::InPoll) { now } else { cons.last_poll };
            self.q.schedule_at(from + interval, Ev::PollIntervalCheck { consumer: c });
            return;
        }
        cons.poll_check_armed = false;
        if cons.member_id.is_none() {
            return;
        }
        let member_id = cons.member_id.clone().expect("checked");
        let group = cons.group;
        let node = cons.node;
        cons.reset_generation(true);
        self.record(node, Op::LeftGroup { group, reason: LeaveReason::PollTimeout });
        self.send_to_coordinator(c, CoordinatorRequest::LeaveGroup { group: group.0, member_id });
    }
}
