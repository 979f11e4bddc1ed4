//! The broker a real run talks to, behind one interface: an Apache Kafka cluster the harness
//! starts and stops ([`crate::kafka`]), librdkafka's in-process mock cluster, or an external
//! Kafka the user runs.
//!
//! The harness owns the broker's life: it starts it, waits until every broker answers metadata
//! requests, creates the scenario's topics (Kafka's automatic creation is off, as in the
//! simulator), performs the infrastructure faults, and stops it after the run.

use crate::RealError;
use crate::kafka::KafkaCluster;
pub use crate::kafka::KafkaNet;
use evsim_model::scenario::{FaultSpec, Scenario};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Which broker a real run uses (`evsim real --broker`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BrokerKind {
    /// Apache Kafka (the pinned release), a KRaft controller and the scenario's brokers.
    Kafka,
    /// librdkafka's mock cluster, in process.
    Mock,
    /// A Kafka the user runs, at `--bootstrap`.
    External,
}

impl BrokerKind {
    pub fn name(self) -> &'static str {
        match self {
            BrokerKind::Kafka => "kafka",
            BrokerKind::Mock => "mock",
            BrokerKind::External => "external",
        }
    }
}

/// How to reach or start the broker.
#[derive(Clone, Debug)]
pub struct BrokerOptions {
    pub kind: BrokerKind,
    /// `external`: the bootstrap servers.
    pub bootstrap: Option<String>,
    /// `kafka` on loopback: the first broker's port (a free one when `None`).
    pub port: Option<u16>,
    /// `kafka`: network namespaces (packet-level network faults) or loopback.
    pub net: KafkaNet,
}

impl BrokerOptions {
    pub fn new(kind: BrokerKind) -> Self {
        Self { kind, bootstrap: None, port: None, net: KafkaNet::detect() }
    }
}

impl KafkaNet {
    /// `EVSIM_KAFKA_NET` (`namespaces` or `loopback`) when set; else namespaces when evsim runs
    /// as root with `ip` and `iptables`, loopback otherwise.
    pub fn detect() -> Self {
        match std::env::var("EVSIM_KAFKA_NET").as_deref() {
            Ok("loopback") => KafkaNet::Loopback,
            Ok("namespaces") => KafkaNet::Namespaces,
            _ if crate::netns::requirements().is_ok() => KafkaNet::Namespaces,
            _ => KafkaNet::Loopback,
        }
    }
}

enum Inner {
    Kafka(Rc<RefCell<KafkaCluster>>),
    Mock(MockCluster<'static, DefaultProducerContext>),
    External,
}

/// A running broker.
pub struct Harness {
    pub kind: BrokerKind,
    bootstrap: String,
    inner: Inner,
    /// What the target does not reproduce of the scenario's cluster, for the report.
    pub notes: Vec<String>,
}

impl Harness {
    /// Start (or reach) the broker, create the scenario's topics and wait until it answers.
    pub async fn start(options: &BrokerOptions, scenario: &Scenario) -> Result<Self, RealError> {
        let mut notes = Vec::new();
        let (bootstrap, inner) = match options.kind {
            BrokerKind::Kafka => {
                let port = if options.net == KafkaNet::Loopback { options.port } else { None };
                let cluster = KafkaCluster::start(scenario, options.net, port)?;
                if options.net == KafkaNet::Loopback {
                    notes.push(
                        "Kafka runs on loopback (not root, or EVSIM_KAFKA_NET=loopback): no network faults".to_string(),
                    );
                }
                (cluster.bootstrap(), Inner::Kafka(Rc::new(RefCell::new(cluster))))
            }
            BrokerKind::Mock => {
                let cluster = MockCluster::new(scenario.brokers as i32)
                    .map_err(|e| RealError::Environment(format!("cannot create librdkafka's mock cluster: {e}")))?;
                (cluster.bootstrap_servers(), Inner::Mock(cluster))
            }
            BrokerKind::External => {
                let b = options
                    .bootstrap
                    .clone()
                    .ok_or_else(|| RealError::Usage("--broker external needs --bootstrap host:port".to_string()))?;
                notes.push(format!("external Kafka at {b}: its topics must be new or empty for the checkers"));
                (b, Inner::External)
            }
        };
        let mut h = Harness { kind: options.kind, bootstrap, inner, notes };
        let limit = if options.kind == BrokerKind::Kafka { 90 } else { 10 };
        h.wait_ready(Duration::from_secs(limit))?;
        h.create_topics(scenario).await?;
        Ok(h)
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The Apache Kafka cluster, when the harness started one (the watchdog's view of it).
    pub(crate) fn kafka(&self) -> Option<Rc<RefCell<KafkaCluster>>> {
        match &self.inner {
            Inner::Kafka(c) => Some(c.clone()),
            _ => None,
        }
    }

    /// Wait until the broker answers a metadata request.
    fn wait_ready(&mut self, limit: Duration) -> Result<(), RealError> {
        let started = Instant::now();
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("log_level", "0")
            .create()
            .map_err(|e| RealError::Environment(format!("cannot create a Kafka client: {e}")))?;
        loop {
            let exited = match &mut self.inner {
                Inner::Kafka(c) => c.borrow_mut().exited(),
                _ => None,
            };
            if let Some(why) = exited {
                return Err(RealError::Environment(why));
            }
            let want = match &self.inner {
                Inner::Kafka(c) => c.borrow().brokers(),
                _ => 1,
            };
            match consumer.fetch_metadata(None, Duration::from_millis(1_000)) {
                Ok(md) if md.brokers().len() >= want => return Ok(()),
                _ if started.elapsed() > limit => {
                    let logs = match &self.inner {
                        Inner::Kafka(c) => format!("; the nodes' logs are in {}", c.borrow().log_dir().display()),
                        _ => String::new(),
                    };
                    return Err(RealError::Environment(format!(
                        "no Kafka broker answered at {} within {} s{logs}",
                        self.bootstrap,
                        limit.as_secs()
                    )));
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    async fn create_topics(&self, scenario: &Scenario) -> Result<(), RealError> {
        if let Inner::Mock(cluster) = &self.inner {
            for t in &scenario.topics {
                let rf = t.replication_factor.min(scenario.brokers) as i32;
                cluster.create_topic(&t.name, t.partitions as i32, rf).map_err(|e| {
                    RealError::Environment(format!("mock cluster: cannot create topic {}: {e}", t.name))
                })?;
            }
            return Ok(());
        }
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("log_level", "0")
            .create()
            .map_err(|e| RealError::Environment(format!("cannot create an admin client: {e}")))?;
        let (min_isr, unclean) = (
            scenario.broker.min_insync_replicas.to_string(),
            scenario.broker.unclean_leader_election_enable.to_string(),
        );
        // On Apache Kafka, each partition's replicas as the simulator places them (round-robin
        // over the brokers, partitions of every topic counted in scenario order; the first is
        // the preferred leader), so that a fault aimed at a broker hits the partitions it leads
        // in the simulator too. Kafka's own placement starts at a random broker.
        let mut global = 0usize;
        let assignments: Vec<Vec<Vec<i32>>> = scenario
            .topics
            .iter()
            .map(|t| {
                (0..t.partitions)
                    .map(|_| {
                        let replicas = (0..t.replication_factor as usize)
                            .map(|k| i32::from(evsim_sim::cluster::preferred_leader(global + k, scenario.brokers)))
                            .collect();
                        global += 1;
                        replicas
                    })
                    .collect()
            })
            .collect();
        let slices: Vec<Vec<&[i32]>> = assignments.iter().map(|t| t.iter().map(Vec::as_slice).collect()).collect();
        let topics: Vec<NewTopic> = scenario
            .topics
            .iter()
            .zip(&slices)
            .map(|(t, assignment)| {
                if self.kind == BrokerKind::Kafka {
                    // min.insync.replicas and unclean election explicit on the topic, so that
                    // the controller's elections and the leaders' acks=all checks both read
                    // them from one place.
                    NewTopic::new(&t.name, t.partitions as i32, TopicReplication::Variable(assignment))
                        .set("min.insync.replicas", &min_isr)
                        .set("unclean.leader.election.enable", &unclean)
                } else {
                    NewTopic::new(&t.name, t.partitions as i32, TopicReplication::Fixed(t.replication_factor as i32))
                }
            })
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .create_topics(&topics, &opts)
            .await
            .map_err(|e| RealError::Environment(format!("CreateTopics failed at {}: {e}", self.bootstrap)))?;
        for r in results {
            match r {
                Ok(_) => {}
                Err((name, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                    if self.kind != BrokerKind::External {
                        return Err(RealError::Environment(format!("topic {name} already exists on a fresh broker")));
                    }
                }
                Err((name, code)) => {
                    return Err(RealError::Environment(format!("cannot create topic {name}: {code}")));
                }
            }
        }
        // Wait until every partition has a leader.
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("log_level", "0")
            .create()
            .map_err(|e| RealError::Environment(e.to_string()))?;
        let started = Instant::now();
        for t in &scenario.topics {
            loop {
                let ok = consumer.fetch_metadata(Some(&t.name), Duration::from_secs(2)).is_ok_and(|md| {
                    md.topics().iter().any(|m| {
                        m.name() == t.name
                            && m.error().is_none()
                            && m.partitions().len() as u32 == t.partitions
                            && m.partitions().iter().all(|p| p.leader() >= 0)
                    })
                });
                if ok {
                    break;
                }
                if started.elapsed() > Duration::from_secs(20) {
                    return Err(RealError::Environment(format!(
                        "topic {} has no leaders for its {} partitions after 20 s",
                        t.name, t.partitions
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Crash broker `broker` (an index, `broker-0` is 0). `Err` says why the target cannot.
    pub fn broker_down(&mut self, broker: u32) -> Result<String, String> {
        if noop_faults() {
            return Ok(NOOP.to_string());
        }
        match &mut self.inner {
            Inner::Kafka(c) => c.borrow_mut().kill(broker as usize),
            Inner::Mock(c) => c
                .broker_down(broker as i32 + 1)
                .map(|()| format!("mock broker {} down", broker + 1))
                .map_err(|e| e.to_string()),
            Inner::External => Err("an external broker is not evsim's to stop".to_string()),
        }
    }

    /// Restart broker `broker` after [`Harness::broker_down`].
    pub fn broker_up(&mut self, broker: u32) -> Result<String, String> {
        if noop_faults() {
            return Ok(NOOP.to_string());
        }
        match &mut self.inner {
            Inner::Kafka(c) => c.borrow_mut().restart(broker as usize),
            Inner::Mock(c) => c
                .broker_up(broker as i32 + 1)
                .map(|()| format!("mock broker {} up", broker + 1))
                .map_err(|e| e.to_string()),
            Inner::External => Err("an external broker is not evsim's to restart".to_string()),
        }
    }

    /// Stop (`on`) or continue broker `broker`'s process (Apache Kafka only: the mock cluster's
    /// brokers are threads of this process).
    pub fn broker_pause(&mut self, broker: u32, on: bool) -> Result<String, String> {
        if noop_faults() {
            return Ok(NOOP.to_string());
        }
        match &mut self.inner {
            Inner::Kafka(c) => c.borrow_mut().pause(broker as usize, on),
            Inner::Mock(_) => {
                Err("the mock cluster's brokers cannot be paused (they are threads of evsim)".to_string())
            }
            Inner::External => Err("an external broker is not evsim's to pause".to_string()),
        }
    }

    /// Make broker `broker` unreachable (mock cluster: the broker goes down; Apache Kafka cuts
    /// it off with packet filters, [`Harness::network`]).
    pub fn isolate(&mut self, broker: u32, on: bool) -> Result<String, String> {
        match &mut self.inner {
            Inner::Mock(_) => {
                if on {
                    self.broker_down(broker)
                } else {
                    self.broker_up(broker)
                }
            }
            _ => Err("the target cannot cut a broker off".to_string()),
        }
    }

    /// Add `delay` to every request to broker `broker` (mock cluster only).
    pub fn delay(&mut self, broker: u32, delay: Duration) -> Result<String, String> {
        match &mut self.inner {
            Inner::Mock(c) => c
                .broker_round_trip_time(broker as i32 + 1, delay)
                .map(|()| format!("mock broker {} round trip +{} ms", broker + 1, delay.as_millis()))
                .map_err(|e| e.to_string()),
            _ => Err("only the mock cluster can delay a broker's requests".to_string()),
        }
    }

    /// Start fault `id`, a network fault, as packet filters in the target broker's namespace
    /// (Apache Kafka in namespaces only).
    pub fn network_start(&mut self, id: usize, fault: &FaultSpec) -> Result<String, String> {
        if noop_faults() {
            return Ok(NOOP.to_string());
        }
        match &mut self.inner {
            Inner::Kafka(c) => c.borrow_mut().network_start(id, fault),
            _ => Err("packet-level network faults need Apache Kafka in network namespaces".to_string()),
        }
    }

    /// End network fault `id`: how many packets it dropped.
    pub fn network_end(&mut self, id: usize) -> Result<u64, String> {
        if noop_faults() {
            return Ok(0);
        }
        match &mut self.inner {
            Inner::Kafka(c) => c.borrow_mut().network_end(id),
            _ => Err("no packet filters".to_string()),
        }
    }

    /// Stop the broker and remove what the harness created.
    pub fn stop(&mut self) {
        if let Inner::Kafka(c) = &mut self.inner {
            c.borrow_mut().stop();
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `EVSIM_FAULTS_NOOP=1`: the harness reports its infrastructure faults (broker crashes, network
/// faults) as performed and does nothing. A deliberately broken executor, for the test that
/// proves the real one acts: with it, the failover comparison must fail.
fn noop_faults() -> bool {
    std::env::var_os("EVSIM_FAULTS_NOOP").is_some_and(|v| v == "1")
}

const NOOP: &str = "not performed (EVSIM_FAULTS_NOOP=1)";
