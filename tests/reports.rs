//! Sweeps and reports: deterministic sweeps, the charts a design review asks for, the files a
//! report writes, and clear errors for bad `--vary` input.

mod common;

use evsim_reports::charts::Plot;
use evsim_reports::sweep::{Plan, SweepResult};
use evsim_reports::vary::{parse_axis, parse_set};
use std::process::{Command, Output};

fn evsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evsim")).args(args).current_dir(common::root()).output().expect("evsim runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("evsim-reports-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn plan(scenario: &str, axes: &[&str], sets: &[&str]) -> Plan {
    let file = format!("scenarios/{scenario}.toml");
    let source = std::fs::read_to_string(common::root().join(&file)).unwrap();
    let axes = axes.iter().map(|a| parse_axis(a).unwrap()).collect();
    let sets: Vec<_> = sets.iter().map(|s| parse_set(s).unwrap()).collect();
    Plan::new(&file, &source, &sets, axes).unwrap_or_else(|e| panic!("{e}"))
}

/// A line chart's lines: (name, points).
type Lines = Vec<(String, Vec<(f64, f64)>)>;

/// A sweep chart's finding and lines.
fn series(r: &SweepResult, chart: &str) -> (String, Lines) {
    let charts = r.charts();
    let c = charts.iter().find(|c| c.id == chart).unwrap_or_else(|| panic!("no {chart} chart"));
    let Plot::Lines { series, .. } = &c.plot else { panic!("{chart} is not a line chart") };
    (c.finding.clone(), series.iter().map(|s| (s.name.clone(), s.points.clone())).collect())
}

#[test]
fn a_sweep_gives_the_same_result_on_one_thread_and_on_two() {
    let p = plan(
        "order-basic",
        &["services.*.producer.acks=1,all"],
        &["services.*.producer.enable.idempotence=false", "run.duration_ms=1000"],
    );
    assert_eq!(p.settings.len(), 2);
    let one = p.run(3, 1, &|_| {});
    let two = p.run(3, 2, &|_| {});
    assert_eq!(one, two);
    assert_eq!(one.runs, 6);
    assert!(one.settings.iter().all(|s| s.records_produced > 0 && s.records_consumed > 0), "{one:#?}");
    assert_eq!(one.settings[0].values, ["1"]);
    assert_eq!(
        p.settings[0].scenario.services[0].producer.acks,
        evsim_model::scenario::Acks::Leader,
        "the setting reached the scenario"
    );
}

/// Seed 003's "3 partitions, concurrency 3" claim against the key: one hot coupon (every request
/// keyed by the same couponId) stays on one partition and one issuer however many there are,
/// while many coupons spread out. The issuer handles 500 requests/s (2 ms each); the API offers
/// 3,000/s.
#[test]
fn the_coupon_sweep_shows_one_hot_coupon_flat_and_many_coupons_scaling() {
    let p = plan(
        "coupon-seed003",
        &["topics.coupon-issue-request.partitions+consumers.coupon-issuer.instances=1,4,8", "workload.coupons=1,100"],
        &[
            "workload.coupon_rate_per_sec=3000",
            "workload.users=1000000",
            "run.duration_ms=2000",
            "run.quiet_period_ms=4000",
        ],
    );
    let r = p.run(1, 2, &|_| {});
    let (finding, lines) = series(&r, "throughput");
    let of = |name: &str| lines.iter().find(|l| l.0 == name).unwrap_or_else(|| panic!("{name}: {lines:?}")).1.clone();
    let hot = of("coupons = 1");
    let many = of("coupons = 100");
    let (lo, hi) = hot.iter().fold((f64::MAX, 0f64), |(a, b), p| (a.min(p.1), b.max(p.1)));
    assert!(hi / lo < 1.1, "one hot coupon does not scale: {hot:?}");
    assert!((400.0..=520.0).contains(&hi), "one issuer's 500 records/s: {hot:?}");
    assert!(many[2].1 > 3.0 * many[0].1, "100 coupons over 8 partitions and issuers: {many:?}");
    assert!(finding.starts_with("With coupons = 1, throughput stays near "), "{finding}");
    assert!(finding.contains("with coupons = 100, it rises from"), "{finding}");
}

/// Lost responses and retries with 5 requests in flight: without idempotence a key's records
/// land out of order (and twice); with it, never. The ordering chart shows it.
#[test]
fn the_ordering_chart_separates_idempotence_off_from_on() {
    let p = plan("coupon-retries-lost-responses", &["services.*.producer.enable.idempotence=false,true"], &[]);
    let r = p.run(2, 2, &|_| {});
    let charts = r.charts();
    let c = charts.iter().find(|c| c.id == "ordering").expect("an ordering chart");
    let Plot::Bars { categories, series } = &c.plot else { panic!("categorical axis: bars") };
    assert_eq!(categories, &["false", "true"]);
    assert!(series[0].1[0] > 0.0 && series[0].1[1] == 0.0, "{series:?}");
    assert!(
        c.finding.contains("enable.idempotence = false")
            || c.finding.contains("ranges from")
            || c.finding.contains("falls"),
        "{}",
        c.finding
    );
    // The sweep found the violation and kept its story, replayed from its seed.
    let ce = r.counterexamples.iter().find(|c| c.invariant == "nonmonotonic-send").expect("a counterexample");
    assert_eq!(ce.setting.as_deref(), Some("enable.idempotence=false"));
    assert!(!ce.steps.is_empty() && ce.mermaid().starts_with("sequenceDiagram"));
}

#[test]
fn a_scenario_report_writes_a_self_contained_page_markdown_json_and_charts() {
    let s = common::scenario("order-failover-acks1");
    let outcome = evsim_sim::run_scenario(&s, s.run.seed);
    let report = evsim_reports::scenario::report(&s, "scenarios/order-failover-acks1.toml", &outcome);
    let dir = temp_dir("scenario");
    let json = serde_json::to_value(&report.summary).unwrap();
    let files = evsim_reports::page::write(&dir, &report.page("evsim report ..."), &json).unwrap();
    for f in ["index.html", "summary.md", "summary.json", "charts/lag.svg", "charts/lag.png", "charts/latency.svg"] {
        assert!(files.contains(&dir.join(f)), "{f} not written: {files:?}");
    }
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    // Nothing to fetch: no scripts, no links, no external images or styles.
    for bad in ["<script", "src=", "href=\"http", "@import", "url(http"] {
        assert!(!html.contains(bad), "the page fetches something: {bad}");
    }
    assert_eq!(html.matches("<svg").count(), 2 + report.counterexamples.len(), "two charts and a diagram each");
    assert!(html.contains("VIOLATED: eventual-processing, lost-write") || html.contains("VIOLATED: "), "verdict");
    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(md.contains("![Does consumer lag return to zero?](charts/lag.svg)"), "{md}");
    assert_eq!(md.matches("```mermaid\nsequenceDiagram").count(), report.counterexamples.len());
    let lost = report.counterexamples.iter().find(|c| c.invariant == "lost-write").expect("lost-write's story");
    assert!(lost.timeline.iter().any(|l| l.contains("broker-crash starts")), "{:?}", lost.timeline);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(v["passed"], false);
    assert!(v["charts"][0]["finding"].as_str().is_some_and(|f| f.ends_with('.')));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_lag_chart_shades_the_faults_and_says_where_lag_peaked() {
    let s = common::scenario("order-failover-acks-all");
    let outcome = evsim_sim::run_scenario(&s, s.run.seed);
    let report = evsim_reports::scenario::report(&s, "f", &outcome);
    let lag = report.charts.iter().find(|c| c.id == "lag").unwrap();
    let Plot::Lines { bands, series, .. } = &lag.plot else { panic!() };
    assert_eq!(
        bands.iter().filter(|b| b.kind == 0).count(),
        3,
        "three faults shaded (two lossy links, a crash): {bands:?}"
    );
    assert!(series[0].points.iter().any(|p| p.1 > 0.0));
    assert!(lag.finding.contains("lag peaks at") && lag.finding.contains("back to 0"), "{}", lag.finding);
}

#[test]
fn sweep_and_report_on_the_command_line() {
    let dir = temp_dir("cli");
    let json = dir.join("acks.json");
    let o = evsim(&[
        "sweep",
        "scenarios/order-basic.toml",
        "--vary",
        "services.*.producer.acks=1,all",
        "--set",
        "run.duration_ms=500",
        "--set",
        "services.*.producer.enable.idempotence=false",
        "--seeds",
        "2",
        "--out",
        json.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("2 setting(s) x 2 seeds = 4 runs"), "{out}");
    let report = dir.join("report");
    let o = evsim(&["report", json.to_str().unwrap(), "--out", report.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let md = std::fs::read_to_string(report.join("summary.md")).unwrap();
    assert!(
        md.contains("evsim sweep scenarios/order-basic.toml --vary 'services.*.producer.acks=1,all' --set"),
        "{md}"
    );
    assert!(report.join("charts/throughput.svg").is_file());
    // A scenario report of a violated design exits 1 and is written all the same.
    let o = evsim(&["report", "scenarios/coupon-no-dedup.toml", "--out", report.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(std::fs::read_to_string(report.join("summary.md")).unwrap().contains("### coupon-once (claimed) violated"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_sweep_input_exits_2_and_says_what_was_expected() {
    for (args, want) in [
        (&["--vary", "partitions"][..], "expected KEY=V1,V2"),
        (&["--vary", "services.*.producer.acks=all,2"][..], "scenarios/order-basic.toml with acks=2: "),
        (&["--vary", "services.*.producer.acks=1,all"][..], "`enable.idempotence = true` requires `acks = \"all\"`"),
        (&["--vary", "topic.order-created.partitions=1,2"][..], "`topic` is not in the scenario"),
        (&["--vary", "topics.order-creatd.partitions=1,2"][..], "`order-creatd` is not in `topics`"),
        (&["--vary", "workload.quantity_maximum=1,2"][..], "unknown field `quantity_maximum`"),
        (&["--vary", "nothing.*.x=1"][..], "matched no table"),
        (&["--vary", "run.seed=1,2"][..], "use --seeds"),
        (&["--vary", "workload.users=10,20", "--set", "workload.users=5"][..], "`workload.users` is changed twice"),
        (&["--set", "run.duration_ms"][..], "expected KEY=VALUE"),
    ] {
        let mut all = vec!["sweep", "scenarios/order-basic.toml"];
        all.extend_from_slice(args);
        let o = evsim(&all);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
    let dir = temp_dir("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let not_a_sweep = dir.join("x.json");
    std::fs::write(&not_a_sweep, "{\n  \"scenario\": 3\n}\n").unwrap();
    let o = evsim(&["report", not_a_sweep.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("x.json:2:") && stderr(&o).contains("not a sweep result"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).ok();
}
