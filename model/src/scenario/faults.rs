//! Faults: what can go wrong in a run, when, and to whom.
//!
//! A scenario lists faults as a schedule (`[[faults]]` tables with `at_ms`, `for_ms` and a
//! target) or asks for them to be drawn from the seed (`[swarm]`: the kinds, how many and their
//! rates are themselves drawn per run). Both end up as a list of [`FaultSpec`]: the simulator
//! only ever runs a schedule.

use serde::{Deserialize, Serialize};

/// The kinds of fault evsim can inject (`kind = "..."` of a `[[faults]]` table).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FaultKind {
    /// `broker-crash`: the broker process dies (its unflushed log tail is lost) and, after
    /// `for_ms`, restarts and catches up as a follower.
    BrokerCrash,
    /// `service-crash`: a service instance dies (memory lost, the DB keeps what it committed)
    /// and restarts after `for_ms`.
    ServiceCrash,
    /// `consumer-crash`: a consumer instance dies (memory lost) and restarts after `for_ms`,
    /// joining its group again.
    ConsumerCrash,
    /// `consumer-pause`: a consumer process stops for `for_ms` (a long GC pause): no heartbeats,
    /// no processing; afterwards it carries on as if nothing happened.
    ConsumerPause,
    /// `network-partition`: messages between `target` and `peer` (or every other node) are
    /// dropped, one way or both, for `for_ms`.
    NetworkPartition,
    /// `network-loss`: each message between `target` and `peer` is dropped with probability
    /// `rate`, for `for_ms`.
    NetworkLoss,
    /// `network-delay`: each message between `target` and `peer` takes `delay_ms` longer, for
    /// `for_ms`.
    NetworkDelay,
    /// `db-unavailable`: every database transaction fails for `for_ms`.
    DbUnavailable,
    /// `platform-outage`: the external system a consumer group calls is down for `for_ms`.
    PlatformOutage,
    // Last: a kind's place in this list is its number in the history hash.
    /// `broker-pause`: the broker process stops for `for_ms` (SIGSTOP, a long GC pause): its
    /// machine's TCP stack still accepts connections and acknowledges bytes, but the broker
    /// answers nothing, heartbeats to nobody and replicates nothing; afterwards it handles what
    /// queued up, as the controller's decisions of meanwhile (it was fenced) say.
    BrokerPause,
}

impl FaultKind {
    pub const ALL: [FaultKind; 10] = [
        FaultKind::BrokerCrash,
        FaultKind::ServiceCrash,
        FaultKind::ConsumerCrash,
        FaultKind::ConsumerPause,
        FaultKind::NetworkPartition,
        FaultKind::NetworkLoss,
        FaultKind::NetworkDelay,
        FaultKind::DbUnavailable,
        FaultKind::PlatformOutage,
        FaultKind::BrokerPause,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::BrokerCrash => "broker-crash",
            FaultKind::BrokerPause => "broker-pause",
            FaultKind::ServiceCrash => "service-crash",
            FaultKind::ConsumerCrash => "consumer-crash",
            FaultKind::ConsumerPause => "consumer-pause",
            FaultKind::NetworkPartition => "network-partition",
            FaultKind::NetworkLoss => "network-loss",
            FaultKind::NetworkDelay => "network-delay",
            FaultKind::DbUnavailable => "db-unavailable",
            FaultKind::PlatformOutage => "platform-outage",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// What `target` names for this kind.
    pub fn target_form(self) -> &'static str {
        match self {
            FaultKind::BrokerCrash | FaultKind::BrokerPause => "a broker such as \"broker-0\"",
            FaultKind::ServiceCrash => "a service instance such as \"order-service-0\"",
            FaultKind::ConsumerCrash | FaultKind::ConsumerPause => {
                "a consumer instance such as \"order-event-consumer-0\""
            }
            FaultKind::NetworkPartition | FaultKind::NetworkLoss | FaultKind::NetworkDelay => {
                "a broker, service instance or consumer instance such as \"broker-0\" or \"order-service-0\""
            }
            FaultKind::DbUnavailable => "nothing (the database is the target; leave `target` out)",
            FaultKind::PlatformOutage => "a consumer table such as \"payment-event-consumer\"",
        }
    }

    pub fn is_network(self) -> bool {
        matches!(self, FaultKind::NetworkPartition | FaultKind::NetworkLoss | FaultKind::NetworkDelay)
    }
}

/// Which way a network fault acts (`direction = "..."`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    /// `both`: messages from target to peer and from peer to target.
    Both,
    /// `outbound`: only messages the target sends (its requests, or its responses if it is a
    /// broker).
    Outbound,
    /// `inbound`: only messages the target receives.
    Inbound,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Both => "both",
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

/// One scheduled fault.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FaultSpec {
    pub kind: FaultKind,
    /// When it starts, from the start of the run.
    pub at_ms: u64,
    /// How long it lasts; a crashed process restarts after it. `None`: until the end of the run
    /// (a crashed process never comes back).
    pub for_ms: Option<u64>,
    /// The node (or, for `platform-outage`, the consumer table) it hits; `None` for the DB.
    pub target: Option<String>,
    /// Network faults: the other side; `None` means every other node.
    pub peer: Option<String>,
    pub direction: Direction,
    /// `network-loss`: the probability that one message is dropped.
    pub rate: f64,
    /// `network-delay`: the extra one-way latency.
    pub delay_ms: u64,
}

impl FaultSpec {
    /// A one-line description: `broker-crash broker-0 at 3000 ms for 5000 ms`.
    pub fn describe(&self) -> String {
        let mut s = self.kind.name().to_string();
        if let Some(t) = &self.target {
            s.push(' ');
            s.push_str(t);
        }
        if self.kind.is_network() {
            s.push_str(match self.direction {
                Direction::Both => " <->",
                Direction::Outbound => " ->",
                Direction::Inbound => " <-",
            });
            s.push(' ');
            s.push_str(self.peer.as_deref().unwrap_or("all"));
        }
        if self.kind == FaultKind::NetworkLoss {
            s.push_str(&format!(" (loss {})", self.rate));
        }
        if self.kind == FaultKind::NetworkDelay {
            s.push_str(&format!(" (+{} ms)", self.delay_ms));
        }
        s.push_str(&format!(" at {} ms", self.at_ms));
        match self.for_ms {
            Some(d) => s.push_str(&format!(" for {d} ms")),
            None => s.push_str(" until the end"),
        }
        s
    }
}

/// `[swarm]`: faults drawn from the seed. Each run draws how many faults it gets (up to
/// `max_faults`), which of `kinds` each is, its target, start, length and rate.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SwarmSpec {
    pub kinds: Vec<FaultKind>,
    pub max_faults: u32,
    /// Longest fault.
    pub max_for_ms: u64,
    /// Highest loss rate a `network-loss` fault draws.
    pub max_loss_rate: f64,
    /// The targets faults may hit (names as `target` takes them); empty: every target a kind
    /// can hit. `["broker-0", "broker-1", "broker-2"]` keeps a search to what Apache Kafka's
    /// harness can perform (network faults of clients are not).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
}

/// `[check]`: what `evsim check` is to know about the design before it searches.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CheckSpec {
    /// Counterexamples the design is known to have (`[[check.expected]]`), each with the real
    /// Kafka behaviour behind it: a case whose only violations these cover is reported as
    /// expected, and the search goes on.
    pub expected: Vec<Expected>,
}

/// A known counterexample: the `invariants` fail in cases that have a fault of one of `faults`
/// (any fault, if empty) and, if given, where `condition` holds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Expected {
    pub invariants: Vec<crate::checkers::Invariant>,
    pub faults: Vec<FaultKind>,
    pub condition: Option<Condition>,
    /// The Kafka behaviour behind it, in words.
    pub why: String,
}

/// A fact about a run that an expected counterexample can require.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Condition {
    /// `unflushed-last-replica`: a partition's last in-sync replica came back from a machine
    /// crash without the records it had not flushed, and led the partition again. Kafka does
    /// not fsync each write, and without eligible leader replicas (KIP-966, off here) the last
    /// replica standing leads with what it recovered: acknowledged records are gone.
    UnflushedLastReplica,
}

impl Condition {
    pub const ALL: [Condition; 1] = [Condition::UnflushedLastReplica];

    pub fn name(self) -> &'static str {
        match self {
            Condition::UnflushedLastReplica => "unflushed-last-replica",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}
