//! no-oversell: stock never below zero, every commit writes the stock it must, and
//! sold + remaining = initial.
//!
//! Walking the history in order, per product: the running stock starts at `StockInitialised` and
//! each `OrderCommitted` must write `stock_after = running - qty` and `stock_after >= 0`. A commit
//! that writes anything else read a stale stock: a lost update (two transactions read the same
//! row, the later write erased the earlier one). After reporting it, the running stock follows what
//! the commit actually wrote (the DB's value), so that one lost update is one violation rather than
//! a cascade over every later commit; the end-of-run check still counts the difference. At the end,
//! for each product with a `StockFinal`: `initial - sum(committed qty) = final`.

use super::{MAX_REPORTED, Violation, note_unlisted};
use crate::history::{History, Op};
use std::collections::BTreeMap;

/// How far back a lost-update report looks for the commit whose stock the offending one read.
const LOOKBACK: usize = 32;

#[derive(Default)]
struct Product {
    /// (entry, initial stock) of its `StockInitialised`.
    init: Option<(usize, i64)>,
    /// The stock as the commits wrote it (the DB's value, as far as the history shows).
    running: Option<i64>,
    /// Sum of committed quantities.
    sold: i64,
    /// Every commit of this product: (entry, stock_after).
    commits: Vec<(usize, i64)>,
}

pub(crate) fn check(h: &History) -> Vec<Violation> {
    let mut products: BTreeMap<u32, Product> = BTreeMap::new();
    let mut out = Vec::new();
    let mut total = 0usize;

    for (i, e) in h.entries.iter().enumerate() {
        match e.op {
            Op::StockInitialised { product, stock } => {
                let p = products.entry(product).or_default();
                p.init = Some((i, stock));
                p.running = Some(stock);
                p.sold = 0;
                p.commits.clear();
            }
            Op::OrderCommitted { order, product, qty, stock_after, .. } => {
                let p = products.entry(product).or_default();
                let qty = i64::from(qty);
                let init_entry = p.init.map(|(e, _)| e);
                if stock_after < 0 {
                    total += 1;
                    if out.len() < MAX_REPORTED {
                        let mut entries: Vec<usize> = init_entry.into_iter().collect();
                        entries.push(i);
                        out.push(Violation::new(
                            format!(
                                "oversold: order {order} took {qty} x product {product} \
                                 and left its stock at {stock_after} (< 0)"
                            ),
                            entries,
                        ));
                    }
                }
                match p.running {
                    Some(running) if running - qty != stock_after => {
                        total += 1;
                        if out.len() < MAX_REPORTED {
                            let read = stock_after + qty;
                            // The commits the offending transaction did not see: those after the
                            // last one that wrote the stock it read (looking back a bounded way).
                            let back = p.commits.iter().rev().take(LOOKBACK).position(|&(_, s)| s == read);
                            let ignored: Vec<usize> = match back {
                                Some(n) => p.commits[p.commits.len() - n..].iter().map(|&(e, _)| e).collect(),
                                None if p.commits.len() <= LOOKBACK && p.init.is_some_and(|(_, s)| s == read) => {
                                    p.commits.iter().map(|&(e, _)| e).collect()
                                }
                                None => p.commits.last().map(|&(e, _)| e).into_iter().collect(),
                            };
                            let mut entries: Vec<usize> = init_entry.into_iter().collect();
                            entries.extend(&ignored);
                            entries.push(i);
                            out.push(Violation::new(
                                format!(
                                    "lost update on product {product}: stock was \
                                     {running}, order {order} took {qty} so it must \
                                     write {}, but it wrote {stock_after} (it read \
                                     {read}, ignoring {} earlier commit(s))",
                                    running - qty,
                                    ignored.len()
                                ),
                                entries,
                            ));
                        }
                    }
                    _ => {}
                }
                // Follow the DB: the next transaction reads what this one wrote.
                p.running = Some(stock_after);
                p.sold += qty;
                p.commits.push((i, stock_after));
            }
            // A compensation gives the stock back: the running stock grows, "sold" shrinks.
            Op::OrderCancelled { order, product, qty, stock_after } => {
                let p = products.entry(product).or_default();
                let qty = i64::from(qty);
                if let Some(running) = p.running
                    && running + qty != stock_after
                {
                    total += 1;
                    if out.len() < MAX_REPORTED {
                        let mut entries: Vec<usize> = p.commits.last().map(|&(e, _)| e).into_iter().collect();
                        entries.push(i);
                        out.push(Violation::new(
                            format!(
                                "lost update on product {product}: stock was {running}, cancelling order {order} \
                                 restores {qty} so it must write {}, but it wrote {stock_after}",
                                running + qty
                            ),
                            entries,
                        ));
                    }
                }
                p.running = Some(stock_after);
                p.sold -= qty;
                p.commits.push((i, stock_after));
            }
            _ => {}
        }
    }

    // sold + remaining = initial, for every product whose final stock the history shows.
    for (i, e) in h.entries.iter().enumerate() {
        let Op::StockFinal { product, stock } = e.op else {
            continue;
        };
        let Some(p) = products.get(&product) else {
            continue;
        };
        let Some((init_entry, initial)) = p.init else {
            continue;
        };
        if initial - p.sold != stock {
            total += 1;
            if out.len() < MAX_REPORTED {
                let mut entries = vec![init_entry, i];
                entries.extend(p.commits.last().map(|&(e, _)| e));
                out.push(Violation::new(
                    format!(
                        "product {product}: initial {initial} - sold {} (over {} committed \
                         order(s)) = {}, but the final stock is {stock} (sold + remaining \
                         = {} != initial)",
                        p.sold,
                        p.commits.len(),
                        initial - p.sold,
                        p.sold + stock
                    ),
                    entries,
                ));
            }
        }
    }

    note_unlisted(&mut out, total, "no-oversell");
    out
}

#[cfg(test)]
mod tests {
    use super::check;
    use crate::checkers::testkit::HistoryBuilder;

    #[test]
    fn correct_sales_pass() {
        let mut b = HistoryBuilder::new();
        b.stock_initialised(1, 5);
        b.stock_initialised(2, 1);
        b.order_committed(10, 1, 2, 3);
        b.order_committed(11, 2, 1, 0);
        b.order_rejected(12, 2, 1, 0);
        b.order_committed(13, 1, 3, 0);
        b.stock_final(1, 0);
        b.stock_final(2, 0);
        assert_eq!(check(&b.build()), vec![]);
    }

    #[test]
    fn negative_stock_is_reported() {
        let mut b = HistoryBuilder::new();
        let init = b.stock_initialised(1, 1);
        b.order_committed(10, 1, 1, 0);
        // A design that does not check the stock: it goes below zero, and consistently so.
        let bad = b.order_committed(11, 1, 1, -1);
        b.stock_final(1, -1);
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].entries, vec![init, bad]);
        assert!(v[0].message.contains("order 11"), "{}", v[0].message);
        assert!(v[0].message.contains("-1"), "{}", v[0].message);
    }

    #[test]
    fn lost_update_is_reported_once_with_the_commit_it_ignored() {
        let mut b = HistoryBuilder::new();
        let init = b.stock_initialised(1, 10);
        let c1 = b.order_committed(10, 1, 1, 9);
        // Read 10 as well (no row lock): wrote 9 again.
        let c2 = b.order_committed(11, 1, 1, 9);
        // Later commits follow the DB and are not reported again.
        let last = b.order_committed(12, 1, 2, 7);
        let fin = b.stock_final(1, 7);
        let v = check(&b.build());
        assert_eq!(v.len(), 2, "{v:?}");
        assert_eq!(v[0].entries, vec![init, c1, c2]);
        assert!(v[0].message.contains("lost update on product 1"), "{}", v[0].message);
        assert!(v[0].message.contains("must write 8, but it wrote 9"), "{}", v[0].message);
        // 10 - (1 + 1 + 2) = 6, but 7 remain: sold + remaining = 11.
        assert_eq!(v[1].entries, vec![init, last, fin]);
        assert!(v[1].message.contains("final stock is 7"), "{}", v[1].message);
    }

    #[test]
    fn final_mismatch_without_commit_mismatch_is_reported() {
        let mut b = HistoryBuilder::new();
        let init = b.stock_initialised(3, 4);
        let c = b.order_committed(10, 3, 1, 3);
        let fin = b.stock_final(3, 2);
        let v = check(&b.build());
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].entries, vec![init, c, fin]);
    }

    #[test]
    fn output_is_capped_with_a_count_of_the_rest() {
        let mut b = HistoryBuilder::new();
        b.stock_initialised(1, 0);
        for o in 0..25 {
            b.order_committed(o, 1, 1, -1 - o as i64);
        }
        let v = check(&b.build());
        assert_eq!(v.len(), 20);
        assert!(v[19].message.contains("5 more no-oversell violations not listed"), "{}", v[19].message);
    }
}
