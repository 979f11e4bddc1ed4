//! The workload (clients sending order requests) and the driver of the sans-IO services: it
//! hands them inputs and carries out their commands against the simulated DB, cache and
//! producer.

use crate::kernel::SimRng;
use crate::world::{Ev, World};
use evsim_model::actor::{Command, Input, Request, Service, Token};
use evsim_model::db::Txn;
use evsim_model::history::{Micros, NodeId, Op, TopicId};
use evsim_model::registry::AnyService;
use evsim_model::scenario::{ProductDistribution, ServiceKind, ServiceSpec, WorkloadSpec};

/// The order request generator.
#[derive(Debug)]
pub struct Workload {
    rng: SimRng,
    mean_gap_us: f64,
    next_order: u64,
    users: u64,
    quantity_max: u64,
    /// Cumulative weights for Zipf product choice (empty for uniform).
    zipf_cdf: Vec<f64>,
    products: u64,
}

impl Workload {
    pub fn new(spec: &WorkloadSpec, rng: SimRng) -> Self {
        let zipf_cdf = match spec.product_distribution {
            ProductDistribution::Uniform => Vec::new(),
            ProductDistribution::Zipf(s) => {
                let mut acc = 0.0;
                let mut cdf: Vec<f64> = (1..=spec.products)
                    .map(|k| {
                        acc += 1.0 / libm::pow(f64::from(k), s); // libm: identical on every platform
                        acc
                    })
                    .collect();
                for w in &mut cdf {
                    *w /= acc;
                }
                cdf
            }
        };
        Self {
            rng,
            mean_gap_us: 1_000_000.0 / spec.rate_per_sec,
            next_order: 1,
            users: u64::from(spec.users),
            quantity_max: u64::from(spec.quantity_max),
            zipf_cdf,
            products: u64::from(spec.products),
        }
    }

    fn gap(&mut self) -> Micros {
        // Poisson arrivals; at least 1 us apart so that time always advances.
        (self.rng.exponential(self.mean_gap_us).round() as Micros).max(1)
    }

    fn product(&mut self) -> u32 {
        if self.zipf_cdf.is_empty() {
            return self.rng.below(self.products) as u32;
        }
        let u = self.rng.unit_f64();
        self.zipf_cdf.partition_point(|&c| c < u).min(self.zipf_cdf.len() - 1) as u32
    }

    fn next_request(&mut self) -> Request {
        let order = self.next_order;
        self.next_order += 1;
        let user = self.rng.below(self.users);
        let product = self.product();
        let qty = self.rng.range_inclusive(1, self.quantity_max) as u32;
        Request::CreateOrder { order, user, product, qty }
    }
}

/// A running service instance and the producer it owns.
#[derive(Debug)]
pub struct ServiceInstance {
    pub node: NodeId,
    pub kind: ServiceKind,
    pub producer: u16,
    pub service: AnyService,
    /// False once the process crashed.
    pub alive: bool,
}

impl ServiceInstance {
    pub fn new(node: NodeId, spec: &ServiceSpec, topic: TopicId, producer: u16) -> Self {
        Self { node, kind: spec.kind, producer, service: AnyService::new(spec, topic), alive: true }
    }
}

impl World {
    pub(crate) fn workload_start(&mut self) {
        let gap = self.workload.gap();
        self.q.schedule_at(gap, Ev::NextOrder);
    }

    pub(crate) fn next_order(&mut self) {
        let quiet_from = self.history.header.quiet_from;
        if self.now() >= quiet_from {
            return;
        }
        let req = self.workload.next_request();
        let Request::CreateOrder { order, user, product, qty } = req;
        self.stats.requests += 1;
        // Requests spread over the live instances round-robin, as a load balancer with health
        // checks would; with none alive the request fails at the client and is not recorded.
        let n = self.order_services.len() as u64;
        let live =
            (0..n).map(|i| self.order_services[((order + i) % n) as usize]).find(|&s| self.services[s as usize].alive);
        if let Some(service) = live {
            self.record(NodeId(0), Op::OrderRequested { order, user, product, qty });
            self.service_input(service, Input::Request(req));
        }
        let gap = self.workload.gap();
        let now = self.now();
        self.q.schedule_at(now + gap, Ev::NextOrder);
    }

    pub(crate) fn service_timer(&mut self, service: u16, token: Token) {
        self.service_input(service, Input::Timer { token });
    }

    pub(crate) fn txn_commit(&mut self, service: u16, token: Token, txn: Txn) {
        let node = self.services[service as usize].node;
        let now = self.now();
        let outcome = self.db.apply(&txn, &mut self.facts);
        for fact in self.facts.drain(..) {
            self.history.push(now, node, fact);
        }
        self.service_input(service, Input::TxnDone { token, outcome });
    }

    /// Hand `input` to service instance `service` and carry out what it asks for.
    pub(crate) fn service_input(&mut self, service: u16, input: Input) {
        let now = self.now();
        let mut out = std::mem::take(&mut self.commands);
        self.services[service as usize].service.on_input(now, input, &mut out);
        for cmd in out.drain(..) {
            match cmd {
                Command::Transact { token, txn } => {
                    let at = now + self.scenario.database.latency_us;
                    self.q.schedule_at(at, Ev::TxnCommit { service, token, txn });
                }
                Command::Produce { token, topic, message } => {
                    let producer = self.services[service as usize].producer;
                    self.producer_send(producer, topic, message, token);
                }
                Command::Respond { .. } => {}
                Command::Cache { op, cause } => {
                    let node = self.services[service as usize].node;
                    self.cache.apply(op, cause, &mut self.facts);
                    for fact in self.facts.drain(..) {
                        self.history.push(now, node, fact);
                    }
                }
                Command::Ack => {}
                Command::Timer { token, after_us } => {
                    self.q.schedule_at(now + after_us, Ev::ServiceTimer { service, token });
                }
            }
        }
        self.commands = out;
    }
}
