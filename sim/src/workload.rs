//! The workload (clients sending order requests) and the driver of the sans-IO services: it
//! hands them inputs and carries out their commands against the simulated DB, cache and
//! producer.

use crate::kernel::SimRng;
use crate::requests::{zipf_cdf, zipf_draw};
use crate::world::{Ev, World};
use evsim_model::actor::{CacheOp, Command, Input, Request, Response, Service, Token};
use evsim_model::db::{Txn, TxnOutcome};
use evsim_model::history::{Micros, NodeId, Op, TopicId};
use evsim_model::registry::AnyService;
use evsim_model::scenario::{FaultKind, ProductDistribution, ServiceKind, ServiceSpec, WorkloadSpec};
use std::collections::BTreeMap;

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
    /// Orders whose client will pay once they are created: order -> (user, amount).
    pub(crate) to_pay: BTreeMap<u64, (u64, i64)>,
    price: i64,
    mean_coupon_gap_us: f64,
    mean_queue_gap_us: f64,
    next_token: u64,
    concerts: u64,
    next_coupon_request: u64,
    coupons: u64,
    duplicate_request_rate: f64,
    /// Each request stream's arrival clock, exact (fractional microseconds): a stream at any
    /// rate gets exactly its Poisson arrivals, several within one microsecond if need be.
    order_clock: f64,
    coupon_clock: f64,
    queue_clock: f64,
}

impl Workload {
    pub fn new(spec: &WorkloadSpec, rng: SimRng) -> Self {
        let zipf_cdf = match spec.product_distribution {
            ProductDistribution::Uniform => Vec::new(),
            ProductDistribution::Zipf(s) => zipf_cdf(u64::from(spec.products), s),
        };
        Self {
            rng,
            mean_gap_us: 1_000_000.0 / spec.rate_per_sec,
            next_order: 1,
            users: u64::from(spec.users),
            quantity_max: u64::from(spec.quantity_max),
            zipf_cdf,
            products: u64::from(spec.products),
            to_pay: BTreeMap::new(),
            price: spec.price,
            mean_coupon_gap_us: if spec.coupon_rate_per_sec > 0.0 {
                1_000_000.0 / spec.coupon_rate_per_sec
            } else {
                0.0
            },
            next_coupon_request: 1,
            mean_queue_gap_us: if spec.queue_rate_per_sec > 0.0 { 1_000_000.0 / spec.queue_rate_per_sec } else { 0.0 },
            next_token: 1,
            concerts: u64::from(spec.concerts),
            coupons: u64::from(spec.coupons),
            duplicate_request_rate: spec.duplicate_request_rate,
            order_clock: 0.0,
            coupon_clock: 0.0,
            queue_clock: 0.0,
        }
    }

    /// Advance a Poisson arrival clock by one exponential gap; the arrival's microsecond.
    fn arrival(rng: &mut SimRng, clock: &mut f64, mean_gap_us: f64) -> Micros {
        *clock += rng.exponential(mean_gap_us);
        *clock as Micros
    }

    /// When the next order arrives.
    pub(crate) fn next_order_at(&mut self) -> Micros {
        Self::arrival(&mut self.rng, &mut self.order_clock, self.mean_gap_us)
    }

    fn product(&mut self) -> u32 {
        if self.zipf_cdf.is_empty() {
            return self.rng.below(self.products) as u32;
        }
        zipf_draw(&mut self.rng, &self.zipf_cdf) as u32
    }

    /// When the next waiting-queue entry arrives.
    pub(crate) fn next_queue_entry_at(&mut self) -> Micros {
        Self::arrival(&mut self.rng, &mut self.queue_clock, self.mean_queue_gap_us)
    }

    /// The next queue entry: (token, concert, user).
    pub(crate) fn next_queue_entry(&mut self) -> (u64, u32, u64) {
        let token = self.next_token;
        self.next_token += 1;
        let concert = self.rng.below(self.concerts) as u32;
        let user = self.rng.below(self.users);
        (token, concert, user)
    }

    /// When the next coupon request arrives.
    pub(crate) fn next_coupon_at(&mut self) -> Micros {
        Self::arrival(&mut self.rng, &mut self.coupon_clock, self.mean_coupon_gap_us)
    }

    /// The next coupon request: (request, coupon, user, the id of a duplicate request if the
    /// client sends it twice).
    pub(crate) fn next_coupon_request(&mut self) -> (u64, u32, u64, Option<u64>) {
        let request = self.next_coupon_request;
        self.next_coupon_request += 1;
        let coupon = self.rng.below(self.coupons) as u32;
        let user = self.rng.below(self.users);
        let duplicate =
            (self.duplicate_request_rate > 0.0 && self.rng.chance(self.duplicate_request_rate)).then(|| {
                self.next_coupon_request += 1;
                self.next_coupon_request - 1
            });
        (request, coupon, user, duplicate)
    }

    /// The next order: (order, user, product, qty).
    pub(crate) fn next_request(&mut self) -> (u64, u64, u32, u32) {
        let order = self.next_order;
        self.next_order += 1;
        let user = self.rng.below(self.users);
        let product = self.product();
        let qty = self.rng.range_inclusive(1, self.quantity_max) as u32;
        (order, user, product, qty)
    }
}

/// A running service instance and the producer it owns.
#[derive(Debug)]
pub struct ServiceInstance {
    pub node: NodeId,
    /// Index of its `[services.*]` table in the scenario.
    pub spec: u16,
    pub kind: ServiceKind,
    pub producer: u16,
    pub service: AnyService,
    /// False once the process crashed.
    pub alive: bool,
}

impl ServiceInstance {
    /// An instance of `spec`; `workflow`: it runs a workflow's requests instead of its kind's
    /// compiled-in service.
    pub fn new(node: NodeId, index: u16, spec: &ServiceSpec, topic: TopicId, producer: u16, workflow: bool) -> Self {
        let service = if workflow { AnyService::workflow(spec, topic) } else { AnyService::new(spec, topic) };
        Self { node, spec: index, kind: spec.kind, producer, service, alive: true }
    }
}

impl World {
    pub(crate) fn workload_start(&mut self) {
        // With a workflow, its requests replace the order workload (when no order service is
        // left to take it).
        if self.scenario.workload.rate_per_sec > 0.0 && (self.wf.is_none() || !self.order_services.is_empty()) {
            let at = self.workload.next_order_at();
            self.q.schedule_at(at, Ev::NextOrder);
        }
        self.workflow_start();
        if self.scenario.workload.queue_rate_per_sec > 0.0 && !self.queue_services.is_empty() {
            let at = self.workload.next_queue_entry_at();
            self.q.schedule_at(at, Ev::NextQueueEntry);
        }
        if self.scenario.workload.coupon_rate_per_sec > 0.0 && !self.coupon_services.is_empty() {
            let at = self.workload.next_coupon_at();
            self.q.schedule_at(at, Ev::NextCoupon);
        }
    }

    /// The next coupon request of the workload (and, sometimes, the same client's duplicate).
    pub(crate) fn next_coupon(&mut self) {
        if self.now() >= self.history.header.quiet_from {
            return;
        }
        let (request, coupon, user, duplicate) = self.workload.next_coupon_request();
        let now = self.now();
        if let Some(again) = duplicate {
            // A double click: the same request again, 10 ms later.
            self.q.schedule_at(now + 10_000, Ev::CouponRequest { request: again, coupon, user });
        }
        // Sent at its arrival, as the workflow language's requests are.
        self.coupon_request(request, coupon, user);
        let at = self.workload.next_coupon_at();
        self.q.schedule_at(at, Ev::NextCoupon);
    }

    /// The next user entering a concert's waiting queue.
    pub(crate) fn next_queue_entry(&mut self) {
        if self.now() >= self.history.header.quiet_from {
            return;
        }
        let (token, concert, user) = self.workload.next_queue_entry();
        let n = self.queue_services.len() as u64;
        let live =
            (0..n).map(|i| self.queue_services[((token + i) % n) as usize]).find(|&s| self.services[s as usize].alive);
        if let Some(service) = live {
            self.record(NodeId(0), Op::QueueEntered { token, concert, user });
            self.service_input(service, Input::Request(Request::EnterQueue { token, concert, user }));
        }
        let at = self.workload.next_queue_entry_at();
        self.q.schedule_at(at, Ev::NextQueueEntry);
    }

    pub(crate) fn coupon_request(&mut self, request: u64, coupon: u32, user: u64) {
        let n = self.coupon_services.len() as u64;
        let live = (0..n)
            .map(|i| self.coupon_services[((request + i) % n) as usize])
            .find(|&s| self.services[s as usize].alive);
        if let Some(service) = live {
            self.record(NodeId(0), Op::CouponRequested { request, coupon, user });
            self.service_input(service, Input::Request(Request::IssueCoupon { request, coupon, user }));
        }
    }

    /// Record the facts the DB or the cache just established, as `node`'s entries, and count them.
    #[inline]
    pub(crate) fn record_facts(&mut self, node: NodeId) {
        let now = self.now();
        for fact in self.facts.drain(..) {
            let s = &mut self.stats;
            match fact {
                Op::OrderCommitted { .. } => s.orders_committed += 1,
                Op::OrderRejected { .. } => s.orders_rejected += 1,
                Op::PaymentCommitted { .. } => s.payments_committed += 1,
                Op::PaymentRejected { .. } => s.payments_rejected += 1,
                Op::OrderCancelled { .. } => s.orders_cancelled += 1,
                Op::CouponIssued { .. } => s.coupons_issued += 1,
                Op::CouponNotIssued { .. } | Op::CouponRequestRefused { .. } => s.coupons_refused += 1,
                _ => {}
            }
            self.history.push(now, node, fact);
        }
    }

    pub(crate) fn next_order(&mut self) {
        let quiet_from = self.history.header.quiet_from;
        if self.now() >= quiet_from {
            return;
        }
        let (order, user, product, qty) = self.workload.next_request();
        let req = Request::CreateOrder { order, user, product, qty };
        self.stats.requests += 1;
        // Requests spread over the live instances round-robin, as a load balancer with health
        // checks would; with none alive the request fails at the client and is not recorded.
        let n = self.order_services.len() as u64;
        let live =
            (0..n).map(|i| self.order_services[((order + i) % n) as usize]).find(|&s| self.services[s as usize].alive);
        if let Some(service) = live {
            self.record(NodeId(0), Op::OrderRequested { order, user, product, qty });
            if !self.payment_services.is_empty() {
                let amount = i64::from(qty) * self.workload.price;
                self.workload.to_pay.insert(order, (user, amount));
            }
            self.service_input(service, Input::Request(req));
        }
        let at = self.workload.next_order_at();
        self.q.schedule_at(at, Ev::NextOrder);
    }

    pub(crate) fn payment_request(&mut self, order: u64, user: u64, amount: i64) {
        let n = self.payment_services.len() as u64;
        let live = (0..n)
            .map(|i| self.payment_services[((order + i) % n) as usize])
            .find(|&s| self.services[s as usize].alive);
        if let Some(service) = live {
            self.record(NodeId(0), Op::PaymentRequested { order, user, amount });
            self.service_input(service, Input::Request(Request::Pay { order, user, amount }));
        }
    }

    pub(crate) fn service_timer(&mut self, service: u16, token: Token) {
        self.service_input(service, Input::Timer { token });
    }

    pub(crate) fn txn_commit(&mut self, service: u16, token: Token, txn: Txn) {
        if let Txn::Workflow { handler, id } = txn {
            return self.workflow_txn(service, token, handler, id);
        }
        let node = self.services[service as usize].node;
        let outcome = if !self.db_down.is_empty() {
            self.outage_hit(FaultKind::DbUnavailable, None);
            // The database cannot be reached: the transaction fails without running.
            TxnOutcome::RolledBack(evsim_model::db::Rollback::Unavailable)
        } else {
            self.db.apply(&txn, &mut self.facts)
        };
        // An outbox row commits with its business transaction, or not at all.
        if let Some(event) = self.outbox_rows.remove(&(service, token))
            && outcome == TxnOutcome::Committed
        {
            let now = self.now();
            self.db.insert_outbox(event, now, &mut self.facts);
        }
        self.record_facts(node);
        self.service_input(service, Input::TxnDone { token, outcome });
    }

    /// Hand `input` to service instance `service` and carry out what it asks for.
    pub(crate) fn service_input(&mut self, service: u16, input: Input) {
        let now = self.now();
        let mut out = std::mem::take(&mut self.commands);
        self.services[service as usize].service.on_input(now, input, &mut out);
        for cmd in out.drain(..) {
            match cmd {
                Command::TransactWithOutbox { token, txn, event } => {
                    self.outbox_rows.insert((service, token), event);
                    let at = now + self.scenario.database.latency_us;
                    self.q.schedule_at(at, Ev::TxnCommit { service, token, txn });
                }
                Command::ScanOutbox { token, older_than_us } => {
                    let events = self.db.due_outbox(now.saturating_sub(older_than_us));
                    self.service_input(service, Input::OutboxDue { token, events });
                }
                // A workflow handler without a transaction reaches no database: its steps run now.
                Command::Transact { token, txn: Txn::Workflow { handler, id } }
                    if self.wf.as_ref().is_some_and(|run| !run.has_transaction(handler)) =>
                {
                    self.workflow_txn(service, token, handler, id);
                }
                Command::Transact { token, txn } => {
                    let at = now + self.scenario.database.latency_us;
                    self.q.schedule_at(at, Ev::TxnCommit { service, token, txn });
                }
                Command::Produce { token, topic, message } => {
                    let producer = self.services[service as usize].producer;
                    self.producer_send(producer, topic, message, token);
                }
                Command::Respond { token, response }
                    if matches!(
                        self.services[service as usize].service,
                        evsim_model::registry::AnyService::Workflow(_)
                    ) =>
                {
                    self.workflow_answered(token, response == Response::Ok);
                }
                Command::Respond { token, response } => {
                    // A client whose order was created pays for it a little later.
                    if self.services[service as usize].kind == ServiceKind::OrderService
                        && let Some((user, amount)) = self.workload.to_pay.remove(&token)
                        && response == Response::Ok
                    {
                        let at = now + self.scenario.workload.pay_after_ms * 1_000;
                        self.q.schedule_at(at, Ev::PaymentRequest { order: token, user, amount });
                    }
                }
                Command::External { .. } => unreachable!("services make no external calls yet"),
                Command::Steps { .. } => unreachable!("only listeners run a workflow's steps this way"),
                Command::Resume { token, handler, id, sent } => self.workflow_resume(service, token, handler, id, sent),
                Command::Preview { token, handler, id } => {
                    let event = self.workflow_preview(handler, id);
                    self.service_input(service, Input::WorkflowPreviewed { token, event });
                }
                Command::Cache { op, cause } => {
                    let node = self.services[service as usize].node;
                    self.cache.apply(op, cause, &mut self.facts);
                    self.record_facts(node);
                }
                Command::CacheCall { token, op } => {
                    // Redis answers at once: apply, record, and hand the answer back.
                    let node = self.services[service as usize].node;
                    let added = match op {
                        CacheOp::AddCouponRequest { coupon, user, .. } => {
                            !self.cache.coupon_requests.contains(&(coupon, user))
                        }
                        _ => true,
                    };
                    self.cache.apply(op, None, &mut self.facts);
                    self.record_facts(node);
                    self.service_input(service, Input::CacheDone { token, added });
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
