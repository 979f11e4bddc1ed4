//! The simulated world: the cluster, the services, the workload and the network, driven by the
//! kernel's event queue. One `World` is one run of one scenario with one seed.
//!
//! Everything that happens is an [`Ev`] popped from the queue at its virtual time; handlers live
//! next to the state they change (`cluster/*.rs` for Kafka, `workload.rs` for the services).

use crate::cluster::broker::{BrokerState, Partition};
use crate::cluster::consumer::Consumer;
use crate::cluster::coordinator::Group;
use crate::cluster::producer::Producer;
use crate::cluster::{Msg, Pools};
use crate::faults::FaultOutcome;
use crate::kernel::{EventQueue, Seeds, SimRng, Stream};
use crate::net::{Channel, Conn, Link, Net};
use crate::workload::{ServiceInstance, Workload};
use evsim_model::actor::Token;
use evsim_model::cache::Cache;
use evsim_model::db::{Db, Txn};
use evsim_model::event::Message;
use evsim_model::history::{
    DisconnectReason, GroupId, GroupInfo, Header, History, Micros, NodeId, Op, TopicId, TopicInfo, Tp,
};
use evsim_model::publish::OUTBOX_SCHEDULER;
use evsim_model::scenario::{FaultSpec, PublishStrategy, Scenario, ServiceKind};
use std::collections::BTreeMap;

/// Something that happens at a virtual time.
#[derive(Debug)]
pub(crate) enum Ev {
    /// A network message arrives.
    Net(Msg),
    /// The next order request of the workload.
    NextOrder,
    /// The next waiting-queue entry of the workload.
    NextQueueEntry,
    /// A consumer's container ends its pause between polls.
    ResumePoll { consumer: u16 },
    /// The next coupon request of the workload.
    NextCoupon,
    /// The next request of a workflow's request type `handler`.
    NextRequest { handler: u16 },
    /// The client sends a workflow's follow-up request.
    FollowUp { handler: u16, id: u64 },
    /// A client asks for a coupon.
    CouponRequest { request: u64, coupon: u32, user: u64 },
    /// A client pays for an order it created.
    PaymentRequest { order: u64, user: u64, amount: i64 },
    /// A timer a service set fires.
    ServiceTimer { service: u16, token: Token },
    /// A DB transaction reaches its commit point.
    TxnCommit { service: u16, token: Token, txn: Txn },
    /// A producer's `linger.ms` may have expired for some batch.
    Linger { producer: u16 },
    /// A parked fetch reached `fetch.max.wait.ms`.
    FetchExpired { broker: u16 },
    /// A consumer's heartbeat thread wakes up.
    HeartbeatTick { consumer: u16, epoch: u32 },
    /// The coordinator checks a member's session (`load`: the coordinator's load of the group
    /// the check belongs to; a coordinator that moved starts its own checks).
    SessionCheck { group: u16, member: u32, load: u32 },
    /// The coordinator's join phase deadline (initial delay or rebalance timeout).
    JoinDeadline { group: u16, round: u32 },
    /// A consumer's `poll(timeout)` returns empty.
    PollTimeout { consumer: u16 },
    /// A consumer's heartbeat thread checks `max.poll.interval.ms`.
    PollIntervalCheck { consumer: u16 },
    /// A listener finished handling the record it was given.
    ProcessDone { consumer: u16, epoch: u32 },
    /// Fault number `fault` of the plan starts.
    FaultStart { fault: u16 },
    /// Fault number `fault` of the plan ends.
    FaultEnd { fault: u16 },
    /// A producer request's `request.timeout.ms` passed.
    RequestTimeout { producer: u16, request: u64 },
    /// A consumer's fetch got no answer within `request.timeout.ms`.
    FetchTimeout { consumer: u16, broker: u16, fetch: u64 },
    /// A follower's fetch got no answer within `replica.socket.timeout.ms`.
    ReplicaFetchTimeout { follower: u16, leader: u16, fetch: u64 },
    /// The leaders check their followers against `replica.lag.time.max.ms`.
    IsrCheck,
    /// Brokers write their logs to disk.
    Flush,
    /// A broker's next heartbeat to the controller is due.
    BrokerHeartbeatTick { broker: u16, incarnation: u32 },
    /// The controller checks a broker's session (`broker.session.timeout.ms`).
    BrokerSessionCheck { broker: u16 },
    /// A broker's heartbeat got no answer from the controller in time.
    BrokerHeartbeatTimeout { broker: u16, seq: u32 },
    /// librdkafka's background auto-commit timer.
    AutoCommitTick { consumer: u16 },
    /// A consumer's JoinGroup, SyncGroup or OffsetFetch got no answer in time.
    CoordinatorTimeout { consumer: u16, epoch: u32 },
    /// A consumer's OffsetCommit (its send number `attempt`) got no answer in time.
    CommitTimeout { consumer: u16, commit: u64, attempt: u32 },
    /// A stalled link's retransmission timer fires (`stall`: which stall it belongs to).
    Retransmit { link: Link, stall: u32 },
    /// A connecting client sends (or retransmits) its SYN.
    Syn { conn: Conn, epoch: u32 },
    /// A handshake completes.
    Connected { conn: Conn, epoch: u32 },
    /// A connection attempt's `socket.connection.setup.timeout.ms` passes.
    ConnectTimeout { conn: Conn, epoch: u32 },
    /// A consumer's FindCoordinator got no answer in time.
    FindCoordinatorTimeout { consumer: u16, epoch: u32 },
    /// A consumer looks for its coordinator again (`retry.backoff.ms` after a failed look).
    FindCoordinatorRetry { consumer: u16, epoch: u32 },
    /// A synchronous commit tries again after a retriable error (`retry.backoff.ms`).
    CommitRetry { consumer: u16, commit: u64 },
}

/// The owner of a producer.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum ProducerOwner {
    Service(u16),
    /// A consumer's dead-letter publisher (`DeadLetterPublishingRecoverer`'s `KafkaTemplate`).
    Consumer(u16),
    /// The `KafkaTemplate` a consumer's workflow listener publishes with.
    Listener(u16),
}

/// The least simulated time between two calls of a run's observer.
const OBSERVE_EVERY_US: Micros = 1_000_000;

/// The history entry of a client's connection to `peer` ending with `in_flight` requests on it.
pub(crate) fn disconnected(peer: NodeId, reason: DisconnectReason, in_flight: u32) -> Op {
    Op::Disconnected { peer, reason, in_flight, coordinator: false }
}

/// Statistics of a run, beyond the history.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub requests: u64,
    /// Orders committed, or with a workflow, its requests' committed transactions.
    pub orders_committed: u64,
    /// Orders rejected, or with a workflow, its requests' rolled-back transactions.
    pub orders_rejected: u64,
    pub payments_committed: u64,
    pub payments_rejected: u64,
    pub orders_cancelled: u64,
    pub coupons_issued: u64,
    /// Coupon requests refused by the API's Redis set or not issued by the DB.
    pub coupons_refused: u64,
    pub records_sent: u64,
    pub records_produced: u64,
    pub send_failures: u64,
    pub records_polled: u64,
    pub records_consumed: u64,
    /// Attempts to handle a record that failed (business failures).
    pub handler_failures: u64,
    pub commits_ok: u64,
    pub commits_failed: u64,
    pub rebalances: u64,
    pub events: u64,
    /// The most events pending at once (the queue's high-water mark).
    pub max_pending_events: u64,
    /// Segments dropped: by a network fault, by a machine that was down, or answers that met a
    /// closed connection.
    pub messages_dropped: u64,
    /// TCP retransmissions of dropped segments.
    pub retransmissions: u64,
    /// Connections established again after a client closed them or lost them.
    pub reconnects: u64,
    /// Producer batches sent again after a failed attempt (`retries`).
    pub produce_retries: u64,
    /// What each planned fault did, in plan order.
    pub faults: Vec<crate::faults::FaultOutcome>,
    /// The simulated time at which the run stopped because it had processed
    /// `MAX_EVENTS_PER_RUN` events, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_budget_exhausted_at: Option<Micros>,
    /// The bytes the history and the partition logs held at the end (estimated from their
    /// entries); a run stops at `MAX_RUN_MEMORY_BYTES`, as at the event budget.
    pub memory_bytes: u64,
    /// The first expression of the workflow that failed (overflow, division by zero), if any:
    /// the run gives no verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow_error: Option<String>,
    /// A workflow run's figures, under the names its workflow file declares (its request types,
    /// their compensations, its listeners); none without a workflow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow: Option<crate::workflow::WorkflowStats>,
}

/// One run.
pub struct World {
    pub(crate) q: EventQueue<Ev>,
    pub(crate) net: Net,
    pub(crate) client_rng: SimRng,
    pub(crate) history: History,
    pub(crate) stats: Stats,
    pub(crate) scenario: Scenario,
    /// Global partition index -> partition. `first_partition[topic]` is where a topic starts.
    pub(crate) partitions: Vec<Partition>,
    pub(crate) first_partition: Vec<usize>,
    pub(crate) broker_nodes: Vec<NodeId>,
    /// The KRaft controller (the last node).
    pub(crate) controller_node: NodeId,
    pub(crate) brokers: Vec<BrokerState>,
    pub(crate) producers: Vec<Producer>,
    /// Who owns each producer: where its delivery reports go, and whose crash silences it.
    pub(crate) producer_owner: Vec<ProducerOwner>,
    pub(crate) consumers: Vec<Consumer>,
    pub(crate) groups: Vec<Group>,
    pub(crate) services: Vec<ServiceInstance>,
    /// The instances of order services: where the order workload sends its requests.
    pub(crate) order_services: Vec<u16>,
    /// A workflow file's part of the run, if the scenario runs one.
    pub(crate) wf: Option<Box<crate::workflow::WorkflowRun>>,
    /// The topic of each of the workflow's events.
    pub(crate) wf_topics: Vec<Option<TopicId>>,
    /// The instances of payment services: where clients send payments for their orders.
    pub(crate) payment_services: Vec<u16>,
    /// The instances of coupon APIs: where clients send coupon requests.
    pub(crate) coupon_services: Vec<u16>,
    /// The instances of waiting-queue APIs.
    pub(crate) queue_services: Vec<u16>,
    pub(crate) workload: Workload,
    pub(crate) db: Db,
    pub(crate) cache: Cache,
    /// Scratch buffers reused on the hot path.
    pub(crate) facts: Vec<Op>,
    pub(crate) commands: Vec<evsim_model::actor::Command>,
    pub(crate) pools: Pools,
    pub(crate) end: Micros,
    /// Processes crashed so far.
    pub(crate) crashed: u32,
    /// Outbox rows waiting for their business transaction to commit: (service, token) -> event.
    pub(crate) outbox_rows: BTreeMap<(u16, Token), Message>,
    /// Whether this run has faults at all (timeouts are only armed then).
    pub(crate) faulty: bool,
    /// The faults of this run: the scenario's schedule, then what `[swarm]` drew.
    pub(crate) faults_plan: Vec<FaultSpec>,
    pub(crate) fault_outcomes: Vec<FaultOutcome>,
    pub(crate) faults_rng: SimRng,
    /// Active `db-unavailable` faults (their plan indices).
    pub(crate) db_down: Vec<u16>,
    /// Active `platform-outage` faults, per consumer group (their plan indices).
    pub(crate) platform_down: Vec<Vec<u16>>,
    /// Active consumer pauses.
    pub(crate) paused: u32,
    /// The most events this run may process (`MAX_EVENTS_PER_RUN`, or less if asked).
    event_budget: u64,
    /// The most bytes its history and logs may hold (`MAX_RUN_MEMORY_BYTES`, or less if asked).
    memory_budget: u64,
    /// The bytes of the records that polls handed out and logs hold (history entries apart).
    pub(crate) record_bytes: u64,
}

/// What one history entry costs, beyond the records a poll hands out.
const ENTRY_BYTES: u64 = std::mem::size_of::<evsim_model::history::Entry>() as u64;
/// What one record costs in a poll entry or a partition log.
const RECORD_BYTES: u64 = std::mem::size_of::<evsim_model::history::Polled>() as u64;

impl World {
    /// Build the world for `scenario` with master seed `seed`.
    pub fn new(scenario: &Scenario, seed: u64) -> Self {
        let seeds = Seeds::new(seed);
        let nodes = scenario.node_names();
        let broker_nodes: Vec<NodeId> = (1..=scenario.brokers).map(|b| NodeId(b as u16)).collect();
        let mut next_node = 1 + scenario.brokers as u16;
        let topics: Vec<TopicInfo> =
            scenario.topics.iter().map(|t| TopicInfo { name: t.name.clone(), partitions: t.partitions }).collect();
        let topic_id =
            |name: &str| TopicId(topics.iter().position(|t| t.name == name).expect("validated topic") as u16);
        // (A scenario set up by hand may lack an event's topic: its services send to their own.)
        let wf_topics: Vec<Option<TopicId>> = scenario
            .workflow
            .as_ref()
            .map(|wf| {
                wf.events
                    .iter()
                    .map(|e| topics.iter().position(|t| t.name == e.topic).map(|i| TopicId(i as u16)))
                    .collect()
            })
            .unwrap_or_default();

        // Records the workload will write, to size the logs and the history up front.
        let expected = scenario.workload.rate_per_sec * scenario.run.duration_ms as f64 / 1_000.0;
        let mut partitions = Vec::new();
        let mut first_partition = Vec::new();
        for (ti, t) in scenario.topics.iter().enumerate() {
            first_partition.push(partitions.len());
            for p in 0..t.partitions {
                let global = partitions.len();
                let tp = Tp { topic: TopicId(ti as u16), partition: p };
                // Replicas spread round-robin over brokers, as Kafka's replica placement starts:
                // the first is the preferred leader, the others follow on the next brokers.
                let replicas = (0..t.replication_factor as usize)
                    .map(|k| crate::cluster::preferred_leader(global + k, scenario.brokers))
                    .collect();
                let mut partition = Partition::new(tp, replicas);
                // Room for the records the workload will write, so the log rarely regrows, but
                // not more than 64k records up front (a larger log grows as it goes).
                partition.log.reserve(((expected * 1.1 / f64::from(t.partitions)) as usize).min(1 << 16) + 16);
                partitions.push(partition);
            }
        }

        let mut producers = Vec::new();
        let mut producer_owner = Vec::new();
        let mut services = Vec::new();
        for (index, spec) in scenario.services.iter().enumerate() {
            let topic = topic_id(&spec.topic);
            for _ in 0..spec.instances {
                let node = NodeId(next_node);
                next_node += 1;
                let producer = producers.len() as u16;
                producers.push(Producer::new(
                    node,
                    spec.producer.clone(),
                    &scenario.topics,
                    partitions.len(),
                    scenario.brokers,
                    u32::from(producer) + 1,
                ));
                let workflow = crate::workflow::runs_requests(scenario, &spec.name);
                services.push(ServiceInstance::new(node, index as u16, spec, topic, producer, workflow));
                producer_owner.push(ProducerOwner::Service(services.len() as u16 - 1));
            }
        }

        let mut groups_info = Vec::new();
        let mut groups = Vec::new();
        let mut consumers = Vec::new();
        for (g, spec) in scenario.consumers.iter().enumerate() {
            let gid = GroupId(g as u16);
            let subscribed: Vec<TopicId> = spec.topics.iter().map(|t| topic_id(t)).collect();
            let group_id = &spec.consumer.group_id;
            groups_info.push(GroupInfo {
                name: group_id.clone(),
                topics: subscribed.clone(),
                effect_once: spec.effect_once,
            });
            let offsets_partition =
                crate::cluster::offsets_partition(group_id, scenario.broker.offsets_topic_num_partitions);
            let replicas = crate::cluster::offsets_replicas(
                offsets_partition,
                scenario.brokers,
                scenario.broker.offsets_topic_replication_factor,
            );
            groups.push(Group::new(gid, group_id.clone(), replicas, spec.consumer.partition_assignment_strategy));
            for i in 0..spec.instances {
                let node = NodeId(next_node);
                next_node += 1;
                let listener = crate::workflow::listener_of(scenario, &spec.name);
                let mut consumer = Consumer::new(node, gid, subscribed.clone(), spec.clone(), listener);
                consumer.instance_id = spec.consumer.group_instance_id.as_ref().map(|id| format!("{id}-{i}"));
                // A KafkaTemplate of this instance, with the group's producer settings: its index.
                let mut template = |owner: ProducerOwner| {
                    let producer_id = producers.len() as u32 + 1;
                    let p = Producer::new(
                        node,
                        spec.producer.clone(),
                        &scenario.topics,
                        partitions.len(),
                        scenario.brokers,
                        producer_id,
                    );
                    producers.push(p);
                    producer_owner.push(owner);
                    (producers.len() - 1) as u16
                };
                let c = consumers.len() as u16;
                if let Some(dlq) = &spec.dlq_topic {
                    // The dead-letter recoverer's.
                    consumer.dlq = Some((template(ProducerOwner::Consumer(c)), topic_id(dlq)));
                }
                if crate::workflow::listener_publishes(scenario, &spec.name) {
                    // The one a workflow listener publishes with.
                    consumer.template = Some(template(ProducerOwner::Listener(c)));
                }
                consumers.push(consumer);
            }
        }

        let header = Header {
            scenario: scenario.name.clone(),
            seed,
            nodes,
            topics,
            groups: groups_info,
            events: match &scenario.workflow {
                Some(wf) => crate::workflow::events(wf),
                None => evsim_model::event::builtin_events(),
            },
            handlers: scenario.workflow.as_deref().map(crate::workflow::handlers).unwrap_or_default(),
            invariants: scenario.workflow.as_deref().map(crate::workflow::invariants).unwrap_or_default(),
            quiet_from: scenario.run.duration_ms * 1_000,
            end: scenario.end_ms() * 1_000,
        };
        let mut history = History::new(header);
        // Room for the history up front (about nine entries a request), but not more than about
        // 150 MB: a larger run grows it as it goes rather than claiming everything at once.
        history.entries.reserve((expected as usize * 9).min(1 << 21) + 1_024);
        // Each node's connection settings: its client's, or Kafka's defaults for brokers.
        let mut connection = vec![evsim_model::scenario::ConnectionConfig::default(); usize::from(next_node) + 1];
        for (s, p) in services.iter().map(|s| (s.node, &producers[s.producer as usize])) {
            connection[s.0 as usize] = p.config.connection;
        }
        for c in &consumers {
            connection[c.node.0 as usize] = c.spec.consumer.connection;
        }
        let controller_node = NodeId(next_node);
        let net = Net::new(
            scenario.network.latency_us,
            scenario.network.jitter_us,
            seeds.stream(Stream::Network),
            usize::from(next_node) + 1,
            connection,
        );
        // The fault plan: the schedule, then what the swarm draws (from the faults stream).
        let mut faults_rng = seeds.stream(Stream::Faults);
        let mut faults_plan = scenario.faults.clone();
        if let Some(swarm) = &scenario.swarm {
            faults_plan.extend(crate::faults::draw_swarm(scenario, swarm, &mut faults_rng));
        }
        let db = crate::setup::initial_db(scenario, seed);
        let wf = scenario.workflow.as_ref().map(|wf| {
            let instances: Vec<&str> =
                services.iter().map(|s| scenario.services[s.spec as usize].name.as_str()).collect();
            Box::new(crate::workflow::WorkflowRun::new(
                wf.clone(),
                seeds.stream(Stream::Workload),
                seeds.stream(Stream::Business),
                seeds.stream(Stream::External),
                &instances,
            ))
        });
        // The compiled-in services of a kind, by instance.
        let compiled_in = |kind: ServiceKind| -> Vec<u16> {
            (0..services.len() as u16)
                .filter(|&i| services[i as usize].service.is_compiled_in(kind, services[i as usize].kind))
                .collect()
        };
        Self {
            q: EventQueue::with_capacity(4_096),
            net,
            client_rng: seeds.stream(Stream::Client),
            history,
            stats: Stats::default(),
            scenario: scenario.clone(),
            partitions,
            first_partition,
            brokers: (0..scenario.brokers).map(|_| BrokerState::new(scenario.brokers as usize)).collect(),
            broker_nodes,
            controller_node,
            producers,
            producer_owner,
            consumers,
            groups,
            order_services: compiled_in(ServiceKind::OrderService),
            wf,
            wf_topics,
            payment_services: compiled_in(ServiceKind::PaymentService),
            coupon_services: compiled_in(ServiceKind::CouponApi),
            queue_services: compiled_in(ServiceKind::WaitingQueueApi),
            services,
            workload: Workload::new(&scenario.workload, seeds.stream(Stream::Workload)),
            db,
            cache: Cache::default(),
            facts: Vec::new(),
            commands: Vec::new(),
            pools: Pools::default(),
            end: scenario.end_ms() * 1_000,
            crashed: 0,
            outbox_rows: BTreeMap::new(),
            faulty: !faults_plan.is_empty(),
            fault_outcomes: faults_plan
                .iter()
                .map(|f| FaultOutcome { fault: f.describe(), ..FaultOutcome::default() })
                .collect(),
            faults_plan,
            faults_rng,
            db_down: Vec::new(),
            platform_down: vec![Vec::new(); scenario.consumers.len()],
            paused: 0,
            event_budget: evsim_model::scenario::MAX_EVENTS_PER_RUN,
            memory_budget: evsim_model::scenario::MAX_RUN_MEMORY_BYTES,
            record_bytes: 0,
        }
    }

    /// Lower this run's event budget below `MAX_EVENTS_PER_RUN` (a tighter limit for fuzzing).
    pub fn limit_events(&mut self, budget: u64) {
        self.event_budget = budget.min(evsim_model::scenario::MAX_EVENTS_PER_RUN);
    }

    /// Stop the run once its history and logs hold `budget` bytes (at most `MAX_RUN_MEMORY_BYTES`).
    pub fn limit_memory(&mut self, budget: u64) {
        self.memory_budget = budget.min(evsim_model::scenario::MAX_RUN_MEMORY_BYTES);
    }

    #[inline]
    pub(crate) fn now(&self) -> Micros {
        self.q.now()
    }

    #[inline]
    pub(crate) fn record(&mut self, process: NodeId, op: Op) {
        let now = self.q.now();
        if let Op::Poll { records, .. } = &op {
            self.record_bytes += records.len() as u64 * RECORD_BYTES;
        }
        self.history.push(now, process, op);
    }

    /// Send `msg` from `from` to `to` over the network.
    #[inline]
    pub(crate) fn send_msg(&mut self, from: NodeId, to: NodeId, msg: Msg) {
        if !self.net.quiet(from, to) {
            return self.send_msg_faulty(from, to, msg);
        }
        let at = self.net.arrival(self.q.now(), from, to);
        self.q.schedule_at(at, Ev::Net(msg));
    }

    pub(crate) fn partition_index(&self, tp: Tp) -> usize {
        self.first_partition[tp.topic.0 as usize] + tp.partition as usize
    }

    /// The bytes the history and the partition logs hold: every history entry (however it was
    /// recorded), the records of polls, and the records appended to logs.
    fn memory_bytes(&self) -> u64 {
        self.history.entries.len() as u64 * ENTRY_BYTES + self.record_bytes
    }

    /// Run to the end and hand back the history and the statistics.
    pub fn run(self) -> (History, Stats) {
        self.run_observed(&mut |_| {})
    }

    /// Run to the end, telling `observe` the simulated time every million or so events (for a
    /// progress bar), and hand back the history and the statistics.
    pub fn run_observed(mut self, observe: &mut dyn FnMut(Micros)) -> (History, Stats) {
        self.start();
        for c in 0..self.consumers.len() as u16 {
            self.consumer_start(c);
        }
        let end = self.end;
        // At most about a thousand observations, and none more often than every simulated second.
        let every = OBSERVE_EVERY_US.max(end / 1_000);
        let mut step = 0;
        loop {
            step = (step + every).min(end);
            self.run_until(step);
            if self.stats.event_budget_exhausted_at.is_some() || step >= end {
                break;
            }
            observe(step);
        }
        self.finish()
    }

    /// Record the initial state and start the workload (consumers are started separately).
    pub(crate) fn start(&mut self) {
        for op in crate::setup::start_ops(&self.scenario, &self.db) {
            self.record(NodeId(0), op);
        }
        for (s, instance) in self.services.iter().enumerate() {
            let spec = &self.scenario.services[instance.spec as usize];
            if spec.publish == PublishStrategy::Outbox {
                let at = spec.outbox_scan_ms * 1_000;
                self.q.schedule_at(at, Ev::ServiceTimer { service: s as u16, token: OUTBOX_SCHEDULER });
            }
        }
        self.record_coordinators();
        self.replication_start();
        self.controller_start();
        self.faults_start();
        self.workload_start();
    }

    /// Process every event due at or before `t` (and not after the end of the run).
    pub(crate) fn run_until(&mut self, t: Micros) {
        let t = t.min(self.end);
        while let Some(at) = self.q.peek_time() {
            if at > t {
                break;
            }
            if self.stats.events >= self.event_budget || self.memory_bytes() >= self.memory_budget {
                self.stats.event_budget_exhausted_at = Some(at);
                break;
            }
            let ev = self.q.pop().expect("peeked");
            self.stats.events += 1;
            self.stats.max_pending_events = self.stats.max_pending_events.max(self.q.len() as u64);
            self.dispatch(ev);
        }
    }

    /// The consumer an event is addressed to, if any.
    fn consumer_of(ev: &Ev) -> Option<u16> {
        use crate::cluster::CoordinatorResponse as R;
        match ev {
            Ev::HeartbeatTick { consumer, .. }
            | Ev::PollTimeout { consumer }
            | Ev::PollIntervalCheck { consumer }
            | Ev::ProcessDone { consumer, .. }
            | Ev::FetchTimeout { consumer, .. }
            | Ev::AutoCommitTick { consumer }
            | Ev::CoordinatorTimeout { consumer, .. }
            | Ev::CommitTimeout { consumer, .. }
            | Ev::FindCoordinatorTimeout { consumer, .. }
            | Ev::FindCoordinatorRetry { consumer, .. }
            | Ev::CommitRetry { consumer, .. }
            | Ev::ResumePoll { consumer } => Some(*consumer),
            Ev::Net(Msg::FetchResponse(r)) => Some(r.consumer),
            Ev::Net(Msg::FindCoordinatorResponse { consumer, .. }) => Some(*consumer),
            Ev::Net(Msg::FromCoordinator {
                resp:
                    R::JoinGroup { consumer, .. }
                    | R::SyncGroup { consumer, .. }
                    | R::Heartbeat { consumer, .. }
                    | R::OffsetCommit { consumer, .. }
                    | R::OffsetFetch { consumer, .. },
                ..
            }) => Some(*consumer),
            _ => None,
        }
    }

    /// The broker an event is addressed to, if any.
    fn broker_of(ev: &Ev) -> Option<u16> {
        match ev {
            Ev::Net(Msg::Produce(r)) => Some(r.broker),
            Ev::Net(Msg::Fetch(r)) => Some(r.broker),
            Ev::Net(Msg::ReplicaFetch(r)) => Some(r.leader),
            Ev::Net(Msg::ReplicaFetchResponse(r)) => Some(r.follower),
            Ev::Net(Msg::ToCoordinator { broker, .. } | Msg::FindCoordinator { broker, .. }) => Some(*broker),
            Ev::Net(Msg::BrokerHeartbeatResponse { broker, .. }) => Some(*broker),
            Ev::FetchExpired { broker }
            | Ev::BrokerHeartbeatTick { broker, .. }
            | Ev::BrokerHeartbeatTimeout { broker, .. } => Some(*broker),
            Ev::ReplicaFetchTimeout { follower, .. } => Some(*follower),
            _ => None,
        }
    }

    /// The broker whose process handles `ev`: the broker an event is addressed to, or the
    /// coordinator of the group a coordinator timer belongs to.
    fn paused_broker_of(&self, ev: &Ev) -> Option<u16> {
        match ev {
            Ev::SessionCheck { group, .. } | Ev::JoinDeadline { group, .. } => self.groups[*group as usize].host,
            _ => Self::broker_of(ev),
        }
    }

    /// Consumer process `c` dies: its memory and timers are gone, nothing it would have sent is
    /// sent, and what was on its way to it is lost. The group finds out through the session
    /// timeout.
    pub(crate) fn crash_consumer(&mut self, c: u16) {
        let node = self.consumers[c as usize].node;
        self.consumers[c as usize].alive = false;
        self.crashed += 1;
        let dlq = self.consumers[c as usize].dlq.map(|(p, _)| p);
        self.q.retain(|ev| Self::consumer_of(ev) != Some(c) && (dlq.is_none() || Self::producer_of(ev) != dlq));
        if let Some(p) = dlq {
            self.reset_producer(p);
        }
        self.close_connections_of(node);
        self.record(node, Op::Crashed);
    }

    /// Consumer process `c` starts again: a new member with empty memory, which joins its group.
    pub(crate) fn restart_consumer(&mut self, c: u16) {
        let old = &self.consumers[c as usize];
        let listener = crate::workflow::listener_of(&self.scenario, &old.spec.name);
        let mut fresh = Consumer::new(old.node, old.group, old.topics.clone(), old.spec.clone(), listener);
        fresh.dlq = old.dlq;
        fresh.instance_id = old.instance_id.clone();
        self.consumers[c as usize] = fresh;
        self.consumer_start(c);
    }

    /// The service instance an event is addressed to, if any.
    fn service_of(ev: &Ev) -> Option<u16> {
        match ev {
            Ev::TxnCommit { service, .. } | Ev::ServiceTimer { service, .. } => Some(*service),
            _ => None,
        }
    }

    /// The producer an event is addressed to, if any.
    fn producer_of(ev: &Ev) -> Option<u16> {
        match ev {
            Ev::Linger { producer } | Ev::RequestTimeout { producer, .. } => Some(*producer),
            Ev::Net(Msg::ProduceResponse(r)) => Some(r.producer),
            _ => None,
        }
    }

    /// The data connection from client `client` to server `server`.
    pub(crate) fn data_conn(&self, client: NodeId, server: NodeId) -> Conn {
        Conn { client, server, chan: Channel::Data }
    }

    /// The producers whose process runs at `node` (a service's, a consumer's dead-letter
    /// publisher) may send again: a connection of theirs was established or given up.
    pub(crate) fn wake_producers_at(&mut self, node: NodeId) {
        for p in 0..self.producers.len() as u16 {
            if self.producers[p as usize].node == node
                && self.producer_alive(p)
                && self.producers[p as usize].has_batches()
            {
                self.producer_drain(p);
            }
        }
    }

    /// `conn` ended under its client (a request on it timed out, the peer reset it, TCP gave
    /// up): every user of the connection at the client fails what it had in flight on it, as
    /// the Java `NetworkClient` does on a disconnect, and carries on. `timed_out`: the producer
    /// request whose timeout ended it (it fails with REQUEST_TIMED_OUT, the others with
    /// NETWORK_EXCEPTION).
    pub(crate) fn client_disconnected(&mut self, conn: Conn, reason: DisconnectReason, timed_out: Option<(u16, u64)>) {
        let Some(server) = self.broker_nodes.iter().position(|&b| b == conn.server).map(|b| b as u16) else {
            return; // the controller: heartbeats keep going on their own timer
        };
        if let Some(f) = self.broker_nodes.iter().position(|&b| b == conn.client) {
            return self.replica_fetch_lost(f as u16, server, reason);
        }
        if conn.chan == Channel::Coordinator {
            if let Some(c) = self.consumers.iter().position(|c| c.node == conn.client && c.alive) {
                self.consumer_coordinator_lost(c as u16, server, reason);
            }
            return;
        }
        for p in 0..self.producers.len() as u16 {
            if self.producers[p as usize].node == conn.client && self.producer_alive(p) {
                let request = timed_out.filter(|&(tp, _)| tp == p).map(|(_, r)| r);
                self.producer_disconnected(p, server, request, reason);
            }
        }
        if let Some(c) = self.consumers.iter().position(|c| c.node == conn.client && c.alive) {
            self.consumer_fetch_lost(c as u16, server, reason);
            self.find_coordinator_lost(c as u16, server);
        }
    }

    /// Whether the process owning producer `p` is alive.
    pub(crate) fn producer_alive(&self, p: u16) -> bool {
        match self.producer_owner[p as usize] {
            ProducerOwner::Service(s) => self.services[s as usize].alive,
            ProducerOwner::Consumer(c) | ProducerOwner::Listener(c) => self.consumers[c as usize].alive,
        }
    }

    /// A producer whose process died starts over: no batches, no requests, a new producer id
    /// epoch's worth of sequence numbers (InitProducerId on restart).
    fn reset_producer(&mut self, p: u16) {
        let old = &self.producers[p as usize];
        self.producers[p as usize] = Producer::new(
            old.node,
            old.config.clone(),
            &self.scenario.topics,
            self.partitions.len(),
            self.scenario.brokers,
            // A restarted producer gets a new producer id from the broker.
            old.producer_id() + 0x1_0000,
        );
    }

    /// Service instance `s` dies: its memory (pending requests, the producer's unsent batches
    /// and in-flight callbacks) is lost. A transaction it had not committed is rolled back by
    /// the DB when the connection drops; what it committed stays. Requests already on the wire
    /// still reach the broker, whose answers go nowhere.
    pub(crate) fn crash_service(&mut self, s: u16) {
        let node = self.services[s as usize].node;
        self.services[s as usize].alive = false;
        self.crashed += 1;
        let producer = self.services[s as usize].producer;
        self.q.retain(|ev| Self::service_of(ev) != Some(s) && Self::producer_of(ev) != Some(producer));
        self.outbox_rows.retain(|(service, _), _| *service != s);
        self.reset_producer(producer);
        self.close_connections_of(node);
        self.record(node, Op::Crashed);
    }

    /// Service instance `s` starts again with empty memory; the DB kept what it committed. An
    /// outbox service's scheduler starts again too.
    pub(crate) fn restart_service(&mut self, s: u16) {
        let old = &self.services[s as usize];
        let spec = &self.scenario.services[old.spec as usize];
        let topic = TopicId(self.scenario.topics.iter().position(|t| t.name == spec.topic).expect("validated") as u16);
        let workflow = crate::workflow::runs_requests(&self.scenario, &spec.name);
        let fresh = ServiceInstance::new(old.node, old.spec, spec, topic, old.producer, workflow);
        let outbox = spec.publish == PublishStrategy::Outbox;
        let scan = spec.outbox_scan_ms * 1_000;
        self.services[s as usize] = fresh;
        if outbox {
            let at = self.now() + scan;
            self.q.schedule_at(at, Ev::ServiceTimer { service: s, token: OUTBOX_SCHEDULER });
        }
    }

    fn dispatch(&mut self, ev: Ev) {
        // Events addressed to a crashed process are dropped (checked only once something crashed).
        if self.crashed > 0 {
            if let Some(c) = Self::consumer_of(&ev)
                && !self.consumers[c as usize].alive
            {
                return;
            }
            if let Some(s) = Self::service_of(&ev)
                && !self.services[s as usize].alive
            {
                return;
            }
            if let Some(p) = Self::producer_of(&ev)
                && !self.producer_alive(p)
            {
                return;
            }
        }
        if self.faulty {
            if let Some(b) = Self::broker_of(&ev)
                && !self.brokers[b as usize].alive
            {
                return;
            }
            // A paused process does nothing until the pause ends: its events wait for it (a
            // paused broker's kernel still takes in what is sent to it).
            if self.paused > 0 {
                let until = match (Self::consumer_of(&ev), self.paused_broker_of(&ev)) {
                    (Some(c), _) => self.consumers[c as usize].paused_until,
                    (None, Some(b)) => self.brokers[b as usize].paused_until,
                    (None, None) => 0,
                };
                if until > self.now() {
                    self.q.schedule_at(until, ev);
                    return;
                }
            }
        }
        match ev {
            Ev::Net(msg) => self.deliver(msg),
            Ev::NextOrder => self.next_order(),
            Ev::NextRequest { handler } => self.next_request(handler),
            Ev::FollowUp { handler, id } => self.follow_up(handler, id),
            Ev::NextCoupon => self.next_coupon(),
            Ev::NextQueueEntry => self.next_queue_entry(),
            Ev::ResumePoll { consumer } => self.resume_poll(consumer),
            Ev::CouponRequest { request, coupon, user } => self.coupon_request(request, coupon, user),
            Ev::PaymentRequest { order, user, amount } => self.payment_request(order, user, amount),
            Ev::TxnCommit { service, token, txn } => self.txn_commit(service, token, txn),
            Ev::ServiceTimer { service, token } => self.service_timer(service, token),
            Ev::Linger { producer } => self.producer_drain(producer),
            Ev::FetchExpired { broker } => self.fetch_expired(broker),
            Ev::HeartbeatTick { consumer, epoch } => self.heartbeat_tick(consumer, epoch),
            Ev::SessionCheck { group, member, load } => self.session_check(group, member, load),
            Ev::JoinDeadline { group, round } => self.join_deadline(group, round),
            Ev::PollTimeout { consumer } => self.poll_timeout(consumer),
            Ev::PollIntervalCheck { consumer } => self.poll_interval_check(consumer),
            Ev::ProcessDone { consumer, epoch } => self.process_done(consumer, epoch),
            Ev::FaultStart { fault } => self.fault_start(fault),
            Ev::FaultEnd { fault } => self.fault_end(fault),
            Ev::RequestTimeout { producer, request } => self.producer_request_timeout(producer, request),
            Ev::FetchTimeout { consumer, broker, fetch } => self.consumer_fetch_timeout(consumer, broker, fetch),
            Ev::ReplicaFetchTimeout { follower, leader, fetch } => self.replica_fetch_timeout(follower, leader, fetch),
            Ev::IsrCheck => self.isr_check(),
            Ev::Flush => self.flush(),
            Ev::BrokerHeartbeatTick { broker, incarnation } => self.broker_heartbeat_tick(broker, incarnation),
            Ev::BrokerSessionCheck { broker } => self.broker_session_check(broker),
            Ev::BrokerHeartbeatTimeout { broker, seq } => self.broker_heartbeat_timeout(broker, seq),
            Ev::AutoCommitTick { consumer } => self.auto_commit_tick(consumer),
            Ev::CoordinatorTimeout { consumer, epoch } => self.coordinator_timeout(consumer, epoch),
            Ev::CommitTimeout { consumer, commit, attempt } => self.commit_timeout(consumer, commit, attempt),
            Ev::Retransmit { link, stall } => self.retransmit(link, stall),
            Ev::Syn { conn, epoch } => self.syn(conn, epoch),
            Ev::Connected { conn, epoch } => self.connected(conn, epoch),
            Ev::ConnectTimeout { conn, epoch } => self.connect_timeout(conn, epoch),
            Ev::FindCoordinatorTimeout { consumer, epoch } => self.find_coordinator_timeout(consumer, epoch),
            Ev::FindCoordinatorRetry { consumer, epoch } => self.find_coordinator_retry(consumer, epoch),
            Ev::CommitRetry { consumer, commit } => self.commit_retry(consumer, commit),
        }
    }

    fn deliver(&mut self, msg: Msg) {
        match msg {
            Msg::Produce(req) => self.broker_produce(req),
            Msg::ProduceResponse(resp) => self.producer_response(resp),
            Msg::Fetch(req) => self.broker_fetch(req),
            Msg::FetchResponse(resp) => self.consumer_fetch_response(resp),
            Msg::ToCoordinator { broker, req } => self.coordinator_request(broker, req),
            Msg::FromCoordinator { broker, resp } => self.consumer_coordinator_response(broker, resp),
            Msg::ReplicaFetch(req) => self.broker_replica_fetch(req),
            Msg::ReplicaFetchResponse(resp) => self.follower_fetch_response(resp),
            Msg::FindCoordinator { consumer, broker } => self.broker_find_coordinator(consumer, broker),
            Msg::FindCoordinatorResponse { consumer, broker, coordinator } => {
                self.consumer_found_coordinator(consumer, broker, coordinator)
            }
            Msg::BrokerHeartbeat { broker, incarnation, seq } => self.controller_heartbeat(broker, incarnation, seq),
            Msg::BrokerHeartbeatResponse { broker, seq } => self.broker_heartbeat_answered(broker, seq),
        }
    }

    pub(crate) fn finish(mut self) -> (History, Stats) {
        self.stats.faults = std::mem::take(&mut self.fault_outcomes);
        // The run ends at `end`: the final DB state is read then, whatever is still in flight.
        let end = self.end;
        for (product, stock) in self.db.stock.clone().into_iter().enumerate() {
            self.history.push(end, NodeId(0), Op::StockFinal { product: product as u32, stock });
        }
        if let Some(run) = self.wf.as_mut() {
            for op in run.broken_rows(true) {
                self.history.push(end, NodeId(0), op);
            }
            self.stats.workflow_error = run.error().map(str::to_string);
            self.stats.workflow = Some(run.stats(&self.history.entries));
        }
        for (event, (_, _, published)) in &self.db.outbox {
            if !published {
                self.history.push(end, NodeId(0), Op::OutboxPending { event: *event });
            }
        }
        // How far each group is from the end of each partition of its topics.
        for (g, group) in self.groups.iter().enumerate() {
            let gid = GroupId(g as u16);
            let host = self.broker_nodes[group.host.unwrap_or(group.offsets_replicas[0]) as usize];
            for &topic in &self.history.header.groups[g].topics.clone() {
                for p in &self.partitions[self.first_partition[topic.0 as usize]..] {
                    if p.tp.topic != topic {
                        break;
                    }
                    let lag = p.high_watermark.saturating_sub(group.committed.get(&p.tp).copied().unwrap_or(0));
                    if lag > 0 {
                        self.history.push(end, host, Op::FinalLag { group: gid, tp: p.tp, lag });
                    }
                }
            }
        }
        self.stats.memory_bytes = self.memory_bytes();
        (self.history, self.stats)
    }
}
