//! The simulated relational database (MySQL in the seeds): tables, atomic transactions, and
//! durability.
//!
//! A transaction is the body of a service's `@Transactional` method, named by a [`Txn`] value and
//! applied atomically: all its writes or none. Row locks are pessimistic (`SELECT ... FOR UPDATE`),
//! so two transactions on the same product serialise; the simulator applies each transaction at
//! the instant it commits, which is the serial order such locks produce. Committed state is durable:
//! a service crash loses only transactions not yet committed (the driver drops them).

use crate::event::Message;
use crate::history::{EventId, GroupId, Micros, Op, PaymentRejection};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// An order's status.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum OrderStatus {
    Pending,
    Paid,
    Cancelled,
}

/// An `orders` row.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRow {
    pub user: u64,
    pub product: u32,
    pub qty: u32,
    pub status: OrderStatus,
}

/// The database's tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Db {
    /// `products.stock`, by product id.
    pub stock: Vec<i64>,
    /// `orders`, by order id (ids are dense from 1, so a vector indexed by id is the table).
    pub orders: Vec<Option<OrderRow>>,
    /// `users.balance`, by user id.
    pub balances: Vec<i64>,
    /// Coupons: (quantity, issued so far), by coupon id.
    pub coupons: Vec<(u32, u32)>,
    /// `user_coupons` rows: (coupon, user), one per issued coupon (a set when the unique
    /// constraint exists; duplicates are counted in `duplicate_coupons` otherwise).
    pub user_coupons: BTreeSet<(u32, u64)>,
    /// Whether `user_coupons` has a unique constraint on (coupon_id, user_id).
    pub coupon_unique_constraint: bool,
    /// `outbox` rows: event -> (the event's record, inserted at, PUBLISHED?).
    pub outbox: BTreeMap<EventId, (Message, Micros, bool)>,
    /// Processed tables of idempotent consumers: (consumer group, event) already applied.
    pub processed: BTreeSet<(GroupId, EventId)>,
    /// Transactions committed and rolled back, for statistics.
    pub committed: u64,
    pub rolled_back: u64,
}

/// A transaction: the body of one `@Transactional` service method.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Txn {
    /// `OrderService.createOrder`: lock the product row, deduct the stock if there is enough,
    /// save the order PENDING.
    CreateOrder { order: u64, user: u64, product: u32, qty: u32 },
    /// `PaymentService.processPayment`: lock the order (it must be PENDING), deduct the balance
    /// under the user's row lock, mark the order PAID, insert the payment and shipping rows.
    Pay { order: u64, user: u64, amount: i64 },
    /// The compensation of a failed payment (`handlePaymentFailure`): restore the stock, cancel
    /// the order. (Coupons come with the coupon workflow.)
    CompensateOrder { order: u64 },
    /// The outbox's own consumer marks `event`'s row PUBLISHED.
    MarkOutboxPublished { event: EventId },
    /// The coupon issuer: count the coupon's issued rows under its lock; insert the user's
    /// coupon if some are left (and, with the unique constraint, if the user has none).
    IssueCoupon { request: u64, coupon: u32, user: u64 },
    /// A workflow handler's transaction for input `id`: the driver runs it with the workflow
    /// executor (`crate::workflow::exec`), which owns the workflow's tables.
    Workflow { handler: u16, id: u64 },
}

/// Why a transaction rolled back.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rollback {
    InsufficientStock {
        product: u32,
        stock: i64,
    },
    UnknownProduct {
        product: u32,
    },
    /// `InsufficientBalanceException`.
    InsufficientBalance {
        balance: i64,
    },
    /// The order is missing or not PENDING.
    OrderNotPending,
    CouponSoldOut,
    /// The unique constraint on (coupon_id, user_id).
    DuplicateCoupon,
    /// The database could not be reached (a `db-unavailable` fault): nothing ran.
    Unavailable,
}

/// A transaction's result.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOutcome {
    Committed,
    RolledBack(Rollback),
}

impl Db {
    /// A database with `products` products of `stock` units each.
    pub fn with_products(products: u32, stock: i64) -> Self {
        Self { stock: vec![stock; products as usize], ..Self::default() }
    }

    fn pay(&mut self, order: u64, user: u64, amount: i64, facts: &mut Vec<Op>) -> TxnOutcome {
        let reject = |reason| Op::PaymentRejected { order, user, amount, reason };
        let pending = self.order(order).is_some_and(|o| o.status == OrderStatus::Pending);
        if !pending {
            facts.push(reject(PaymentRejection::OrderNotPending));
            return TxnOutcome::RolledBack(Rollback::OrderNotPending);
        }
        let balance = self.balances.get(user as usize).copied().unwrap_or(0);
        if balance < amount {
            facts.push(reject(PaymentRejection::InsufficientBalance { balance }));
            return TxnOutcome::RolledBack(Rollback::InsufficientBalance { balance });
        }
        self.balances[user as usize] = balance - amount;
        if let Some(Some(row)) = self.orders.get_mut(order as usize) {
            row.status = OrderStatus::Paid;
        }
        facts.push(Op::PaymentCommitted { order, user, amount, balance_after: balance - amount });
        TxnOutcome::Committed
    }

    fn issue_coupon(&mut self, request: u64, coupon: u32, user: u64, facts: &mut Vec<Op>) -> TxnOutcome {
        let Some((quantity, issued)) = self.coupons.get_mut(coupon as usize) else {
            facts.push(Op::CouponNotIssued { request, coupon, user, sold_out: true });
            return TxnOutcome::RolledBack(Rollback::CouponSoldOut);
        };
        if *issued >= *quantity {
            facts.push(Op::CouponNotIssued { request, coupon, user, sold_out: true });
            return TxnOutcome::RolledBack(Rollback::CouponSoldOut);
        }
        if self.coupon_unique_constraint && self.user_coupons.contains(&(coupon, user)) {
            facts.push(Op::CouponNotIssued { request, coupon, user, sold_out: false });
            return TxnOutcome::RolledBack(Rollback::DuplicateCoupon);
        }
        *issued += 1;
        let issued = *issued;
        self.user_coupons.insert((coupon, user));
        facts.push(Op::CouponIssued { request, coupon, user, issued });
        TxnOutcome::Committed
    }

    fn compensate(&mut self, order: u64, facts: &mut Vec<Op>) -> TxnOutcome {
        let Some(Some(row)) = self.orders.get_mut(order as usize) else {
            return TxnOutcome::RolledBack(Rollback::OrderNotPending);
        };
        if row.status != OrderStatus::Pending {
            return TxnOutcome::RolledBack(Rollback::OrderNotPending);
        }
        row.status = OrderStatus::Cancelled;
        let (product, qty) = (row.product, row.qty);
        let stock = &mut self.stock[product as usize];
        *stock += i64::from(qty);
        facts.push(Op::OrderCancelled { order, product, qty, stock_after: *stock });
        TxnOutcome::Committed
    }

    /// Insert `message`'s outbox row (INIT), as part of a transaction that committed at `now`.
    pub fn insert_outbox(&mut self, message: Message, now: Micros, facts: &mut Vec<Op>) {
        let event = message.value.id();
        self.outbox.insert(event, (message, now, false));
        facts.push(Op::OutboxInserted { event });
    }

    /// The events of outbox rows still INIT and inserted at or before `before`, in event order.
    pub fn due_outbox(&self, before: Micros) -> Vec<Message> {
        self.outbox.values().filter(|(_, at, published)| !published && *at <= before).map(|(m, _, _)| *m).collect()
    }

    /// Insert `event` into `group`'s processed table; false when it is already there (a
    /// redelivery). Durable like every committed row.
    pub fn mark_processed(&mut self, group: GroupId, event: EventId) -> bool {
        self.processed.insert((group, event))
    }

    /// The `orders` row of `order`, if it exists.
    pub fn order(&self, order: u64) -> Option<OrderRow> {
        self.orders.get(order as usize).copied().flatten()
    }

    /// Apply `txn` atomically: all its writes or none. The facts it establishes (the history's
    /// domain entries) are pushed to `facts`; a rollback is a fact too, so a history shows every
    /// decision the DB took.
    pub fn apply(&mut self, txn: &Txn, facts: &mut Vec<Op>) -> TxnOutcome {
        let outcome = match *txn {
            Txn::CreateOrder { order, user, product, qty } => match self.stock.get_mut(product as usize) {
                None => TxnOutcome::RolledBack(Rollback::UnknownProduct { product }),
                Some(stock) if *stock < i64::from(qty) => {
                    facts.push(Op::OrderRejected { order, product, qty, stock: *stock });
                    TxnOutcome::RolledBack(Rollback::InsufficientStock { product, stock: *stock })
                }
                Some(stock) => {
                    *stock -= i64::from(qty);
                    let stock_after = *stock;
                    let i = order as usize;
                    if self.orders.len() <= i {
                        self.orders.resize(i + 1, None);
                    }
                    self.orders[i] = Some(OrderRow { user, product, qty, status: OrderStatus::Pending });
                    facts.push(Op::OrderCommitted { order, user, product, qty, stock_after });
                    TxnOutcome::Committed
                }
            },
            Txn::Pay { order, user, amount } => self.pay(order, user, amount, facts),
            Txn::CompensateOrder { order } => self.compensate(order, facts),
            Txn::IssueCoupon { request, coupon, user } => self.issue_coupon(request, coupon, user, facts),
            Txn::Workflow { .. } => unreachable!("a workflow's transaction runs in the workflow executor, not here"),
            Txn::MarkOutboxPublished { event } => {
                if let Some(row) = self.outbox.get_mut(&event)
                    && !row.2
                {
                    row.2 = true;
                    facts.push(Op::OutboxMarked { event });
                }
                TxnOutcome::Committed
            }
        };
        match outcome {
            TxnOutcome::Committed => self.committed += 1,
            TxnOutcome::RolledBack(_) => self.rolled_back += 1,
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_order_deducts_stock_or_rolls_back_whole() {
        let mut db = Db::with_products(2, 5);
        let mut facts = Vec::new();
        let t = Txn::CreateOrder { order: 1, user: 9, product: 1, qty: 4 };
        assert_eq!(db.apply(&t, &mut facts), TxnOutcome::Committed);
        assert_eq!(db.stock, vec![5, 1]);
        assert_eq!(db.order(1).map(|o| o.status), Some(OrderStatus::Pending));
        let t2 = Txn::CreateOrder { order: 2, user: 9, product: 1, qty: 2 };
        assert_eq!(
            db.apply(&t2, &mut facts),
            TxnOutcome::RolledBack(Rollback::InsufficientStock { product: 1, stock: 1 })
        );
        assert_eq!(db.stock, vec![5, 1], "a rolled-back transaction writes nothing");
        assert_eq!(db.order(2), None);
        assert_eq!(facts.len(), 2);
        assert!(matches!(facts[0], Op::OrderCommitted { order: 1, stock_after: 1, .. }));
        assert!(matches!(facts[1], Op::OrderRejected { order: 2, stock: 1, .. }));
    }
}
