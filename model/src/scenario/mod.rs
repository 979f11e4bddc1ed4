//! Scenario files: the cluster, topics, client configs (under Kafka's names), workload, run length
//! and the invariants a design claims. See `docs/scenario-format.md` for the whole format.
//!
//! Parsing is pure (text in, [`Scenario`] or [`ScenarioError`] out); the CLI reads the file.
//! Every mistake names the file, line and column, and the form that was expected there.

mod error;
mod faults;
mod kafka;
mod props;
mod raw;
mod validate;

pub use error::{ScenarioError, line_col};
pub use faults::{CheckSpec, Condition, Direction, Expected, FaultKind, FaultSpec, SwarmSpec};
pub use kafka::{
    Acks, AssignmentStrategy, BrokerConfig, ConnectionConfig, ConsumerConfig, OffsetReset, Partitioner, ProducerConfig,
};
pub use props::{PropReader, PropValue, Props};

use crate::checkers::Invariant;
use serde::Serialize;

/// The most client requests one run may ask for, over every request stream (orders, the
/// payments that follow them, coupon requests, waiting-queue entries): a run keeps its whole
/// history in memory: about 600 bytes a request for the whole process, 3 GB at the upper end.
pub const MAX_REQUESTS_PER_RUN: u64 = 5_000_000;

/// The most topics (topic ids are 16-bit).
pub const MAX_TOPICS: u64 = 10_000;

/// The most brokers in a cluster (every follower fetches from every leader).
pub const MAX_BROKERS: u32 = 100;

/// The most partitions over every topic: each producer keeps a queue per partition, each
/// partition a log and per-replica state.
pub const MAX_PARTITIONS: u64 = 100_000;

/// The most partition replicas (partitions x replication factor, over every topic).
pub const MAX_REPLICAS: u64 = 300_000;

/// The most (partition, producer instance) pairs: every producer instance keeps a queue, a
/// sequence number and a flag per partition.
pub const MAX_PRODUCER_PARTITIONS: u64 = 5_000_000;

/// The most processes in a run (brokers, service instances, consumer instances): process ids
/// are 16-bit, and the network keeps state per pair of processes.
pub const MAX_PROCESSES: u64 = 2_000;

/// The most users when a payment service keeps a balance for each from the start.
pub const MAX_ACCOUNTS: u64 = 10_000_000;

/// The most (consumer group, partition) pairs: every group tracks and fetches every partition of
/// its topics, and the run's end records each group's lag per partition.
pub const MAX_GROUP_PARTITIONS: u64 = 1_000_000;

/// The most faults in a schedule (fault ids are 16-bit).
pub const MAX_FAULTS: u64 = 10_000;

/// The most events one run may process: about a minute of simulation on the project's machine.
/// A run that reaches it stops, and `evsim` exits 2 saying so.
pub const MAX_EVENTS_PER_RUN: u64 = 1_000_000_000;

/// The most memory a run's history and partition logs may hold, as estimated from their
/// entries (the whole process needs about 1.7 times as much: the rest of the cluster, and the
/// history's growth by doubling). The largest accepted run of orders stays under it; a run that reaches it
/// (a retry storm that redelivers without end) stops, as at the event budget, and `evsim`
/// exits 2.
pub const MAX_RUN_MEMORY_BYTES: u64 = 3 << 30;

/// The highest rate of one request stream, per second (the simulated clock has microseconds,
/// and several requests may arrive within one).
pub const MAX_RATE_PER_SEC: f64 = 10_000_000.0;

/// How a consumer group commits offsets, and so what a failure or a crash costs it (the consuming
/// strategy, `commit_strategy = "..."`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
pub enum CommitStrategy {
    /// `auto-commit`: the Kafka client commits in `poll()` every `auto.commit.interval.ms`
    /// (`enable.auto.commit`); a failed record is logged and skipped.
    AutoCommit,
    /// `commit-before-process`: the container commits each poll's positions synchronously before
    /// handing the records to the listener: at-most-once.
    CommitBeforeProcess,
    /// `commit-after-process`: the listener acknowledges each record after handling it, and the
    /// container commits the acknowledged offsets synchronously once the poll's records are
    /// handled (Spring's `AckMode.MANUAL` with `enable.auto.commit=false`, as seed 001 configures
    /// it): at-least-once. A failed record is retried as Spring's `DefaultErrorHandler` does:
    /// seek back, redeliver, and skip it after 10 failed attempts.
    CommitAfterProcess,
    /// `ack-skips-failures`: a failed record is not acknowledged but later ones are, so the commit
    /// moves past it and it is never redelivered (seed 001's listener catches the exception and
    /// does not ack).
    AckSkipsFailures,
    /// `idempotent`: commit-after-process, plus a processed table in the consumer's DB: the
    /// event's id is inserted in the same transaction as its effects, and a redelivered event
    /// that is already there is acknowledged without applying anything (seed 002's downstream
    /// consumer). Exactly-once effects under redelivery.
    Idempotent,
    /// `retry-then-dlq`: commit-after-process, but a record that failed `retries + 1` times is
    /// published to the dead-letter topic (Spring's `DeadLetterPublishingRecoverer`) and
    /// committed past.
    RetryThenDlq,
}

impl CommitStrategy {
    pub fn name(self) -> &'static str {
        match self {
            CommitStrategy::AutoCommit => "auto-commit",
            CommitStrategy::CommitBeforeProcess => "commit-before-process",
            CommitStrategy::CommitAfterProcess => "commit-after-process",
            CommitStrategy::AckSkipsFailures => "ack-skips-failures",
            CommitStrategy::Idempotent => "idempotent",
            CommitStrategy::RetryThenDlq => "retry-then-dlq",
        }
    }

    /// Every strategy, in the order the documentation lists them.
    pub const ALL: [CommitStrategy; 6] = [
        CommitStrategy::AutoCommit,
        CommitStrategy::CommitBeforeProcess,
        CommitStrategy::CommitAfterProcess,
        CommitStrategy::AckSkipsFailures,
        CommitStrategy::Idempotent,
        CommitStrategy::RetryThenDlq,
    ];

    /// Whether the container commits acknowledged offsets after each batch.
    pub fn commits_after_batch(self) -> bool {
        // Every strategy but auto-commit (the client's job) and commit-before-process (done first).
        !matches!(self, CommitStrategy::AutoCommit | CommitStrategy::CommitBeforeProcess)
    }

    /// Whether a failed record is retried by seeking back (Spring's `DefaultErrorHandler`).
    pub fn retries_failures(self) -> bool {
        matches!(self, CommitStrategy::CommitAfterProcess | CommitStrategy::Idempotent | CommitStrategy::RetryThenDlq)
    }
}

/// How the workload picks the product of an order.
#[derive(Copy, Clone, Debug, PartialEq, Serialize)]
pub enum ProductDistribution {
    Uniform,
    /// Zipf with this exponent: product 0 is the hottest.
    Zipf(f64),
}

/// The name of the KRaft controller node (the last node of every run). It never fails and can
/// be only the `peer` of a network fault.
pub const CONTROLLER: &str = "controller";

/// A topic of the simulated cluster.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    pub replication_factor: u32,
}

/// Run length and the invariants the design claims.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunSpec {
    /// How long the workload sends requests.
    pub duration_ms: u64,
    /// How long the run goes on after the workload stops, for consumers to catch up.
    pub quiet_period_ms: u64,
    /// The seed `evsim run` uses without `--seed`/`--seeds`.
    pub seed: u64,
    /// The invariants this design claims; the others are reported as informational.
    pub invariants: Vec<Invariant>,
}

/// Client <-> broker network.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NetworkSpec {
    /// One-way latency of a request or response.
    pub latency_us: u64,
    /// Extra latency drawn uniformly from `0..=jitter_us` (per connection order is kept, as TCP does).
    pub jitter_us: u64,
}

/// The order workload (seed 001).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkloadSpec {
    /// Order requests per second (Poisson arrivals).
    pub rate_per_sec: f64,
    pub products: u32,
    pub stock_per_product: i64,
    pub users: u32,
    /// Each order takes 1..=quantity_max units of one product.
    pub quantity_max: u32,
    pub product_distribution: ProductDistribution,
    /// Payments (when a payment service exists): the client pays this long after its order was
    /// created.
    pub pay_after_ms: u64,
    /// Price of one unit of any product.
    pub price: i64,
    /// Every user's starting balance...
    pub balance: i64,
    /// ...except this fraction of users, who start with nothing (their payments fail).
    pub insufficient_balance_rate: f64,
    /// Coupon requests per second (Poisson), when a coupon API exists.
    pub coupon_rate_per_sec: f64,
    /// Coupon ids `0..coupons`, each requested uniformly (1 = a single hot coupon).
    pub coupons: u32,
    /// How many of each coupon can be issued.
    pub coupon_quantity: u32,
    /// Probability that a client sends its coupon request twice (a double click, a retry).
    pub duplicate_request_rate: f64,
    /// Waiting-queue entries per second (Poisson), when a waiting-queue API exists.
    pub queue_rate_per_sec: f64,
    /// Concert ids `0..concerts`, each entered uniformly.
    pub concerts: u32,
}

impl WorkloadSpec {
    /// No compiled-in requests: a scenario without `[workload]` (its requests come from its
    /// workflow file).
    pub fn none() -> Self {
        Self {
            rate_per_sec: 0.0,
            products: 0,
            stock_per_product: 0,
            users: 0,
            quantity_max: 1,
            product_distribution: ProductDistribution::Uniform,
            pay_after_ms: 100,
            price: 0,
            balance: 0,
            insufficient_balance_rate: 0.0,
            coupon_rate_per_sec: 0.0,
            coupons: 0,
            coupon_quantity: 0,
            duplicate_request_rate: 0.0,
            queue_rate_per_sec: 0.0,
            concerts: 0,
        }
    }
}

/// The simulated database (MySQL in the seeds).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DatabaseSpec {
    /// Time a transaction takes from request to commit.
    pub latency_us: u64,
}

/// Which sans-IO service a `[services.<name>]` table runs (`kind = "..."`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ServiceKind {
    /// `order-service`: seed 001's `OrderService` (orders from the workload).
    OrderService,
    /// `payment-service`: seed 001's `PaymentService` (the workload pays for created orders).
    PaymentService,
    /// `coupon-api`: the first-come-first-served coupon request API (seeds 002, 003).
    CouponApi,
    /// `waiting-queue-api`: the concert waiting queue's entry API (seed 002).
    WaitingQueueApi,
    /// No `kind`: the table runs the `[workflow]` file's requests whose `service` names it.
    Workflow,
}

/// How the coupon API keeps a user from getting one coupon twice (`dedup = "..."`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
pub enum CouponDedup {
    /// `cache-set` (seed 003): a Redis set checked and written before the request is sent.
    CacheSet,
    /// `db-unique`: no check at the API; a unique constraint on (coupon_id, user_id).
    DbUnique,
    /// `none`: no check anywhere.
    None,
}

/// Where a failed payment's compensation runs (`compensation = "..."` of a payment service).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Compensation {
    /// `separate-transaction`: its own transaction (REQUIRES_NEW); it commits.
    SeparateTransaction,
    /// `same-transaction`: inside the payment transaction, which the rethrown
    /// `InsufficientBalanceException` rolls back, compensation included (seed 001 as written).
    SameTransaction,
}

/// How a service publishes the events of the facts it commits (`publish = "..."`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
pub enum PublishStrategy {
    /// `in-transaction`: send, and wait for the acknowledgement, inside the DB transaction before
    /// it commits.
    InTransaction,
    /// `after-commit`: send after the DB transaction commits; a failed send is logged and
    /// dropped (seed 001).
    AfterCommit,
    /// `after-commit-async`: after the commit, hand the send to an in-memory worker pool
    /// (seed 004's `@Async @TransactionalEventListener(AFTER_COMMIT)`).
    AfterCommitAsync,
    /// `outbox` (seed 002): the event's outbox row is written in the business transaction; a
    /// relay sends after the commit; the service's own consumer marks the row PUBLISHED; a
    /// scheduler re-publishes rows still INIT after `outbox_retry_after_ms`.
    Outbox,
}

impl PublishStrategy {
    pub fn name(self) -> &'static str {
        match self {
            PublishStrategy::InTransaction => "in-transaction",
            PublishStrategy::AfterCommit => "after-commit",
            PublishStrategy::AfterCommitAsync => "after-commit-async",
            PublishStrategy::Outbox => "outbox",
        }
    }

    pub const ALL: [PublishStrategy; 4] = [
        PublishStrategy::InTransaction,
        PublishStrategy::AfterCommit,
        PublishStrategy::AfterCommitAsync,
        PublishStrategy::Outbox,
    ];
}

/// Which listener a `[consumers.<name>]` group runs (`kind = "..."`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ListenerKind {
    /// `order-event-consumer`: seed 001's `OrderEventConsumer` (ranking and cart).
    OrderEventConsumer,
    /// `payment-event-consumer`: seed 001's `PaymentEventConsumer` (sends to the data platform).
    PaymentEventConsumer,
    /// `coupon-issuer`: issues coupons from `coupon-issue-request` (seeds 002, 003).
    CouponIssuer,
    /// `outbox-marker`: the outbox's own consumer, marking each published event's row PUBLISHED.
    OutboxMarker,
    /// `point-consumer`, `coupon-use-consumer`, `email-consumer`: seed 000's order-completed
    /// fan-out.
    PointConsumer,
    CouponUseConsumer,
    EmailConsumer,
    /// `token-activator`: the waiting queue's activator (seed 002).
    TokenActivator,
    /// No `kind`: the group runs the `[workflow]` file's listener of the table's name.
    Workflow,
}

/// A service (`[services.<name>]`): its instances and their producer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServiceSpec {
    /// The table's name; instances are called `<name>-0`, `<name>-1`, ...
    pub name: String,
    pub kind: ServiceKind,
    pub instances: u32,
    /// The topic its events go to.
    pub topic: String,
    pub publish: PublishStrategy,
    /// With `after-commit-async`: how long a queued send waits for a worker of the pool.
    pub async_delay_us: u64,
    /// With `outbox`: how often the scheduler scans for rows still INIT.
    pub outbox_scan_ms: u64,
    /// With `outbox`: how old an INIT row must be before the scheduler re-publishes it.
    pub outbox_retry_after_ms: u64,
    /// For a payment service: where the compensation of a failed payment runs.
    pub compensation: Compensation,
    /// For a coupon API: how duplicate requests are kept out.
    pub dedup: CouponDedup,
    pub producer: ProducerConfig,
}

/// A consumer group (`[consumers.<name>]`): its instances, listener and consumer config.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConsumerSpec {
    /// The table's name; instances are called `<name>-0`, `<name>-1`, ...
    pub name: String,
    pub kind: ListenerKind,
    pub instances: u32,
    /// The subscribed topics.
    pub topics: Vec<String>,
    /// Time the listener spends on one record.
    pub processing_time_us: u64,
    /// Extra processing time drawn uniformly from `0..=processing_jitter_us`.
    pub processing_jitter_us: u64,
    /// Probability that one attempt to handle a record fails (a business failure: the handler
    /// throws before applying any effect).
    pub handler_error_rate: f64,
    /// Windows `[start_ms, end_ms)` when the external system the listener calls is down: every
    /// attempt to handle a record then fails.
    pub external_outages_ms: Vec<(u64, u64)>,
    pub commit_strategy: CommitStrategy,
    /// Whether this group's effects are claimed exactly once (judged by effect-once).
    pub effect_once: bool,
    /// The container waits this long after each batch before polling again (a scheduled
    /// consumer: the waiting queue's activator enables `max.poll.records` tokens every this many
    /// milliseconds).
    pub pause_between_polls_ms: u64,
    /// With `retry-then-dlq`: retries after the first failed attempt, then the dead-letter topic.
    pub retries: u32,
    /// With `retry-then-dlq`: the dead-letter topic.
    pub dlq_topic: Option<String>,
    pub consumer: ConsumerConfig,
    /// The listener's `KafkaTemplate` (`[consumers.<name>.producer]`): what its steps publish
    /// with, and the dead-letter recoverer's.
    pub producer: ProducerConfig,
}

/// A whole, validated scenario.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub run: RunSpec,
    pub brokers: u32,
    pub broker: BrokerConfig,
    pub network: NetworkSpec,
    pub topics: Vec<TopicSpec>,
    pub workload: WorkloadSpec,
    pub database: DatabaseSpec,
    /// Services, in table-name order.
    pub services: Vec<ServiceSpec>,
    /// Consumer groups, in table-name order.
    pub consumers: Vec<ConsumerSpec>,
    /// The fault schedule (`[[faults]]`), in file order.
    pub faults: Vec<FaultSpec>,
    /// Faults drawn from the seed (`[swarm]`), added to the schedule of each run.
    pub swarm: Option<SwarmSpec>,
    /// What `evsim check` knows about the design (`[check]`).
    pub check: CheckSpec,
    /// A workflow file whose requests and listeners run instead of the compiled-in services
    /// and listeners of the same table names (`[workflow]`, compiled with its parameters bound;
    /// tests also set it on a parsed scenario).
    #[serde(skip)]
    pub workflow: Option<std::sync::Arc<crate::workflow::Workflow>>,
    /// The workflow file as it was read (the name the loader gave it), when `[workflow]` names one.
    pub workflow_file: Option<String>,
}

/// Reads the workflow file a scenario's `[workflow] file` names, given the path as written:
/// the name to show in errors and the file's text, or why it cannot be read. The model does no
/// I/O; the caller's loader does (the CLI resolves the path against the scenario's directory,
/// [`beside`]).
pub type Loader<'a> = &'a dyn Fn(&str) -> Result<(String, String), String>;

/// Where a file a scenario names lives: `written` (as the scenario spells it) resolved against
/// the directory of the scenario file `scenario_file`, unless it is absolute.
pub fn beside(scenario_file: &str, written: &str) -> std::path::PathBuf {
    let written = std::path::Path::new(written);
    if written.is_absolute() {
        return written.to_path_buf();
    }
    std::path::Path::new(scenario_file).parent().map_or_else(|| written.to_path_buf(), |dir| dir.join(written))
}

impl Scenario {
    /// Parse and validate scenario text. `file` is only used in error messages. A scenario
    /// whose `[workflow]` names a file needs [`Scenario::parse_with`] and a loader.
    pub fn parse(file: &str, source: &str) -> Result<Self, ScenarioError> {
        Self::parse_with(file, source, &|_| {
            Err("this caller reads no workflow files (evsim's commands do: run the scenario with evsim)".into())
        })
    }

    /// Parse and validate scenario text, reading the workflow file its `[workflow]` names
    /// with `load`.
    pub fn parse_with(file: &str, source: &str, load: Loader<'_>) -> Result<Self, ScenarioError> {
        let raw: raw::Raw = toml::from_str(source).map_err(|e| {
            let mut msg = e.message().trim_end().to_string();
            if msg.starts_with("unknown field") {
                msg.push_str(" (see docs/scenario-format.md)");
            }
            ScenarioError::at(file, source, e.span(), msg)
        })?;
        validate::Validator { file, source, load }.scenario(raw)
    }

    pub fn topic(&self, name: &str) -> Option<&TopicSpec> {
        self.topics.iter().find(|t| t.name == name)
    }

    /// The service of table `[services.<name>]`.
    pub fn service(&self, name: &str) -> Option<&ServiceSpec> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The consumer group of table `[consumers.<name>]`.
    pub fn consumer_group(&self, name: &str) -> Option<&ConsumerSpec> {
        self.consumers.iter().find(|c| c.name == name)
    }

    /// The run's processes, by `NodeId`: `workload`, the brokers (`broker-0`, ...), every
    /// service instance (`<table>-0`, ...) and every consumer instance, in that order.
    pub fn node_names(&self) -> Vec<String> {
        let mut nodes = vec!["workload".to_string()];
        nodes.extend((0..self.brokers).map(|b| format!("broker-{b}")));
        for s in &self.services {
            nodes.extend((0..s.instances).map(|i| format!("{}-{i}", s.name)));
        }
        for c in &self.consumers {
            nodes.extend((0..c.instances).map(|i| format!("{}-{i}", c.name)));
        }
        nodes.push(CONTROLLER.to_string());
        nodes
    }

    /// Total simulated time of one run.
    pub fn end_ms(&self) -> u64 {
        self.run.duration_ms + self.run.quiet_period_ms
    }
}

#[cfg(test)]
mod tests;
