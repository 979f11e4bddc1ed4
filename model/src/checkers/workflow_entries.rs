//! The checkers judge a workflow's generic entries as they judge the compiled-in services'
//! (issue 15): a committed transaction owes its event, a rolled-back one's event is a phantom
//! if it shows up, and stories name the handlers the header declares.

use super::testkit::{HistoryBuilder, SERVICE, WORKLOAD, ev, orders};
use super::{eventual_publication, no_phantom_event};
use crate::history::Op;

fn committed(b: &mut HistoryBuilder, id: u64) -> usize {
    b.op(SERVICE, Op::TxnCommitted { handler: 0, id, event: Some(ev(id)) })
}

#[test]
fn a_committed_transaction_owes_its_event() {
    let mut b = HistoryBuilder::new();
    b.op(WORKLOAD, Op::Requested { handler: 0, id: 7 });
    committed(&mut b, 7);
    b.produce(orders(0), 7, 0);
    // A transaction that publishes nothing owes nothing.
    b.op(SERVICE, Op::TxnCommitted { handler: 0, id: 8, event: None });
    assert_eq!(eventual_publication::check(&b.build()), vec![]);

    let mut b = HistoryBuilder::new();
    let c = committed(&mut b, 9);
    let v = eventual_publication::check(&b.build());
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].entries, vec![c]);
    assert!(v[0].message.contains("order-created(order 9) committed"), "{}", v[0].message);
}

#[test]
fn the_event_of_a_rolled_back_transaction_is_a_phantom() {
    let mut b = HistoryBuilder::new();
    let rb = b.op(SERVICE, Op::TxnRolledBack { handler: 0, id: 5, event: Some(ev(5)) });
    let (_, ok) = b.produce(orders(1), 5, 0);
    let v = no_phantom_event::check(&b.build());
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].entries.contains(&ok) && v[0].entries.contains(&rb), "{v:?}");

    let mut b = HistoryBuilder::new();
    committed(&mut b, 5);
    b.produce(orders(1), 5, 0);
    assert_eq!(no_phantom_event::check(&b.build()), vec![]);
}

#[test]
fn stories_name_the_declared_handlers() {
    let mut b = HistoryBuilder::new();
    b.op(WORKLOAD, Op::Requested { handler: 0, id: 7 });
    committed(&mut b, 7);
    b.op(SERVICE, Op::TxnRolledBack { handler: 0, id: 8, event: None });
    b.op(SERVICE, Op::Effect { group: super::testkit::RANKING, cause: ev(7), handler: 1, step: 0 });
    let mut h = b.build();
    h.header.handlers = vec!["create-order".into(), "order-event-consumer".into()];
    let lines: Vec<String> = (0..4).map(|i| crate::describe::describe_op(&h, &h.entries[i].op)).collect();
    assert_eq!(
        lines,
        vec![
            "request create-order #7",
            "create-order #7: transaction committed, publishes order-created(order 7)",
            "create-order #8: transaction rolled back",
            "order-event-consumer of group ranking: step 1 took effect (because of order-created(order 7))",
        ]
    );
    assert_eq!(h.entries[3].op.effect_cause(), Some(ev(7)));
    // A handler the header does not declare is still named.
    h.header.handlers.clear();
    assert_eq!(crate::describe::describe_op(&h, &h.entries[0].op), "request handler-0 #7");
}

#[test]
fn a_declared_invariant_is_judged_from_its_entries_under_its_name() {
    use crate::checkers::Invariant;
    use crate::history::InvariantInfo;
    let declare = |h: &mut crate::history::History| {
        h.header.invariants = vec![InvariantInfo {
            name: "no-oversell".into(),
            table: "product".into(),
            condition: "product.stock >= 0".into(),
            judged: crate::history::Judged::Rows,
        }];
    };
    let mut b = HistoryBuilder::new();
    let c = committed(&mut b, 3);
    let broken = b.op(SERVICE, Op::InvariantBroken { invariant: 0, row: 2 });
    let mut h = b.build();
    declare(&mut h);
    let v = Invariant::NoOversell.check(&h);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].entries, vec![c, broken]);
    assert!(v[0].message.contains("product row 2 breaks `product.stock >= 0`"), "{}", v[0].message);
    assert_eq!(
        crate::describe::describe_op(&h, &h.entries[broken].op),
        "product row 2 breaks no-oversell (product.stock >= 0)"
    );

    // Declared and never broken: it holds, whatever the compiled-in checker would say.
    let mut b = HistoryBuilder::new();
    b.stock_initialised(0, 1);
    b.order_committed(1, 0, 5, -4);
    let mut h = b.build();
    assert_eq!(Invariant::NoOversell.check(&h).len(), 1, "undeclared: the compiled-in checker judges");
    declare(&mut h);
    assert_eq!(Invariant::NoOversell.check(&h), vec![]);
}
