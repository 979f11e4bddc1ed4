//! evsim's simulator: a deterministic kernel (virtual time, an event queue, named PRNG streams),
//! a simulated Kafka cluster, and the driver that runs the model's services against it.
//!
//! One seed is one exact run: nothing here reads a clock, asks the OS for randomness, spawns a
//! thread, or iterates a hash map.

pub mod cluster;
pub mod faults;
pub mod files;
pub mod kernel;
pub(crate) mod net;
pub mod requests;
pub mod run;
pub mod search;
pub mod setup;
pub mod workflow;
pub(crate) mod workload;
pub mod world;

#[cfg(test)]
mod tests;

pub use run::{RunOutcome, Verdict, run_scenario, run_scenario_observed};
pub use world::{Stats, World};
