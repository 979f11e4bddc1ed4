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
    parked: Vec<Parked>,
}

impl World {
    /// Handle a ProduceRequest at the leader: append each batch, advance the high watermark,
    /// answer (unless `acks=0`), and wake fetches waiting on those partitions.
    pub(crate) fn broker_produce(&mut self, req: ProduceRequest) {
        let mut results = Vec::with_capacity(req.batches.len());
        let mut touched = Vec::with_capacity(req.batches.len());
        for (global, records) in req.batches {
            let p = &mut self.partitions[global];
            let base = p.log_end();
            p.log.extend(records);
            // Replication factor 1: the leader alone is the ISR.
            p.high_watermark = p.log_end();
            results.push((global, Ok(base)));
            touched.push(global);
        }
        let broker_node = self.broker_nodes[req.broker as usize];
        if req.acks != evsim_model::scenario::Acks::None {
            let producer_node = self.producers[req.producer as usize].node;
            self.send_msg(
                broker_node,
                producer_node,
                Msg::ProduceResponse(ProduceResponse { producer: req.producer, request: req.request, results }),
            );
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
        let (broker, fetch) = (req.broker, req.fetch);
        self.brokers[broker as usize].parked.push(Parked { request: req, deadline });
        self.q.schedule_at(deadline, Ev::FetchExpired { broker, fetch });
    }

    pub(crate) fn fetch_expired(&mut self, broker: u16, fetch: u64) {
        let parked = &mut self.brokers[broker as usize].parked;
        if let Some(i) = parked.iter().position(|p| p.request.fetch == fetch && p.deadline <= self.q.now()) {
            let p = parked.swap_remove(i);
            self.answer_fetch(p.request);
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

    fn answer_fetch(&mut self, req: FetchRequest) {
        let mut data = Vec::new();
        for &(g, offset) in &req.partitions {
            let p = &self.partitions[g];
            if offset >= p.high_watermark {
                continue;
            }
            let end = p.high_watermark.min(offset + req.max_records_per_partition);
            data.push((p.tp, offset, p.log[offset as usize..end as usize].to_vec()));
        }
        let broker_node = self.broker_nodes[req.broker as usize];
        let consumer_node = self.consumers[req.consumer as usize].node;
        self.send_msg(
            broker_node,
            consumer_node,
            Msg::FetchResponse(FetchResponse { consumer: req.consumer, broker: req.broker, fetch: req.fetch, data }),
        );
    }
}
