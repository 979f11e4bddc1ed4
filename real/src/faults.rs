//! The scenario's fault schedule, performed on a real target where it can be, and reported as
//! skipped (with the reason) where it cannot.

use crate::consumer::{self, ConsumerHandle};
use crate::driver::{Core, Ctx, restart_service};
use crate::harness::{BrokerKind, Harness, KafkaNet};
use evsim_model::history::{GroupId, NodeId, Op};
use evsim_model::scenario::{FaultKind, FaultSpec, Scenario};
use evsim_sim::kernel::{Seeds, Stream};
use rdkafka::producer::{Producer, PurgeConfig};
use std::cell::RefCell;
use std::time::Duration;

/// What became of one planned fault on the real target.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RealFault {
    /// The fault, as `evsim run` describes it.
    pub fault: String,
    pub kind: FaultKind,
    /// How the target performed it; `None` when skipped.
    pub performed: Option<String>,
    /// Why the target could not perform it.
    pub skipped: Option<String>,
    /// Whether it had an effect (a DB or platform outage that no call ran into had none).
    pub fired: bool,
}

/// An outage the in-process models (DB, external platform) suffer.
pub(crate) enum Outage {
    Db,
    Platform(usize),
}

/// A call ran into an outage: the faults behind it fired.
pub(crate) fn outage_hit(core: &mut Core, outage: Outage) {
    let active = match outage {
        Outage::Db => &core.db_down,
        Outage::Platform(g) => &core.platform_down[g],
    };
    core.outage_hits.extend(active.iter().copied());
}

/// The run's faults: the scenario's schedule, then what `[swarm]` draws (the simulator's draw,
/// from the same seed).
pub(crate) struct Schedule {
    plan: Vec<FaultSpec>,
    faults: Vec<RealFault>,
    active: Vec<bool>,
}

impl Schedule {
    pub(crate) fn new(scenario: &Scenario, seed: u64) -> Self {
        let mut plan = scenario.faults.clone();
        if let Some(swarm) = &scenario.swarm {
            let mut rng = Seeds::new(seed).stream(Stream::Faults);
            plan.extend(evsim_sim::faults::draw_swarm(scenario, swarm, &mut rng));
        }
        let faults = plan
            .iter()
            .map(|f| RealFault { fault: f.describe(), kind: f.kind, performed: None, skipped: None, fired: false })
            .collect();
        let active = vec![false; plan.len()];
        Self { plan, faults, active }
    }

    /// The faults Apache Kafka in `net` cannot perform, each with the reason: a run on it
    /// performs every fault or does not start.
    pub(crate) fn refused_on_kafka(&self, scenario: &Scenario, net: KafkaNet) -> Vec<String> {
        let mut out = Vec::new();
        for f in &self.plan {
            let why = match f.kind {
                FaultKind::BrokerCrash | FaultKind::BrokerPause => Self::broker_index(f.target.as_deref())
                    .filter(|&b| b < scenario.brokers)
                    .map_or_else(|| Some("the target is not one of the scenario's brokers".to_string()), |_| None),
                k if k.is_network() => {
                    if net == KafkaNet::Loopback {
                        Some(
                            "network faults need the Kafka nodes in network namespaces: run as root with ip and \
                             iptables, without EVSIM_KAFKA_NET=loopback"
                                .to_string(),
                        )
                    } else {
                        crate::netns::fault_rules(f, scenario.brokers as usize, "", |_| std::net::Ipv4Addr::LOCALHOST)
                            .err()
                    }
                }
                _ => None,
            };
            if let Some(why) = why {
                out.push(format!("`{}`: {why}", f.describe()));
            }
        }
        out
    }

    /// Perform the schedule: each fault starts and ends at its time.
    pub(crate) async fn run(&mut self, ctx: &Ctx, harness: &mut Harness, consumers: &RefCell<Vec<ConsumerHandle>>) {
        let mut events: Vec<(u64, bool, usize)> = Vec::new();
        for (i, f) in self.plan.iter().enumerate() {
            events.push((f.at_ms, true, i));
            if let Some(d) = f.for_ms {
                events.push((f.at_ms + d, false, i));
            }
        }
        events.sort_by_key(|&(at, start, i)| (at, start, i));
        for (at, start, i) in events {
            tokio::time::sleep_until(ctx.instant(at * 1_000)).await;
            if start {
                self.start(ctx, harness, consumers, i).await;
            } else {
                self.end(ctx, harness, consumers, i).await;
            }
        }
    }

    /// End every fault still active (the run is over).
    pub(crate) async fn end_all(&mut self, ctx: &Ctx, harness: &mut Harness, consumers: &RefCell<Vec<ConsumerHandle>>) {
        for i in 0..self.plan.len() {
            if self.active[i] {
                self.end(ctx, harness, consumers, i).await;
            }
        }
    }

    /// The outcome of each fault, in plan order.
    pub(crate) fn outcomes(&self, ctx: &Ctx) -> Vec<RealFault> {
        let core = ctx.core.borrow();
        let mut out = self.faults.clone();
        for (i, f) in out.iter_mut().enumerate() {
            if matches!(f.kind, FaultKind::DbUnavailable | FaultKind::PlatformOutage) {
                f.fired = f.performed.is_some() && core.outage_hits.contains(&(i as u16));
            }
        }
        out
    }

    fn node(ctx: &Ctx, name: Option<&str>) -> Option<NodeId> {
        let names = ctx.scenario.node_names();
        name.and_then(|n| names.iter().position(|x| x == n)).map(|i| NodeId(i as u16))
    }

    fn broker_index(name: Option<&str>) -> Option<u32> {
        name?.strip_prefix("broker-")?.parse().ok()
    }

    async fn start(&mut self, ctx: &Ctx, harness: &mut Harness, consumers: &RefCell<Vec<ConsumerHandle>>, i: usize) {
        let f = self.plan[i].clone();
        let target = f.target.as_deref();
        let node = Self::node(ctx, target).unwrap_or(NodeId(0));
        let result: Result<String, String> = match f.kind {
            FaultKind::BrokerCrash => match Self::broker_index(target) {
                Some(b) => harness.broker_down(b),
                None => Err("no broker target".to_string()),
            },
            FaultKind::BrokerPause => match Self::broker_index(target) {
                Some(b) => harness.broker_pause(b, true),
                None => Err("no broker target".to_string()),
            },
            FaultKind::ServiceCrash => {
                let mut core = ctx.core.borrow_mut();
                match core.services.iter().position(|s| s.node == node) {
                    Some(s) => {
                        let svc = &mut core.services[s];
                        svc.alive = false;
                        svc.incarnation += 1;
                        // What the producer had not sent yet dies with the process.
                        svc.producer.purge(PurgeConfig::default().queue().inflight());
                        ctx.record(node, Op::Crashed);
                        Ok("the service's tasks end and its memory and producer buffer are lost; the DB keeps what it committed".to_string())
                    }
                    None => Err(format!("no service instance {}", target.unwrap_or("?"))),
                }
            }
            FaultKind::ConsumerCrash => {
                let handle = {
                    let mut cs = consumers.borrow_mut();
                    cs.iter().position(|c| c.node == node).map(|k| cs.remove(k))
                };
                match handle {
                    Some(h) => {
                        h.crash().await;
                        ctx.record(node, Op::Crashed);
                        Ok("the consumer stopped mid-batch and closed (librdkafka leaves the group at once, \
                            where a killed process would wait out session.timeout.ms)"
                            .to_string())
                    }
                    None => Err(format!("no running consumer instance {}", target.unwrap_or("?"))),
                }
            }
            FaultKind::ConsumerPause => {
                let cs = consumers.borrow();
                match cs.iter().find(|c| c.node == node) {
                    Some(c) => {
                        let until = f.for_ms.map_or(ctx.scenario.end_ms(), |d| f.at_ms + d);
                        c.pause(ctx.instant(until * 1_000));
                        Ok("the container stops where it is, mid-batch too (librdkafka's heartbeat thread keeps \
                            running, so only max.poll.interval.ms expels it)"
                            .to_string())
                    }
                    None => Err(format!("no running consumer instance {}", target.unwrap_or("?"))),
                }
            }
            FaultKind::NetworkPartition | FaultKind::NetworkLoss | FaultKind::NetworkDelay
                if harness.kind == BrokerKind::Kafka =>
            {
                harness.network_start(i, &f)
            }
            FaultKind::NetworkPartition => match (Self::broker_index(target), &f.peer) {
                (Some(b), None) => harness.isolate(b, true),
                _ => Err("a real target can only cut a whole broker off (target a broker, no peer)".to_string()),
            },
            FaultKind::NetworkDelay => match (Self::broker_index(target), &f.peer) {
                (Some(b), None) => harness.delay(b, Duration::from_millis(f.delay_ms)),
                _ => Err("only a broker's round trip can be delayed (mock cluster)".to_string()),
            },
            FaultKind::NetworkLoss => {
                Err("packet loss on loopback would need root and network namespaces; not performed".to_string())
            }
            FaultKind::DbUnavailable => {
                ctx.core.borrow_mut().db_down.push(i as u16);
                Ok("the in-process DB refuses every transaction".to_string())
            }
            FaultKind::PlatformOutage => {
                match ctx.scenario.consumers.iter().position(|c| Some(c.name.as_str()) == target) {
                    Some(g) => {
                        ctx.core.borrow_mut().platform_down[g].push(i as u16);
                        Ok(format!("group {}'s external platform is down", GroupId(g as u16).0))
                    }
                    None => Err(format!("no consumer table {}", target.unwrap_or("?"))),
                }
            }
        };
        let fault = &mut self.faults[i];
        match result {
            Ok(how) => {
                fault.performed = Some(how);
                fault.fired = true;
                self.active[i] = true;
                ctx.record(node, Op::FaultStarted { fault: i as u16, kind: f.kind });
            }
            Err(why) => fault.skipped = Some(why),
        }
    }

    async fn end(&mut self, ctx: &Ctx, harness: &mut Harness, consumers: &RefCell<Vec<ConsumerHandle>>, i: usize) {
        if !self.active[i] {
            return;
        }
        self.active[i] = false;
        let f = self.plan[i].clone();
        let target = f.target.as_deref();
        let node = Self::node(ctx, target).unwrap_or(NodeId(0));
        let result = match f.kind {
            FaultKind::BrokerCrash => Self::broker_index(target).map(|b| harness.broker_up(b).map(|_| ())),
            FaultKind::BrokerPause => Self::broker_index(target).map(|b| harness.broker_pause(b, false).map(|_| ())),
            FaultKind::ServiceCrash => {
                let s = ctx.core.borrow().services.iter().position(|s| s.node == node);
                s.map(|s| restart_service(ctx, s as u16))
            }
            FaultKind::ConsumerCrash => {
                let names = ctx.scenario.node_names();
                let name = &names[node.0 as usize];
                let found = ctx.scenario.consumers.iter().enumerate().find_map(|(g, c)| {
                    let i: u32 = name.strip_prefix(&format!("{}-", c.name))?.parse().ok()?;
                    Some((g, i))
                });
                found.map(|(g, instance)| match consumer::spawn(ctx, GroupId(g as u16), instance, node) {
                    Ok(h) => {
                        consumers.borrow_mut().push(h);
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                })
            }
            FaultKind::ConsumerPause => Some(Ok(())),
            FaultKind::NetworkPartition | FaultKind::NetworkLoss | FaultKind::NetworkDelay
                if harness.kind == BrokerKind::Kafka =>
            {
                // It fired if its filters dropped a packet (the kernel's own count).
                Some(harness.network_end(i).map(|dropped| {
                    let fault = &mut self.faults[i];
                    fault.fired = dropped > 0;
                    if let Some(how) = &mut fault.performed {
                        how.push_str(&format!("; {dropped} packets dropped"));
                    }
                }))
            }
            FaultKind::NetworkPartition => Self::broker_index(target).map(|b| harness.isolate(b, false).map(|_| ())),
            FaultKind::NetworkDelay => Self::broker_index(target).map(|b| harness.delay(b, Duration::ZERO).map(|_| ())),
            FaultKind::NetworkLoss => None,
            FaultKind::DbUnavailable => {
                ctx.core.borrow_mut().db_down.retain(|&x| x != i as u16);
                Some(Ok(()))
            }
            FaultKind::PlatformOutage => {
                for down in &mut ctx.core.borrow_mut().platform_down {
                    down.retain(|&x| x != i as u16);
                }
                Some(Ok(()))
            }
        };
        if let Some(Err(e)) = result {
            tracing::warn!("ending fault `{}` failed: {e}", f.describe());
            let note = self.faults[i].performed.take().unwrap_or_default();
            self.faults[i].performed = Some(format!("{note}; ending it failed: {e}"));
        }
        ctx.record(node, Op::FaultEnded { fault: i as u16, kind: f.kind });
    }
}
