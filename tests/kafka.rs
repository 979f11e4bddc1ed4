//! Apache Kafka started by the harness: the cluster's life (start, stop, no leftovers when evsim
//! is killed), what it refuses, and bad environments. The differential comparisons with the
//! simulator are in tests/differential.rs.
//!
//! These tests need root, `ip`, `iptables`, Java 17+ and Maven (or Kafka's jars already cached);
//! `scripts/test.sh` installs what is missing. Without them they fail, saying what is missing.
//! They never skip.

mod common;

use evsim_real::netns::{namespaces_of, sweep_stale};
use evsim_real::{BrokerKind, BrokerOptions, KafkaNet, run_real};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One cluster at a time: four JVMs starting on two cores are slow enough.
static CLUSTER: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    CLUSTER.lock().unwrap_or_else(|e| e.into_inner())
}

fn evsim(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_evsim"));
    c.args(args).current_dir(common::root());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("evsim runs")
}

/// `evsim real scenarios/order-basic.toml --no-compare` started in the background.
fn spawn_real_order_basic(out: fn() -> Stdio, err: fn() -> Stdio) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_evsim"))
        .args(["real", "scenarios/order-basic.toml", "--no-compare"])
        .current_dir(common::root())
        .stdout(out())
        .stderr(err())
        .spawn()
        .expect("evsim starts")
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// The Kafka JVMs whose command line contains `marker` (a cluster's directory).
fn kafka_processes(marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("kafka.Kafka") && cmdline.contains(marker) {
            out.push(pid);
        }
    }
    out
}

/// Whether a socket table (`/proc/net/tcp` or `tcp6`) has a listening socket, on `port` if
/// given. Each line's local_address is HEX_IP:HEX_PORT; state 0A is LISTEN.
fn listening(table: &str, port: Option<u16>) -> bool {
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[3] == "0A" && port.is_none_or(|p| f[1].ends_with(&format!(":{p:04X}")))
    })
}

/// Whether process `pid` listens on TCP `port` in its network namespace (the JVM listens on
/// IPv6 sockets, IPv4-mapped, so both tables are read).
fn listens(pid: u32, port: u16) -> bool {
    ["tcp", "tcp6"]
        .iter()
        .any(|t| listening(&std::fs::read_to_string(format!("/proc/{pid}/net/{t}")).unwrap_or_default(), Some(port)))
}

/// Whether process `pid` runs: it exists and is not a zombie (an orphan whose new parent, the
/// machine's init, has not reaped it yet). A zombie leader's other threads may still be
/// exiting; the test waits for the ports to close as well.
fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // pid (comm) STATE ...: the state follows the last ')'.
    stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).is_some_and(|s| s != "Z" && s != "X")
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < limit, "{what}: not within {} s", limit.as_secs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn this_machine_runs_kafka_in_network_namespaces() {
    // The network faults need them; a machine without them must fail here, not skip.
    if let Err(e) = evsim_real::netns::requirements() {
        panic!("the Kafka tests need network namespaces: {e}");
    }
    if std::env::var("EVSIM_KAFKA_NET").as_deref() != Ok("loopback") {
        assert_eq!(KafkaNet::detect(), KafkaNet::Namespaces);
    }
}

#[test]
fn order_basic_runs_on_apache_kafka_and_leaves_nothing_behind() {
    let _one = one_at_a_time();
    let s = common::for_real(common::scenario("order-basic"), 2_000, 100.0);
    let real = run_real(&s, s.run.seed, &BrokerOptions::new(BrokerKind::Kafka)).unwrap_or_else(|e| panic!("{e}"));
    assert!(real.passed(), "{:?} {:?}", real.vacuous, real.verdicts);
    assert_eq!(real.placement_mismatches, 0);
    let sim = evsim_sim::run_scenario(&s, s.run.seed);
    let diffs = evsim_real::diff::compare(&sim.history, &sim.verdicts, &real.history, &real.verdicts, "kafka");
    assert!(diffs.is_empty(), "{diffs:#?}");
    // Everything the harness made is gone: processes, namespaces, the cluster's directory.
    let me = std::process::id();
    assert_eq!(kafka_processes(&format!("evsim-kafka-{me}-")), Vec::<u32>::new());
    assert_eq!(namespaces_of(me), Vec::<String>::new());
}

/// evsim killed with SIGKILL in the middle of a real run: its Kafka JVMs die with it
/// (PR_SET_PDEATHSIG), so no process and no listening port is left; the namespaces it made
/// outlive it (the kernel keeps named ones) and the next harness removes them.
#[test]
fn evsim_killed_with_sigkill_leaves_no_kafka_process_or_port() {
    let _one = one_at_a_time();
    let mut child = spawn_real_order_basic(Stdio::null, Stdio::null);
    let pid = child.id();
    let started = Instant::now();
    let marker = format!("evsim-kafka-{pid}-");
    // The controller and the broker are up and listening.
    wait_for("the controller and the broker listen", Duration::from_secs(120), || {
        let procs = kafka_processes(&marker);
        procs.len() == 2 && procs.iter().any(|&p| listens(p, 9092)) && procs.iter().any(|&p| listens(p, 9093))
    });
    let nodes = kafka_processes(&marker);
    eprintln!("Kafka nodes {nodes:?} listening {:.1} s after evsim started", started.elapsed().as_secs_f64());
    std::thread::sleep(Duration::from_secs(2)); // into the run
    child.kill().expect("SIGKILL evsim");
    child.wait().expect("reap evsim");
    // A dying JVM's command line empties before its sockets close: wait for the processes to
    // be gone (or zombies, whose files are closed).
    wait_for("the Kafka JVMs die with evsim", Duration::from_secs(15), || nodes.iter().all(|&p| !alive(p)));
    assert_eq!(kafka_processes(&marker), Vec::<u32>::new());
    // Nothing listens in the namespaces it left, and the next harness clears them.
    let left = namespaces_of(pid);
    assert!(!left.is_empty(), "a killed evsim cannot remove its namespaces; the test expects them");
    for ns in &left {
        // A JVM's leader thread can be a zombie while its other threads, and their sockets,
        // are still being torn down: the ports close within moments.
        wait_for(&format!("nothing listens in {ns}"), Duration::from_secs(15), || {
            let out = Command::new("ip")
                .args(["netns", "exec", ns, "cat", "/proc/net/tcp", "/proc/net/tcp6"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{ns}: {}", String::from_utf8_lossy(&out.stderr));
            !listening(&String::from_utf8_lossy(&out.stdout), None)
        });
    }
    sweep_stale().unwrap();
    assert_eq!(namespaces_of(pid), Vec::<String>::new());
}

/// A node that dies during the run (here the controller, killed from outside) ends the run with
/// exit 2 and what happened: a run whose cluster broke cannot be judged.
#[test]
fn a_kafka_node_dying_during_the_run_exits_2() {
    let _one = one_at_a_time();
    let child = spawn_real_order_basic(Stdio::piped, Stdio::piped);
    let marker = format!("evsim-kafka-{}-", child.id());
    let controller = || kafka_processes(&marker).into_iter().find(|&p| listens(p, 9093));
    let started = Instant::now();
    wait_for("the controller and the broker listen", Duration::from_secs(120), || {
        kafka_processes(&marker).iter().any(|&p| listens(p, 9092)) && controller().is_some()
    });
    std::thread::sleep(Duration::from_secs(8)); // the groups form, the run starts
    let c = controller().expect("the controller");
    Command::new("kill").args(["-KILL", &c.to_string()]).status().unwrap();
    let out = child.wait_with_output().unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("Kafka node 1000 exited"), "{all}");
    assert!(started.elapsed() < Duration::from_secs(120), "took {:?}", started.elapsed());
    assert!(kafka_processes(&marker).is_empty());
}

#[test]
fn faults_apache_kafka_cannot_perform_are_refused_before_it_starts() {
    let dir = common::scratch("kafka-refused");
    let base = std::fs::read_to_string(common::root().join("scenarios/order-failover-acks1.toml")).unwrap();
    // network-delay needs netem; a partition around one client cannot be cut (every client is
    // evsim at one address).
    let delay = base.clone()
        + "\n[[faults]]\nkind = \"network-delay\"\ntarget = \"broker-0\"\ndelay_ms = 300\nat_ms = 1000\nfor_ms = 100\n";
    let client = base.clone()
        + "\n[[faults]]\nkind = \"network-partition\"\ntarget = \"order-service-0\"\nat_ms = 1000\nfor_ms = 100\n";
    for (name, text_, expect) in [
        ("delay.toml", delay.as_str(), "network-delay needs tc netem"),
        ("client.toml", client.as_str(), "every client is evsim itself"),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text_).unwrap();
        let started = Instant::now();
        let out = evsim(&["real", path.to_str().unwrap()], &[]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(2), "{all}");
        assert!(all.contains(expect) && all.contains("cannot perform"), "{all}");
        assert!(started.elapsed() < Duration::from_secs(5), "refused only after {:?}", started.elapsed());
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn no_java_exits_2_saying_what_to_install() {
    let out =
        evsim(&["real", "scenarios/order-basic.toml"], &[("PATH", "/nonexistent"), ("EVSIM_KAFKA_NET", "loopback")]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("Java runtime") && all.contains("apt-get install"), "{all}");
}

/// No cached jars and no network (a network namespace of its own, with nothing in it): Maven
/// cannot reach Maven Central, and evsim says what to do.
#[test]
fn no_cached_jars_and_no_network_exits_2_saying_what_to_do() {
    let dir = common::scratch("kafka-offline");
    let repo = dir.join("m2");
    let out = Command::new("unshare")
        .args(["--net", env!("CARGO_BIN_EXE_evsim"), "real", "scenarios/order-basic.toml"])
        .current_dir(common::root())
        .env("EVSIM_KAFKA_HOME", dir.join("kafka"))
        .env("EVSIM_KAFKA_NET", "loopback")
        .env("MAVEN_OPTS", format!("-Dmaven.repo.local={}", repo.display()))
        .output()
        .expect("unshare runs");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("cannot download Apache Kafka") && all.contains("connect to the network"), "{all}");
    assert!(!dir.join("kafka/lib.complete").exists());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_port_in_use_exits_2() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let out = evsim(&["real", "scenarios/order-basic.toml", "--port", &port], &[("EVSIM_KAFKA_NET", "loopback")]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains(&format!("port {port} on 127.0.0.1 is in use")), "{all}");
}
