//! Faults reproduce the failures Kafka deployments have, and the checkers report them: each test
//! runs the weak setting and the strong one under the same faults and asserts both verdicts.

mod common;

use common::fault;

use evsim_model::checkers::Invariant;
use evsim_model::history::{ErrorCode, History, Op};
use evsim_model::scenario::{Acks, CommitStrategy, FaultKind, PublishStrategy, Scenario, SwarmSpec};
use evsim_sim::{RunOutcome, run_scenario};

fn violations(o: &RunOutcome, inv: Invariant) -> usize {
    o.verdicts.iter().find(|v| v.invariant == inv).map_or(0, |v| v.violations.len())
}

fn count(h: &History, pred: impl Fn(&Op) -> bool) -> usize {
    h.entries.iter().filter(|e| pred(&e.op)).count()
}

/// Every planned fault fired and records moved: the run proves something.
fn assert_not_vacuous(o: &RunOutcome) {
    assert!(o.vacuous.is_none(), "seed {}: vacuous: {:?}", o.seed, o.vacuous);
    assert!(o.stats.faults.iter().all(|f| f.fired), "{:?}", o.stats.faults);
}

#[test]
fn acks_1_loses_acknowledged_records_on_failover_and_acks_all_with_min_insync_2_does_not() {
    for seed in 1..=3 {
        let weak = run_scenario(&common::scenario("order-failover-acks1"), seed);
        assert_not_vacuous(&weak);
        assert!(violations(&weak, Invariant::LostWrite) > 0, "seed {seed}: acks=1 lost nothing?");
        // The loss is real: the new leader took over with a shorter log than the old one had
        // acknowledged.
        assert!(count(&weak.history, |op| matches!(op, Op::LeaderElected { leader: Some(_), .. })) >= 1);

        let strong = run_scenario(&common::scenario("order-failover-acks-all"), seed);
        assert_not_vacuous(&strong);
        assert_eq!(violations(&strong, Invariant::LostWrite), 0, "seed {seed}");
        assert_eq!(violations(&strong, Invariant::EventualProcessing), 0, "seed {seed}");
        assert_eq!(violations(&strong, Invariant::InconsistentOffsets), 0, "seed {seed}");
        assert!(count(&strong.history, |op| matches!(op, Op::LeaderElected { leader: Some(_), .. })) >= 1);
        assert!(strong.passed(), "seed {seed}: {:?}", strong.verdicts.iter().find(|v| !v.violations.is_empty()));
    }
}

#[test]
fn min_insync_replicas_refuses_acks_all_writes_when_the_isr_is_too_small() {
    // Two of three brokers die and stay dead: the ISR shrinks to one, below min.insync.replicas=2.
    let mut s = common::scenario("order-failover-acks-all");
    s.faults = vec![
        fault(FaultKind::BrokerCrash, Some("broker-1"), 2_000, 30_000),
        fault(FaultKind::BrokerCrash, Some("broker-2"), 2_000, 30_000),
    ];
    // A producer that gives up within the run, so that the refusals reach the application.
    s.services[0].producer.retries = 5;
    s.services[0].producer.delivery_timeout_ms = 20_000;
    let o = run_scenario(&s, 1);
    assert_not_vacuous(&o);
    let refused = count(&o.history, |op| matches!(op, Op::SendFailed { error: ErrorCode::NotEnoughReplicas, .. }))
        + count(&o.history, |op| matches!(op, Op::SendFailed { error: ErrorCode::MsgTimedOut, .. }));
    assert!(refused > 0, "no acks=all send was refused with one replica left");
    // Nothing acknowledged was lost: refusing is how acks=all keeps its promise.
    assert_eq!(violations(&o, Invariant::LostWrite), 0);
}

#[test]
fn unclean_leader_election_loses_committed_records() {
    // acks=all, but the only in-sync replica dies for good after the followers were cut off:
    // only an out-of-sync replica is left, and unclean election lets it lead.
    let mut s = common::scenario("order-failover-acks-all");
    s.broker.min_insync_replicas = 1;
    s.broker.replica_lag_time_max_ms = 1_000;
    s.broker.unclean_leader_election_enable = true;
    let cut = |peer: &str| {
        let mut f = fault(FaultKind::NetworkPartition, Some("broker-0"), 1_000, 6_000);
        f.peer = Some(peer.to_string());
        f
    };
    s.faults = vec![cut("broker-1"), cut("broker-2"), fault(FaultKind::BrokerCrash, Some("broker-0"), 5_000, 40_000)];
    // Only broker-0's partition matters; give it every leadership for simplicity: one partition.
    s.topics[0].partitions = 1;
    let o = run_scenario(&s, 1);
    assert_not_vacuous(&o);
    assert!(count(&o.history, |op| matches!(op, Op::LeaderElected { unclean: true, .. })) >= 1, "no unclean election");
    // Records the old leader had committed are gone; their offsets now hold other records.
    assert!(violations(&o, Invariant::InconsistentOffsets) > 0, "an unclean election lost nothing?");
    assert!(
        count(&o.history, |op| matches!(op, Op::OffsetReset { .. })) >= 1,
        "no consumer was beyond the new log end"
    );

    // Without unclean election the partition stays offline instead: nothing acknowledged is lost.
    s.broker.unclean_leader_election_enable = false;
    let o = run_scenario(&s, 1);
    assert_eq!(violations(&o, Invariant::LostWrite), 0);
    assert_eq!(violations(&o, Invariant::InconsistentOffsets), 0);
    assert!(count(&o.history, |op| matches!(op, Op::LeaderElected { leader: None, .. })) >= 1);
}

#[test]
fn lost_responses_with_retries_and_five_in_flight_duplicate_and_reorder_unless_idempotent() {
    let weak = run_scenario(&common::scenario("coupon-retries-lost-responses"), 1);
    assert_not_vacuous(&weak);
    assert!(violations(&weak, Invariant::Duplicate) > 0, "no duplicate from retried batches");
    assert!(violations(&weak, Invariant::NonmonotonicSend) > 0, "no reordering from retried batches");

    let mut s = common::scenario("coupon-retries-lost-responses");
    s.services[0].producer.enable_idempotence = true;
    s.services[0].producer.acks = Acks::All;
    for seed in 1..=3 {
        let strong = run_scenario(&s, seed);
        assert_not_vacuous(&strong);
        assert_eq!(violations(&strong, Invariant::Duplicate), 0, "seed {seed}");
        assert_eq!(violations(&strong, Invariant::NonmonotonicSend), 0, "seed {seed}");
        // The same answers were late, and the producer did retry: the broker recognised the
        // retried batches.
        assert!(strong.stats.faults[0].messages > 0);
        assert!(strong.stats.produce_retries > 0);
    }
}

/// The order service cannot reach the broker for 15 s; its sends give up after 10 s.
fn broker_unreachable(mut s: Scenario) -> Scenario {
    let mut cut = fault(FaultKind::NetworkPartition, Some("order-service-0"), 2_000, 15_000);
    cut.peer = Some("broker-0".to_string());
    s.faults = vec![cut];
    for svc in &mut s.services {
        svc.producer.request_timeout_ms = 2_000;
        svc.producer.delivery_timeout_ms = 10_000;
    }
    s.run.quiet_period_ms = 40_000;
    s
}

#[test]
fn after_commit_publishing_loses_events_while_the_broker_is_unreachable_and_the_outbox_does_not() {
    let mut s = broker_unreachable(common::scenario("order-basic"));
    assert_eq!(s.services[0].publish, PublishStrategy::AfterCommit);
    s.run.invariants.push(Invariant::EventualPublication);
    let weak = run_scenario(&s, 1);
    assert_not_vacuous(&weak);
    assert!(violations(&weak, Invariant::EventualPublication) > 0, "after-commit published everything?");
    assert!(count(&weak.history, |op| matches!(op, Op::SendFailed { error: ErrorCode::MsgTimedOut, .. })) > 0);

    let s = broker_unreachable(common::scenario("order-outbox"));
    let strong = run_scenario(&s, 1);
    assert_not_vacuous(&strong);
    assert_eq!(violations(&strong, Invariant::EventualPublication), 0);
    assert_eq!(violations(&strong, Invariant::EventualProcessing), 0);
    // The scheduler re-published rows whose first send was still retrying: duplicates reach the
    // downstream group, whose processed table absorbs them.
    assert!(violations(&strong, Invariant::Duplicate) > 0, "no duplicate to absorb");
    assert!(count(&strong.history, |op| matches!(op, Op::DuplicateSkipped { .. })) > 0);
    assert_eq!(violations(&strong, Invariant::EffectOnce), 0);
}

/// The order scenario's consumer group crashes one instance mid-run, with `strategy`.
fn consumer_crash(strategy: CommitStrategy, background_auto_commit: bool) -> Scenario {
    let mut s = common::scenario("order-basic");
    let c = &mut s.consumers[0];
    c.commit_strategy = strategy;
    c.consumer.enable_auto_commit = strategy == CommitStrategy::AutoCommit;
    c.consumer.enable_auto_offset_store = background_auto_commit;
    c.consumer.auto_commit_interval_ms = 200;
    c.consumer.session_timeout_ms = 6_000;
    // A listener near saturation, so that polls return many records and a crash always catches
    // a batch half done.
    c.processing_time_us = 2_500;
    s.workload.rate_per_sec = 1_000.0;
    s.faults = vec![fault(FaultKind::ConsumerCrash, Some("order-event-consumer-1"), 4_000, 5_000)];
    s
}

#[test]
fn auto_commit_in_the_background_loses_the_crashed_consumers_batch() {
    // librdkafka's auto-commit commits what poll() handed out, processed or not: the records
    // the crashed instance had not processed are never processed by anyone.
    let o = run_scenario(&consumer_crash(CommitStrategy::AutoCommit, true), 1);
    assert_not_vacuous(&o);
    assert!(violations(&o, Invariant::EventualProcessing) > 0, "background auto-commit lost nothing?");
}

#[test]
fn java_auto_commit_and_commit_after_process_redeliver_the_crashed_consumers_batch() {
    // The Java client commits inside poll() only what earlier polls returned, which the
    // container has processed: a crash costs duplicates, not records.
    for strategy in [CommitStrategy::AutoCommit, CommitStrategy::CommitAfterProcess] {
        let o = run_scenario(&consumer_crash(strategy, false), 1);
        assert_not_vacuous(&o);
        assert_eq!(violations(&o, Invariant::EventualProcessing), 0, "{strategy:?} lost records");
        assert!(violations(&o, Invariant::EffectOnce) > 0, "{strategy:?}: the crash caused no redelivery?");
        assert!(count(&o.history, |op| matches!(op, Op::MemberRemoved { .. })) >= 1);
    }
}

#[test]
fn a_zombie_consumer_is_fenced_and_its_late_effects_are_duplicates() {
    // A GC pause longer than session.timeout.ms: the coordinator expels the member and gives its
    // partitions away; when the pause ends the zombie finishes its batch (side effects) and its
    // commit is refused.
    let mut s = common::scenario("order-basic");
    let c = &mut s.consumers[0];
    c.consumer.session_timeout_ms = 6_000;
    c.processing_time_us = 2_000;
    s.workload.rate_per_sec = 400.0;
    s.faults = vec![fault(FaultKind::ConsumerPause, Some("order-event-consumer-0"), 4_000, 10_000)];
    let o = run_scenario(&s, 1);
    assert_not_vacuous(&o);
    let zombie = o.history.header.nodes.iter().position(|n| n == "order-event-consumer-0").unwrap() as u16;
    let pause_end = 14_000_000;
    let fenced = o
        .history
        .entries
        .iter()
        .filter(|e| e.process.0 == zombie && e.time >= pause_end)
        .filter(|e| {
            matches!(e.op, Op::Commit { error: Some(ErrorCode::IllegalGeneration | ErrorCode::UnknownMemberId), .. })
        })
        .count();
    assert!(fenced >= 1, "the zombie's commit was not fenced");
    assert!(count(&o.history, |op| matches!(op, Op::MemberRemoved { .. })) >= 1);
    assert!(violations(&o, Invariant::EffectOnce) > 0, "the zombie's late effects were not duplicates");
    assert_eq!(violations(&o, Invariant::EventualProcessing), 0);
}

#[test]
fn a_service_crash_loses_its_unsent_events_with_after_commit_and_not_with_the_outbox() {
    let crash = fault(FaultKind::ServiceCrash, Some("order-service-0"), 3_000, 2_000);
    let mut s = common::scenario("order-basic");
    s.services[0].producer.linger_ms = 50; // events wait in the producer's memory for 50 ms
    s.faults = vec![crash.clone()];
    s.run.invariants.push(Invariant::EventualPublication);
    let weak = run_scenario(&s, 1);
    assert_not_vacuous(&weak);
    assert!(violations(&weak, Invariant::EventualPublication) > 0, "the crash lost no committed order's event?");

    let mut s = common::scenario("order-outbox");
    s.services[0].producer.linger_ms = 50;
    s.faults = vec![crash];
    let strong = run_scenario(&s, 1);
    assert_not_vacuous(&strong);
    assert_eq!(violations(&strong, Invariant::EventualPublication), 0);
    assert_eq!(violations(&strong, Invariant::EffectOnce), 0);
}

#[test]
fn db_unavailability_and_a_platform_outage_fail_the_work_they_hit() {
    let mut s = common::scenario("order-basic");
    s.faults = vec![fault(FaultKind::DbUnavailable, None, 2_000, 1_000)];
    let o = run_scenario(&s, 1);
    assert_not_vacuous(&o);
    // Orders arriving during the outage were neither committed nor published.
    assert!(o.stats.orders_committed < o.stats.requests);
    assert!(o.passed(), "{:?}", o.verdicts.iter().find(|v| v.claimed && !v.violations.is_empty()));

    let mut s = common::scenario("payment-basic");
    let group = s.consumers.iter().find(|c| c.name.contains("payment")).expect("a payment consumer").name.clone();
    s.faults = vec![fault(FaultKind::PlatformOutage, Some(&group), 5_000, 1_000)];
    let o = run_scenario(&s, 1);
    assert_not_vacuous(&o);
    assert!(count(&o.history, |op| matches!(op, Op::Processed { ok: false, .. })) > 0);
}

#[test]
fn a_fault_that_touches_nothing_makes_the_run_vacuous() {
    let mut s = common::scenario("order-basic");
    // The two order-service instances never talk to each other.
    let mut f = fault(FaultKind::NetworkPartition, Some("order-service-0"), 1_000, 1_000);
    f.peer = Some("order-service-1".to_string());
    s.faults = vec![f];
    let o = run_scenario(&s, 1);
    let why = o.vacuous.as_deref().expect("vacuous");
    assert!(why.contains("network-partition order-service-0"), "{why}");
    assert!(!o.passed());
}

#[test]
fn swarm_faults_are_drawn_from_the_seed_and_replay_exactly() {
    let mut s = common::scenario("order-failover-acks-all");
    s.faults.clear();
    s.swarm = Some(SwarmSpec {
        kinds: vec![FaultKind::BrokerCrash, FaultKind::NetworkLoss, FaultKind::ConsumerPause],
        max_faults: 3,
        max_for_ms: 4_000,
        max_loss_rate: 0.2,
        targets: Vec::new(),
    });
    let a = run_scenario(&s, 11);
    let b = run_scenario(&s, 11);
    assert_eq!(a.history_hash, b.history_hash);
    assert!(!a.stats.faults.is_empty());
    let plans: std::collections::BTreeSet<Vec<String>> =
        (1..=8).map(|seed| run_scenario(&s, seed).stats.faults.into_iter().map(|f| f.fault).collect()).collect();
    assert!(plans.len() >= 6, "seeds drew the same fault plans: {plans:?}");
    // `targets` keeps every drawn fault to the nodes it lists.
    s.swarm.as_mut().unwrap().targets = vec!["broker-1".to_string()];
    let mut drawn = 0;
    for seed in 1..=8 {
        let o = run_scenario(&s, seed);
        drawn += o.stats.faults.len();
        for f in &o.stats.faults {
            assert!(f.fault.contains("broker-1") && !f.fault.contains("broker-0"), "seed {seed}: {}", f.fault);
        }
    }
    assert!(drawn >= 4, "{drawn} faults drawn over 8 seeds");
}

/// `--robust 3`: the counterexample found fails on its own seed and the next two (other
/// timings of the same schedule), and cases that failed on one seed only are counted as fragile.
#[test]
fn a_robust_search_keeps_counterexamples_that_fail_on_consecutive_seeds() {
    use evsim_sim::search::{Case, SearchResult, search};
    let mut base = common::scenario("order-acks1-search");
    base.broker.log_flush_interval_ms = 1;
    base.swarm = Some(SwarmSpec {
        kinds: vec![FaultKind::BrokerCrash, FaultKind::NetworkLoss],
        max_faults: 4,
        max_for_ms: 10_000,
        max_loss_rate: 0.3,
        targets: vec!["broker-0".into(), "broker-1".into(), "broker-2".into()],
    });
    let result = search(&base, 200, 1, 128, 3, &|| {}).expect("a search space");
    let SearchResult::Found { shrunk, invariant, fragile, .. } = result else {
        panic!("200 generated cases of acks=1 with broker crashes and lossy links found nothing robust");
    };
    for i in 0..3 {
        let seed = shrunk.seed.wrapping_add(i) & (i64::MAX as u64);
        let case = Case { seed, ..shrunk.clone() };
        let o = run_scenario(&case.scenario(&base), seed);
        assert!(violations(&o, invariant) > 0, "the shrunk case holds {invariant} on seed {seed}");
    }
    eprintln!("{fragile} fragile case(s)");
    assert!(fragile > 0, "no case failed on its own seed alone: the robust filter did nothing here");
}

#[test]
fn a_generated_search_finds_a_lost_acknowledged_record_and_shrinks_it_to_a_replayable_file() {
    use evsim_sim::search::{SearchResult, counterexample_toml, search};
    let path = common::root().join("scenarios/order-acks1-search.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut base = common::scenario("order-acks1-search");
    base.run.duration_ms = 4_000; // a shorter workload keeps the debug-build test quick
    base.run.quiet_period_ms = 15_000;
    let runs = std::cell::Cell::new(0);
    let result = search(&base, 64, 1, 512, 1, &|| runs.set(runs.get() + 1)).expect("a search space");
    let SearchResult::Found { shrunk, invariant, outcome, .. } = result else {
        panic!("64 generated cases of acks=1 with broker crashes found nothing");
    };
    // Whichever claim broke first (a lost acknowledged record, or a consumer thrown back by the
    // truncated log), it was a broker crash that did it.
    assert!(base.run.invariants.contains(&invariant), "{invariant}");
    assert!((1..=3).contains(&shrunk.faults.len()), "not shrunk: {:?}", shrunk.faults);
    assert!(shrunk.faults.iter().any(|f| f.kind == FaultKind::BrokerCrash));
    assert!(shrunk.duration_ms <= base.run.duration_ms);
    // Shrinking kept a real failure: the outcome violates the invariant.
    assert!(outcome.verdicts.iter().any(|v| v.invariant == invariant && !v.violations.is_empty()));
    // The written file replays the same run.
    // (The file's own quiet period, shortened as above; the case sets the workload length.)
    assert!(text.contains("quiet_period_ms = 30_000"));
    let file_base = text.replace("quiet_period_ms = 30_000", "quiet_period_ms = 15_000");
    let toml = counterexample_toml(&file_base, "order-acks1-search.toml", &base, &shrunk, invariant, None).unwrap();
    let replay = Scenario::parse("counterexample.toml", &toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    assert_eq!(replay.faults, shrunk.faults);
    let again = run_scenario(&replay, replay.run.seed);
    assert_eq!(again.history_hash, outcome.history_hash, "{toml}");
    assert!(runs.get() > 1);
    // The same with the run settings written as an inline table, `run = { ... }`.
    let start = file_base.find("[run]\n").unwrap();
    let end = start + file_base[start..].find("\n\n").unwrap();
    let keys: Vec<&str> = file_base[start + 6..end].lines().collect();
    let inline = format!("{}run = {{ {} }}{}", &file_base[..start], keys.join(", "), &file_base[end..]);
    let toml = counterexample_toml(&inline, "inline.toml", &base, &shrunk, invariant, None).unwrap();
    let replay = Scenario::parse("counterexample.toml", &toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    assert_eq!(run_scenario(&replay, replay.run.seed).history_hash, outcome.history_hash, "{toml}");

    // A search space with nothing to hit is bad input, not a pass.
    let mut empty = base.clone();
    empty.swarm = Some(SwarmSpec {
        kinds: vec![FaultKind::PlatformOutage],
        max_faults: 1,
        max_for_ms: 10,
        max_loss_rate: 0.1,
        targets: Vec::new(),
    });
    empty.consumers.clear();
    let e = search(&empty, 4, 1, 4, 1, &|| {}).unwrap_err();
    assert!(e.contains("platform-outage"), "{e}");
}

#[test]
fn a_static_member_that_restarts_within_the_session_timeout_causes_no_rebalance() {
    let crash = |s: &mut Scenario| {
        let c = &mut s.consumers[0];
        c.consumer.session_timeout_ms = 10_000;
        s.faults = vec![fault(FaultKind::ConsumerCrash, Some("order-event-consumer-1"), 5_000, 2_000)];
    };
    let rebalances_after_crash = |o: &RunOutcome| {
        o.history.entries.iter().filter(|e| e.time > 5_000_000 && matches!(e.op, Op::RebalanceStarted { .. })).count()
    };

    // Dynamic membership: the restarted process is a new member (a rebalance), and the old one
    // is expelled at its session timeout (another).
    let mut s = common::scenario("order-basic");
    crash(&mut s);
    let dynamic = run_scenario(&s, 1);
    assert_not_vacuous(&dynamic);
    assert!(rebalances_after_crash(&dynamic) >= 1);

    // Static membership (group.instance.id): it takes its old place and partitions back.
    s.consumers[0].consumer.group_instance_id = Some("order-event-consumer".to_string());
    let fixed = run_scenario(&s, 1);
    assert_not_vacuous(&fixed);
    assert_eq!(rebalances_after_crash(&fixed), 0, "a static member's restart rebalanced the group");
    assert_eq!(count(&fixed.history, |op| matches!(op, Op::MemberRemoved { .. })), 0);
    let node = fixed.history.header.nodes.iter().position(|n| n == "order-event-consumer-1").unwrap() as u16;
    let reassigned = fixed
        .history
        .entries
        .iter()
        .any(|e| e.process.0 == node && e.time >= 7_000_000 && matches!(e.op, Op::Assigned { .. }));
    assert!(reassigned, "the restarted static member did not get its partitions back");
    assert!(fixed.passed(), "{:?}", fixed.verdicts.iter().find(|v| v.claimed && !v.violations.is_empty()));
}

#[test]
fn a_single_replica_loses_its_unflushed_tail_when_its_machine_dies() {
    // Replication factor 1: durability rests on the one broker's disk, and the OS writes back
    // every 5 s. A crash loses what was acknowledged since.
    let mut s = common::scenario("order-basic");
    s.faults = vec![fault(FaultKind::BrokerCrash, Some("broker-0"), 7_500, 2_000)];
    let o = run_scenario(&s, 1);
    assert_not_vacuous(&o);
    let lost: u64 = o
        .history
        .entries
        .iter()
        .filter_map(|e| match e.op {
            Op::LogRecovered { lost, .. } => Some(lost),
            _ => None,
        })
        .sum();
    assert!(lost > 0, "nothing unflushed was lost");
    assert!(violations(&o, Invariant::InconsistentOffsets) > 0);
    assert!(!o.passed(), "acknowledged orders vanished, yet every claimed invariant held");
}

#[test]
fn followers_that_keep_pace_stay_in_sync_and_a_cut_off_one_leaves_the_isr() {
    // Steady writes, no faults: followers never sit exactly at the moving log end, but they keep
    // pace, so nobody leaves the ISR (Kafka's lastCaughtUpTime rule).
    let mut s = common::scenario("order-failover-acks-all");
    s.faults.clear();
    s.broker.replica_lag_time_max_ms = 2_000;
    let o = run_scenario(&s, 1);
    assert_eq!(count(&o.history, |op| matches!(op, Op::IsrChanged { .. })), 0);
    assert!(o.passed());

    // broker-2 cut off from broker-0 (the leader of partition 0): it leaves that ISR after
    // replica.lag.time.max.ms and rejoins once the link heals and it catches up.
    let mut cut = fault(FaultKind::NetworkPartition, Some("broker-2"), 2_000, 5_000);
    cut.peer = Some("broker-0".to_string());
    s.faults = vec![cut];
    let o = run_scenario(&s, 1);
    assert_not_vacuous(&o);
    let changes: Vec<usize> = o
        .history
        .entries
        .iter()
        .filter_map(|e| match &e.op {
            Op::IsrChanged { tp, isr } if tp.partition == 0 => Some(isr.len()),
            _ => None,
        })
        .collect();
    assert_eq!(changes.first(), Some(&2), "{changes:?}");
    assert_eq!(changes.last(), Some(&3), "{changes:?}");
    assert!(o.passed(), "{:?}", o.verdicts.iter().find(|v| v.claimed && !v.violations.is_empty()));
}

#[test]
fn a_consumer_cut_off_from_the_cluster_is_expelled_and_rejoins_after_the_partition_heals() {
    let mut s = common::scenario("order-basic");
    s.consumers[0].consumer.session_timeout_ms = 6_000;
    s.faults = vec![fault(FaultKind::NetworkPartition, Some("order-event-consumer-0"), 4_000, 10_000)];
    let o = run_scenario(&s, 1);
    assert_not_vacuous(&o);
    let node = o.history.header.nodes.iter().position(|n| n == "order-event-consumer-0").unwrap() as u16;
    let removed = o.history.entries.iter().any(|e| {
        matches!(e.op, Op::MemberRemoved { member, reason: evsim_model::history::LeaveReason::SessionTimeout, .. } if member.0 == node)
    });
    assert!(removed, "the cut-off member was not expelled");
    let back = o
        .history
        .entries
        .iter()
        .any(|e| e.process.0 == node && e.time > 14_000_000 && matches!(e.op, Op::Assigned { .. }));
    assert!(back, "the member did not rejoin after the partition healed");
    // Its partitions went to the others meanwhile: nothing is left unprocessed.
    assert_eq!(violations(&o, Invariant::EventualProcessing), 0);
    assert_eq!(violations(&o, Invariant::LostWrite), 0);
}

/// A paused broker (SIGSTOP; its machine stays up): past broker.session.timeout.ms the
/// controller fences it and its leaderships move; when it continues, its next heartbeat
/// unfences it. Its machine never died, so acks=all loses nothing and nothing crashed.
#[test]
fn a_paused_broker_is_fenced_its_leaderships_move_and_nothing_is_lost() {
    let mut s = common::scenario("order-failover-acks-all");
    s.faults = vec![fault(FaultKind::BrokerPause, Some("broker-0"), 3_000, 10_000)];
    for seed in 1..=3 {
        let o = run_scenario(&s, seed);
        assert_not_vacuous(&o);
        let fenced = |h: &History| count(h, |op| matches!(op, Op::BrokerFenced { .. }));
        assert_eq!(fenced(&o.history), 1, "seed {seed}: broker-0 should be fenced once");
        assert_eq!(count(&o.history, |op| matches!(op, Op::BrokerUnfenced { .. })), 1, "seed {seed}");
        assert!(count(&o.history, |op| matches!(op, Op::LeaderElected { leader: Some(_), .. })) >= 1);
        assert_eq!(count(&o.history, |op| matches!(op, Op::Crashed)), 0);
        assert!(o.passed(), "seed {seed}: {:?}", o.verdicts.iter().find(|v| !v.violations.is_empty()));
        // A run that is the same as one without the pause proves nothing: records waited.
        assert!(common::longest_ack_wait(&o.history) > 1_000_000, "seed {seed}: no send waited for the paused broker");
    }
    // Shorter than broker.session.timeout.ms (3 s): nobody is fenced, what was sent to it waits
    // in its sockets and is answered when it continues.
    s.faults = vec![fault(FaultKind::BrokerPause, Some("broker-0"), 3_000, 1_500)];
    let o = run_scenario(&s, 1);
    assert_not_vacuous(&o);
    assert_eq!(count(&o.history, |op| matches!(op, Op::BrokerFenced { .. })), 0);
    assert!(o.passed(), "{:?}", o.verdicts.iter().find(|v| !v.violations.is_empty()));
    let wait = common::longest_ack_wait(&o.history);
    assert!((1_000_000..3_000_000).contains(&wait), "the longest send waited {wait} µs for a 1.5 s pause");
}
