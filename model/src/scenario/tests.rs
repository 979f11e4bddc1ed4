use super::*;

const BASIC: &str = include_str!("../../../scenarios/order-basic.toml");

fn parse(src: &str) -> Result<Scenario, ScenarioError> {
    Scenario::parse("s.toml", src)
}

/// `BASIC` with `from` replaced by `to` (which must occur).
fn edit(from: &str, to: &str) -> String {
    assert!(BASIC.contains(from), "test fixture lacks {from:?}");
    BASIC.replacen(from, to, 1)
}

/// 1-based line of the first occurrence of `needle` in `src`.
fn line_of(src: &str, needle: &str) -> usize {
    src[..src.find(needle).expect("needle present")].matches('\n').count() + 1
}

#[test]
fn order_basic_parses_with_kafka_names() {
    let s = parse(BASIC).expect("order-basic parses");
    assert_eq!(s.name, "order-basic");
    assert_eq!(s.topics, vec![TopicSpec { name: "order-created".into(), partitions: 3, replication_factor: 1 }]);
    let p = &s.services[0].producer;
    assert_eq!(p.acks, Acks::All);
    assert_eq!(p.retries, 3);
    assert_eq!(p.max_in_flight_requests_per_connection, 1);
    assert!(p.enable_idempotence);
    let c = &s.consumers[0].consumer;
    assert_eq!(c.group_id, "hhplus-ecommerce-group");
    assert!(!c.enable_auto_commit);
    assert_eq!(c.auto_offset_reset, OffsetReset::Earliest);
    assert_eq!(s.consumers[0].commit_strategy, CommitStrategy::CommitAfterProcess);
    assert_eq!(s.run.invariants.len(), 10);
    assert_eq!(s.broker.group_initial_rebalance_delay_ms, 3000);
}

#[test]
fn quoted_and_dotted_kafka_keys_are_the_same() {
    let dotted = parse(BASIC).unwrap();
    let quoted =
        parse(&edit("max.in.flight.requests.per.connection = 1", "\"max.in.flight.requests.per.connection\" = 1"))
            .unwrap();
    assert_eq!(dotted, quoted);
}

#[test]
fn unknown_kafka_key_names_its_line_and_the_known_keys() {
    let src = edit("linger.ms = 5", "linger.msec = 5");
    let e = parse(&src).unwrap_err();
    assert_eq!(e.line, line_of(&src, "linger.msec"), "{e}");
    assert!(e.message.contains("unknown key `linger.msec`"), "{e}");
    assert!(e.message.contains("linger.ms"), "lists known keys: {e}");
}

#[test]
fn unknown_scenario_key_is_an_error_at_its_place() {
    let src = edit("products = 50", "products = 50\nproducts_typo = 3");
    let e = parse(&src).unwrap_err();
    assert_eq!(e.line, line_of(&src, "products_typo"), "{e}");
    assert_eq!(e.column, 1);
    assert!(e.message.contains("unknown field `products_typo`"), "{e}");
    assert!(e.to_string().starts_with(&format!("s.toml:{}:1:", e.line)), "{e}");
}

#[test]
fn negative_and_zero_partitions_are_rejected_at_the_value() {
    for bad in ["partitions = -3", "partitions = 0"] {
        let src = edit("partitions = 3", bad);
        let e = parse(&src).unwrap_err();
        assert_eq!(e.line, line_of(&src, bad), "{e}");
        assert!(e.message.contains("expected an integer from 1 to"), "{e}");
    }
}

#[test]
fn wrong_types_say_what_was_expected() {
    let src = edit("rate_per_sec = 1000", "rate_per_sec = \"fast\"");
    let e = parse(&src).unwrap_err();
    assert_eq!(e.line, line_of(&src, "rate_per_sec"), "{e}");
    assert!(e.message.contains("expected"), "{e}");

    let src = edit("enable.idempotence = true", "enable.idempotence = 3");
    let e = parse(&src).unwrap_err();
    assert!(e.message.contains("expected `true` or `false`"), "{e}");

    let src = edit("acks = \"all\"", "acks = \"most\"");
    let e = parse(&src).unwrap_err();
    assert!(e.message.contains("expected one of `all`, `1`, `0`"), "{e}");
    assert_eq!(e.line, line_of(&src, "acks = \"most\""));
}

#[test]
fn acks_accepts_integers_as_kafka_does() {
    let s = parse(&edit("acks = \"all\"", "acks = -1")).unwrap();
    assert_eq!(s.services[0].producer.acks, Acks::All);
    let s =
        parse(&edit("acks = \"all\"", "acks = 1").replace("enable.idempotence = true", "enable.idempotence = false"))
            .unwrap();
    assert_eq!(s.services[0].producer.acks, Acks::Leader);
}

#[test]
fn idempotence_requires_acks_all() {
    let e = parse(&edit("acks = \"all\"", "acks = 1")).unwrap_err();
    assert!(e.message.contains("requires `acks = \"all\"`"), "{e}");
}

#[test]
fn unknown_invariant_lists_the_known_ones() {
    let src = edit("\"duplicate\",", "\"dupes\",");
    let e = parse(&src).unwrap_err();
    assert_eq!(e.line, line_of(&src, "\"dupes\""));
    assert!(e.message.contains("no-oversell"), "{e}");
}

#[test]
fn commit_strategy_must_agree_with_enable_auto_commit() {
    let e = parse(&edit("enable.auto.commit = false", "enable.auto.commit = true")).unwrap_err();
    assert!(e.message.contains("needs `enable.auto.commit = false`"), "{e}");
    let s = parse(
        &edit("commit_strategy = \"commit-after-process\"", "commit_strategy = \"auto-commit\"")
            .replace("enable.auto.commit = false", "enable.auto.commit = true"),
    )
    .unwrap();
    assert_eq!(s.consumers[0].commit_strategy, CommitStrategy::AutoCommit);
}

#[test]
fn replication_beyond_the_broker_count_is_refused() {
    let e = parse(&edit("replication.factor = 1", "replication.factor = 3")).unwrap_err();
    assert!(e.message.contains("has replication.factor 3 but the cluster has 1 broker(s)"), "{e}");
    let ok = edit("brokers = 1 ", "brokers = 3 ").replacen("replication.factor = 1", "replication.factor = 3", 1);
    assert_eq!(parse(&ok).expect("three brokers hold three replicas").topics[0].replication_factor, 3);
    let e = parse(&ok.replacen(
        "group.initial.rebalance.delay.ms = 3000",
        "group.initial.rebalance.delay.ms = 3000\nmin.insync.replicas = 4",
        1,
    ))
    .unwrap_err();
    assert!(e.message.contains("NOT_ENOUGH_REPLICAS"), "{e}");
}

const FAULT: &str = "\n[[faults]]\nkind = \"broker-crash\"\ntarget = \"broker-0\"\nat_ms = 2000\nfor_ms = 1000\n";

#[test]
fn a_fault_schedule_parses_in_file_order() {
    let src = format!(
        "{BASIC}{FAULT}\n[[faults]]\nkind = \"network-loss\"\ntarget = \"order-service-0\"\npeer = \"broker-0\"\n\
         direction = \"inbound\"\nrate = 0.5\nat_ms = 100\n"
    );
    let s = parse(&src).expect("parses");
    assert_eq!(s.faults.len(), 2);
    assert_eq!(s.faults[0].kind, FaultKind::BrokerCrash);
    assert_eq!(s.faults[0].for_ms, Some(1000));
    let loss = &s.faults[1];
    assert_eq!(
        (loss.kind, loss.rate, loss.direction, loss.for_ms),
        (FaultKind::NetworkLoss, 0.5, Direction::Inbound, None)
    );
    assert_eq!(loss.peer.as_deref(), Some("broker-0"));
    assert_eq!(loss.describe(), "network-loss order-service-0 <- broker-0 (loss 0.5) at 100 ms until the end");
}

#[test]
fn bad_faults_are_located_and_say_what_was_expected() {
    let cases: [(&str, &str, &str); 6] = [
        (
            "kind = \"broker-crash\"",
            "kind = \"meteor\"",
            "unknown fault kind \"meteor\"; expected one of: broker-crash",
        ),
        (
            "target = \"broker-0\"",
            "target = \"order-service-0\"",
            "broker-crash target \"order-service-0\" is not in this scenario",
        ),
        ("at_ms = 2000", "at_ms = 30000", "the run ends at 30000 ms"),
        ("for_ms = 1000", "for_ms = 0", "`for_ms` is 0"),
        ("for_ms = 1000", "for_ms = 1000\nrate = 0.5", "`rate` applies to network-loss faults only"),
        ("for_ms = 1000", "for_ms = 1000\npeer = \"broker-0\"", "`peer` applies to network faults only"),
    ];
    for (from, to, expected) in cases {
        let src = format!("{BASIC}{}", FAULT.replacen(from, to, 1));
        let e = parse(&src).unwrap_err();
        assert!(e.message.contains(expected), "{to}: {e}");
        assert!(e.line > line_of(&src, "[[faults]]"), "{to}: not located: {e}");
    }
    let src = format!("{BASIC}\n[[faults]]\nkind = \"network-loss\"\ntarget = \"broker-0\"\nat_ms = 5\n");
    assert!(parse(&src).unwrap_err().message.contains("has no `rate`"));
}

#[test]
fn a_swarm_table_names_the_kinds_to_draw() {
    let s =
        parse(&format!("{BASIC}\n[swarm]\nkinds = [\"consumer-pause\", \"network-loss\"]\nmax_faults = 2\n")).unwrap();
    let sw = s.swarm.expect("swarm");
    assert_eq!(sw.kinds, vec![FaultKind::ConsumerPause, FaultKind::NetworkLoss]);
    assert_eq!(sw.max_faults, 2);
    assert!(sw.targets.is_empty());
    let s = parse(&format!("{BASIC}\n[swarm]\nkinds = [\"network-loss\"]\ntargets = [\"broker-0\"]\n")).unwrap();
    assert_eq!(s.swarm.expect("swarm").targets, ["broker-0"]);
    let src = format!("{BASIC}\n[swarm]\nkinds = [\"network-loss\"]\ntargets = [\"broker-9\"]\n");
    let e = parse(&src).unwrap_err();
    assert!(e.message.contains("swarm target \"broker-9\" is not in this scenario"), "{e}");
    assert_eq!(e.line, line_of(&src, "\"broker-9\""));
    let src = format!("{BASIC}\n[swarm]\nkinds = [\"gremlins\"]\n");
    let e = parse(&src).unwrap_err();
    assert!(e.message.contains("unknown fault kind \"gremlins\""), "{e}");
    assert_eq!(e.line, line_of(&src, "\"gremlins\""));
}

#[test]
fn topics_referenced_by_services_must_exist() {
    let src = edit("topic = \"order-created\"", "topic = \"orders\"");
    let e = parse(&src).unwrap_err();
    assert!(e.message.contains("not declared"), "{e}");
    assert_eq!(e.line, line_of(&src, "topic = \"orders\""));
}

#[test]
fn not_toml_at_all_is_a_located_error() {
    let e = parse("name = \"x\"\n[run\n").unwrap_err();
    assert_eq!(e.line, 2, "{e}");
}

#[test]
fn zero_latency_and_giant_runs_are_refused() {
    let src = edit("latency_us = 500", "latency_us = 0");
    let e = parse(&src).unwrap_err();
    assert_eq!(e.line, line_of(&src, "latency_us = 0"), "{e}");
    let e = parse(&edit("duration_ms = 10_000 ", "duration_ms = 10_000_000_000 ")).unwrap_err();
    assert!(e.message.contains("expected at most"), "{e}");
}

#[test]
fn a_conflicting_default_idempotence_is_turned_off_as_the_java_client_does() {
    let s = parse(&edit("acks = \"all\"", "acks = 1").replace("enable.idempotence = true\n", "")).unwrap();
    assert_eq!(s.services[0].producer.acks, Acks::Leader);
    assert!(!s.services[0].producer.enable_idempotence);
}

#[test]
fn without_a_commit_setting_the_container_commits_after_processing_as_spring_does() {
    let src = edit("commit_strategy = \"commit-after-process\"\n", "").replace("enable.auto.commit = false\n", "");
    let s = parse(&src).unwrap();
    assert_eq!(s.consumers[0].commit_strategy, CommitStrategy::CommitAfterProcess);
    assert!(!s.consumers[0].consumer.enable_auto_commit);
}

#[test]
fn session_timeouts_outside_the_brokers_bounds_are_refused() {
    let src = edit(
        "max.poll.records = 500",
        "max.poll.records = 500\nsession.timeout.ms = 1000\nheartbeat.interval.ms = 300",
    );
    let e = parse(&src).unwrap_err();
    assert!(e.message.contains("INVALID_SESSION_TIMEOUT"), "{e}");
    let ok = src.replace(
        "group.initial.rebalance.delay.ms = 3000",
        "group.initial.rebalance.delay.ms = 3000\ngroup.min.session.timeout.ms = 500",
    );
    assert_eq!(parse(&ok).unwrap().consumers[0].consumer.session_timeout_ms, 1000);
}

#[test]
fn services_and_consumers_are_named_tables_with_kinds() {
    let s = parse(BASIC).unwrap();
    assert_eq!(s.services.len(), 1);
    let svc = s.service("order-service").unwrap();
    assert_eq!((svc.kind, svc.publish, svc.instances), (ServiceKind::OrderService, PublishStrategy::AfterCommit, 2));
    let c = s.consumer_group("order-event-consumer").unwrap();
    assert_eq!((c.kind, c.instances), (ListenerKind::OrderEventConsumer, 3));
    assert_eq!(c.topics, vec!["order-created".to_string()]);
}

#[test]
fn a_second_consumer_group_is_another_table() {
    let extra = "\n[consumers.audit]\nkind = \"order-event-consumer\"\ntopics = [\"order-created\"]\nprocessing_time_us = 100\n";
    let s = parse(&format!("{BASIC}{extra}")).unwrap();
    assert_eq!(s.consumers.len(), 2);
    // Tables are in name order; the group id defaults to the table's name.
    assert_eq!(s.consumers[0].name, "audit");
    assert_eq!(s.consumers[0].consumer.group_id, "audit");
    let dup = extra.replace(
        "processing_time_us = 100\n",
        "processing_time_us = 100\n[consumers.audit.consumer]\ngroup.id = \"hhplus-ecommerce-group\"\n",
    );
    let e = parse(&format!("{BASIC}{dup}")).unwrap_err();
    assert!(e.message.contains("both use group.id"), "{e}");
}

#[test]
fn unknown_kinds_and_strategies_name_what_is_expected() {
    let src = edit("kind = \"order-service\"", "kind = \"refund-service\"");
    let e = parse(&src).unwrap_err();
    assert_eq!(e.line, line_of(&src, "kind = \"refund-service\""), "{e}");
    assert!(e.message.contains("expected one of: \"order-service\""), "{e}");
    let e = parse(&edit("kind = \"order-event-consumer\"", "kind = \"points\"")).unwrap_err();
    assert!(e.message.contains("\"order-event-consumer\""), "{e}");
    let src = edit("publish = \"after-commit\"", "publish = \"carrier-pigeon\"");
    let e = parse(&src).unwrap_err();
    assert_eq!(e.line, line_of(&src, "publish = \"carrier-pigeon\""), "{e}");
    assert!(e.message.contains("\"outbox\""), "lists the strategies: {e}");
    let e = parse(&edit("topics = [\"order-created\"]", "topics = []")).unwrap_err();
    assert!(e.message.contains("topics is empty"), "{e}");
}

#[test]
fn the_order_workload_needs_an_order_service() {
    let start = BASIC.find("[services.order-service]").unwrap();
    let end = BASIC.find("[consumers.order-event-consumer]").unwrap();
    let without = format!("{}{}", &BASIC[..start], &BASIC[end..]);
    let e = parse(&without).unwrap_err();
    assert!(e.message.contains("kind = \"order-service\""), "{e}");
}

#[test]
fn retry_then_dlq_needs_its_dead_letter_topic() {
    let src = edit("commit_strategy = \"commit-after-process\"", "commit_strategy = \"retry-then-dlq\"");
    let e = parse(&src).unwrap_err();
    assert!(e.message.contains("dlq_topic"), "{e}");
    let with_topic = src
        .replace(
            "commit_strategy = \"retry-then-dlq\"",
            "commit_strategy = \"retry-then-dlq\"\ndlq_topic = \"order-created.DLT\"\nretries = 5",
        )
        .replace("[topics.order-created]", "[topics.\"order-created.DLT\"]\npartitions = 1\n\n[topics.order-created]");
    let s = parse(&with_topic).unwrap();
    assert_eq!(s.consumers[0].commit_strategy, CommitStrategy::RetryThenDlq);
    assert_eq!((s.consumers[0].retries, s.consumers[0].dlq_topic.as_deref()), (5, Some("order-created.DLT")));
    let e = parse(&edit(
        "commit_strategy = \"commit-after-process\"",
        "commit_strategy = \"commit-after-process\"\nretries = 2",
    ))
    .unwrap_err();
    assert!(e.message.contains("retries needs"), "{e}");
}

/// `[consumers.<name>.producer]` configures the listener's KafkaTemplate (here the
/// dead-letter recoverer's) by Kafka's names; without a template it would be ignored, so it is
/// refused at its place, as an unknown setting in it is.
#[test]
fn a_listeners_kafka_template_takes_producer_settings_and_only_when_it_has_one() {
    let producer = "\n[consumers.order-event-consumer.producer]\nacks = \"1\"\nlinger.ms = 50\n";
    let with_dlq = edit(
        "commit_strategy = \"commit-after-process\"",
        "commit_strategy = \"retry-then-dlq\"\ndlq_topic = \"order-created.DLT\"",
    )
    .replace("[topics.order-created]", "[topics.\"order-created.DLT\"]\npartitions = 1\n\n[topics.order-created]");
    let s = parse(&format!("{with_dlq}{producer}")).unwrap();
    let p = &s.consumers[0].producer;
    assert_eq!((p.acks, p.linger_ms), (Acks::Leader, 50));
    // Without a setting, the Java producer's defaults, as before.
    assert_eq!(parse(&with_dlq).unwrap().consumers[0].producer, ProducerConfig::default());

    let src = format!("{BASIC}{producer}");
    let e = parse(&src).unwrap_err();
    assert!(e.message.contains("KafkaTemplate, but it has none"), "{e}");
    assert_eq!(e.line, line_of(&src, "acks = \"1\"") - 1, "at the table: {e}");
    let src = format!("{with_dlq}\n[consumers.order-event-consumer.producer]\nlinger = 5\n");
    let e = parse(&src).unwrap_err();
    assert_eq!(e.line, line_of(&src, "linger = 5"), "{e}");
}

#[test]
fn expected_counterexamples_are_read_and_bad_ones_named_at_their_place() {
    let ok = format!(
        "{BASIC}\n[[check.expected]]\ninvariants = [\"eventual-processing\"]\nfaults = [\"service-crash\"]\nwhy = \"after-commit\"\n"
    );
    let s = parse(&ok).expect("parses");
    assert_eq!(s.check.expected.len(), 1);
    let e = &s.check.expected[0];
    assert_eq!(e.invariants, vec![Invariant::EventualProcessing]);
    assert_eq!(e.faults, vec![FaultKind::ServiceCrash]);
    assert_eq!(e.condition, None);

    let cases = [
        ("invariants = [\"liveness\"]\nfaults = [\"service-crash\"]\nwhy = \"x\"", "not claimed"),
        ("invariants = [\"eventual-processing\"]\nwhy = \"x\"", "neither `faults` nor `condition`"),
        ("invariants = [\"eventual-processing\"]\ncondition = \"full-moon\"\nwhy = \"x\"", "unknown condition"),
        ("invariants = [\"eventual-processing\"]\nfaults = [\"meteor\"]\nwhy = \"x\"", "unknown fault kind"),
        ("invariants = [\"eventual-processing\"]\nfaults = [\"service-crash\"]\nwhy = \" \"", "`why` is empty"),
    ];
    for (body, says) in cases {
        let src = format!("{BASIC}\n[[check.expected]]\n{body}\n");
        let e = parse(&src).unwrap_err().to_string();
        assert!(e.contains(says), "{body}: {e}");
        assert!(e.starts_with("s.toml:"), "{e}");
    }
    let src = format!(
        "{BASIC}\n[[check.expected]]\ninvariants = [\"eventual-processing\"]\ncondition = \"unflushed-last-replica\"\nwhy = \"fsync\"\n"
    );
    assert_eq!(parse(&src).unwrap().check.expected[0].condition, Some(Condition::UnflushedLastReplica));
}

#[test]
fn the_controller_can_be_a_peer_but_not_a_target() {
    let peer = format!(
        "{BASIC}\n[[faults]]\nkind = \"network-partition\"\ntarget = \"broker-0\"\npeer = \"controller\"\nat_ms = 10\nfor_ms = 10\n"
    );
    assert_eq!(parse(&peer).unwrap().faults[0].peer.as_deref(), Some("controller"));
    let target = format!(
        "{BASIC}\n[[faults]]\nkind = \"network-partition\"\ntarget = \"controller\"\nat_ms = 10\nfor_ms = 10\n"
    );
    let e = parse(&target).unwrap_err().to_string();
    assert!(e.contains("cannot be a fault's target"), "{e}");
    assert!(e.contains(&format!("s.toml:{}:", line_of(&target, "target = \"controller\""))), "{e}");
}

#[test]
fn connection_settings_keep_the_java_defaults_and_raise_a_max_below_its_base() {
    let s = parse(BASIC).unwrap();
    assert_eq!(s.services[0].producer.connection, ConnectionConfig::default());
    assert_eq!(s.consumers[0].consumer.request_timeout_ms, 30_000);
    assert_eq!(s.consumers[0].consumer.default_api_timeout_ms, 60_000);
    let src = edit(
        "[services.order-service.producer]",
        "[services.order-service.producer]\nsocket.connection.setup.timeout.ms = 40000",
    );
    let c = parse(&src).unwrap().services[0].producer.connection;
    assert_eq!((c.setup_timeout_ms, c.setup_timeout_max_ms), (40_000, 40_000));
}

/// `[workflow]`: a scenario that names a workflow file, read here from memory.
mod workflow_key {
    use super::*;

    const SCENARIO: &str = include_str!("../../../scenarios/order-workflow.toml");
    const ORDER: &str = include_str!("../../../scenarios/workflows/order.toml");

    fn parse_with(src: &str, workflow: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse_with("s.toml", src, &|written| match written {
            "workflows/order.toml" => Ok(("workflows/order.toml".to_string(), workflow.to_string())),
            other => Err(format!("no such file: {other}")),
        })
    }

    /// `SCENARIO` with `from` replaced by `to` (which must occur), parsed with `workflow`.
    fn err(from: &str, to: &str, workflow: &str) -> (ScenarioError, String) {
        assert!(SCENARIO.contains(from), "fixture lacks {from:?}");
        let src = SCENARIO.replacen(from, to, 1);
        (parse_with(&src, workflow).expect_err("refused"), src)
    }

    #[test]
    fn the_tables_a_workflow_names_need_no_kind_and_its_params_are_bound() {
        let s = parse_with(SCENARIO, ORDER).expect("order-workflow parses");
        assert_eq!(s.services[0].kind, ServiceKind::Workflow);
        assert_eq!(s.consumers[0].kind, ListenerKind::Workflow);
        assert_eq!(s.workload, WorkloadSpec::none());
        assert_eq!(s.workflow_file.as_deref(), Some("workflows/order.toml"));
        let wf = s.workflow.as_ref().expect("compiled");
        let param = |n: &str| wf.params.iter().find(|(k, _)| k == n).map(|(_, v)| *v);
        assert_eq!(param("stock_per_product"), Some(crate::workflow::expr::Value::Int(300)));
        // A binding replaces the default, and an integer binds a float parameter.
        let s = parse_with(&SCENARIO.replace("stock_per_product = 300", "stock_per_product = 7"), ORDER).unwrap();
        let wf = s.workflow.as_ref().unwrap();
        assert!(wf.params.contains(&("stock_per_product".to_string(), crate::workflow::expr::Value::Int(7))));
        assert_eq!(wf.requests[0].rate_per_sec, 1000.0);
        // Without a loader, a scenario with a workflow is refused at its file key.
        let e = Scenario::parse("s.toml", SCENARIO).unwrap_err();
        assert_eq!(e.line, line_of(SCENARIO, "file = "), "{e}");
    }

    #[test]
    fn a_missing_workflow_file_is_an_error_at_its_key() {
        let (e, src) = err("file = \"workflows/order.toml\"", "file = \"workflows/ordr.toml\"", ORDER);
        assert_eq!((e.line, e.column), (line_of(&src, "file = "), 8), "{e}");
        assert!(e.message.contains("cannot read the workflow file \"workflows/ordr.toml\" (no such file"), "{e}");
        let (e, _) = err("file = \"workflows/order.toml\"", "file = \" \"", ORDER);
        assert!(e.message.contains("`file` is empty"), "{e}");
    }

    #[test]
    fn a_bad_binding_is_an_error_at_the_scenario_s_params() {
        let (e, src) = err("users = 5000", "user = 5000", ORDER);
        assert_eq!(e.file, "s.toml");
        assert_eq!(e.line, line_of(&src, "params = {"), "{e}");
        assert!(e.message.contains("not `user`") && e.message.contains("users"), "{e}");
        let (e, _) = err("users = 5000", "users = \"many\"", ORDER);
        assert!(e.message.contains("an integer for params.users") && e.message.contains("not a string"), "{e}");
        let (e, _) = err("users = 5000", "users = [1]", ORDER);
        assert!(e.message.contains("params.users is an array"), "{e}");
        // A workflow file's own mistake is reported in that file.
        let (e, _) =
            err("quantity_max = 3", "quantity_max = 3", &ORDER.replace("[tables.product]", "[tables.product]\nx = 1"));
        assert_eq!(e.file, "workflows/order.toml", "{e}");
        assert!(e.line > 0, "{e}");
    }

    #[test]
    fn kind_is_refused_where_the_workflow_runs_and_required_elsewhere() {
        let (e, src) = err(
            "[services.order-service]     # runs",
            "[services.order-service]\nkind = \"order-service\"  # runs",
            ORDER,
        );
        assert_eq!(e.line, line_of(&src, "kind = \"order-service\""), "{e}");
        assert!(e.message.contains("runs the workflow's `create-order` requests"), "{e}");
        let (e, src) = err(
            "[consumers.order-event-consumer]   # runs",
            "[consumers.order-event-consumer]\nkind = \"order-event-consumer\"  # runs",
            ORDER,
        );
        assert_eq!(e.line, line_of(&src, "kind = \"order-event-consumer\""), "{e}");
        // A table no request names needs its kind.
        let (e, src) = err(
            "[services.order-service]     # runs",
            "[services.other]\ninstances = 1\ntopic = \"order-created\"\n\n[services.order-service]  # runs",
            ORDER,
        );
        assert_eq!(e.line, line_of(&src, "[services.other]"), "{e}");
        assert!(e.message.contains("[services.other] has no `kind`"), "{e}");
    }

    #[test]
    fn every_request_and_listener_needs_its_table_and_every_event_its_topic() {
        let wf = ORDER.replace("service = \"order-service\"", "service = \"orders-api\"");
        let (e, src) = err("instances = 2", "instances = 2", &wf);
        assert_eq!(e.line, line_of(&src, "file = "), "{e}");
        assert!(e.message.contains("expected a [services.orders-api] table"), "{e}");
        let src = SCENARIO.replace("[consumers.order-event-consumer", "[consumers.ranking").replacen(
            "[consumers.ranking]   # runs",
            "[consumers.ranking]\nkind = \"order-event-consumer\"  # runs",
            1,
        );
        let e = parse_with(&src, ORDER).unwrap_err();
        assert_eq!(e.line, line_of(&src, "file = "), "{e}");
        assert!(e.message.contains("expected a [consumers.order-event-consumer] table"), "{e}");
        // The event's topic is the service's.
        let wf = ORDER.replace("topic = \"order-created\"", "topic = \"orders\"");
        let (e, src) = err("[topics.order-created]", "[topics.orders]\npartitions = 1\n\n[topics.order-created]", &wf);
        assert_eq!(e.line, line_of(&src, "topic = \"order-created\""), "{e}");
        assert!(e.message.contains("whose topic is `orders`; expected topic = \"orders\""), "{e}");
        // A listener takes its own event's topic only.
        let src2 = SCENARIO
            .replacen("[topics.order-created]", "[topics.other]\npartitions = 1\n\n[topics.order-created]", 1)
            .replacen("topics = [\"order-created\"]", "topics = [\"order-created\", \"other\"]", 1);
        let e = parse_with(&src2, ORDER).unwrap_err();
        assert_eq!(e.line, line_of(&src2, "topics = [\"order-created\", \"other\"]"), "{e}");
        assert!(e.message.contains("subscribes to `other` too"), "{e}");
    }

    #[test]
    fn publishing_strategies_need_what_they_take_and_unknown_invariant_names_are_refused() {
        // The order workflow's one event, published in its transaction after reading the stock:
        // every strategy but in-transaction (which would hold the row lock over the send).
        let (e, src) = err("publish = \"after-commit\"", "publish = \"in-transaction\"", ORDER);
        assert_eq!(e.line, line_of(&src, "publish = \"in-transaction\""), "{e}");
        assert!(e.message.contains("as the first step of their transaction"), "{e}");
        for strategy in [PublishStrategy::AfterCommit, PublishStrategy::AfterCommitAsync, PublishStrategy::Outbox] {
            let src = SCENARIO.replacen("publish = \"after-commit\"", &format!("publish = \"{}\"", strategy.name()), 1);
            let s = parse_with(&src, ORDER).unwrap_or_else(|e| panic!("{strategy:?}: {e}"));
            assert_eq!(s.services[0].publish, strategy);
        }
        // An event published after the transaction has no outbox row and no place before the commit.
        let publish = "  { publish = \"order-created\", values = { order_id = \"request.id\", user = \"request.user\", product = \"request.product\", qty = \"request.qty\" } },\n]";
        assert!(ORDER.contains(publish));
        let after = ORDER.replacen(publish, &format!("]\nsteps = [\n{}", publish), 1);
        parse_with(SCENARIO, &after).expect("after-commit publishes what the steps after the transaction publish");
        for strategy in ["outbox", "in-transaction"] {
            let to = format!("publish = \"{strategy}\"");
            let (e, src) = err("publish = \"after-commit\"", &to, &after);
            assert_eq!(e.line, line_of(&src, &to), "{e}");
            assert!(e.message.contains("publish after their transaction"), "{e}");
        }
        // In the transaction: one event, first, after guards on the request only.
        let first = "transaction = [\n";
        let publish_line = &publish[..publish.len() - 1];
        let send_first = ORDER.replacen(publish_line, "", 1).replacen(first, &format!("{first}{publish_line}"), 1);
        let guarded = send_first.replacen(first, &format!("{first}  {{ require = \"request.qty > 0\" }},\n"), 1);
        for wf in [&send_first, &guarded] {
            let src = SCENARIO.replacen("publish = \"after-commit\"", "publish = \"in-transaction\"", 1);
            let s = parse_with(&src, wf).unwrap_or_else(|e| panic!("{e}\n{wf}"));
            assert_eq!(s.services[0].publish, PublishStrategy::InTransaction);
        }
        let twice = send_first.replacen(publish_line, &format!("{publish_line}\n{publish_line}"), 1);
        let (e, _) = err("publish = \"after-commit\"", "publish = \"in-transaction\"", &twice);
        assert!(e.message.contains("to publish one event"), "{e}");
    }

    /// A workflow's invariant under a name of its own is claimed like evsim's own; a name
    /// neither knows is refused, listing both.
    #[test]
    fn a_declared_invariant_is_claimed_by_its_own_name() {
        let wf = ORDER.replace("[invariants.no-oversell]", "[invariants.stock-never-negative]");
        let src = SCENARIO.replacen("  \"no-oversell\",", "  \"stock-never-negative\",", 1);
        let s = parse_with(&src, &wf).expect("claims the declared invariant");
        assert!(s.run.invariants.contains(&Invariant::declared("stock-never-negative")));
        assert_eq!(Invariant::declared("stock-never-negative").name(), "stock-never-negative");
        assert_eq!(Invariant::declared("no-oversell"), Invariant::NoOversell);
        assert!(Invariant::of(&s).contains(&Invariant::declared("stock-never-negative")));
        let src = SCENARIO.replacen("  \"no-oversell\",", "  \"stock-never-negativ\",", 1);
        let e = parse_with(&src, &wf).unwrap_err();
        assert_eq!(e.line, line_of(&src, "stock-never-negativ"), "{e}");
        assert!(
            e.message.contains("expected one of: no-oversell") && e.message.ends_with(", stock-never-negative"),
            "{e}"
        );
    }

    #[test]
    fn requests_come_from_a_workload_or_a_workflow_and_count_towards_one_cap() {
        let without = BASIC.split("[workload]").next().unwrap().to_string()
            + "[services.order-service]\nkind = \"order-service\"\ntopic = \"order-created\"\n";
        let e = parse(&without).unwrap_err();
        assert!(e.message.contains("the scenario has no requests"), "{e}");
        let (e, src) = err("rate_per_sec = 1000", "rate_per_sec = 1000000", ORDER);
        assert_eq!(e.line, line_of(&src, "file = "), "{e}");
        assert!(
            e.message.contains("the workflow's `create-order` requests") && e.message.contains("at most 5000000"),
            "{e}"
        );
    }

    /// A follow-up is one more request per request it follows: 300,000 orders a second for
    /// 10 s are 3,000,000 requests, and their payments 3,000,000 more, over the cap.
    #[test]
    fn follow_ups_count_towards_the_cap_at_the_rate_of_what_they_follow() {
        const PAYMENT_SCENARIO: &str = include_str!("../../../scenarios/payment-workflow.toml");
        const PAYMENT: &str = include_str!("../../../scenarios/workflows/payment.toml");
        let parse = |src: &str| {
            Scenario::parse_with("p.toml", src, &|written| match written {
                "workflows/payment.toml" => Ok((written.to_string(), PAYMENT.to_string())),
                other => Err(format!("no such file: {other}")),
            })
        };
        let s = parse(PAYMENT_SCENARIO).expect("payment-workflow parses");
        assert_eq!(s.workflow.as_ref().expect("a workflow").requests.len(), 2);
        let src = PAYMENT_SCENARIO.replacen("rate_per_sec = 500,", "rate_per_sec = 300_000,", 1);
        let e = parse(&src).expect_err("over the cap");
        assert!(e.message.contains("asks for 6000000 requests"), "{e}");
        let src = PAYMENT_SCENARIO.replacen("rate_per_sec = 500,", "rate_per_sec = 200_000,", 1);
        assert!(parse(&src).is_ok(), "4,000,000 requests");
    }
}
