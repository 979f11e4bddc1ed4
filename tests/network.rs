//! The network as Linux TCP under Kafka's clients shows it (KAFKA-SEMANTICS.md, "Network"): a
//! partition drops segments and TCP retransmits them; only a client timeout, a reset or
//! `tcp_retries2` ends a connection; reconnecting takes a handshake. And the control plane on
//! that network: brokers fenced by the controller when their heartbeats stop, group coordinators
//! that move with their `__consumer_offsets` partition.

mod common;

use common::fault;
use evsim_model::checkers::Invariant;
use evsim_model::history::{DisconnectReason, ErrorCode, History, NodeId, Op};
use evsim_model::scenario::{Acks, FaultKind, Scenario};
use evsim_sim::{RunOutcome, run_scenario};

fn node(h: &History, name: &str) -> NodeId {
    NodeId(h.header.nodes.iter().position(|n| n == name).unwrap_or_else(|| panic!("no node {name}")) as u16)
}

fn violated(o: &RunOutcome) -> Vec<String> {
    o.verdicts
        .iter()
        .filter(|v| v.claimed && !v.violations.is_empty())
        .map(|v| format!("{}: {}", v.invariant.name(), v.violations[0].message))
        .collect()
}

/// Seed 002's outbox on a replicated cluster: three order-service instances, two brokers,
/// replication factor 2, acks=all, an idempotent consumer.
fn outbox_on_two_brokers() -> Scenario {
    let mut s = common::scenario("order-outbox");
    s.brokers = 2;
    s.topics[0].replication_factor = 2;
    s.services[0].instances = 3;
    s.run.duration_ms = 5_000;
    s
}

/// The longest time from an order requested at or after `from` to the first effect of its
/// event (in any group). (Orders before the group's first rebalance, 3 s in, wait for it.)
fn worst_latency_from(h: &History, from: u64) -> u64 {
    let mut asked = std::collections::BTreeMap::new();
    let mut worst = 0;
    for e in &h.entries {
        match e.op {
            Op::OrderRequested { order, .. } if e.time >= from => {
                asked.insert(evsim_model::history::EventId::order_created(order), e.time);
            }
            ref op => {
                if let Some(at) = op.effect_cause().and_then(|c| asked.remove(&c)) {
                    worst = worst.max(e.time - at);
                }
            }
        }
    }
    worst
}

#[test]
fn a_2ms_partition_costs_a_retransmission_not_a_storm_of_resends() {
    let mut s = outbox_on_two_brokers();
    s.faults = vec![fault(FaultKind::NetworkPartition, Some("broker-1"), 3_000, 2)];
    for seed in 1..=20 {
        let o = run_scenario(&s, seed);
        assert!(o.vacuous.is_none(), "seed {seed}: {:?}", o.vacuous);
        assert!(o.stats.messages_dropped >= 1, "seed {seed}: the partition dropped no segment");
        assert!(
            o.history.entries.iter().any(|e| matches!(e.op, Op::Retransmitted { retransmissions: 1, .. })),
            "seed {seed}: no segment was retransmitted"
        );
        assert!(violated(&o).is_empty(), "seed {seed}: {:?}", violated(&o));
        let orders = o.stats.orders_committed as f64;
        assert!(
            o.stats.records_sent as f64 <= 1.01 * orders,
            "seed {seed}: {} records sent for {orders} orders",
            o.stats.records_sent
        );
        let worst = worst_latency_from(&o.history, 3_000_000);
        assert!(worst <= 1_000_000, "seed {seed}: a request took {worst} us to its effect");
        // Nobody gave up on a connection for a 2 ms blip.
        assert!(!o.history.entries.iter().any(|e| matches!(e.op, Op::Disconnected { .. })), "seed {seed}");
    }
}

#[test]
fn short_partitions_early_or_on_three_brokers_lose_nothing_and_time_nothing_out() {
    // The outbox with a 3 ms partition of broker-0 at 9 ms; acks=all, min.insync.replicas=2,
    // replication factor 3 with a 27 ms partition of broker-0.
    let mut early = outbox_on_two_brokers();
    early.faults = vec![fault(FaultKind::NetworkPartition, Some("broker-0"), 9, 3)];
    let mut rf3 = common::scenario("order-failover-acks-all");
    rf3.run.duration_ms = 4_000;
    rf3.faults = vec![fault(FaultKind::NetworkPartition, Some("broker-0"), 2_000, 27)];
    for s in [early, rf3] {
        for seed in 1..=5 {
            let o = run_scenario(&s, seed);
            assert!(o.vacuous.is_none(), "{} seed {seed}: {:?}", s.name, o.vacuous);
            assert!(violated(&o).is_empty(), "{} seed {seed}: {:?}", s.name, violated(&o));
            let timed_out = o.history.entries.iter().any(|e| {
                matches!(e.op, Op::SendFailed { error: ErrorCode::MsgTimedOut | ErrorCode::RequestTimedOut, .. })
            });
            assert!(!timed_out, "{} seed {seed}: a send timed out", s.name);
        }
    }
}

/// order-basic with one service instance cut off from the broker for 60 s.
fn cut_off_for_a_minute() -> Scenario {
    let mut s = common::scenario("order-basic");
    s.run.duration_ms = 3_000;
    s.run.quiet_period_ms = 150_000;
    s.services[0].instances = 1;
    // The Java defaults: retry until delivery.timeout.ms (120 s).
    s.services[0].producer.retries = i32::MAX as u32;
    s.services[0].producer.delivery_timeout_ms = 120_000;
    let mut cut = fault(FaultKind::NetworkPartition, Some("order-service-0"), 2_000, 60_000);
    cut.peer = Some("broker-0".into());
    s.faults = vec![cut];
    s
}

#[test]
fn a_60s_partition_times_requests_out_and_reconnects_only_after_it_heals() {
    let s = cut_off_for_a_minute();
    let o = run_scenario(&s, 1);
    assert!(o.vacuous.is_none(), "{:?}", o.vacuous);
    let h = &o.history;
    let (service, broker) = (node(h, "order-service-0"), node(h, "broker-0"));
    let request_timeout = s.services[0].producer.request_timeout_ms * 1_000;
    let (start, heal) = (2_000_000, 62_000_000);
    // The request in flight when the partition started (or the first sent into it) times out
    // request.timeout.ms after it was sent, and the client closes the connection.
    let first_timeout = h
        .entries
        .iter()
        .find(|e| {
            e.process == service
                && matches!(e.op, Op::Disconnected { peer, reason: DisconnectReason::RequestTimeout, .. } if peer == broker)
        })
        .expect("a request timed out")
        .time;
    let linger = s.services[0].producer.linger_ms * 1_000;
    assert!(
        (start + request_timeout - 2_000..=start + request_timeout + linger + 2_000).contains(&first_timeout),
        "REQUEST_TIMED_OUT at {first_timeout} us, not request.timeout.ms after the send"
    );
    // Reconnecting fails while the partition lasts: attempts time out, none succeeds.
    let connects: Vec<u64> = h
        .entries
        .iter()
        .filter(|e| e.process == service && matches!(e.op, Op::Connected { peer, .. } if peer == broker))
        .map(|e| e.time)
        .collect();
    assert!(!connects.is_empty(), "the client never reconnected");
    assert!(connects[0] > heal, "reconnected at {} us, during the partition", connects[0]);
    assert!(connects[0] < heal + 40_000_000, "reconnected only at {} us", connects[0]);
    let setup_timeouts = h
        .entries
        .iter()
        .filter(|e| {
            e.process == service
                && e.time < heal
                && matches!(e.op, Op::Disconnected { reason: DisconnectReason::SetupTimeout, .. })
        })
        .count();
    assert!(setup_timeouts >= 2, "connection attempts during the partition: {setup_timeouts} timed out");
    // The retries then succeed: every record sent is acknowledged, nothing is lost.
    assert!(o.stats.produce_retries > 0);
    assert_eq!(o.stats.send_failures, 0);
    assert!(violated(&o).is_empty(), "{:?}", violated(&o));
    let late_acks = h.entries.iter().filter(|e| e.time > heal && matches!(e.op, Op::SendOk { .. })).count();
    assert!(late_acks > 0, "nothing sent during the partition was acknowledged after it");
}

#[test]
fn tcp_gives_a_connection_up_after_tcp_retries2_when_no_client_timeout_does() {
    // A consumer with a one-hour request timeout and session timeout: only TCP ends its
    // connections, after 15 retransmissions from a 200 ms timeout (about 924.6 s).
    let mut s = common::scenario("order-basic");
    s.run.duration_ms = 1_000;
    s.run.quiet_period_ms = 1_000_000;
    s.broker.group_initial_rebalance_delay_ms = 0;
    s.consumers[0].instances = 1;
    let c = &mut s.consumers[0].consumer;
    c.request_timeout_ms = 3_600_000;
    c.session_timeout_ms = 1_800_000;
    c.max_poll_interval_ms = 3_600_000;
    c.default_api_timeout_ms = 3_600_000;
    let mut cut = fault(FaultKind::NetworkPartition, Some("order-event-consumer-0"), 500, 985_000);
    cut.peer = Some("broker-0".into());
    s.faults = vec![cut];
    let o = run_scenario(&s, 1);
    let h = &o.history;
    let consumer = node(h, "order-event-consumer-0");
    let aborted: Vec<u64> = h
        .entries
        .iter()
        .filter(|e| {
            e.process == consumer
                && matches!(e.op, Op::Disconnected { reason: DisconnectReason::TcpRetriesExhausted, .. })
        })
        .map(|e| e.time)
        .collect();
    assert!(!aborted.is_empty(), "TCP never gave up");
    // RTO = 201 ms (200 ms plus the round trip), doubled ten times to 102.9 s, then capped at
    // 120 s: 15 retransmissions and the last timeout take 925.6 s from the first loss, which
    // came within the first 3.5 s of the partition (a fetch answer, a heartbeat).
    for t in &aborted {
        assert!((926_000_000..=930_000_000).contains(t), "aborted at {t} us");
    }
    assert!(
        h.entries.iter().any(|e| e.process == consumer
            && matches!(
                e.op,
                Op::Disconnected { reason: DisconnectReason::TcpRetriesExhausted, coordinator: false, .. }
            )),
        "the data connection was not aborted"
    );
}

#[test]
fn the_idempotent_producer_keeps_order_and_no_duplicates_through_partitions_and_timeouts() {
    // Coupon requests keyed by coupon id, 5 in flight, retries, a short request timeout, and
    // the broker cut off twice for longer than that timeout.
    let mut s = common::scenario("coupon-retries-lost-responses");
    s.faults = vec![
        fault(FaultKind::NetworkPartition, Some("broker-0"), 1_000, 1_500),
        fault(FaultKind::NetworkLoss, Some("broker-0"), 3_000, 1_500),
    ];
    s.faults[1].rate = 0.3;
    let weak = run_scenario(&s, 1);
    assert!(weak.vacuous.is_none(), "{:?}", weak.vacuous);
    let bad = |o: &RunOutcome, i: Invariant| o.verdicts.iter().find(|v| v.invariant == i).unwrap().violations.len();
    assert!(
        bad(&weak, Invariant::Duplicate) + bad(&weak, Invariant::NonmonotonicSend) > 0,
        "without idempotence the retried batches neither duplicated nor reordered: the test would prove nothing"
    );
    s.services[0].producer.enable_idempotence = true;
    s.services[0].producer.acks = Acks::All;
    for seed in 1..=3 {
        let o = run_scenario(&s, seed);
        assert!(o.vacuous.is_none(), "seed {seed}: {:?}", o.vacuous);
        assert!(o.stats.produce_retries > 0, "seed {seed}: nothing was retried");
        assert!(
            o.history
                .entries
                .iter()
                .any(|e| matches!(e.op, Op::Disconnected { reason: DisconnectReason::RequestTimeout, .. })),
            "seed {seed}: no request timed out"
        );
        assert_eq!(bad(&o, Invariant::Duplicate), 0, "seed {seed}");
        assert_eq!(bad(&o, Invariant::NonmonotonicSend), 0, "seed {seed}");
    }
}

#[test]
fn a_broker_cut_off_from_the_controller_is_fenced_and_its_leaderships_move() {
    let mut s = common::scenario("order-failover-acks-all");
    s.run.duration_ms = 6_000;
    let mut cut = fault(FaultKind::NetworkPartition, Some("broker-0"), 1_000, 10_000);
    cut.peer = Some("controller".into());
    s.faults = vec![cut];
    let o = run_scenario(&s, 1);
    assert!(o.vacuous.is_none(), "{:?}", o.vacuous);
    let h = &o.history;
    let (b0, controller) = (node(h, "broker-0"), node(h, "controller"));
    let fenced = h
        .entries
        .iter()
        .find(|e| e.process == controller && matches!(e.op, Op::BrokerFenced { broker } if broker == b0))
        .expect("broker-0 was never fenced")
        .time;
    // Its last heartbeat got through just before 1 s; the session (3 s) expires after it.
    let session = s.broker.broker_session_timeout_ms * 1_000;
    assert!((1_000_000 + session - 2_100_000..=1_000_000 + session + 100_000).contains(&fenced), "fenced at {fenced}");
    // The partition it led got a new leader then.
    assert!(
        h.entries
            .iter()
            .any(|e| e.time == fenced && matches!(e.op, Op::LeaderElected { leader: Some(l), .. } if l != b0))
    );
    // After the partition heals, its heartbeats arrive again.
    assert!(
        h.entries.iter().any(|e| e.time > 11_000_000 && matches!(e.op, Op::BrokerUnfenced { broker } if broker == b0))
    );
    assert!(violated(&o).is_empty(), "{:?}", violated(&o));

    // A broker cut off from everyone is fenced the same way, as a crashed one is.
    s.faults = vec![fault(FaultKind::NetworkPartition, Some("broker-0"), 1_000, 10_000)];
    let o = run_scenario(&s, 1);
    assert!(o.history.entries.iter().any(|e| matches!(e.op, Op::BrokerFenced { broker } if broker == b0)));
    assert!(violated(&o).is_empty(), "{:?}", violated(&o));
}

#[test]
fn the_group_coordinator_moves_with_its_offsets_partition_and_consumers_find_it() {
    let mut s = common::scenario("order-failover-acks-all");
    s.run.duration_ms = 6_000;
    s.faults = Vec::new();
    let calm = run_scenario(&s, 1);
    let h = &calm.history;
    let first = h
        .entries
        .iter()
        .find_map(|e| match e.op {
            Op::Coordinator { coordinator: Some(c), .. } => Some(c),
            _ => None,
        })
        .expect("the run records its coordinator");
    // The coordinator is where Kafka puts it: the leader of partition
    // abs("order-event-consumer".hashCode()) % 50 = 40 of __consumer_offsets.
    let expected = evsim_sim::cluster::coordinator_of("order-event-consumer", 3, 50);
    assert_eq!(h.node_name(first), format!("broker-{expected}"));

    // Its broker dies: the controller fences it, the coordinator moves, the consumers find the
    // new one and carry on without losing a record.
    let name = h.node_name(first).to_string();
    s.faults = vec![fault(FaultKind::BrokerCrash, Some(&name), 2_000, 30_000)];
    let o = run_scenario(&s, 1);
    let h = &o.history;
    let moved = h
        .entries
        .iter()
        .find_map(|e| match e.op {
            Op::Coordinator { coordinator: Some(c), .. } if e.time > 2_000_000 && c != first => Some(e.time),
            _ => None,
        })
        .expect("the coordinator never moved");
    let gave_up = h
        .entries
        .iter()
        .find(|e| matches!(e.op, Op::Disconnected { coordinator: true, peer, .. } if peer == first))
        .expect("no consumer gave its coordinator up");
    assert!(gave_up.time > 2_000_000);
    let session = s.broker.broker_session_timeout_ms * 1_000;
    assert!(moved <= 2_000_000 + session + 100_000, "moved at {moved}");
    // Consumers gave their coordinator up (a request to it timed out, or it answered
    // NOT_COORDINATOR) and found the new one: commits go on there.
    assert!(h.entries.iter().any(|e| e.time > moved && matches!(e.op, Op::Commit { error: None, .. })));
    assert!(violated(&o).is_empty(), "{:?}", violated(&o));
}

#[test]
fn members_waiting_to_join_a_coordinator_that_moves_are_told_and_join_the_new_one() {
    // The coordinator's broker is cut off from the controller while the group forms (its first
    // rebalance waits group.initial.rebalance.delay.ms): it is fenced, the coordinator moves, and
    // the members waiting for their JoinGroup answer get NOT_COORDINATOR and join at the new one
    // at once, instead of waiting out their JoinGroup timeout (max.poll.interval.ms + 5 s).
    let mut s = common::scenario("order-failover-acks-all");
    s.run.duration_ms = 6_000;
    s.broker.group_initial_rebalance_delay_ms = 5_000;
    let coordinator = format!("broker-{}", evsim_sim::cluster::coordinator_of("order-event-consumer", 3, 50));
    let mut cut = fault(FaultKind::NetworkPartition, Some(&coordinator), 100, 8_000);
    cut.peer = Some("controller".into());
    s.faults = vec![cut];
    let o = run_scenario(&s, 1);
    assert!(o.vacuous.is_none(), "{:?}", o.vacuous);
    let h = &o.history;
    let moved = h
        .entries
        .iter()
        .find(|e| e.time > 0 && matches!(e.op, Op::Coordinator { .. }))
        .expect("the coordinator moved")
        .time;
    let generation =
        h.entries.iter().find(|e| matches!(e.op, Op::GenerationStarted { .. })).expect("the group formed").time;
    assert!(generation > moved, "the group formed at {generation} us, before the move at {moved} us");
    // At the new coordinator, after its own initial delay: seconds, not the 305 s of a JoinGroup
    // timeout.
    let delay = s.broker.group_initial_rebalance_delay_ms * 1_000;
    assert!(generation <= moved + delay + 1_000_000, "the group formed only at {generation} us");
    assert!(violated(&o).is_empty(), "{:?}", violated(&o));
}
