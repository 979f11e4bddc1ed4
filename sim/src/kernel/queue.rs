//! The deterministic event queue: the simulator's clock and agenda in one.
//!
//! Events are kept in a binary min-heap ordered by `(time, sequence number)`. The sequence number
//! is assigned at scheduling time, so events due at the same instant pop in FIFO order and the
//! pop order never depends on anything but the order of `schedule_*` calls. Popping an event moves
//! virtual time to that event's time; there are no ticks.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use evsim_model::history::Micros;

/// One scheduled event's place in the heap. Ordered so that `BinaryHeap` (a max-heap) yields the
/// earliest `(at, seq)` first. The payload lives in the queue's slab at `slot`, so heap sifts move
/// 24 bytes whatever the event's size.
#[derive(Clone, Copy)]
struct Entry {
    at: Micros,
    seq: u64,
    slot: u32,
}

impl PartialEq for Entry {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.seq == other.seq
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    /// Reversed: the earlier `(at, seq)` is the "greater" entry, so the max-heap pops it first.
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A priority queue of events keyed by virtual time, and the simulation's clock.
///
/// `now` starts at 0 and only moves forward, to the time of each popped event. Events scheduled
/// for the past are clamped to `now`, so causality cannot run backwards.
pub struct EventQueue<E> {
    heap: BinaryHeap<Entry>,
    /// Event payloads; `free` lists the empty slots for reuse.
    slab: Vec<Option<E>>,
    free: Vec<u32>,
    now: Micros,
    next_seq: u64,
}

impl<E> EventQueue<E> {
    /// An empty queue at time 0.
    #[inline]
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty queue at time 0 with room for `n` pending events before it reallocates.
    #[inline]
    pub fn with_capacity(n: usize) -> Self {
        Self {
            heap: BinaryHeap::with_capacity(n),
            slab: Vec::with_capacity(n),
            free: Vec::with_capacity(n),
            now: 0,
            next_seq: 0,
        }
    }

    /// The current virtual time: the time of the last popped event (0 before the first pop).
    #[inline]
    pub fn now(&self) -> Micros {
        self.now
    }

    /// Schedules `ev` at absolute time `at`; an `at` earlier than [`now`](Self::now) is clamped
    /// to `now`. Among events due at the same time, earlier-scheduled ones pop first.
    #[inline]
    pub fn schedule_at(&mut self, at: Micros, ev: E) {
        let at = at.max(self.now);
        let seq = self.next_seq;
        self.next_seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slab[slot as usize] = Some(ev);
                slot
            }
            None => {
                self.slab.push(Some(ev));
                (self.slab.len() - 1) as u32
            }
        };
        self.heap.push(Entry { at, seq, slot });
    }

    /// Schedules `ev` `delay` microseconds after now (saturating at `Micros::MAX`).
    #[inline]
    pub fn schedule_in(&mut self, delay: Micros, ev: E) {
        self.schedule_at(self.now.saturating_add(delay), ev);
    }

    /// Removes the earliest event (by time, then scheduling order), advances `now` to its time
    /// and returns it; `None` when nothing is scheduled (`now` is left unchanged).
    #[inline]
    pub fn pop(&mut self) -> Option<E> {
        let Entry { at, slot, .. } = self.heap.pop()?;
        let ev = self.slab[slot as usize].take().expect("a scheduled slot holds its event");
        self.free.push(slot);
        debug_assert!(at >= self.now, "virtual time must not run backwards");
        self.now = at;
        Some(ev)
    }

    /// Drops every pending event for which `keep` is false (a crashed process's timers and the
    /// messages on their way to it). The order of the events kept is unchanged: it is by
    /// (time, scheduling order), and both are kept.
    pub fn retain(&mut self, mut keep: impl FnMut(&E) -> bool) {
        let slab = &mut self.slab;
        let free = &mut self.free;
        self.heap.retain(|e| {
            let ev = slab[e.slot as usize].as_ref().expect("a scheduled slot holds its event");
            if keep(ev) {
                return true;
            }
            slab[e.slot as usize] = None;
            free.push(e.slot);
            false
        });
    }

    /// The time of the earliest pending event, without removing it.
    #[inline]
    pub fn peek_time(&self) -> Option<Micros> {
        self.heap.peek().map(|e| e.at)
    }

    /// The number of pending events.
    #[inline]
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no event is pending.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// How many events were ever scheduled on this queue (a run statistic).
    #[inline]
    pub fn scheduled_total(&self) -> u64 {
        self.next_seq
    }
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut EventQueue<&'static str>) -> Vec<(Micros, &'static str)> {
        let mut out = Vec::new();
        while let Some(ev) = q.pop() {
            out.push((q.now(), ev));
        }
        out
    }

    #[test]
    fn equal_times_pop_in_scheduling_order() {
        let mut q = EventQueue::new();
        for ev in ["a", "b", "c", "d"] {
            q.schedule_at(10, ev);
        }
        assert_eq!(drain(&mut q), vec![(10, "a"), (10, "b"), (10, "c"), (10, "d")]);
    }

    #[test]
    fn retain_drops_only_the_rejected_events_and_keeps_the_order() {
        let mut q = EventQueue::new();
        for (at, ev) in [(5, "a"), (1, "x"), (5, "b"), (3, "y"), (5, "c")] {
            q.schedule_at(at, ev);
        }
        q.retain(|ev| *ev != "x" && *ev != "b");
        q.schedule_at(5, "d");
        assert_eq!(drain(&mut q), vec![(3, "y"), (5, "a"), (5, "c"), (5, "d")]);
    }

    #[test]
    fn events_pop_in_time_order() {
        let mut q = EventQueue::with_capacity(8);
        q.schedule_at(30, "c");
        q.schedule_at(10, "a");
        q.schedule_at(20, "b1");
        q.schedule_at(u64::MAX, "last");
        q.schedule_at(20, "b2");
        q.schedule_at(0, "zero");
        assert_eq!(q.peek_time(), Some(0));
        assert_eq!(drain(&mut q), vec![(0, "zero"), (10, "a"), (20, "b1"), (20, "b2"), (30, "c"), (u64::MAX, "last")]);
    }

    #[test]
    fn past_times_are_clamped_to_now() {
        let mut q = EventQueue::new();
        q.schedule_at(100, "first");
        assert_eq!(q.pop(), Some("first"));
        assert_eq!(q.now(), 100);
        q.schedule_at(150, "later");
        q.schedule_at(5, "past");
        q.schedule_in(0, "immediate");
        assert_eq!(q.peek_time(), Some(100));
        assert_eq!(drain(&mut q), vec![(100, "past"), (100, "immediate"), (150, "later")]);
    }

    #[test]
    fn now_advances_by_jumps_and_stays_when_empty() {
        let mut q = EventQueue::new();
        assert_eq!(q.now(), 0);
        assert!(q.is_empty());
        assert_eq!(q.pop(), None);
        q.schedule_in(1_000_000, "x");
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop(), Some("x"));
        assert_eq!(q.now(), 1_000_000);
        q.schedule_in(5, "y");
        q.schedule_in(u64::MAX, "saturated");
        assert_eq!(q.pop(), Some("y"));
        assert_eq!(q.now(), 1_000_005);
        assert_eq!(q.pop(), Some("saturated"));
        assert_eq!(q.now(), u64::MAX);
        assert_eq!(q.pop(), None);
        assert_eq!(q.now(), u64::MAX);
        assert_eq!(q.scheduled_total(), 3);
        assert!(q.is_empty());
    }

    #[test]
    fn interleaved_scheduling_keeps_order() {
        // Events scheduled while draining still respect (time, seq) order.
        let mut q = EventQueue::new();
        q.schedule_at(10, 1u32);
        q.schedule_at(10, 2);
        let mut seen = Vec::new();
        while let Some(ev) = q.pop() {
            seen.push((q.now(), ev));
            if ev < 4 {
                q.schedule_in(0, ev + 10);
                q.schedule_in(1, ev + 2);
            }
        }
        assert_eq!(seen, vec![(10, 1), (10, 2), (10, 11), (10, 12), (11, 3), (11, 4), (11, 13), (12, 5)]);
        assert_eq!(q.scheduled_total(), 2 + 3 * 2);
    }

    /// Against a reference (a list sorted by time, then scheduling order), with pushes and pops
    /// interleaved as a simulation does them: every pop order must match exactly.
    #[test]
    fn matches_a_sorted_reference_under_random_interleaving() {
        use crate::kernel::SimRng;
        for seed in 0..20 {
            let mut rng = SimRng::from_seed(seed);
            let mut q: EventQueue<u64> = EventQueue::new();
            let mut reference: Vec<(Micros, u64)> = Vec::new(); // (time, id), id = scheduling order
            let mut next_id = 0u64;
            for _ in 0..5_000 {
                if rng.chance(0.55) || reference.is_empty() {
                    // Mostly near-future events, some far ones, some ties at now.
                    let delay = match rng.below(4) {
                        0 => 0,
                        1 => rng.below(10),
                        2 => rng.below(5_000),
                        _ => rng.below(1 << 40),
                    };
                    let at = q.now() + delay;
                    q.schedule_at(at, next_id);
                    reference.push((at, next_id));
                    next_id += 1;
                } else {
                    let (i, _) = reference.iter().enumerate().min_by_key(|(_, (at, id))| (*at, *id)).unwrap();
                    let expected = reference.remove(i);
                    assert_eq!(q.peek_time(), Some(expected.0));
                    let got = q.pop().unwrap();
                    assert_eq!((q.now(), got), expected, "seed {seed}");
                }
                assert_eq!(q.len(), reference.len());
            }
        }
    }
}
