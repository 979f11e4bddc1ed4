//! Kafka client and broker configuration, under Kafka's own names.
//!
//! Defaults are the Java client's (Apache Kafka 3.x/4.x), as KAFKA-SEMANTICS.md lists them; where
//! librdkafka differs the doc comment says so. A scenario that must agree with a librdkafka run
//! sets the key explicitly.

use super::error::ScenarioError;
use super::props::PropReader;
use serde::Serialize;

/// `acks`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Acks {
    /// `acks=0`: no response; offset unknown; retries have no effect.
    None,
    /// `acks=1`: the leader appended.
    Leader,
    /// `acks=all` (`-1`): every replica in the ISR has it.
    All,
}

/// The producer's partitioner for keyed records (`partitioner` in librdkafka).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Partitioner {
    /// The Java client's: murmur2 of the key bytes; librdkafka's `murmur2_random`.
    Murmur2,
    /// librdkafka's default `consistent_random`: CRC32 of the key (does not match Java).
    Crc32,
}

/// How a client opens connections (the Java `NetworkClient`'s settings, shared by producers and
/// consumers).
#[derive(Copy, Clone, Debug, PartialEq, Serialize)]
pub struct ConnectionConfig {
    /// `socket.connection.setup.timeout.ms`: a connection attempt that is not established by
    /// then is given up (doubling with each consecutive failure, up to the max).
    pub setup_timeout_ms: u64,
    /// `socket.connection.setup.timeout.max.ms`.
    pub setup_timeout_max_ms: u64,
    /// `reconnect.backoff.ms`: the wait before connecting again to a node after a failure
    /// (doubling with each consecutive failure, up to the max).
    pub reconnect_backoff_ms: u64,
    /// `reconnect.backoff.max.ms`.
    pub reconnect_backoff_max_ms: u64,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            setup_timeout_ms: 10_000,
            setup_timeout_max_ms: 30_000,
            reconnect_backoff_ms: 50,
            reconnect_backoff_max_ms: 1_000,
        }
    }
}

impl ConnectionConfig {
    fn read(r: &mut PropReader<'_>) -> Result<Self, ScenarioError> {
        let d = Self::default();
        let c = Self {
            setup_timeout_ms: r.uint("socket.connection.setup.timeout.ms", d.setup_timeout_ms, 1, 3_600_000)?,
            setup_timeout_max_ms: r.uint(
                "socket.connection.setup.timeout.max.ms",
                d.setup_timeout_max_ms,
                1,
                3_600_000,
            )?,
            reconnect_backoff_ms: r.uint("reconnect.backoff.ms", d.reconnect_backoff_ms, 0, 3_600_000)?,
            reconnect_backoff_max_ms: r.uint("reconnect.backoff.max.ms", d.reconnect_backoff_max_ms, 0, 3_600_000)?,
        };
        // The Java client raises the max to the base when the base is larger.
        Ok(Self {
            setup_timeout_max_ms: c.setup_timeout_max_ms.max(c.setup_timeout_ms),
            reconnect_backoff_max_ms: c.reconnect_backoff_max_ms.max(c.reconnect_backoff_ms),
            ..c
        })
    }
}

/// Producer configuration (`ProducerConfig`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProducerConfig {
    pub acks: Acks,
    pub retries: u32,
    pub linger_ms: u64,
    /// Bytes per partition batch.
    pub batch_size: u64,
    pub max_in_flight_requests_per_connection: u32,
    pub enable_idempotence: bool,
    pub request_timeout_ms: u64,
    pub delivery_timeout_ms: u64,
    pub retry_backoff_ms: u64,
    pub partitioner: Partitioner,
    /// `socket.connection.setup.timeout.ms`, `reconnect.backoff.ms` and their maxima.
    pub connection: ConnectionConfig,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            acks: Acks::All,
            retries: i32::MAX as u32,
            linger_ms: 5,
            batch_size: 16_384,
            max_in_flight_requests_per_connection: 5,
            enable_idempotence: true,
            request_timeout_ms: 30_000,
            delivery_timeout_ms: 120_000,
            retry_backoff_ms: 100,
            partitioner: Partitioner::Murmur2,
            connection: ConnectionConfig::default(),
        }
    }
}

impl ProducerConfig {
    pub(crate) fn read(r: &mut PropReader<'_>) -> Result<Self, ScenarioError> {
        let d = Self::default();
        let c = Self {
            acks: r.choice(
                "acks",
                d.acks,
                &[(&["all", "-1"], Acks::All), (&["1"], Acks::Leader), (&["0"], Acks::None)],
            )?,
            retries: r.int("retries", d.retries as i64, 0, i32::MAX as i64)? as u32,
            linger_ms: r.uint("linger.ms", d.linger_ms, 0, 900_000)?,
            batch_size: r.uint("batch.size", d.batch_size, 1, 1 << 30)?,
            max_in_flight_requests_per_connection: r.int(
                "max.in.flight.requests.per.connection",
                d.max_in_flight_requests_per_connection as i64,
                1,
                1_000,
            )? as u32,
            enable_idempotence: r.bool("enable.idempotence", d.enable_idempotence)?,
            request_timeout_ms: r.uint("request.timeout.ms", d.request_timeout_ms, 1, 3_600_000)?,
            delivery_timeout_ms: r.uint("delivery.timeout.ms", d.delivery_timeout_ms, 1, 86_400_000)?,
            retry_backoff_ms: r.uint("retry.backoff.ms", d.retry_backoff_ms, 0, 3_600_000)?,
            partitioner: r.choice(
                "partitioner",
                d.partitioner,
                &[
                    (
                        &[
                            "murmur2_random",
                            "murmur2",
                            "org.apache.kafka.clients.producer.internals.DefaultPartitioner",
                        ],
                        Partitioner::Murmur2,
                    ),
                    (&["consistent_random", "consistent"], Partitioner::Crc32),
                ],
            )?,
            connection: ConnectionConfig::read(r)?,
        };
        Ok(c)
    }

    /// Kafka's rule for idempotence (`enable.idempotence=true` requires acks=all, retries > 0 and
    /// at most 5 requests in flight); the Java client refuses to start otherwise.
    pub fn idempotence_conflict(&self) -> Option<&'static str> {
        if !self.enable_idempotence {
            return None;
        }
        if self.acks != Acks::All {
            Some("`enable.idempotence = true` requires `acks = \"all\"` (the Java client refuses to start otherwise)")
        } else if self.retries == 0 {
            Some("`enable.idempotence = true` requires `retries` > 0")
        } else if self.max_in_flight_requests_per_connection > 5 {
            Some("`enable.idempotence = true` requires `max.in.flight.requests.per.connection` <= 5")
        } else {
            None
        }
    }
}

/// `auto.offset.reset`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
pub enum OffsetReset {
    Earliest,
    Latest,
    /// Fail when there is no committed offset (`none`).
    None,
}

/// `partition.assignment.strategy`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
pub enum AssignmentStrategy {
    /// `RangeAssignor`, eager protocol: every partition is revoked before a rebalance.
    Range,
    /// `CooperativeStickyAssignor` (KIP-429): only moving partitions are revoked.
    CooperativeSticky,
}

/// Consumer configuration (`ConsumerConfig`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConsumerConfig {
    pub group_id: String,
    /// `group.instance.id` (KIP-345 static membership). Each instance of the table gets this id
    /// with its index appended (`<id>-0`, `<id>-1`, ...), as each pod sets its own; a member
    /// that restarts within `session.timeout.ms` takes its place back without a rebalance.
    pub group_instance_id: Option<String>,
    pub enable_auto_commit: bool,
    /// librdkafka's `enable.auto.offset.store` (evsim default false: the Java client). When
    /// true, the consumer behaves as librdkafka's does: a record's offset is stored as soon as
    /// `poll()` hands it to the application, and auto-commit commits the stored offsets from a
    /// background timer, whether or not the application has finished with them. The Java client
    /// has no such key: it auto-commits inside `poll()`, only what earlier polls returned.
    pub enable_auto_offset_store: bool,
    pub auto_commit_interval_ms: u64,
    pub auto_offset_reset: OffsetReset,
    pub max_poll_records: u32,
    pub max_poll_interval_ms: u64,
    pub session_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub fetch_max_wait_ms: u64,
    pub max_partition_fetch_bytes: u64,
    pub partition_assignment_strategy: AssignmentStrategy,
    /// `request.timeout.ms`: a fetch, OffsetCommit, JoinGroup, ... without an answer by then
    /// fails, and its connection is closed.
    pub request_timeout_ms: u64,
    /// `retry.backoff.ms`: the wait before looking for the group coordinator again, or before
    /// a synchronous commit retries.
    pub retry_backoff_ms: u64,
    /// `default.api.timeout.ms`: how long a synchronous commit (Spring's container commits with
    /// `commitSync`) keeps retrying retriable errors.
    pub default_api_timeout_ms: u64,
    /// `socket.connection.setup.timeout.ms`, `reconnect.backoff.ms` and their maxima.
    pub connection: ConnectionConfig,
}

impl ConsumerConfig {
    pub fn with_group(group_id: &str) -> Self {
        Self {
            group_id: group_id.to_string(),
            group_instance_id: None,
            enable_auto_commit: true,
            enable_auto_offset_store: false,
            auto_commit_interval_ms: 5_000,
            auto_offset_reset: OffsetReset::Latest,
            max_poll_records: 500,
            max_poll_interval_ms: 300_000,
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 3_000,
            fetch_max_wait_ms: 500,
            max_partition_fetch_bytes: 1_048_576,
            partition_assignment_strategy: AssignmentStrategy::Range,
            request_timeout_ms: 30_000,
            retry_backoff_ms: 100,
            default_api_timeout_ms: 60_000,
            connection: ConnectionConfig::default(),
        }
    }

    pub(crate) fn read(r: &mut PropReader<'_>, default_group: &str) -> Result<Self, ScenarioError> {
        let group_id = r.string("group.id")?.map_or_else(|| default_group.to_string(), |(s, _)| s);
        let d = Self::with_group(&group_id);
        Ok(Self {
            group_id,
            group_instance_id: r.string("group.instance.id")?.map(|(s, _)| s),
            enable_auto_commit: r.bool("enable.auto.commit", d.enable_auto_commit)?,
            enable_auto_offset_store: r.bool("enable.auto.offset.store", d.enable_auto_offset_store)?,
            auto_commit_interval_ms: r.uint("auto.commit.interval.ms", d.auto_commit_interval_ms, 1, 86_400_000)?,
            auto_offset_reset: r.choice(
                "auto.offset.reset",
                d.auto_offset_reset,
                &[
                    (&["earliest", "smallest", "beginning"], OffsetReset::Earliest),
                    (&["latest", "largest", "end"], OffsetReset::Latest),
                    (&["none", "error"], OffsetReset::None),
                ],
            )?,
            max_poll_records: r.int("max.poll.records", d.max_poll_records as i64, 1, 1_000_000)? as u32,
            max_poll_interval_ms: r.uint("max.poll.interval.ms", d.max_poll_interval_ms, 1, 86_400_000)?,
            session_timeout_ms: r.uint("session.timeout.ms", d.session_timeout_ms, 1, 3_600_000)?,
            heartbeat_interval_ms: r.uint("heartbeat.interval.ms", d.heartbeat_interval_ms, 1, 3_600_000)?,
            fetch_max_wait_ms: r.uint("fetch.max.wait.ms", d.fetch_max_wait_ms, 0, 3_600_000)?,
            max_partition_fetch_bytes: r.uint("max.partition.fetch.bytes", d.max_partition_fetch_bytes, 1, 1 << 31)?,
            partition_assignment_strategy: r.choice(
                "partition.assignment.strategy",
                d.partition_assignment_strategy,
                &[
                    (&["range", "org.apache.kafka.clients.consumer.RangeAssignor"], AssignmentStrategy::Range),
                    (
                        &["cooperative-sticky", "org.apache.kafka.clients.consumer.CooperativeStickyAssignor"],
                        AssignmentStrategy::CooperativeSticky,
                    ),
                ],
            )?,
            request_timeout_ms: r.uint("request.timeout.ms", d.request_timeout_ms, 1, 3_600_000)?,
            retry_backoff_ms: r.uint("retry.backoff.ms", d.retry_backoff_ms, 0, 3_600_000)?,
            default_api_timeout_ms: r.uint("default.api.timeout.ms", d.default_api_timeout_ms, 1, 86_400_000)?,
            connection: ConnectionConfig::read(r)?,
        })
    }
}

/// Broker (cluster-wide) configuration.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BrokerConfig {
    /// `group.initial.rebalance.delay.ms`: how long the coordinator waits for more members before
    /// the first rebalance of an empty group.
    pub group_initial_rebalance_delay_ms: u64,
    /// `min.insync.replicas` (the topic default).
    pub min_insync_replicas: u32,
    /// `unclean.leader.election.enable`.
    pub unclean_leader_election_enable: bool,
    /// `replica.lag.time.max.ms`.
    pub replica_lag_time_max_ms: u64,
    /// `group.min.session.timeout.ms`: the lowest `session.timeout.ms` the coordinator accepts.
    pub group_min_session_timeout_ms: u64,
    /// `group.max.session.timeout.ms`: the highest `session.timeout.ms` the coordinator accepts.
    pub group_max_session_timeout_ms: u64,
    /// `broker.session.timeout.ms` (KRaft): how long the controller waits for a silent broker
    /// before fencing it and moving its leaderships.
    pub broker_session_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms` (KRaft): how often a broker heartbeats to the controller.
    pub broker_heartbeat_interval_ms: u64,
    /// `offsets.topic.num.partitions`: the partitions of `__consumer_offsets`; a group's
    /// coordinator is the leader of partition `abs(groupId.hashCode()) % this`.
    pub offsets_topic_num_partitions: u32,
    /// `offsets.topic.replication.factor` (capped at the number of brokers).
    pub offsets_topic_replication_factor: u32,
    /// `replica.fetch.wait.max.ms`: how long a follower's fetch waits at the leader for data.
    pub replica_fetch_wait_max_ms: u64,
    /// `replica.socket.timeout.ms`: a follower gives up on a fetch that got no answer.
    pub replica_socket_timeout_ms: u64,
    /// `log.flush.interval.ms`: how often a broker forces its log to disk. Kafka leaves it unset
    /// (the OS writes dirty pages back); evsim then takes the OS's writeback interval, 5000 ms
    /// (Linux `vm.dirty_writeback_centisecs`). What was not written back is lost when the
    /// broker's machine dies.
    pub log_flush_interval_ms: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            group_initial_rebalance_delay_ms: 3_000,
            min_insync_replicas: 1,
            unclean_leader_election_enable: false,
            replica_lag_time_max_ms: 30_000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            broker_session_timeout_ms: 9_000,
            broker_heartbeat_interval_ms: 2_000,
            offsets_topic_num_partitions: 50,
            offsets_topic_replication_factor: 3,
            replica_fetch_wait_max_ms: 500,
            replica_socket_timeout_ms: 30_000,
            log_flush_interval_ms: 5_000,
        }
    }
}

impl BrokerConfig {
    pub(crate) fn read(r: &mut PropReader<'_>) -> Result<Self, ScenarioError> {
        let d = Self::default();
        Ok(Self {
            group_initial_rebalance_delay_ms: r.uint(
                "group.initial.rebalance.delay.ms",
                d.group_initial_rebalance_delay_ms,
                0,
                3_600_000,
            )?,
            min_insync_replicas: r.int("min.insync.replicas", d.min_insync_replicas as i64, 1, 1_000)? as u32,
            unclean_leader_election_enable: r
                .bool("unclean.leader.election.enable", d.unclean_leader_election_enable)?,
            replica_lag_time_max_ms: r.uint("replica.lag.time.max.ms", d.replica_lag_time_max_ms, 1, 3_600_000)?,
            group_min_session_timeout_ms: r.uint(
                "group.min.session.timeout.ms",
                d.group_min_session_timeout_ms,
                1,
                86_400_000,
            )?,
            group_max_session_timeout_ms: r.uint(
                "group.max.session.timeout.ms",
                d.group_max_session_timeout_ms,
                1,
                86_400_000,
            )?,
            broker_session_timeout_ms: r.uint(
                "broker.session.timeout.ms",
                d.broker_session_timeout_ms,
                1,
                3_600_000,
            )?,
            broker_heartbeat_interval_ms: r.uint(
                "broker.heartbeat.interval.ms",
                d.broker_heartbeat_interval_ms,
                1,
                3_600_000,
            )?,
            offsets_topic_num_partitions: r.int(
                "offsets.topic.num.partitions",
                d.offsets_topic_num_partitions as i64,
                1,
                10_000,
            )? as u32,
            offsets_topic_replication_factor: r.int(
                "offsets.topic.replication.factor",
                d.offsets_topic_replication_factor as i64,
                1,
                1_000,
            )? as u32,
            replica_fetch_wait_max_ms: r.uint(
                "replica.fetch.wait.max.ms",
                d.replica_fetch_wait_max_ms,
                1,
                3_600_000,
            )?,
            replica_socket_timeout_ms: r.uint(
                "replica.socket.timeout.ms",
                d.replica_socket_timeout_ms,
                1,
                3_600_000,
            )?,
            log_flush_interval_ms: r.uint("log.flush.interval.ms", d.log_flush_interval_ms, 1, 86_400_000)?,
        })
    }
}
