//! The network between the run's nodes, as Linux TCP under Kafka's clients shows it
//! (KAFKA-SEMANTICS.md, "Network"): latency with jitter, in order per connection, and one
//! mechanism for every kind of trouble.
//!
//! - A partition, a lost segment and a machine that is down all **drop segments**; none of them
//!   closes a connection. The sender retransmits the first unacknowledged segment with
//!   exponential back-off (RTO = SRTT + max(4 RTTVAR, 200 ms), doubling, capped at 120 s), and
//!   what was sent after it waits behind it, in order. When a retransmission gets through, the
//!   queue follows. A 2 ms partition costs about 200 ms; a 60 s one, about a minute more.
//! - A connection ends only when its client closes it (a request timeout, as the Java
//!   `NetworkClient` does), when the peer resets it (a broker that restarted), or when TCP gives
//!   up after `tcp_retries2` (15) retransmissions, about 15 minutes.
//! - A new connection needs a handshake: the SYN is retransmitted from a 1 s timeout (doubling);
//!   the client gives an attempt up after `socket.connection.setup.timeout.ms` (doubling per
//!   consecutive failure up to its max) and tries again after `reconnect.backoff.ms`. Requests
//!   a client hands to a connection that is not established wait for it (the Java consumer's
//!   unsent requests); the producer does not hand any (its sender waits for `ready()`).
//! - A run starts with every connection established.
//!
//! Fault rules decide each transmission's fate when it is sent; a message already on the wire
//! when a partition starts still arrives.

use crate::cluster::Msg;
use crate::faults::NetRule;
use crate::kernel::SimRng;
use crate::world::{Ev, World};
use evsim_model::history::{DisconnectReason, Micros, NodeId, Op};
use evsim_model::scenario::{ConnectionConfig, Direction, FaultKind};
use std::collections::{BTreeMap, VecDeque};

/// Linux's minimum retransmission timeout (`TCP_RTO_MIN`).
pub(crate) const TCP_RTO_MIN_US: Micros = 200_000;
/// The cap of the retransmission back-off (`TCP_RTO_MAX`).
pub(crate) const TCP_RTO_MAX_US: Micros = 120_000_000;
/// The SYN's first retransmission timeout (`TCP_TIMEOUT_INIT`).
pub(crate) const TCP_SYN_RTO_US: Micros = 1_000_000;
/// Retransmissions of one segment before TCP aborts the connection (`tcp_retries2`).
pub(crate) const TCP_RETRIES2: u32 = 15;

/// Which of a client's connections to a node a message travels on: Kafka's clients keep the
/// group coordinator's connection apart from the data connection to the same broker.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Channel {
    Data,
    Coordinator,
}

/// A connection: the client that opened it, the server, and which of the client's connections.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Conn {
    pub client: NodeId,
    pub server: NodeId,
    pub chan: Channel,
}

/// One direction of a connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Link {
    pub from: NodeId,
    pub to: NodeId,
    pub chan: Channel,
}

impl Conn {
    fn links(self) -> [Link; 2] {
        [
            Link { from: self.client, to: self.server, chan: self.chan },
            Link { from: self.server, to: self.client, chan: self.chan },
        ]
    }
}

/// A connection that is not established.
#[derive(Debug)]
enum Setup {
    /// Closed by its client or reset: the next request opens a new one, not before `retry_at`
    /// (`reconnect.backoff.ms`).
    Closed { retry_at: Micros, failures: u32 },
    /// The handshake is under way; `pending` requests wait for it.
    Connecting { started: Micros, syn_rto: Micros, syns: u32, failures: u32, pending: Vec<Msg> },
}

#[derive(Debug, Default)]
struct ConnState {
    /// Bumped whenever the connection closes or a new attempt starts, so that timers of an
    /// earlier one are recognised.
    epoch: u32,
    /// `None`: established.
    setup: Option<Setup>,
}

/// A direction of a connection whose first unacknowledged segment was dropped.
#[derive(Debug)]
struct Stall {
    conn: Conn,
    /// Unique per stall: its retransmission timer carries it.
    id: u32,
    /// The dropped segment first, then everything sent after it.
    queue: VecDeque<Msg>,
    rto: Micros,
    retransmissions: u32,
    since: Micros,
}

/// What happens to one transmission.
enum Fate {
    Dropped,
    /// It arrives after the link's latency plus this much (network-delay faults).
    Arrives(Micros),
}

/// The network's state.
pub(crate) struct Net {
    latency: Micros,
    jitter: Micros,
    rng: SimRng,
    /// Last delivery time per (from, to) node pair, to keep each connection in order.
    last: Vec<Micros>,
    nodes: usize,
    /// The active network faults.
    pub(crate) rules: Vec<NetRule>,
    /// Connections that were closed at least once (absent: established since the start).
    conns: BTreeMap<Conn, ConnState>,
    /// Per (client, server) node pair: its connections that are not established. A message
    /// between a pair with none, no stall and no fault takes the fast path.
    unsettled: Vec<u16>,
    stalls: BTreeMap<Link, Stall>,
    next_stall: u32,
    /// Nodes whose machine is down (a crashed broker): segments to and from them are dropped.
    down: Vec<bool>,
    down_count: u32,
    /// The connection settings of each node's clients (brokers use Kafka's defaults).
    connection: Vec<ConnectionConfig>,
}

impl Net {
    pub(crate) fn new(
        latency: Micros,
        jitter: Micros,
        rng: SimRng,
        nodes: usize,
        connection: Vec<ConnectionConfig>,
    ) -> Self {
        Self {
            latency,
            jitter,
            rng,
            last: vec![0; nodes * nodes],
            nodes,
            rules: Vec::new(),
            conns: BTreeMap::new(),
            unsettled: vec![0; nodes * nodes],
            stalls: BTreeMap::new(),
            next_stall: 0,
            down: vec![false; nodes],
            down_count: 0,
            connection,
        }
    }

    /// Nothing unusual between `a` and `b`: a message between them takes the fast path.
    #[inline]
    pub(crate) fn quiet(&self, a: NodeId, b: NodeId) -> bool {
        self.rules.is_empty()
            && self.stalls.is_empty()
            && self.down_count == 0
            && self.unsettled[self.pair(a, b)] == 0
            && self.unsettled[self.pair(b, a)] == 0
    }

    #[inline]
    fn pair(&self, client: NodeId, server: NodeId) -> usize {
        client.0 as usize * self.nodes + server.0 as usize
    }

    /// `conn` stops (`+1`) or starts again (`-1`) being established.
    fn settle(&mut self, conn: Conn, delta: i32) {
        let slot = self.pair(conn.client, conn.server);
        self.unsettled[slot] = (i32::from(self.unsettled[slot]) + delta) as u16;
    }

    /// When a message sent now from `from` to `to` arrives.
    #[inline]
    pub(crate) fn arrival(&mut self, now: Micros, from: NodeId, to: NodeId) -> Micros {
        let d = if self.jitter == 0 { self.latency } else { self.rng.jitter(self.latency, self.jitter) };
        let slot = from.0 as usize * self.nodes + to.0 as usize;
        let at = (now + d).max(self.last[slot]);
        self.last[slot] = at;
        at
    }

    /// Whether `conn` is established.
    #[inline]
    pub(crate) fn established(&self, conn: Conn) -> bool {
        self.unsettled[self.pair(conn.client, conn.server)] == 0
            || self.conns.get(&conn).is_none_or(|s| s.setup.is_none())
    }

    /// The machine of `node` goes down (`true`) or comes back.
    pub(crate) fn set_down(&mut self, node: NodeId, down: bool) {
        let d = &mut self.down[node.0 as usize];
        if *d != down {
            *d = down;
            if down {
                self.down_count += 1;
                // Its TCP stack is gone: nothing it was retransmitting will be sent.
                self.stalls.retain(|l, _| l.from != node);
            } else {
                self.down_count -= 1;
            }
        }
    }

    fn is_down(&self, node: NodeId) -> bool {
        self.down_count > 0 && self.down[node.0 as usize]
    }

    /// An exponential back-off as the Java client computes it (`ExponentialBackoff`, multiplier
    /// 2, jitter 0.2): `base` doubled per failure, times a factor drawn from 0.8..1.2, then
    /// capped at `max`; without jitter when `base` is not below `max`.
    fn backoff(&mut self, base: Micros, max: Micros, failures: u32) -> Micros {
        if base >= max {
            return base;
        }
        let raw = base.saturating_mul(1u64 << failures.min(40)) as f64;
        let jitter = 0.8 + 0.4 * self.rng.unit_f64();
        ((raw * jitter) as Micros).min(max)
    }

    fn reconnect_backoff(&mut self, client: NodeId, failures: u32) -> Micros {
        let c = self.connection[client.0 as usize];
        self.backoff(c.reconnect_backoff_ms * 1_000, c.reconnect_backoff_max_ms * 1_000, failures)
    }

    fn setup_timeout(&mut self, client: NodeId, failures: u32) -> Micros {
        let c = self.connection[client.0 as usize];
        self.backoff(c.setup_timeout_ms * 1_000, c.setup_timeout_max_ms * 1_000, failures)
    }
}

impl NetRule {
    /// Whether the rule acts on a message from `from` to `to`.
    pub(crate) fn matches(&self, from: NodeId, to: NodeId) -> bool {
        let hits = |a: NodeId, b: NodeId| a == self.target && self.peer.is_none_or(|p| p == b);
        match self.direction {
            Direction::Both => hits(from, to) || hits(to, from),
            Direction::Outbound => hits(from, to),
            Direction::Inbound => hits(to, from),
        }
    }

    /// Whether the rule acts on messages between `a` and `b`, either way.
    pub(crate) fn matches_pair(&self, a: NodeId, b: NodeId) -> bool {
        self.matches(a, b) || self.matches(b, a)
    }
}

impl Msg {
    /// Whether this is a client's request (else a server's answer), and which connection of
    /// the pair it travels on.
    fn route(&self) -> (bool, Channel) {
        match self {
            Msg::Produce(_) | Msg::Fetch(_) | Msg::ReplicaFetch(_) | Msg::FindCoordinator { .. } => {
                (true, Channel::Data)
            }
            Msg::BrokerHeartbeat { .. } => (true, Channel::Data),
            Msg::ToCoordinator { .. } => (true, Channel::Coordinator),
            Msg::ProduceResponse(_)
            | Msg::FetchResponse(_)
            | Msg::ReplicaFetchResponse(_)
            | Msg::FindCoordinatorResponse { .. }
            | Msg::BrokerHeartbeatResponse { .. } => (false, Channel::Data),
            Msg::FromCoordinator { .. } => (false, Channel::Coordinator),
        }
    }
}

impl World {
    /// Send `msg` from `from` to `to` when something is unusual: a fault rule is active, a
    /// connection is stalled or not established, or a machine is down.
    #[cold]
    pub(crate) fn send_msg_faulty(&mut self, from: NodeId, to: NodeId, msg: Msg) {
        let (request, chan) = msg.route();
        let conn =
            if request { Conn { client: from, server: to, chan } } else { Conn { client: to, server: from, chan } };
        if let Some(state) = self.net.conns.get_mut(&conn)
            && let Some(setup) = &mut state.setup
        {
            if !request {
                // An answer on a connection its client has closed: it meets a reset.
                self.stats.messages_dropped += 1;
                return;
            }
            match setup {
                Setup::Connecting { pending, .. } => pending.push(msg),
                Setup::Closed { .. } => self.start_connecting(conn, vec![msg]),
            }
            return;
        }
        self.transmit(Link { from, to, chan }, conn, msg);
    }

    /// The client at `conn.client` wants `conn` established (the producer's `ready()`): start a
    /// handshake if it is closed.
    pub(crate) fn connect(&mut self, conn: Conn) {
        if matches!(self.net.conns.get(&conn).and_then(|s| s.setup.as_ref()), Some(Setup::Closed { .. })) {
            self.start_connecting(conn, Vec::new());
        }
    }

    fn start_connecting(&mut self, conn: Conn, pending: Vec<Msg>) {
        let now = self.now();
        let state = self.net.conns.get_mut(&conn).expect("a closed connection");
        let Some(Setup::Closed { retry_at, failures }) = state.setup else { return };
        state.epoch += 1;
        let epoch = state.epoch;
        let start = now.max(retry_at);
        state.setup = Some(Setup::Connecting { started: start, syn_rto: TCP_SYN_RTO_US, syns: 0, failures, pending });
        let timeout = self.net.setup_timeout(conn.client, failures);
        self.q.schedule_at(start, Ev::Syn { conn, epoch });
        self.q.schedule_at(start + timeout, Ev::ConnectTimeout { conn, epoch });
    }

    /// The client sends (or retransmits) its SYN.
    pub(crate) fn syn(&mut self, conn: Conn, epoch: u32) {
        let now = self.now();
        let Some(state) = self.net.conns.get(&conn) else { return };
        if state.epoch != epoch || !matches!(state.setup, Some(Setup::Connecting { .. })) {
            return;
        }
        // The SYN and the SYN-ACK must both get through.
        let there = self.fate(conn.client, conn.server);
        let back = if matches!(there, Fate::Dropped) { Fate::Dropped } else { self.fate(conn.server, conn.client) };
        let state = self.net.conns.get_mut(&conn).expect("checked");
        let Some(Setup::Connecting { syn_rto, syns, .. }) = &mut state.setup else { unreachable!("checked") };
        *syns += 1;
        match (there, back) {
            (Fate::Arrives(a), Fate::Arrives(b)) => {
                let at = self.net.arrival(now + a, conn.client, conn.server);
                let at = self.net.arrival(at + b, conn.server, conn.client);
                self.q.schedule_at(at, Ev::Connected { conn, epoch });
            }
            _ => {
                let rto = *syn_rto;
                *syn_rto = (rto * 2).min(TCP_RTO_MAX_US);
                self.stats.messages_dropped += 1;
                self.q.schedule_at(now + rto, Ev::Syn { conn, epoch });
            }
        }
    }

    /// The handshake completed: the connection is established, the requests that waited for it
    /// go out, and the producers at the client may send.
    pub(crate) fn connected(&mut self, conn: Conn, epoch: u32) {
        let now = self.now();
        let Some(state) = self.net.conns.get_mut(&conn) else { return };
        if state.epoch != epoch {
            return;
        }
        let Some(Setup::Connecting { started, syns, pending, .. }) = state.setup.take() else {
            return;
        };
        self.net.settle(conn, -1);
        self.stats.reconnects += 1;
        let coordinator = conn.chan == Channel::Coordinator;
        self.record(conn.client, Op::Connected { peer: conn.server, syns, after_us: now - started, coordinator });
        let link = Link { from: conn.client, to: conn.server, chan: conn.chan };
        for msg in pending {
            self.transmit(link, conn, msg);
        }
        self.wake_producers_at(conn.client);
    }

    /// A connection attempt was not established within `socket.connection.setup.timeout.ms`:
    /// give it up, and try again after `reconnect.backoff.ms` if requests wait for it.
    pub(crate) fn connect_timeout(&mut self, conn: Conn, epoch: u32) {
        let now = self.now();
        let Some(state) = self.net.conns.get_mut(&conn) else { return };
        if state.epoch != epoch {
            return;
        }
        let Some(Setup::Connecting { failures, pending, .. }) = state.setup.take() else {
            return;
        };
        // Java's `ClusterConnectionStates`: the back-off of this failure counts the earlier
        // ones; the next attempt's setup timeout counts this one too.
        let retry_at = now + self.net.reconnect_backoff(conn.client, failures);
        let failures = failures + 1;
        let state = self.net.conns.get_mut(&conn).expect("present");
        state.epoch += 1;
        state.setup = Some(Setup::Closed { retry_at, failures });
        let coordinator = conn.chan == Channel::Coordinator;
        let reason = DisconnectReason::SetupTimeout;
        self.record(conn.client, Op::Disconnected { peer: conn.server, reason, in_flight: 0, coordinator });
        if pending.is_empty() {
            self.wake_producers_at(conn.client);
        } else {
            self.start_connecting(conn, pending);
        }
    }

    /// The client closes `conn` (a request timed out, or it gives up on its coordinator): what
    /// the connection still held in either direction is gone, and the next request needs a new
    /// one. A connection attempt under way goes on; only the requests waiting for it are
    /// dropped (they failed).
    pub(crate) fn close_connection(&mut self, conn: Conn) {
        self.end_connection(conn, false);
    }

    /// End `conn`: closed as by `close_connection`, or, with `abort`, also with its handshake
    /// abandoned (its client process is gone).
    fn end_connection(&mut self, conn: Conn, abort: bool) {
        let now = self.now();
        let retry_at = now + self.net.reconnect_backoff(conn.client, 0);
        let state = self.net.conns.entry(conn).or_default();
        match &mut state.setup {
            None => {
                state.epoch += 1;
                state.setup = Some(Setup::Closed { retry_at, failures: 0 });
                self.net.settle(conn, 1);
                for link in conn.links() {
                    if let Some(stall) = self.net.stalls.remove(&link).filter(|_| !abort) {
                        let op = Op::Discarded {
                            peer: link.to,
                            retransmissions: stall.retransmissions,
                            late_us: now - stall.since,
                            queued: stall.queue.len() as u32 - 1,
                        };
                        self.record(link.from, op);
                    }
                }
            }
            Some(Setup::Connecting { .. }) if abort => {
                state.epoch += 1;
                state.setup = Some(Setup::Closed { retry_at, failures: 0 });
            }
            Some(Setup::Connecting { pending, .. }) => pending.clear(),
            Some(Setup::Closed { .. }) => {}
        }
    }

    /// End every connection `node` has, as client or server, handshakes included (its process
    /// died or restarted). Only the connections that exist are touched: a client's to each
    /// broker (and a consumer's coordinator connections), a broker's to the other brokers and
    /// to the controller.
    pub(crate) fn close_connections_of(&mut self, node: NodeId) {
        let consumer = |n: NodeId| self.consumers.iter().any(|c| c.node == n);
        let is_broker = |n: NodeId| self.broker_nodes.contains(&n);
        let mut conns = Vec::new();
        for other in 1..self.net.nodes as u16 {
            let other = NodeId(other);
            if other == node {
                continue;
            }
            for (client, server) in [(node, other), (other, node)] {
                let serves = is_broker(server) || (server == self.controller_node && is_broker(client));
                if !serves || client == self.controller_node {
                    continue;
                }
                conns.push(Conn { client, server, chan: Channel::Data });
                if consumer(client) && is_broker(server) {
                    conns.push(Conn { client, server, chan: Channel::Coordinator });
                }
            }
        }
        for conn in conns {
            self.end_connection(conn, true);
        }
    }

    /// Transmit `msg` on `link`: behind a stalled segment, or now.
    fn transmit(&mut self, link: Link, conn: Conn, msg: Msg) {
        if let Some(stall) = self.net.stalls.get_mut(&link) {
            stall.queue.push_back(msg);
            return;
        }
        let now = self.now();
        match self.fate(link.from, link.to) {
            Fate::Arrives(extra) => {
                let at = self.net.arrival(now + extra, link.from, link.to);
                self.q.schedule_at(at, Ev::Net(msg));
            }
            Fate::Dropped => {
                self.stats.messages_dropped += 1;
                let rto = self.rto(link.from, link.to);
                let id = self.net.next_stall;
                self.net.next_stall = id.wrapping_add(1);
                let mut queue = VecDeque::new();
                queue.push_back(msg);
                self.net.stalls.insert(link, Stall { conn, id, queue, rto, retransmissions: 0, since: now });
                self.q.schedule_at(now + rto, Ev::Retransmit { link, stall: id });
            }
        }
    }

    /// A stalled link's retransmission timer fires: the first segment is sent again. If it gets
    /// through, the segments queued behind it follow in order; if not, the timeout doubles, and
    /// after `tcp_retries2` retransmissions TCP aborts the connection.
    pub(crate) fn retransmit(&mut self, link: Link, id: u32) {
        let now = self.now();
        let Some(stall) = self.net.stalls.get(&link) else { return };
        if stall.id != id {
            return;
        }
        let conn = stall.conn;
        if stall.retransmissions >= TCP_RETRIES2 {
            return self.connection_broken(conn, DisconnectReason::TcpRetriesExhausted);
        }
        self.stats.retransmissions += 1;
        match self.fate(link.from, link.to) {
            Fate::Dropped => {
                self.stats.messages_dropped += 1;
                let stall = self.net.stalls.get_mut(&link).expect("checked");
                stall.retransmissions += 1;
                stall.rto = (stall.rto * 2).min(TCP_RTO_MAX_US);
                let at = now + stall.rto;
                self.q.schedule_at(at, Ev::Retransmit { link, stall: id });
            }
            Fate::Arrives(extra) => {
                let mut stall = self.net.stalls.remove(&link).expect("checked");
                let head = stall.queue.pop_front().expect("a stall holds its dropped segment");
                let op = Op::Retransmitted {
                    peer: link.to,
                    retransmissions: stall.retransmissions + 1,
                    late_us: now - stall.since,
                    queued: stall.queue.len() as u32,
                };
                self.record(link.from, op);
                let at = self.net.arrival(now + extra, link.from, link.to);
                self.q.schedule_at(at, Ev::Net(head));
                for msg in stall.queue {
                    self.transmit(link, conn, msg);
                }
            }
        }
    }

    /// The retransmission timeout of a new stall on `from -> to`: Linux's SRTT + max(4 RTTVAR,
    /// `TCP_RTO_MIN`), with the round trip the link has now (latency both ways plus active
    /// delays) and its jitter as the variation.
    fn rto(&self, from: NodeId, to: NodeId) -> Micros {
        let delays: Micros = self
            .net
            .rules
            .iter()
            .filter(|r| r.kind == FaultKind::NetworkDelay)
            .map(|r| u64::from(r.matches(from, to)) * r.delay_us + u64::from(r.matches(to, from)) * r.delay_us)
            .sum();
        let srtt = 2 * self.net.latency + delays;
        (srtt + (8 * self.net.jitter).max(TCP_RTO_MIN_US)).min(TCP_RTO_MAX_US)
    }

    /// What the network does to one transmission from `from` to `to` now: a machine that is
    /// down or a partition drops it, loss drops it with its rate, delay makes it late. Every
    /// rule that touches it has fired.
    fn fate(&mut self, from: NodeId, to: NodeId) -> Fate {
        if self.net.is_down(from) || self.net.is_down(to) {
            return Fate::Dropped;
        }
        let mut extra = 0;
        for r in 0..self.net.rules.len() {
            let rule = &self.net.rules[r];
            if !rule.matches(from, to) {
                continue;
            }
            let (fault, kind, rate, delay) = (rule.fault, rule.kind, rule.rate, rule.delay_us);
            let (dropped, touched) = match kind {
                FaultKind::NetworkPartition => (true, true),
                FaultKind::NetworkLoss => {
                    let lost = self.faults_rng.chance(rate);
                    (lost, lost)
                }
                _ => {
                    extra += delay;
                    (false, true)
                }
            };
            if touched {
                let o = &mut self.fault_outcomes[fault as usize];
                o.messages += 1;
                o.fired = true;
            }
            if dropped {
                return Fate::Dropped;
            }
        }
        Fate::Arrives(extra)
    }

    /// `conn` broke under its client (reset by the peer, or TCP gave up): close it and tell the
    /// client, which fails what it had in flight on it.
    pub(crate) fn connection_broken(&mut self, conn: Conn, reason: DisconnectReason) {
        self.close_connection(conn);
        self.client_disconnected(conn, reason, None);
    }
}
