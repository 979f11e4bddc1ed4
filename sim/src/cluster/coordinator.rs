//! The group coordinator of the classic consumer group protocol: JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch; generations; session expiry; the rebalance
//! timeout; `group.initial.rebalance.delay.ms`.
//!
//! Follows Kafka's `GroupCoordinator` state machine: Empty -> PreparingRebalance (members rejoin)
//! -> CompletingRebalance (the leader's assignment is awaited) -> Stable. Commit fencing follows
//! its `handleCommitOffsets`: an unknown member gets UNKNOWN_MEMBER_ID, a stale generation
//! ILLEGAL_GENERATION, a commit while the group completes a rebalance REBALANCE_IN_PROGRESS; a
//! commit from the current generation during PreparingRebalance is accepted (that is what lets
//! a member commit in `onJoinPrepare` before it rejoins).
//!
//! The coordinator lives on the leader of the group's `__consumer_offsets` partition and moves
//! with it (`controller.rs`). A broker that is not the coordinator answers NOT_COORDINATOR. What
//! Kafka writes to the offsets log survives a move: committed offsets (every commit), and the
//! group's generation, members and assignment as of the last completed rebalance (stored when
//! the leader's SyncGroup completes it, or when the group empties); a rebalance in progress is
//! lost with the old coordinator, as Kafka's `GroupMetadataManager` loads it.

use super::{CoordinatorRequest, CoordinatorResponse, JoinResult, MemberMetadata, Msg};
use crate::world::{Ev, World};
use evsim_model::history::{ErrorCode, GroupId, LeaveReason, Micros, NodeId, Op, Tp};
use evsim_model::scenario::AssignmentStrategy;
use std::collections::BTreeMap;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

#[derive(Clone, Debug)]
pub struct Member {
    serial: u32,
    pub consumer: u16,
    last_seen: Micros,
    session_timeout: Micros,
    rebalance_timeout: Micros,
    /// Sent JoinGroup in this round and waits for the response.
    awaiting_join: bool,
    owned: Vec<Tp>,
    owned_generation: i32,
    /// `group.instance.id` of a static member.
    instance_id: Option<Box<str>>,
}

/// What the coordinator has written to the offsets log about a group (besides offsets).
#[derive(Clone, Debug)]
struct Stored {
    generation: i32,
    members: BTreeMap<String, Member>,
    leader: Option<String>,
    assignments: BTreeMap<String, Vec<Tp>>,
}

/// A consumer group at its coordinator.
#[derive(Debug)]
pub struct Group {
    pub id: GroupId,
    pub name: String,
    /// The broker that hosts the coordinator: the leader of the group's `__consumer_offsets`
    /// partition; `None` while that partition has no leader (COORDINATOR_NOT_AVAILABLE).
    pub host: Option<u16>,
    /// The replicas of the group's `__consumer_offsets` partition, in assignment order.
    pub offsets_replicas: Vec<u16>,
    /// Bumped each time a coordinator loads the group (to ignore an earlier one's timers).
    pub(crate) load: u32,
    stored: Option<Box<Stored>>,
    pub strategy: AssignmentStrategy,
    pub state: GroupState,
    pub generation: i32,
    pub members: BTreeMap<String, Member>,
    pub leader: Option<String>,
    pub committed: BTreeMap<Tp, u64>,
    assignments: BTreeMap<String, Vec<Tp>>,
    pending_sync: Vec<String>,
    /// Bumped at each rebalance start, to ignore stale deadlines.
    round: u32,
    /// The first rebalance of an empty group waits `group.initial.rebalance.delay.ms`.
    initial_delay_pending: bool,
    next_serial: u32,
}

impl Group {
    pub fn new(id: GroupId, name: String, offsets_replicas: Vec<u16>, strategy: AssignmentStrategy) -> Self {
        Self {
            id,
            name,
            host: Some(offsets_replicas[0]),
            offsets_replicas,
            load: 0,
            stored: None,
            strategy,
            state: GroupState::Empty,
            generation: 0,
            members: BTreeMap::new(),
            leader: None,
            committed: BTreeMap::new(),
            assignments: BTreeMap::new(),
            pending_sync: Vec::new(),
            round: 0,
            initial_delay_pending: false,
            next_serial: 0,
        }
    }

    fn rebalance_timeout(&self) -> Micros {
        self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or(0)
    }

    fn member_by_serial(&self, serial: u32) -> Option<&String> {
        self.members.iter().find(|(_, m)| m.serial == serial).map(|(id, _)| id)
    }

    /// Write the group's metadata to the offsets log (Kafka's `storeGroup`).
    fn store(&mut self) {
        self.stored = Some(Box::new(Stored {
            generation: self.generation,
            members: self.members.clone(),
            leader: self.leader.clone(),
            assignments: self.assignments.clone(),
        }));
    }

    /// The NOT_COORDINATOR answers an unloading coordinator owes the members waiting for their
    /// JoinGroup or SyncGroup answer.
    pub(crate) fn unload_answers(&self) -> Vec<(u16, CoordinatorResponse)> {
        let joining = self.members.values().filter(|m| m.awaiting_join).map(|m| {
            (
                m.consumer,
                CoordinatorResponse::JoinGroup { consumer: m.consumer, result: Err(ErrorCode::NotCoordinator) },
            )
        });
        let syncing = self.pending_sync.iter().filter_map(|id| self.members.get(id)).map(|m| {
            let generation = self.generation;
            (
                m.consumer,
                CoordinatorResponse::SyncGroup {
                    consumer: m.consumer,
                    generation,
                    result: Err(ErrorCode::NotCoordinator),
                },
            )
        });
        joining.chain(syncing).collect()
    }

    /// A new coordinator loads the group from the offsets log at `now`: the stored generation,
    /// members and assignment, Stable (Empty without members), every member's session starting
    /// now. Returns the session checks to schedule: (member serial, load, when).
    pub(crate) fn load(&mut self, now: Micros) -> (GroupId, Vec<(u32, u32, Micros)>) {
        self.load += 1;
        self.round += 1;
        self.pending_sync.clear();
        self.initial_delay_pending = false;
        match self.stored.as_deref().cloned() {
            Some(stored) => {
                self.generation = stored.generation;
                self.members = stored.members;
                self.leader = stored.leader;
                self.assignments = stored.assignments;
            }
            None => {
                self.generation = 0;
                self.members.clear();
                self.leader = None;
                self.assignments.clear();
            }
        }
        self.state = if self.members.is_empty() { GroupState::Empty } else { GroupState::Stable };
        let load = self.load;
        let checks = self
            .members
            .values_mut()
            .map(|m| {
                m.awaiting_join = false;
                m.last_seen = now;
                (m.serial, load, now + m.session_timeout)
            })
            .collect();
        (self.id, checks)
    }
}

impl World {
    fn coordinator_node(&self, group: u16) -> NodeId {
        let g = &self.groups[group as usize];
        self.broker_nodes[g.host.unwrap_or(g.offsets_replicas[0]) as usize]
    }

    /// Whether `group`'s coordinator is running: it has a host, and the host's machine is up.
    fn coordinator_up(&self, group: u16) -> bool {
        self.groups[group as usize].host.is_some_and(|b| self.brokers[b as usize].alive)
    }

    fn reply(&mut self, group: u16, consumer: u16, resp: CoordinatorResponse) {
        let Some(broker) = self.groups[group as usize].host else { return };
        self.reply_from(broker, consumer, resp);
    }

    pub(crate) fn reply_from(&mut self, broker: u16, consumer: u16, resp: CoordinatorResponse) {
        let from = self.broker_nodes[broker as usize];
        let to = self.consumers[consumer as usize].node;
        self.send_msg(from, to, Msg::FromCoordinator { broker, resp });
    }

    /// A broker answers a FindCoordinator: the leader of the group's offsets partition, as its
    /// metadata says.
    pub(crate) fn broker_find_coordinator(&mut self, consumer: u16, broker: u16) {
        let group = self.consumers[consumer as usize].group.0 as usize;
        let coordinator = self.groups[group].host;
        let (from, to) = (self.broker_nodes[broker as usize], self.consumers[consumer as usize].node);
        self.send_msg(from, to, Msg::FindCoordinatorResponse { consumer, broker, coordinator });
    }

    /// A group request reached `broker`: handled if it coordinates the group, answered
    /// NOT_COORDINATOR if not.
    pub(crate) fn coordinator_request(&mut self, broker: u16, req: CoordinatorRequest) {
        let group = match &req {
            CoordinatorRequest::JoinGroup { group, .. }
            | CoordinatorRequest::SyncGroup { group, .. }
            | CoordinatorRequest::Heartbeat { group, .. }
            | CoordinatorRequest::LeaveGroup { group, .. }
            | CoordinatorRequest::OffsetCommit { group, .. }
            | CoordinatorRequest::OffsetFetch { group, .. } => *group,
        };
        if self.groups[group as usize].host != Some(broker) {
            return self.not_coordinator(broker, req);
        }
        self.coordinate(req);
    }

    fn not_coordinator(&mut self, broker: u16, req: CoordinatorRequest) {
        let e = ErrorCode::NotCoordinator;
        let resp = match req {
            CoordinatorRequest::JoinGroup { consumer, .. } => {
                CoordinatorResponse::JoinGroup { consumer, result: Err(e) }
            }
            CoordinatorRequest::SyncGroup { consumer, generation, .. } => {
                CoordinatorResponse::SyncGroup { consumer, generation, result: Err(e) }
            }
            CoordinatorRequest::Heartbeat { consumer, generation, .. } => {
                CoordinatorResponse::Heartbeat { consumer, generation, error: Some(e) }
            }
            CoordinatorRequest::OffsetCommit { consumer, generation, offsets, commit, .. } => {
                CoordinatorResponse::OffsetCommit { consumer, commit, generation, offsets, error: Some(e) }
            }
            CoordinatorRequest::OffsetFetch { consumer, generation, .. } => {
                CoordinatorResponse::OffsetFetch { consumer, generation, offsets: Err(e) }
            }
            CoordinatorRequest::LeaveGroup { .. } => return,
        };
        let consumer = match &resp {
            CoordinatorResponse::JoinGroup { consumer, .. }
            | CoordinatorResponse::SyncGroup { consumer, .. }
            | CoordinatorResponse::Heartbeat { consumer, .. }
            | CoordinatorResponse::OffsetCommit { consumer, .. }
            | CoordinatorResponse::OffsetFetch { consumer, .. } => *consumer,
        };
        self.reply_from(broker, consumer, resp);
    }

    fn coordinate(&mut self, req: CoordinatorRequest) {
        match req {
            CoordinatorRequest::JoinGroup { group, consumer, member_id, owned, generation } => {
                // The `group.instance.id` the client sends with its JoinGroup: read from its
                // (immutable) configuration rather than carried in every message.
                let instance_id = self.consumers[consumer as usize].instance_id.as_deref().map(Box::<str>::from);
                if member_id.is_none()
                    && let Some(iid) = instance_id.as_deref()
                    && self.static_rejoin(group, consumer, iid)
                {
                    return;
                }
                self.join_group(group, consumer, member_id, instance_id, owned, generation)
            }
            CoordinatorRequest::SyncGroup { group, consumer, member_id, generation, assignments } => {
                self.sync_group(group, consumer, member_id, generation, assignments)
            }
            CoordinatorRequest::Heartbeat { group, consumer, member_id, generation } => {
                let g = &mut self.groups[group as usize];
                let now = self.q.now();
                let error = match g.members.get_mut(&member_id) {
                    None => Some(ErrorCode::UnknownMemberId),
                    Some(m) => {
                        m.last_seen = now;
                        if generation != g.generation {
                            Some(ErrorCode::IllegalGeneration)
                        } else if g.state == GroupState::PreparingRebalance {
                            Some(ErrorCode::RebalanceInProgress)
                        } else {
                            None
                        }
                    }
                };
                self.reply(group, consumer, CoordinatorResponse::Heartbeat { consumer, generation, error });
            }
            CoordinatorRequest::LeaveGroup { group, member_id } => {
                if self.groups[group as usize].members.remove(&member_id).is_some() {
                    self.member_gone(group);
                }
            }
            CoordinatorRequest::OffsetCommit { group, consumer, member_id, generation, offsets, commit } => {
                let g = &mut self.groups[group as usize];
                let error = match g.members.get_mut(&member_id) {
                    None => Some(ErrorCode::UnknownMemberId),
                    Some(_) if generation != g.generation => Some(ErrorCode::IllegalGeneration),
                    Some(_) if g.state == GroupState::CompletingRebalance => Some(ErrorCode::RebalanceInProgress),
                    Some(m) => {
                        m.last_seen = self.q.now();
                        for &(tp, offset) in &offsets {
                            g.committed.insert(tp, offset);
                        }
                        None
                    }
                };
                self.reply(
                    group,
                    consumer,
                    CoordinatorResponse::OffsetCommit { consumer, commit, generation, offsets, error },
                );
            }
            CoordinatorRequest::OffsetFetch { group, consumer, partitions, generation } => {
                let g = &self.groups[group as usize];
                let offsets = partitions.into_iter().map(|tp| (tp, g.committed.get(&tp).copied())).collect();
                self.reply(
                    group,
                    consumer,
                    CoordinatorResponse::OffsetFetch { consumer, generation, offsets: Ok(offsets) },
                );
            }
        }
    }

    /// KIP-345: a static member that comes back (a restart within the session timeout) takes
    /// its old place under a new member id; in a stable group it gets the current generation
    /// and its old assignment, and nobody rebalances. Returns false when the instance id is
    /// unknown (the member joins as a new one).
    fn static_rejoin(&mut self, group: u16, consumer: u16, instance_id: &str) -> bool {
        let now = self.q.now();
        let node_name = self.history.node_name(self.consumers[consumer as usize].node).to_string();
        let g = &mut self.groups[group as usize];
        let Some(old_id) =
            g.members.iter().find(|(_, m)| m.instance_id.as_deref() == Some(instance_id)).map(|(id, _)| id.clone())
        else {
            return false;
        };
        let mut m = g.members.remove(&old_id).expect("found");
        let serial = g.next_serial;
        g.next_serial += 1;
        let new_id = format!("{node_name}-{serial}");
        m.serial = serial;
        m.consumer = consumer;
        m.last_seen = now;
        let session_timeout = m.session_timeout;
        g.members.insert(new_id.clone(), m);
        if g.leader.as_deref() == Some(old_id.as_str()) {
            g.leader = Some(new_id.clone());
        }
        if let Some(a) = g.assignments.remove(&old_id) {
            g.assignments.insert(new_id.clone(), a);
        }
        let load = g.load;
        self.q.schedule_at(now + session_timeout, Ev::SessionCheck { group, member: serial, load });
        let g = &mut self.groups[group as usize];
        if g.state == GroupState::Stable {
            // Kafka stores the group when a static member is replaced.
            g.store();
        }
        let g = &self.groups[group as usize];
        if g.state != GroupState::Stable {
            // Mid-rebalance: it joins the round like any member that rejoins.
            let generation = self.consumers[consumer as usize].generation_for_join();
            self.join_group(group, consumer, Some(new_id), Some(Box::from(instance_id)), Vec::new(), generation);
            return true;
        }
        let generation = g.generation;
        let resp = CoordinatorResponse::JoinGroup {
            consumer,
            result: Ok(JoinResult { member_id: new_id, generation, members: None }),
        };
        self.reply(group, consumer, resp);
        true
    }

    fn join_group(
        &mut self,
        group: u16,
        consumer: u16,
        member_id: Option<String>,
        instance_id: Option<Box<str>>,
        owned: Vec<Tp>,
        generation: i32,
    ) {
        let now = self.q.now();
        let cfg = &self.consumers[consumer as usize].spec.consumer;
        let (session_timeout, rebalance_timeout) = (cfg.session_timeout_ms * 1_000, cfg.max_poll_interval_ms * 1_000);
        let initial_delay = self.scenario.broker.group_initial_rebalance_delay_ms * 1_000;
        let node_name = self.history.node_name(self.consumers[consumer as usize].node).to_string();
        let g = &mut self.groups[group as usize];
        let member_id = match member_id {
            Some(id) if g.members.contains_key(&id) => id,
            Some(_) => {
                self.reply(
                    group,
                    consumer,
                    CoordinatorResponse::JoinGroup { consumer, result: Err(ErrorCode::UnknownMemberId) },
                );
                return;
            }
            None => {
                let serial = g.next_serial;
                g.next_serial += 1;
                let id = format!("{node_name}-{serial}");
                g.members.insert(
                    id.clone(),
                    Member {
                        serial,
                        consumer,
                        last_seen: now,
                        session_timeout,
                        rebalance_timeout,
                        awaiting_join: false,
                        owned: Vec::new(),
                        owned_generation: -1,
                        instance_id,
                    },
                );
                if g.leader.is_none() {
                    g.leader = Some(id.clone());
                }
                let load = g.load;
                self.q.schedule_at(now + session_timeout, Ev::SessionCheck { group, member: serial, load });
                id
            }
        };
        let m = g.members.get_mut(&member_id).expect("member present");
        m.awaiting_join = true;
        m.last_seen = now;
        m.owned = owned;
        m.owned_generation = generation;
        match g.state {
            GroupState::Empty => {
                g.initial_delay_pending = initial_delay > 0;
                self.start_rebalance(group, initial_delay);
            }
            GroupState::Stable | GroupState::CompletingRebalance => {
                let timeout = self.groups[group as usize].rebalance_timeout();
                self.start_rebalance(group, timeout);
            }
            GroupState::PreparingRebalance => {}
        }
        self.maybe_complete_join(group);
    }

    fn start_rebalance(&mut self, group: u16, deadline_in: Micros) {
        let node = self.coordinator_node(group);
        let g = &mut self.groups[group as usize];
        g.state = GroupState::PreparingRebalance;
        g.round += 1;
        let round = g.round;
        let gid = g.id;
        // Members waiting for their SyncGroup answer learn that a new rebalance began.
        let pending: Vec<String> = std::mem::take(&mut g.pending_sync);
        let generation = g.generation;
        let waiting: Vec<u16> = pending.iter().filter_map(|id| g.members.get(id).map(|m| m.consumer)).collect();
        self.stats.rebalances += 1;
        tracing::debug!(t = self.q.now(), group = %self.groups[group as usize].name, "rebalance started");
        self.record(node, Op::RebalanceStarted { group: gid });
        for consumer in waiting {
            self.reply(
                group,
                consumer,
                CoordinatorResponse::SyncGroup { consumer, generation, result: Err(ErrorCode::RebalanceInProgress) },
            );
        }
        let now = self.q.now();
        self.q.schedule_at(now + deadline_in, Ev::JoinDeadline { group, round });
    }

    fn maybe_complete_join(&mut self, group: u16) {
        let g = &self.groups[group as usize];
        if g.state == GroupState::PreparingRebalance
            && !g.initial_delay_pending
            && g.members.values().all(|m| m.awaiting_join)
        {
            self.complete_join(group);
        }
    }

    pub(crate) fn join_deadline(&mut self, group: u16, round: u32) {
        let up = self.coordinator_up(group);
        let g = &mut self.groups[group as usize];
        if g.round != round || g.state != GroupState::PreparingRebalance || !up {
            return;
        }
        g.initial_delay_pending = false;
        // Members that did not rejoin within the rebalance timeout are removed.
        let late: Vec<(String, u16)> =
            g.members.iter().filter(|(_, m)| !m.awaiting_join).map(|(id, m)| (id.clone(), m.consumer)).collect();
        for (id, consumer) in late {
            self.groups[group as usize].members.remove(&id);
            let node = self.consumers[consumer as usize].node;
            let gid = self.groups[group as usize].id;
            let host = self.coordinator_node(group);
            self.record(host, Op::MemberRemoved { group: gid, member: node, reason: LeaveReason::RebalanceTimeout });
        }
        self.complete_join(group);
    }

    fn complete_join(&mut self, group: u16) {
        let now = self.q.now();
        let g = &mut self.groups[group as usize];
        g.generation += 1;
        g.assignments.clear();
        if g.members.is_empty() {
            g.state = GroupState::Empty;
            g.leader = None;
            g.store();
            return;
        }
        g.state = GroupState::CompletingRebalance;
        if g.leader.as_ref().is_none_or(|l| !g.members.contains_key(l)) {
            g.leader = g.members.keys().next().cloned();
        }
        let leader = g.leader.clone().expect("a member leads");
        let metadata: Vec<MemberMetadata> = g
            .members
            .iter()
            .map(|(id, m)| MemberMetadata {
                member_id: id.clone(),
                owned: m.owned.clone(),
                generation: m.owned_generation,
            })
            .collect();
        let generation = g.generation;
        let mut replies = Vec::new();
        for (id, m) in g.members.iter_mut() {
            m.awaiting_join = false;
            m.last_seen = now;
            let members = (*id == leader).then(|| metadata.clone());
            replies.push((
                m.consumer,
                CoordinatorResponse::JoinGroup {
                    consumer: m.consumer,
                    result: Ok(JoinResult { member_id: id.clone(), generation, members }),
                },
            ));
        }
        for (consumer, resp) in replies {
            self.reply(group, consumer, resp);
        }
    }

    fn sync_group(
        &mut self,
        group: u16,
        consumer: u16,
        member_id: String,
        generation: i32,
        assignments: Option<Vec<(String, Vec<Tp>)>>,
    ) {
        let now = self.q.now();
        let node = self.coordinator_node(group);
        let g = &mut self.groups[group as usize];
        let error = match g.members.get_mut(&member_id) {
            None => Some(ErrorCode::UnknownMemberId),
            Some(_) if generation != g.generation => Some(ErrorCode::IllegalGeneration),
            Some(_) if g.state == GroupState::PreparingRebalance => Some(ErrorCode::RebalanceInProgress),
            Some(m) => {
                m.last_seen = now;
                None
            }
        };
        if let Some(e) = error {
            self.reply(group, consumer, CoordinatorResponse::SyncGroup { consumer, generation, result: Err(e) });
            return;
        }
        match g.state {
            GroupState::Stable => {
                let a = g.assignments.get(&member_id).cloned().unwrap_or_default();
                self.reply(group, consumer, CoordinatorResponse::SyncGroup { consumer, generation, result: Ok(a) });
            }
            GroupState::CompletingRebalance => {
                g.pending_sync.push(member_id.clone());
                if g.leader.as_ref() != Some(&member_id) {
                    return;
                }
                let Some(assignments) = assignments else { return };
                g.assignments = assignments.into_iter().collect();
                g.state = GroupState::Stable;
                g.store();
                let members: Vec<NodeId> =
                    g.members.values().map(|m| self.consumers[m.consumer as usize].node).collect();
                let gid = g.id;
                let replies: Vec<(u16, Vec<Tp>)> = std::mem::take(&mut g.pending_sync)
                    .into_iter()
                    .filter_map(|id| {
                        g.members.get(&id).map(|m| (m.consumer, g.assignments.get(&id).cloned().unwrap_or_default()))
                    })
                    .collect();
                tracing::debug!(t = now, group = %g.name, generation, members = members.len(), "generation started");
                self.record(node, Op::GenerationStarted { group: gid, generation, members });
                for (c, a) in replies {
                    self.reply(group, c, CoordinatorResponse::SyncGroup { consumer: c, generation, result: Ok(a) });
                }
            }
            GroupState::Empty | GroupState::PreparingRebalance => {}
        }
    }

    /// A member left or was removed: the rest rebalance.
    fn member_gone(&mut self, group: u16) {
        let g = &mut self.groups[group as usize];
        if g.leader.as_ref().is_some_and(|l| !g.members.contains_key(l)) {
            g.leader = None;
        }
        match g.state {
            // The last member gone: the generation ends with nobody in it (the group is Empty).
            GroupState::Stable | GroupState::CompletingRebalance if g.members.is_empty() => self.complete_join(group),
            GroupState::Stable | GroupState::CompletingRebalance => {
                let timeout = g.rebalance_timeout();
                self.start_rebalance(group, timeout);
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(group),
            GroupState::Empty => {}
        }
    }

    pub(crate) fn session_check(&mut self, group: u16, serial: u32, load: u32) {
        let now = self.q.now();
        if !self.coordinator_up(group) {
            return; // nobody runs the check; the next coordinator to load the group starts its own
        }
        let g = &mut self.groups[group as usize];
        if g.load != load {
            return; // a check of an earlier coordinator's
        }
        let Some(id) = g.member_by_serial(serial).cloned() else {
            return;
        };
        let m = &g.members[&id];
        // A member waiting for its JoinGroup answer is kept alive by the pending request.
        if m.awaiting_join {
            let at = now + m.session_timeout;
            self.q.schedule_at(at, Ev::SessionCheck { group, member: serial, load });
            return;
        }
        if now >= m.last_seen + m.session_timeout {
            let consumer = m.consumer;
            g.members.remove(&id);
            let gid = g.id;
            let node = self.consumers[consumer as usize].node;
            let host = self.coordinator_node(group);
            self.record(host, Op::MemberRemoved { group: gid, member: node, reason: LeaveReason::SessionTimeout });
            self.member_gone(group);
        } else {
            let at = m.last_seen + m.session_timeout;
            self.q.schedule_at(at, Ev::SessionCheck { group, member: serial, load });
        }
    }
}
