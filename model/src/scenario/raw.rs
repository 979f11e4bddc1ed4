//! The scenario file as serde reads it, before validation.

use super::props::Props;
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: String,
    pub run: RawRun,
    #[serde(default)]
    pub cluster: RawCluster,
    #[serde(default)]
    pub network: RawNetwork,
    pub topics: BTreeMap<String, Spanned<Props>>,
    #[serde(default)]
    pub workflow: Option<Spanned<RawWorkflowRef>>,
    #[serde(default)]
    pub workload: Option<Spanned<RawWorkload>>,
    #[serde(default)]
    pub database: RawDatabase,
    #[serde(default)]
    pub services: BTreeMap<String, Spanned<RawService>>,
    #[serde(default)]
    pub consumers: BTreeMap<String, Spanned<RawConsumer>>,
    #[serde(default)]
    pub faults: Vec<Spanned<RawFault>>,
    #[serde(default)]
    pub swarm: Option<Spanned<RawSwarm>>,
    #[serde(default)]
    pub check: Option<RawCheck>,
}

/// `[workflow]`: the workflow file the scenario runs, and its parameters' values.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkflowRef {
    pub file: Spanned<String>,
    #[serde(default)]
    pub params: BTreeMap<String, Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    #[serde(default)]
    pub expected: Vec<Spanned<RawExpected>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExpected {
    pub invariants: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub faults: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub condition: Option<Spanned<String>>,
    pub why: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFault {
    pub kind: Spanned<String>,
    pub at_ms: Spanned<u64>,
    #[serde(default)]
    pub for_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub target: Option<Spanned<String>>,
    #[serde(default)]
    pub peer: Option<Spanned<String>>,
    #[serde(default)]
    pub direction: Option<Spanned<String>>,
    #[serde(default)]
    pub rate: Option<Spanned<f64>>,
    #[serde(default)]
    pub delay_ms: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSwarm {
    pub kinds: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub max_faults: Option<Spanned<u32>>,
    #[serde(default)]
    pub max_for_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub max_loss_rate: Option<Spanned<f64>>,
    #[serde(default)]
    pub targets: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRun {
    pub duration_ms: Spanned<u64>,
    pub quiet_period_ms: Spanned<u64>,
    #[serde(default)]
    pub seed: u64,
    pub invariants: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub brokers: Spanned<u32>,
    pub config: Option<Props>,
}

impl Default for RawCluster {
    fn default() -> Self {
        Self { brokers: Spanned::new(0..0, 1), config: None }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    #[serde(default = "default_latency_us")]
    pub latency_us: Spanned<u64>,
    #[serde(default = "default_jitter_us")]
    pub jitter_us: Spanned<u64>,
}

fn default_latency_us() -> Spanned<u64> {
    Spanned::new(0..0, 500)
}
fn default_jitter_us() -> Spanned<u64> {
    Spanned::new(0..0, 100)
}

impl Default for RawDatabase {
    fn default() -> Self {
        Self { latency_us: default_db_latency_us() }
    }
}

impl Default for RawNetwork {
    fn default() -> Self {
        Self { latency_us: default_latency_us(), jitter_us: default_jitter_us() }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkload {
    pub rate_per_sec: Spanned<f64>,
    pub products: Spanned<u32>,
    pub stock_per_product: Spanned<i64>,
    pub users: Spanned<u32>,
    #[serde(default = "one_spanned")]
    pub quantity_max: Spanned<u32>,
    #[serde(default)]
    pub product_distribution: Option<Spanned<String>>,
    #[serde(default)]
    pub zipf_exponent: Option<Spanned<f64>>,
    #[serde(default)]
    pub pay_after_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub price: Option<Spanned<i64>>,
    #[serde(default)]
    pub balance: Option<Spanned<i64>>,
    #[serde(default)]
    pub insufficient_balance_rate: Option<Spanned<f64>>,
    #[serde(default)]
    pub coupon_rate_per_sec: Option<Spanned<f64>>,
    #[serde(default)]
    pub coupons: Option<Spanned<u32>>,
    #[serde(default)]
    pub coupon_quantity: Option<Spanned<u32>>,
    #[serde(default)]
    pub duplicate_request_rate: Option<Spanned<f64>>,
    #[serde(default)]
    pub queue_rate_per_sec: Option<Spanned<f64>>,
    #[serde(default)]
    pub concerts: Option<Spanned<u32>>,
}

fn zero_spanned() -> Spanned<u64> {
    Spanned::new(0..0, 0)
}

fn one_spanned() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    #[serde(default = "default_db_latency_us")]
    pub latency_us: Spanned<u64>,
}

fn default_db_latency_us() -> Spanned<u64> {
    Spanned::new(0..0, 1_000)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    #[serde(default)]
    pub kind: Option<Spanned<String>>,
    #[serde(default = "one_spanned")]
    pub instances: Spanned<u32>,
    pub topic: Spanned<String>,
    #[serde(default)]
    pub publish: Option<Spanned<String>>,
    #[serde(default = "default_async_delay_us")]
    pub async_delay_us: Spanned<u64>,
    #[serde(default)]
    pub compensation: Option<Spanned<String>>,
    #[serde(default)]
    pub dedup: Option<Spanned<String>>,
    #[serde(default)]
    pub outbox_scan_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub outbox_retry_after_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub producer: Option<Props>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConsumer {
    #[serde(default)]
    pub kind: Option<Spanned<String>>,
    #[serde(default = "one_spanned")]
    pub instances: Spanned<u32>,
    pub topics: Spanned<Vec<Spanned<String>>>,
    pub processing_time_us: Spanned<u64>,
    #[serde(default = "zero_spanned")]
    pub processing_jitter_us: Spanned<u64>,
    #[serde(default)]
    pub handler_error_rate: Option<Spanned<f64>>,
    #[serde(default)]
    pub external_outages_ms: Option<Spanned<Vec<(u64, u64)>>>,
    #[serde(default)]
    pub commit_strategy: Option<Spanned<String>>,
    #[serde(default)]
    pub retries: Option<Spanned<u32>>,
    #[serde(default)]
    pub effect_once: Option<bool>,
    #[serde(default)]
    pub pause_between_polls_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub dlq_topic: Option<Spanned<String>>,
    #[serde(default)]
    pub consumer: Option<Props>,
    #[serde(default)]
    pub producer: Option<Props>,
}

fn default_async_delay_us() -> Spanned<u64> {
    Spanned::new(0..0, 1_000)
}
