//! Scenario files: the cluster, topics, client configs (under Kafka's names), workload, run length
//! and the invariants a design claims. See `docs/scenario-format.md` for the whole format.
//!
//! Parsing is pure (text in, [`Scenario`] or [`ScenarioError`] out); the CLI reads the file.
//! Every mistake names the file, line and column, and the form that was expected there.

mod error;
mod kafka;
mod props;

pub use error::{ScenarioError, line_col};
pub use kafka::{Acks, AssignmentStrategy, BrokerConfig, ConsumerConfig, OffsetReset, Partitioner, ProducerConfig};
pub use props::{PropReader, PropValue, Props};

use crate::checkers::Invariant;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use toml::Spanned;

/// How the order consumer commits offsets (the consuming strategy).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
pub enum CommitStrategy {
    /// The Kafka client commits in `poll()` every `auto.commit.interval.ms` (`enable.auto.commit`).
    AutoCommit,
    /// The listener acknowledges each record after handling it, and the container commits the
    /// acknowledged offsets synchronously once the poll's records are handled (Spring's
    /// `AckMode.MANUAL` with `enable.auto.commit=false`, as seed 001 does): at-least-once.
    CommitAfterProcess,
}

impl CommitStrategy {
    pub fn name(self) -> &'static str {
        match self {
            CommitStrategy::AutoCommit => "auto-commit",
            CommitStrategy::CommitAfterProcess => "commit-after-process",
        }
    }
}

/// How the workload picks the product of an order.
#[derive(Copy, Clone, Debug, PartialEq, Serialize)]
pub enum ProductDistribution {
    Uniform,
    /// Zipf with this exponent: product 0 is the hottest.
    Zipf(f64),
}

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
}

/// The simulated database (MySQL in the seeds).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DatabaseSpec {
    /// Time a transaction takes from request to commit.
    pub latency_us: u64,
}

/// `OrderService` instances and their producer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OrderServiceSpec {
    pub instances: u32,
    pub topic: String,
    pub producer: ProducerConfig,
}

/// `OrderEventConsumer` instances (one consumer group) and their consumer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConsumerSpec {
    pub instances: u32,
    pub topic: String,
    /// Time the listener spends on one record.
    pub processing_time_us: u64,
    /// Extra processing time drawn uniformly from `0..=processing_jitter_us`.
    pub processing_jitter_us: u64,
    pub commit_strategy: CommitStrategy,
    pub consumer: ConsumerConfig,
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
    pub order_service: OrderServiceSpec,
    pub order_event_consumer: ConsumerSpec,
}

impl Scenario {
    /// Parse and validate scenario text. `file` is only used in error messages.
    pub fn parse(file: &str, source: &str) -> Result<Self, ScenarioError> {
        let raw: Raw = toml::from_str(source).map_err(|e| {
            let mut msg = e.message().trim_end().to_string();
            if msg.starts_with("unknown field") {
                msg.push_str(" (see docs/scenario-format.md)");
            }
            ScenarioError::at(file, source, e.span(), msg)
        })?;
        Validator { file, source }.scenario(raw)
    }

    pub fn topic(&self, name: &str) -> Option<&TopicSpec> {
        self.topics.iter().find(|t| t.name == name)
    }

    /// Total simulated time of one run.
    pub fn end_ms(&self) -> u64 {
        self.run.duration_ms + self.run.quiet_period_ms
    }
}

// ---- raw form, as serde reads it ------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: String,
    #[serde(default)]
    description: String,
    run: RawRun,
    #[serde(default)]
    cluster: RawCluster,
    #[serde(default)]
    network: RawNetwork,
    topics: BTreeMap<String, Spanned<Props>>,
    workload: RawWorkload,
    #[serde(default)]
    database: RawDatabase,
    order_service: RawOrderService,
    order_event_consumer: RawConsumer,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    duration_ms: Spanned<u64>,
    quiet_period_ms: Spanned<u64>,
    #[serde(default)]
    seed: u64,
    invariants: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    brokers: Spanned<u32>,
    config: Option<Props>,
}

impl Default for RawCluster {
    fn default() -> Self {
        Self { brokers: Spanned::new(0..0, 1), config: None }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    #[serde(default = "default_latency_us")]
    latency_us: Spanned<u64>,
    #[serde(default = "default_jitter_us")]
    jitter_us: Spanned<u64>,
}

fn default_latency_us() -> Spanned<u64> {
    Spanned::new(0..0, 500)
}
fn default_jitter_us() -> Spanned<u64> {
    Spanned::new(0..0, 100)
}

impl Default for RawDatabase {
    fn default() -> Self {
        Self { latency_us: default_db_latency_us() }
    }
}

impl Default for RawNetwork {
    fn default() -> Self {
        Self { latency_us: default_latency_us(), jitter_us: default_jitter_us() }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    rate_per_sec: Spanned<f64>,
    products: Spanned<u32>,
    stock_per_product: Spanned<i64>,
    users: Spanned<u32>,
    #[serde(default = "one_spanned")]
    quantity_max: Spanned<u32>,
    #[serde(default)]
    product_distribution: Option<Spanned<String>>,
    #[serde(default)]
    zipf_exponent: Option<Spanned<f64>>,
}

fn zero_spanned() -> Spanned<u64> {
    Spanned::new(0..0, 0)
}

fn one_spanned() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    #[serde(default = "default_db_latency_us")]
    latency_us: Spanned<u64>,
}

fn default_db_latency_us() -> Spanned<u64> {
    Spanned::new(0..0, 1_000)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrderService {
    #[serde(default = "one_spanned")]
    instances: Spanned<u32>,
    #[serde(default)]
    topic: Option<Spanned<String>>,
    #[serde(default)]
    producer: Option<Props>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsumer {
    #[serde(default = "one_spanned")]
    instances: Spanned<u32>,
    #[serde(default)]
    topic: Option<Spanned<String>>,
    processing_time_us: Spanned<u64>,
    #[serde(default = "zero_spanned")]
    processing_jitter_us: Spanned<u64>,
    #[serde(default)]
    commit_strategy: Option<Spanned<String>>,
    #[serde(default)]
    consumer: Option<Props>,
}

// ---- validation ---------------------------------------------------------------------------------

struct Validator<'a> {
    file: &'a str,
    source: &'a str,
}

const DEFAULT_TOPIC: &str = "order-created";

/// Upper bounds of evsim's own time knobs (Kafka's keys have their own ranges).
const HOUR_US: u64 = 3_600_000_000;
const YEAR_MS: u64 = 31_536_000_000;

/// The most orders one run may ask for: about 30 GB of history at the upper end.
pub const MAX_ORDERS_PER_RUN: u64 = 50_000_000;
const DEFAULT_GROUP: &str = "order-event-consumer";

impl Validator<'_> {
    fn err<T>(&self, span: std::ops::Range<usize>, msg: impl Into<String>) -> Result<T, ScenarioError> {
        let span = if span.is_empty() && span.start == 0 { None } else { Some(span) };
        Err(ScenarioError::at(self.file, self.source, span, msg))
    }

    fn positive_u32(&self, v: &Spanned<u32>, what: &str, max: u32) -> Result<u32, ScenarioError> {
        let n = *v.get_ref();
        if n == 0 || n > max {
            return self.err(v.span(), format!("`{what}` is {n}; expected an integer from 1 to {max}"));
        }
        Ok(n)
    }

    /// A duration knob of evsim's own, bounded so that virtual-time arithmetic cannot overflow.
    fn bounded(&self, v: &Spanned<u64>, what: &str, max: u64) -> Result<u64, ScenarioError> {
        let n = *v.get_ref();
        if n > max {
            return self.err(v.span(), format!("`{what}` is {n}; expected at most {max}"));
        }
        Ok(n)
    }

    fn reader<'b>(&'b self, section: &'b str, props: Option<Props>) -> PropReader<'b> {
        PropReader::new(self.file, self.source, section, props.unwrap_or_default())
    }

    fn scenario(&self, raw: Raw) -> Result<Scenario, ScenarioError> {
        if raw.name.trim().is_empty() {
            return self.err(0..0, "`name` is empty; expected a scenario name such as \"order-basic\"");
        }
        let run = self.run(raw.run)?;
        let brokers = self.positive_u32(&raw.cluster.brokers, "cluster.brokers", 1_000)?;
        let mut r = self.reader("cluster.config", raw.cluster.config);
        let broker = BrokerConfig::read(&mut r)?;
        r.finish()?;

        let mut topics = Vec::new();
        for (name, props) in raw.topics {
            let span = props.span();
            let section = format!("topics.{name}");
            let mut r = PropReader::new(self.file, self.source, &section, props.into_inner());
            if !r.has("partitions") {
                return self.err(span, format!("topic `{name}` has no `partitions`; expected e.g. `partitions = 3`"));
            }
            let partitions = r.int("partitions", 1, 1, 100_000)? as u32;
            let replication_factor = r.int("replication.factor", 1, 1, 1_000)? as u32;
            r.finish()?;
            if replication_factor > brokers {
                return self.err(
                    span,
                    format!("topic `{name}` has replication.factor {replication_factor} but the cluster has {brokers} broker(s)"),
                );
            }
            if replication_factor > 1 {
                return self.err(
                    span,
                    format!(
                        "topic `{name}`: replication.factor {replication_factor} is not modelled yet (only 1); \
                         replication comes with the faults work, see docs/architecture.md \"Not modelled\""
                    ),
                );
            }
            topics.push(TopicSpec { name, partitions, replication_factor });
        }

        let workload = self.workload(raw.workload)?;
        let orders = workload.rate_per_sec * run.duration_ms as f64 / 1_000.0;
        if orders > MAX_ORDERS_PER_RUN as f64 {
            return self.err(
                0..0,
                format!(
                    "[workload] rate_per_sec x [run] duration_ms asks for {orders:.0} orders in one run; expected at most \
                     {MAX_ORDERS_PER_RUN} (a run keeps its whole history in memory, about 600 bytes per order)"
                ),
            );
        }
        let database =
            DatabaseSpec { latency_us: self.bounded(&raw.database.latency_us, "database.latency_us", HOUR_US)? };

        let os = raw.order_service;
        let instances = self.positive_u32(&os.instances, "order_service.instances", 1_000)?;
        let topic = self.topic_ref(&topics, os.topic, "order_service.topic")?;
        let mut r = self.reader("order_service.producer", os.producer);
        let idempotence_given = r.has("enable.idempotence");
        let mut producer = ProducerConfig::read(&mut r)?;
        r.finish()?;
        if let Some(conflict) = producer.idempotence_conflict() {
            if idempotence_given {
                return self.err(0..0, format!("[order_service.producer]: {conflict}"));
            }
            // The Java client (3.2+, KAFKA-13598) turns the default idempotence off quietly when
            // the other settings conflict with it, and refuses only an explicit `true`.
            producer.enable_idempotence = false;
        }
        let order_service = OrderServiceSpec { instances, topic, producer };

        let oc = raw.order_event_consumer;
        let instances = self.positive_u32(&oc.instances, "order_event_consumer.instances", 1_000)?;
        let topic = self.topic_ref(&topics, oc.topic, "order_event_consumer.topic")?;
        let mut r = self.reader("order_event_consumer.consumer", oc.consumer);
        let auto_commit_given = r.has("enable.auto.commit");
        let mut consumer = ConsumerConfig::read(&mut r, DEFAULT_GROUP)?;
        r.finish()?;
        let commit_strategy = match oc.commit_strategy {
            None if auto_commit_given && consumer.enable_auto_commit => CommitStrategy::AutoCommit,
            // Spring Kafka (2.3+) sets `enable.auto.commit=false` unless it is given, and its
            // container commits after each poll's records are handled.
            None => {
                consumer.enable_auto_commit = false;
                CommitStrategy::CommitAfterProcess
            }
            Some(s) => {
                let span = s.span();
                match s.into_inner().as_str() {
                    "auto-commit" => {
                        if auto_commit_given && !consumer.enable_auto_commit {
                            return self.err(span, "commit_strategy \"auto-commit\" needs `enable.auto.commit = true` in [order_event_consumer.consumer]");
                        }
                        consumer.enable_auto_commit = true;
                        CommitStrategy::AutoCommit
                    }
                    "commit-after-process" => {
                        if auto_commit_given && consumer.enable_auto_commit {
                            return self.err(span, "commit_strategy \"commit-after-process\" needs `enable.auto.commit = false` (otherwise the client also commits on its own)");
                        }
                        consumer.enable_auto_commit = false;
                        CommitStrategy::CommitAfterProcess
                    }
                    other => {
                        return self.err(span, format!("commit_strategy is \"{other}\"; expected one of \"auto-commit\", \"commit-after-process\""));
                    }
                }
            }
        };
        let (min, max) = (broker.group_min_session_timeout_ms, broker.group_max_session_timeout_ms);
        if !(min..=max).contains(&consumer.session_timeout_ms) {
            return self.err(
                0..0,
                format!(
                    "[order_event_consumer.consumer]: `session.timeout.ms` is {}; the broker accepts {min} to {max} \
                     (`group.min.session.timeout.ms`, `group.max.session.timeout.ms` in [cluster.config]) and answers \
                     JoinGroup with INVALID_SESSION_TIMEOUT otherwise",
                    consumer.session_timeout_ms
                ),
            );
        }
        if consumer.heartbeat_interval_ms >= consumer.session_timeout_ms {
            return self.err(0..0, "[order_event_consumer.consumer]: `heartbeat.interval.ms` must be lower than `session.timeout.ms` (Kafka requires it)");
        }
        let order_event_consumer = ConsumerSpec {
            instances,
            topic,
            processing_time_us: self.bounded(&oc.processing_time_us, "processing_time_us", HOUR_US)?,
            processing_jitter_us: self.bounded(&oc.processing_jitter_us, "processing_jitter_us", HOUR_US)?,
            commit_strategy,
            consumer,
        };

        Ok(Scenario {
            name: raw.name,
            description: raw.description,
            run,
            brokers,
            broker,
            network: self.network(raw.network)?,
            topics,
            workload,
            database,
            order_service,
            order_event_consumer,
        })
    }

    fn network(&self, n: RawNetwork) -> Result<NetworkSpec, ScenarioError> {
        let latency_us = *n.latency_us.get_ref();
        // A real network always takes time; zero would let a request loop (a fetch answered at
        // once, sent again at once) spin forever at one instant of virtual time.
        if latency_us == 0 {
            return self.err(n.latency_us.span(), "`latency_us` is 0; expected at least 1 microsecond");
        }
        let latency_us = self.bounded(&n.latency_us, "network.latency_us", HOUR_US)?;
        let jitter_us = self.bounded(&n.jitter_us, "network.jitter_us", HOUR_US)?;
        Ok(NetworkSpec { latency_us, jitter_us })
    }

    fn run(&self, raw: RawRun) -> Result<RunSpec, ScenarioError> {
        let duration_ms = *raw.duration_ms.get_ref();
        if duration_ms == 0 {
            return self.err(raw.duration_ms.span(), "`duration_ms` is 0; expected a positive number of milliseconds");
        }
        let mut invariants = Vec::new();
        for name in raw.invariants {
            match Invariant::from_name(name.get_ref()) {
                Some(i) if !invariants.contains(&i) => invariants.push(i),
                Some(_) => {}
                None => {
                    let known: Vec<&str> = Invariant::ALL.iter().map(|i| i.name()).collect();
                    return self.err(
                        name.span(),
                        format!("unknown invariant \"{}\"; expected one of: {}", name.get_ref(), known.join(", ")),
                    );
                }
            }
        }
        let duration_ms = self.bounded(&raw.duration_ms, "duration_ms", YEAR_MS)?;
        let quiet_period_ms = self.bounded(&raw.quiet_period_ms, "quiet_period_ms", YEAR_MS)?;
        Ok(RunSpec { duration_ms, quiet_period_ms, seed: raw.seed, invariants })
    }

    fn workload(&self, w: RawWorkload) -> Result<WorkloadSpec, ScenarioError> {
        let rate = *w.rate_per_sec.get_ref();
        if !(rate > 0.0 && rate <= 10_000_000.0) {
            return self.err(
                w.rate_per_sec.span(),
                format!("`rate_per_sec` is {rate}; expected a number above 0 and at most 10000000"),
            );
        }
        let products = self.positive_u32(&w.products, "workload.products", 10_000_000)?;
        let users = self.positive_u32(&w.users, "workload.users", u32::MAX)?;
        let quantity_max = self.positive_u32(&w.quantity_max, "workload.quantity_max", 1_000_000)?;
        let stock = *w.stock_per_product.get_ref();
        if stock < 0 {
            return self.err(w.stock_per_product.span(), format!("`stock_per_product` is {stock}; expected 0 or more"));
        }
        let product_distribution = match w.product_distribution {
            None => ProductDistribution::Uniform,
            Some(d) => match d.get_ref().as_str() {
                "uniform" => ProductDistribution::Uniform,
                "zipf" => {
                    let s = w.zipf_exponent.as_ref().map_or(1.0, |s| *s.get_ref());
                    if !(s > 0.0 && s <= 10.0) {
                        let span = w.zipf_exponent.map_or(d.span(), |s| s.span());
                        return self
                            .err(span, format!("`zipf_exponent` is {s}; expected a number above 0 and at most 10"));
                    }
                    ProductDistribution::Zipf(s)
                }
                other => {
                    return self.err(
                        d.span(),
                        format!("`product_distribution` is \"{other}\"; expected \"uniform\" or \"zipf\""),
                    );
                }
            },
        };
        Ok(WorkloadSpec {
            rate_per_sec: rate,
            products,
            stock_per_product: stock,
            users,
            quantity_max,
            product_distribution,
        })
    }

    fn topic_ref(
        &self,
        topics: &[TopicSpec],
        given: Option<Spanned<String>>,
        what: &str,
    ) -> Result<String, ScenarioError> {
        let (name, span) = match given {
            Some(s) => (s.get_ref().clone(), s.span()),
            None => (DEFAULT_TOPIC.to_string(), 0..0),
        };
        if topics.iter().any(|t| t.name == name) {
            return Ok(name);
        }
        let known: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
        self.err(
            span,
            format!(
                "`{what}` names topic \"{name}\", which is not declared; expected one of the [topics.*] tables: {}",
                known.join(", ")
            ),
        )
    }
}

#[cfg(test)]
mod tests;
