//! The deterministic kernel: virtual time, the event queue and the seeded random streams.
//!
//! The kernel knows nothing of Kafka, orders or services. It offers two things the rest of the
//! simulator is built on:
//!
//! - [`EventQueue`]: a priority queue of events keyed by virtual time ([`Micros`] since the start
//!   of the run). Virtual time does not tick: popping an event jumps `now` straight to that
//!   event's time, so an idle hour costs nothing and a busy millisecond costs only its events.
//! - [`SimRng`], [`Stream`], [`Seeds`]: a pinned PRNG (xoshiro256**, seeded by SplitMix64) split
//!   into named streams derived from one master seed.
//!
//! # Determinism rules
//!
//! A run is a pure function of its scenario and its master seed: the same seed must give the same
//! history, byte for byte, on every machine and every future release. Code built on the kernel
//! keeps that promise by following these rules:
//!
//! 1. Time comes only from [`EventQueue::now`]; never read the wall clock.
//! 2. Randomness comes only from a [`SimRng`] obtained from [`Seeds::stream`]; never from the OS,
//!    `HashMap`'s random state, addresses or thread scheduling.
//! 3. Iterate only over ordered collections (`Vec`, `BTreeMap`, `BTreeSet`) when the order can
//!    reach the history or the queue; a `HashMap` may be used for lookups only.
//! 4. Events scheduled for the same instant run in the order they were scheduled (the queue breaks
//!    ties by insertion sequence number), so scheduling order is part of the behaviour.
//! 5. Each concern draws from its own [`Stream`], so that, e.g., adding a fault draw does not shift
//!    the workload's sequence.
//! 6. The PRNG and hash algorithms are implemented here, not taken from crates whose output may
//!    change between versions; their test vectors are pinned.
//!
//! [`Micros`]: evsim_model::history::Micros

pub mod queue;
pub mod rng;

pub use queue::EventQueue;
pub use rng::{Seeds, SimRng, Stream};
