//! From a scenario's `kind = "..."` to the actor that runs: one place that both drivers (the
//! simulator, the real Kafka runner) use, so the same kind always means the same code.

use crate::actor::{Command, Input, Listener, Service};
use crate::coupon::{CouponApi, CouponIssuer};
use crate::event::Message;
use crate::history::{Micros, Polled, TopicId};
use crate::order::{FanOut, FanOutConsumer, OrderEventConsumer, OrderService};
use crate::payment::{PaymentEventConsumer, PaymentService};
use crate::publish::{OutboxMarker, Publishing};
use crate::queue::{TokenActivator, WaitingQueueApi};
use crate::scenario::{ListenerKind, ServiceKind, ServiceSpec};

/// Any service a scenario can run.
#[derive(Debug)]
pub enum AnyService {
    Order(OrderService),
    Payment(PaymentService),
    CouponApi(CouponApi),
    WaitingQueue(WaitingQueueApi),
    /// A workflow file's service (issue 15).
    Workflow(crate::workflow::service::WorkflowService),
}

impl AnyService {
    /// The service a `[services.*]` table describes, publishing to `topic`.
    pub fn new(spec: &ServiceSpec, topic: TopicId) -> Self {
        match spec.kind {
            ServiceKind::OrderService => AnyService::Order(OrderService::new(topic, publishing(spec))),
            ServiceKind::PaymentService => {
                AnyService::Payment(PaymentService::new(topic, publishing(spec), spec.compensation))
            }
            ServiceKind::CouponApi => AnyService::CouponApi(CouponApi::new(topic, spec.dedup)),
            ServiceKind::WaitingQueueApi => AnyService::WaitingQueue(WaitingQueueApi::new(topic)),
            ServiceKind::Workflow => Self::workflow(spec, topic),
        }
    }

    /// The compiled-in service of `kind`: not an instance that runs a workflow's requests in
    /// its place (a test may set a workflow on a scenario whose tables still name kinds).
    pub fn is_compiled_in(&self, kind: ServiceKind, its_kind: ServiceKind) -> bool {
        its_kind == kind && !matches!(self, AnyService::Workflow(_))
    }

    /// The instance of a `[services.*]` table that runs a workflow's requests instead.
    pub fn workflow(spec: &ServiceSpec, topic: TopicId) -> Self {
        AnyService::Workflow(crate::workflow::service::WorkflowService::new(topic, publishing(spec)))
    }
}

impl Service for AnyService {
    fn on_input(&mut self, now: Micros, input: Input, out: &mut Vec<Command>) {
        match self {
            AnyService::Order(s) => s.on_input(now, input, out),
            AnyService::Payment(s) => s.on_input(now, input, out),
            AnyService::CouponApi(s) => s.on_input(now, input, out),
            AnyService::WaitingQueue(s) => s.on_input(now, input, out),
            AnyService::Workflow(s) => s.on_input(now, input, out),
        }
    }
}

/// A service table's publishing settings.
pub fn publishing(spec: &ServiceSpec) -> Publishing {
    Publishing {
        strategy: spec.publish,
        async_delay_us: spec.async_delay_us,
        outbox_scan_us: spec.outbox_scan_ms * 1_000,
        outbox_retry_after_us: spec.outbox_retry_after_ms * 1_000,
    }
}

/// Any listener a scenario can run.
#[derive(Debug)]
pub enum AnyListener {
    OrderEventConsumer(OrderEventConsumer),
    PaymentEventConsumer(PaymentEventConsumer),
    CouponIssuer(CouponIssuer),
    OutboxMarker(OutboxMarker),
    FanOut(FanOutConsumer),
    TokenActivator(TokenActivator),
    /// A workflow file's listener (issue 15).
    Workflow(crate::workflow::service::WorkflowListener),
}

impl AnyListener {
    pub fn new(kind: ListenerKind) -> Self {
        match kind {
            ListenerKind::OrderEventConsumer => AnyListener::OrderEventConsumer(OrderEventConsumer),
            ListenerKind::PaymentEventConsumer => AnyListener::PaymentEventConsumer(PaymentEventConsumer),
            ListenerKind::CouponIssuer => AnyListener::CouponIssuer(CouponIssuer),
            ListenerKind::OutboxMarker => AnyListener::OutboxMarker(OutboxMarker),
            ListenerKind::PointConsumer => AnyListener::FanOut(FanOutConsumer(FanOut::Points)),
            ListenerKind::CouponUseConsumer => AnyListener::FanOut(FanOutConsumer(FanOut::CouponUse)),
            ListenerKind::EmailConsumer => AnyListener::FanOut(FanOutConsumer(FanOut::Email)),
            ListenerKind::TokenActivator => AnyListener::TokenActivator(TokenActivator),
            // Validation gives this kind only to a group the workflow has a listener for, and the
            // drivers build those from the workflow's handler (`AnyListener::Workflow`).
            ListenerKind::Workflow => unreachable!("a workflow listener's group is built with its handler"),
        }
    }
}

impl Listener for AnyListener {
    fn on_record(&mut self, now: Micros, record: &Polled, message: &Message, out: &mut Vec<Command>) {
        match self {
            AnyListener::OrderEventConsumer(l) => l.on_record(now, record, message, out),
            AnyListener::PaymentEventConsumer(l) => l.on_record(now, record, message, out),
            AnyListener::CouponIssuer(l) => l.on_record(now, record, message, out),
            AnyListener::OutboxMarker(l) => l.on_record(now, record, message, out),
            AnyListener::FanOut(l) => l.on_record(now, record, message, out),
            AnyListener::TokenActivator(l) => l.on_record(now, record, message, out),
            AnyListener::Workflow(l) => l.on_record(now, record, message, out),
        }
    }
}
