//! evsim's real Kafka backend: the very services of `evsim-model` on tokio, with rdkafka
//! (bundled librdkafka) doing the I/O against a real broker, recording the same history type and
//! judged by the same checkers as a simulated run.
//!
//! - [`harness`]: the broker (Apache Kafka started by [`kafka`] in [`netns`] namespaces,
//!   librdkafka's mock cluster, or an external Kafka).
//! - `driver`: the services, the workload and the run.
//! - `producer`: the services' `FutureProducer`s and their delivery reports.
//! - `consumer`: the listener containers on `StreamConsumer`.
//! - `faults`: the scenario's faults, performed where the target can.
//! - [`diff`]: what a simulated and a real run of one scenario must agree on.

mod consumer;
pub mod diff;
mod driver;
pub mod faults;
pub mod harness;
pub mod kafka;
pub mod netns;
mod producer;

pub use driver::run_real;
pub use faults::RealFault;
pub use harness::{BrokerKind, BrokerOptions, KafkaNet};

use evsim_model::checkers::Invariant;
use evsim_model::history::History;
use evsim_model::scenario::Scenario;
use evsim_sim::{Stats, Verdict};
use std::time::Duration;

/// What the real targets cannot reproduce of `scenario` as written (empty: everything). A real
/// run goes ahead and says so in its notes; the differential tests leave such scenarios out.
pub fn unsupported(scenario: &Scenario) -> Vec<String> {
    let mut out = Vec::new();
    for c in &scenario.consumers {
        let k = &c.consumer;
        if k.max_poll_interval_ms < k.session_timeout_ms {
            out.push(format!(
                "{}: librdkafka requires max.poll.interval.ms >= session.timeout.ms (the Java client does not), \
                 so it runs with max.poll.interval.ms = {} instead of {}",
                c.name, k.session_timeout_ms, k.max_poll_interval_ms
            ));
        }
    }
    let clients = scenario
        .services
        .iter()
        .map(|s| (&s.name, s.producer.connection))
        .chain(scenario.consumers.iter().map(|c| (&c.name, c.consumer.connection)));
    for (name, k) in clients {
        if k.setup_timeout_ms < LIBRDKAFKA_MIN_SETUP_TIMEOUT_MS {
            out.push(format!(
                "{name}: librdkafka's socket.connection.setup.timeout.ms is at least {LIBRDKAFKA_MIN_SETUP_TIMEOUT_MS}, \
                 so it runs with {LIBRDKAFKA_MIN_SETUP_TIMEOUT_MS} instead of {}",
                k.setup_timeout_ms
            ));
        }
    }
    out
}

/// `EVSIM_RDKAFKA_DEBUG=contexts` (librdkafka's `debug`, e.g. `eos,msg,broker`): librdkafka's
/// debug log on every client, through evsim's log (`EVSIM_LOG=rdkafka=debug` shows it).
pub(crate) fn set_debug(c: &mut rdkafka::ClientConfig) {
    if let Ok(contexts) = std::env::var("EVSIM_RDKAFKA_DEBUG") {
        c.set("debug", contexts).set("log_level", "7");
    }
}

/// The lowest `socket.connection.setup.timeout.ms` librdkafka accepts.
const LIBRDKAFKA_MIN_SETUP_TIMEOUT_MS: u64 = 1_000;

/// Why a real run could not happen: bad usage or an environment that cannot run it (exit 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RealError {
    Usage(String),
    Environment(String),
}

impl std::fmt::Display for RealError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RealError::Usage(m) | RealError::Environment(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for RealError {}

/// Everything a real run produced.
#[derive(Debug)]
pub struct RealOutcome {
    pub seed: u64,
    pub target: BrokerKind,
    pub history: History,
    pub stats: Stats,
    pub verdicts: Vec<Verdict>,
    /// Why the run proves nothing, if so.
    pub vacuous: Option<String>,
    pub faults: Vec<RealFault>,
    /// What the target does not reproduce, and anything else the report should say.
    pub notes: Vec<String>,
    /// Records librdkafka placed on another partition than the scenario's partitioner predicts.
    pub placement_mismatches: u64,
    /// Wall-clock time of the whole command: broker start, groups forming, the run, broker stop.
    pub wall_time: Duration,
    /// Wall-clock time of the run itself: from the workload's start until everything was
    /// consumed and committed (or the scenario's end).
    pub run_time: Duration,
}

impl RealOutcome {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn judge(
        scenario: &Scenario,
        seed: u64,
        target: BrokerKind,
        history: History,
        stats: Stats,
        faults: Vec<RealFault>,
        notes: Vec<String>,
        placement_mismatches: u64,
        wall_time: Duration,
        run_time: Duration,
    ) -> Self {
        let verdicts = Invariant::of(scenario)
            .into_iter()
            .map(|invariant| Verdict {
                invariant,
                claimed: scenario.run.invariants.contains(&invariant),
                violations: invariant.check(&history),
            })
            .collect();
        let vacuous = if stats.records_produced == 0 {
            Some("no record was produced".to_string())
        } else if stats.records_consumed == 0 {
            Some("no record was consumed".to_string())
        } else if let Some(why) =
            stats.workflow.as_ref().zip(scenario.workflow.as_ref()).and_then(|(w, wf)| w.outage_never_met(wf))
        {
            Some(why)
        } else if let Some(f) = faults.iter().find(|f| target == BrokerKind::Kafka && f.skipped.is_some()) {
            // Apache Kafka performs every fault (the others are refused before the run): one
            // that failed on the way is a run other than the scenario's.
            Some(format!("planned fault `{}` could not be performed: {}", f.fault, f.skipped.as_deref().unwrap_or("?")))
        } else {
            faults
                .iter()
                .find(|f| f.performed.is_some() && !f.fired)
                .map(|f| format!("planned fault `{}` had no effect", f.fault))
        };
        Self {
            seed,
            target,
            history,
            stats,
            verdicts,
            vacuous,
            faults,
            notes,
            placement_mismatches,
            wall_time,
            run_time,
        }
    }

    /// Held: every claimed invariant held and the run was not vacuous.
    pub fn passed(&self) -> bool {
        self.vacuous.is_none() && self.verdicts.iter().all(|v| !v.claimed || v.violations.is_empty())
    }

    /// Records acknowledged per second of the run.
    pub fn records_per_sec(&self) -> f64 {
        self.stats.records_produced as f64 / self.run_time.as_secs_f64().max(1e-9)
    }
}

/// A client's connection settings under librdkafka's names (the same as Java's): the scenario's
/// values, which default to the Java client's.
pub(crate) fn set_connection(c: &mut rdkafka::ClientConfig, k: &evsim_model::scenario::ConnectionConfig) {
    c.set("socket.connection.setup.timeout.ms", k.setup_timeout_ms.max(LIBRDKAFKA_MIN_SETUP_TIMEOUT_MS).to_string())
        .set("reconnect.backoff.ms", k.reconnect_backoff_ms.to_string())
        .set("reconnect.backoff.max.ms", k.reconnect_backoff_max_ms.to_string());
}
