//! Business events and the records that carry them.

use crate::history::EventId;
use serde::{Deserialize, Serialize};

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
}

impl Event {
    /// The event's identity (one business fact, one id).
    pub fn id(&self) -> EventId {
        match *self {
            Event::OrderCreated { order, .. } => EventId::order_created(order),
            Event::PaymentCompleted { order, .. } => EventId::payment_completed(order),
            Event::CouponIssueRequest { request, .. } => EventId::coupon_issue_request(request),
            Event::WaitingToken { token, .. } => EventId::waiting_token(token),
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
