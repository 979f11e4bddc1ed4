//! Group membership: joining (eager and cooperative), SyncGroup and the assignment, fetching
//! committed offsets, heartbeats, and losing partitions when fenced.

use super::{CommitKind, Membership};
use crate::cluster::assignor::{self, Subscription};
use crate::cluster::{CoordinatorRequest, CoordinatorResponse, JoinResult};
use crate::world::{Ev, World};
use evsim_model::history::{DisconnectReason, ErrorCode, Op, TopicId, Tp};
use evsim_model::scenario::{AssignmentStrategy, OffsetReset};

impl World {
    /// Fenced or expelled: partitions are lost (`onPartitionsLost`) and the generation reset.
    pub(super) fn lose_partitions(&mut self, c: u16, forget_member: bool) {
        let cons = &mut self.consumers[c as usize];
        cons.reset_generation(forget_member);
        self.revoke_all(c);
    }
    pub(super) fn revoke_all(&mut self, c: u16) {
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
    pub(super) fn begin_join(&mut self, c: u16) {
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
    pub(super) fn do_join(&mut self, c: u16) {
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
    pub(crate) fn consumer_coordinator_response(&mut self, broker: u16, resp: CoordinatorResponse) {
        let consumer = match &resp {
            CoordinatorResponse::JoinGroup { consumer, .. }
            | CoordinatorResponse::SyncGroup { consumer, .. }
            | CoordinatorResponse::Heartbeat { consumer, .. }
            | CoordinatorResponse::OffsetCommit { consumer, .. }
            | CoordinatorResponse::OffsetFetch { consumer, .. } => *consumer,
        };
        if self.consumers[consumer as usize].coordinator != Some(broker) {
            return; // from a coordinator this consumer has given up (its connection is closed)
        }
        match resp {
            CoordinatorResponse::JoinGroup { consumer, result } => self.on_join(consumer, result),
            CoordinatorResponse::SyncGroup { consumer, generation, result } => {
                self.on_sync(consumer, generation, result)
            }
            CoordinatorResponse::Heartbeat { consumer, generation, error } => {
                let now = self.now();
                let cons = &mut self.consumers[consumer as usize];
                cons.last_coordinator_answer = now;
                cons.heartbeat_sent = None;
                if let Some(e) = error
                    && super::coordinator_error(e)
                {
                    return self.coordinator_dead(consumer, DisconnectReason::CoordinatorUnknown);
                }
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
            CoordinatorResponse::OffsetCommit { consumer, commit, generation, error, .. } => {
                self.commit_done(consumer, commit, generation, error, false);
                if let Some(e) = error
                    && super::coordinator_error(e)
                {
                    self.coordinator_dead(consumer, DisconnectReason::CoordinatorUnknown);
                }
            }
            CoordinatorResponse::OffsetFetch { consumer, generation, offsets } => {
                self.on_offsets(consumer, generation, offsets)
            }
        }
    }
    pub(super) fn on_join(&mut self, c: u16, result: Result<JoinResult, ErrorCode>) {
        let now = self.now();
        let cons = &mut self.consumers[c as usize];
        if cons.membership != Membership::Joining {
            return;
        }
        let join = match result {
            Ok(j) => j,
            Err(e) if super::coordinator_error(e) => {
                // Look for the coordinator and join there, keeping member id and generation.
                cons.membership = Membership::Unjoined;
                self.coordinator_dead(c, DisconnectReason::CoordinatorUnknown);
                return self.poll_step(c);
            }
            Err(e) => {
                cons.reset_generation(e == ErrorCode::UnknownMemberId);
                return self.poll_step(c);
            }
        };
        cons.member_id = Some(join.member_id.clone());
        cons.generation = join.generation;
        cons.membership = Membership::Syncing;
        cons.last_coordinator_answer = now;
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
    pub(super) fn on_sync(&mut self, c: u16, generation: i32, result: Result<Vec<Tp>, ErrorCode>) {
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
            Err(e) if super::coordinator_error(e) => {
                cons.membership = Membership::Unjoined;
                self.coordinator_dead(c, DisconnectReason::CoordinatorUnknown);
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
        cons.last_coordinator_answer = now;
        if missing.is_empty() {
            cons.membership = Membership::Stable;
            self.poll_step(c);
        } else {
            cons.membership = Membership::AwaitingOffsets;
            let req = CoordinatorRequest::OffsetFetch { group: group.0, consumer: c, partitions: missing, generation };
            self.send_to_coordinator(c, req);
        }
    }
    pub(super) fn on_offsets(&mut self, c: u16, generation: i32, offsets: Result<Vec<(Tp, Option<u64>)>, ErrorCode>) {
        let cons = &self.consumers[c as usize];
        if cons.membership != Membership::AwaitingOffsets || generation != cons.generation {
            return;
        }
        let offsets = match offsets {
            Ok(o) => o,
            // The coordinator moved: ask the new one for the same offsets.
            Err(_) => return self.coordinator_dead(c, DisconnectReason::CoordinatorUnknown),
        };
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
        // The heartbeat thread takes the coordinator for dead when a heartbeat got no answer
        // within `request.timeout.ms` (the request fails), or when no answer came for a whole
        // session ("session timed out without receiving a heartbeat response").
        let request_timeout = cons.spec.consumer.request_timeout_ms * 1_000;
        let session = cons.spec.consumer.session_timeout_ms * 1_000;
        if cons.coordinator.is_some() {
            if cons.heartbeat_sent.is_some_and(|t| now >= t + request_timeout) {
                self.coordinator_dead(c, DisconnectReason::RequestTimeout);
            } else if now >= cons.last_coordinator_answer + session {
                self.coordinator_dead(c, DisconnectReason::CoordinatorUnknown);
            }
        }
        let cons = &mut self.consumers[c as usize];
        if cons.coordinator.is_some() && cons.heartbeat_sent.is_none() {
            cons.heartbeat_sent = Some(now);
        }
        let req =
            CoordinatorRequest::Heartbeat { group: cons.group.0, consumer: c, member_id, generation: cons.generation };
        self.send_to_coordinator(c, req);
        self.q.schedule_at(now + interval, Ev::HeartbeatTick { consumer: c, epoch });
    }
}
