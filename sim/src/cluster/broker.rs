//! Brokers: partition logs (offsets, log end, high watermark), produce handling, and fetch with
//! long polling (`fetch.max.wait.ms`: a fetch that finds nothing waits at the broker until data
//! arrives or the wait expires).
//!
//! Replication is not modelled yet (replication factor 1): the high watermark is the log end as
//! soon as the leader appends. The partition keeps a leader field and a separate high watermark
//! so that followers and the ISR can be added without changing the readers.

use super::{FetchRequest, FetchResponse, Msg, ProduceRequest, ProduceResponse};
use crate::world::{Ev, World};
use evsim_model::event::Message;
use evsim_model::history::{Micros, Tp};

/// One partition's log on its leader.
#[derive(Debug)]
pub struct Partition {
    pub tp: Tp,
    /// The broker that leads the partition.
    pub leader: u16,
    /// Records at offsets `0..log.len()` (log start is 0: retention is not modelled).
    pub log: Vec<Message>,
    /// High watermark: consumers read only below it.
    pub high_watermark: u64,
}

impl Partition {
    pub fn new(tp: Tp, leader: u16) -> Self {
        Self { tp, leader, log: Vec::new(), high_watermark: 0 }
    }

    pub fn log_end(&self) -> u64 {
        self.log.len() as u64
    }
}

/// A fetch waiting at the broker for data.
#[derive(Debug)]
struct Parked {
    request: FetchRequest,
    deadline: Micros,
}

/// Broker-side state beyond the logs.
#[derive(Debug, Default)]
pub struct BrokerState {
    /// Fetches waiting for data, in arrival order.
    parked: Vec<Parked>,
    /// The time a `FetchExpired` event is pending for (one at a time, re-armed when it fires).
    expiry_armed: Option<Micros>,
}

impl World {
    /// Handle a ProduceRequest at the leader: append each batch, advance the high watermark,
    /// answer (unless `acks=0`), and wake fetches waiting on those partitions.
    pub(crate) fn broker_produce(&mut self, mut req: ProduceRequest) {
        let mut results = self.pools.results.pop().unwrap_or_default();
        let mut touched = Vec::with_capacity(req.batches.len());
        for (global, mut records) in req.batches.drain(..) {
            let p = &mut self.partitions[global];
            let base = p.log_end();
            p.log.extend_from_slice(&records);
            records.clear();
            self.pools.records.push(records);
            // Replication factor 1: the leader alone is the ISR.
            p.high_watermark = p.log_end();
            results.push((global, Ok(base)));
            touched.push(global);
        }
        self.pools.produce_batches.push(req.batches);
        let broker_node = self.broker_nodes[req.broker as usize];
        if req.acks != evsim_model::scenario::Acks::None {
            let producer_node = self.producers[req.producer as usize].node;
            self.send_msg(
                broker_node,
                producer_node,
                Msg::ProduceResponse(ProduceResponse { producer: req.producer, request: req.request, results }),
            );
        } else {
            results.clear();
            self.pools.results.push(results);
        }
        self.wake_parked(req.broker, &touched);
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
        let b = &mut self.brokers[broker as usize];
        b.parked.push(Parked { request: req, deadline });
        if b.expiry_armed.is_none() {
            b.expiry_armed = Some(deadline);
            self.q.schedule_at(deadline, Ev::FetchExpired { broker });
        }
    }

    /// Answer (empty) every parked fetch whose `fetch.max.wait.ms` has passed, and re-arm for the
    /// next one.
    pub(crate) fn fetch_expired(&mut self, broker: u16) {
        let now = self.q.now();
        let b = &mut self.brokers[broker as usize];
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
            self.answer_fetch(req);
        }
    }

    fn fetch_has_data(&self, req: &FetchRequest) -> bool {
        req.partitions.iter().any(|&(g, offset)| offset < self.partitions[g].high_watermark)
    }

    fn wake_parked(&mut self, broker: u16, touched: &[usize]) {
        let parked = &mut self.brokers[broker as usize].parked;
        if parked.is_empty() {
            return;
        }
        let mut ready = Vec::new();
        let mut i = 0;
        while i < parked.len() {
            let hit = parked[i].request.partitions.iter().any(|(g, _)| touched.contains(g));
            if hit {
                ready.push(parked.remove(i).request);
            } else {
                i += 1;
            }
        }
        for req in ready {
            self.answer_fetch(req);
        }
    }

    fn answer_fetch(&mut self, mut req: FetchRequest) {
        let mut ranges = self.pools.ranges.pop().unwrap_or_default();
        let mut records = self.pools.records.pop().unwrap_or_default();
        for &(g, offset) in &req.partitions {
            let p = &self.partitions[g];
            if offset >= p.high_watermark {
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
