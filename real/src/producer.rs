//! The services' producers on librdkafka: `producer.send()` with its delivery report recorded in
//! the history, the predicted partition checked against the one librdkafka chose, and the
//! producer configuration from a scenario's `[services.*.producer]` table.

use crate::RealError;
use crate::driver::{Core, Ctx, service_input};
use evsim_model::actor::{Input, Token};
use evsim_model::event::Message;
use evsim_model::history::{ErrorCode, NodeId, Op, TopicId, Tp};
use evsim_model::scenario::{Acks, Partitioner, ProducerConfig, Scenario};
use evsim_sim::cluster::partitioner::partition_of_key;
use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;

/// The partition the scenario's partitioner gives `message` on `topic` (`None`: no key).
pub(crate) fn predicted_partition(
    scenario: &Scenario,
    partitioner: Partitioner,
    topic: TopicId,
    message: &Message,
) -> Option<u32> {
    let count = scenario.topics[topic.0 as usize].partitions;
    message.key.map(|k| partition_of_key(partitioner, k, count))
}

/// `producer.send()` and, later, its delivery report.
pub(crate) fn produce(ctx: &Ctx, s: u16, token: Token, topic: TopicId, message: Message) {
    let (producer, node, incarnation, partitioner) = {
        let core = ctx.core.borrow();
        let svc = &core.services[s as usize];
        let spec = &ctx.scenario.services[svc.spec as usize];
        (svc.producer.clone(), svc.node, svc.incarnation, spec.producer.partitioner)
    };
    let to = Sender { producer, node, partitioner };
    // The process that sent it is gone when the report comes: nobody hears it.
    let alive = move |core: &Core| core.services[s as usize].incarnation == incarnation;
    let ctx2 = ctx.clone();
    send_recorded(ctx, to, topic, message, alive, move |report| {
        service_input(&ctx2, s, Input::Delivered { token, result: report });
    });
}

/// Who sends a record: the producer, its process and the partitioner it is configured with.
pub(crate) struct Sender {
    pub producer: FutureProducer,
    pub node: NodeId,
    pub partitioner: Partitioner,
}

/// `producer.send()` by `to`, recorded (`Send`, then `SendOk` or `SendFailed` once the report
/// comes, if `alive` still holds), then `then` with the report.
pub(crate) fn send_recorded(
    ctx: &Ctx,
    to: Sender,
    topic: TopicId,
    message: Message,
    alive: impl Fn(&Core) -> bool + 'static,
    then: impl FnOnce(Result<Option<u64>, ErrorCode>) + 'static,
) {
    let Sender { producer, node, partitioner } = to;
    let ctx = ctx.clone();
    let topic_name = ctx.topic_name(topic).to_string();
    let predicted = predicted_partition(&ctx.scenario, partitioner, topic, &message);
    let value = message.value.id();
    if let Some(p) = predicted {
        ctx.record(node, Op::Send { tp: Tp { topic, partition: p }, key: message.key, value });
    }
    {
        let mut core = ctx.core.borrow_mut();
        core.stats.records_sent += 1;
        core.pending += 1;
    }
    tokio::task::spawn_local(async move {
        let result = send(&producer, &topic_name, &message).await;
        let mut guard = ctx.core.borrow_mut();
        let core = &mut *guard;
        core.pending -= 1;
        if !alive(core) {
            return;
        }
        let report = match result {
            Ok((partition, offset)) => {
                let tp = Tp { topic, partition };
                if predicted.is_none() {
                    ctx.record(node, Op::Send { tp, key: message.key, value });
                } else if predicted != Some(partition) {
                    core.placement_mismatches += 1;
                }
                ctx.record(node, Op::SendOk { tp, key: message.key, value, offset });
                core.stats.records_produced += 1;
                if let Some(o) = offset {
                    let h = core.high.entry(tp).or_default();
                    *h = (*h).max(o + 1);
                }
                Ok(offset)
            }
            Err(error) => {
                let tp = Tp { topic, partition: predicted.unwrap_or(0) };
                if predicted.is_none() {
                    ctx.record(node, Op::Send { tp, key: message.key, value });
                }
                ctx.record(node, Op::SendFailed { tp, key: message.key, value, error });
                core.stats.send_failures += 1;
                Err(error)
            }
        };
        drop(guard);
        then(report);
    });
}

/// Send one record and wait for its delivery report: (partition, offset) or the error.
pub(crate) async fn send(
    producer: &FutureProducer,
    topic: &str,
    message: &Message,
) -> Result<(u32, Option<u64>), ErrorCode> {
    let payload = serde_json::to_vec(&message.value).expect("events serialise");
    let key = message.key.map(|k| k.to_string());
    let mut record = FutureRecord::<String, Vec<u8>>::to(topic).payload(&payload);
    if let Some(k) = &key {
        record = record.key(k);
    }
    match producer.send(record, Timeout::Never).await {
        Ok(d) => Ok((d.partition as u32, (d.offset >= 0).then_some(d.offset as u64))),
        Err((e, _)) => Err(error_code(&e)),
    }
}

/// A librdkafka error as the history's error code.
pub(crate) fn error_code(e: &KafkaError) -> ErrorCode {
    let code = match e {
        KafkaError::MessageProduction(c) | KafkaError::ConsumerCommit(c) => *c,
        other => return ErrorCode::Other(other.rdkafka_error_code().map_or(-1, |c| c as i32)),
    };
    match code {
        RDKafkaErrorCode::MessageTimedOut => ErrorCode::MsgTimedOut,
        RDKafkaErrorCode::RequestTimedOut => ErrorCode::RequestTimedOut,
        RDKafkaErrorCode::NotEnoughReplicas | RDKafkaErrorCode::NotEnoughReplicasAfterAppend => {
            ErrorCode::NotEnoughReplicas
        }
        RDKafkaErrorCode::NotLeaderForPartition => ErrorCode::NotLeaderOrFollower,
        RDKafkaErrorCode::OutOfOrderSequenceNumber => ErrorCode::OutOfOrderSequenceNumber,
        RDKafkaErrorCode::InvalidProducerEpoch => ErrorCode::InvalidProducerEpoch,
        RDKafkaErrorCode::DuplicateSequenceNumber => ErrorCode::DuplicateSequenceNumber,
        RDKafkaErrorCode::IllegalGeneration => ErrorCode::IllegalGeneration,
        RDKafkaErrorCode::RebalanceInProgress => ErrorCode::RebalanceInProgress,
        RDKafkaErrorCode::UnknownMemberId => ErrorCode::UnknownMemberId,
        other => ErrorCode::Other(other as i32),
    }
}

/// The librdkafka producer for a `[services.*.producer]` table.
pub(crate) fn producer_for(bootstrap: &str, config: &ProducerConfig) -> Result<FutureProducer, RealError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set(
            "acks",
            match config.acks {
                Acks::None => "0",
                Acks::Leader => "1",
                Acks::All => "all",
            },
        )
        .set("enable.idempotence", config.enable_idempotence.to_string())
        .set("retries", config.retries.to_string())
        .set("linger.ms", config.linger_ms.to_string())
        .set("batch.size", config.batch_size.min(2_147_483_647).to_string())
        .set("max.in.flight.requests.per.connection", config.max_in_flight_requests_per_connection.to_string())
        .set("request.timeout.ms", config.request_timeout_ms.to_string())
        // The Java client fails an in-flight request after request.timeout.ms; librdkafka's
        // request.timeout.ms is only the broker's ack timeout, and its client-side one is
        // socket.timeout.ms (60 s by default). Without this, a request to a broker whose
        // machine died waits a minute, and the partition's leader is not looked up again.
        .set("socket.timeout.ms", config.request_timeout_ms.max(10).to_string())
        .set("delivery.timeout.ms", config.delivery_timeout_ms.to_string())
        .set("retry.backoff.ms", config.retry_backoff_ms.to_string())
        .set(
            "partitioner",
            match config.partitioner {
                Partitioner::Murmur2 => "murmur2_random",
                Partitioner::Crc32 => "consistent_random",
            },
        )
        .set("log_level", "3");
    crate::set_debug(&mut c);
    crate::set_connection(&mut c, &config.connection);
    c.create().map_err(|e| RealError::Environment(format!("cannot create a producer: {e}")))
}
