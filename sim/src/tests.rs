//! Consumer-group behaviour of the simulated cluster, driven directly: joins mid-run, a member
//! that goes silent, and the coordinator's commit fencing.

use crate::cluster::{CoordinatorRequest as Req, CoordinatorResponse as Resp, Msg};
use crate::world::{Ev, World};
use evsim_model::checkers::Invariant;
use evsim_model::history::{ErrorCode, History, LeaveReason, NodeId, Op, TopicId, Tp};
use evsim_model::scenario::{AssignmentStrategy, Scenario};

fn basic() -> Scenario {
    let src = include_str!("../../scenarios/order-basic.toml");
    Scenario::parse("order-basic.toml", src).expect("order-basic parses")
}

fn holds(h: &History, inv: Invariant) -> bool {
    inv.check(h).is_empty()
}

fn node_of(w: &World, c: u16) -> NodeId {
    w.consumers[c as usize].node
}

fn entries<'a>(
    h: &'a History,
    pred: impl Fn(&Op) -> bool + 'a,
) -> impl Iterator<Item = &'a evsim_model::history::Entry> {
    h.entries.iter().filter(move |e| pred(&e.op))
}

/// A member joining mid-run triggers a rebalance; with the eager range protocol every member gives
/// up all its partitions first, and the new generation has three members.
#[test]
fn a_member_joining_mid_run_rebalances_the_group_eagerly() {
    let s = basic();
    let mut w = World::new(&s, 1);
    w.start();
    w.consumer_start(0);
    w.consumer_start(1);
    w.run_until(6_000_000);
    w.consumer_start(2);
    let end = w.end;
    w.run_until(end);
    let (h, _) = w.finish();
    let gens: Vec<&Op> = entries(&h, |op| matches!(op, Op::GenerationStarted { .. })).map(|e| &e.op).collect();
    assert!(gens.len() >= 2, "{gens:?}");
    let Op::GenerationStarted { generation, members, .. } = gens.last().unwrap() else { unreachable!() };
    assert!(*generation >= 2);
    assert_eq!(members.len(), 3);
    // Eager: the old members revoked everything they had (2 + 1 partitions) before rejoining.
    let revoked: usize = entries(&h, |op| matches!(op, Op::Revoked { .. }))
        .map(|e| match &e.op {
            Op::Revoked { partitions, .. } => partitions.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(revoked, 3);
    for inv in Invariant::ALL {
        assert!(holds(&h, inv), "{inv}: {:?}", inv.check(&h).first());
    }
}

/// With cooperative-sticky, only the partition that moves is revoked, and a second rebalance hands
/// it to the new member.
#[test]
fn cooperative_sticky_revokes_only_what_moves() {
    let mut s = basic();
    s.consumers[0].consumer.partition_assignment_strategy = AssignmentStrategy::CooperativeSticky;
    let mut w = World::new(&s, 1);
    w.start();
    w.consumer_start(0);
    w.consumer_start(1);
    w.run_until(6_000_000);
    let newcomer = node_of(&w, 2);
    w.consumer_start(2);
    let end = w.end;
    w.run_until(end);
    let (h, _) = w.finish();
    let revoked: Vec<&Vec<Tp>> = entries(&h, |op| matches!(op, Op::Revoked { .. }))
        .map(|e| match &e.op {
            Op::Revoked { partitions, .. } => partitions,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(revoked.len(), 1, "one member gives one partition up: {revoked:?}");
    assert_eq!(revoked[0].len(), 1);
    let got = entries(&h, |op| matches!(op, Op::Assigned { .. }))
        .filter(|e| e.process == newcomer)
        .any(|e| matches!(&e.op, Op::Assigned { partitions, .. } if partitions.contains(revoked[0].first().unwrap())));
    assert!(got, "the newcomer gets the revoked partition in the follow-up rebalance");
    let gens = entries(&h, |op| matches!(op, Op::GenerationStarted { .. })).count();
    assert!(gens >= 3, "initial, newcomer, follow-up: {gens}");
    for inv in Invariant::ALL {
        assert!(holds(&h, inv), "{inv}: {:?}", inv.check(&h).first());
    }
}

/// A member that goes silent is removed after `session.timeout.ms`; its partitions move to the
/// others, which resume from the committed offsets, so every order is still processed.
#[test]
fn a_silent_member_is_removed_after_the_session_timeout() {
    let mut s = basic();
    s.consumers[0].consumer.session_timeout_ms = 10_000;
    let mut w = World::new(&s, 1);
    w.start();
    for c in 0..3 {
        w.consumer_start(c);
    }
    w.run_until(6_000_000);
    let dead = node_of(&w, 2);
    w.crash_consumer(2);
    let end = w.end;
    w.run_until(end);
    let (h, stats) = w.finish();
    let removed: Vec<u64> = entries(&h, move |op| {
        matches!(op, Op::MemberRemoved { reason: LeaveReason::SessionTimeout, member, .. } if *member == dead)
    })
        .map(|e| e.time)
        .collect();
    assert_eq!(removed.len(), 1, "removed once");
    // The last heartbeat reached the coordinator at most heartbeat.interval.ms (3 s) before the
    // crash at 6 s; removal comes session.timeout.ms (10 s) after it.
    assert!((13_000_000..=16_010_000).contains(&removed[0]), "after ~10 s of silence: {}", removed[0]);
    assert!(stats.rebalances >= 2);
    assert!(holds(&h, Invariant::EventualProcessing), "{:?}", Invariant::EventualProcessing.check(&h).first());
    assert!(holds(&h, Invariant::LostWrite));
}

fn coordinator_responses(w: &mut World) -> Vec<Resp> {
    let mut out = Vec::new();
    while let Some(ev) = w.q.pop() {
        if let Ev::Net(Msg::FromCoordinator { resp: r, .. }) = ev {
            out.push(r);
        }
    }
    out
}

fn join(w: &mut World, consumer: u16, member_id: Option<String>, generation: i32) {
    w.coordinator_request(0, Req::JoinGroup { group: 0, consumer, member_id, owned: vec![], generation });
}

fn commit(w: &mut World, consumer: u16, member_id: &str, generation: i32) -> Option<ErrorCode> {
    let tp = Tp { topic: TopicId(0), partition: 0 };
    let req = Req::OffsetCommit {
        group: 0,
        consumer,
        member_id: member_id.to_string(),
        generation,
        offsets: vec![(tp, 5)],
        commit: 0,
    };
    w.coordinator_request(0, req);
    match coordinator_responses(w).pop() {
        Some(Resp::OffsetCommit { error, .. }) => error,
        other => panic!("expected an OffsetCommit response, got {other:?}"),
    }
}

fn joined(responses: Vec<Resp>) -> (String, i32) {
    for r in responses {
        if let Resp::JoinGroup { result: Ok(j), .. } = r {
            return (j.member_id, j.generation);
        }
    }
    panic!("no successful JoinGroup response");
}

/// Kafka's `handleCommitOffsets`: UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS
/// while completing a rebalance, and acceptance from the current generation while preparing one.
#[test]
fn the_coordinator_fences_commits_like_kafka() {
    let mut s = basic();
    s.broker.group_initial_rebalance_delay_ms = 0;
    let mut w = World::new(&s, 1);
    join(&mut w, 0, None, -1);
    let (m0, g1) = joined(coordinator_responses(&mut w));
    assert_eq!(g1, 1);
    let tp = |p| Tp { topic: TopicId(0), partition: p };
    let plan = vec![(m0.clone(), vec![tp(0), tp(1), tp(2)])];
    w.coordinator_request(
        0,
        Req::SyncGroup { group: 0, consumer: 0, member_id: m0.clone(), generation: 1, assignments: Some(plan) },
    );
    coordinator_responses(&mut w);

    assert_eq!(commit(&mut w, 0, &m0, 1), None, "current generation, stable group");
    assert_eq!(commit(&mut w, 0, &m0, 0), Some(ErrorCode::IllegalGeneration));
    assert_eq!(commit(&mut w, 0, "stranger", 1), Some(ErrorCode::UnknownMemberId));

    // A second member joins: the group prepares a rebalance.
    join(&mut w, 1, None, -1);
    coordinator_responses(&mut w);
    assert_eq!(commit(&mut w, 0, &m0, 1), None, "accepted while preparing (onJoinPrepare commits)");
    w.coordinator_request(0, Req::Heartbeat { group: 0, consumer: 0, member_id: m0.clone(), generation: 1 });
    let hb = coordinator_responses(&mut w);
    assert!(matches!(hb.as_slice(), [Resp::Heartbeat { error: Some(ErrorCode::RebalanceInProgress), .. }]), "{hb:?}");

    // The first member rejoins: everyone has joined, generation 2 completes its join phase.
    join(&mut w, 0, Some(m0.clone()), 1);
    let (_, g2) = joined(coordinator_responses(&mut w));
    assert_eq!(g2, 2);
    assert_eq!(commit(&mut w, 0, &m0, 2), Some(ErrorCode::RebalanceInProgress), "awaiting the leader's SyncGroup");
    assert_eq!(commit(&mut w, 0, &m0, 1), Some(ErrorCode::IllegalGeneration), "an old generation is fenced");
    assert_eq!(w.groups[0].committed.get(&tp(0)), Some(&5), "only accepted commits are stored");
}

/// Null keys stick to one partition until its batch is sent, then move to another (KIP-480).
#[test]
fn null_keys_stick_to_a_partition_until_its_batch_is_sent() {
    use evsim_model::event::{Event, Message};
    let mut s = basic();
    s.services[0].producer.linger_ms = 20;
    let mut w = World::new(&s, 5);
    let msg = |order| Message { key: None, value: Event::OrderCreated { order, user: 1, product: 1, qty: 1 } };
    let mut partitions_per_round = Vec::new();
    for round in 0..6u64 {
        let from = w.history.entries.len();
        for i in 0..5 {
            w.producer_send(0, TopicId(0), msg(round * 10 + i), round * 10 + i);
        }
        let parts: std::collections::BTreeSet<u32> = w.history.entries[from..]
            .iter()
            .filter_map(|e| match e.op {
                Op::Send { tp, .. } => Some(tp.partition),
                _ => None,
            })
            .collect();
        assert_eq!(parts.len(), 1, "round {round}: one sticky partition for a batch, got {parts:?}");
        partitions_per_round.push(*parts.iter().next().unwrap());
        // Let linger.ms pass so the batch is sent, and its response come back.
        let t = w.now() + 50_000;
        w.run_until(t);
    }
    for pair in partitions_per_round.windows(2) {
        assert_ne!(pair[0], pair[1], "a new batch moves to another partition: {partitions_per_round:?}");
    }
}

/// After-commit publishing (seed 001) loses events when the service crashes between the DB commit
/// and the send: the orders stay committed (the DB is durable), their `order-created` records die
/// in the producer's memory, and eventual-processing reports exactly those orders.
#[test]
fn a_service_crash_after_commit_loses_the_unsent_events_but_not_the_orders() {
    let mut s = basic();
    s.services[0].producer.linger_ms = 50; // records wait in the accumulator for up to 50 ms
    let mut w = World::new(&s, 1);
    w.start();
    for c in 0..3 {
        w.consumer_start(c);
    }
    w.run_until(5_000_000);
    let crashed = w.services[0].node;
    w.crash_service(0);
    let end = w.end;
    w.run_until(end);
    let (h, stats) = w.finish();
    let lost = Invariant::EventualProcessing.check(&h);
    assert!(!lost.is_empty(), "some committed orders were never published");
    let unpublished = Invariant::EventualPublication.check(&h);
    assert_eq!(unpublished.len(), lost.len(), "the events were lost before the broker, not after");
    for v in &lost {
        let fact = &h.entries[v.entries[0]];
        assert_eq!(fact.process, crashed, "only the crashed instance loses events: {}", v.message);
        assert!(fact.time <= 5_000_000, "committed before the crash");
        assert!(matches!(fact.op, Op::OrderCommitted { .. }));
    }
    // The DB kept every committed order: stock accounting still adds up, nothing oversold.
    assert!(holds(&h, Invariant::NoOversell), "{:?}", Invariant::NoOversell.check(&h).first());
    assert!(holds(&h, Invariant::LostWrite), "the log lost nothing; the events never reached it");
    assert!(stats.records_produced < stats.orders_committed);
    // The other instance keeps serving every request after the crash.
    let after = h.entries.iter().filter(|e| e.time > 5_000_000 && matches!(e.op, Op::OrderCommitted { .. })).count();
    assert!(after > 1_000, "requests after the crash go to the live instance ({after})");
}

/// A consumer crash in the middle of a batch: commit-after-process redelivers what was handled but
/// not committed (duplicates, nothing lost); commit-before-process loses what was committed but
/// not handled (nothing duplicated).
#[test]
fn a_consumer_crash_duplicates_after_process_and_loses_before_process() {
    use evsim_model::scenario::CommitStrategy;
    let run = |strategy: CommitStrategy| {
        let mut s = basic();
        let c = &mut s.consumers[0];
        c.commit_strategy = strategy;
        c.processing_time_us = 2_500; // busy consumers: a crash lands mid-batch
        c.consumer.session_timeout_ms = 10_000;
        let mut w = World::new(&s, 3);
        w.start();
        for c in 0..3 {
            w.consumer_start(c);
        }
        w.run_until(6_000_000);
        w.crash_consumer(1);
        let end = w.end;
        w.run_until(end);
        w.finish().0
    };
    let after = run(CommitStrategy::CommitAfterProcess);
    assert!(!holds(&after, Invariant::EffectOnce), "handled but uncommitted records are redelivered");
    assert!(holds(&after, Invariant::EventualProcessing), "{:?}", Invariant::EventualProcessing.check(&after).first());

    let before = run(CommitStrategy::CommitBeforeProcess);
    assert!(!holds(&before, Invariant::EventualProcessing), "committed but unhandled records are lost");
    assert!(holds(&before, Invariant::EffectOnce));

    // The processed table absorbs exactly the redeliveries that commit-after-process applied twice.
    let idempotent = run(CommitStrategy::Idempotent);
    assert!(holds(&idempotent, Invariant::EffectOnce), "{:?}", Invariant::EffectOnce.check(&idempotent).first());
    assert!(holds(&idempotent, Invariant::EventualProcessing));
    let skipped = idempotent.entries.iter().filter(|e| matches!(e.op, Op::DuplicateSkipped { .. })).count();
    let doubled = Invariant::EffectOnce.check(&after).len();
    assert!(skipped > 0 && skipped >= doubled.min(20), "redeliveries were seen and skipped: {skipped} vs {doubled}");
}

/// after-commit-async (seed 004): committed orders wait in the in-memory worker pool's queue; a
/// crash loses them even with nothing lingering in the producer.
#[test]
fn a_crash_loses_the_events_queued_for_the_async_pool() {
    use evsim_model::scenario::PublishStrategy;
    let mut s = basic();
    s.services[0].publish = PublishStrategy::AfterCommitAsync;
    s.services[0].async_delay_us = 20_000; // a busy pool: 20 ms until a worker takes the send
    s.services[0].producer.linger_ms = 0;
    let mut w = World::new(&s, 1);
    w.start();
    for c in 0..3 {
        w.consumer_start(c);
    }
    w.run_until(5_000_000);
    w.crash_service(1);
    let end = w.end;
    w.run_until(end);
    let (h, _) = w.finish();
    let lost = Invariant::EventualPublication.check(&h);
    assert!(lost.len() >= 3, "about 20 ms of committed orders were queued: {}", lost.len());
    assert!(lost.iter().all(|v| v.message.contains("never sent")), "{:?}", lost.first());
    assert!(holds(&h, Invariant::NoPhantomEvent));
}

/// Seed 003's Redis set guards the API, not the issuer: when an issuer crashes mid-batch, the
/// requests it handled but had not committed are redelivered and issued again. A unique constraint
/// on (coupon_id, user_id) absorbs the redelivery.
#[test]
fn a_redelivered_coupon_request_is_issued_twice_unless_the_db_forbids_it() {
    use evsim_model::scenario::CouponDedup;
    let src = include_str!("../../scenarios/coupon-seed003.toml");
    let run = |dedup: CouponDedup| {
        let mut s = Scenario::parse("coupon-seed003.toml", src).unwrap();
        s.services[0].dedup = dedup;
        s.workload.coupon_quantity = 1_000_000; // plenty left: every request issues
        s.workload.coupons = 50;
        s.consumers[0].consumer.session_timeout_ms = 10_000;
        s.consumers[0].processing_time_us = 12_000; // busy issuers: batches of several requests
        let mut w = World::new(&s, 1);
        w.start();
        for c in 0..3 {
            w.consumer_start(c);
        }
        w.run_until(6_000_000);
        w.crash_consumer(0);
        let end = w.end;
        w.run_until(end);
        w.finish().0
    };
    let cache = run(CouponDedup::CacheSet);
    assert!(!holds(&cache, Invariant::CouponOnce), "redelivery issues twice despite the Redis set");
    let unique = run(CouponDedup::DbUnique);
    assert!(holds(&unique, Invariant::CouponOnce), "{:?}", Invariant::CouponOnce.check(&unique).first());
}

fn outbox() -> Scenario {
    Scenario::parse("order-outbox.toml", include_str!("../../scenarios/order-outbox.toml")).unwrap()
}

fn crashed_at_5s(s: &Scenario) -> History {
    let mut w = World::new(s, 1);
    w.start();
    for c in 0..w.consumers.len() as u16 {
        w.consumer_start(c);
    }
    w.run_until(s.run.duration_ms * 1_000 / 2);
    w.crash_service(0);
    let end = w.end;
    w.run_until(end);
    w.finish().0
}

/// The outbox recovers what after-commit loses: the crashed instance's unsent events stay INIT in
/// the outbox, and the surviving instance's scheduler publishes them.
#[test]
fn the_outbox_publishes_what_a_crash_left_unsent() {
    let mut s = outbox();
    s.services[0].producer.linger_ms = 50; // records wait in the accumulator when the crash hits
    let h = crashed_at_5s(&s);
    let republished = h.entries.iter().filter(|e| matches!(e.op, Op::Send { .. })).count()
        - h.entries.iter().filter(|e| matches!(e.op, Op::OrderCommitted { .. })).count();
    assert!(republished > 0, "the scheduler re-sent the rows the crash left INIT");
    for inv in
        [Invariant::EventualPublication, Invariant::EventualProcessing, Invariant::Liveness, Invariant::EffectOnce]
    {
        assert!(holds(&h, inv), "{inv}: {:?}", inv.check(&h).first());
    }
    // The same crash under after-commit loses those events for good.
    s.services[0].publish = evsim_model::scenario::PublishStrategy::AfterCommit;
    let h = crashed_at_5s(&s);
    assert!(!holds(&h, Invariant::EventualPublication));
}

/// A scheduler quicker than the marker re-publishes events that were already published:
/// duplicates downstream, which the idempotent consumer absorbs and a plain one applies twice.
#[test]
fn outbox_duplicates_need_an_idempotent_consumer() {
    use evsim_model::scenario::CommitStrategy;
    let mut s = outbox();
    s.run.duration_ms = 3_000;
    s.run.quiet_period_ms = 6_000;
    s.services[0].outbox_retry_after_ms = 1; // re-publish anything not yet marked
    s.services[0].outbox_scan_ms = 20;
    let h = crashed_at_5s(&s);
    let dup = Invariant::Duplicate.check(&h);
    assert!(!dup.is_empty(), "the same event stands at two offsets");
    assert!(holds(&h, Invariant::EffectOnce), "{:?}", Invariant::EffectOnce.check(&h).first());
    assert!(h.entries.iter().any(|e| matches!(e.op, Op::DuplicateSkipped { .. })));

    s.consumers.iter_mut().find(|c| c.name == "order-event-consumer").unwrap().commit_strategy =
        CommitStrategy::CommitAfterProcess;
    let h = crashed_at_5s(&s);
    assert!(!holds(&h, Invariant::EffectOnce), "without the processed table, duplicates apply twice");
}

#[test]
fn queued_events_stay_small() {
    // Every pending event is a slab slot of this size; the hot path moves millions of them.
    assert!(std::mem::size_of::<crate::world::Ev>() <= 72, "Ev is {} bytes", std::mem::size_of::<crate::world::Ev>());
}

/// The real driver is handed `setup::plan_requests`; it must be exactly the requests (and
/// times) a simulated run sends, for orders and for coupon requests with double clicks.
#[test]
fn the_request_plan_is_what_the_simulator_sends() {
    for src in [include_str!("../../scenarios/order-basic.toml"), include_str!("../../scenarios/coupon-no-dedup.toml")]
    {
        let s = Scenario::parse("s.toml", src).expect("parses");
        assert_plan_matches(&s);
    }
    // Orders and coupon requests at two million a second each: many arrivals of the two streams
    // fall on the same microsecond, and the plan must break those ties as the event queue does.
    let mut s = Scenario::parse("s.toml", include_str!("../../scenarios/order-basic.toml")).expect("parses");
    let coupons = Scenario::parse("c.toml", include_str!("../../scenarios/coupon-no-dedup.toml")).expect("parses");
    s.topics.extend(coupons.topics.iter().cloned());
    s.services.extend(coupons.services.iter().cloned());
    s.run.duration_ms = 3;
    s.workload.rate_per_sec = 2_000_000.0;
    s.workload.coupon_rate_per_sec = 2_000_000.0;
    s.workload.duplicate_request_rate = 0.0;
    assert_plan_matches(&s);
}

fn assert_plan_matches(s: &Scenario) {
    use evsim_model::actor::Request;
    let (h, _) = World::new(s, 7).run();
    let simulated: Vec<(u64, Request)> = h
        .entries
        .iter()
        .filter_map(|e| match e.op {
            Op::OrderRequested { order, user, product, qty } => {
                Some((e.time, Request::CreateOrder { order, user, product, qty }))
            }
            Op::CouponRequested { request, coupon, user } => {
                Some((e.time, Request::IssueCoupon { request, coupon, user }))
            }
            _ => None,
        })
        .collect();
    let planned: Vec<(u64, Request)> =
        crate::setup::plan_requests(s, 7).into_iter().map(|p| (p.at, p.request)).collect();
    assert!(!planned.is_empty());
    if let Some(i) = (0..planned.len().max(simulated.len())).find(|&i| planned.get(i) != simulated.get(i)) {
        panic!(
            "{}: the plan and the simulator differ first at request {i} of {} and {}: planned {:?}, simulated {:?}",
            s.name,
            planned.len(),
            simulated.len(),
            &planned[i.saturating_sub(2)..(i + 3).min(planned.len())],
            &simulated[i.saturating_sub(2)..(i + 3).min(simulated.len())]
        );
    }
}

/// The flush limit's detector: a partition's last in-sync replica came back without unflushed
/// records and led it again; not when it lost nothing, or when others were still in sync.
#[test]
fn the_unflushed_last_replica_condition_needs_all_three_facts() {
    use crate::run::RunOutcome;
    use evsim_model::scenario::Condition;
    let mut s = basic();
    s.brokers = 3;
    s.topics[0].replication_factor = 3;
    let tp = Tp { topic: TopicId(0), partition: 0 };
    // Partition 0's replicas are brokers 0, 1, 2: nodes 1, 2, 3.
    let outcome = |isr: Vec<NodeId>, lost: u64| {
        let mut h = History::default();
        h.push(1, NodeId(1), Op::IsrChanged { tp, isr });
        h.push(2, NodeId(1), Op::LogRecovered { tp, log_end: 0, lost });
        h.push(3, NodeId(1), Op::LeaderElected { tp, leader: Some(NodeId(1)), epoch: 2, log_end: 0, unclean: false });
        RunOutcome {
            seed: 1,
            history: h,
            history_hash: 0,
            stats: Default::default(),
            verdicts: Vec::new(),
            vacuous: None,
            stopped: None,
        }
    };
    let holds = |o: &RunOutcome| crate::search::condition_holds(Condition::UnflushedLastReplica, &s, o);
    assert!(holds(&outcome(vec![NodeId(1)], 5)));
    assert!(!holds(&outcome(vec![NodeId(1)], 0)), "it lost nothing");
    assert!(!holds(&outcome(vec![NodeId(1), NodeId(2)], 5)), "another replica was in sync");
}

/// The largest run the limits allow claims its memory as it goes, not up front: the history and
/// the logs reserve a bounded amount whatever the request count.
#[test]
fn the_largest_run_reserves_a_bounded_amount_up_front() {
    let mut s = basic();
    s.run.duration_ms = 5_000;
    s.workload.rate_per_sec = 1_000_000.0; // 5,000,000 requests: the cap
    let w = World::new(&s, 1);
    assert!(w.history.entries.capacity() <= (1 << 21) + 1_024, "{}", w.history.entries.capacity());
    for p in &w.partitions {
        assert!(p.log.capacity() <= (1 << 16) + 16, "{}", p.log.capacity());
    }
}

/// A rate is honoured exactly, however high: arrivals keep a fractional clock, so requests that
/// fall within one simulated microsecond are not merged or dropped.
#[test]
fn a_rate_of_a_million_a_second_gives_a_million_requests_a_second() {
    let mut s = basic();
    s.run.duration_ms = 200;
    s.run.quiet_period_ms = 0;
    s.workload.rate_per_sec = 1_000_000.0;
    let n = crate::setup::plan_requests(&s, 1).len() as f64;
    // Poisson: 200,000 expected, standard deviation about 450.
    assert!((n - 200_000.0).abs() < 3_000.0, "{n} requests");
}

/// A run stops at its memory budget as at its event budget: the history and the logs it holds
/// are counted as it goes, whoever records them.
#[test]
fn a_run_stops_at_its_memory_budget() {
    let s = basic();
    let mut w = World::new(&s, 1);
    w.limit_memory(1 << 20);
    let (h, stats) = w.run();
    let at = stats.event_budget_exhausted_at.expect("stopped");
    assert!(at < s.end_ms() * 1_000, "stopped before the end");
    assert!((1 << 20..(1 << 20) + (1 << 16)).contains(&stats.memory_bytes), "{}", stats.memory_bytes);
    assert!(h.entries.len() as u64 * 72 <= stats.memory_bytes);
    // Without the limit the same run goes to its end.
    let (_, full) = World::new(&s, 1).run();
    assert!(full.event_budget_exhausted_at.is_none() && full.memory_bytes > 1 << 20);
}
