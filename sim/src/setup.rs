//! What both drivers share about a run's start: the initial DB, the entries that record it, and
//! the workload's requests. The simulator and the real Kafka runner call the same functions with
//! the same seed, so a real run is given the very requests (and balances) a simulated run gets.

use crate::kernel::{Seeds, Stream};
use crate::workload::Workload;
use evsim_model::actor::Request;
use evsim_model::db::Db;
use evsim_model::history::{GroupId, Micros, Op};
use evsim_model::scenario::{CouponDedup, ListenerKind, Scenario, ServiceKind};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// The DB a run starts with: stock, balances (drawn from the business stream), coupons.
pub fn initial_db(scenario: &Scenario, seed: u64) -> Db {
    let seeds = Seeds::new(seed);
    let mut db = Db::with_products(scenario.workload.products, scenario.workload.stock_per_product);
    if scenario.services.iter().any(|s| s.kind == ServiceKind::PaymentService) {
        let w = &scenario.workload;
        let mut business = seeds.stream(Stream::Business);
        db.balances =
            (0..w.users).map(|_| if business.chance(w.insufficient_balance_rate) { 0 } else { w.balance }).collect();
    }
    let apis: Vec<_> = scenario.services.iter().filter(|s| s.kind == ServiceKind::CouponApi).collect();
    if !apis.is_empty() {
        db.coupons = vec![(scenario.workload.coupon_quantity, 0); scenario.workload.coupons as usize];
        db.coupon_unique_constraint = apis.iter().any(|s| s.dedup == CouponDedup::DbUnique);
    }
    db
}

/// The entries that open a run's history (recorded by the workload at time 0): initial stock,
/// balances and coupons, and the rate limits the activator groups promise.
pub fn start_ops(scenario: &Scenario, db: &Db) -> Vec<Op> {
    let mut ops = Vec::new();
    for p in 0..scenario.workload.products {
        ops.push(Op::StockInitialised { product: p, stock: scenario.workload.stock_per_product });
    }
    for (user, &balance) in db.balances.iter().enumerate() {
        ops.push(Op::BalanceInitialised { user: user as u64, balance });
    }
    for (coupon, &(quantity, _)) in db.coupons.iter().enumerate() {
        ops.push(Op::CouponInitialised { coupon: coupon as u32, quantity });
    }
    for (g, spec) in scenario.consumers.iter().enumerate() {
        if spec.kind == ListenerKind::TokenActivator && spec.pause_between_polls_ms > 0 {
            ops.push(Op::QueueRateLimit {
                group: GroupId(g as u16),
                tokens: spec.consumer.max_poll_records,
                interval_us: spec.pause_between_polls_ms * 1_000,
            });
        }
    }
    ops
}

/// One client request of the workload and when it is sent. Payments are not planned: a client
/// pays `pay_after_ms` after its order was created, which only the run can tell.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    pub at: Micros,
    pub request: Request,
}

/// The workload's requests, in the order the simulator sends them, drawn from the workload stream
/// exactly as it draws them: each kind of request (orders, coupon requests, queue entries) keeps
/// its own Poisson clock, the earliest due draws next, and requests due at one microsecond keep
/// the simulator's event order. Only requests drawn before the quiet period.
pub fn plan_requests(scenario: &Scenario, seed: u64) -> Vec<Planned> {
    let seeds = Seeds::new(seed);
    let mut w = Workload::new(&scenario.workload, seeds.stream(Stream::Workload));
    let quiet_from = scenario.run.duration_ms * 1_000;
    let has = |k: ServiceKind| scenario.services.iter().any(|s| s.kind == k);
    // The simulator's workload events, replayed in its event queue's order: by time, and at one
    // microsecond in scheduling order. Each clock's event draws the request and schedules the
    // clock's next arrival; an order, a queue entry and a coupon request are sent by that event
    // (a coupon request's double click, 10 ms later, by an event of its own scheduled then).
    #[derive(Clone, Copy)]
    enum Due {
        Order,
        Queue,
        Coupon,
        Send(Request),
    }
    #[derive(Default)]
    struct Queue {
        heap: BinaryHeap<Reverse<(Micros, u64)>>,
        pending: BTreeMap<u64, Due>,
        seq: u64,
    }
    impl Queue {
        fn schedule(&mut self, at: Micros, due: Due) {
            self.seq += 1;
            self.heap.push(Reverse((at, self.seq)));
            self.pending.insert(self.seq, due);
        }
        fn pop(&mut self) -> Option<(Micros, Due)> {
            let Reverse((at, seq)) = self.heap.pop()?;
            self.pending.remove(&seq).map(|due| (at, due))
        }
    }
    let mut q = Queue::default();
    if scenario.workload.rate_per_sec > 0.0 {
        q.schedule(w.next_order_at(), Due::Order);
    }
    if scenario.workload.queue_rate_per_sec > 0.0 && has(ServiceKind::WaitingQueueApi) {
        q.schedule(w.next_queue_entry_at(), Due::Queue);
    }
    if scenario.workload.coupon_rate_per_sec > 0.0 && has(ServiceKind::CouponApi) {
        q.schedule(w.next_coupon_at(), Due::Coupon);
    }
    let mut out = Vec::new();
    while let Some((at, due)) = q.pop() {
        match due {
            Due::Send(request) => out.push(Planned { at, request }),
            _ if at >= quiet_from => {}
            Due::Order => {
                let (order, user, product, qty) = w.next_request();
                out.push(Planned { at, request: Request::CreateOrder { order, user, product, qty } });
                q.schedule(w.next_order_at(), Due::Order);
            }
            Due::Queue => {
                let (token, concert, user) = w.next_queue_entry();
                out.push(Planned { at, request: Request::EnterQueue { token, concert, user } });
                q.schedule(w.next_queue_entry_at(), Due::Queue);
            }
            Due::Coupon => {
                let (request, coupon, user, duplicate) = w.next_coupon_request();
                if let Some(again) = duplicate {
                    // A double click: the same request again, 10 ms later.
                    q.schedule(at + 10_000, Due::Send(Request::IssueCoupon { request: again, coupon, user }));
                }
                out.push(Planned { at, request: Request::IssueCoupon { request, coupon, user } });
                q.schedule(w.next_coupon_at(), Due::Coupon);
            }
        }
    }
    out
}
