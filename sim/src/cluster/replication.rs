//! Replication: followers fetching from leaders, the ISR (`replica.lag.time.max.ms`), the high
//! watermark, broker crashes (the unflushed tail is lost) and restarts, and leader election from
//! the ISR (or from any replica with `unclean.leader.election.enable`), with followers
//! truncating to the new leader's log end (KIP-101). Fencing and unfencing are the
//! controller's (`controller.rs`); an ISR change needs the controller too (AlterPartition), so
//! a leader cut off from it keeps its ISR as it was.

use super::{Msg, ReplicaFetchRequest, ReplicaFetchResponse};
use crate::world::{Ev, World, disconnected};
use evsim_model::history::{DisconnectReason, NodeId, Op};

/// Records a follower copies per partition and fetch (`replica.fetch.max.bytes`, 1 MiB).
const REPLICA_FETCH_MAX_RECORDS: u64 = 1_048_576 / super::RECORD_BYTES;

impl World {
    /// Whether any topic is replicated (followers exist, so fetchers and the ISR check run).
    pub(crate) fn replicated(&self) -> bool {
        self.partitions.iter().any(|p| p.replicas.len() > 1)
    }

    /// Start the replication machinery: every follower's fetchers, the ISR check and the flush
    /// timer (when a broker can crash).
    pub(crate) fn replication_start(&mut self) {
        if self.replicated() {
            for f in 0..self.brokers.len() as u16 {
                self.start_fetchers(f);
            }
            let every = self.scenario.broker.replica_lag_time_max_ms * 1_000 / 2;
            self.q.schedule_at(every, Ev::IsrCheck);
        }
        if self.faults_plan.iter().any(|f| f.kind == evsim_model::scenario::FaultKind::BrokerCrash) {
            self.q.schedule_at(self.scenario.broker.log_flush_interval_ms * 1_000, Ev::Flush);
        }
    }

    /// Make sure follower `f` has a fetch going to every leader it follows.
    pub(crate) fn start_fetchers(&mut self, f: u16) {
        if !self.brokers[f as usize].alive {
            return;
        }
        for l in 0..self.brokers.len() as u16 {
            if l != f && self.brokers[f as usize].fetchers[l as usize].is_none() {
                self.send_replica_fetch(f, l);
            }
        }
    }

    /// Follower `f` asks leader `l` for what it lacks of every partition `l` leads and `f`
    /// follows; nothing is sent when there is no such partition.
    fn send_replica_fetch(&mut self, f: u16, l: u16) {
        let mut partitions = Vec::new();
        for (g, p) in self.partitions.iter().enumerate() {
            if p.leader == Some(l)
                && let Some(i) = p.replica_index(f)
            {
                partitions.push((g, p.leo[i]));
            }
        }
        let b = &mut self.brokers[f as usize];
        if partitions.is_empty() {
            b.fetchers[l as usize] = None;
            return;
        }
        let fetch = b.next_fetch;
        b.next_fetch += 1;
        b.fetchers[l as usize] = Some(fetch);
        if self.faulty {
            let at = self.now() + self.scenario.broker.replica_socket_timeout_ms * 1_000;
            self.q.schedule_at(at, Ev::ReplicaFetchTimeout { follower: f, leader: l, fetch });
        }
        let (from, to) = (self.broker_nodes[f as usize], self.broker_nodes[l as usize]);
        self.send_msg(from, to, Msg::ReplicaFetch(ReplicaFetchRequest { follower: f, leader: l, fetch, partitions }));
    }

    /// A follower's fetch got no answer within `replica.socket.timeout.ms`: close the
    /// connection and try again.
    pub(crate) fn replica_fetch_timeout(&mut self, f: u16, l: u16, fetch: u64) {
        if self.brokers[f as usize].alive && self.brokers[f as usize].fetchers[l as usize] == Some(fetch) {
            let conn = self.data_conn(self.broker_nodes[f as usize], self.broker_nodes[l as usize]);
            self.close_connection(conn);
            self.client_disconnected(conn, DisconnectReason::RequestTimeout, None);
        }
    }

    /// Follower `f`'s connection to leader `l` broke with a fetch in flight: fetch again.
    pub(crate) fn replica_fetch_lost(&mut self, f: u16, l: u16, reason: DisconnectReason) {
        if self.brokers[f as usize].alive && self.brokers[f as usize].fetchers[l as usize].is_some() {
            let (client, server) = (self.broker_nodes[f as usize], self.broker_nodes[l as usize]);
            self.record(client, disconnected(server, reason, 1));
            self.send_replica_fetch(f, l);
        }
    }

    /// The leader learns each follower's log end from its fetch offset, updates the ISR and
    /// the high watermark, then answers with what there is to copy (or parks the fetch).
    pub(crate) fn broker_replica_fetch(&mut self, req: ReplicaFetchRequest) {
        let now = self.now();
        let l = req.leader;
        // The ISR grows by the leader's AlterPartition, which needs the controller, and the
        // controller refuses a fenced follower (KIP-841).
        let controller_ok = self.reaches_controller(l);
        let follower_eligible = self.eligible(req.follower);
        let mut moved = Vec::new();
        let mut expanded = Vec::new();
        let mut has_data = false;
        for &(g, offset) in &req.partitions {
            let p = &mut self.partitions[g];
            if p.leader != Some(l) {
                continue;
            }
            let Some(i) = p.replica_index(req.follower) else { continue };
            let offset = offset.min(p.log_end());
            p.fetched[i] = offset;
            let (end_then, at) = p.fetch_end[i];
            if offset >= p.log_end() {
                p.caught_up[i] = now;
            } else if offset >= end_then {
                p.caught_up[i] = p.caught_up[i].max(at);
            }
            p.fetch_end[i] = (p.log_end(), now);
            // A follower that has caught up to the high watermark rejoins the ISR.
            if !p.isr.contains(&req.follower) && offset >= p.high_watermark && controller_ok && follower_eligible {
                p.isr.push(req.follower);
                p.isr.sort_unstable();
                expanded.push(g);
            }
            if offset < p.log_end() {
                has_data = true;
            }
            moved.push(g);
        }
        for g in expanded {
            self.record_isr(g);
        }
        for g in moved {
            self.advance_high_watermark(g);
        }
        if has_data {
            self.answer_replica_fetch(req);
        } else {
            let deadline = now + self.scenario.broker.replica_fetch_wait_max_ms * 1_000;
            self.park_replica_fetch(req, deadline);
        }
    }

    /// Answer a follower's fetch with the log end it may copy up to, per partition.
    pub(crate) fn answer_replica_fetch(&mut self, req: ReplicaFetchRequest) {
        let mut partitions = Vec::with_capacity(req.partitions.len());
        for &(g, offset) in &req.partitions {
            let p = &self.partitions[g];
            if p.leader != Some(req.leader) {
                continue;
            }
            let end = p.log_end().min(offset + REPLICA_FETCH_MAX_RECORDS).max(offset);
            partitions.push((g, p.leader_epoch, offset, end));
        }
        let resp = ReplicaFetchResponse { follower: req.follower, leader: req.leader, fetch: req.fetch, partitions };
        let (from, to) = (self.broker_nodes[req.leader as usize], self.broker_nodes[req.follower as usize]);
        self.send_msg(from, to, Msg::ReplicaFetchResponse(resp));
    }

    /// The follower copies what the leader offered (if the leader epoch still holds) and fetches
    /// again at once.
    pub(crate) fn follower_fetch_response(&mut self, resp: ReplicaFetchResponse) {
        let f = resp.follower;
        if self.brokers[f as usize].fetchers[resp.leader as usize] != Some(resp.fetch) {
            return; // stale: the fetcher was restarted
        }
        for (g, epoch, offset, end) in resp.partitions {
            let p = &mut self.partitions[g];
            if p.leader_epoch != epoch {
                continue;
            }
            if let Some(i) = p.replica_index(f)
                && p.leo[i] == offset
            {
                p.leo[i] = end.min(p.log_end());
            }
        }
        self.send_replica_fetch(f, resp.leader);
    }

    /// Every `replica.lag.time.max.ms / 2`: followers that have not caught up within
    /// `replica.lag.time.max.ms` leave the ISR (which may let the high watermark move).
    pub(crate) fn isr_check(&mut self) {
        let now = self.now();
        let lag = self.scenario.broker.replica_lag_time_max_ms * 1_000;
        let mut shrunk = Vec::new();
        let reaches: Vec<bool> = (0..self.brokers.len() as u16).map(|b| self.reaches_controller(b)).collect();
        let paused: Vec<bool> = self.brokers.iter().map(|b| b.paused_until > now).collect();
        for (g, p) in self.partitions.iter_mut().enumerate() {
            let Some(leader) = p.leader else { continue };
            if !reaches[leader as usize] || paused[leader as usize] {
                continue; // its AlterPartition cannot reach the controller, or it is stopped
            }
            let before = p.isr.len();
            let (replicas, caught_up) = (&p.replicas, &p.caught_up);
            p.isr.retain(|&b| {
                b == leader
                    || replicas.iter().position(|&r| r == b).is_none_or(|i| now.saturating_sub(caught_up[i]) <= lag)
            });
            if p.isr.len() != before {
                shrunk.push(g);
            }
        }
        for g in shrunk {
            self.record_isr(g);
            self.advance_high_watermark(g);
        }
        self.q.schedule_at(now + lag / 2, Ev::IsrCheck);
    }

    /// Record partition `g`'s ISR after it changed (the leader's AlterPartition).
    pub(crate) fn record_isr(&mut self, g: usize) {
        let p = &self.partitions[g];
        let (tp, isr) = (p.tp, p.isr.iter().map(|&b| self.broker_nodes[b as usize]).collect());
        let node = p.leader.map_or(NodeId(0), |l| self.broker_nodes[l as usize]);
        self.record(node, Op::IsrChanged { tp, isr });
    }

    /// The OS (or `log.flush.interval.ms`) writes every live replica's log to disk.
    pub(crate) fn flush(&mut self) {
        for p in &mut self.partitions {
            for i in 0..p.replicas.len() {
                if self.brokers[p.replicas[i] as usize].alive {
                    p.flushed[i] = if p.leader == Some(p.replicas[i]) { p.log.len() as u64 } else { p.leo[i] };
                }
            }
        }
        let at = self.now() + self.scenario.broker.log_flush_interval_ms * 1_000;
        self.q.schedule_at(at, Ev::Flush);
    }

    /// Broker `b`'s machine dies: what it had not flushed is gone from its replicas, and
    /// everything in its memory (waiting fetches and produces, its fetchers) with it; segments
    /// sent to it are lost. Its heartbeats stop: the controller fences it after
    /// `broker.session.timeout.ms`.
    pub(crate) fn crash_broker(&mut self, b: u16) {
        let mut recovered = Vec::new();
        for (g, p) in self.partitions.iter_mut().enumerate() {
            let Some(i) = p.replica_index(b) else { continue };
            let end = p.replica_end(i);
            let kept = end.min(p.flushed[i]);
            p.leo[i] = kept;
            recovered.push((g, kept, end - kept));
        }
        let state = &mut self.brokers[b as usize];
        state.crash();
        state.recovered = recovered;
        self.net.set_down(self.broker_nodes[b as usize], true);
    }

    /// Choose a new leader for `g` (its leader is dead or it is offline): the first live ISR
    /// member in replica order; failing that, with `unclean.leader.election.enable`, the first
    /// live replica; failing that, the partition goes offline.
    pub(crate) fn elect_leader(&mut self, g: usize) {
        let unclean_ok = self.scenario.broker.unclean_leader_election_enable;
        let p = &self.partitions[g];
        let eligible = |b: u16| self.eligible(b);
        let clean = p.replicas.iter().copied().find(|&r| p.isr.contains(&r) && eligible(r));
        let choice = match clean {
            Some(n) => Some((n, false)),
            None if unclean_ok => p.replicas.iter().copied().find(|&r| eligible(r)).map(|n| (n, true)),
            None => None,
        };
        let old = p.leader;
        // A live old leader steps down: from now on its log end is its own replica's (a dead
        // one's was set when its machine died).
        if let Some(o) = old
            && self.brokers[o as usize].alive
        {
            let p = &mut self.partitions[g];
            let (end, i) = (p.log_end(), p.replica_index(o).expect("the leader is a replica"));
            p.leo[i] = end;
        }
        let Some((n, unclean)) = choice else {
            if old.is_some() {
                let tp = self.partitions[g].tp;
                self.partitions[g].leader = None;
                self.record(
                    evsim_model::history::NodeId(0),
                    Op::LeaderElected {
                        tp,
                        leader: None,
                        epoch: self.partitions[g].leader_epoch,
                        log_end: 0,
                        unclean: false,
                    },
                );
            }
            return;
        };
        let now = self.now();
        let alive = self.brokers[n as usize].alive;
        let p = &mut self.partitions[g];
        let i = p.replica_index(n).expect("a replica");
        if !alive {
            // The controller does not know yet that the broker it chose is dead (its session has
            // not expired): the partition is led by a dead broker, and nobody can fetch from it
            // to learn where to truncate. Nothing is truncated until a live leader serves.
            p.leader = Some(n);
            p.leader_epoch += 1;
            let (tp, epoch, log_end) = (p.tp, p.leader_epoch, p.leo[i]);
            let node = self.broker_nodes[n as usize];
            self.record(node, Op::LeaderElected { tp, leader: Some(node), epoch, log_end, unclean });
            if let Some(o) = old
                && o != n
                && self.brokers[o as usize].alive
            {
                self.complete_delayed(o, g, Some(evsim_model::history::ErrorCode::NotLeaderOrFollower));
            }
            self.after_metadata_change();
            return;
        }
        // The new leader's log is the prefix it holds; everyone else truncates to it.
        let end = if p.leader == Some(n) { p.log_end() } else { p.leo[i] };
        p.log.truncate(end as usize);
        while p.batches.last().is_some_and(|m| m.base_offset >= end) {
            p.batches.pop();
        }
        for r in 0..p.replicas.len() {
            p.leo[r] = p.leo[r].min(end);
            p.flushed[r] = p.flushed[r].min(end);
            p.fetched[r] = p.fetched[r].min(end);
            p.caught_up[r] = now;
            p.fetch_end[r] = (end, now);
        }
        p.leo[i] = end;
        p.high_watermark = p.high_watermark.min(end);
        if unclean {
            p.isr = vec![n];
        }
        p.leader = Some(n);
        p.leader_epoch += 1;
        let (tp, epoch) = (p.tp, p.leader_epoch);
        let node = self.broker_nodes[n as usize];
        self.record(node, Op::LeaderElected { tp, leader: Some(node), epoch, log_end: end, unclean });
        if let Some(o) = old
            && o != n
            && self.brokers[o as usize].alive
        {
            self.complete_delayed(o, g, Some(evsim_model::history::ErrorCode::NotLeaderOrFollower));
        }
        self.advance_high_watermark(g);
        let followers: Vec<u16> = self.partitions[g].replicas.iter().copied().filter(|&r| r != n).collect();
        for f in followers {
            self.start_fetchers(f);
        }
        self.after_metadata_change();
    }

    /// Broker `b` comes back: it registers with the controller under a new incarnation (which
    /// fences the old one at once, if the controller had not noticed yet: its leaderships end),
    /// its replicas recover their flushed logs, it starts following the others and
    /// heartbeating; its first heartbeat to reach the controller unfences it.
    pub(crate) fn restart_broker(&mut self, b: u16) {
        self.fence_broker(b);
        let node = self.broker_nodes[b as usize];
        for (g, kept, lost) in std::mem::take(&mut self.brokers[b as usize].recovered) {
            let tp = self.partitions[g].tp;
            let log_end = kept.min(self.partitions[g].leo[self.partitions[g].replica_index(b).expect("replica")]);
            self.record(node, Op::LogRecovered { tp, log_end, lost });
        }
        let state = &mut self.brokers[b as usize];
        state.alive = true;
        let incarnation = state.incarnation;
        for p in &mut self.partitions {
            if let Some(i) = p.replica_index(b) {
                p.flushed[i] = p.leo[i];
            }
        }
        self.net.set_down(node, false);
        self.reset_connections_to(b);
        self.start_fetchers(b);
        self.broker_heartbeat_tick(b, incarnation);
    }

    /// A restarted broker answers packets of its old connections with a reset: every client
    /// with a request in flight to it learns at once that the request is lost (no need to wait
    /// for its timeout), and tries again; idle connections need a new handshake when next used.
    fn reset_connections_to(&mut self, b: u16) {
        let node = self.broker_nodes[b as usize];
        self.close_connections_of(node);
        for client in 1..self.controller_node.0 {
            let client = NodeId(client);
            if client == node {
                continue;
            }
            for chan in [crate::net::Channel::Data, crate::net::Channel::Coordinator] {
                let conn = crate::net::Conn { client, server: node, chan };
                self.client_disconnected(conn, DisconnectReason::Reset, None);
            }
        }
    }

    /// Clients learn of leadership changes (a metadata refresh): producers may send to the new
    /// leaders.
    pub(crate) fn after_metadata_change(&mut self) {
        for p in 0..self.producers.len() as u16 {
            if self.producer_alive(p) {
                self.producer_drain(p);
            }
        }
    }
}
