//! The broker a real run talks to, behind one interface: a tansu process the harness starts and
//! stops, librdkafka's in-process mock cluster, or an external Kafka the user runs.
//!
//! The harness owns the broker's life: it starts it on loopback, creates the scenario's topics
//! (tansu does not auto-create them), waits until it answers metadata requests, performs the
//! infrastructure faults the target can do, and stops it after the run.

use crate::RealError;
use evsim_model::scenario::Scenario;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which broker a real run uses (`evsim real --broker`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BrokerKind {
    /// A tansu process (a Kafka-compatible broker in Rust) with SQLite storage.
    Tansu,
    /// librdkafka's mock cluster, in process.
    Mock,
    /// A Kafka the user runs, at `--bootstrap`.
    External,
}

impl BrokerKind {
    pub fn name(self) -> &'static str {
        match self {
            BrokerKind::Tansu => "tansu",
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
    /// `tansu`: the loopback port to listen on (a free one when `None`).
    pub port: Option<u16>,
    /// `tansu`: the executable (found on `PATH` or in `~/.cargo/bin` when `None`).
    pub tansu: Option<PathBuf>,
}

impl BrokerOptions {
    pub fn new(kind: BrokerKind) -> Self {
        Self { kind, bootstrap: None, port: None, tansu: None }
    }
}

/// The command that installs tansu, as errors and docs quote it.
pub const TANSU_INSTALL: &str = "cargo install tansu --version 0.6.0 --locked --features dynostore,libsql";

/// A tansu broker process.
struct Tansu {
    exe: PathBuf,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Tansu {
    /// The SQLite storage, relative to the process's working directory (the harness's own
    /// directory): tansu 0.6 reads a `sqlite://` URL's path as relative.
    fn storage_url(&self) -> &'static str {
        "sqlite://tansu.db"
    }

    fn spawn(&mut self) -> Result<(), RealError> {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        // Appended to across restarts: the watchdog reads on from where it was.
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("tansu.log")).map_err(|e| {
                RealError::Environment(format!("cannot write tansu's log in {}: {e}", self.dir.display()))
            })?;
        let child = Command::new(&self.exe)
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", self.storage_url()])
            .current_dir(&self.dir)
            .args(["--cluster-id", "evsim"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| RealError::Environment(e.to_string()))?)
            .stderr(log)
            .spawn()
            .map_err(|e| RealError::Environment(format!("cannot start {}: {e}", self.exe.display())))?;
        self.child = Some(child);
        Ok(())
    }

    /// Whether the process has exited (and, if so, the tail of its log).
    fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                let log = std::fs::read_to_string(self.dir.join("tansu.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(8).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                Some(format!("tansu exited ({status}); its log ends:\n{}", tail.join("\n")))
            }
            _ => None,
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn signal(&self, sig: &str) -> Result<(), String> {
        let child = self.child.as_ref().ok_or("tansu is not running")?;
        let ok = Command::new("kill")
            .args([sig, &child.id().to_string()])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success());
        if matches!(ok, Ok(true)) { Ok(()) } else { Err(format!("kill {sig} failed")) }
    }
}

enum Inner {
    Tansu(Tansu),
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
            BrokerKind::Tansu => {
                let exe = find_tansu(options.tansu.as_deref())?;
                let port = match options.port {
                    Some(p) => {
                        std::net::TcpListener::bind(("127.0.0.1", p)).map_err(|e| {
                            RealError::Environment(format!(
                                "port {p} on 127.0.0.1 is in use ({e}); pass another --port, or none for a free one"
                            ))
                        })?;
                        p
                    }
                    None => free_port()?,
                };
                let dir = std::env::temp_dir().join(format!("evsim-tansu-{}-{port}", std::process::id()));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| RealError::Environment(format!("cannot create {}: {e}", dir.display())))?;
                let mut t = Tansu { exe, port, dir, child: None };
                t.spawn()?;
                if scenario.brokers > 1 || scenario.topics.iter().any(|t| t.replication_factor > 1) {
                    notes.push(format!(
                        "tansu is one broker: the scenario's {} brokers and replication are not reproduced",
                        scenario.brokers
                    ));
                }
                (format!("127.0.0.1:{port}"), Inner::Tansu(t))
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
        h.wait_ready(Duration::from_secs(if options.kind == BrokerKind::Tansu { 30 } else { 10 }))?;
        h.create_topics(scenario).await?;
        Ok(h)
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The broker's log, when evsim started the broker (tansu).
    pub fn log_path(&self) -> Option<PathBuf> {
        match &self.inner {
            Inner::Tansu(t) => Some(t.dir.join("tansu.log")),
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
            if let Inner::Tansu(t) = &mut self.inner
                && let Some(why) = t.exited()
            {
                return Err(RealError::Environment(why));
            }
            match consumer.fetch_metadata(None, Duration::from_millis(1_000)) {
                Ok(md) if !md.brokers().is_empty() => return Ok(()),
                _ if started.elapsed() > limit => {
                    return Err(RealError::Environment(format!(
                        "no Kafka broker answered at {} within {} s",
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
        let single = self.kind == BrokerKind::Tansu;
        let topics: Vec<NewTopic> = scenario
            .topics
            .iter()
            .map(|t| {
                let rf = if single { 1 } else { t.replication_factor as i32 };
                NewTopic::new(&t.name, t.partitions as i32, TopicReplication::Fixed(rf))
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
        match &mut self.inner {
            Inner::Tansu(t) if broker == 0 => {
                t.kill();
                Ok("killed the tansu process".to_string())
            }
            Inner::Tansu(_) => Err("tansu runs one broker (broker-0)".to_string()),
            Inner::Mock(c) => c
                .broker_down(broker as i32 + 1)
                .map(|()| format!("mock broker {} down", broker + 1))
                .map_err(|e| e.to_string()),
            Inner::External => Err("an external broker is not evsim's to stop".to_string()),
        }
    }

    /// Restart broker `broker` after [`Harness::broker_down`].
    pub fn broker_up(&mut self, broker: u32) -> Result<String, String> {
        match &mut self.inner {
            Inner::Tansu(t) if broker == 0 => {
                t.spawn().map_err(|e| e.to_string())?;
                Ok("restarted tansu on the same SQLite storage".to_string())
            }
            Inner::Tansu(_) => Err("tansu runs one broker (broker-0)".to_string()),
            Inner::Mock(c) => c
                .broker_up(broker as i32 + 1)
                .map(|()| format!("mock broker {} up", broker + 1))
                .map_err(|e| e.to_string()),
            Inner::External => Err("an external broker is not evsim's to restart".to_string()),
        }
    }

    /// Make broker `broker` unreachable without losing anything (a network partition around it):
    /// tansu is stopped with SIGSTOP (its connections stay open and silent, as behind a cut
    /// link); a mock broker goes down.
    pub fn isolate(&mut self, broker: u32, on: bool) -> Result<String, String> {
        match &mut self.inner {
            Inner::Tansu(t) if broker == 0 => {
                t.signal(if on { "-STOP" } else { "-CONT" })?;
                Ok(if on { "stopped tansu (SIGSTOP)" } else { "resumed tansu (SIGCONT)" }.to_string())
            }
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

    /// Stop the broker and remove what the harness created.
    pub fn stop(&mut self) {
        if let Inner::Tansu(t) = &mut self.inner {
            let _ = t.signal("-CONT");
            t.kill();
            let _ = std::fs::remove_dir_all(&t.dir);
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether the broker whose log is `log` failed inside (tansu's storage task panics on some
/// inputs and then answers every request with an error): the panic's place and message.
/// `seen` is how far the log was read before; only what was appended since is read.
pub fn broker_failure(log: &Path, seen: &mut u64) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(log).ok()?;
    let len = f.metadata().ok()?.len();
    if len < *seen {
        *seen = 0; // a new log
    }
    f.seek(SeekFrom::Start(*seen)).ok()?;
    let mut bytes = Vec::new();
    f.take(len - *seen).read_to_end(&mut bytes).ok()?;
    // Only whole lines: the rest is read next time.
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    *seen += whole as u64;
    let text = String::from_utf8_lossy(&bytes[..whole]);
    let at = text.find("panicked at")?;
    let lines: Vec<&str> = text[at..].lines().take(2).collect();
    Some(lines.join(": "))
}

/// The tansu executable: `explicit`, else `$EVSIM_TANSU`, else `tansu` on `PATH`, else
/// `~/.cargo/bin/tansu`.
pub fn find_tansu(explicit: Option<&Path>) -> Result<PathBuf, RealError> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = explicit {
        candidates.push(p.to_path_buf());
    } else {
        if let Some(p) = std::env::var_os("EVSIM_TANSU") {
            candidates.push(PathBuf::from(p));
        }
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path).map(|d| d.join("tansu")));
        }
        if let Some(home) = std::env::var_os("HOME") {
            candidates.push(PathBuf::from(home).join(".cargo/bin/tansu"));
        }
    }
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        RealError::Environment(format!(
            "tansu not found{}; install it with `{TANSU_INSTALL}` (about 10 minutes), or pass --tansu PATH",
            explicit.map(|p| format!(" at {}", p.display())).unwrap_or_default()
        ))
    })
}

fn free_port() -> Result<u16, RealError> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| RealError::Environment(format!("cannot find a free loopback port: {e}")))?;
    l.local_addr().map(|a| a.port()).map_err(|e| RealError::Environment(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_the_brokers_log_is_found_once_and_only_in_new_lines() {
        let dir = std::env::temp_dir().join(format!("evsim-harness-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("tansu.log");
        std::fs::write(&log, "ready in 37ms\n").unwrap();
        let mut seen = 0;
        assert_eq!(broker_failure(&log, &mut seen), None);
        assert_eq!(seen, 14);
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        use std::io::Write;
        write!(f, "\nthread 'w' panicked at src/lite.rs:503:13:\nmore or less than one row\nstack").unwrap();
        let found = broker_failure(&log, &mut seen).unwrap();
        assert_eq!(found, "panicked at src/lite.rs:503:13:: more or less than one row");
        // A restart writes a new, shorter log: read from its start.
        std::fs::write(&log, "ok\n").unwrap();
        assert_eq!(broker_failure(&log, &mut seen), None);
        assert_eq!(seen, 3);
        std::fs::remove_dir_all(&dir).ok();
    }
}
