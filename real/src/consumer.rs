//! Consumer instances on librdkafka: a `StreamConsumer` per instance, its rebalance and commit
//! callbacks recorded in the history, and the listener container's loop (poll a batch, handle
//! each record, commit as the scenario's strategy says).

use crate::RealError;
use crate::driver::{Ctx, Rec, lock, record_facts};
use crate::faults::{self, Outage};
use crate::producer::{Sender, error_code, producer_for, send, send_recorded};
use evsim_model::actor::{Command, Listener};
use evsim_model::event::{Event, Message};
use evsim_model::history::{ErrorCode, GroupId, NodeId, Op, Polled, TopicId, Tp};
use evsim_model::registry::AnyListener;
use evsim_model::scenario::{AssignmentStrategy, CommitStrategy, OffsetReset, Scenario};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::Message as _;
use rdkafka::producer::FutureProducer;
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::{ClientConfig, ClientContext, Offset};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

/// Spring's `DefaultErrorHandler`: 10 attempts, then log and skip.
const DEFAULT_ERROR_HANDLER_ATTEMPTS: u32 = 10;

/// librdkafka's callbacks for one consumer instance: they record rebalances and commits.
pub(crate) struct Callbacks {
    rec: Rec,
    node: NodeId,
    group: GroupId,
    topics: Vec<String>,
    generation: AtomicI32,
    assigned: AtomicBool,
    /// One commit at a time per consumer (the container's and the auto-commit timer's), so that
    /// they reach the coordinator and the history in one order.
    commits: tokio::sync::Mutex<()>,
}

impl Callbacks {
    fn tps(&self, list: &TopicPartitionList) -> Vec<Tp> {
        let mut out: Vec<Tp> = list
            .elements()
            .iter()
            .filter_map(|e| {
                let topic = self.topics.iter().position(|t| t == e.topic())?;
                Some(Tp { topic: TopicId(topic as u16), partition: e.partition() as u32 })
            })
            .collect();
        out.sort_unstable();
        out
    }
}

impl ClientContext for Callbacks {}

impl ConsumerContext for Callbacks {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let partitions = self.tps(list);
            lock(&self.rec).push(self.node, Op::Revoked { group: self.group, partitions });
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            // librdkafka does not expose the group generation: this is the member's own count of
            // assignments, which is what the checkers need (a rebalance happened here).
            let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
            let partitions = self.tps(list);
            let mut rec = lock(&self.rec);
            rec.rebalances += 1;
            rec.push(self.node, Op::Assigned { group: self.group, generation, partitions });
            self.assigned.store(true, Ordering::Release);
        }
    }
}

/// What the run controls of a running consumer.
struct Control {
    stop: Cell<bool>,
    /// Stopped by a crash: nothing more is committed.
    crashed: Cell<bool>,
    wake: tokio::sync::Notify,
    paused_until: Cell<Option<tokio::time::Instant>>,
    /// The auto-commit timer's task, and how to stop it (after its commit in flight, if any).
    auto: RefCell<Option<tokio::task::JoinHandle<()>>>,
    auto_stop: tokio::sync::Notify,
}

/// A running consumer instance.
pub(crate) struct ConsumerHandle {
    pub(crate) node: NodeId,
    control: Rc<Control>,
    /// Kept until the task has ended, so that the close happens after the last poll.
    consumer: Arc<StreamConsumer<Callbacks>>,
    task: tokio::task::JoinHandle<()>,
}

impl ConsumerHandle {
    /// Stop polling, leave the group (librdkafka's close) and wait until it has.
    pub(crate) async fn stop(self) {
        self.control.stop.set(true);
        self.control.wake.notify_one();
        let _ = self.task.await;
        // The timer ends after its commit in flight, if any; then this handle holds the last
        // reference, and the close runs off evsim's thread.
        self.control.auto_stop.notify_one();
        let auto = self.control.auto.borrow_mut().take();
        if let Some(auto) = auto {
            let _ = auto.await;
        }
        close(self.consumer, Duration::from_secs(30)).await;
    }

    /// Drop the consumer without waiting for its container (the run is being abandoned).
    pub(crate) async fn abandon(self) {
        self.task.abort();
        let _ = self.task.await;
        let auto = self.control.auto.borrow_mut().take();
        if let Some(auto) = auto {
            auto.abort();
            let _ = auto.await;
        }
        close(self.consumer, Duration::from_secs(5)).await;
    }

    /// The process dies: no closing commit (librdkafka still leaves the group on close).
    pub(crate) async fn crash(self) {
        self.control.crashed.set(true);
        self.stop().await;
    }

    /// Stop the container until `until`, where it is (between polls or mid-batch; a long GC
    /// pause): librdkafka's heartbeat thread goes on, so it leaves the group only after
    /// `max.poll.interval.ms`.
    pub(crate) fn pause(&self, until: tokio::time::Instant) {
        self.control.paused_until.set(Some(until));
    }

    fn assigned(&self) -> bool {
        self.consumer.context().assigned.load(Ordering::Acquire)
    }
}

/// The librdkafka consumer for instance `instance` of group `group`.
fn consumer_for(
    ctx: &Ctx,
    group: GroupId,
    instance: u32,
    callbacks: Callbacks,
) -> Result<StreamConsumer<Callbacks>, RealError> {
    let spec = &ctx.scenario.consumers[group.0 as usize];
    let k = &spec.consumer;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &ctx.bootstrap)
        .set("group.id", &k.group_id)
        .set("client.id", format!("{}-{instance}", spec.name))
        // Auto-commit is evsim's own timer (see `auto_commit`), committing what is stored.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.offset.reset",
            match k.auto_offset_reset {
                OffsetReset::Earliest => "earliest",
                OffsetReset::Latest => "latest",
                OffsetReset::None => "error",
            },
        )
        // The Java consumer's request.timeout.ms is librdkafka's socket.timeout.ms.
        .set("socket.timeout.ms", k.request_timeout_ms.max(10).to_string())
        .set("session.timeout.ms", k.session_timeout_ms.to_string())
        .set("heartbeat.interval.ms", k.heartbeat_interval_ms.to_string())
        .set("max.poll.interval.ms", k.max_poll_interval_ms.max(k.session_timeout_ms).to_string())
        .set("fetch.wait.max.ms", k.fetch_max_wait_ms.to_string())
        .set("max.partition.fetch.bytes", k.max_partition_fetch_bytes.to_string())
        .set(
            "partition.assignment.strategy",
            match k.partition_assignment_strategy {
                AssignmentStrategy::Range => "range",
                AssignmentStrategy::CooperativeSticky => "cooperative-sticky",
            },
        )
        .set("log_level", "3");
    crate::set_debug(&mut c);
    crate::set_connection(&mut c, &k.connection);
    if let Some(id) = &k.group_instance_id {
        c.set("group.instance.id", format!("{id}-{instance}"));
    }
    let consumer: StreamConsumer<Callbacks> = c
        .create_with_context(callbacks)
        .map_err(|e| RealError::Environment(format!("cannot create consumer {}-{instance}: {e}", spec.name)))?;
    let topics: Vec<&str> = spec.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| RealError::Environment(format!("cannot subscribe {}-{instance}: {e}", spec.name)))?;
    Ok(consumer)
}

/// Start instance `instance` of group `group`.
pub(crate) fn spawn(ctx: &Ctx, group: GroupId, instance: u32, node: NodeId) -> Result<ConsumerHandle, RealError> {
    let callbacks = Callbacks {
        rec: ctx.rec.clone(),
        node,
        group,
        topics: ctx.scenario.topics.iter().map(|t| t.name.clone()).collect(),
        generation: AtomicI32::new(0),
        assigned: AtomicBool::new(false),
        commits: tokio::sync::Mutex::new(()),
    };
    let consumer = Arc::new(consumer_for(ctx, group, instance, callbacks)?);
    let spec = &ctx.scenario.consumers[group.0 as usize];
    let dlq = match &spec.dlq_topic {
        Some(topic) => Some((producer_for(&ctx.bootstrap, &spec.producer)?, topic.clone())),
        None => None,
    };
    // A workflow listener that publishes sends with a KafkaTemplate of its own (the group's
    // producer settings), as the simulator's does.
    let template = if evsim_sim::workflow::listener_publishes(&ctx.scenario, &spec.name) {
        Some(producer_for(&ctx.bootstrap, &spec.producer)?)
    } else {
        None
    };
    let control = Rc::new(Control {
        stop: Cell::new(false),
        crashed: Cell::new(false),
        wake: tokio::sync::Notify::new(),
        paused_until: Cell::new(None),
        auto: RefCell::new(None),
        auto_stop: tokio::sync::Notify::new(),
    });
    let producers = Producers { dlq, template };
    let task =
        tokio::task::spawn_local(container(ctx.clone(), consumer.clone(), group, node, control.clone(), producers));
    Ok(ConsumerHandle { node, control, consumer, task })
}

/// Wait until every consumer has had its first assignment (the groups have formed).
pub(crate) async fn wait_assigned(_ctx: &Ctx, consumers: &[ConsumerHandle], limit: Duration) -> Result<(), RealError> {
    let started = tokio::time::Instant::now();
    while !consumers.iter().all(ConsumerHandle::assigned) {
        if started.elapsed() > limit {
            return Err(RealError::Environment(format!(
                "the consumer groups did not form within {} s (no assignment for {} of {} consumers)",
                limit.as_secs(),
                consumers.iter().filter(|c| !c.assigned()).count(),
                consumers.len()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// A record as the listener sees it, or `None` for a record evsim did not write.
fn decode(ctx: &Ctx, m: &rdkafka::message::BorrowedMessage<'_>) -> Option<(Polled, Message)> {
    let topic = ctx.topic_id(m.topic())?;
    let value: Event = serde_json::from_slice(m.payload()?).ok()?;
    let key = match m.key() {
        Some(k) => Some(std::str::from_utf8(k).ok()?.parse::<u64>().ok()?),
        None => None,
    };
    let polled =
        Polled { tp: Tp { topic, partition: m.partition() as u32 }, offset: m.offset() as u64, key, value: value.id() };
    Some((polled, Message { key, value }))
}

/// Offsets to commit for `records`: per partition, the next offset after the last one.
fn next_offsets(records: &[Polled]) -> BTreeMap<Tp, u64> {
    let mut next: BTreeMap<Tp, u64> = BTreeMap::new();
    for r in records {
        let n = next.entry(r.tp).or_default();
        *n = (*n).max(r.offset + 1);
    }
    next
}

/// How long a commit may take: librdkafka's synchronous commit has no deadline of its own (it
/// waits for the coordinator), so evsim gives it the Java client's `commitSync` default,
/// `default.api.timeout.ms` = 60 s, and records a timeout past it.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Commit `offsets` (next offsets to read) and record the result. Synchronous, as the
/// container waits for it: rust-rdkafka 0.39 never hands an asynchronous commit's result to the
/// context (librdkafka only reports it to an `offset_commit_cb`, which rust-rdkafka does not
/// set), and a history needs every result. The blocking call runs off evsim's thread, so that a
/// commit waiting on the coordinator holds up its own container only, as in a real deployment
/// where each container has its thread.
async fn commit(ctx: &Ctx, consumer: &Arc<StreamConsumer<Callbacks>>, offsets: &BTreeMap<Tp, u64>) {
    if offsets.is_empty() {
        return;
    }
    let mut list = TopicPartitionList::new();
    for (tp, o) in offsets {
        let _ = list.add_partition_offset(ctx.topic_name(tp.topic), tp.partition as i32, Offset::Offset(*o as i64));
    }
    let cb = consumer.context();
    let _one_at_a_time = cb.commits.lock().await;
    // The generation the commit is made in: a rebalance may complete while it is in flight.
    let generation = cb.generation.load(Ordering::Relaxed);
    let blocking = {
        let consumer = consumer.clone();
        tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync).map_err(|e| error_code(&e)))
    };
    let result = match tokio::time::timeout(COMMIT_TIMEOUT, blocking).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(ErrorCode::Other(-1)),
        // The client gave up; the coordinator may still apply it, as after a Java commitSync's
        // TimeoutException.
        Err(_) => Err(ErrorCode::RequestTimedOut),
    };
    let offsets: Vec<(Tp, u64)> = offsets.iter().map(|(tp, o)| (*tp, *o)).collect();
    let mut rec = lock(&ctx.rec);
    match result {
        Ok(()) => {
            rec.commits_ok += 1;
            for &(tp, o) in &offsets {
                let c = rec.committed.entry((cb.group, tp)).or_default();
                *c = (*c).max(o);
            }
            rec.push(cb.node, Op::Commit { group: cb.group, generation, offsets, error: None });
        }
        Err(error) => {
            rec.commits_failed += 1;
            rec.push(cb.node, Op::Commit { group: cb.group, generation, offsets, error: Some(error) });
        }
    }
}

/// Close a consumer (librdkafka leaves the group and, without auto-commit, commits nothing)
/// off evsim's thread, giving up after `limit`: a close waits on the coordinator, and a broker
/// that stopped answering must not hold the run forever.
pub(crate) async fn close(consumer: Arc<StreamConsumer<Callbacks>>, limit: Duration) {
    let closing = tokio::task::spawn_blocking(move || drop(consumer));
    if tokio::time::timeout(limit, closing).await.is_err() {
        tracing::warn!("a consumer did not close within {} s; left behind", limit.as_secs());
    }
}

/// The auto-commit timer (librdkafka's, every `auto.commit.interval.ms`): commit what the
/// consumer has stored. evsim runs it itself so that each commit's result is in the history.
async fn auto_commit(
    ctx: Ctx,
    consumer: Arc<StreamConsumer<Callbacks>>,
    stored: Rc<RefCell<BTreeMap<Tp, u64>>>,
    control: Rc<Control>,
) {
    let interval = Duration::from_millis(
        ctx.scenario.consumers[consumer.context().group.0 as usize].consumer.auto_commit_interval_ms.max(1),
    );
    let mut last: BTreeMap<Tp, u64> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = control.auto_stop.notified() => return,
        }
        if control.stop.get() {
            return;
        }
        let now = stored.borrow().clone();
        let changed: BTreeMap<Tp, u64> =
            now.iter().filter(|(tp, o)| last.get(tp) != Some(o)).map(|(tp, o)| (*tp, *o)).collect();
        commit(&ctx, &consumer, &changed).await;
        last = now;
    }
}

/// How one attempt to handle a record ended.
enum Handled {
    /// The listener acknowledged it (or it was a duplicate the idempotent consumer skipped).
    Acked,
    /// The listener ran but did not acknowledge.
    NotAcked,
    /// The handler threw before applying anything.
    Failed,
}

/// A consumer's producers: the dead-letter recoverer's (and its topic), and the KafkaTemplate
/// of a workflow listener that publishes.
struct Producers {
    dlq: Option<(FutureProducer, String)>,
    template: Option<FutureProducer>,
}

/// One attempt of the listener on one record, by consumer `node` of `group` (with its
/// listener's KafkaTemplate, if it publishes).
fn handle(
    ctx: &Ctx,
    listener: &mut AnyListener,
    (group, node, template): (GroupId, NodeId, Option<&FutureProducer>),
    record: &Polled,
    message: &Message,
) -> Handled {
    let spec = &ctx.scenario.consumers[group.0 as usize];
    let mut guard = ctx.core.borrow_mut();
    let core = &mut *guard;
    let now = ctx.now();
    let g = group.0 as usize;
    let faulted = !core.db_down.is_empty() || !core.platform_down[g].is_empty();
    let down = faulted || spec.external_outages_ms.iter().any(|&(s, e)| now >= s * 1_000 && now < e * 1_000);
    if faulted {
        faults::outage_hit(core, Outage::Db);
        faults::outage_hit(core, Outage::Platform(g));
    }
    let rate = spec.handler_error_rate;
    if down || (rate > 0.0 && core.rng.chance(rate)) {
        core.stats.handler_failures += 1;
        drop(guard);
        ctx.record(node, Op::Processed { group, record: *record, ok: false });
        return Handled::Failed;
    }
    if spec.commit_strategy == CommitStrategy::Idempotent && !core.db.mark_processed(group, record.value) {
        drop(guard);
        ctx.record(node, Op::DuplicateSkipped { group, record: *record });
        return Handled::Acked;
    }
    let mut commands = Vec::new();
    listener.on_record(now, record, message, &mut commands);
    let mut ok = false;
    let mut thrown = false;
    let mut sends = Vec::new();
    for cmd in commands {
        match cmd {
            Command::Cache { op, cause } => core.apply_cache(ctx, node, op, cause),
            Command::Transact { txn, .. } => {
                core.apply_txn(ctx, node, &txn);
            }
            Command::Ack => ok = true,
            Command::External { call, cause } => {
                ctx.record(node, call.effect(cause.unwrap_or(record.value), group));
            }
            // A workflow listener: its steps, then the acknowledgement, or its error handler's
            // turn when it threw (the steps that took effect before stay).
            Command::Steps { handler } => {
                let run = core.wf.as_mut().expect("a workflow run");
                let evsim_sim::workflow::Listened { acked, ops, sends: s } = run.listen(group, handler, record, now);
                for op in ops {
                    ctx.record(node, op);
                }
                sends = s;
                ok = acked;
                thrown = !acked;
            }
            _ => {}
        }
    }
    // What the steps published, sent fire and forget: the record is acknowledged whatever
    // becomes of the sends.
    let send_all = |sends: Vec<(u16, Message)>| {
        for (event, message) in sends {
            let wf = ctx.scenario.workflow.as_ref().expect("a workflow");
            let topic = ctx.topic_id(&wf.events[event as usize].topic).expect("a validated topic");
            let producer = template.expect("a publishing listener has its KafkaTemplate").clone();
            let partitioner = ctx.scenario.consumers[group.0 as usize].producer.partitioner;
            let to = Sender { producer, node, partitioner };
            send_recorded(ctx, to, topic, message, |_| true, |_| {});
        }
    };
    if thrown {
        core.stats.handler_failures += 1;
        drop(guard);
        send_all(sends);
        ctx.record(node, Op::Processed { group, record: *record, ok: false });
        return Handled::Failed;
    }
    record_facts(ctx, core, node);
    if ok {
        core.stats.records_consumed += 1;
    }
    drop(guard);
    send_all(sends);
    ctx.record(node, Op::Processed { group, record: *record, ok });
    if ok { Handled::Acked } else { Handled::NotAcked }
}

/// Note that `group` is done with `record` (for knowing when the run has settled).
fn handled_up_to(ctx: &Ctx, group: GroupId, record: &Polled) {
    let mut core = ctx.core.borrow_mut();
    let h = core.handled.entry((group, record.tp)).or_default();
    *h = (*h).max(record.offset + 1);
}

/// A pause the run set (`consumer-pause`) stops the container where it is, between polls or
/// within a batch, until it ends or the consumer is stopped.
async fn sit_out_pause(control: &Control) {
    if let Some(until) = control.paused_until.take() {
        tokio::select! {
            _ = control.wake.notified() => {}
            _ = tokio::time::sleep_until(until) => {}
        }
    }
}

/// The listener container: poll a batch, handle its records, commit per the strategy.
async fn container(
    ctx: Ctx,
    consumer: Arc<StreamConsumer<Callbacks>>,
    group: GroupId,
    node: NodeId,
    control: Rc<Control>,
    producers: Producers,
) {
    let Producers { dlq, template } = producers;
    let spec = ctx.scenario.consumers[group.0 as usize].clone();
    let strategy = spec.commit_strategy;
    let max = spec.consumer.max_poll_records.max(1) as usize;
    let auto = strategy == CommitStrategy::AutoCommit && spec.consumer.enable_auto_commit;
    let auto_store = auto && spec.consumer.enable_auto_offset_store;
    let store_after = auto && !auto_store;
    let stored: Rc<RefCell<BTreeMap<Tp, u64>>> = Rc::default();
    if auto {
        let timer =
            tokio::task::spawn_local(auto_commit(ctx.clone(), consumer.clone(), stored.clone(), control.clone()));
        *control.auto.borrow_mut() = Some(timer);
    }
    let mut listener = match evsim_sim::workflow::listener_of(&ctx.scenario, &spec.name) {
        Some(handler) => AnyListener::Workflow(evsim_model::workflow::service::WorkflowListener { handler }),
        None => AnyListener::new(spec.kind),
    };
    let mut failures: BTreeMap<(Tp, u64), u32> = BTreeMap::new();
    'poll: loop {
        sit_out_pause(&control).await;
        if control.stop.get() {
            break;
        }
        let first = tokio::select! {
            _ = control.wake.notified() => continue,
            m = consumer.recv() => m,
        };
        let mut batch: Vec<(Polled, Message)> = Vec::new();
        match first {
            Ok(m) => batch.extend(decode(&ctx, &m)),
            Err(e) => {
                tracing::debug!("consumer {node:?}: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        }
        // `max.poll.records`: what else is already fetched joins this poll.
        while batch.len() < max {
            match tokio::time::timeout(Duration::ZERO, consumer.recv()).await {
                Ok(Ok(m)) => batch.extend(decode(&ctx, &m)),
                _ => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let records: Vec<Polled> = batch.iter().map(|(p, _)| *p).collect();
        ctx.core.borrow_mut().stats.records_polled += records.len() as u64;
        ctx.record(node, Op::Poll { group, records: records.clone() });
        if strategy == CommitStrategy::CommitBeforeProcess {
            commit(&ctx, &consumer, &next_offsets(&records)).await;
        }
        if auto_store {
            // librdkafka's enable.auto.offset.store: stored as soon as poll() hands them over.
            stored.borrow_mut().extend(next_offsets(&records));
        }
        let mut acked: Vec<Polled> = Vec::new();
        let mut seek_from: Option<usize> = None;
        for (i, (record, message)) in batch.iter().enumerate() {
            let d = {
                let mut core = ctx.core.borrow_mut();
                core.rng.jitter(spec.processing_time_us, spec.processing_jitter_us)
            };
            tokio::time::sleep(Duration::from_micros(d)).await;
            // A pause (a long GC pause) stops the process mid-batch as well: the record is
            // handled when it ends, whatever the group did meanwhile.
            sit_out_pause(&control).await;
            if control.stop.get() {
                break 'poll; // the process ends mid-batch
            }
            match handle(&ctx, &mut listener, (group, node, template.as_ref()), record, message) {
                Handled::Acked => {
                    failures.remove(&(record.tp, record.offset));
                    acked.push(*record);
                    handled_up_to(&ctx, group, record);
                }
                Handled::NotAcked => handled_up_to(&ctx, group, record),
                Handled::Failed if strategy.retries_failures() => {
                    let n = failures.entry((record.tp, record.offset)).or_default();
                    *n += 1;
                    let limit = match strategy {
                        CommitStrategy::RetryThenDlq => spec.retries + 1,
                        _ => DEFAULT_ERROR_HANDLER_ATTEMPTS,
                    };
                    if *n < limit {
                        seek_from = Some(i);
                        break;
                    }
                    failures.remove(&(record.tp, record.offset));
                    if let Some((producer, topic)) = &dlq {
                        // Out of retries: to the dead-letter topic, and past it once acknowledged.
                        if send(producer, topic, message).await.is_err() {
                            seek_from = Some(i);
                            break;
                        }
                        acked.push(*record);
                    }
                    handled_up_to(&ctx, group, record);
                }
                Handled::Failed => handled_up_to(&ctx, group, record),
            }
        }
        if let Some(i) = seek_from {
            // Spring's DefaultErrorHandler: seek every partition of the unhandled records back
            // to its first one, so that the next poll delivers them again.
            let mut seeks: Vec<(Tp, u64)> = Vec::new();
            for (p, _) in &batch[i..] {
                if !seeks.iter().any(|(tp, _)| *tp == p.tp) {
                    seeks.push((p.tp, p.offset));
                }
            }
            for (tp, offset) in seeks {
                let topic = ctx.topic_name(tp.topic).to_string();
                let _ =
                    consumer.seek(&topic, tp.partition as i32, Offset::Offset(offset as i64), Duration::from_secs(1));
            }
        }
        if strategy.commits_after_batch() && !acked.is_empty() {
            commit(&ctx, &consumer, &next_offsets(&acked)).await;
        }
        if store_after {
            // The Java client's auto-commit: what earlier polls returned, once handled.
            let done = seek_from.unwrap_or(batch.len());
            let handled: Vec<Polled> = batch[..done].iter().map(|(p, _)| *p).collect();
            stored.borrow_mut().extend(next_offsets(&handled));
        }
        if spec.pause_between_polls_ms > 0 {
            tokio::time::sleep(Duration::from_millis(spec.pause_between_polls_ms)).await;
        }
    }
    if auto && !control.crashed.get() {
        // Closing an auto-committing consumer commits what it has stored.
        let last = stored.borrow().clone();
        commit(&ctx, &consumer, &last).await;
    }
}

/// Each group's lag at the end: the log end minus the committed offset, per partition of its
/// topics, read from the broker (`None` for the error when it cannot be read).
/// Blocking (librdkafka waits on the broker): run it off evsim's thread.
pub(crate) fn final_lags(scenario: &Scenario, bootstrap: &str) -> (Vec<(GroupId, Tp, u64)>, Option<String>) {
    let topic_id = |name: &str| scenario.topics.iter().position(|t| t.name == name).map(|i| TopicId(i as u16));
    let mut out = Vec::new();
    for (g, spec) in scenario.consumers.iter().enumerate() {
        let consumer: BaseConsumer = match ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", &spec.consumer.group_id)
            .set("enable.auto.commit", "false")
            .set("log_level", "0")
            .create()
        {
            Ok(c) => c,
            Err(e) => return (out, Some(format!("cannot read final lags: {e}"))),
        };
        let mut list = TopicPartitionList::new();
        for t in &spec.topics {
            let Some(topic) = topic_id(t) else { continue };
            for p in 0..scenario.topics[topic.0 as usize].partitions {
                list.add_partition(t, p as i32);
            }
        }
        let committed = match consumer.committed_offsets(list, Duration::from_secs(10)) {
            Ok(c) => c,
            Err(e) => {
                return (out, Some(format!("cannot read group {}'s committed offsets: {e}", spec.consumer.group_id)));
            }
        };
        for e in committed.elements() {
            let Some(topic) = topic_id(e.topic()) else { continue };
            let high = match consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(10)) {
                Ok((_, high)) => high.max(0) as u64,
                Err(err) => return (out, Some(format!("cannot read the log end of {}: {err}", e.topic()))),
            };
            let done = match e.offset() {
                Offset::Offset(o) if o >= 0 => o as u64,
                _ => 0,
            };
            let lag = high.saturating_sub(done);
            if lag > 0 {
                out.push((GroupId(g as u16), Tp { topic, partition: e.partition() as u32 }, lag));
            }
        }
    }
    (out, None)
}
