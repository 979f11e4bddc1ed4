//! Bounded input, never a wrong run: every documented limit (docs/scenario-format.md, "Limits")
//! is an exit 2 naming the file, line and column where the value stands; `--json` puts the
//! error on stdout too; a run that reaches its event budget stops with exit 2 instead of
//! running on in silence or giving a verdict.

mod common;

use std::process::{Command, Output};

fn evsim(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_evsim"));
    cmd.args(args).current_dir(common::root());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("evsim runs")
}

fn text_of(name: &str) -> String {
    std::fs::read_to_string(common::root().join("scenarios").join(format!("{name}.toml"))).unwrap()
}

/// `text` with the first line starting with `from` replaced by `to`.
fn with_line(text: &str, from: &str, to: &str) -> String {
    assert!(text.lines().any(|l| l.starts_with(from)), "no line starting with {from}");
    let mut done = false;
    text.lines()
        .map(|l| {
            if !done && l.starts_with(from) {
                done = true;
                to.to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Consumer groups of `instances` members each, appended to order-basic.
fn many_groups(groups: usize, instances: u32) -> String {
    let mut s = text_of("order-basic");
    for g in 0..groups {
        s.push_str(&format!(
            "\n[consumers.extra-{g}]\nkind = \"order-event-consumer\"\ninstances = {instances}\ntopics = [\"order-created\"]\n\
             processing_time_us = 100\ncommit_strategy = \"commit-after-process\"\n\n[consumers.extra-{g}.consumer]\ngroup.id = \"extra-{g}\"\nauto.offset.reset = \"earliest\"\n"
        ));
    }
    s
}

/// Topics of `partitions` partitions each, appended to order-basic.
fn many_topics(topics: usize, partitions: u32, rf: u32) -> String {
    let mut s = text_of("order-basic").replace("brokers = 1 ", &format!("brokers = {rf} "));
    for t in 0..topics {
        s.push_str(&format!("\n[topics.extra-{t}]\npartitions = {partitions}\nreplication.factor = {rf}\n"));
    }
    s
}

/// Every limit, tried at a value past it: (case, scenario text, the text where the error must
/// point, a phrase of its message).
fn cases() -> Vec<(&'static str, String, &'static str, &'static str)> {
    let coupons = text_of("coupon-retries-lost-responses");
    let queue = text_of("waiting-queue-global");
    let basic = text_of("order-basic");
    vec![
        (
            "coupon requests count towards the request cap",
            with_line(&coupons, "coupon_rate_per_sec", "coupon_rate_per_sec = 10_000_000"),
            "coupon_rate_per_sec = 10_000_000",
            "expected at most 5000000",
        ),
        (
            "waiting-queue entries count towards the request cap",
            with_line(&queue, "queue_rate_per_sec", "queue_rate_per_sec = 1_000_000"),
            "queue_rate_per_sec = 1_000_000",
            "expected at most 5000000",
        ),
        (
            "a rate above ten million a second",
            with_line(&basic, "duration_ms", "duration_ms = 10")
                .replace("rate_per_sec = 1000 ", "rate_per_sec = 20_000_000 "),
            "rate_per_sec = 20_000_000",
            "expected",
        ),
        (
            "partitions of one topic",
            with_line(&basic, "partitions = 3", "partitions = 100_001"),
            "partitions = 100_001",
            "expected an integer from 1 to 100000",
        ),
        (
            "partitions over every topic (200 topics of 1,000)",
            many_topics(200, 1_000, 1),
            "partitions = 1000",
            "partitions",
        ),
        ("brokers", with_line(&basic, "brokers = 1", "brokers = 1000"), "brokers = 1000", "expected"),
        ("replicas (100 brokers, RF 100)", many_topics(40, 100, 100), "replication.factor = 100", "replicas"),
        ("processes (3 groups of 1,000 consumers)", many_groups(3, 1_000), "instances = 1000", "processes"),
        ("instances of one group", with_line(&basic, "instances = 3", "instances = 1001"), "instances = 1001", "1000"),
        (
            "one year of simulated time",
            with_line(&basic, "duration_ms", "duration_ms = 31_536_000_001"),
            "duration_ms = 31_536_000_001",
            "expected",
        ),
        ("topics (10,001)", many_topics(10_000, 1, 1), "[topics.", "expected at most 10000 topics"),
        (
            "(partition, producer instance) pairs: 51 producers on 100,000 partitions",
            with_line(&basic, "partitions = 3", "partitions = 100_000").replace("instances = 2", "instances = 51"),
            "instances = 51",
            "expected at most 5000000",
        ),
        (
            "(group, partition) pairs: 11 groups on 100,000 partitions",
            {
                let mut t = many_groups(10, 1);
                t = with_line(&t, "partitions = 3", "partitions = 100_000");
                t
            },
            "[consumers.",
            "expected at most 1000000",
        ),
        (
            "faults (10,001)",
            {
                let mut t = basic.clone();
                for i in 0..10_001 {
                    t.push_str(&format!(
                        "\n[[faults]]\nkind = \"broker-crash\"\ntarget = \"broker-0\"\nat_ms = {}\n",
                        1000 + i
                    ));
                }
                t
            },
            "[[faults]]",
            "expected at most 10000",
        ),
        (
            "users with a payment service",
            with_line(&text_of("payment-basic"), "users", "users = 4_000_000_000"),
            "users = 4_000_000_000",
            "expected at most 10000000",
        ),
        (
            "retries above Java's int",
            with_line(
                &basic,
                "commit_strategy",
                "commit_strategy = \"retry-then-dlq\"\ndlq_topic = \"order-created-dlt\"\nretries = 3_000_000_000",
            ) + "\n[topics.order-created-dlt]\npartitions = 1\n",
            "retries = 3_000_000_000",
            "expected an integer from 0 to 2147483647",
        ),
        (
            "a dead-letter topic the group reads",
            with_line(&basic, "commit_strategy", "commit_strategy = \"retry-then-dlq\"\ndlq_topic = \"order-created\""),
            "[consumers.order-event-consumer]",
            "expected a topic of its own for dead letters",
        ),
        (
            "a cross-field error: idempotence without acks=all",
            basic.replace("acks = \"all\"", "acks = \"1\""),
            "enable.idempotence = true",
            "requires `acks = \"all\"`",
        ),
    ]
}

#[test]
fn every_limit_is_an_exit_2_at_the_value() {
    let dir = common::scratch("limits");
    for (i, (case, text, at, says)) in cases().into_iter().enumerate() {
        let path = dir.join(format!("case-{i}.toml"));
        std::fs::write(&path, &text).unwrap();
        let p = path.display().to_string();
        let o = evsim(&["run", &p], &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{case}: {err}");
        // The error points at a line holding the value (the first such line for repeated ones,
        // or a later one: the limit is crossed where the sum passes it).
        let lines: Vec<usize> = text.lines().enumerate().filter(|(_, l)| l.contains(at)).map(|(n, _)| n + 1).collect();
        let located = lines.iter().any(|l| err.contains(&format!("{p}:{l}:")));
        assert!(located, "{case}: expected {p}:<one of {lines:?}>: in {err}");
        assert!(err.contains(says), "{case}: expected {says:?} in {err}");
        assert!(!err.contains("panicked"), "{case}: {err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn invalid_utf8_names_the_line_and_column() {
    let dir = common::scratch("utf8");
    let path = dir.join("bad.toml");
    let mut bytes = b"# a scenario\nname = \"caf".to_vec();
    bytes.extend([0xff, b'"', b'\n']);
    std::fs::write(&path, bytes).unwrap();
    let p = path.display().to_string();
    let o = evsim(&["run", &p], &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("{p}:2:12:")), "{err}");
    assert!(err.contains("not UTF-8"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn with_json_an_exit_2_prints_the_error_object_on_stdout() {
    for args in [
        vec!["run", "scenarios/no-such-file.toml", "--json"],
        vec!["run", "scenarios/order-basic.toml", "--seeds", "0", "--json"],
        vec!["sweep", "scenarios/order-basic.toml", "--vary", "no.such.key=1,2", "--json"],
    ] {
        let o = evsim(&args, &[]);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not one JSON object ({e}): {:?}", o.stdout));
        assert_eq!(v["exit_code"], 2, "{v}");
        let message = v["error"].as_str().unwrap_or_else(|| panic!("{v}"));
        assert!(!message.is_empty());
        // The same message is on stderr for a person.
        assert!(String::from_utf8_lossy(&o.stderr).contains(message.lines().next().unwrap()), "{args:?}");
    }
}

#[test]
fn bad_bootstrap_servers_are_refused_at_once() {
    for bad in ["", "garbage", "localhost:", "localhost:99999", ",,"] {
        let started = std::time::Instant::now();
        let o = evsim(&["real", "scenarios/order-basic.toml", "--broker", "external", "--bootstrap", bad], &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {err}");
        assert!(err.contains("expected host:port"), "{bad:?}: {err}");
        // Refused while parsing the arguments, not after a connection attempt timed out.
        assert!(!err.contains("no Kafka broker answered"), "{bad:?}: {err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{bad:?} took {:?}", started.elapsed());
    }
}

#[test]
fn a_run_that_reaches_its_event_budget_stops_with_exit_2() {
    let o = evsim(&["run", "scenarios/order-basic.toml", "--json"], &[("EVSIM_EVENT_BUDGET", "10000")]);
    assert_eq!(o.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("the JSON error object");
    let message = v["error"].as_str().unwrap();
    assert!(message.contains("budget of 10000 events"), "{message}");
    assert!(message.contains("the run stopped at"), "{message}");
    // Under the budget, the same run gives its verdict.
    let o = evsim(&["run", "scenarios/order-basic.toml", "--json"], &[("EVSIM_EVENT_BUDGET", "10000000")]);
    assert_eq!(o.status.code(), Some(0));
    // The budget can only be lowered, and a bad value is ignored rather than misread.
    let o = evsim(&["run", "scenarios/order-basic.toml", "--json"], &[("EVSIM_EVENT_BUDGET", "lots")]);
    assert_eq!(o.status.code(), Some(0));
}

/// Ids that would wrap are refused (above), and a group as large as a consumer may be, 1,000
/// members beside the scenario's own group, runs correctly: every process keeps its own name
/// and every invariant holds.
#[test]
fn the_largest_accepted_process_count_runs_correctly() {
    use evsim_model::scenario::Scenario;
    let text = many_groups(1, 1_000);
    let mut s = Scenario::parse("groups.toml", &text).expect("under the process limit");
    s.run.duration_ms = 200;
    s.run.quiet_period_ms = 30_000;
    s.workload.rate_per_sec = 200.0;
    let o = evsim_sim::run_scenario(&s, 1);
    assert!(o.passed(), "{:?}", o.verdicts.iter().filter(|v| !v.violations.is_empty()).collect::<Vec<_>>());
    let names: std::collections::BTreeSet<&str> = o.history.header.nodes.iter().map(String::as_str).collect();
    assert_eq!(names.len(), o.history.header.nodes.len(), "every process has its own name");
    assert!(names.contains("extra-0-999"), "the last consumer is named");
}
