//! The real driver: the model's services and listeners on tokio, with rdkafka doing the I/O.
//!
//! Everything evsim's own code does runs on one thread (a current-thread runtime and a
//! `LocalSet`), so a service handles one input at a time as it does in the simulator; librdkafka's
//! threads do the network I/O. Every entry is recorded with the wall-clock microseconds since the
//! run began, in one history that the same checkers judge.

use crate::consumer::{self, ConsumerHandle};
use crate::faults::{self, RealFault};
use crate::harness::{BrokerKind, BrokerOptions, Harness};
use crate::producer::{produce, producer_for};
use crate::{RealError, RealOutcome};
use evsim_model::actor::{CacheOp, Command, Input, Request, Response, Service, Token};
use evsim_model::cache::Cache;
use evsim_model::db::{Db, Rollback, Txn, TxnOutcome};
use evsim_model::event::Message;
use evsim_model::history::{GroupId, GroupInfo, Header, History, Micros, NodeId, Op, TopicId, TopicInfo, Tp};
use evsim_model::publish::OUTBOX_SCHEDULER;
use evsim_model::registry::AnyService;
use evsim_model::scenario::{PublishStrategy, Scenario, ServiceKind};
use evsim_sim::Stats;
use evsim_sim::kernel::{Seeds, SimRng, Stream};
use rdkafka::producer::FutureProducer;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The history being written, shared with librdkafka's callbacks (rebalances, commits).
pub(crate) struct Recorder {
    start: Instant,
    pub(crate) history: History,
    /// Offsets each group committed (next offset to read), from successful commits.
    pub(crate) committed: BTreeMap<(GroupId, Tp), u64>,
    pub(crate) commits_ok: u64,
    pub(crate) commits_failed: u64,
    pub(crate) rebalances: u64,
}

impl Recorder {
    pub(crate) fn now(&self) -> Micros {
        self.start.elapsed().as_micros() as Micros
    }

    pub(crate) fn push(&mut self, node: NodeId, op: Op) {
        let now = self.now();
        self.history.push(now, node, op);
    }
}

pub(crate) type Rec = Arc<Mutex<Recorder>>;

pub(crate) fn lock(rec: &Rec) -> std::sync::MutexGuard<'_, Recorder> {
    rec.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A service instance and its producer.
pub(crate) struct Svc {
    pub(crate) node: NodeId,
    pub(crate) spec: u16,
    pub(crate) kind: ServiceKind,
    topic: TopicId,
    service: AnyService,
    pub(crate) alive: bool,
    /// Bumped on every crash: what an older incarnation started never reaches the new one.
    pub(crate) incarnation: u32,
    pub(crate) producer: FutureProducer,
}

/// The state evsim's own code shares on its one thread.
pub(crate) struct Core {
    pub(crate) db: Db,
    pub(crate) cache: Cache,
    facts: Vec<Op>,
    pub(crate) stats: Stats,
    pub(crate) services: Vec<Svc>,
    to_pay: BTreeMap<u64, (u64, i64)>,
    outbox_rows: BTreeMap<(u16, Token), Message>,
    /// Active `db-unavailable` faults.
    pub(crate) db_down: Vec<u16>,
    /// Active `platform-outage` faults, per consumer group.
    pub(crate) platform_down: Vec<Vec<u16>>,
    /// Sends, transactions and scheduled payments not finished yet.
    pub(crate) pending: u64,
    /// The log end of each partition, as the acknowledged sends show it.
    pub(crate) high: BTreeMap<Tp, u64>,
    /// What each group has handled (next offset), for knowing when the run has settled.
    pub(crate) handled: BTreeMap<(GroupId, Tp), u64>,
    /// The client stream (processing times, handler failures), as in the simulator.
    pub(crate) rng: SimRng,
    /// Records librdkafka placed on another partition than the scenario's partitioner says.
    pub(crate) placement_mismatches: u64,
    /// Faults that had an effect (a DB call refused, a platform call failed).
    pub(crate) outage_hits: std::collections::BTreeSet<u16>,
    db_queue: std::collections::VecDeque<QueuedTxn>,
    /// The workflow's part of the run (the simulator's own), if the scenario runs one.
    pub(crate) wf: Option<evsim_sim::workflow::WorkflowRun>,
}

/// Everything a task of the run can reach.
pub(crate) struct Shared {
    pub(crate) scenario: Scenario,
    pub(crate) rec: Rec,
    pub(crate) core: RefCell<Core>,
    pub(crate) bootstrap: String,
    /// Time zero of the history: when the workload starts (once the groups have formed).
    pub(crate) start: std::cell::Cell<Instant>,
    db_wake: tokio::sync::Notify,
}

pub(crate) type Ctx = Rc<Shared>;

impl Shared {
    pub(crate) fn now(&self) -> Micros {
        self.start.get().elapsed().as_micros() as Micros
    }

    pub(crate) fn record(&self, node: NodeId, op: Op) {
        lock(&self.rec).push(node, op);
    }

    pub(crate) fn topic_name(&self, topic: TopicId) -> &str {
        &self.scenario.topics[topic.0 as usize].name
    }

    pub(crate) fn topic_id(&self, name: &str) -> Option<TopicId> {
        self.scenario.topics.iter().position(|t| t.name == name).map(|i| TopicId(i as u16))
    }

    /// Wall-clock instant of run time `at`.
    pub(crate) fn instant(&self, at: Micros) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.start.get() + Duration::from_micros(at))
    }
}

/// Record what the DB or cache just established, and count it.
pub(crate) fn record_facts(ctx: &Shared, core: &mut Core, node: NodeId) {
    if core.facts.is_empty() {
        return;
    }
    let mut rec = lock(&ctx.rec);
    for fact in core.facts.drain(..) {
        let s = &mut core.stats;
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
        rec.push(node, fact);
    }
}

impl Core {
    /// Apply a listener's cache command or transaction and record what it established.
    pub(crate) fn apply_cache(
        &mut self,
        ctx: &Shared,
        node: NodeId,
        op: CacheOp,
        cause: Option<evsim_model::history::EventId>,
    ) {
        self.cache.apply(op, cause, &mut self.facts);
        record_facts(ctx, self, node);
    }

    pub(crate) fn apply_txn(&mut self, ctx: &Shared, node: NodeId, txn: &Txn) -> TxnOutcome {
        let outcome = self.db.apply(txn, &mut self.facts);
        record_facts(ctx, self, node);
        outcome
    }
}

/// What a service asked for that must wait (a transaction, a send, a timer) or re-enter it.
enum Action {
    Input(Input),
    Txn { token: Token, txn: Txn },
    Produce { token: Token, topic: TopicId, message: Message },
    Pay { order: u64, user: u64, amount: i64 },
    FollowUp { handler: u16, id: u64, at: Micros },
    Timer { token: Token, after_us: Micros },
}

/// Hand `input` to service instance `s` and carry out what it asks for.
pub(crate) fn service_input(ctx: &Ctx, s: u16, input: Input) {
    let mut actions = Vec::new();
    {
        let mut guard = ctx.core.borrow_mut();
        let core = &mut *guard;
        if !core.services[s as usize].alive {
            return;
        }
        let now = ctx.now();
        let mut out = Vec::new();
        core.services[s as usize].service.on_input(now, input, &mut out);
        let (node, kind) = (core.services[s as usize].node, core.services[s as usize].kind);
        for cmd in out {
            match cmd {
                Command::Transact { token, txn } => actions.push(Action::Txn { token, txn }),
                Command::TransactWithOutbox { token, txn, event } => {
                    core.outbox_rows.insert((s, token), event);
                    actions.push(Action::Txn { token, txn });
                }
                Command::ScanOutbox { token, older_than_us } => {
                    let events = core.db.due_outbox(now.saturating_sub(older_than_us));
                    actions.push(Action::Input(Input::OutboxDue { token, events }));
                }
                Command::Produce { token, topic, message } => actions.push(Action::Produce { token, topic, message }),
                Command::Respond { token, response }
                    if matches!(core.services[s as usize].service, evsim_model::registry::AnyService::Workflow(_)) =>
                {
                    // The client sends the request's follow-ups after their delays.
                    let (handler, id) = evsim_model::workflow::service::token_request(token);
                    let run = core.wf.as_mut().expect("a workflow run");
                    for (f, delay) in run.answered(handler, id, response == Response::Ok) {
                        actions.push(Action::FollowUp { handler: f, id, at: now + delay });
                    }
                }
                Command::Respond { token, response } => {
                    if kind == ServiceKind::OrderService
                        && let Some((user, amount)) = core.to_pay.remove(&token)
                        && response == Response::Ok
                    {
                        actions.push(Action::Pay { order: token, user, amount });
                    }
                }
                Command::Cache { op, cause } => core.apply_cache(ctx, node, op, cause),
                Command::CacheCall { token, op } => {
                    let added = match op {
                        CacheOp::AddCouponRequest { coupon, user, .. } => {
                            !core.cache.coupon_requests.contains(&(coupon, user))
                        }
                        _ => true,
                    };
                    core.apply_cache(ctx, node, op, None);
                    actions.push(Action::Input(Input::CacheDone { token, added }));
                }
                Command::Timer { token, after_us } => actions.push(Action::Timer { token, after_us }),
                Command::Ack | Command::External { .. } => {}
                Command::Preview { token, handler, id } => {
                    let db_down = !core.db_down.is_empty();
                    let event = core.wf.as_mut().and_then(|run| run.preview(handler, id, db_down));
                    actions.push(Action::Input(Input::WorkflowPreviewed { token, event }));
                }
                Command::Resume { token, handler, id, sent } => {
                    let run = core.wf.as_mut().expect("a workflow run");
                    if let Some(d) = run.resume(handler, id, now, sent) {
                        if let Some(op) = d.op {
                            ctx.record(node, op);
                        }
                        let (committed, events, waiting) = (d.committed, d.events, d.waiting);
                        let done = Input::WorkflowDone { token, committed, events, compensate: None, waiting };
                        actions.push(Action::Input(done));
                    }
                }
                Command::Steps { .. } => unreachable!("only listeners run a workflow's steps"),
            }
        }
    }
    for action in actions {
        match action {
            Action::Input(input) => service_input(ctx, s, input),
            // A workflow handler without a transaction reaches no database: its steps run now.
            Action::Txn { token, txn: Txn::Workflow { handler, id } }
                if ctx.core.borrow().wf.as_ref().is_some_and(|run| !run.has_transaction(handler)) =>
            {
                let incarnation = ctx.core.borrow().services[s as usize].incarnation;
                workflow_txn(ctx, s, token, handler, id, incarnation, false);
            }
            Action::Txn { token, txn } => spawn_txn(ctx, s, token, txn),
            Action::Produce { token, topic, message } => produce(ctx, s, token, topic, message),
            Action::Pay { order, user, amount } => {
                let ctx = ctx.clone();
                let at = ctx.now() + ctx.scenario.workload.pay_after_ms * 1_000;
                ctx.core.borrow_mut().pending += 1;
                tokio::task::spawn_local(async move {
                    tokio::time::sleep_until(ctx.instant(at)).await;
                    ctx.core.borrow_mut().pending -= 1;
                    payment_request(&ctx, order, user, amount);
                });
            }
            Action::FollowUp { handler, id, at } => send_later(ctx, handler, id, at),
            Action::Timer { token, after_us } => {
                let ctx = ctx.clone();
                let incarnation = ctx.core.borrow().services[s as usize].incarnation;
                tokio::task::spawn_local(async move {
                    tokio::time::sleep(Duration::from_micros(after_us)).await;
                    if ctx.core.borrow().services[s as usize].incarnation == incarnation {
                        service_input(&ctx, s, Input::Timer { token });
                    }
                });
            }
        }
    }
}

/// A DB transaction: it takes the scenario's DB latency, then commits or rolls back. The DB
/// applies transactions in the order they were issued (each waits its latency in line), as the
/// simulator's DB does: which of two orders for the last unit of stock wins must not depend on
/// how the OS happens to wake two timers that are due in the same millisecond.
fn spawn_txn(ctx: &Ctx, s: u16, token: Token, txn: Txn) {
    let due = ctx.now() + ctx.scenario.database.latency_us;
    let mut core = ctx.core.borrow_mut();
    let incarnation = core.services[s as usize].incarnation;
    core.pending += 1;
    core.db_queue.push_back(QueuedTxn { due, s, token, txn, incarnation });
    drop(core);
    ctx.db_wake.notify_one();
}

/// A transaction waiting in the DB's line.
pub(crate) struct QueuedTxn {
    due: Micros,
    s: u16,
    token: Token,
    txn: Txn,
    incarnation: u32,
}

/// The DB: applies queued transactions in order, each at its due time.
async fn db_worker(ctx: Ctx) {
    loop {
        let next = ctx.core.borrow_mut().db_queue.pop_front();
        let Some(QueuedTxn { due, s, token, txn, incarnation }) = next else {
            ctx.db_wake.notified().await;
            continue;
        };
        tokio::time::sleep_until(ctx.instant(due)).await;
        if let Txn::Workflow { handler, id } = txn {
            workflow_txn(&ctx, s, token, handler, id, incarnation, true);
            continue;
        }
        let outcome = {
            let mut guard = ctx.core.borrow_mut();
            let core = &mut *guard;
            core.pending -= 1;
            if core.services[s as usize].incarnation != incarnation {
                // The process died while its transaction was open: the DB rolled it back.
                core.outbox_rows.remove(&(s, token));
                continue;
            }
            let node = core.services[s as usize].node;
            let outcome = if !core.db_down.is_empty() {
                faults::outage_hit(core, faults::Outage::Db);
                TxnOutcome::RolledBack(Rollback::Unavailable)
            } else {
                core.apply_txn(&ctx, node, &txn)
            };
            if let Some(event) = core.outbox_rows.remove(&(s, token))
                && outcome == TxnOutcome::Committed
            {
                let now = ctx.now();
                core.db.insert_outbox(event, now, &mut core.facts);
                record_facts(&ctx, core, node);
            }
            outcome
        };
        service_input(&ctx, s, Input::TxnDone { token, outcome });
    }
}

/// A workflow request's transaction at its commit ([`evsim_sim::workflow::WorkflowRun::decide`],
/// as the simulator runs it): its decision recorded, the outbox rows of its events written with
/// it when the service publishes through an outbox, the service told what it publishes.
fn workflow_txn(ctx: &Ctx, s: u16, token: Token, handler: u16, id: u64, incarnation: u32, queued: bool) {
    let (committed, events, compensate, waiting) = {
        let mut guard = ctx.core.borrow_mut();
        let core = &mut *guard;
        if queued {
            core.pending -= 1;
        }
        if core.services[s as usize].incarnation != incarnation {
            // The process died while its transaction was open: the DB rolled it back.
            return;
        }
        let node = core.services[s as usize].node;
        let db_down = !core.db_down.is_empty();
        let run = core.wf.as_mut().expect("a workflow run");
        let transacts = run.has_transaction(handler);
        let Some(decided) = run.decide(handler, id, ctx.now(), db_down) else { return };
        if transacts {
            if db_down {
                faults::outage_hit(core, faults::Outage::Db);
            }
            if decided.committed {
                core.stats.orders_committed += 1;
            } else {
                core.stats.orders_rejected += 1;
            }
        }
        if let Some(op) = decided.op {
            ctx.record(node, op);
        }
        let spec = &ctx.scenario.services[core.services[s as usize].spec as usize];
        if decided.committed && spec.publish == PublishStrategy::Outbox {
            let now = ctx.now();
            for &event in &decided.events {
                core.db.insert_outbox(event, now, &mut core.facts);
            }
            record_facts(ctx, core, node);
        }
        for op in decided.broken {
            ctx.record(node, op);
        }
        (decided.committed, decided.events, decided.compensate, decided.waiting)
    };
    service_input(ctx, s, Input::WorkflowDone { token, committed, events, compensate, waiting });
}

/// The workflow's requests, each type a Poisson stream drawn as the simulator draws it: the
/// streams' arrivals in time order (ties in the order they were scheduled), each request's
/// fields drawn when it arrives, none from the quiet period on.
async fn workflow_requests(ctx: Ctx) {
    use std::cmp::Reverse;
    let mut due = std::collections::BinaryHeap::new();
    let mut seq = 0u64;
    {
        let mut core = ctx.core.borrow_mut();
        let Some(run) = core.wf.as_mut() else { return };
        for h in run.arriving().collect::<Vec<_>>() {
            seq += 1;
            due.push(Reverse((run.next_at(h), seq, h)));
        }
    }
    let quiet_from = ctx.scenario.run.duration_ms * 1_000;
    while let Some(Reverse((at, _, handler))) = due.pop() {
        if at >= quiet_from {
            continue;
        }
        tokio::time::sleep_until(ctx.instant(at)).await;
        let (id, live, duplicate) = {
            let mut guard = ctx.core.borrow_mut();
            let core = &mut *guard;
            core.stats.requests += 1;
            let services = &core.services;
            let run = core.wf.as_mut().expect("a workflow run");
            let picked = run.next_request(handler, |s| services[s as usize].alive);
            seq += 1;
            due.push(Reverse((run.next_at(handler), seq, handler)));
            picked
        };
        if let Some((again, after)) = duplicate {
            send_later(&ctx, handler, again, at + after);
        }
        if let Some(s) = live {
            ctx.record(NodeId(0), Op::Requested { handler, id });
            service_input(&ctx, s, Input::Request(Request::Workflow { handler, id }));
        }
    }
}

/// The client sends workflow request `id` of type `handler` at `at` (a follow-up, or a
/// duplicate of a request), to a live instance of its service then.
fn send_later(ctx: &Ctx, handler: u16, id: u64, at: Micros) {
    let ctx = ctx.clone();
    ctx.core.borrow_mut().pending += 1;
    tokio::task::spawn_local(async move {
        tokio::time::sleep_until(ctx.instant(at)).await;
        let live = {
            let mut guard = ctx.core.borrow_mut();
            let core = &mut *guard;
            core.pending -= 1;
            let services = &core.services;
            let run = core.wf.as_mut().expect("a workflow run");
            run.follow_up(handler, id, |s| services[s as usize].alive)
        };
        if let Some(s) = live {
            ctx.record(NodeId(0), Op::Requested { handler, id });
            service_input(&ctx, s, Input::Request(Request::Workflow { handler, id }));
        }
    });
}

/// A client request reaches a live instance, round-robin as a load balancer would.
/// Whether instance `s` is a compiled-in service of `kind`: one that runs a workflow's requests
/// is not (a test may set a workflow on a scenario that still names kinds), as in the simulator.
fn compiled_in(s: &Svc, kind: ServiceKind) -> bool {
    s.service.is_compiled_in(kind, s.kind)
}

fn pick(core: &Core, kind: ServiceKind, id: u64) -> Option<u16> {
    let of_kind: Vec<u16> =
        (0..core.services.len() as u16).filter(|&i| compiled_in(&core.services[i as usize], kind)).collect();
    let n = of_kind.len() as u64;
    (0..n).map(|i| of_kind[((id + i) % n) as usize]).find(|&s| core.services[s as usize].alive)
}

fn payment_request(ctx: &Ctx, order: u64, user: u64, amount: i64) {
    let Some(s) = pick(&ctx.core.borrow(), ServiceKind::PaymentService, order) else { return };
    ctx.record(NodeId(0), Op::PaymentRequested { order, user, amount });
    service_input(ctx, s, Input::Request(Request::Pay { order, user, amount }));
}

/// A planned client request.
fn request(ctx: &Ctx, request: Request) {
    let (kind, id, op) = match request {
        Request::CreateOrder { order, user, product, qty } => {
            (ServiceKind::OrderService, order, Op::OrderRequested { order, user, product, qty })
        }
        Request::IssueCoupon { request, coupon, user } => {
            (ServiceKind::CouponApi, request, Op::CouponRequested { request, coupon, user })
        }
        Request::EnterQueue { token, concert, user } => {
            (ServiceKind::WaitingQueueApi, token, Op::QueueEntered { token, concert, user })
        }
        Request::Pay { .. } => unreachable!("payments are not planned"),
        Request::Workflow { .. } => unreachable!("workflow requests come from workflow_requests"),
    };
    let Some(s) = ({
        let mut core = ctx.core.borrow_mut();
        // No compiled-in service of that kind (a workflow runs them): no such workload, as in
        // the simulator.
        if !core.services.iter().any(|x| compiled_in(x, kind)) {
            return;
        }
        core.stats.requests += 1;
        pick(&core, kind, id)
    }) else {
        return;
    };
    ctx.record(NodeId(0), op);
    if let Request::CreateOrder { order, user, qty, .. } = request {
        let mut core = ctx.core.borrow_mut();
        if (0..core.services.len()).any(|i| core.services[i].kind == ServiceKind::PaymentService) {
            core.to_pay.insert(order, (user, i64::from(qty) * ctx.scenario.workload.price));
        }
    }
    service_input(ctx, s, Input::Request(request));
}

/// Start the outbox scheduler of service `s`, if it publishes through an outbox.
pub(crate) fn start_outbox(ctx: &Ctx, s: u16) {
    let (spec, incarnation) = {
        let core = ctx.core.borrow();
        (core.services[s as usize].spec, core.services[s as usize].incarnation)
    };
    let spec = &ctx.scenario.services[spec as usize];
    if spec.publish != PublishStrategy::Outbox {
        return;
    }
    let ctx = ctx.clone();
    let after = Duration::from_millis(spec.outbox_scan_ms);
    tokio::task::spawn_local(async move {
        tokio::time::sleep(after).await;
        if ctx.core.borrow().services[s as usize].incarnation == incarnation {
            service_input(&ctx, s, Input::Timer { token: OUTBOX_SCHEDULER });
        }
    });
}

/// A crashed service comes back: fresh memory, a fresh producer, the same DB.
pub(crate) fn restart_service(ctx: &Ctx, s: u16) -> Result<(), String> {
    {
        let mut core = ctx.core.borrow_mut();
        let svc = &mut core.services[s as usize];
        let spec = &ctx.scenario.services[svc.spec as usize];
        svc.service = service_of(&ctx.scenario, spec, svc.topic);
        svc.producer = producer_for(&ctx.bootstrap, &spec.producer).map_err(|e| e.to_string())?;
        svc.alive = true;
    }
    start_outbox(ctx, s);
    Ok(())
}

/// The service a `[services.*]` table runs: the workflow's, for a table its requests name.
fn service_of(scenario: &Scenario, spec: &evsim_model::scenario::ServiceSpec, topic: TopicId) -> AnyService {
    if evsim_sim::workflow::runs_requests(scenario, &spec.name) {
        AnyService::workflow(spec, topic)
    } else {
        AnyService::new(spec, topic)
    }
}

/// The history's header for `scenario` (the same names and ids as a simulated run's).
fn header(scenario: &Scenario, seed: u64) -> Header {
    let topics: Vec<TopicInfo> =
        scenario.topics.iter().map(|t| TopicInfo { name: t.name.clone(), partitions: t.partitions }).collect();
    let topic_id = |name: &str| TopicId(scenario.topics.iter().position(|t| t.name == name).unwrap_or(0) as u16);
    let groups = scenario
        .consumers
        .iter()
        .map(|c| GroupInfo {
            name: c.consumer.group_id.clone(),
            topics: c.topics.iter().map(|t| topic_id(t)).collect(),
            effect_once: c.effect_once,
        })
        .collect();
    Header {
        scenario: scenario.name.clone(),
        seed,
        nodes: scenario.node_names(),
        topics,
        groups,
        events: match &scenario.workflow {
            Some(wf) => evsim_sim::workflow::events(wf),
            None => evsim_model::event::builtin_events(),
        },
        handlers: scenario.workflow.as_deref().map(evsim_sim::workflow::handlers).unwrap_or_default(),
        invariants: scenario.workflow.as_deref().map(evsim_sim::workflow::invariants).unwrap_or_default(),
        quiet_from: scenario.run.duration_ms * 1_000,
        end: scenario.end_ms() * 1_000,
    }
}

/// Run `scenario` with `seed` against the broker `options` names.
pub fn run_real(scenario: &Scenario, seed: u64, options: &BrokerOptions) -> Result<RealOutcome, RealError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| RealError::Environment(format!("cannot start the tokio runtime: {e}")))?;
    let local = tokio::task::LocalSet::new();
    let outcome = local.block_on(&rt, run_async(scenario, seed, options));
    drop(local);
    // A librdkafka call still waiting on a broker that stopped answering is left behind, not
    // waited for.
    rt.shutdown_timeout(Duration::from_secs(1));
    outcome
}

async fn run_async(scenario: &Scenario, seed: u64, options: &BrokerOptions) -> Result<RealOutcome, RealError> {
    let wall_started = Instant::now();
    let mut schedule = faults::Schedule::new(scenario, seed);
    if options.kind == BrokerKind::Kafka {
        let refused = schedule.refused_on_kafka(scenario, options.net);
        if !refused.is_empty() {
            return Err(RealError::Usage(format!(
                "Apache Kafka cannot perform {} of the scenario's faults, so the run would not be the one \
                 the scenario describes:\n  {}",
                refused.len(),
                refused.join("\n  ")
            )));
        }
    }
    let mut harness = Harness::start(options, scenario).await?;
    let bootstrap = harness.bootstrap().to_string();
    let db = evsim_sim::setup::initial_db(scenario, seed);
    let plan = evsim_sim::setup::plan_requests(scenario, seed);
    let seeds = Seeds::new(seed);

    let mut services = Vec::new();
    let nodes = scenario.node_names();
    let node_of = |name: &str| NodeId(nodes.iter().position(|n| n == name).unwrap_or(0) as u16);
    for (index, spec) in scenario.services.iter().enumerate() {
        let topic = TopicId(scenario.topics.iter().position(|t| t.name == spec.topic).unwrap_or(0) as u16);
        for i in 0..spec.instances {
            services.push(Svc {
                node: node_of(&format!("{}-{i}", spec.name)),
                spec: index as u16,
                kind: spec.kind,
                topic,
                service: service_of(scenario, spec, topic),
                alive: true,
                incarnation: 0,
                producer: producer_for(&bootstrap, &spec.producer)?,
            });
        }
    }
    let start = Instant::now();
    let mut history = History::new(header(scenario, seed));
    for op in evsim_sim::setup::start_ops(scenario, &db) {
        history.push(0, NodeId(0), op);
    }
    // The workflow's requests come from the workload stream, as in the simulator.
    let mut wf = scenario.workflow.as_ref().map(|wf| {
        let instances: Vec<&str> = services.iter().map(|s| scenario.services[s.spec as usize].name.as_str()).collect();
        evsim_sim::workflow::WorkflowRun::new(
            wf.clone(),
            seeds.stream(Stream::Workload),
            seeds.stream(Stream::Business),
            seeds.stream(Stream::External),
            &instances,
        )
    });
    if let Some(run) = wf.as_mut() {
        // Initial rows that break an `always` invariant break it from the start.
        for op in run.broken_rows(false) {
            history.push(0, NodeId(0), op);
        }
    }
    let rec = Arc::new(Mutex::new(Recorder {
        start,
        history,
        committed: BTreeMap::new(),
        commits_ok: 0,
        commits_failed: 0,
        rebalances: 0,
    }));
    let ctx: Ctx = Rc::new(Shared {
        scenario: scenario.clone(),
        rec: rec.clone(),
        core: RefCell::new(Core {
            db,
            cache: Cache::default(),
            facts: Vec::new(),
            stats: Stats::default(),
            services,
            to_pay: BTreeMap::new(),
            outbox_rows: BTreeMap::new(),
            db_down: Vec::new(),
            platform_down: vec![Vec::new(); scenario.consumers.len()],
            pending: 0,
            high: BTreeMap::new(),
            handled: BTreeMap::new(),
            rng: seeds.stream(Stream::Client),
            placement_mismatches: 0,
            outage_hits: Default::default(),
            db_queue: Default::default(),
            wf,
        }),
        bootstrap: bootstrap.clone(),
        start: std::cell::Cell::new(start),
        db_wake: tokio::sync::Notify::new(),
    });
    tokio::task::spawn_local(db_worker(ctx.clone()));

    // Consumers first, so that they are in their groups when the first records arrive.
    let mut consumers: Vec<ConsumerHandle> = Vec::new();
    for (g, spec) in scenario.consumers.iter().enumerate() {
        for i in 0..spec.instances {
            let node = node_of(&format!("{}-{i}", spec.name));
            consumers.push(consumer::spawn(&ctx, GroupId(g as u16), i, node)?);
        }
    }
    // A member lost in the first join (librdkafka's KIP-394 member-id round trip can leave a
    // ghost the coordinator waits for) is only expelled after `session.timeout.ms`.
    let longest_session = scenario.consumers.iter().map(|c| c.consumer.session_timeout_ms).max().unwrap_or(0);
    let limit = Duration::from_millis(longest_session + 30_000);
    consumer::wait_assigned(&ctx, &consumers, limit).await?;
    // Time zero: the groups have formed, the workload starts now.
    let t0 = Instant::now();
    ctx.start.set(t0);
    lock(&rec).start = t0;
    for s in 0..ctx.core.borrow().services.len() as u16 {
        start_outbox(&ctx, s);
    }
    let fault_log: RefCell<Vec<RealFault>> = RefCell::new(Vec::new());
    let consumers = RefCell::new(consumers);
    // The workload: every planned request at its time.
    let workload = {
        let ctx = ctx.clone();
        tokio::task::spawn_local(async move {
            let requests = async {
                for p in plan {
                    tokio::time::sleep_until(ctx.instant(p.at)).await;
                    request(&ctx, p.request);
                }
            };
            tokio::join!(requests, workflow_requests(ctx.clone()));
        })
    };
    let end = ctx.instant(scenario.end_ms() * 1_000);
    let quiet_from = scenario.run.duration_ms * 1_000;
    let mut broken: Option<String> = None;
    {
        let settle = async {
            let _ = workload.await;
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if ctx.now() >= quiet_from && settled(&ctx) {
                    // A grace period for anything still on its way.
                    tokio::time::sleep(Duration::from_millis(1_000)).await;
                    if settled(&ctx) {
                        return;
                    }
                }
            }
        };
        let kafka = harness.kafka();
        let watchdog = async {
            let Some(cluster) = kafka else { return std::future::pending().await };
            // A node that exits by itself (not by a fault) breaks the run.
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let exited = cluster.borrow_mut().exited();
                if let Some(why) = exited {
                    return why;
                }
            }
        };
        let faults = schedule.run(&ctx, &mut harness, &consumers);
        tokio::select! {
            _ = async { tokio::join!(faults, settle) } => {}
            _ = tokio::time::sleep_until(end) => {}
            why = watchdog => broken = Some(why),
        }
    }
    if let Some(why) = broken {
        // The broker broke, not the design: nothing this run recorded can be judged.
        let all: Vec<ConsumerHandle> = consumers.borrow_mut().drain(..).collect();
        for c in all {
            c.abandon().await;
        }
        harness.stop();
        return Err(broker_broke(options, &why));
    }
    // Faults still running end now (a crashed process restarts, a broker comes back), so that
    // the final state is read from a whole cluster.
    schedule.end_all(&ctx, &mut harness, &consumers).await;
    fault_log.borrow_mut().extend(schedule.outcomes(&ctx));
    let ended = ctx.now();
    // Stop consumers (they leave their groups), then read the final state.
    let all: Vec<ConsumerHandle> = consumers.borrow_mut().drain(..).collect();
    for c in all {
        c.stop().await;
    }
    let reading = {
        let (scenario, bootstrap) = (scenario.clone(), bootstrap.clone());
        tokio::task::spawn_blocking(move || consumer::final_lags(&scenario, &bootstrap))
    };
    let (lags, lag_error) = match tokio::time::timeout(Duration::from_secs(60), reading).await {
        Ok(Ok(read)) => read,
        _ => (Vec::new(), Some("the final lags could not be read within 60 s".to_string())),
    };
    let exited = harness.kafka().and_then(|c| c.borrow_mut().exited());
    harness.stop();
    if let Some(why) = exited {
        return Err(broker_broke(options, &why));
    }

    let mut core = ctx.core.borrow_mut();
    let mut rec = lock(&rec);
    rec.history.header.end = ended.max(quiet_from);
    let end_at = rec.history.header.end;
    for (product, stock) in core.db.stock.clone().into_iter().enumerate() {
        rec.history.push(end_at, NodeId(0), Op::StockFinal { product: product as u32, stock });
    }
    if let Some(run) = core.wf.as_mut() {
        for op in run.broken_rows(true) {
            rec.history.push(end_at, NodeId(0), op);
        }
        if let Some(e) = run.error() {
            // The workflow is wrong (an expression failed): no verdict rather than a wrong one.
            return Err(RealError::Usage(format!("the workflow is wrong: an expression failed ({e})")));
        }
        core.stats.workflow = Some(run.stats(&rec.history.entries));
    }
    for (event, (_, _, published)) in &core.db.outbox {
        if !published {
            rec.history.push(end_at, NodeId(0), Op::OutboxPending { event: *event });
        }
    }
    for (group, tp, lag) in lags {
        rec.history.push(end_at, NodeId(0), Op::FinalLag { group, tp, lag });
    }
    core.stats.commits_ok = rec.commits_ok;
    core.stats.commits_failed = rec.commits_failed;
    core.stats.rebalances = rec.rebalances;
    let history = std::mem::take(&mut rec.history);
    let mut notes = std::mem::take(&mut harness.notes);
    notes.extend(crate::unsupported(scenario));
    if let Some(e) = lag_error {
        notes.push(e);
    }
    let faults = fault_log.borrow().clone();
    Ok(RealOutcome::judge(
        scenario,
        seed,
        options.kind,
        history,
        std::mem::take(&mut core.stats),
        faults,
        notes,
        core.placement_mismatches,
        wall_started.elapsed(),
        t0.elapsed(),
    ))
}

/// The error of a run whose broker failed inside (exit 2: the environment, not the design).
fn broker_broke(options: &BrokerOptions, why: &str) -> RealError {
    RealError::Environment(format!(
        "{} failed during the run ({why}); a run whose broker broke cannot be judged",
        options.kind.name()
    ))
}

/// Whether nothing is left to do: no request, transaction or send in flight, no outbox row
/// INIT, and every group has handled and committed every partition to its log end.
fn settled(ctx: &Ctx) -> bool {
    let core = ctx.core.borrow();
    if core.pending > 0 || core.db.outbox.values().any(|(_, _, published)| !published) {
        return false;
    }
    let rec = lock(&ctx.rec);
    for (g, spec) in ctx.scenario.consumers.iter().enumerate() {
        let group = GroupId(g as u16);
        for (tp, &end) in &core.high {
            if !spec.topics.iter().any(|t| ctx.topic_id(t) == Some(tp.topic)) {
                continue;
            }
            let handled = core.handled.get(&(group, *tp)).copied().unwrap_or(0);
            let committed = rec.committed.get(&(group, *tp)).copied().unwrap_or(0);
            if handled < end || committed < end {
                return false;
            }
        }
    }
    true
}
