//! Apache Kafka, started by the harness: one pinned release from Maven Central, in KRaft mode, as
//! a separate controller node (which faults never touch, as the simulator's controller) and the
//! scenario's brokers, each with fresh storage and its own log file.
//!
//! - **The jars** are resolved once with Maven from `real/kafka/pom.xml` into a cache directory
//!   (`$EVSIM_KAFKA_HOME`, else `$XDG_CACHE_HOME/evsim/kafka-<version>`, else
//!   `~/.cache/evsim/kafka-<version>`); later runs need no network.
//! - **Storage** is formatted with eligible leader replicas off
//!   (`eligible.leader.replicas.version=0`): KIP-966 is on by default for new 4.1 clusters and
//!   changes election and the high watermark, which the simulator does not model.
//! - **Processes**: each node is a JVM in its own process group that receives SIGKILL when evsim
//!   dies (`PR_SET_PDEATHSIG`), so that no broker outlives evsim, even one killed with SIGKILL.
//! - **Network**: as root with `ip(8)`, each node runs in its own network namespace on a bridge
//!   ([`crate::netns`]), where packet-level faults can act; otherwise every node listens on free
//!   loopback ports and network faults cannot be performed.

use crate::RealError;
use crate::netns::NetNs;
use evsim_model::scenario::{FaultSpec, Scenario};
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// The Apache Kafka release every real run uses.
pub const KAFKA_VERSION: &str = "4.1.1";
const POM: &str = include_str!("../kafka/pom.xml");
const LOG4J2: &str = include_str!("../kafka/log4j2.properties");
/// The controller's `node.id` (brokers are 0..n, as the scenario's `broker-N`).
pub const CONTROLLER_ID: u32 = 1_000;
/// The listeners' ports inside a node's own network namespace.
const NS_BROKER_PORT: u16 = 9092;
const NS_CONTROLLER_PORT: u16 = 9093;
/// The JVM's options: a small heap, the serial collector and the client compiler only (the
/// brokers carry a few thousand records a second; starting fast matters more on two cores).
const JVM_OPTS: [&str; 5] =
    ["-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true"];

/// Where the jars are cached.
pub fn kafka_home() -> Result<PathBuf, RealError> {
    if let Some(p) = std::env::var_os("EVSIM_KAFKA_HOME") {
        return Ok(PathBuf::from(p));
    }
    let base = match (std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME")) {
        (Some(x), _) if !x.is_empty() => PathBuf::from(x),
        (_, Some(h)) => PathBuf::from(h).join(".cache"),
        _ => {
            return Err(RealError::Environment(
                "cannot find a cache directory for Apache Kafka's jars: set HOME or EVSIM_KAFKA_HOME".into(),
            ));
        }
    };
    Ok(base.join("evsim").join(format!("kafka-{KAFKA_VERSION}")))
}

/// The directory of Apache Kafka's jars, resolved from Maven Central the first time.
pub fn ensure_jars() -> Result<PathBuf, RealError> {
    let home = kafka_home()?;
    let lib = home.join("lib");
    let complete = home.join("lib.complete");
    if complete.is_file() {
        return Ok(lib);
    }
    std::fs::create_dir_all(&home)
        .map_err(|e| RealError::Environment(format!("cannot create {}: {e}", home.display())))?;
    // One resolver at a time per machine; the others wait, then find the jars there.
    let lock = std::fs::File::create(home.join("resolve.lock"))
        .map_err(|e| RealError::Environment(format!("cannot create a lock in {}: {e}", home.display())))?;
    lock_file(&lock).map_err(|e| RealError::Environment(format!("cannot lock {}: {e}", home.display())))?;
    if complete.is_file() {
        return Ok(lib);
    }
    require_tool("mvn", "Maven", "apt-get install maven")?;
    std::fs::write(home.join("pom.xml"), POM)
        .map_err(|e| RealError::Environment(format!("cannot write {}: {e}", home.display())))?;
    let staging = home.join("lib.partial");
    let _ = std::fs::remove_dir_all(&staging);
    let _ = std::fs::remove_dir_all(&lib);
    tracing::info!("resolving Apache Kafka {KAFKA_VERSION} from Maven Central into {}", lib.display());
    let out = Command::new("mvn")
        .args(["-q", "-B", "-f"])
        .arg(home.join("pom.xml"))
        .args(["dependency:copy-dependencies", "-DincludeScope=runtime"])
        .arg(format!("-DoutputDirectory={}", staging.display()))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| RealError::Environment(format!("cannot run mvn: {e}")))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        // Maven's first errors say what went wrong; its last ones only where to read more.
        let errors: Vec<&str> = said
            .lines()
            .filter(|l| l.contains("[ERROR]") && !l.contains("[Help") && !l.contains("-X switch"))
            .filter(|l| l.trim_start_matches(|c: char| !c.is_alphanumeric()).len() > 8)
            .take(4)
            .collect();
        return Err(RealError::Environment(format!(
            "cannot download Apache Kafka {KAFKA_VERSION} from Maven Central (mvn {}): {}\n\
             It is needed once per machine: connect to the network and run again, or set \
             EVSIM_KAFKA_HOME to a directory whose lib/ holds its jars (and an empty lib.complete).",
            out.status,
            if errors.is_empty() { tail(&said, 6) } else { errors.join("\n") }
        )));
    }
    std::fs::rename(&staging, &lib)
        .and_then(|()| std::fs::write(&complete, ""))
        .map_err(|e| RealError::Environment(format!("cannot finish {}: {e}", lib.display())))?;
    Ok(lib)
}

/// Take an exclusive lock on `file` (flock(2)), waiting for it; it is released when the file is
/// closed. (`File::lock` needs Rust 1.89; evsim builds with 1.85.)
pub(crate) fn lock_file(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this process owns; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `name` must be on `PATH`; else an environment error saying how to install it.
pub(crate) fn require_tool(name: &str, what: &str, install: &str) -> Result<PathBuf, RealError> {
    let found = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file()));
    found.ok_or_else(|| RealError::Environment(format!("{what} (`{name}`) is not installed: `{install}`")))
}

/// The last `n` non-empty lines of `text`.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One Kafka node: the controller or a broker.
struct Node {
    /// `node.id`.
    id: u32,
    dir: PathBuf,
    /// Its network namespace, if the cluster has them.
    ns: Option<String>,
    child: Option<Child>,
}

impl Node {
    fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn props(&self) -> PathBuf {
        self.dir.join("server.properties")
    }

    fn spawn(&mut self, lib: &Path) -> Result<(), RealError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .map_err(|e| RealError::Environment(format!("cannot write {}: {e}", self.log().display())))?;
        let mut cmd = java(self.ns.as_deref());
        cmd.args(JVM_OPTS)
            .arg(format!("-Dlog4j2.configurationFile={}", self.dir.join("log4j2.properties").display()))
            .arg(format!("-Dkafka.logs.dir={}", self.dir.display()))
            .arg("-cp")
            .arg(lib.join("*"))
            .arg("kafka.Kafka")
            .arg(self.props())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| RealError::Environment(e.to_string()))?)
            .stderr(log);
        let child = spawn_owned(&mut cmd)
            .map_err(|e| RealError::Environment(format!("cannot start Kafka node {}: {e}", self.id)))?;
        self.child = Some(child);
        Ok(())
    }

    /// Whether the process has exited (and, if so, the end of its log).
    fn exited(&mut self) -> Option<String> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        let log = std::fs::read_to_string(self.log()).unwrap_or_default();
        Some(format!("Kafka node {} exited ({status}); its log ends:\n{}", self.id, tail(&log, 12)))
    }

    fn signal(&self, sig: libc::c_int) -> Result<(), String> {
        let child = self.child.as_ref().ok_or_else(|| format!("Kafka node {} is not running", self.id))?;
        // The node's process group (the JVM is its leader).
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
        let r = unsafe { libc::kill(-(child.id() as libc::pid_t), sig) };
        if r == 0 { Ok(()) } else { Err(format!("kill: {}", std::io::Error::last_os_error())) }
    }

    fn kill(&mut self) {
        if self.child.is_some() {
            let _ = self.signal(libc::SIGKILL);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

/// A command that runs `java`, inside network namespace `ns` when given.
fn java(ns: Option<&str>) -> Command {
    match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "java"]);
            c
        }
        None => Command::new("java"),
    }
}

/// Spawn `cmd` in a process group of its own, killed (SIGKILL) when the spawning thread's
/// process dies, however it dies.
fn spawn_owned(cmd: &mut Command) -> std::io::Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    cmd.process_group(0);
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) run between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died before the signal was armed: nobody would kill this process.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// A running Apache Kafka cluster.
pub(crate) struct KafkaCluster {
    lib: PathBuf,
    dir: PathBuf,
    controller: Node,
    brokers: Vec<Node>,
    /// Each broker's `host:port` as clients reach it.
    addresses: Vec<String>,
    net: Option<NetNs>,
    /// The packet filters of each network fault in force: fault -> (node, rule).
    filters: std::collections::BTreeMap<usize, Vec<(usize, Vec<String>)>>,
    /// Keep the logs after the run (`EVSIM_KEEP_KAFKA_LOGS`).
    keep: bool,
    stopped: bool,
}

/// How the cluster's nodes are reached.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum KafkaNet {
    /// Each node in its own network namespace (root and `ip` needed); network faults possible.
    Namespaces,
    /// Every node on loopback, on free ports; no network faults.
    Loopback,
}

impl KafkaCluster {
    /// Start a controller and `scenario.brokers` brokers with the scenario's broker settings.
    pub(crate) fn start(scenario: &Scenario, net: KafkaNet, port: Option<u16>) -> Result<Self, RealError> {
        require_tool("java", "A Java runtime (17 or later)", "apt-get install openjdk-17-jre-headless")?;
        let lib = ensure_jars()?;
        let n = scenario.brokers as usize;
        let (net, controller_addr, addresses) = match net {
            KafkaNet::Namespaces => {
                let ns = NetNs::create(n + 1)?;
                let c = format!("{}:{NS_CONTROLLER_PORT}", ns.ip(0));
                let a = (0..n).map(|b| format!("{}:{NS_BROKER_PORT}", ns.ip(b + 1))).collect();
                (Some(ns), c, a)
            }
            KafkaNet::Loopback => {
                let mut ports = Vec::new();
                if let Some(p) = port {
                    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, p)).map_err(|e| {
                        RealError::Environment(format!(
                            "port {p} on 127.0.0.1 is in use ({e}); pass another --port, or none for a free one"
                        ))
                    })?;
                    ports.push(p);
                }
                // Held together so that no two are the same.
                let held: Vec<std::net::TcpListener> = (ports.len()..=n)
                    .map(|_| std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
                    .collect::<Result<_, _>>()
                    .map_err(|e| RealError::Environment(format!("cannot find free loopback ports: {e}")))?;
                ports.extend(held.iter().filter_map(|l| l.local_addr().ok()).map(|a| a.port()));
                drop(held);
                let c = format!("127.0.0.1:{}", ports[n]);
                let a = ports[..n].iter().map(|p| format!("127.0.0.1:{p}")).collect();
                (None, c, a)
            }
        };
        let dir = std::env::temp_dir().join(format!(
            "evsim-kafka-{}-{}",
            std::process::id(),
            net.as_ref().map_or_else(|| addresses_port(&controller_addr), |n| n.slot().to_string())
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let node = |id: u32, k: usize| Node {
            id,
            dir: dir.join(if id == CONTROLLER_ID { "controller".to_string() } else { format!("broker-{id}") }),
            ns: net.as_ref().map(|n| n.ns(k).to_string()),
            child: None,
        };
        let mut cluster = KafkaCluster {
            lib,
            controller: node(CONTROLLER_ID, 0),
            brokers: (0..n).map(|b| node(b as u32, b + 1)).collect(),
            dir,
            addresses,
            net,
            filters: Default::default(),
            stopped: false,
            keep: std::env::var_os("EVSIM_KEEP_KAFKA_LOGS").is_some(),
        };
        let started = Instant::now();
        cluster.configure(scenario, &controller_addr)?;
        cluster.format()?;
        cluster.controller.spawn(&cluster.lib)?;
        for b in &mut cluster.brokers {
            b.spawn(&cluster.lib)?;
        }
        tracing::info!(
            "Kafka nodes starting ({n} brokers) in {}; configured and formatted in {} ms",
            cluster.dir.display(),
            started.elapsed().as_millis()
        );
        Ok(cluster)
    }

    pub(crate) fn bootstrap(&self) -> String {
        self.addresses.join(",")
    }

    pub(crate) fn brokers(&self) -> usize {
        self.brokers.len()
    }

    /// The first node that exited, with the end of its log.
    pub(crate) fn exited(&mut self) -> Option<String> {
        if let Some(why) = self.controller.exited() {
            return Some(why);
        }
        self.brokers.iter_mut().find_map(Node::exited)
    }

    pub(crate) fn log_dir(&self) -> &Path {
        &self.dir
    }

    /// Write every node's properties and log configuration.
    fn configure(&self, s: &Scenario, controller_addr: &str) -> Result<(), RealError> {
        let c = &s.broker;
        let n = s.brokers;
        let voters = format!("{CONTROLLER_ID}@{controller_addr}");
        let shared = |p: &mut String| {
            // The settings the controller and the brokers both read.
            prop(p, "controller.quorum.voters", &voters);
            prop(p, "controller.listener.names", "CONTROLLER");
            prop(p, "broker.session.timeout.ms", c.broker_session_timeout_ms);
            prop(p, "broker.heartbeat.interval.ms", c.broker_heartbeat_interval_ms);
            prop(p, "unclean.leader.election.enable", c.unclean_leader_election_enable);
            prop(p, "min.insync.replicas", c.min_insync_replicas);
            // Only the classic group protocol, as the simulator's coordinator.
            prop(p, "group.coordinator.rebalance.protocols", "classic");
        };
        let mut p = String::from("# Written by evsim's harness for one run.\nprocess.roles=controller\n");
        prop(&mut p, "node.id", CONTROLLER_ID);
        prop(&mut p, "listeners", format!("CONTROLLER://{controller_addr}"));
        prop(&mut p, "listener.security.protocol.map", "CONTROLLER:PLAINTEXT");
        prop(&mut p, "log.dirs", self.controller.dir.join("data").display());
        shared(&mut p);
        write_node(&self.controller, &p)?;
        for (b, node) in self.brokers.iter().enumerate() {
            let addr = &self.addresses[b];
            let mut p = String::from("# Written by evsim's harness for one run.\nprocess.roles=broker\n");
            prop(&mut p, "node.id", node.id);
            prop(&mut p, "listeners", format!("PLAINTEXT://{addr}"));
            prop(&mut p, "advertised.listeners", format!("PLAINTEXT://{addr}"));
            prop(&mut p, "listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT");
            prop(&mut p, "inter.broker.listener.name", "PLAINTEXT");
            prop(&mut p, "log.dirs", node.dir.join("data").display());
            shared(&mut p);
            // The simulator creates only the scenario's topics.
            prop(&mut p, "auto.create.topics.enable", false);
            prop(&mut p, "group.initial.rebalance.delay.ms", c.group_initial_rebalance_delay_ms);
            prop(&mut p, "group.min.session.timeout.ms", c.group_min_session_timeout_ms);
            prop(&mut p, "group.max.session.timeout.ms", c.group_max_session_timeout_ms);
            prop(&mut p, "replica.lag.time.max.ms", c.replica_lag_time_max_ms);
            prop(&mut p, "replica.fetch.wait.max.ms", c.replica_fetch_wait_max_ms);
            prop(&mut p, "replica.socket.timeout.ms", c.replica_socket_timeout_ms);
            prop(&mut p, "offsets.topic.num.partitions", c.offsets_topic_num_partitions);
            prop(&mut p, "offsets.topic.replication.factor", c.offsets_topic_replication_factor.min(n));
            prop(&mut p, "transaction.state.log.replication.factor", n.min(3));
            prop(&mut p, "transaction.state.log.min.isr", n.min(2));
            // Unset, Kafka leaves flushing to the OS, which is what the simulator's default
            // (5000 ms, Linux's writeback interval) stands for; another value is Kafka's own.
            if c.log_flush_interval_ms != evsim_model::scenario::BrokerConfig::default().log_flush_interval_ms {
                prop(&mut p, "log.flush.interval.ms", c.log_flush_interval_ms);
            }
            write_node(node, &p)?;
        }
        Ok(())
    }

    /// Fresh storage for every node: the controller's with `kafka-storage format` and eligible
    /// leader replicas off; each broker's `meta.properties` as that tool writes it.
    fn format(&self) -> Result<(), RealError> {
        let cluster_id = kafka_uuid(&self.dir, 0);
        let mut cmd = java(None);
        cmd.args(JVM_OPTS)
            .arg(format!("-Dlog4j2.configurationFile={}", self.controller.dir.join("log4j2.properties").display()))
            .arg("-cp")
            .arg(self.lib.join("*"))
            .args(["kafka.tools.StorageTool", "format", "-t", &cluster_id, "-c"])
            .arg(self.controller.props())
            .args(["--feature", "eligible.leader.replicas.version=0"])
            .stdin(Stdio::null());
        let out = cmd.output().map_err(|e| RealError::Environment(format!("cannot run java: {e}")))?;
        if !out.status.success() {
            let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
            return Err(RealError::Environment(format!(
                "kafka-storage format failed for the controller ({}): {}",
                out.status,
                tail(&said, 8)
            )));
        }
        for (i, b) in self.brokers.iter().enumerate() {
            let data = b.dir.join("data");
            std::fs::create_dir_all(&data)
                .and_then(|()| {
                    std::fs::write(
                        data.join("meta.properties"),
                        format!(
                            "#\n#Written by evsim's harness\nnode.id={}\ndirectory.id={}\nversion=1\ncluster.id={cluster_id}\n",
                            b.id,
                            kafka_uuid(&self.dir, i as u64 + 1)
                        ),
                    )
                })
                .map_err(|e| RealError::Environment(format!("cannot write {}: {e}", data.display())))?;
        }
        Ok(())
    }

    /// Broker `b`'s machine dies: in namespaces its network goes silent first (every packet in
    /// and out dropped, so no peer gets a reset, as when a machine loses power), then its JVM is
    /// killed with SIGKILL. Its page cache survives (only the process dies): what it had written
    /// is on its disk when it restarts, where the simulator's machine crash loses what the OS
    /// had not written back.
    pub(crate) fn kill(&mut self, b: usize) -> Result<String, String> {
        let node = self.brokers.get(b).ok_or_else(|| format!("no broker-{b}"))?;
        if node.child.is_none() {
            return Err(format!("broker-{b} is not running"));
        }
        let mut how = String::new();
        if let Some(net) = &mut self.net {
            let k = b + 1;
            let mut added = Vec::new();
            for chain in [["INPUT", "-i", "eth0"], ["OUTPUT", "-o", "eth0"]] {
                let mut r: Vec<String> = chain.map(String::from).to_vec();
                r.extend(crate::netns::comment(&format!("evsim-machine-{b}")));
                r.extend(["-j".to_string(), "DROP".to_string()]);
                net.add_rule(k, r.clone())?;
                added.push((k, r));
            }
            self.filters.insert(machine_key(b), added);
            how.push_str("its network went silent (iptables DROP in and out), then ");
        }
        self.brokers[b].kill();
        Ok(format!("broker-{b}'s machine died: {how}its JVM was killed (SIGKILL)"))
    }

    /// Stop (SIGSTOP) or continue (SIGCONT) broker `b`'s JVM: its machine's kernel goes on
    /// accepting connections and acknowledging bytes while the broker answers nothing.
    pub(crate) fn pause(&mut self, b: usize, on: bool) -> Result<String, String> {
        let node = self.brokers.get(b).ok_or_else(|| format!("no broker-{b}"))?;
        if on {
            node.signal(libc::SIGSTOP)?;
            Ok(format!("broker-{b}'s JVM was stopped (SIGSTOP); its kernel still takes in what is sent to it"))
        } else {
            node.signal(libc::SIGCONT)?;
            Ok(format!("broker-{b}'s JVM was continued (SIGCONT)"))
        }
    }

    /// Start broker `b` again on its storage (and its network, if its machine died).
    pub(crate) fn restart(&mut self, b: usize) -> Result<String, String> {
        if b >= self.brokers.len() {
            return Err(format!("no broker-{b}"));
        }
        if let Some(net) = &mut self.net {
            for (k, rule) in self.filters.remove(&machine_key(b)).unwrap_or_default() {
                net.remove_rule(k, &rule)?;
            }
        }
        let lib = self.lib.clone();
        let node = &mut self.brokers[b];
        node.kill();
        node.spawn(&lib).map_err(|e| e.to_string())?;
        Ok(format!("restarted broker-{b} on its storage"))
    }

    /// Start network fault `id` as iptables rules in its broker's namespace.
    pub(crate) fn network_start(&mut self, id: usize, fault: &FaultSpec) -> Result<String, String> {
        let net = self.net.as_mut().ok_or("network faults need the nodes in network namespaces (run as root)")?;
        let rules = crate::netns::fault_rules(fault, self.brokers.len(), &fault_tag(id), |k| net.ip(k))?;
        let mut added: Vec<(usize, Vec<String>)> = Vec::new();
        for (k, rule) in rules {
            if let Err(e) = net.add_rule(k, rule.clone()) {
                for (k, r) in added.iter().rev() {
                    let _ = net.remove_rule(*k, r.as_slice());
                }
                return Err(e);
            }
            added.push((k, rule));
        }
        let how = added.iter().map(|(k, r)| format!("[{}] {}", net.ns(*k), r.join(" "))).collect::<Vec<_>>();
        self.filters.insert(id, added);
        Ok(format!("iptables -A {}", how.join("; ")))
    }

    /// End network fault `id`: the packets its rules dropped, then the rules removed.
    pub(crate) fn network_end(&mut self, id: usize) -> Result<u64, String> {
        let net = self.net.as_mut().ok_or("no network namespaces")?;
        let rules = self.filters.remove(&id).unwrap_or_default();
        let mut dropped = 0;
        let mut nodes: Vec<usize> = rules.iter().map(|(k, _)| *k).collect();
        nodes.dedup();
        for k in nodes {
            dropped += net.dropped(k, &fault_tag(id))?;
        }
        for (k, rule) in rules {
            net.remove_rule(k, &rule)?;
        }
        Ok(dropped)
    }

    /// Kill every node and remove what the harness made (the logs stay with
    /// `EVSIM_KEEP_KAFKA_LOGS`).
    pub(crate) fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        for b in &mut self.brokers {
            b.kill();
        }
        self.controller.kill();
        if let Some(net) = &mut self.net {
            net.teardown();
        }
        if self.keep {
            eprintln!("Kafka's logs are kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The comment that tags fault `id`'s rules.
fn fault_tag(id: usize) -> String {
    format!("evsim-fault-{id}")
}

/// The key of a dead machine's filters among the faults' (fault ids are small).
fn machine_key(b: usize) -> usize {
    usize::MAX - b
}

fn addresses_port(addr: &str) -> String {
    addr.rsplit(':').next().unwrap_or("0").to_string()
}

fn prop(p: &mut String, key: &str, value: impl std::fmt::Display) {
    p.push_str(&format!("{key}={value}\n"));
}

fn write_node(node: &Node, props: &str) -> Result<(), RealError> {
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(&node.dir)?;
        std::fs::write(node.props(), props)?;
        std::fs::write(node.dir.join("log4j2.properties"), LOG4J2)?;
        let mut log = std::fs::File::create(node.log())?;
        writeln!(log, "== evsim: Kafka {KAFKA_VERSION} node {}", node.id)
    };
    write().map_err(|e| RealError::Environment(format!("cannot write {}: {e}", node.dir.display())))
}

/// A Kafka `Uuid` in its string form (URL-safe base64 of 16 bytes, no padding), unique to this
/// cluster directory and `salt`: the cluster id and the brokers' directory ids. Not random:
/// uniqueness across runs comes from the process id, the time and the directory.
fn kafka_uuid(dir: &Path, salt: u64) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut bytes = [0u8; 16];
    for (half, chunk) in bytes.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write(dir.as_os_str().as_encoded_bytes());
        h.write_u64(salt);
        h.write_u64(half as u64);
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    // Kafka reserves ids whose first 8 bytes are zero (Uuid.ZERO_UUID, METADATA_TOPIC_ID), and
    // its tools read an id that starts with '-' as an option (Uuid.randomUuid draws again).
    bytes[0] = (bytes[0] & 0x7f) | 1;
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(B64[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(B64[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_uuids_have_kafkas_string_form() {
        let a = kafka_uuid(Path::new("/tmp/x"), 0);
        let b = kafka_uuid(Path::new("/tmp/x"), 1);
        assert_eq!(a.len(), 22, "{a}");
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'), "{a}");
        assert_ne!(a, b);
        for salt in 0..200 {
            let id = kafka_uuid(Path::new("/tmp/y"), salt);
            assert!(!id.starts_with('-'), "{id}");
        }
    }

    #[test]
    fn tails_keep_the_last_non_empty_lines() {
        assert_eq!(tail("a\n\nb\nc\n\n", 2), "b\nc");
        assert_eq!(tail("", 3), "");
    }
}
