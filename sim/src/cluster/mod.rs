//! The simulated Kafka cluster: partition logs on brokers, producers, the group coordinator and
//! consumers, following `KAFKA-SEMANTICS.md`.
//!
//! The protocol between clients and brokers is a set of request and response messages ([`Msg`])
//! that travel over the simulated network, so latency, ordering per connection and (later) loss
//! and partitions shape what clients observe, as on a real network.

pub mod assignor;
pub mod broker;
pub mod consumer;
pub mod controller;
pub mod coordinator;
pub mod partitioner;
pub mod producer;
pub mod replication;

use evsim_model::event::Message;
use evsim_model::history::{ErrorCode, Tp};
use evsim_model::scenario::Acks;

/// The broker that leads partition number `global` (the partitions of every topic counted in
/// scenario order) when a run starts: replicas are placed round-robin over the brokers, as
/// Kafka's replica placement starts, and the first one (the preferred leader) leads.
pub fn preferred_leader(global: usize, brokers: u32) -> u16 {
    (global % brokers.max(1) as usize) as u16
}

/// Java's `String.hashCode()`: `s[0]*31^(n-1) + ... + s[n-1]` over UTF-16 code units, in
/// wrapping 32-bit arithmetic.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The `__consumer_offsets` partition that holds `group_id`'s offsets and whose leader is its
/// coordinator: `Utils.abs(groupId.hashCode()) % offsets.topic.num.partitions`, as Kafka's
/// group coordinator computes it (`Utils.abs` maps `i32::MIN` to 0).
pub fn offsets_partition(group_id: &str, offsets_partitions: u32) -> u32 {
    let h = java_string_hash(group_id);
    let abs = if h == i32::MIN { 0 } else { h.unsigned_abs() };
    abs % offsets_partitions.max(1)
}

/// The brokers holding a replica of `__consumer_offsets` partition `p`, in assignment order (the
/// first is its preferred leader): `offsets.topic.replication.factor` of them (at most every
/// broker), placed round-robin as the other topics' replicas are.
pub fn offsets_replicas(p: u32, brokers: u32, replication_factor: u32) -> Vec<u16> {
    let n = brokers.max(1);
    (0..replication_factor.clamp(1, n)).map(|k| ((p + k) % n) as u16).collect()
}

/// The broker that coordinates `group_id` when every broker is up: the preferred leader of its
/// `__consumer_offsets` partition.
pub fn coordinator_of(group_id: &str, brokers: u32, offsets_topic_partitions: u32) -> u16 {
    offsets_replicas(offsets_partition(group_id, offsets_topic_partitions), brokers, 1)[0]
}

/// The bytes one record is taken to occupy in a batch or a fetch (key, a small JSON value and
/// the record overhead). `batch.size` and `max.partition.fetch.bytes` are counted in these.
pub const RECORD_BYTES: u64 = 100;

/// A ProduceRequest: one batch per partition, to the partitions' leader.
#[derive(Debug)]
pub struct ProduceRequest {
    pub producer: u16,
    pub broker: u16,
    pub request: u64,
    pub acks: Acks,
    /// The idempotent producer's (producer id, epoch); `None` without idempotence.
    pub producer_id: Option<(u32, u16)>,
    pub batches: Vec<ProduceBatch>,
}

/// One partition's batch of a ProduceRequest.
#[derive(Debug)]
pub struct ProduceBatch {
    /// Global partition index.
    pub partition: usize,
    /// The idempotent producer's sequence number of the first record (0 without idempotence).
    pub base_seq: u32,
    pub records: Vec<Message>,
}

/// A ProduceResponse: per partition, the base offset written or the error.
#[derive(Debug)]
pub struct ProduceResponse {
    pub producer: u16,
    pub request: u64,
    pub results: Vec<(usize, Result<u64, ErrorCode>)>,
}

/// A FetchRequest: the partitions a consumer wants from one broker, and from which offset.
#[derive(Debug)]
pub struct FetchRequest {
    pub consumer: u16,
    pub broker: u16,
    pub fetch: u64,
    /// (global partition index, fetch offset).
    pub partitions: Vec<(usize, u64)>,
    pub max_records_per_partition: u64,
    pub max_wait_us: u64,
}

/// A FetchResponse: records per partition, starting at the requested offset.
#[derive(Debug)]
pub struct FetchResponse {
    pub consumer: u16,
    pub broker: u16,
    pub fetch: u64,
    /// (topic partition, first offset, how many of `records`), in order. A count of
    /// [`OUT_OF_RANGE`] marks a partition whose fetch offset is beyond the leader's log end
    /// (OFFSET_OUT_OF_RANGE: the log was truncated under the consumer, by an unclean election or
    /// a lost unflushed tail); it carries no records.
    pub ranges: Vec<(Tp, u64, usize)>,
    /// The records of every range, back to back.
    pub records: Vec<Message>,
}

/// The record count of a fetch range that stands for OFFSET_OUT_OF_RANGE (kept in `ranges` so
/// that the message, and so every queued event, stays small).
pub const OUT_OF_RANGE: usize = usize::MAX;

/// A follower's fetch from a partition leader (one replica fetcher per follower and leader).
#[derive(Debug)]
pub struct ReplicaFetchRequest {
    pub follower: u16,
    pub leader: u16,
    pub fetch: u64,
    /// (global partition index, the follower's log end offset).
    pub partitions: Vec<(usize, u64)>,
}

/// The leader's answer: per partition, the leader epoch it answered in, and the log end the
/// follower may copy up to (the records themselves are the leader's log prefix).
#[derive(Debug)]
pub struct ReplicaFetchResponse {
    pub follower: u16,
    pub leader: u16,
    pub fetch: u64,
    /// (global partition index, leader epoch, fetch offset, new log end).
    pub partitions: Vec<(usize, u32, u64, u64)>,
}

/// Recycled buffers for the messages that flow once per request (the simulator's hot path
/// allocates nothing per record in steady state).
#[derive(Debug, Default)]
pub struct Pools {
    pub fetch_partitions: Vec<Vec<(usize, u64)>>,
    pub ranges: Vec<Vec<(Tp, u64, usize)>>,
    pub records: Vec<Vec<Message>>,
    pub produce_batches: Vec<Vec<ProduceBatch>>,
    pub produce_requests: Vec<ProduceRequest>,
    pub results: Vec<Vec<(usize, Result<u64, ErrorCode>)>>,
    /// Scratch: the partitions a produce request wrote to.
    pub touched: Vec<usize>,
}

/// Requests to the group coordinator.
#[derive(Debug)]
pub enum CoordinatorRequest {
    JoinGroup {
        group: u16,
        consumer: u16,
        member_id: Option<String>,
        owned: Vec<Tp>,
        generation: i32,
    },
    SyncGroup {
        group: u16,
        consumer: u16,
        member_id: String,
        generation: i32,
        /// Only the leader sends assignments.
        assignments: Option<Vec<(String, Vec<Tp>)>>,
    },
    Heartbeat {
        group: u16,
        consumer: u16,
        member_id: String,
        generation: i32,
    },
    LeaveGroup {
        group: u16,
        member_id: String,
    },
    OffsetCommit {
        group: u16,
        consumer: u16,
        member_id: String,
        generation: i32,
        offsets: Vec<(Tp, u64)>,
        /// Which of the consumer's commits this is (to route the response).
        commit: u64,
    },
    OffsetFetch {
        group: u16,
        consumer: u16,
        partitions: Vec<Tp>,
        generation: i32,
    },
}

/// A member as the coordinator describes it to the group leader.
#[derive(Clone, Debug)]
pub struct MemberMetadata {
    pub member_id: String,
    pub owned: Vec<Tp>,
    pub generation: i32,
}

/// Responses from the group coordinator.
#[derive(Debug)]
pub enum CoordinatorResponse {
    JoinGroup { consumer: u16, result: Result<JoinResult, ErrorCode> },
    SyncGroup { consumer: u16, generation: i32, result: Result<Vec<Tp>, ErrorCode> },
    Heartbeat { consumer: u16, generation: i32, error: Option<ErrorCode> },
    OffsetCommit { consumer: u16, commit: u64, generation: i32, offsets: Vec<(Tp, u64)>, error: Option<ErrorCode> },
    OffsetFetch { consumer: u16, generation: i32, offsets: Result<Vec<(Tp, Option<u64>)>, ErrorCode> },
}

/// A successful JoinGroup.
#[derive(Debug)]
pub struct JoinResult {
    pub member_id: String,
    pub generation: i32,
    /// The members' metadata, for the leader only.
    pub members: Option<Vec<MemberMetadata>>,
}

/// A network message.
#[derive(Debug)]
pub enum Msg {
    Produce(ProduceRequest),
    ProduceResponse(ProduceResponse),
    Fetch(FetchRequest),
    FetchResponse(FetchResponse),
    /// A request to the broker the consumer takes for its group's coordinator.
    ToCoordinator {
        broker: u16,
        req: CoordinatorRequest,
    },
    /// The answer of broker `broker` to a coordinator request.
    FromCoordinator {
        broker: u16,
        resp: CoordinatorResponse,
    },
    ReplicaFetch(ReplicaFetchRequest),
    ReplicaFetchResponse(ReplicaFetchResponse),
    /// A consumer asks `broker` which broker coordinates its group.
    FindCoordinator {
        consumer: u16,
        broker: u16,
    },
    /// The answer: the coordinator, or `None` (COORDINATOR_NOT_AVAILABLE).
    FindCoordinatorResponse {
        consumer: u16,
        broker: u16,
        coordinator: Option<u16>,
    },
    /// A broker's heartbeat to the KRaft controller (`broker.heartbeat.interval.ms`);
    /// `incarnation` tells a heartbeat of an earlier life of the broker from the current one.
    BrokerHeartbeat {
        broker: u16,
        incarnation: u32,
        seq: u32,
    },
    /// The controller's answer to heartbeat `seq`.
    BrokerHeartbeatResponse {
        broker: u16,
        seq: u32,
    },
}

/// A small ordered map from partition to offset: a sorted vector, because a consumer owns a
/// handful of partitions and looks them up on every fetch and poll.
#[derive(Clone, Debug, Default)]
pub struct TpMap(Vec<(Tp, u64)>);

impl TpMap {
    fn find(&self, tp: &Tp) -> Result<usize, usize> {
        self.0.binary_search_by(|(t, _)| t.cmp(tp))
    }
    pub fn get(&self, tp: &Tp) -> Option<&u64> {
        self.find(tp).ok().map(|i| &self.0[i].1)
    }
    pub fn get_mut(&mut self, tp: &Tp) -> Option<&mut u64> {
        self.find(tp).ok().map(|i| &mut self.0[i].1)
    }
    pub fn contains_key(&self, tp: &Tp) -> bool {
        self.find(tp).is_ok()
    }
    pub fn insert(&mut self, tp: Tp, offset: u64) {
        match self.find(&tp) {
            Ok(i) => self.0[i].1 = offset,
            Err(i) => self.0.insert(i, (tp, offset)),
        }
    }
    pub fn remove(&mut self, tp: &Tp) {
        if let Ok(i) = self.find(tp) {
            self.0.remove(i);
        }
    }
    pub fn clear(&mut self) {
        self.0.clear();
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Entries in partition order.
    pub fn iter(&self) -> impl Iterator<Item = (&Tp, &u64)> {
        self.0.iter().map(|(t, o)| (t, o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coordinator_partition_is_javas() {
        // Values printed by Java 17: `s.hashCode()`.
        assert_eq!(java_string_hash("hhplus-ecommerce-group"), 1_089_910_655);
        assert_eq!(java_string_hash("order-event-consumer"), -1_890_926_040);
        assert_eq!(java_string_hash("결제-그룹"), -595_052_030);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(offsets_partition("hhplus-ecommerce-group", 50), 5);
        assert_eq!(offsets_partition("order-event-consumer", 50), 40);
        // Kafka's `Utils.abs` maps i32::MIN to 0 (Math.abs would stay negative).
        assert_eq!(offsets_partition("polygenelubricants", 50), 0);
    }

    #[test]
    fn offsets_replicas_are_placed_round_robin_and_capped_at_the_brokers() {
        assert_eq!(offsets_replicas(40, 3, 3), vec![1, 2, 0]);
        assert_eq!(offsets_replicas(5, 1, 3), vec![0]);
        assert_eq!(offsets_replicas(7, 5, 2), vec![2, 3]);
        assert_eq!(coordinator_of("order-event-consumer", 3, 50), 1);
    }
}
