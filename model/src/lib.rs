//! evsim's domain model: the e-commerce services of the seed documents as sans-IO actors, the
//! history format, the invariants that judge a history, and the scenario format.
//!
//! Nothing here performs I/O or knows which driver runs it: the simulator (`evsim-sim`) and the
//! real Kafka runner drive the very same services.

pub mod actor;
pub mod cache;
pub mod checkers;
pub mod coupon;
pub mod db;
pub mod describe;
pub mod event;
pub mod history;
pub mod order;
pub mod payment;
pub mod publish;
pub mod queue;
pub mod registry;
pub mod scenario;
pub mod stable_hash;
pub mod workflow;
