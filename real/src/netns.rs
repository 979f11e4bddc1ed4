//! The harness's network: each Kafka node in a network namespace of its own, joined to evsim by a
//! veth pair on a bridge, so that faults act on packets as a real network's would.
//!
//! ```text
//!   evsim (root namespace, 10.203.S.1 on bridge evsimbrS)
//!     ├── veth ── evsimSn0: the controller, 10.203.S.2
//!     ├── veth ── evsimSn1: broker-0,       10.203.S.10
//!     └── veth ── evsimSn2: broker-1,       10.203.S.11 ...
//! ```
//!
//! Faults are iptables rules inside the target broker's namespace: `DROP` for a partition (the
//! sender's TCP retransmits into silence, exactly what the simulator's TCP model does) and the
//! `statistic` match for random loss. No proxy sits in the path: nothing acknowledges bytes on a
//! broker's behalf.
//!
//! A slot `S` (0..250) is one cluster's network; a file names the process that owns it. A slot
//! whose owner died (evsim killed with SIGKILL leaves its namespaces behind; its JVMs die with
//! it) is torn down by the next harness that looks for a free slot.

use crate::RealError;
use crate::kafka::{require_tool, tail};
use evsim_model::scenario::{CONTROLLER, Direction, FaultKind, FaultSpec};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const SLOTS: u32 = 250;

/// A cluster's namespaces and bridge.
pub(crate) struct NetNs {
    slot: u32,
    nodes: usize,
    /// iptables rules in force, to remove at the end: (node, rule).
    rules: Vec<(usize, Vec<String>)>,
    down: bool,
}

fn state_dir() -> PathBuf {
    std::env::temp_dir().join("evsim-net")
}

fn bridge(slot: u32) -> String {
    format!("evsimbr{slot}")
}

fn ns_name(slot: u32, k: usize) -> String {
    format!("evsim{slot}n{k}")
}

/// Run `ip` (or another tool) with `args`; an error carries what it said.
fn run(tool: &str, args: &[&str]) -> Result<(), String> {
    let out =
        Command::new(tool).args(args).stdin(Stdio::null()).output().map_err(|e| format!("cannot run {tool}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`{tool} {}` failed: {}", args.join(" "), tail(&String::from_utf8_lossy(&out.stderr), 3)))
    }
}

fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// Whether process `pid` is alive.
fn alive(pid: i32) -> bool {
    pid > 0 && std::path::Path::new("/proc").join(pid.to_string()).exists()
}

/// What the namespaces need, checked before anything is made: root, `ip`, `iptables`.
pub fn requirements() -> Result<(), RealError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(RealError::Environment(
            "Apache Kafka's nodes run in network namespaces (for packet-level network faults), which needs root; \
             run as root, or set EVSIM_KAFKA_NET=loopback to run on loopback without network faults"
                .into(),
        ));
    }
    require_tool("ip", "iproute2", "apt-get install iproute2")?;
    require_tool("iptables", "iptables", "apt-get install iptables")?;
    Ok(())
}

impl NetNs {
    /// Make namespaces for `nodes` nodes (node 0 is the controller), on a free slot.
    pub(crate) fn create(nodes: usize) -> Result<Self, RealError> {
        requirements()?;
        let dir = state_dir();
        let lock = lock_state(&dir)?;
        sweep_locked(&dir);
        let me = std::process::id();
        let slot = (0..SLOTS)
            .find(|&slot| !link_exists(&bridge(slot)) && !dir.join(format!("{slot}.owner")).exists())
            .inspect(|&slot| clear_slot(slot))
            .ok_or_else(|| {
                RealError::Environment(format!("all {SLOTS} network slots are in use by running evsim processes"))
            })?;
        let owner_file = dir.join(format!("{slot}.owner"));
        std::fs::write(&owner_file, me.to_string())
            .map_err(|e| RealError::Environment(format!("cannot write {}: {e}", owner_file.display())))?;
        drop(lock);
        let mut net = NetNs { slot, nodes, rules: Vec::new(), down: false };
        if let Err(e) = net.build() {
            net.teardown();
            return Err(RealError::Environment(format!("cannot build the cluster's network namespaces: {e}")));
        }
        Ok(net)
    }

    fn build(&self) -> Result<(), String> {
        let s = self.slot;
        let br = bridge(s);
        run("ip", &["link", "add", &br, "type", "bridge"])?;
        run("ip", &["addr", "add", &format!("{}/24", self.client_ip()), "dev", &br])?;
        run("ip", &["link", "set", &br, "up"])?;
        for k in 0..self.nodes {
            let ns = ns_name(s, k);
            let (host, peer) = (format!("evsim{s}v{k}"), format!("evsim{s}p{k}"));
            run("ip", &["netns", "add", &ns])?;
            run("ip", &["link", "add", &host, "type", "veth", "peer", "name", &peer])?;
            run("ip", &["link", "set", &peer, "netns", &ns])?;
            run("ip", &["link", "set", &host, "master", &br, "up"])?;
            run("ip", &["-n", &ns, "link", "set", &peer, "name", "eth0"])?;
            run("ip", &["-n", &ns, "addr", "add", &format!("{}/24", self.ip(k)), "dev", "eth0"])?;
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    pub(crate) fn slot(&self) -> u32 {
        self.slot
    }

    /// Node `k`'s namespace.
    pub(crate) fn ns(&self, k: usize) -> String {
        ns_name(self.slot, k)
    }

    /// Node `k`'s address: the controller (0) at .2, broker `b` (node `b + 1`) at `.10 + b`.
    pub(crate) fn ip(&self, k: usize) -> Ipv4Addr {
        let host = if k == 0 { 2 } else { 9 + k as u8 };
        Ipv4Addr::new(10, 203, self.slot as u8, host)
    }

    /// evsim's own address on the bridge: every client's.
    pub(crate) fn client_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 203, self.slot as u8, 1)
    }

    /// Add an iptables rule in node `k`'s namespace (`chain` is INPUT or OUTPUT).
    pub(crate) fn add_rule(&mut self, k: usize, rule: Vec<String>) -> Result<(), String> {
        let ns = self.ns(k);
        let mut args: Vec<&str> = vec!["netns", "exec", &ns, "iptables", "-w", "-A"];
        args.extend(rule.iter().map(String::as_str));
        run("ip", &args)?;
        self.rules.push((k, rule));
        Ok(())
    }

    /// Remove a rule added by [`NetNs::add_rule`].
    pub(crate) fn remove_rule(&mut self, k: usize, rule: &[String]) -> Result<(), String> {
        let ns = self.ns(k);
        let mut args: Vec<&str> = vec!["netns", "exec", &ns, "iptables", "-w", "-D"];
        args.extend(rule.iter().map(String::as_str));
        run("ip", &args)?;
        if let Some(i) = self.rules.iter().position(|(n, r)| *n == k && r == rule) {
            self.rules.remove(i);
        }
        Ok(())
    }

    /// The packets the rules tagged `tag` in node `k`'s namespace have dropped so far.
    pub(crate) fn dropped(&self, k: usize, tag: &str) -> Result<u64, String> {
        let ns = self.ns(k);
        let out = Command::new("ip")
            .args(["netns", "exec", &ns, "iptables-save", "-c"])
            .output()
            .map_err(|e| format!("cannot run iptables-save: {e}"))?;
        let needle = format!("--comment {tag} ");
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&needle))
            .filter_map(|l| l.strip_prefix('[')?.split(':').next()?.parse::<u64>().ok())
            .sum())
    }

    /// Remove the namespaces, the veth pairs (they go with their namespace) and the bridge.
    pub(crate) fn teardown(&mut self) {
        if self.down {
            return;
        }
        self.down = true;
        clear_slot(self.slot);
        let _ = std::fs::remove_file(state_dir().join(format!("{}.owner", self.slot)));
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Remove everything of `slot`: its namespaces (whatever their number), the root ends of its
/// veth pairs (a namespace whose last process is still dying outlives `ip netns del` for a
/// moment, and its pair with it) and its bridge.
fn clear_slot(slot: u32) {
    let prefix = format!("evsim{slot}n");
    let veth = format!("evsim{slot}v");
    if let Ok(entries) = std::fs::read_dir("/sys/class/net") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.strip_prefix(&veth).is_some_and(|k| k.parse::<u32>().is_ok()) {
                let _ = run("ip", &["link", "del", &name]);
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.strip_prefix(&prefix).is_some_and(|k| k.parse::<u32>().is_ok()) {
                let _ = run("ip", &["netns", "del", &name]);
            }
        }
    }
    if link_exists(&bridge(slot)) {
        let _ = run("ip", &["link", "del", &bridge(slot)]);
    }
}

fn lock_state(dir: &std::path::Path) -> Result<std::fs::File, RealError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| RealError::Environment(format!("cannot create {}: {e}", dir.display())))?;
    let lock = std::fs::File::create(dir.join("lock"))
        .map_err(|e| RealError::Environment(format!("cannot create a lock in {}: {e}", dir.display())))?;
    crate::kafka::lock_file(&lock)
        .map_err(|e| RealError::Environment(format!("cannot lock {}: {e}", dir.display())))?;
    Ok(lock)
}

/// The owner of each slot that has one: (slot, pid).
fn owners(dir: &std::path::Path) -> Vec<(u32, i32)> {
    (0..SLOTS)
        .filter_map(|slot| {
            let text = std::fs::read_to_string(dir.join(format!("{slot}.owner"))).ok()?;
            Some((slot, text.trim().parse().unwrap_or(0)))
        })
        .collect()
}

/// Clear every slot whose owner died, or that has a bridge and no owner.
fn sweep_locked(dir: &std::path::Path) {
    let owned = owners(dir);
    for slot in 0..SLOTS {
        let owner = owned.iter().find(|(s, _)| *s == slot).map(|&(_, pid)| pid);
        let stale = match owner {
            Some(pid) => !alive(pid),
            None => link_exists(&bridge(slot)),
        };
        if stale {
            tracing::info!("removing network slot {slot} left by process {owner:?}");
            clear_slot(slot);
            let _ = std::fs::remove_file(dir.join(format!("{slot}.owner")));
        }
    }
}

/// Remove the namespaces and bridges that evsim processes which died (killed with SIGKILL)
/// left behind; every harness does it before it makes its own.
pub fn sweep_stale() -> Result<(), RealError> {
    let dir = state_dir();
    let _lock = lock_state(&dir)?;
    sweep_locked(&dir);
    Ok(())
}

/// The network namespaces that exist for the slots process `pid` owns or owned (for the leak
/// tests): what a sweep would remove once `pid` is dead.
pub fn namespaces_of(pid: u32) -> Vec<String> {
    let slots: Vec<u32> =
        owners(&state_dir()).into_iter().filter(|&(_, p)| p == pid as i32).map(|(slot, _)| slot).collect();
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if slots.iter().any(|s| name.starts_with(&format!("evsim{s}n"))) {
                out.push(name);
            }
        }
    }
    out.sort();
    out
}

/// The iptables match that names a rule's fault, so that its counters can be read.
pub(crate) fn comment(tag: &str) -> Vec<String> {
    ["-m", "comment", "--comment", tag].map(String::from).to_vec()
}

/// The iptables rules that perform network fault `f` on a cluster of `brokers` brokers (node
/// `k`'s address is `ip(k)`), each in the namespace of the node it names. Only a broker can be
/// the target: every client is evsim itself, at one address, so one client's links cannot be cut
/// alone. The peer is another broker, the controller, or everything (none).
pub(crate) fn fault_rules(
    f: &FaultSpec,
    brokers: usize,
    tag: &str,
    ip: impl Fn(usize) -> Ipv4Addr,
) -> Result<Vec<(usize, Vec<String>)>, String> {
    let broker = |name: Option<&str>| -> Option<usize> {
        name?.strip_prefix("broker-")?.parse::<usize>().ok().filter(|&b| b < brokers)
    };
    let clients = "on Apache Kafka every client is evsim itself, at one address, so a network fault must \
                   target a broker (and name another broker, the controller or nothing as its peer)";
    let target = broker(f.target.as_deref())
        .ok_or_else(|| format!("`{}`: {clients}", f.target.as_deref().unwrap_or("(no target)")))?;
    let peer = match f.peer.as_deref() {
        None => None,
        Some(CONTROLLER) => Some(ip(0)),
        Some(p) => Some(ip(broker(Some(p)).ok_or_else(|| format!("peer `{p}`: {clients}"))? + 1)),
    };
    let action: Vec<String> = match f.kind {
        FaultKind::NetworkPartition => vec!["-j".into(), "DROP".into()],
        FaultKind::NetworkLoss => {
            if !(f.rate > 0.0 && f.rate <= 1.0) {
                return Err(format!("loss rate {} is not in (0, 1]", f.rate));
            }
            ["-m", "statistic", "--mode", "random", "--probability", &format!("{:.6}", f.rate), "-j", "DROP"]
                .map(String::from)
                .to_vec()
        }
        FaultKind::NetworkDelay => {
            return Err("network-delay needs tc netem, which evsim's harness does not drive yet \
                        (and this machine's kernel lacks: CONFIG_NET_SCH_NETEM); docs/real-kafka.md"
                .to_string());
        }
        other => return Err(format!("{} is not a network fault", other.name())),
    };
    let chain = |inbound: bool| -> Vec<String> {
        let mut r: Vec<String> = if inbound { vec!["INPUT", "-i", "eth0"] } else { vec!["OUTPUT", "-o", "eth0"] }
            .into_iter()
            .map(String::from)
            .collect();
        if let Some(p) = peer {
            r.push(if inbound { "-s" } else { "-d" }.into());
            r.push(p.to_string());
        }
        r.extend(comment(tag));
        r.extend(action.iter().cloned());
        r
    };
    let k = target + 1;
    Ok(match f.direction {
        Direction::Both => vec![(k, chain(true)), (k, chain(false))],
        Direction::Inbound => vec![(k, chain(true))],
        Direction::Outbound => vec![(k, chain(false))],
    })
}
