//! The real backend's quick protocol tests: the same services on rdkafka against librdkafka's
//! in-process mock cluster, judged by the same checkers, compared with the simulator. Apache
//! Kafka's are in tests/kafka.rs and tests/differential.rs.

mod common;

use common::for_real;
use evsim_model::checkers::Invariant;
use evsim_model::scenario::{FaultKind, Partitioner, PublishStrategy, Scenario};
use evsim_real::diff::{Difference, compare};
use evsim_real::{BrokerKind, BrokerOptions, RealOutcome, run_real};
use evsim_sim::{RunOutcome, run_scenario};

fn real(s: &Scenario, kind: BrokerKind) -> RealOutcome {
    run_real(s, s.run.seed, &BrokerOptions::new(kind)).unwrap_or_else(|e| panic!("{} on {}: {e}", s.name, kind.name()))
}

fn differences(sim: &RunOutcome, real: &RealOutcome) -> Vec<Difference> {
    compare(&sim.history, &sim.verdicts, &real.history, &real.verdicts, real.target.name())
}

/// Neither run is vacuous: both moved records end to end and fired their faults.
fn assert_moved(sim: &RunOutcome, real: &RealOutcome) {
    assert_eq!(sim.vacuous, None, "the simulated run proves nothing");
    assert_eq!(real.vacuous, None, "the real run proves nothing");
}

fn violated(verdicts: &[evsim_sim::Verdict], inv: Invariant) -> bool {
    verdicts.iter().any(|v| v.invariant == inv && !v.violations.is_empty())
}

/// Run `s` on the simulator and on `kind`; both must move records and agree on everything.
fn assert_agree(s: &Scenario, kind: BrokerKind) -> (RunOutcome, RealOutcome) {
    let sim = run_scenario(s, s.run.seed);
    let real = real(s, kind);
    assert!(real.stats.records_produced > 0 && real.stats.records_consumed > 0, "{}: {:?}", s.name, real.vacuous);
    assert_eq!(real.placement_mismatches, 0, "{}: librdkafka placed records elsewhere", s.name);
    let diffs = differences(&sim, &real);
    assert!(diffs.is_empty(), "{} on {}: {diffs:#?}", s.name, kind.name());
    (sim, real)
}

#[test]
fn mock_cluster_runs_order_basic_like_the_simulator() {
    let s = for_real(common::scenario("order-basic"), 2_000, 100.0);
    let (sim, real) = assert_agree(&s, BrokerKind::Mock);
    assert!(real.passed(), "{:?}", real.verdicts);
    assert_eq!(sim.stats.orders_committed, real.stats.orders_committed);
    assert!(real.history.entries.iter().any(|e| matches!(e.op, evsim_model::history::Op::Commit { .. })));
}

#[test]
fn a_wrong_simulator_partitioner_is_caught_by_the_differential_check() {
    let s = for_real(common::scenario("order-basic"), 1_000, 100.0);
    let real = real(&s, BrokerKind::Mock);
    // The simulator set to librdkafka's default partitioner (CRC32) instead of murmur2: the
    // same keys land elsewhere, and the comparison must say so.
    let mut wrong = s.clone();
    for svc in &mut wrong.services {
        svc.producer.partitioner = Partitioner::Crc32;
    }
    let sim = run_scenario(&wrong, wrong.run.seed);
    let diffs = differences(&sim, &real);
    assert!(diffs.iter().any(|d| d.aspect == "placement"), "no placement difference reported: {diffs:#?}");
    // With the right partitioner there is none.
    let sim = run_scenario(&s, s.run.seed);
    assert!(differences(&sim, &real).iter().all(|d| d.aspect != "placement"));
}

/// A service crash right after the workload's first second: with after-commit publishing the
/// orders whose events were still in the producer's buffer are never published (weak); with the
/// outbox the scheduler publishes them once the service is back (strong). Both drivers must
/// flag the same invariant for the weak design and hold it for the strong one.
#[test]
fn mock_cluster_service_crash_flags_after_commit_and_holds_outbox() {
    let base = for_real(common::scenario("order-basic"), 2_000, 200.0);
    for (publish, weak) in [(PublishStrategy::AfterCommit, true), (PublishStrategy::Outbox, false)] {
        let mut s = base.clone();
        for svc in &mut s.services {
            svc.publish = publish;
            svc.producer.linger_ms = 200; // a full buffer when the process dies
        }
        if publish == PublishStrategy::Outbox {
            s = common::scenario("order-outbox");
            s = for_real(s, 2_000, 200.0);
            for svc in &mut s.services {
                svc.producer.linger_ms = 200;
            }
        }
        let target = format!("{}-0", s.services[0].name);
        s.faults.push(common::fault(FaultKind::ServiceCrash, Some(&target), 1_000, 500));
        let sim = run_scenario(&s, s.run.seed);
        let real = real(&s, BrokerKind::Mock);
        assert!(real.faults.iter().all(|f| f.performed.is_some() && f.fired), "{:?}", real.faults);
        assert_moved(&sim, &real);
        let inv = Invariant::EventualPublication;
        assert_eq!(violated(&sim.verdicts, inv), weak, "simulator, {publish:?}");
        assert_eq!(violated(&real.verdicts, inv), weak, "mock cluster, {publish:?}: {:?}", real.verdicts);
    }
}
