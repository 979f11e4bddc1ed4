//! Invariants: named checkers that judge a [`History`] and report counterexamples as the history
//! entries involved (never just a count).
//!
//! Every checker is sound first: a correct design's history must pass it. Each module has tests
//! with a hand-built history that violates it and one that does not.

use crate::history::{History, Judged};
use serde::{Deserialize, Serialize};

mod balance;
mod causal_order;
mod coupons;
mod duplicate;
mod effect_once;
mod eventual_processing;
mod eventual_publication;
mod inconsistent_offsets;
mod liveness;
mod lost_write;
mod no_oversell;
mod no_phantom_event;
mod no_silent_loss;
mod nonmonotonic_send;
mod order_state;
mod per_key_order;
mod poll_order;
mod queue;

#[cfg(test)]
mod stories;
#[cfg(test)]
pub(crate) mod testkit;
#[cfg(test)]
mod workflow_entries;

/// One counterexample: what went wrong, and the entries (indices into `History::entries`, in
/// history order) that show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub message: String,
    pub entries: Vec<usize>,
}

impl Violation {
    pub fn new(message: impl Into<String>, mut entries: Vec<usize>) -> Self {
        entries.sort_unstable();
        entries.dedup();
        Self { message: message.into(), entries }
    }
}

/// At most this many counterexamples per checker and run; the rest are counted, not listed.
pub(crate) const MAX_REPORTED: usize = 20;

/// When a checker found `total` violations but lists fewer, say so on the last one listed.
pub(crate) fn note_unlisted(out: &mut [Violation], total: usize, name: &str) {
    let shown = out.len();
    if total > shown
        && let Some(last) = out.last_mut()
    {
        last.message.push_str(&format!(" [{} more {name} violations not listed]", total - shown));
    }
}

/// The counterexamples of a checker, each with the entry that first showed it, in that order:
/// at most [`MAX_REPORTED`] of them, the last one saying how many more there were.
pub(crate) fn in_history_order(mut found: Vec<(usize, Violation)>, name: &str) -> Vec<Violation> {
    found.sort_by_key(|(at, _)| *at);
    let total = found.len();
    let mut out: Vec<Violation> = found.into_iter().take(MAX_REPORTED).map(|(_, v)| v).collect();
    note_unlisted(&mut out, total, name);
    out
}

/// The invariants evsim can check, by the names of ANOMALIES.md, and those a scenario's
/// workflow declares under names of its own. Serialised as its name.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invariant {
    /// Stock never below zero; sold + remaining = initial.
    NoOversell,
    /// For each key, each consumer group applies its records in offset order.
    PerKeyOrder,
    /// Every committed business fact's event is processed by every subscribed group by the end of
    /// the quiet period.
    EventualProcessing,
    /// No consumer group applies one event's effect more than once (exactly-once effects).
    EffectOnce,
    /// An acknowledged (or read) record below an offset that a poll read, that no poll ever read.
    LostWrite,
    /// The same value at two or more offsets of one key.
    Duplicate,
    /// A consumer's successive polls of a partition go backwards or repeat, with no rebalance
    /// between them.
    NonmonotonicPoll,
    /// A consumer's successive polls of a partition jump past an offset, with no rebalance
    /// between them.
    PollSkip,
    /// No event is published (acknowledged or read) for a business fact that did not commit.
    NoPhantomEvent,
    /// Every committed business fact's event is published before the run ends: acknowledged by
    /// the broker, or read by a consumer (a send that timed out may still have been written).
    EventualPublication,
    /// A balance never goes below zero, payments write consistent balances, each order is
    /// charged at most once.
    Balance,
    /// An order's status only moves forward, and a declined payment's order ends CANCELLED.
    OrderState,
    /// Coupons issued for a coupon id never exceed its quantity.
    CouponLimit,
    /// No user holds two copies of one coupon id.
    CouponOnce,
    /// Within a group, an effect is not applied before the effect it depends on.
    CausalOrder,
    /// By the end of the run, consumer lag is back to zero and the outbox holds no INIT row.
    Liveness,
    /// Waiting-queue tokens activate in the order their users entered each concert's queue.
    QueueFifo,
    /// An activator group activates at most M tokens per N seconds.
    QueueRate,
    /// A producer's later send for a key lands at or before its earlier send.
    NonmonotonicSend,
    /// One offset of a partition holds two different values (the log was truncated and
    /// rewritten under its readers).
    InconsistentOffsets,
    /// Every record in the log is processed by every subscribed group, or parked by it on a
    /// dead-letter topic: nothing vanishes.
    NoSilentLoss,
    /// An invariant a workflow declares under a name of its own (`[invariants.<name>]`),
    /// judged from the run's `InvariantBroken` entries. Made by [`Invariant::declared`].
    Declared(&'static str),
}

impl Serialize for Invariant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Invariant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(Invariant::from_name(&name).unwrap_or_else(|| Invariant::declared(&name)))
    }
}

/// Declared invariants' names, each kept once for the process (a workflow declares at most
/// `MAX_INVARIANTS`; every workflow compiled in one process adds only names not seen before).
static DECLARED_NAMES: std::sync::Mutex<std::collections::BTreeSet<&'static str>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

impl Invariant {
    /// Every invariant, in the order reports list them.
    pub const ALL: [Invariant; 21] = [
        Invariant::NoOversell,
        Invariant::Balance,
        Invariant::OrderState,
        Invariant::CouponLimit,
        Invariant::CouponOnce,
        Invariant::QueueFifo,
        Invariant::QueueRate,
        Invariant::NoPhantomEvent,
        Invariant::EventualPublication,
        Invariant::PerKeyOrder,
        Invariant::CausalOrder,
        Invariant::EventualProcessing,
        Invariant::NoSilentLoss,
        Invariant::Liveness,
        Invariant::EffectOnce,
        Invariant::LostWrite,
        Invariant::Duplicate,
        Invariant::InconsistentOffsets,
        Invariant::NonmonotonicSend,
        Invariant::NonmonotonicPoll,
        Invariant::PollSkip,
    ];

    /// The name used in scenario files, reports and ANOMALIES.md.
    pub fn name(self) -> &'static str {
        match self {
            Invariant::NoOversell => "no-oversell",
            Invariant::PerKeyOrder => "per-key-order",
            Invariant::EventualProcessing => "eventual-processing",
            Invariant::EffectOnce => "effect-once",
            Invariant::LostWrite => "lost-write",
            Invariant::Duplicate => "duplicate",
            Invariant::NonmonotonicPoll => "nonmonotonic-poll",
            Invariant::PollSkip => "poll-skip",
            Invariant::NoPhantomEvent => "no-phantom-event",
            Invariant::EventualPublication => "eventual-publication",
            Invariant::Balance => "balance",
            Invariant::OrderState => "order-state",
            Invariant::CouponLimit => "coupon-limit",
            Invariant::CouponOnce => "coupon-once",
            Invariant::CausalOrder => "causal-order",
            Invariant::Liveness => "liveness",
            Invariant::QueueFifo => "queue-fifo",
            Invariant::QueueRate => "queue-rate",
            Invariant::NonmonotonicSend => "nonmonotonic-send",
            Invariant::InconsistentOffsets => "inconsistent-offsets",
            Invariant::NoSilentLoss => "no-silent-loss",
            Invariant::Declared(name) => name,
        }
    }

    /// One of evsim's own invariants, by name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|i| i.name() == name)
    }

    /// A workflow's invariant `name` (evsim's own invariant, when it has that name).
    pub fn declared(name: &str) -> Self {
        if let Some(own) = Self::from_name(name) {
            return own;
        }
        let mut names = DECLARED_NAMES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let name = match names.get(name) {
            Some(&n) => n,
            None => {
                let n: &'static str = Box::leak(name.to_string().into_boxed_str());
                names.insert(n);
                n
            }
        };
        Invariant::Declared(name)
    }

    /// Every invariant a run of `scenario` is judged by: evsim's own, then those its workflow
    /// declares under names of its own, in the workflow's order.
    pub fn of(scenario: &crate::scenario::Scenario) -> Vec<Self> {
        let mut all = Self::ALL.to_vec();
        if let Some(wf) = &scenario.workflow {
            for i in &wf.invariants {
                let inv = Self::declared(i.name());
                if !all.contains(&inv) {
                    all.push(inv);
                }
            }
        }
        all
    }

    /// Judge `history`; an empty list means the invariant held. An invariant the history's
    /// workflow declares under this name is judged from its `InvariantBroken` entries.
    pub fn check(self, history: &History) -> Vec<Violation> {
        if let Some(declared) = history.header.invariants.iter().position(|i| i.name == self.name()) {
            let info = &history.header.invariants[declared];
            return match info.judged {
                Judged::Rows => declared_invariant(history, declared as u16),
                Judged::Fifo { handler, event } => queue::check_declared_fifo(history, &info.name, handler, event),
                Judged::Rate { handler, max, per_us } => {
                    queue::check_declared_rate(history, &info.name, handler, max, per_us)
                }
            };
        }
        match self {
            Invariant::NoOversell => no_oversell::check(history),
            Invariant::PerKeyOrder => per_key_order::check(history),
            Invariant::EventualProcessing => eventual_processing::check(history),
            Invariant::EffectOnce => effect_once::check(history),
            Invariant::LostWrite => lost_write::check(history),
            Invariant::Duplicate => duplicate::check(history),
            Invariant::NonmonotonicPoll => poll_order::check_nonmonotonic(history),
            Invariant::PollSkip => poll_order::check_skip(history),
            Invariant::NoPhantomEvent => no_phantom_event::check(history),
            Invariant::EventualPublication => eventual_publication::check(history),
            Invariant::Balance => balance::check(history),
            Invariant::OrderState => order_state::check(history),
            Invariant::CouponLimit => coupons::check_limit(history),
            Invariant::CouponOnce => coupons::check_once(history),
            Invariant::CausalOrder => causal_order::check(history),
            Invariant::Liveness => liveness::check(history),
            Invariant::QueueFifo => queue::check_fifo(history),
            Invariant::QueueRate => queue::check_rate(history),
            Invariant::NonmonotonicSend => nonmonotonic_send::check(history),
            Invariant::InconsistentOffsets => inconsistent_offsets::check(history),
            Invariant::NoSilentLoss => no_silent_loss::check(history),
            // A run whose header does not declare it has no such invariant to break.
            Invariant::Declared(_) => Vec::new(),
        }
    }
}

/// A workflow's declared invariant: each row that broke it, at the entry that shows it (the
/// commit's entries just before it tell which transaction wrote the row).
fn declared_invariant(h: &History, invariant: u16) -> Vec<Violation> {
    let info = &h.header.invariants[invariant as usize];
    let mut out = Vec::new();
    let mut total = 0;
    for (i, e) in h.entries.iter().enumerate() {
        if let crate::history::Op::InvariantBroken { invariant: n, row } = e.op
            && n == invariant
        {
            total += 1;
            if out.len() < MAX_REPORTED {
                let message = format!("{} row {row} breaks `{}` (entry {i})", info.table, info.condition);
                // With the commit that wrote the row, when it is the entry just before.
                let commit =
                    i.checked_sub(1).filter(|&c| matches!(h.entries[c].op, crate::history::Op::TxnCommitted { .. }));
                let entries = commit.into_iter().chain([i]).collect();
                out.push(Violation::new(message, entries));
            }
        }
    }
    note_unlisted(&mut out, total, &info.name);
    out
}

impl std::fmt::Display for Invariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
