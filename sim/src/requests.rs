//! The workload of a workflow file (issue 15): each declared request type is a Poisson stream
//! of requests with sequential ids, whose fields are drawn in the order the file writes them.
//!
//! It draws from the run's `workload` stream exactly as the compiled-in order workload does
//! (an arrival gap; at each arrival the fields, then the next gap), so seed 001's order
//! workflow written in the language gets the requests the Rust `OrderService` gets: the test
//! below holds the two side by side. Not yet driven by the simulator's event loop.

use crate::kernel::SimRng;
use evsim_model::history::Micros;
use evsim_model::workflow::expr::Value;
use evsim_model::workflow::{Draw, Workflow};

/// The cumulative weights of a Zipf law over `0..n` with exponent `s` (0 the hottest), with
/// libm's `pow` so that every platform draws the same values.
pub fn zipf_cdf(n: u64, s: f64) -> Vec<f64> {
    let mut acc = 0.0;
    let mut cdf: Vec<f64> = (1..=n)
        .map(|k| {
            acc += 1.0 / libm::pow(k as f64, s);
            acc
        })
        .collect();
    for w in &mut cdf {
        *w /= acc;
    }
    cdf
}

/// A value drawn from a cumulative weight table.
#[inline]
pub fn zipf_draw(rng: &mut SimRng, cdf: &[f64]) -> u64 {
    let u = rng.unit_f64();
    cdf.partition_point(|&c| c < u).min(cdf.len() - 1) as u64
}

/// How one field is drawn, with its Zipf table built once.
#[derive(Debug)]
enum Drawer {
    Uniform { lo: i64, hi: i64 },
    Zipf(Vec<f64>),
    Const(Value),
}

/// One request type's stream.
#[derive(Debug)]
struct Stream {
    mean_gap_us: f64,
    /// The arrival clock, exact (fractional microseconds).
    clock: f64,
    next_id: u64,
    fields: Vec<Drawer>,
    /// The probability of a double click (0: none, and nothing drawn for it).
    duplicate_rate: f64,
}

/// The requests of every declared request type, from one random stream.
#[derive(Debug)]
pub struct Requests {
    rng: SimRng,
    streams: Vec<Stream>,
}

impl Requests {
    pub fn new(wf: &Workflow, rng: SimRng) -> Self {
        let streams = wf
            .requests
            .iter()
            .map(|r| Stream {
                mean_gap_us: 1_000_000.0 / r.rate_per_sec,
                clock: 0.0,
                next_id: 1,
                duplicate_rate: r.duplicate.as_ref().map_or(0.0, |d| d.rate),
                fields: r
                    .fields
                    .iter()
                    .map(|(_, d)| match d {
                        Draw::Uniform { lo, hi } => Drawer::Uniform { lo: *lo, hi: *hi },
                        Draw::Zipf { n, s } => Drawer::Zipf(zipf_cdf(*n, *s)),
                        Draw::Const(v) => Drawer::Const(*v),
                        // A follow-up's fields come from the request it follows; it has no
                        // arrivals of its own, so nothing is ever drawn for it.
                        Draw::Parent(..) => Drawer::Const(Value::Int(0)),
                    })
                    .collect(),
            })
            .collect();
        Self { rng, streams }
    }

    /// When request type `stream`'s next request arrives.
    pub fn next_at(&mut self, stream: usize) -> Micros {
        let s = &mut self.streams[stream];
        s.clock += self.rng.exponential(s.mean_gap_us);
        s.clock as Micros
    }

    /// Request type `stream`'s next request: its id and its fields' values, drawn in order, then
    /// whether the client sends it twice: the duplicate's id (the next one), if it does.
    pub fn next(&mut self, stream: usize) -> (u64, Vec<Value>, Option<u64>) {
        let mut values = Vec::new();
        let (id, duplicate) = self.next_into(stream, &mut values);
        (id, values, duplicate)
    }

    /// As [`Requests::next`], the fields' values put in `values` (cleared first).
    pub fn next_into(&mut self, stream: usize, values: &mut Vec<Value>) -> (u64, Option<u64>) {
        let s = &mut self.streams[stream];
        let id = s.next_id;
        s.next_id += 1;
        values.clear();
        values.extend(s.fields.iter().map(|d| match d {
            // The compiler keeps 0 <= lo <= hi (so the span fits); one draw, also when the
            // range holds one value.
            Drawer::Uniform { lo, hi } => Value::Int(lo + self.rng.below((hi - lo) as u64 + 1) as i64),
            Drawer::Zipf(cdf) => Value::Int(zipf_draw(&mut self.rng, cdf) as i64),
            Drawer::Const(v) => *v,
        }));
        let s = &mut self.streams[stream];
        let duplicate = (s.duplicate_rate > 0.0 && self.rng.chance(s.duplicate_rate)).then(|| {
            s.next_id += 1;
            s.next_id - 1
        });
        (id, duplicate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::{Seeds, Stream as RngStream};
    use crate::workload::Workload;
    use evsim_model::workflow::{Param, compile};

    const ORDER: &str = include_str!("../../scenarios/workflows/order.toml");

    /// Seed 001's order workflow and the compiled-in order workload, both from order-basic's
    /// settings and the same seed: the same requests at the same microseconds.
    #[test]
    fn the_order_workflow_draws_the_requests_the_order_service_gets() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/order-basic.toml");
        let text = std::fs::read_to_string(path).expect("order-basic");
        let scenario = evsim_model::scenario::Scenario::parse(path, &text).expect("parses");
        let w = &scenario.workload;
        let exponent = match w.product_distribution {
            evsim_model::scenario::ProductDistribution::Zipf(s) => s,
            evsim_model::scenario::ProductDistribution::Uniform => panic!("order-basic is Zipf"),
        };
        let bindings = [
            ("products".to_string(), Param::Int(i64::from(w.products))),
            ("users".to_string(), Param::Int(i64::from(w.users))),
            ("quantity_max".to_string(), Param::Int(i64::from(w.quantity_max))),
            ("rate_per_sec".to_string(), Param::Float(w.rate_per_sec)),
            ("zipf_exponent".to_string(), Param::Float(exponent)),
        ];
        let wf = compile("order.toml", ORDER, &bindings).unwrap_or_else(|e| panic!("{e}"));
        for seed in [1, 2, 99] {
            let seeds = Seeds::new(seed);
            let mut rust = Workload::new(w, seeds.stream(RngStream::Workload));
            let mut lang = Requests::new(&wf, seeds.stream(RngStream::Workload));
            assert_eq!(rust.next_order_at(), lang.next_at(0));
            for _ in 0..20_000 {
                let (order, user, product, qty) = rust.next_request();
                let (id, v, _) = lang.next(0);
                assert_eq!(
                    (id, v),
                    (order, vec![Value::Int(user as i64), Value::Int(i64::from(product)), Value::Int(i64::from(qty))])
                );
                assert_eq!(rust.next_order_at(), lang.next_at(0), "seed {seed}, order {order}");
            }
        }
    }

    /// The order workflow's `create-order` transaction, run by the workflow executor, decides
    /// each of 20,000 drawn requests as the compiled-in DB's `CreateOrder` does: the same
    /// commits and rejections, the same stock left, the same order row, the same event. The
    /// stock is small, so that most products sell out and rejections are many.
    #[test]
    fn the_order_workflow_decides_each_request_as_the_order_service_does() {
        use evsim_model::db::{Db, OrderStatus, Txn, TxnOutcome};
        use evsim_model::workflow::exec::{State, fill};
        let (products, stock, users, quantity_max) = (50u32, 40i64, 5_000u32, 3u32);
        let bindings = [
            ("products".to_string(), Param::Int(i64::from(products))),
            ("stock_per_product".to_string(), Param::Int(stock)),
            ("users".to_string(), Param::Int(i64::from(users))),
            ("quantity_max".to_string(), Param::Int(i64::from(quantity_max))),
        ];
        let wf = compile("order.toml", ORDER, &bindings).unwrap_or_else(|e| panic!("{e}"));
        let handler = &wf.request("create-order").expect("create-order").handler;
        let (product_t, orders_t) = (wf.table("product").expect("product"), wf.table("orders").expect("orders"));
        let (mut committed, mut rejected) = (0, 0);
        for seed in [1, 2, 99] {
            let mut requests = Requests::new(&wf, Seeds::new(seed).stream(RngStream::Workload));
            let mut db = Db::with_products(products, stock);
            let mut st = State::new(&wf, &mut |_| false);
            let mut facts = Vec::new();
            for _ in 0..20_000 {
                let (id, v, _) = requests.next(0);
                let field = |i: usize| match v[i] {
                    Value::Int(x) => x,
                    ref other => panic!("an integer field, not {other:?}"),
                };
                let (user, product, qty) = (field(0) as u64, field(1) as u32, field(2) as u32);
                let rust = db.apply(&Txn::CreateOrder { order: id, user, product, qty }, &mut facts);
                let mut f = Vec::new();
                fill(&mut f, handler, Some(id as i64), &v);
                let lang = st.transaction(&wf, &handler.transaction, &mut f);
                let where_ = format!("seed {seed}, order {id}");
                assert_eq!(rust == TxnOutcome::Committed, lang.stop.is_none(), "{where_}: {rust:?} / {:?}", lang.stop);
                assert_eq!(
                    st.row(product_t, i64::from(product)),
                    Some(&[Value::Int(db.stock[product as usize])][..]),
                    "{where_}"
                );
                if lang.stop.is_none() {
                    committed += 1;
                    let row = db.order(id).expect("an order row");
                    assert_eq!(row.status, OrderStatus::Pending);
                    let expected: Vec<Value> = vec![
                        Value::Int(row.user as i64),
                        Value::Int(i64::from(row.product)),
                        Value::Int(i64::from(row.qty)),
                        Value::Enum(0),
                    ];
                    assert_eq!(st.row(orders_t, id as i64), Some(&expected[..]), "{where_}");
                    // OrderService publishes OrderCreated { order, user, product, qty } of the request.
                    let event: Box<[Value]> =
                        [id as i64, user as i64, i64::from(product), i64::from(qty)].map(Value::Int).into();
                    assert_eq!(lang.published, vec![(0, event)], "{where_}");
                } else {
                    rejected += 1;
                    assert!(lang.published.is_empty() && lang.writes.is_empty(), "{where_}");
                    assert_eq!(st.row(orders_t, id as i64), None, "{where_}");
                }
            }
        }
        assert!(committed > 1_000 && rejected > 10_000, "{committed} committed, {rejected} rejected");
    }

    #[test]
    fn constants_and_uniform_bounds_are_kept() {
        let text = ORDER
            .replace("uniform(1, params.quantity_max)", "7")
            .replace("uniform(0, params.users - 1)", "uniform(5, 6)");
        let wf = compile("order.toml", &text, &[]).unwrap_or_else(|e| panic!("{e}"));
        let mut r = Requests::new(&wf, Seeds::new(3).stream(RngStream::Workload));
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..1_000 {
            let (_, v, _) = r.next(0);
            assert_eq!(v[2], Value::Int(7));
            seen.insert(v[0]);
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![Value::Int(5), Value::Int(6)]);
    }
}
