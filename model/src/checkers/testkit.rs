//! A small builder for hand-built histories, for the checkers' tests.
//!
//! The header is fixed and small: two topics (`order-created` with 2 partitions, `payments`
//! with 1), two groups that both subscribe to `order-created` (`ranking`, `cart`), and a handful
//! of named nodes. Every method appends one entry (time advancing by 1 ms per entry) and returns
//! its index, so that tests can assert that a violation points at exactly the right entries.

use crate::history::{
    EventId, GroupId, GroupInfo, Header, History, LeaveReason, NodeId, Op, Polled, TopicId, TopicInfo, Tp,
};

pub(crate) const ORDERS: TopicId = TopicId(0);
pub(crate) const PAYMENTS: TopicId = TopicId(1);

pub(crate) const RANKING: GroupId = GroupId(0);
pub(crate) const CART: GroupId = GroupId(1);

pub(crate) const WORKLOAD: NodeId = NodeId(0);
pub(crate) const SERVICE: NodeId = NodeId(1);
/// `ranking-0`, a consumer of group `ranking`.
pub(crate) const R0: NodeId = NodeId(2);
/// `ranking-1`, a consumer of group `ranking`.
pub(crate) const R1: NodeId = NodeId(3);
/// `cart-0`, a consumer of group `cart`.
pub(crate) const C0: NodeId = NodeId(4);

/// `order-created-<partition>`.
pub(crate) fn orders(partition: u32) -> Tp {
    Tp { topic: ORDERS, partition }
}

/// `payments-<partition>`.
pub(crate) fn payments(partition: u32) -> Tp {
    Tp { topic: PAYMENTS, partition }
}

/// The `order-created` event of `order`.
pub(crate) fn ev(order: u64) -> EventId {
    EventId::order_created(order)
}

/// A polled record at `tp@offset` with key `key` carrying `order-created(order)`.
pub(crate) fn rec(tp: Tp, offset: u64, key: u64, order: u64) -> Polled {
    Polled { tp, offset, key: Some(key), value: ev(order) }
}

pub(crate) struct HistoryBuilder {
    h: History,
    time: u64,
}

impl HistoryBuilder {
    /// The standard header: topics `order-created` (2 partitions) and `payments` (1); groups
    /// `ranking` and `cart`, both subscribed to `order-created`.
    pub(crate) fn new() -> Self {
        Self::with_groups(&[("ranking", &[ORDERS]), ("cart", &[ORDERS])])
    }

    /// The standard topics and nodes, with these groups (name, subscribed topics).
    pub(crate) fn with_groups(groups: &[(&str, &[TopicId])]) -> Self {
        let header = Header {
            scenario: "test".to_string(),
            seed: 1,
            nodes: ["workload", "order-service-0", "ranking-0", "ranking-1", "cart-0"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            topics: vec![
                TopicInfo { name: "order-created".to_string(), partitions: 2 },
                TopicInfo { name: "payments".to_string(), partitions: 1 },
            ],
            groups: groups
                .iter()
                .map(|(name, topics)| GroupInfo { name: name.to_string(), topics: topics.to_vec(), effect_once: true })
                .collect(),
            events: crate::event::builtin_events(),
            handlers: Vec::new(),
            invariants: Vec::new(),
            quiet_from: 0,
            end: 0,
        };
        Self { h: History::new(header), time: 0 }
    }

    /// Appends `op` done by `node`; returns its index.
    pub(crate) fn op(&mut self, node: NodeId, op: Op) -> usize {
        self.time += 1_000;
        self.h.push(self.time, node, op);
        self.h.entries.len() - 1
    }

    pub(crate) fn stock_initialised(&mut self, product: u32, stock: i64) -> usize {
        self.op(WORKLOAD, Op::StockInitialised { product, stock })
    }

    pub(crate) fn stock_final(&mut self, product: u32, stock: i64) -> usize {
        self.op(WORKLOAD, Op::StockFinal { product, stock })
    }

    /// Order `order` (user = order id) of `qty` x `product` committed, writing `stock_after`.
    pub(crate) fn order_committed(&mut self, order: u64, product: u32, qty: u32, stock_after: i64) -> usize {
        self.op(SERVICE, Op::OrderCommitted { order, user: order, product, qty, stock_after })
    }

    pub(crate) fn order_rejected(&mut self, order: u64, product: u32, qty: u32, stock: i64) -> usize {
        self.op(SERVICE, Op::OrderRejected { order, product, qty, stock })
    }

    /// `order-service-0` sends `order-created(order)` with `key` to `tp`.
    pub(crate) fn send(&mut self, tp: Tp, key: Option<u64>, order: u64) -> usize {
        self.op(SERVICE, Op::Send { tp, key, value: ev(order) })
    }

    pub(crate) fn send_ok(&mut self, tp: Tp, key: Option<u64>, order: u64, offset: Option<u64>) -> usize {
        self.op(SERVICE, Op::SendOk { tp, key, value: ev(order), offset })
    }

    pub(crate) fn send_failed(&mut self, tp: Tp, key: Option<u64>, order: u64) -> usize {
        self.op(SERVICE, Op::SendFailed { tp, key, value: ev(order), error: crate::history::ErrorCode::MsgTimedOut })
    }

    /// A send of `order-created(order)` keyed by the order id, acknowledged at `offset`:
    /// returns (send, send-ok).
    pub(crate) fn produce(&mut self, tp: Tp, order: u64, offset: u64) -> (usize, usize) {
        let s = self.send(tp, Some(order), order);
        let ok = self.send_ok(tp, Some(order), order, Some(offset));
        (s, ok)
    }

    pub(crate) fn poll(&mut self, node: NodeId, group: GroupId, records: &[Polled]) -> usize {
        self.op(node, Op::Poll { group, records: records.to_vec() })
    }

    pub(crate) fn processed(&mut self, node: NodeId, group: GroupId, record: Polled, ok: bool) -> usize {
        self.op(node, Op::Processed { group, record, ok })
    }

    /// A poll of these records followed by a successful `Processed` of each; returns the poll.
    pub(crate) fn consume(&mut self, node: NodeId, group: GroupId, records: &[Polled]) -> usize {
        let p = self.poll(node, group, records);
        for r in records {
            self.processed(node, group, *r, true);
        }
        p
    }

    pub(crate) fn assigned(&mut self, node: NodeId, group: GroupId, partitions: &[Tp]) -> usize {
        self.op(node, Op::Assigned { group, generation: 1, partitions: partitions.to_vec() })
    }

    pub(crate) fn revoked(&mut self, node: NodeId, group: GroupId, partitions: &[Tp]) -> usize {
        self.op(node, Op::Revoked { group, partitions: partitions.to_vec() })
    }

    pub(crate) fn left(&mut self, node: NodeId, group: GroupId) -> usize {
        self.op(node, Op::LeftGroup { group, reason: LeaveReason::PollTimeout })
    }

    /// Orders 7 and 8 on partition 0, consumed by cart; ranking's handler fails on order 7,
    /// handles order 8 and commits past both. Returns (7's send, its acknowledgement, ranking's
    /// poll, the failed attempt, the commit past it).
    pub(crate) fn skipped_after_a_failure(&mut self) -> (usize, usize, usize, usize, usize) {
        let (send, ok) = self.produce(orders(0), 7, 0);
        self.produce(orders(0), 8, 1);
        let both = [rec(orders(0), 0, 7, 7), rec(orders(0), 1, 8, 8)];
        self.consume(C0, CART, &both);
        let poll = self.poll(R0, RANKING, &both);
        let failed = self.processed(R0, RANKING, both[0], false);
        self.processed(R0, RANKING, both[1], true);
        let commit =
            self.op(R0, Op::Commit { group: RANKING, generation: 1, offsets: vec![(orders(0), 2)], error: None });
        (send, ok, poll, failed, commit)
    }

    pub(crate) fn build(mut self) -> History {
        self.h.header.quiet_from = self.time;
        self.h.header.end = self.time + 1_000;
        self.h
    }
}
