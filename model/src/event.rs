//! Business events and the records that carry them.

use crate::history::{EventId, EventInfo, EventKind};
use serde::{Deserialize, Serialize};

/// The compiled-in services' event kinds, in the order [`builtin_events`] declares them.
pub const ORDER_CREATED: EventKind = EventKind(0);
pub const PAYMENT_COMPLETED: EventKind = EventKind(1);
pub const COUPON_ISSUE_REQUEST: EventKind = EventKind(2);
pub const WAITING_TOKEN: EventKind = EventKind(3);

/// The history header's declaration of the compiled-in services' event kinds.
pub fn builtin_events() -> Vec<EventInfo> {
    let e = |name: &str, subject: &str, announces_fact, depends_on| EventInfo {
        name: name.to_string(),
        subject: subject.to_string(),
        announces_fact,
        depends_on,
    };
    vec![
        // `OrderCreatedEvent` (seed 001), subject = order id.
        e("order-created", "order", true, None),
        // `PaymentCompletedEvent` (seed 001): its effects depend on its order's.
        e("payment-completed", "order", true, Some(ORDER_CREATED)),
        // A first-come-first-served coupon request (seeds 002, 003): no transaction behind it.
        e("coupon-issue-request", "request", false, None),
        // A waiting-queue entry token (seed 002).
        e("waiting-token", "token", false, None),
    ]
}

/// A business event as it travels in a record's value.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// `OrderCreatedEvent` (seed 001): published after the order transaction commits.
    OrderCreated { order: u64, user: u64, product: u32, qty: u32 },
    /// `PaymentCompletedEvent` (seed 001): published after the payment transaction commits.
    PaymentCompleted { order: u64, user: u64, amount: i64 },
    /// A first-come-first-served coupon request (seeds 002, 003), key = couponId.
    CouponIssueRequest { request: u64, coupon: u32, user: u64 },
    /// A waiting-queue entry token (seed 002), key = concertId.
    WaitingToken { token: u64, concert: u32, user: u64 },
    /// An event a workflow file declares: its identity only; the driver keeps its fields'
    /// values by this id.
    Declared { id: EventId },
}

impl Event {
    /// The event's identity (one business fact, one id).
    pub fn id(&self) -> EventId {
        match *self {
            Event::OrderCreated { order, .. } => EventId::order_created(order),
            Event::PaymentCompleted { order, .. } => EventId::payment_completed(order),
            Event::CouponIssueRequest { request, .. } => EventId::coupon_issue_request(request),
            Event::WaitingToken { token, .. } => EventId::waiting_token(token),
            Event::Declared { id } => id,
        }
    }
}

/// A record's key and value. Keys are numeric ids, serialised as decimal strings on the wire
/// (Kafka's `StringSerializer` on `orderId.toString()`), which is what the partitioner hashes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub key: Option<u64>,
    pub value: Event,
}
