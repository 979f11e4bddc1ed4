//! Regression snapshots: the JSON summary `evsim report` writes for every file in `scenarios/`,
//! run with the scenario's own seed. A run is deterministic, so any change of behaviour (a
//! verdict, a count, a figure, a counterexample's story, a chart's finding) shows up here as a
//! snapshot diff to review: `cargo insta test --review` (see README).

mod common;

/// The summary of `scenarios/<name>.toml` as `evsim report` writes it.
fn summary(name: &str) -> String {
    let s = common::scenario(name);
    let outcome = evsim_sim::run_scenario(&s, s.run.seed);
    let report = evsim_reports::scenario::report(&s, &format!("scenarios/{name}.toml"), &outcome);
    serde_json::to_string_pretty(&report.summary).expect("the summary renders")
}

macro_rules! snapshots {
    ($($test:ident => $name:literal,)*) => {
        $(
            #[test]
            fn $test() {
                insta::assert_snapshot!($name, summary($name));
            }
        )*

        /// Every scenario file has its snapshot test (a new file needs a line above).
        #[test]
        fn every_scenario_file_has_a_snapshot() {
            let files = common::scenario_names();
            let mut listed = vec![$($name.to_string()),*];
            listed.sort();
            assert_eq!(files, listed);
        }
    };
}

snapshots! {
    coupon_no_dedup => "coupon-no-dedup",
    coupon_retries_lost_responses => "coupon-retries-lost-responses",
    coupon_seed003 => "coupon-seed003",
    fanout_seed000 => "fanout-seed000",
    order_acks1_search => "order-acks1-search",
    order_after_commit_async => "order-after-commit-async",
    order_basic => "order-basic",
    order_failover_acks_all => "order-failover-acks-all",
    order_failover_acks1 => "order-failover-acks1",
    order_listener_errors_retry => "order-listener-errors-retry",
    order_listener_errors => "order-listener-errors",
    order_after_commit_crash => "order-after-commit-crash",
    order_outbox => "order-outbox",
    order_publish_in_transaction => "order-publish-in-transaction",
    order_slow_consumer_fixed => "order-slow-consumer-fixed",
    order_slow_consumer => "order-slow-consumer",
    order_workflow => "order-workflow",
    payment_basic => "payment-basic",
    payment_compensation_rollback => "payment-compensation-rollback",
    payment_workflow => "payment-workflow",
    waiting_queue_global => "waiting-queue-global",
    waiting_queue_per_concert => "waiting-queue-per-concert",
    waiting_queue_workflow => "waiting-queue-workflow",
}
