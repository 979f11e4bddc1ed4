//! Fault injection: the run's fault plan (the scenario's schedule plus what `[swarm]` draws from
//! the seed), starting and ending each fault at its virtual time, and the network rules that
//! drop or delay segments while a network fault lasts (what TCP makes of that: `net.rs`).
//!
//! Every fault records when it starts and ends, and counts whether it did anything (a crash
//! always does; a network fault only if it dropped or delayed a message): a run whose planned
//! faults did not fire proves nothing and fails as vacuous.

use crate::kernel::SimRng;
use crate::world::{Ev, World};
use evsim_model::history::{Micros, NodeId, Op};
use evsim_model::scenario::{CONTROLLER, Direction, FaultKind, FaultSpec, Scenario, SwarmSpec};

/// A network fault while it lasts.
#[derive(Clone, Debug)]
pub(crate) struct NetRule {
    pub(crate) fault: u16,
    pub(crate) kind: FaultKind,
    pub(crate) target: NodeId,
    /// `None`: every other node.
    pub(crate) peer: Option<NodeId>,
    pub(crate) direction: Direction,
    pub(crate) rate: f64,
    pub(crate) delay_us: Micros,
}

/// What happened to one planned fault.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FaultOutcome {
    /// Its one-line description.
    pub fault: String,
    /// Whether it started.
    pub started: bool,
    /// Messages it dropped or delayed (network faults).
    pub messages: u64,
    /// Whether it had any effect: a started crash, pause or outage; a network fault that
    /// touched at least one message.
    pub fired: bool,
}

/// The targets a fault of `kind` can hit in `s`, by name (`None` for the database).
pub fn fault_targets(s: &Scenario, kind: FaultKind) -> Vec<Option<String>> {
    fn instances(name: &str, n: u32) -> impl Iterator<Item = Option<String>> + '_ {
        (0..n).map(move |i| Some(format!("{name}-{i}")))
    }
    match kind {
        FaultKind::BrokerCrash | FaultKind::BrokerPause => {
            (0..s.brokers).map(|b| Some(format!("broker-{b}"))).collect()
        }
        FaultKind::ServiceCrash => s.services.iter().flat_map(|x| instances(&x.name, x.instances)).collect(),
        FaultKind::ConsumerCrash | FaultKind::ConsumerPause => {
            s.consumers.iter().flat_map(|x| instances(&x.name, x.instances)).collect()
        }
        // The controller stays up and reachable as a separate controller quorum would; it can
        // only be a fault's `peer`.
        FaultKind::NetworkPartition | FaultKind::NetworkLoss | FaultKind::NetworkDelay => {
            s.node_names().into_iter().skip(1).filter(|n| n != CONTROLLER).map(Some).collect()
        }
        FaultKind::DbUnavailable => vec![None],
        FaultKind::PlatformOutage => s.consumers.iter().map(|c| Some(c.name.clone())).collect(),
    }
}

/// The targets `swarm` may hit with a fault of `kind` in `s`: [`fault_targets`], within the
/// swarm's `targets` if it lists any (the database, no one's target, stays).
pub fn swarm_targets(s: &Scenario, swarm: &SwarmSpec, kind: FaultKind) -> Vec<Option<String>> {
    let mut t = fault_targets(s, kind);
    if !swarm.targets.is_empty() {
        t.retain(|n| n.as_ref().is_none_or(|n| swarm.targets.contains(n)));
    }
    t
}

/// Draw `[swarm]` faults for one run from the faults stream: how many (1..=max_faults), and for
/// each its kind, target, start (within the workload's duration), length and loss rate.
/// Crashes and pauses of one target do not overlap (a second crash of a dead process could not
/// fire).
pub fn draw_swarm(scenario: &Scenario, swarm: &SwarmSpec, rng: &mut SimRng) -> Vec<FaultSpec> {
    let n = rng.range_inclusive(1, u64::from(swarm.max_faults));
    let mut out: Vec<FaultSpec> = Vec::new();
    for _ in 0..n {
        let kind = swarm.kinds[rng.below(swarm.kinds.len() as u64) as usize];
        let candidates = swarm_targets(scenario, swarm, kind);
        if candidates.is_empty() {
            continue;
        }
        let target = candidates[rng.below(candidates.len() as u64) as usize].clone();
        let at_ms = rng.below(scenario.run.duration_ms.max(1));
        let for_ms = rng.range_inclusive(1, swarm.max_for_ms);
        let rate =
            if kind == FaultKind::NetworkLoss { swarm.max_loss_rate * (0.1 + 0.9 * rng.unit_f64()) } else { 0.0 };
        let delay_ms = if kind == FaultKind::NetworkDelay { rng.range_inclusive(1, 1_000) } else { 0 };
        let fault = FaultSpec {
            kind,
            at_ms,
            for_ms: Some(for_ms),
            target,
            peer: None,
            direction: Direction::Both,
            rate,
            delay_ms,
        };
        let process = matches!(
            kind,
            FaultKind::BrokerCrash
                | FaultKind::BrokerPause
                | FaultKind::ServiceCrash
                | FaultKind::ConsumerCrash
                | FaultKind::ConsumerPause
        );
        let overlaps = out.iter().any(|o| {
            o.target == fault.target
                && o.kind != FaultKind::PlatformOutage
                && !o.kind.is_network()
                && process
                && o.at_ms < at_ms + for_ms
                && at_ms < o.at_ms + o.for_ms.unwrap_or(u64::MAX / 2)
        });
        if !overlaps {
            out.push(fault);
        }
    }
    out
}

impl World {
    /// Schedule the start and end of every planned fault.
    pub(crate) fn faults_start(&mut self) {
        for (i, f) in self.faults_plan.iter().enumerate() {
            let fault = i as u16;
            self.q.schedule_at(f.at_ms * 1_000, Ev::FaultStart { fault });
            if let Some(d) = f.for_ms {
                self.q.schedule_at((f.at_ms + d) * 1_000, Ev::FaultEnd { fault });
            }
        }
    }

    fn node_named(&self, name: &str) -> NodeId {
        let i = self.history.header.nodes.iter().position(|n| n == name).expect("validated fault target");
        NodeId(i as u16)
    }

    fn consumer_at(&self, node: NodeId) -> u16 {
        self.consumers.iter().position(|c| c.node == node).expect("a consumer node") as u16
    }

    fn service_at(&self, node: NodeId) -> u16 {
        self.services.iter().position(|s| s.node == node).expect("a service node") as u16
    }

    fn broker_at(&self, node: NodeId) -> u16 {
        self.broker_nodes.iter().position(|&b| b == node).expect("a broker node") as u16
    }

    /// Fault `fault` starts.
    pub(crate) fn fault_start(&mut self, fault: u16) {
        let f = self.faults_plan[fault as usize].clone();
        let now = self.now();
        let target = f.target.as_deref().filter(|_| f.kind != FaultKind::PlatformOutage).map(|t| self.node_named(t));
        let recorder = target.unwrap_or(NodeId(0));
        self.fault_outcomes[fault as usize].started = true;
        self.record(recorder, Op::FaultStarted { fault, kind: f.kind });
        let fired = match f.kind {
            FaultKind::BrokerCrash => {
                let b = self.broker_at(recorder);
                let alive = self.brokers[b as usize].alive;
                if alive {
                    self.crash_broker(b);
                }
                alive
            }
            FaultKind::BrokerPause => {
                // The process stops; what reaches it waits in its sockets (World::dispatch).
                let b = self.broker_at(recorder);
                let until = f.for_ms.map_or(Micros::MAX, |d| now + d * 1_000);
                let state = &mut self.brokers[b as usize];
                state.paused_until = state.paused_until.max(until);
                self.paused += 1;
                state.alive
            }
            FaultKind::ServiceCrash => {
                let s = self.service_at(recorder);
                let alive = self.services[s as usize].alive;
                if alive {
                    self.crash_service(s);
                }
                alive
            }
            FaultKind::ConsumerCrash => {
                let c = self.consumer_at(recorder);
                let alive = self.consumers[c as usize].alive;
                if alive {
                    self.crash_consumer(c);
                }
                alive
            }
            FaultKind::ConsumerPause => {
                let c = self.consumer_at(recorder);
                let until = f.for_ms.map_or(Micros::MAX, |d| now + d * 1_000);
                let cons = &mut self.consumers[c as usize];
                cons.paused_until = cons.paused_until.max(until);
                self.paused += 1;
                cons.alive
            }
            FaultKind::NetworkPartition | FaultKind::NetworkLoss | FaultKind::NetworkDelay => {
                let peer = f.peer.as_deref().map(|p| self.node_named(p));
                self.net.rules.push(NetRule {
                    fault,
                    kind: f.kind,
                    target: recorder,
                    peer,
                    direction: f.direction,
                    rate: f.rate,
                    delay_us: f.delay_ms * 1_000,
                });
                false // until it touches a message
            }
            FaultKind::DbUnavailable => {
                self.db_down.push(fault);
                false // until a transaction or a listener fails on it
            }
            FaultKind::PlatformOutage => {
                let name = f.target.as_deref().expect("validated target");
                let g = self.scenario.consumers.iter().position(|c| c.name == name).expect("validated group");
                self.platform_down[g].push(fault);
                false // until a listener's call fails on it
            }
        };
        self.fault_outcomes[fault as usize].fired |= fired;
    }

    /// Fault `fault` ends: a crashed process restarts, a network heals, an outage is over.
    pub(crate) fn fault_end(&mut self, fault: u16) {
        let f = self.faults_plan[fault as usize].clone();
        let target = f.target.as_deref().filter(|_| f.kind != FaultKind::PlatformOutage).map(|t| self.node_named(t));
        let recorder = target.unwrap_or(NodeId(0));
        self.record(recorder, Op::FaultEnded { fault, kind: f.kind });
        match f.kind {
            FaultKind::BrokerCrash => {
                let b = self.broker_at(recorder);
                if !self.brokers[b as usize].alive {
                    self.restart_broker(b);
                }
            }
            FaultKind::ServiceCrash => {
                let s = self.service_at(recorder);
                if !self.services[s as usize].alive {
                    self.restart_service(s);
                }
            }
            FaultKind::ConsumerCrash => {
                let c = self.consumer_at(recorder);
                if !self.consumers[c as usize].alive {
                    self.restart_consumer(c);
                }
            }
            FaultKind::ConsumerPause | FaultKind::BrokerPause => {
                self.paused -= 1;
            }
            FaultKind::NetworkPartition | FaultKind::NetworkLoss | FaultKind::NetworkDelay => {
                self.net.rules.retain(|r| r.fault != fault);
            }
            FaultKind::DbUnavailable => self.db_down.retain(|&d| d != fault),
            FaultKind::PlatformOutage => {
                let name = f.target.as_deref().expect("validated target");
                let g = self.scenario.consumers.iter().position(|c| c.name == name).expect("validated group");
                self.platform_down[g].retain(|&d| d != fault);
            }
        }
    }

    /// A transaction or a listener's call failed on the active outages of `kind` (for a
    /// platform outage, of consumer group `group`): they fired.
    pub(crate) fn outage_hit(&mut self, kind: FaultKind, group: Option<usize>) {
        let active = match (kind, group) {
            (FaultKind::DbUnavailable, _) => &self.db_down,
            (_, Some(g)) => &self.platform_down[g],
            _ => return,
        };
        for &f in active {
            let o = &mut self.fault_outcomes[f as usize];
            o.fired = true;
            o.messages += 1;
        }
    }
}
