//! The application thread and the data path: the listener container's loop (`poll()`, hand each
//! record to the listener, commit after the batch), fetching, auto-commit, and the heartbeat
//! thread's `max.poll.interval.ms` check.

use super::{App, CommitKind, DEFAULT_ERROR_HANDLER_ATTEMPTS, Membership, POLL_TIMEOUT_US, PendingCommit};
use crate::cluster::{CoordinatorRequest, FetchRequest, FetchResponse, Msg, OUT_OF_RANGE, RECORD_BYTES};
use crate::world::{Ev, World, disconnected};
use evsim_model::actor::{Command, Listener};
use evsim_model::history::{DisconnectReason, ErrorCode, LeaveReason, Op, Polled, Tp};
use evsim_model::scenario::{CommitStrategy, FaultKind, OffsetReset};

impl World {
    /// The application calls `poll()`.
    pub(super) fn app_poll(&mut self, c: u16) {
        let now = self.now();
        let cons = &mut self.consumers[c as usize];
        cons.app_epoch += 1;
        cons.app = App::InPoll;
        cons.last_poll = now;
        self.arm_poll_check(c);
        let cons = &mut self.consumers[c as usize];
        if !cons.poll_timeout_armed {
            cons.poll_timeout_armed = true;
            self.q.schedule_at(now + POLL_TIMEOUT_US, Ev::PollTimeout { consumer: c });
        }
        self.poll_step(c);
    }
    /// Make sure a `PollIntervalCheck` is pending for consumer `c`.
    pub(super) fn arm_poll_check(&mut self, c: u16) {
        let now = self.now();
        let cons = &mut self.consumers[c as usize];
        if !cons.poll_check_armed {
            cons.poll_check_armed = true;
            let at = now + cons.spec.consumer.max_poll_interval_ms * 1_000;
            self.q.schedule_at(at, Ev::PollIntervalCheck { consumer: c });
        }
    }
    pub(crate) fn poll_timeout(&mut self, c: u16) {
        let now = self.now();
        let cons = &mut self.consumers[c as usize];
        cons.poll_timeout_armed = false;
        if !matches!(cons.app, App::InPoll) {
            return;
        }
        if now >= cons.last_poll + POLL_TIMEOUT_US {
            // poll() returned no records; the container loop polls again.
            self.app_poll(c);
        } else {
            cons.poll_timeout_armed = true;
            let at = cons.last_poll + POLL_TIMEOUT_US;
            self.q.schedule_at(at, Ev::PollTimeout { consumer: c });
        }
    }
    /// The part of `poll()` that can make progress now: group work, auto-commit, returning
    /// buffered records, or sending fetches.
    pub(super) fn poll_step(&mut self, c: u16) {
        let now = self.now();
        let cons = &mut self.consumers[c as usize];
        if !matches!(cons.app, App::InPoll) {
            return;
        }
        let rejoin = match cons.membership {
            Membership::Unjoined => true,
            Membership::Stable => cons.rejoin_needed,
            _ => false,
        };
        if rejoin {
            self.begin_join(c);
        }
        let cons = &mut self.consumers[c as usize];
        if !matches!(cons.app, App::InPoll) || !cons.consuming() {
            return;
        }
        if cons.membership == Membership::Stable
            && cons.spec.consumer.enable_auto_commit
            && !cons.spec.consumer.enable_auto_offset_store
            && now >= cons.next_auto_commit
        {
            cons.next_auto_commit = now + cons.spec.consumer.auto_commit_interval_ms * 1_000;
            let offsets: Vec<(Tp, u64)> = cons.positions.iter().map(|(tp, o)| (*tp, *o)).collect();
            if !offsets.is_empty() {
                self.send_commit(c, offsets, CommitKind::Auto);
            }
        }
        let cons = &mut self.consumers[c as usize];
        if cons.buffer.is_empty() {
            return self.send_fetches(c);
        }
        let max = cons.spec.consumer.max_poll_records as usize;
        cons.batch.clear();
        let mut records = Vec::with_capacity(max.min(cons.buffer.len()));
        while records.len() < max {
            let Some((tp, offset, message)) = cons.buffer.pop_front() else {
                break;
            };
            let polled = Polled { tp, offset, key: message.key, value: message.value.id() };
            records.push(polled);
            cons.batch.push((polled, message));
        }
        // The position of each partition moves past the last record returned.
        for (polled, _) in cons.batch.iter().rev() {
            match cons.positions.get_mut(&polled.tp) {
                Some(p) if *p <= polled.offset => *p = polled.offset + 1,
                _ => {}
            }
        }
        cons.app = App::Processing { next: 0 };
        // The Java client resets its poll timer on every pass of poll()'s loop, so the
        // max.poll.interval.ms budget for this batch starts now, as poll() returns.
        cons.last_poll = now;
        self.arm_poll_check(c);
        let cons = &mut self.consumers[c as usize];
        cons.app_epoch += 1;
        let (node, group) = (cons.node, cons.group);
        let commit_first = cons.spec.commit_strategy == CommitStrategy::CommitBeforeProcess;
        self.stats.records_polled += records.len() as u64;
        self.record(node, Op::Poll { group, records });
        if commit_first {
            // At-most-once: the positions past this batch are committed before any record of
            // it is handled.
            let cons = &mut self.consumers[c as usize];
            cons.app = App::Committing;
            let offsets: Vec<(Tp, u64)> = cons.positions.iter().map(|(tp, o)| (*tp, *o)).collect();
            self.send_commit(c, offsets, CommitKind::BeforeProcess);
        } else {
            self.start_processing(c);
        }
        // Fetch ahead while the application processes (the Java client pipelines fetches).
        self.send_fetches(c);
    }
    pub(super) fn send_fetches(&mut self, c: u16) {
        let cons = &self.consumers[c as usize];
        if !cons.consuming() {
            return;
        }
        let max_records = (cons.spec.consumer.max_partition_fetch_bytes / RECORD_BYTES).max(1);
        let max_wait_us = cons.spec.consumer.fetch_max_wait_ms * 1_000;
        let mut per_broker: Vec<(u16, Vec<(usize, u64)>)> = Vec::new();
        for tp in &cons.assigned {
            let Some(&fetch_at) = cons.fetch_positions.get(tp) else {
                continue;
            };
            // Only partitions with nothing buffered are fetched again.
            if cons.positions.get(tp) != Some(&fetch_at) {
                continue;
            }
            let g = self.partition_index(*tp);
            let Some(leader) = self.partitions[g].leader else { continue };
            if cons.fetch_in_flight[leader as usize].is_none() {
                match per_broker.iter_mut().find(|(b, _)| *b == leader) {
                    Some((_, parts)) => parts.push((g, fetch_at)),
                    None => {
                        let mut parts = self.pools.fetch_partitions.pop().unwrap_or_default();
                        parts.push((g, fetch_at));
                        per_broker.push((leader, parts));
                    }
                }
            }
        }
        for (broker, partitions) in per_broker {
            let cons = &mut self.consumers[c as usize];
            let fetch = cons.next_fetch;
            cons.next_fetch += 1;
            cons.fetch_in_flight[broker as usize] = Some(fetch);
            let node = cons.node;
            let req = FetchRequest {
                consumer: c,
                broker,
                fetch,
                partitions,
                max_records_per_partition: max_records,
                max_wait_us,
            };
            let to = self.broker_nodes[broker as usize];
            self.send_msg(node, to, Msg::Fetch(req));
            if self.faulty {
                // The consumer's `request.timeout.ms` (counted from the end of the long poll's
                // wait): a fetch without an answer is given up, its connection closed, and the
                // partitions fetched again (from the new leader, if they moved).
                let timeout = self.consumers[c as usize].spec.consumer.request_timeout_ms * 1_000;
                let at = self.now() + timeout + max_wait_us;
                self.q.schedule_at(at, Ev::FetchTimeout { consumer: c, broker, fetch });
            }
        }
    }
    pub(crate) fn consumer_fetch_response(&mut self, mut resp: FetchResponse) {
        let cons = &mut self.consumers[resp.consumer as usize];
        if cons.fetch_in_flight.get(resp.broker as usize).copied().flatten() == Some(resp.fetch) {
            cons.fetch_in_flight[resp.broker as usize] = None;
        }
        let mut start = 0;
        let mut out_of_range = Vec::new();
        for &(tp, first, n) in &resp.ranges {
            if n == OUT_OF_RANGE {
                out_of_range.push((tp, first));
                continue;
            }
            let records = &resp.records[start..start + n];
            start += n;
            // Data for a partition no longer assigned, or from a stale position, is dropped.
            if cons.fetch_positions.get(&tp) != Some(&first) || !cons.assigned.contains(&tp) {
                continue;
            }
            cons.buffer.extend(records.iter().enumerate().map(|(i, m)| (tp, first + i as u64, *m)));
            cons.fetch_positions.insert(tp, first + n as u64);
        }
        for (tp, offset) in out_of_range {
            // OFFSET_OUT_OF_RANGE: `auto.offset.reset` decides where to go (the ListOffsets
            // lookup is taken as instantaneous; `none` is treated as earliest, as on assignment).
            if cons.fetch_positions.get(&tp) != Some(&offset) || !cons.assigned.contains(&tp) {
                continue;
            }
            let p = &self.partitions[self.first_partition[tp.topic.0 as usize] + tp.partition as usize];
            let to = match cons.spec.consumer.auto_offset_reset {
                OffsetReset::Earliest | OffsetReset::None => 0,
                OffsetReset::Latest => p.high_watermark,
            };
            cons.fetch_positions.insert(tp, to);
            if cons.positions.get(&tp) == Some(&offset) {
                cons.positions.insert(tp, to);
            }
            let (node, group) = (cons.node, cons.group);
            self.history.push(self.q.now(), node, Op::OffsetReset { group, tp, from: offset, to });
        }
        resp.ranges.clear();
        resp.records.clear();
        self.pools.ranges.push(resp.ranges);
        self.pools.records.push(resp.records);
        let c = resp.consumer;
        if matches!(self.consumers[c as usize].app, App::InPoll) {
            self.poll_step(c);
        } else {
            self.send_fetches(c);
        }
    }
    /// librdkafka's auto-commit timer: commit the stored offsets (everything `poll()` has
    /// handed out), in the background, whatever the application is doing.
    pub(crate) fn auto_commit_tick(&mut self, c: u16) {
        let now = self.now();
        let cons = &mut self.consumers[c as usize];
        let interval = cons.spec.consumer.auto_commit_interval_ms * 1_000;
        self.q.schedule_at(now + interval, Ev::AutoCommitTick { consumer: c });
        let cons = &mut self.consumers[c as usize];
        if cons.membership != Membership::Stable || cons.positions.is_empty() {
            return;
        }
        let offsets: Vec<(Tp, u64)> = cons.positions.iter().map(|(tp, o)| (*tp, *o)).collect();
        self.send_commit(c, offsets, CommitKind::Background);
    }
    /// A fetch got no answer in time: close the connection, forget the fetch and fetch again.
    pub(crate) fn consumer_fetch_timeout(&mut self, c: u16, broker: u16, fetch: u64) {
        let cons = &self.consumers[c as usize];
        if cons.fetch_in_flight.get(broker as usize).copied().flatten() != Some(fetch) {
            return;
        }
        let conn = self.data_conn(cons.node, self.broker_nodes[broker as usize]);
        self.close_connection(conn);
        self.client_disconnected(conn, DisconnectReason::RequestTimeout, None);
    }

    /// The data connection to `broker` ended: the fetch in flight on it is lost; fetch again.
    pub(crate) fn consumer_fetch_lost(&mut self, c: u16, broker: u16, reason: DisconnectReason) {
        let cons = &mut self.consumers[c as usize];
        if cons.fetch_in_flight.get(broker as usize).copied().flatten().is_none() {
            return;
        }
        cons.fetch_in_flight[broker as usize] = None;
        let node = cons.node;
        self.record(node, disconnected(self.broker_nodes[broker as usize], reason, 1));
        let cons = &self.consumers[c as usize];
        if matches!(cons.app, App::InPoll) {
            self.poll_step(c);
        } else {
            self.send_fetches(c);
        }
    }
    pub(super) fn start_processing(&mut self, c: u16) {
        let cons = &self.consumers[c as usize];
        let d = self.client_rng.jitter(cons.spec.processing_time_us, cons.spec.processing_jitter_us);
        let epoch = cons.app_epoch;
        let now = self.now();
        self.q.schedule_at(now + d, Ev::ProcessDone { consumer: c, epoch });
    }
    /// The listener finished the current record: apply its commands, then the next record or
    /// the end of the batch.
    pub(crate) fn process_done(&mut self, c: u16, epoch: u32) {
        let now = self.now();
        let cons = &mut self.consumers[c as usize];
        if cons.app_epoch != epoch {
            return;
        }
        let App::Processing { next } = &mut cons.app else {
            return;
        };
        let (record, message) = cons.batch[*next];
        *next += 1;
        let more = *next < cons.batch.len();
        // The external system the listener calls is down (an outage window), or the handler
        // throws (the business error rate): the attempt fails before applying anything.
        let group = cons.group.0 as usize;
        let faulted = !self.db_down.is_empty() || !self.platform_down[group].is_empty();
        let down = faulted
            || cons.spec.external_outages_ms.iter().any(|&(start, end)| now >= start * 1_000 && now < end * 1_000);
        if faulted {
            self.outage_hit(FaultKind::DbUnavailable, None);
            self.outage_hit(FaultKind::PlatformOutage, Some(group));
        }
        let cons = &mut self.consumers[c as usize];
        let rate = cons.spec.handler_error_rate;
        if down || (rate > 0.0 && self.client_rng.chance(rate)) {
            return self.handler_failed(c, record, more);
        }
        let cons = &mut self.consumers[c as usize];
        cons.failures.retain(|(tp, offset, _)| !(*tp == record.tp && *offset == record.offset));
        if cons.spec.commit_strategy == CommitStrategy::Idempotent && !self.db.mark_processed(cons.group, record.value)
        {
            // Already applied (a redelivery): acknowledge, apply nothing.
            let (node, group) = (cons.node, cons.group);
            cons.ack(record);
            self.record(node, Op::DuplicateSkipped { group, record });
            return if more { self.start_processing(c) } else { self.batch_done(c) };
        }
        let cons = &mut self.consumers[c as usize];
        let mut commands = std::mem::take(&mut cons.commands);
        cons.listener.on_record(now, &record, &message, &mut commands);
        let (node, group) = (cons.node, cons.group);
        let mut ok = false;
        let mut thrown = false;
        for cmd in commands.drain(..) {
            match cmd {
                Command::Cache { op, cause } => {
                    self.cache.apply(op, cause, &mut self.facts);
                    self.record_facts(node);
                }
                // The listener's own DB transaction, within its processing time.
                Command::Transact { txn, .. } => {
                    self.db.apply(&txn, &mut self.facts);
                    self.record_facts(node);
                }
                Command::Ack => {
                    ok = true;
                    self.consumers[c as usize].ack(record);
                }
                Command::External { call, cause } => {
                    let cause = cause.unwrap_or(record.value);
                    let effect = call.effect(cause, group);
                    self.history.push(now, node, effect);
                }
                // A workflow listener: its steps, then the acknowledgement, or its error
                // handler's turn when it threw.
                Command::Steps { handler } => {
                    if self.workflow_steps(c, handler, record) {
                        ok = true;
                        self.consumers[c as usize].ack(record);
                    } else {
                        thrown = true;
                    }
                }
                other => unreachable!("a listener emitted {other:?}"),
            }
        }
        self.consumers[c as usize].commands = commands;
        if thrown {
            return self.handler_failed(c, record, more);
        }
        if ok {
            self.stats.records_consumed += 1;
        }
        self.record(node, Op::Processed { group, record, ok });
        if more {
            self.start_processing(c);
        } else {
            self.batch_done(c);
        }
    }
    /// The listener threw on `record` before applying anything (a business failure). What
    /// happens next is the consuming strategy's defining property.
    fn handler_failed(&mut self, c: u16, record: Polled, more: bool) {
        let cons = &mut self.consumers[c as usize];
        let (node, group, strategy) = (cons.node, cons.group, cons.spec.commit_strategy);
        self.stats.handler_failures += 1;
        self.record(node, Op::Processed { group, record, ok: false });
        let cons = &mut self.consumers[c as usize];
        if strategy.retries_failures() {
            // Spring's DefaultErrorHandler: seek every partition of the unhandled records back to
            // its first one and redeliver, up to 10 attempts, then log and skip the record.
            let attempts = match cons.failures.iter_mut().find(|(tp, o, _)| *tp == record.tp && *o == record.offset) {
                Some((_, _, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    cons.failures.push((record.tp, record.offset, 1));
                    1
                }
            };
            let limit = match strategy {
                CommitStrategy::RetryThenDlq => cons.spec.retries.saturating_add(1),
                _ => DEFAULT_ERROR_HANDLER_ATTEMPTS,
            };
            if attempts < limit {
                let App::Processing { next } = cons.app else { unreachable!("a record was being processed") };
                let mut seeks: Vec<(Tp, u64)> = Vec::new();
                for (p, _) in &cons.batch[next - 1..] {
                    if !seeks.iter().any(|(tp, _)| *tp == p.tp) {
                        seeks.push((p.tp, p.offset));
                    }
                }
                for &(tp, offset) in &seeks {
                    cons.positions.insert(tp, offset);
                    cons.fetch_positions.insert(tp, offset);
                }
                cons.buffer.retain(|(tp, _, _)| !seeks.iter().any(|(t, _)| t == tp));
                return self.batch_done(c);
            }
            cons.failures.retain(|(tp, o, _)| !(*tp == record.tp && *o == record.offset));
            if let Some((producer, topic)) = cons.dlq {
                // Out of retries: publish the record to the dead-letter topic and wait for the
                // acknowledgement before committing past it.
                let App::Processing { next } = cons.app else { unreachable!("a record was being processed") };
                let message = cons.batch[next - 1].1;
                let token = cons.next_dead_letter;
                cons.next_dead_letter += 1;
                cons.dead_letter = Some((token, record));
                cons.app = App::DeadLettering { more };
                self.producer_send(producer, topic, message, token);
                return;
            }
            // The error handler's recoverer logs the record and gives up on it; with Spring's
            // `ackAfterHandle` (the default) the container commits its offset, so the group
            // moves past it even when nothing follows it.
            let cons = &mut self.consumers[c as usize];
            cons.ack(record);
        }
        // Otherwise the record is not acknowledged and the batch goes on: auto-commit and
        // ack-skips-failures commit past it, commit-before-process already did.
        if more {
            self.start_processing(c);
        } else {
            self.batch_done(c);
        }
    }

    /// The dead-letter publisher's delivery report: on success the record counts as handled
    /// (acknowledged, committed past) and the batch goes on; on failure it is redelivered.
    pub(crate) fn dead_letter_delivered(&mut self, c: u16, token: u64, to: Tp, result: Result<Option<u64>, ErrorCode>) {
        let cons = &mut self.consumers[c as usize];
        let (Some((expected, record)), App::DeadLettering { more }) = (cons.dead_letter, &cons.app) else { return };
        if expected != token {
            return;
        }
        let more = *more;
        cons.dead_letter = None;
        if let Ok(offset) = result {
            let (node, group) = (cons.node, cons.group);
            self.record(node, Op::DeadLettered { group, record: Box::new(record), to, offset });
            let cons = &mut self.consumers[c as usize];
            cons.ack(record);
            cons.app = App::Processing { next: cons.batch.iter().position(|(p, _)| *p == record).map_or(0, |i| i + 1) };
            return if more { self.start_processing(c) } else { self.batch_done(c) };
        }
        // The recoverer failed: seek back to the record so that it is delivered (and dead-lettered) again.
        cons.positions.insert(record.tp, record.offset);
        cons.fetch_positions.insert(record.tp, record.offset);
        cons.buffer.retain(|(tp, _, _)| *tp != record.tp);
        self.batch_done(c);
    }

    pub(super) fn batch_done(&mut self, c: u16) {
        let cons = &mut self.consumers[c as usize];
        let commits_after = cons.spec.commit_strategy.commits_after_batch();
        if commits_after && !cons.acked.is_empty() {
            let mut offsets = std::mem::take(&mut cons.acked);
            offsets.sort_unstable();
            cons.app = App::Committing;
            self.send_commit(c, offsets, CommitKind::AfterBatch);
        } else {
            cons.acked.clear();
            self.next_poll(c);
        }
    }

    /// The container goes back to `poll()`: at once, or after its pause between polls (a
    /// scheduled consumer such as the waiting queue's activator).
    pub(super) fn next_poll(&mut self, c: u16) {
        let cons = &mut self.consumers[c as usize];
        let pause = cons.spec.pause_between_polls_ms * 1_000;
        if pause == 0 {
            return self.app_poll(c);
        }
        cons.app = App::Paused;
        let at = self.now() + pause;
        self.q.schedule_at(at, Ev::ResumePoll { consumer: c });
    }

    pub(crate) fn resume_poll(&mut self, c: u16) {
        if matches!(self.consumers[c as usize].app, App::Paused) {
            self.app_poll(c);
        }
    }
    pub(super) fn send_commit(&mut self, c: u16, offsets: Vec<(Tp, u64)>, kind: CommitKind) {
        let now = self.now();
        let cons = &mut self.consumers[c as usize];
        let id = cons.next_commit;
        cons.next_commit += 1;
        let deadline = now + cons.spec.consumer.default_api_timeout_ms * 1_000;
        cons.commits.insert(id, PendingCommit { kind, offsets, deadline, attempt: 0, in_flight: false });
        self.transmit_commit(c, id);
    }

    /// Send commit `id` (again) with the member's current generation, or fail it at once if the
    /// member is not in an active generation.
    fn transmit_commit(&mut self, c: u16, id: u64) {
        let cons = &mut self.consumers[c as usize];
        let group = cons.group.0;
        let Some(pending) = cons.commits.get_mut(&id) else { return };
        pending.attempt += 1;
        match (&cons.member_id, cons.membership) {
            (Some(member_id), Membership::Stable | Membership::PreparingJoin | Membership::AwaitingOffsets) => {
                let req = CoordinatorRequest::OffsetCommit {
                    group,
                    consumer: c,
                    member_id: member_id.clone(),
                    generation: cons.generation,
                    offsets: pending.offsets.clone(),
                    commit: id,
                };
                self.send_to_coordinator(c, req);
            }
            // Not a member of an active generation: the client fails the commit itself
            // (CommitFailedException / RebalanceInProgressException), nothing is sent.
            (_, _) => {
                let generation = cons.generation;
                let error = cons.local_commit_error();
                self.commit_done(c, id, generation, Some(error), true);
            }
        }
    }

    /// A synchronous commit tries again after a retriable error.
    pub(crate) fn commit_retry(&mut self, c: u16, id: u64) {
        if self.consumers[c as usize].commits.contains_key(&id) {
            self.transmit_commit(c, id);
        }
    }
    /// A commit finished: record it, react to fencing, and continue what waited for it. A
    /// `local` failure never left the client (not a member of an active generation).
    pub(super) fn commit_done(&mut self, c: u16, id: u64, generation: i32, error: Option<ErrorCode>, local: bool) {
        let now = self.now();
        let cons = &mut self.consumers[c as usize];
        let Some(pending) = cons.commits.get_mut(&id) else { return };
        pending.in_flight = false;
        let backoff = cons.spec.consumer.retry_backoff_ms * 1_000;
        if let Some(e) = error
            && !local
            && pending.kind.synchronous()
            && super::coordinator_error(e)
            && now + backoff < pending.deadline
        {
            // `commitSync` retries a retriable error (the coordinator moved or did not answer)
            // until `default.api.timeout.ms`.
            self.q.schedule_at(now + backoff, Ev::CommitRetry { consumer: c, commit: id });
            return;
        }
        let PendingCommit { kind, offsets, .. } = cons.commits.remove(&id).expect("checked");
        let (node, group) = (cons.node, cons.group);
        match error {
            None => self.stats.commits_ok += 1,
            Some(e) => {
                self.stats.commits_failed += 1;
                let cons = &mut self.consumers[c as usize];
                match e {
                    _ if local => {}
                    ErrorCode::IllegalGeneration | ErrorCode::UnknownMemberId if cons.generation == generation => {
                        self.lose_partitions(c, e == ErrorCode::UnknownMemberId)
                    }
                    // The coordinator is completing a rebalance: rejoin, keep the generation.
                    ErrorCode::RebalanceInProgress => cons.rejoin_needed = true,
                    _ => {}
                }
            }
        }
        self.record(node, Op::Commit { group, generation, offsets, error });
        match kind {
            CommitKind::AfterBatch => self.next_poll(c),
            CommitKind::Auto => self.poll_step(c),
            CommitKind::Background => {}
            CommitKind::BeforeProcess => {
                let cons = &mut self.consumers[c as usize];
                if error.is_none() && matches!(cons.app, App::Committing) {
                    cons.app = App::Processing { next: 0 };
                    self.start_processing(c);
                } else {
                    // The commit failed (the group is rebalancing): the batch is dropped unhandled
                    // and the loop polls again.
                    self.app_poll(c);
                }
            }
            CommitKind::BeforeJoin => {
                if self.consumers[c as usize].membership == Membership::PreparingJoin {
                    self.do_join(c);
                } else {
                    // Fenced meanwhile: the join starts over from poll().
                    self.poll_step(c);
                }
            }
        }
    }
    /// The heartbeat thread's check of `max.poll.interval.ms`: no `poll()` for that long means
    /// the application is stuck or slow, and the consumer leaves the group.
    pub(crate) fn poll_interval_check(&mut self, c: u16) {
        let now = self.now();
        let cons = &mut self.consumers[c as usize];
        let interval = cons.spec.consumer.max_poll_interval_ms * 1_000;
        // Inside poll() the timer keeps being reset; outside, it runs from the last return.
        if matches!(cons.app, App::InPoll) || now < cons.last_poll + interval {
            let from = if matches!(cons.app, App::InPoll) { now } else { cons.last_poll };
            self.q.schedule_at(from + interval, Ev::PollIntervalCheck { consumer: c });
            return;
        }
        cons.poll_check_armed = false;
        if cons.member_id.is_none() {
            return;
        }
        let member_id = cons.member_id.clone().expect("checked");
        let group = cons.group;
        let node = cons.node;
        cons.reset_generation(true);
        self.record(node, Op::LeftGroup { group, reason: LeaveReason::PollTimeout });
        self.send_to_coordinator(c, CoordinatorRequest::LeaveGroup { group: group.0, member_id });
    }
}
