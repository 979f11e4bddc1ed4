//! Brokers: partition logs (offsets, log end, high watermark), produce handling (acks,
//! `min.insync.replicas`, the idempotent producer's sequence checks, acks=all waiting for the
//! ISR), and fetch with long polling (`fetch.max.wait.ms`: a fetch that finds nothing waits at
//! the broker until data arrives or the wait expires).
//!
//! Replication (followers, ISR, leader election) lives in `replication.rs`. Every replica of a
//! partition holds a prefix of the leader's log (KIP-101's truncation by leader epoch keeps it
//! so), which lets the simulator keep one log per partition and a log end offset per replica.

use super::{FetchRequest, FetchResponse, Msg, ProduceRequest, ProduceResponse, ReplicaFetchRequest};
use crate::world::{Ev, World};
use evsim_model::event::Message;
use evsim_model::history::{ErrorCode, Micros, Tp};
use evsim_model::scenario::Acks;

/// An idempotent batch in a partition's log: where it starts and whose sequence numbers it holds.
#[derive(Copy, Clone, Debug)]
pub struct BatchMeta {
    pub base_offset: u64,
    pub producer_id: u32,
    pub epoch: u16,
    pub first_seq: u32,
    pub count: u32,
}

/// How many recent batches per producer a partition remembers for deduplication (Kafka's
/// `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`).
pub const DEDUP_WINDOW: usize = 5;

/// One partition: its replicas, leader, ISR and the leader's log.
#[derive(Debug)]
pub struct Partition {
    pub tp: Tp,
    /// Brokers holding a replica, in assignment order (the first is the preferred leader).
    pub replicas: Vec<u16>,
    /// The broker that leads the partition; `None` while offline (no eligible replica alive).
    pub leader: Option<u16>,
    pub leader_epoch: u32,
    /// In-sync replicas (brokers), the leader included.
    pub isr: Vec<u16>,
    /// The leader's records at offsets `0..log.len()` (log start is 0: retention is not
    /// modelled). Every replica holds a prefix of it.
    pub log: Vec<Message>,
    /// High watermark: consumers read only below it.
    pub high_watermark: u64,
    /// Per replica (aligned with `replicas`): its log end offset. The leader's own entry is
    /// `log.len()` while it leads (see [`Partition::replica_end`]).
    pub leo: Vec<u64>,
    /// Per replica: how much of its log is on disk (the rest is lost if its machine dies).
    pub flushed: Vec<u64>,
    /// Per replica: the fetch offset the leader last saw from it (its log end as the leader
    /// knows it; the high watermark is the lowest of these over the ISR).
    pub fetched: Vec<u64>,
    /// Per replica: when the leader last saw it caught up (`replica.lag.time.max.ms`).
    pub caught_up: Vec<Micros>,
    /// Per replica: the leader's log end at the follower's previous fetch, and when that was.
    /// A fetch from at least that offset means the follower had caught up then (Kafka's
    /// `lastCaughtUpTimeMs` rule: a follower that keeps pace under steady writes stays in sync
    /// even though it never reaches the moving log end).
    pub fetch_end: Vec<(u64, Micros)>,
    /// The idempotent batches of the log, in offset order.
    pub batches: Vec<BatchMeta>,
}

impl Partition {
    pub fn new(tp: Tp, replicas: Vec<u16>) -> Self {
        let n = replicas.len();
        Self {
            tp,
            leader: Some(replicas[0]),
            isr: replicas.clone(),
            replicas,
            leader_epoch: 0,
            log: Vec::new(),
            high_watermark: 0,
            leo: vec![0; n],
            flushed: vec![0; n],
            fetched: vec![0; n],
            caught_up: vec![0; n],
            fetch_end: vec![(0, 0); n],
            batches: Vec::new(),
        }
    }

    pub fn log_end(&self) -> u64 {
        self.log.len() as u64
    }

    /// Index of broker `b` in `replicas`.
    pub fn replica_index(&self, b: u16) -> Option<usize> {
        self.replicas.iter().position(|&r| r == b)
    }

    /// Replica `i`'s log end: the log's for the leader, its own for a follower.
    pub fn replica_end(&self, i: usize) -> u64 {
        if self.leader == Some(self.replicas[i]) { self.log_end() } else { self.leo[i] }
    }

    /// The high watermark the ISR allows: the lowest log end among them, as the leader knows it.
    pub fn isr_watermark(&self) -> u64 {
        let mut hw = self.log_end();
        for &b in &self.isr {
            if Some(b) != self.leader
                && let Some(i) = self.replica_index(b)
            {
                hw = hw.min(self.fetched[i]);
            }
        }
        hw
    }

    /// Check an idempotent batch against the producer state the log holds: `Ok(None)` to
    /// append, `Ok(Some(base))` for a duplicate of a batch already at `base`, or the error.
    fn check_sequence(
        &self,
        producer_id: u32,
        epoch: u16,
        first_seq: u32,
        count: u32,
    ) -> Result<Option<u64>, ErrorCode> {
        let mut last: Option<&BatchMeta> = None;
        let mut seen = 0;
        for b in self.batches.iter().rev().filter(|b| b.producer_id == producer_id) {
            if last.is_none() {
                last = Some(b);
            }
            if b.epoch == epoch && b.first_seq == first_seq && b.count == count {
                return Ok(Some(b.base_offset));
            }
            seen += 1;
            if seen == DEDUP_WINDOW {
                break;
            }
        }
        match last {
            // A new epoch (after a bump) starts at sequence 0.
            Some(l) if epoch > l.epoch => {
                if first_seq == 0 {
                    Ok(None)
                } else {
                    Err(ErrorCode::OutOfOrderSequenceNumber)
                }
            }
            Some(l) if epoch < l.epoch => Err(ErrorCode::InvalidProducerEpoch),
            Some(l) if first_seq == l.first_seq.wrapping_add(l.count) => Ok(None),
            Some(_) => Err(ErrorCode::OutOfOrderSequenceNumber),
            None if first_seq == 0 => Ok(None),
            // The broker knows nothing of this producer (its batches were truncated away).
            None => Err(ErrorCode::OutOfOrderSequenceNumber),
        }
    }
}

/// A request waiting at the broker.
#[derive(Debug)]
enum Waiting {
    /// A consumer's fetch, until data is below the high watermark.
    Consumer(FetchRequest),
    /// A follower's fetch, until the leader's log grows.
    Replica(ReplicaFetchRequest),
}

/// A fetch waiting at the broker for data.
#[derive(Debug)]
struct Parked {
    request: Waiting,
    deadline: Micros,
}

/// An acks=all produce waiting for the ISR to copy its batches (Kafka's `DelayedProduce`).
#[derive(Debug)]
pub(crate) struct DelayedProduce {
    producer: u16,
    request: u64,
    results: Vec<(usize, Result<u64, ErrorCode>)>,
    /// (partition, the high watermark it waits for).
    needs: Vec<(usize, u64)>,
}

/// Broker-side state beyond the logs.
#[derive(Debug)]
pub struct BrokerState {
    pub alive: bool,
    /// Whether the controller has fenced it (no heartbeat within `broker.session.timeout.ms`):
    /// a fenced broker leads nothing and is not elected.
    pub fenced: bool,
    /// When its last heartbeat reached the controller.
    pub(crate) last_heartbeat: Micros,
    /// The heartbeat waiting for the controller's answer, if any, and the last one's number.
    pub(crate) heartbeat_in_flight: Option<u32>,
    pub(crate) heartbeat_seq: u32,
    /// Fetches waiting for data, in arrival order.
    parked: Vec<Parked>,
    /// The time a `FetchExpired` event is pending for (one at a time, re-armed when it fires).
    expiry_armed: Option<Micros>,
    pub(crate) delayed: Vec<DelayedProduce>,
    /// Replica fetchers: per leader broker, the fetch in flight to it.
    pub(crate) fetchers: Vec<Option<u64>>,
    pub(crate) next_fetch: u64,
    /// Restarts so far (to tell a fencing timer of an earlier crash from the current one).
    pub(crate) incarnation: u32,
    /// What a crash cut off each replica's log: (partition, recovered log end, records lost).
    pub(crate) recovered: Vec<(usize, u64, u64)>,
    /// Until when the process is stopped (`broker-pause`); 0 when it runs.
    pub(crate) paused_until: Micros,
}

impl BrokerState {
    pub fn new(brokers: usize) -> Self {
        Self {
            alive: true,
            fenced: false,
            last_heartbeat: 0,
            heartbeat_in_flight: None,
            heartbeat_seq: 0,
            parked: Vec::new(),
            expiry_armed: None,
            delayed: Vec::new(),
            fetchers: vec![None; brokers],
            next_fetch: 0,
            incarnation: 0,
            recovered: Vec::new(),
            paused_until: 0,
        }
    }

    /// A crash: everything in memory is gone.
    pub(crate) fn crash(&mut self) {
        self.alive = false;
        self.heartbeat_in_flight = None;
        self.parked.clear();
        self.expiry_armed = None;
        self.delayed.clear();
        self.fetchers.iter_mut().for_each(|f| *f = None);
        self.incarnation += 1;
        self.paused_until = 0; // a stopped process dies as well, and starts again running
    }
}

impl World {
    /// Handle a ProduceRequest at the leader: check leadership, `min.insync.replicas` and the
    /// idempotent sequence, append each batch, and answer: at once for acks=0/1 (no answer for
    /// acks=0), once the ISR has the batches for acks=all.
    pub(crate) fn broker_produce(&mut self, mut req: ProduceRequest) {
        let mut results = self.pools.results.pop().unwrap_or_default();
        let mut needs = Vec::new();
        let min_isr = self.scenario.broker.min_insync_replicas as usize;
        for mut batch in req.batches.drain(..) {
            let global = batch.partition;
            let p = &mut self.partitions[global];
            let result = if p.leader != Some(req.broker) {
                Err(ErrorCode::NotLeaderOrFollower)
            } else if req.acks == Acks::All && p.isr.len() < min_isr {
                Err(ErrorCode::NotEnoughReplicas)
            } else {
                let count = batch.records.len() as u32;
                let check = match req.producer_id {
                    Some((pid, epoch)) => p.check_sequence(pid, epoch, batch.base_seq, count),
                    None => Ok(None),
                };
                match check {
                    Ok(Some(base)) => Ok(base),
                    Ok(None) => {
                        let base = p.log_end();
                        p.log.extend_from_slice(&batch.records);
                        self.record_bytes += u64::from(count) * std::mem::size_of::<Message>() as u64;
                        if let Some((producer_id, epoch)) = req.producer_id {
                            p.batches.push(BatchMeta {
                                base_offset: base,
                                producer_id,
                                epoch,
                                first_seq: batch.base_seq,
                                count,
                            });
                        }
                        if p.isr.len() == 1 {
                            // The leader alone is the ISR: the high watermark follows its log.
                            p.high_watermark = p.log_end();
                        }
                        Ok(base)
                    }
                    Err(e) => Err(e),
                }
            };
            if let Ok(base) = result
                && req.acks == Acks::All
            {
                let end = base + batch.records.len() as u64;
                if self.partitions[global].high_watermark < end {
                    needs.push((global, end));
                }
            }
            results.push((global, result));
            batch.records.clear();
            self.pools.records.push(batch.records);
        }
        self.pools.produce_batches.push(std::mem::take(&mut req.batches));
        // The partitions written to, for the parked fetches (only worth collecting if any wait).
        let mut touched = std::mem::take(&mut self.pools.touched);
        if !self.brokers[req.broker as usize].parked.is_empty() {
            touched.extend(results.iter().filter(|(_, r)| r.is_ok()).map(|(g, _)| *g));
        }
        if req.acks == Acks::None {
            results.clear();
            self.pools.results.push(results);
        } else if needs.is_empty() {
            self.send_produce_response(req.broker, req.producer, req.request, results);
        } else {
            let delayed = DelayedProduce { producer: req.producer, request: req.request, results, needs };
            self.brokers[req.broker as usize].delayed.push(delayed);
        }
        self.wake_parked(req.broker, &touched);
        touched.clear();
        self.pools.touched = touched;
    }

    fn send_produce_response(
        &mut self,
        broker: u16,
        producer: u16,
        request: u64,
        results: Vec<(usize, Result<u64, ErrorCode>)>,
    ) {
        let broker_node = self.broker_nodes[broker as usize];
        let producer_node = self.producers[producer as usize].node;
        self.send_msg(broker_node, producer_node, Msg::ProduceResponse(ProduceResponse { producer, request, results }));
    }

    /// The high watermark of `global` may move (a follower caught up, the ISR shrank): move
    /// it, answer the acks=all produces it completes, and wake the fetches it unblocks.
    pub(crate) fn advance_high_watermark(&mut self, global: usize) {
        let p = &mut self.partitions[global];
        let Some(leader) = p.leader else { return };
        let hw = p.isr_watermark();
        if hw <= p.high_watermark {
            return;
        }
        p.high_watermark = hw;
        self.complete_delayed(leader, global, None);
        self.wake_parked(leader, &[global]);
    }

    /// Answer the delayed produces at `broker` that wait on `global` and are now complete; with
    /// `error`, the partition's wait ends with that error (leadership moved).
    pub(crate) fn complete_delayed(&mut self, broker: u16, global: usize, error: Option<ErrorCode>) {
        let min_isr = self.scenario.broker.min_insync_replicas as usize;
        let p = &self.partitions[global];
        let (hw, isr) = (p.high_watermark, p.isr.len());
        let b = &mut self.brokers[broker as usize];
        let mut done = Vec::new();
        let mut i = 0;
        while i < b.delayed.len() {
            let d = &mut b.delayed[i];
            if let Some(k) = d.needs.iter().position(|&(g, end)| g == global && (error.is_some() || hw >= end)) {
                d.needs.remove(k);
                // Kafka checks the ISR again on completion: NOT_ENOUGH_REPLICAS_AFTER_APPEND.
                let err = error.or((isr < min_isr).then_some(ErrorCode::NotEnoughReplicas));
                if let Some(e) = err
                    && let Some(r) = d.results.iter_mut().find(|(g, _)| *g == global)
                {
                    r.1 = Err(e);
                }
            }
            if d.needs.is_empty() {
                done.push(b.delayed.remove(i));
            } else {
                i += 1;
            }
        }
        for d in done {
            self.send_produce_response(broker, d.producer, d.request, d.results);
        }
    }

    /// Handle a FetchRequest: answer at once when any partition has data below the high
    /// watermark, else park it until data arrives or `fetch.max.wait.ms` passes.
    pub(crate) fn broker_fetch(&mut self, req: FetchRequest) {
        if req.max_wait_us == 0 || self.fetch_has_data(&req) {
            self.answer_fetch(req);
            return;
        }
        let deadline = self.q.now() + req.max_wait_us;
        let broker = req.broker;
        self.park(broker, Waiting::Consumer(req), deadline);
    }

    /// Handle a follower's fetch at the leader (see `replication.rs`); park it when there is
    /// nothing new to copy.
    pub(crate) fn park_replica_fetch(&mut self, req: ReplicaFetchRequest, deadline: Micros) {
        let broker = req.leader;
        self.park(broker, Waiting::Replica(req), deadline);
    }

    fn park(&mut self, broker: u16, request: Waiting, deadline: Micros) {
        let b = &mut self.brokers[broker as usize];
        b.parked.push(Parked { request, deadline });
        if b.expiry_armed.is_none_or(|t| deadline < t) {
            b.expiry_armed = Some(deadline);
            self.q.schedule_at(deadline, Ev::FetchExpired { broker });
        }
    }

    /// Answer (empty) every parked fetch whose wait has passed, and re-arm for the next one.
    pub(crate) fn fetch_expired(&mut self, broker: u16) {
        let now = self.q.now();
        let b = &mut self.brokers[broker as usize];
        if b.expiry_armed.is_some_and(|t| t > now) {
            return; // an earlier timer, superseded
        }
        b.expiry_armed = None;
        let mut expired = Vec::new();
        let mut i = 0;
        while i < b.parked.len() {
            if b.parked[i].deadline <= now {
                expired.push(b.parked.remove(i).request);
            } else {
                i += 1;
            }
        }
        if let Some(next) = b.parked.iter().map(|p| p.deadline).min() {
            b.expiry_armed = Some(next);
            self.q.schedule_at(next, Ev::FetchExpired { broker });
        }
        for req in expired {
            self.answer_waiting(req);
        }
    }

    fn answer_waiting(&mut self, w: Waiting) {
        match w {
            Waiting::Consumer(req) => self.answer_fetch(req),
            Waiting::Replica(req) => self.answer_replica_fetch(req),
        }
    }

    fn fetch_has_data(&self, req: &FetchRequest) -> bool {
        req.partitions.iter().any(|&(g, offset)| {
            let p = &self.partitions[g];
            p.leader == Some(req.broker) && (offset < p.high_watermark || offset > p.log_end())
        })
    }

    /// Wake the parked fetches of `broker` that wait on any of `touched`.
    pub(crate) fn wake_parked(&mut self, broker: u16, touched: &[usize]) {
        let parked = &mut self.brokers[broker as usize].parked;
        if parked.is_empty() || touched.is_empty() {
            return;
        }
        let mut ready = Vec::new();
        let mut i = 0;
        while i < parked.len() {
            let hit = match &parked[i].request {
                Waiting::Consumer(r) => {
                    r.partitions.iter().any(|&(g, o)| touched.contains(&g) && o < self.partitions[g].high_watermark)
                }
                Waiting::Replica(r) => {
                    r.partitions.iter().any(|&(g, o)| touched.contains(&g) && o < self.partitions[g].log_end())
                }
            };
            if hit {
                ready.push(parked.remove(i).request);
            } else {
                i += 1;
            }
        }
        for req in ready {
            self.answer_waiting(req);
        }
    }

    fn answer_fetch(&mut self, mut req: FetchRequest) {
        let mut ranges = self.pools.ranges.pop().unwrap_or_default();
        let mut records = self.pools.records.pop().unwrap_or_default();
        for &(g, offset) in &req.partitions {
            let p = &self.partitions[g];
            if offset > p.log_end() && p.leader == Some(req.broker) {
                ranges.push((p.tp, offset, super::OUT_OF_RANGE));
                continue;
            }
            // A broker that does not lead the partition (any more) has nothing to give; the
            // consumer asks the new leader (NOT_LEADER_OR_FOLLOWER, then a metadata refresh).
            if offset >= p.high_watermark || p.leader != Some(req.broker) {
                continue;
            }
            let end = p.high_watermark.min(offset + req.max_records_per_partition);
            let slice = &p.log[offset as usize..end as usize];
            ranges.push((p.tp, offset, slice.len()));
            records.extend_from_slice(slice);
        }
        req.partitions.clear();
        self.pools.fetch_partitions.push(std::mem::take(&mut req.partitions));
        let broker_node = self.broker_nodes[req.broker as usize];
        let consumer_node = self.consumers[req.consumer as usize].node;
        let resp = FetchResponse { consumer: req.consumer, broker: req.broker, fetch: req.fetch, ranges, records };
        self.send_msg(broker_node, consumer_node, Msg::FetchResponse(resp));
    }
}
