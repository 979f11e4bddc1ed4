//! The `evsim` command line: verdicts, JSON, exit codes, and clear errors for bad input.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

fn evsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evsim")).args(args).current_dir(common::root()).output().expect("evsim runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn run_prints_verdicts_and_the_history_hash_and_exits_0() {
    let o = evsim(&["run", "scenarios/order-basic.toml", "--seed", "3"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("history hash "), "{out}");
    for name in ["no-oversell", "per-key-order", "eventual-processing", "lost-write", "duplicate", "nonmonotonic-poll"]
    {
        assert!(out.lines().any(|l| l.starts_with(name) && l.ends_with("ok")), "{name} row: {out}");
    }
}

#[test]
fn json_has_the_documented_fields() {
    let o = evsim(&["run", "scenarios/order-basic.toml", "--seed", "3", "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is one JSON object");
    assert_eq!(v["scenario"], "order-basic");
    assert_eq!(v["runs"], 1);
    assert!(v["records_produced"].as_u64().unwrap() > 1000);
    assert!(v["records_consumed"].as_u64().unwrap() > 1000);
    assert_eq!(v["history_hash"].as_str().unwrap().len(), 16);
    let invs = v["invariants"].as_array().unwrap();
    assert_eq!(invs.len(), evsim_model::checkers::Invariant::ALL.len());
    for i in invs {
        assert!(
            i["name"].is_string() && i["held"] == 1 && i["violated"] == 0 && i["first_failing_seed"].is_null(),
            "{i}"
        );
    }
    // The same seed again prints the same hash.
    let again: serde_json::Value =
        serde_json::from_slice(&evsim(&["run", "scenarios/order-basic.toml", "--seed", "3", "--json"]).stdout).unwrap();
    assert_eq!(v["history_hash"], again["history_hash"]);
}

#[test]
fn many_seeds_aggregate_and_a_violation_exits_1_with_the_first_failing_seed() {
    let o = evsim(&["run", "scenarios/order-slow-consumer.toml", "--seeds", "3", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["runs"], 3);
    assert!(v.get("history_hash").is_none(), "no single hash for several seeds");
    let eff = v["invariants"].as_array().unwrap().iter().find(|i| i["name"] == "effect-once").unwrap();
    assert_eq!(eff["violated"], 3);
    assert_eq!(eff["first_failing_seed"], 1);
    assert!(eff["counterexample"]["entries"].as_array().unwrap().len() >= 2);
}

/// Write `text` to a scenario file in a fresh temp dir and run it.
fn run_bad(name: &str, text: &str) -> (Output, String) {
    let dir = std::env::temp_dir().join(format!("evsim-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    let p = path.display().to_string();
    (evsim(&["run", &p]), p)
}

fn basic() -> String {
    std::fs::read_to_string(common::root().join("scenarios/order-basic.toml")).unwrap()
}

#[test]
fn bad_scenarios_exit_2_naming_file_line_and_column() {
    let cases = [
        ("unknown-key", basic().replace("products = 50", "products = 50\nproductz = 1"), "productz"),
        ("wrong-type", basic().replace("rate_per_sec = 1000", "rate_per_sec = \"lots\""), "rate_per_sec"),
        ("negative-partitions", basic().replace("partitions = 3", "partitions = -3"), "partitions = -3"),
        ("unknown-kafka-key", basic().replace("linger.ms = 5", "linger.ms = 5\nlinger.seconds = 1"), "linger.seconds"),
    ];
    for (name, text, needle) in cases {
        let (o, path) = run_bad(name, &text);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        let line = text[..text.find(needle).unwrap()].matches('\n').count() + 1;
        assert!(err.contains(&format!("{path}:{line}:")), "{name}: expected {path}:{line}: in {err}");
        assert!(err.contains("expected"), "{name}: says what was expected: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert!(stdout(&o).is_empty(), "{name}: nothing on stdout");
    }
}

#[test]
fn a_missing_file_and_bad_arguments_exit_2() {
    let o = evsim(&["run", "scenarios/no-such-file.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot read scenario"), "{}", stderr(&o));
    let o = evsim(&["run", "scenarios/order-basic.toml", "--seed", "1", "--seeds", "2"]);
    assert_eq!(o.status.code(), Some(2), "conflicting flags are bad input");
    let o = evsim(&["run", "scenarios/order-basic.toml", "--seeds", "0"]);
    assert_eq!(o.status.code(), Some(2));
    let o = evsim(&["run", "scenarios/order-basic.toml", "--seeds", "18446744073709551615"]);
    assert_eq!(o.status.code(), Some(2), "an absurd seed count is refused, not attempted");
    assert!(!stderr(&o).contains("panicked"));
}

#[test]
fn help_teaches() {
    let o = evsim(&["run", "--help"]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(out.contains("--seeds") && out.contains("Examples") && out.contains("history hash"), "{out}");
    let o = evsim(&["--help"]);
    assert!(stdout(&o).contains("Exit codes"), "{}", stdout(&o));
}

#[test]
fn history_dump_is_json_with_the_header() {
    let dir = std::env::temp_dir().join(format!("evsim-cli-{}-history", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("h.json");
    let o = evsim(&["run", "scenarios/order-slow-consumer-fixed.toml", "--history", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let h: evsim_model::history::History = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(h.header.scenario, "order-slow-consumer-fixed");
    assert!(h.entries.len() > 1000);
}

#[test]
fn every_shipped_scenario_parses() {
    let mut n = 0;
    for entry in std::fs::read_dir(common::root().join("scenarios")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            evsim_sim::files::parse_scenario(&path.display().to_string(), &text).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 3);
}

#[test]
fn a_run_that_moves_no_records_fails_as_vacuous() {
    let text = basic().replace("stock_per_product = 300", "stock_per_product = 0");
    let (o, _) = run_bad("vacuous", &text);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stdout(&o).contains("vacuous"), "{}", stdout(&o));
}

#[test]
fn verify_determinism_runs_each_seed_twice_and_says_so() {
    let o = evsim(&["run", "scenarios/order-failover-acks-all.toml", "--seeds", "2", "--verify-determinism", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["nondeterministic_seeds"], serde_json::json!([]));
    let o = evsim(&["run", "scenarios/order-failover-acks-all.toml", "--verify-determinism"]);
    assert!(stdout(&o).contains("determinism: every seed ran twice with identical histories"), "{}", stdout(&o));
    assert!(stdout(&o).contains("broker-crash broker-0 at 4000 ms for 10000 ms"), "{}", stdout(&o));
}

#[test]
fn check_writes_a_counterexample_that_run_replays_with_exit_1() {
    let dir = std::env::temp_dir().join(format!("evsim-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("ce.toml");
    let o = evsim(&[
        "check",
        "scenarios/coupon-retries-lost-responses.toml",
        "--cases",
        "16",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["found"], true);
    assert_eq!(v["replayed"], true, "{v}");
    assert!(!v["faults"].as_array().unwrap().is_empty());
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.starts_with("# Counterexample found by `evsim check"), "{text}");
    let replay = evsim(&["run", out.to_str().unwrap(), "--json"]);
    assert_eq!(replay.status.code(), Some(1), "{}", stderr(&replay));
    let r: serde_json::Value = serde_json::from_slice(&replay.stdout).unwrap();
    let name = v["invariant"].as_str().unwrap();
    let row = r["invariants"].as_array().unwrap().iter().find(|i| i["name"] == name).unwrap().clone();
    assert_eq!(row["violated"], 1, "{row}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_bad_fault_in_a_scenario_names_the_line_and_exits_2() {
    let dir = std::env::temp_dir().join(format!("evsim-badfault-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    let text = std::fs::read_to_string(common::root().join("scenarios/order-basic.toml")).unwrap()
        + "\n[[faults]]\nkind = \"broker-crash\"\ntarget = \"broker-7\"\nat_ms = 1000\n";
    std::fs::write(&path, &text).unwrap();
    let o = evsim(&["run", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let line = text.lines().position(|l| l.starts_with("target = \"broker-7\"")).unwrap() + 1;
    let err = stderr(&o);
    assert!(err.contains(&format!("bad.toml:{line}:10:")), "{err}");
    assert!(err.contains("broker-crash target \"broker-7\" is not in this scenario; expected a broker"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn real_against_an_unreachable_broker_exits_2() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port();
    let bootstrap = format!("127.0.0.1:{port}");
    let o = evsim(&["real", "scenarios/order-basic.toml", "--broker", "external", "--bootstrap", &bootstrap]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("no Kafka broker answered at {bootstrap}")), "{}", stderr(&o));
}

#[test]
fn real_external_without_bootstrap_exits_2() {
    let o = evsim(&["real", "scenarios/order-basic.toml", "--broker", "external"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--broker external needs --bootstrap"), "{}", stderr(&o));
}

#[test]
fn workflow_compiles_a_workflow_file_or_names_the_place_it_is_wrong() {
    let o = evsim(&["workflow", "scenarios/workflows/order.toml", "--set", "products=7", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is one JSON object");
    assert_eq!(v["workflow"], "order");
    assert_eq!(v["tables"][0]["name"], "orders");
    assert_eq!(v["tables"][1]["initial_rows"], 7);
    assert_eq!(v["requests"][0]["fields"][1], serde_json::json!(["product", "zipf(7, 1)"]));
    assert_eq!(v["invariants"][0], "no-oversell");

    let o = evsim(&["workflow", "scenarios/workflows/order.toml"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("request create-order to order-service at 1000/s"), "{}", stdout(&o));

    let dir = common::scratch("workflow-cli");
    let bad = dir.join("bad.toml");
    let text = std::fs::read_to_string(common::root().join("scenarios/workflows/order.toml")).expect("read");
    std::fs::write(&bad, text.replace("product.stock >= request.qty", "product.stok >= request.qty")).expect("write");
    let o = evsim(&["workflow", bad.to_str().expect("utf-8"), "--json"]);
    assert_eq!(o.status.code(), Some(2));
    let line = text.lines().position(|l| l.contains("product.stock >= request.qty")).expect("the guard") + 1;
    assert!(stderr(&o).contains(&format!("bad.toml:{line}:")), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("the JSON error");
    assert_eq!(v["exit_code"], 2);
    let o = evsim(&["workflow", "scenarios/workflows/order.toml", "--set", "products"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("NAME=VALUE"), "{}", stderr(&o));
    let o = evsim(&["workflow", "scenarios/workflows/order.toml", "--set", "products=lots"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("an integer"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).ok();
}

/// A scenario directory with `s.toml` (order-workflow, edited by `scenario`) and
/// `workflows/order.toml` (the order workflow, edited by `workflow`).
fn workflow_dir(name: &str, scenario: &dyn Fn(String) -> String, workflow: &dyn Fn(String) -> String) -> PathBuf {
    let dir = common::scratch(&format!("cli-workflow-{name}"));
    std::fs::create_dir_all(dir.join("workflows")).unwrap();
    let text = std::fs::read_to_string(common::root().join("scenarios/order-workflow.toml")).unwrap();
    std::fs::write(dir.join("s.toml"), scenario(text)).unwrap();
    std::fs::write(dir.join("workflows/order.toml"), workflow(common::order_workflow_text())).unwrap();
    dir
}

#[test]
fn a_scenario_runs_the_workflow_file_it_names_and_its_verdicts_are_the_workflow_s() {
    let o = evsim(&["run", "scenarios/order-workflow.toml", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["workflow"], "scenarios/workflows/order.toml");
    assert!(v["records_consumed"].as_u64().unwrap() > 4_000, "{v}");
    let o = evsim(&["run", "scenarios/order-workflow.toml"]);
    assert!(stdout(&o).contains("workflow scenarios/workflows/order.toml"), "{}", stdout(&o));
    assert!(stdout(&o).contains("requests 10071, committed 4816"), "{}", stdout(&o));
    // The same scenario with the stock guard left out of the workflow file oversells: exit 1.
    let dir = workflow_dir("no-guard", &|s| s, &|w| {
        w.lines().filter(|l| !l.contains("require = \"product.stock")).collect::<Vec<_>>().join("\n")
    });
    let o = evsim(&["run", dir.join("s.toml").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stdout(&o).contains("breaks `product.stock >= 0`"), "{}", stdout(&o));
    // `evsim check` shrinks it and writes a counterexample elsewhere that names the workflow
    // file by its absolute path, and replays from there.
    let out = dir.join("elsewhere");
    std::fs::create_dir_all(&out).unwrap();
    let ce = out.join("ce.toml");
    let o = evsim(&["check", dir.join("s.toml").to_str().unwrap(), "--out", ce.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!((v["invariant"].as_str(), v["replayed"].as_bool()), (Some("no-oversell"), Some(true)), "{v}");
    let text = std::fs::read_to_string(&ce).unwrap();
    let workflow = std::path::absolute(dir.join("workflows/order.toml")).unwrap();
    assert!(text.contains(&format!("file = \"{}\"", workflow.display())), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}

/// An invariant the workflow declares under a name of its own is claimed, judged and reported
/// under that name: the stock guard left out, `stock-never-negative` fails the run (exit 1).
#[test]
fn a_workflow_s_own_invariant_is_judged_under_its_name() {
    let rename = |w: String| w.replace("[invariants.no-oversell]", "[invariants.stock-never-negative]");
    let claim = |s: String| s.replacen("  \"no-oversell\",", "  \"stock-never-negative\",", 1);
    let held = workflow_dir("own-invariant", &claim, &rename);
    let o = evsim(&["run", held.join("s.toml").to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let own = v["invariants"].as_array().unwrap().iter().find(|i| i["name"] == "stock-never-negative").cloned();
    let own = own.expect("reported under its name");
    assert_eq!((own["claimed"].as_bool(), own["held"].as_u64()), (Some(true), Some(1)), "{own}");
    let broken = workflow_dir("own-invariant-broken", &claim, &|w| {
        rename(w).lines().filter(|l| !l.contains("require = \"product.stock")).collect::<Vec<_>>().join("\n")
    });
    let o = evsim(&["run", broken.join("s.toml").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let line = stdout(&o).lines().find(|l| l.starts_with("stock-never-negative")).map(str::to_string);
    assert!(line.as_deref().is_some_and(|l| l.contains("claimed") && l.contains(" 1 ")), "{}", stdout(&o));
    std::fs::remove_dir_all(&held).ok();
    std::fs::remove_dir_all(&broken).ok();
}

#[test]
fn a_missing_workflow_file_or_a_bad_parameter_exits_2_at_the_scenario_s_line() {
    let dir = workflow_dir("missing", &|s| s.replace("workflows/order.toml", "workflows/ordr.toml"), &|w| w);
    let path = dir.join("s.toml");
    let o = evsim(&["run", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("{}:41:8: cannot read the workflow file", path.display())), "{}", stderr(&o));
    let dir = workflow_dir("param", &|s| s.replace("users = 5000", "users = 5000.5"), &|w| w);
    let path = dir.join("s.toml");
    let o = evsim(&["run", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("{}:44:", path.display())), "{}", stderr(&o));
    assert!(stderr(&o).contains("expected an integer for params.users"), "{}", stderr(&o));
}

#[test]
fn a_sweep_varies_a_workflow_parameter() {
    let o = evsim(&[
        "sweep",
        "scenarios/order-workflow.toml",
        "--vary",
        "workflow.params.stock_per_product=20,300",
        "--seeds",
        "1",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let records: Vec<u64> =
        v["settings"].as_array().unwrap().iter().map(|s| s["records_produced"].as_u64().unwrap()).collect();
    assert_eq!(records.len(), 2);
    assert!(records[0] < records[1] / 5, "less stock, fewer orders committed: {records:?}");
}

/// `evsim bench` measures a workflow scenario at the sum of its request streams' rates, with
/// the workflow's parameters changed by `--set` (so that orders keep committing); a setting
/// the scenario lacks is bad input.
#[test]
fn bench_measures_a_workflow_with_its_parameters_set() {
    let args = ["bench", "scenarios/order-workflow.toml", "--orders", "2000", "--repeat", "1", "--json"];
    let scaled = [&args[..], &["--set", "workflow.params.stock_per_product=6000"]].concat();
    let o = evsim(&scaled);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    let records = v["records"].as_u64().expect("records");
    // Every order commits with the stock grown: about 2,000 records at 1,000 requests a second.
    assert!((1800..2200).contains(&records), "{v}");
    let plain: serde_json::Value = serde_json::from_slice(&evsim(&args).stdout).expect("one JSON object");
    assert!(plain["records"].as_u64().expect("records") < records, "without --set, stock runs out: {plain}");

    let bad = evsim(&[&args[..], &["--set", "workflow.params.nope=1"]].concat());
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("nope"), "{}", stderr(&bad));
}
