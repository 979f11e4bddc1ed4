//! The producer client: partitioner, record accumulator (batches per partition, `linger.ms`,
//! `batch.size`), the sender (one request per broker, `max.in.flight.requests.per.connection`),
//! and delivery reports.
//!
//! Follows the Java client's `RecordAccumulator` and `Sender`: a partition's first batch is ready
//! when it is full, when `linger.ms` has passed since it was created, or when more batches queue
//! behind it. One connection per broker carries at most `max.in.flight.requests.per.connection`
//! requests; with 1, a partition never has two batches in flight, which is what keeps order
//! without idempotence.

use super::partitioner::partition_of_key;
use super::{Msg, ProduceBatch, ProduceRequest, ProduceResponse, RECORD_BYTES};
use crate::net::{Channel, Conn};
use crate::world::{Ev, ProducerOwner, World, disconnected};
use evsim_model::actor::{Input, Token};
use evsim_model::event::Message;
use evsim_model::history::{DisconnectReason, ErrorCode, Micros, NodeId, Op, TopicId, Tp};
use evsim_model::scenario::{Acks, ProducerConfig, TopicSpec};
use std::collections::VecDeque;

#[derive(Debug)]
struct Batch {
    records: Vec<Message>,
    tokens: Vec<Token>,
    created: Micros,
    /// Sends so far that failed and were retried.
    attempts: u32,
    /// Not before this time (`retry.backoff.ms` after a failed attempt).
    retry_at: Micros,
    /// The idempotent producer's sequence number of the first record, once assigned (at the
    /// first send; a retry keeps it, so that the broker can spot a duplicate).
    seq: Option<u32>,
    /// Sent at least once: closed to new records (a retry resends exactly what was sent).
    sealed: bool,
}

impl Batch {
    fn empty(now: Micros) -> Self {
        Self {
            records: Vec::new(),
            tokens: Vec::new(),
            created: now,
            attempts: 0,
            retry_at: 0,
            seq: None,
            sealed: false,
        }
    }
}

#[derive(Debug, Default)]
struct PartitionQueue {
    batches: VecDeque<Batch>,
}

/// A topic as the producer routes to it.
#[derive(Copy, Clone, Debug)]
struct TopicRoute {
    /// Global index of its partition 0.
    first: usize,
    count: u32,
    /// The partition null-keyed records go to now.
    sticky: Option<u32>,
    /// The sticky partition before the current one (the next pick avoids it).
    previous: Option<u32>,
}

#[derive(Debug)]
struct InFlight {
    request: u64,
    broker: u16,
    /// (global partition, the batch) in request order.
    batches: Vec<(usize, Batch)>,
}

/// One producer instance (`KafkaProducer`), owned by one service instance.
#[derive(Debug)]
pub struct Producer {
    pub node: NodeId,
    pub config: ProducerConfig,
    queues: Vec<PartitionQueue>,
    /// A bit per global partition whose queue holds a batch (what the sender looks at, in
    /// partition order).
    pending: Vec<u64>,
    /// Per topic: where its partitions are, and the sticky partition for null keys.
    topics: Vec<TopicRoute>,
    /// Requests in flight per broker.
    in_flight: Vec<u32>,
    /// Requests awaiting a response (at most the in-flight limit per broker).
    requests: Vec<InFlight>,
    next_request: u64,
    records_per_batch: usize,
    /// Emptied batches, reused so that steady-state sending allocates nothing.
    spare: Vec<Batch>,
    linger_us: Micros,
    /// The earliest time a `Linger` event is already scheduled for.
    linger_armed: Option<Micros>,
    /// Idempotence: the producer id the broker assigned (InitProducerId) and its epoch.
    producer_id: u32,
    epoch: u16,
    /// Idempotence: the next sequence number per global partition.
    next_seq: Vec<u32>,
    /// Batches in flight per global partition (a retried idempotent batch waits for none).
    in_flight_batches: Vec<u16>,
}

impl Producer {
    pub fn new(
        node: NodeId,
        config: ProducerConfig,
        topics: &[TopicSpec],
        partitions: usize,
        brokers: u32,
        producer_id: u32,
    ) -> Self {
        let mut first = 0;
        let topics = topics
            .iter()
            .map(|t| {
                let entry = TopicRoute { first, count: t.partitions, sticky: None, previous: None };
                first += t.partitions as usize;
                entry
            })
            .collect();
        let records_per_batch = (config.batch_size / RECORD_BYTES).max(1) as usize;
        let linger_us = config.linger_ms * 1_000;
        Self {
            node,
            config,
            queues: (0..partitions).map(|_| PartitionQueue::default()).collect(),
            pending: vec![0; partitions.div_ceil(64)],
            topics,
            in_flight: vec![0; brokers as usize],
            requests: Vec::new(),
            next_request: 0,
            records_per_batch,
            spare: Vec::new(),
            linger_us,
            linger_armed: None,
            producer_id,
            epoch: 0,
            next_seq: vec![0; partitions],
            in_flight_batches: vec![0; partitions],
        }
    }
}

impl Producer {
    pub fn producer_id(&self) -> u32 {
        self.producer_id
    }

    /// Whether this producer has batches waiting to be sent.
    pub(crate) fn has_batches(&self) -> bool {
        self.pending.iter().any(|&w| w != 0)
    }
}

impl World {
    /// `producer.send()`: choose the partition, record the send, append to the accumulator.
    #[inline]
    pub(crate) fn producer_send(&mut self, producer: u16, topic: TopicId, message: Message, token: Token) {
        let p = &mut self.producers[producer as usize];
        let TopicRoute { first, count, sticky, previous } = p.topics[topic.0 as usize];
        let partition = match message.key {
            Some(key) => partition_of_key(p.config.partitioner, key, count),
            // Sticky partitioning for null keys (KIP-480): keep one partition until its batch is
            // sent, then pick another one (a different one when there is a choice) at random from
            // the client stream.
            None => match sticky {
                Some(s) => s,
                None => {
                    let s = match previous {
                        Some(prev) if count > 1 => {
                            let s = self.client_rng.below(u64::from(count - 1)) as u32;
                            if s >= prev { s + 1 } else { s }
                        }
                        _ => self.client_rng.below(u64::from(count)) as u32,
                    };
                    p.topics[topic.0 as usize].sticky = Some(s);
                    s
                }
            },
        };
        let global = first + partition as usize;
        let tp = Tp { topic, partition };
        let now = self.q.now();
        let node = p.node;
        let per_batch = p.records_per_batch;
        let queue = &mut p.queues[global];
        let need_new = queue.batches.back().is_none_or(|b| b.sealed || b.records.len() >= per_batch);
        if need_new {
            let mut batch = p.spare.pop().unwrap_or_else(|| Batch::empty(now));
            batch.created = now;
            batch.attempts = 0;
            batch.retry_at = 0;
            batch.seq = None;
            batch.sealed = false;
            p.queues[global].batches.push_back(batch);
            p.pending[global / 64] |= 1 << (global % 64);
        }
        let queue = &mut p.queues[global];
        let batch = queue.batches.back_mut().expect("just ensured");
        batch.records.push(message);
        batch.tokens.push(token);
        // The sender only has work when this append made the partition's first batch ready
        // (full, or another batch queued behind it, or no linger); otherwise a new first batch
        // only needs its linger timer.
        let front_ready = p.linger_us == 0
            || queue.batches.len() > 1
            || queue.batches.front().is_some_and(|b| b.records.len() >= per_batch);
        let new_front = need_new && queue.batches.len() == 1;
        self.stats.records_sent += 1;
        self.record(node, Op::Send { tp, key: message.key, value: message.value.id() });
        if front_ready {
            self.producer_drain(producer);
        } else if new_front {
            let deadline = now + self.producers[producer as usize].linger_us;
            self.arm_linger(producer, deadline);
        }
    }

    /// Make sure a `Linger` event is pending at or before `deadline`.
    fn arm_linger(&mut self, producer: u16, deadline: Micros) {
        let p = &mut self.producers[producer as usize];
        if p.linger_armed.is_none_or(|t| deadline < t) {
            p.linger_armed = Some(deadline);
            self.q.schedule_at(deadline, Ev::Linger { producer });
        }
    }

    /// The sender loop: build requests for ready batches, per broker, within the in-flight limit;
    /// arm the linger timer for batches not ready yet.
    pub(crate) fn producer_drain(&mut self, producer: u16) {
        let now = self.q.now();
        let p = &mut self.producers[producer as usize];
        if p.linger_armed.is_some_and(|t| t <= now) {
            p.linger_armed = None;
        }
        let mut next_deadline: Option<Micros> = None;
        let mut requests = std::mem::take(&mut self.pools.produce_requests);
        let mut sent: Vec<(u16, Vec<(usize, Batch)>)> = Vec::new();
        let mut expired: Vec<(usize, Batch)> = Vec::new();
        let mut connect: Vec<Conn> = Vec::new();
        let idempotent = p.config.enable_idempotence;
        let delivery_us = p.config.delivery_timeout_ms * 1_000;
        // Only partitions with queued batches are looked at, in partition order; each ready first
        // batch joins the request to its leader, if that connection has room for one more.
        for word in 0..p.pending.len() {
            let mut bits = p.pending[word];
            while bits != 0 {
                let global = word * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let partition = &self.partitions[global];
                let q = &mut p.queues[global];
                // `delivery.timeout.ms` bounds a record's whole life, queued or retried.
                while q.batches.front().is_some_and(|b| now >= b.created + delivery_us) {
                    expired.push((global, q.batches.pop_front().expect("front exists")));
                }
                let Some(front) = q.batches.front() else {
                    p.pending[word] &= !(1 << (global % 64));
                    continue;
                };
                if self.faulty {
                    let deadline = front.created + delivery_us;
                    next_deadline = Some(next_deadline.map_or(deadline, |d: Micros| d.min(deadline)));
                }
                // An offline partition waits for a leader (the metadata refresh drains again).
                let Some(broker) = partition.leader else { continue };
                if p.in_flight[broker as usize] >= p.config.max_in_flight_requests_per_connection {
                    continue;
                }
                // The sender sends only on an established connection (`NetworkClient.ready()`);
                // otherwise it starts connecting and the batch waits.
                let conn = Conn { client: p.node, server: self.broker_nodes[broker as usize], chan: Channel::Data };
                if !self.net.established(conn) {
                    if !connect.contains(&conn) {
                        connect.push(conn);
                    }
                    continue;
                }
                // An idempotent retry goes out only when nothing else of its partition is in
                // flight, so that sequence numbers reach the broker in order (the Java client
                // waits for the first in-flight sequence the same way).
                if idempotent && front.attempts > 0 && p.in_flight_batches[global] > 0 {
                    continue;
                }
                if front.retry_at > now {
                    next_deadline = Some(next_deadline.map_or(front.retry_at, |d: Micros| d.min(front.retry_at)));
                    continue;
                }
                let ready = front.records.len() >= p.records_per_batch
                    || q.batches.len() > 1
                    || now >= front.created + p.linger_us;
                if !ready {
                    let deadline = front.created + p.linger_us;
                    next_deadline = Some(next_deadline.map_or(deadline, |d: Micros| d.min(deadline)));
                    continue;
                }
                let mut batch = q.batches.pop_front().expect("front exists");
                batch.sealed = true;
                if q.batches.is_empty() {
                    p.pending[word] &= !(1 << (global % 64));
                }
                let base_seq = if idempotent {
                    *batch.seq.get_or_insert_with(|| {
                        let s = p.next_seq[global];
                        p.next_seq[global] = s.wrapping_add(batch.records.len() as u32);
                        s
                    })
                } else {
                    0
                };
                p.in_flight_batches[global] += 1;
                let i = match requests.iter().position(|r| r.broker == broker) {
                    Some(i) => i,
                    None => {
                        let batches = self.pools.produce_batches.pop().unwrap_or_default();
                        // Without faults no request fails, so no batch is ever sent twice and the
                        // broker's sequence check could only accept: the simulator skips the
                        // bookkeeping then (2% of the fault-free run; nothing observable changes,
                        // as the pinned history hashes show).
                        let producer_id = (idempotent && self.faulty).then_some((p.producer_id, p.epoch));
                        requests.push(ProduceRequest {
                            producer,
                            broker,
                            request: 0,
                            acks: p.config.acks,
                            producer_id,
                            batches,
                        });
                        sent.push((broker, Vec::new()));
                        requests.len() - 1
                    }
                };
                let mut records = self.pools.records.pop().unwrap_or_default();
                records.extend_from_slice(&batch.records);
                requests[i].batches.push(ProduceBatch { partition: global, base_seq, records });
                sent[i].1.push((global, batch));
                // A sent batch ends the sticky partition's turn for null keys.
                let route = &mut p.topics[partition.tp.topic.0 as usize];
                if route.sticky == Some(partition.tp.partition) {
                    route.previous = route.sticky.take();
                }
            }
        }
        // One request per broker, numbered in broker order.
        if requests.len() > 1 {
            requests.sort_by_key(|r| r.broker);
            sent.sort_by_key(|(b, _)| *b);
        }
        for (req, (_, batches)) in requests.iter_mut().zip(sent) {
            req.request = p.next_request;
            p.next_request += 1;
            p.requests.push(InFlight { request: req.request, broker: req.broker, batches });
            p.in_flight[req.broker as usize] += 1;
        }
        let node = p.node;
        let timeout_us = p.config.request_timeout_ms * 1_000;
        if let Some(deadline) = next_deadline {
            self.arm_linger(producer, deadline);
        }
        for req in requests.drain(..) {
            let acks = req.acks;
            let broker_node = self.broker_nodes[req.broker as usize];
            let request = req.request;
            self.send_msg(node, broker_node, Msg::Produce(req));
            if acks == Acks::None {
                // acks=0: no response will come; the send counts as done once it is on the wire.
                self.producer_complete(producer, request, None, true);
            } else if self.faulty {
                // `request.timeout.ms`: with faults a response may never come.
                self.q.schedule_at(now + timeout_us, Ev::RequestTimeout { producer, request });
            }
        }
        self.pools.produce_requests = requests;
        for conn in connect {
            self.connect(conn);
        }
        for (global, batch) in expired {
            self.fail_batch(producer, global, batch, ErrorCode::MsgTimedOut);
        }
    }

    /// A request got no response within `request.timeout.ms`: the client disconnects from the
    /// broker (the Java `NetworkClient` does so on a request timeout): the request fails with
    /// REQUEST_TIMED_OUT, every other request in flight on that connection with
    /// NETWORK_EXCEPTION, in the order they were sent (each may still have been written). The
    /// next request needs a new connection.
    #[cold]
    pub(crate) fn producer_request_timeout(&mut self, producer: u16, request: u64) {
        let p = &self.producers[producer as usize];
        let Some(broker) = p.requests.iter().find(|r| r.request == request).map(|r| r.broker) else {
            return;
        };
        let conn = Conn { client: p.node, server: self.broker_nodes[broker as usize], chan: Channel::Data };
        self.close_connection(conn);
        self.client_disconnected(conn, DisconnectReason::RequestTimeout, Some((producer, request)));
    }

    /// Producer `producer`'s connection to `broker` ended (`timed_out`: the request whose
    /// timeout ended it): every request in flight on it fails, and the sender runs again.
    #[cold]
    pub(crate) fn producer_disconnected(
        &mut self,
        producer: u16,
        broker: u16,
        timed_out: Option<u64>,
        reason: DisconnectReason,
    ) {
        let p = &self.producers[producer as usize];
        let on_connection: Vec<u64> = p.requests.iter().filter(|r| r.broker == broker).map(|r| r.request).collect();
        if on_connection.is_empty() {
            return;
        }
        let node = p.node;
        let op = disconnected(self.broker_nodes[broker as usize], reason, on_connection.len() as u32);
        self.record(node, op);
        // All of them fail before the sender runs again, so that retries go out in order.
        for r in on_connection {
            let error = if Some(r) == timed_out { ErrorCode::RequestTimedOut } else { ErrorCode::NetworkException };
            self.producer_fail_request(producer, r, error);
        }
        self.producer_drain(producer);
    }

    pub(crate) fn producer_response(&mut self, resp: ProduceResponse) {
        let mut results = resp.results;
        self.producer_complete(resp.producer, resp.request, Some(&results), true);
        results.clear();
        self.pools.results.push(results);
    }

    /// Complete a request: delivery reports for every record of every batch, in order, or a
    /// retry of the batches that failed with a retriable error while `retries` and
    /// `delivery.timeout.ms` allow. `results` of `None` is acks=0 (done once sent).
    fn producer_complete(
        &mut self,
        producer: u16,
        request: u64,
        results: Option<&[(usize, Result<u64, ErrorCode>)]>,
        drain: bool,
    ) {
        self.producer_complete_with(producer, request, results, drain, ErrorCode::RequestTimedOut)
    }

    /// A request failed without an answer (its connection ended): every batch fails with `error`.
    fn producer_fail_request(&mut self, producer: u16, request: u64, error: ErrorCode) {
        self.producer_complete_with(producer, request, Some(&[]), false, error)
    }

    fn producer_complete_with(
        &mut self,
        producer: u16,
        request: u64,
        results: Option<&[(usize, Result<u64, ErrorCode>)]>,
        drain: bool,
        failed_with: ErrorCode,
    ) {
        let p = &mut self.producers[producer as usize];
        let Some(i) = p.requests.iter().position(|r| r.request == request) else {
            return;
        };
        let inflight = p.requests.remove(i);
        p.in_flight[inflight.broker as usize] -= 1;
        for (global, batch) in inflight.batches {
            let p = &mut self.producers[producer as usize];
            p.in_flight_batches[global] -= 1;
            let result = match &results {
                None => Ok(None),
                Some(r) => match r.iter().find(|(g, _)| *g == global).map(|(_, res)| *res) {
                    Some(Ok(base)) => Ok(Some(base)),
                    Some(Err(e)) => Err(e),
                    None => Err(failed_with),
                },
            };
            match result {
                Ok(base) => self.deliver_batch(producer, global, batch, Ok(base)),
                Err(e) => self.retry_or_fail(producer, global, batch, e),
            }
        }
        if drain {
            self.producer_drain(producer);
        }
    }

    /// A batch failed with `error`: queue it again after `retry.backoff.ms`, or fail it.
    #[cold]
    #[inline(never)]
    fn retry_or_fail(&mut self, producer: u16, global: usize, mut batch: Batch, error: ErrorCode) {
        let now = self.now();
        let p = &mut self.producers[producer as usize];
        let retriable = matches!(
            error,
            ErrorCode::NotLeaderOrFollower
                | ErrorCode::NotEnoughReplicas
                | ErrorCode::RequestTimedOut
                | ErrorCode::NetworkException
                | ErrorCode::OutOfOrderSequenceNumber
        );
        let expired = now >= batch.created + p.config.delivery_timeout_ms * 1_000;
        if !retriable || batch.attempts >= p.config.retries || expired {
            let error = if expired { ErrorCode::MsgTimedOut } else { error };
            return self.fail_batch(producer, global, batch, error);
        }
        if p.config.enable_idempotence && error == ErrorCode::OutOfOrderSequenceNumber {
            // A gap the producer cannot explain (no earlier batch of the partition is still on
            // its way): the broker lost the producer's state, as after a truncation. KIP-360:
            // bump the epoch and number every unsent batch again from 0.
            let earlier_pending = p.in_flight_batches[global] > 0
                || p.queues[global].batches.iter().any(|b| b.seq.is_some_and(|s| Some(s) < batch.seq));
            if !earlier_pending {
                p.epoch = p.epoch.wrapping_add(1);
                p.next_seq.iter_mut().for_each(|s| *s = 0);
                for q in &mut p.queues {
                    q.batches.iter_mut().for_each(|b| b.seq = None);
                }
                batch.seq = None;
            }
        }
        self.stats.produce_retries += 1;
        batch.attempts += 1;
        batch.retry_at = now + p.config.retry_backoff_ms * 1_000;
        let q = &mut p.queues[global].batches;
        if p.config.enable_idempotence {
            // Back in sequence order, ahead of the batches not sent yet.
            let at = q.iter().position(|b| b.seq.is_none_or(|s| batch.seq.is_some_and(|mine| mine < s)));
            q.insert(at.unwrap_or(q.len()), batch);
        } else {
            // The Java client's `reenqueue`: at the front of the partition's queue.
            q.push_front(batch);
        }
        p.pending[global / 64] |= 1 << (global % 64);
    }

    #[cold]
    #[inline(never)]
    fn fail_batch(&mut self, producer: u16, global: usize, batch: Batch, error: ErrorCode) {
        self.deliver_batch(producer, global, batch, Err(error));
    }

    /// Delivery reports for every record of `batch`, in order.
    fn deliver_batch(
        &mut self,
        producer: u16,
        global: usize,
        mut batch: Batch,
        result: Result<Option<u64>, ErrorCode>,
    ) {
        let node = self.producers[producer as usize].node;
        let tp = self.partitions[global].tp;
        for (i, (&token, message)) in batch.tokens.iter().zip(&batch.records).enumerate() {
            let value = message.value.id();
            let report = match result {
                Ok(base) => {
                    let offset = base.map(|b| b + i as u64);
                    self.stats.records_produced += 1;
                    self.record(node, Op::SendOk { tp, key: message.key, value, offset });
                    Ok(offset)
                }
                Err(error) => {
                    self.stats.send_failures += 1;
                    self.record(node, Op::SendFailed { tp, key: message.key, value, error });
                    Err(error)
                }
            };
            match self.producer_owner[producer as usize] {
                ProducerOwner::Service(s) => self.service_input(s, Input::Delivered { token, result: report }),
                ProducerOwner::Consumer(c) => self.dead_letter_delivered(c, token, tp, report),
                // Fire and forget: the listener did not wait for the report.
                ProducerOwner::Listener(_) => {}
            }
        }
        batch.records.clear();
        batch.tokens.clear();
        self.producers[producer as usize].spare.push(batch);
    }
}
