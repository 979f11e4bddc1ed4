//! The KRaft controller: a separate controller node that faults never crash. Brokers heartbeat
//! to it over the network every `broker.heartbeat.interval.ms` (one heartbeat in flight at a
//! time; one without an answer within `controller.socket.timeout.ms`, 30 s, closes the
//! connection and the next goes on a new one); a broker whose heartbeats have
//! not reached it for `broker.session.timeout.ms` (it crashed, or is cut off from the
//! controller) is fenced: it leaves the ISRs it is not the last member of, its leaderships move,
//! and so do the group coordinators it hosted. A fenced broker whose heartbeats arrive again is
//! unfenced. A restarted broker re-registers with a new incarnation, which fences the old one,
//! and is unfenced by its first heartbeat.
//!
//! The controller's decisions reach brokers and clients at once (no metadata propagation
//! delay); docs/architecture.md lists what that leaves out.

use super::Msg;
use crate::world::{Ev, World, disconnected};
use evsim_model::history::{DisconnectReason, GroupId, Micros, Op};

/// A broker's request timeout towards the controller (`controller.socket.timeout.ms`).
const CONTROLLER_SOCKET_TIMEOUT_US: Micros = 30_000_000;

impl World {
    /// Start the control plane: every broker's heartbeats and the controller's session checks.
    /// Only runs with faults (without them no broker can miss a heartbeat).
    pub(crate) fn controller_start(&mut self) {
        if !self.faulty {
            return;
        }
        let session = self.scenario.broker.broker_session_timeout_ms * 1_000;
        for b in 0..self.brokers.len() as u16 {
            self.broker_heartbeat_tick(b, 0);
            self.q.schedule_at(session, Ev::BrokerSessionCheck { broker: b });
        }
    }

    /// Broker `b`'s heartbeat is due: send it unless the previous one still waits for its
    /// answer, and schedule the next.
    pub(crate) fn broker_heartbeat_tick(&mut self, b: u16, incarnation: u32) {
        let now = self.now();
        let state = &mut self.brokers[b as usize];
        if !state.alive || state.incarnation != incarnation {
            return;
        }
        if state.heartbeat_in_flight.is_none() {
            state.heartbeat_seq += 1;
            let seq = state.heartbeat_seq;
            state.heartbeat_in_flight = Some(seq);
            let from = self.broker_nodes[b as usize];
            self.send_msg(from, self.controller_node, Msg::BrokerHeartbeat { broker: b, incarnation, seq });
            self.q.schedule_at(now + CONTROLLER_SOCKET_TIMEOUT_US, Ev::BrokerHeartbeatTimeout { broker: b, seq });
        }
        let at = now + self.scenario.broker.broker_heartbeat_interval_ms * 1_000;
        self.q.schedule_at(at, Ev::BrokerHeartbeatTick { broker: b, incarnation });
    }

    /// The controller receives a heartbeat: the broker's session is renewed, a fenced broker of
    /// the current incarnation is unfenced, and the controller answers.
    pub(crate) fn controller_heartbeat(&mut self, b: u16, incarnation: u32, seq: u32) {
        let now = self.now();
        let state = &mut self.brokers[b as usize];
        if incarnation != state.incarnation || !state.alive {
            return; // from an earlier life of the broker, delivered late
        }
        state.last_heartbeat = now;
        if state.fenced {
            self.unfence_broker(b);
        }
        let to = self.broker_nodes[b as usize];
        self.send_msg(self.controller_node, to, Msg::BrokerHeartbeatResponse { broker: b, seq });
    }

    /// The controller answered heartbeat `seq`: the next may go.
    pub(crate) fn broker_heartbeat_answered(&mut self, b: u16, seq: u32) {
        let state = &mut self.brokers[b as usize];
        if state.heartbeat_in_flight == Some(seq) {
            state.heartbeat_in_flight = None;
        }
    }

    /// Heartbeat `seq` got no answer within `controller.socket.timeout.ms`: the broker closes its
    /// connection to the controller; the next heartbeat opens a new one.
    pub(crate) fn broker_heartbeat_timeout(&mut self, b: u16, seq: u32) {
        let state = &mut self.brokers[b as usize];
        if !state.alive || state.heartbeat_in_flight != Some(seq) {
            return;
        }
        state.heartbeat_in_flight = None;
        let conn = self.data_conn(self.broker_nodes[b as usize], self.controller_node);
        self.close_connection(conn);
        self.record(conn.client, disconnected(conn.server, DisconnectReason::RequestTimeout, 1));
    }

    /// The controller checks broker `b`'s session: fence it if its last heartbeat is older than
    /// `broker.session.timeout.ms`, else look again when it would be.
    pub(crate) fn broker_session_check(&mut self, b: u16) {
        let now = self.now();
        let session = self.scenario.broker.broker_session_timeout_ms * 1_000;
        let state = &self.brokers[b as usize];
        let expires = state.last_heartbeat + session;
        if now >= expires {
            if !state.fenced {
                self.fence_broker(b);
            }
            self.q.schedule_at(now + session, Ev::BrokerSessionCheck { broker: b });
        } else {
            self.q.schedule_at(expires, Ev::BrokerSessionCheck { broker: b });
        }
    }

    /// The controller fences broker `b`: it leaves every ISR it is not the last member of, its
    /// partitions get new leaders, and the group coordinators it hosted move.
    pub(crate) fn fence_broker(&mut self, b: u16) {
        if self.brokers[b as usize].fenced {
            return;
        }
        self.brokers[b as usize].fenced = true;
        let node = self.broker_nodes[b as usize];
        self.record(self.controller_node, Op::BrokerFenced { broker: node });
        for g in 0..self.partitions.len() {
            let p = &mut self.partitions[g];
            if p.replica_index(b).is_none() {
                continue;
            }
            if p.isr.len() > 1 && p.isr.contains(&b) {
                p.isr.retain(|&r| r != b);
                self.record_isr(g);
            }
            if self.partitions[g].leader == Some(b) {
                self.elect_leader(g);
            } else {
                self.advance_high_watermark(g);
            }
        }
        for group in 0..self.groups.len() as u16 {
            if self.groups[group as usize].host == Some(b) {
                self.move_coordinator(group);
            }
        }
    }

    /// The controller unfences broker `b`: offline partitions it can lead get it as leader, and
    /// so do coordinators that had nowhere to go.
    fn unfence_broker(&mut self, b: u16) {
        self.brokers[b as usize].fenced = false;
        let node = self.broker_nodes[b as usize];
        self.record(self.controller_node, Op::BrokerUnfenced { broker: node });
        for g in 0..self.partitions.len() {
            if self.partitions[g].leader.is_none() && self.partitions[g].replica_index(b).is_some() {
                self.elect_leader(g);
            }
        }
        for group in 0..self.groups.len() as u16 {
            if self.groups[group as usize].host.is_none() {
                self.move_coordinator(group);
            }
        }
    }

    /// Whether broker `b` is eligible to lead as the controller sees it: registered and not
    /// fenced.
    pub(crate) fn eligible(&self, b: u16) -> bool {
        !self.brokers[b as usize].fenced
    }

    /// Whether broker `b`'s requests to the controller (AlterPartition) get through: it is not
    /// fenced and no partition stands between them. A leader that cannot reach the controller
    /// cannot change its ISR (KRaft), so its ISR stays as it was.
    pub(crate) fn reaches_controller(&self, b: u16) -> bool {
        let node = self.broker_nodes[b as usize];
        let state = &self.brokers[b as usize];
        state.alive
            && !state.fenced
            && !self.net.rules.iter().any(|r| {
                r.kind == evsim_model::scenario::FaultKind::NetworkPartition
                    && r.matches_pair(node, self.controller_node)
            })
    }

    /// The leadership of `group`'s `__consumer_offsets` partition moves: to the first eligible
    /// replica in assignment order, or nowhere (COORDINATOR_NOT_AVAILABLE). The new coordinator
    /// loads the group from the log: the last generation it stored, its members with fresh
    /// sessions, and every committed offset (commits are taken as replicated to every replica).
    pub(crate) fn move_coordinator(&mut self, group: u16) {
        let g = &self.groups[group as usize];
        let next = g.offsets_replicas.iter().copied().find(|&r| self.eligible(r));
        if next == g.host {
            return;
        }
        // The old coordinator unloads the group: members waiting for their JoinGroup or
        // SyncGroup answer get NOT_COORDINATOR (Kafka's `onGroupUnloaded`), if it is alive to say so.
        if let Some(old) = g.host
            && self.brokers[old as usize].alive
        {
            for (consumer, resp) in self.groups[group as usize].unload_answers() {
                self.reply_from(old, consumer, resp);
            }
        }
        let now = self.now();
        let g = &mut self.groups[group as usize];
        g.host = next;
        let (gid, checks) = if next.is_some() { g.load(now) } else { (g.id, Vec::new()) };
        for (member, load, at) in checks {
            self.q.schedule_at(at, Ev::SessionCheck { group, member, load });
        }
        let coordinator = next.map(|b| self.broker_nodes[b as usize]);
        self.record(self.controller_node, Op::Coordinator { group: gid, coordinator });
    }

    /// Record where every group's coordinator is when the run starts.
    pub(crate) fn record_coordinators(&mut self) {
        for g in 0..self.groups.len() {
            let coordinator = self.groups[g].host.map(|b| self.broker_nodes[b as usize]);
            self.record(self.controller_node, Op::Coordinator { group: GroupId(g as u16), coordinator });
        }
    }
}
