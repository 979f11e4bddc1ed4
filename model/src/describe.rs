//! One-line renderings of history entries, for counterexamples and stories.

use crate::history::{EventId, History, Op, Polled, Tp};
use std::fmt::Write;

/// `order-created(order 7)`.
pub(crate) fn event(h: &History, e: EventId) -> String {
    match h.header.events.get(e.kind().0 as usize) {
        Some(info) => format!("{}({} {})", info.name, info.subject, e.subject()),
        None => format!("event-{}({})", e.kind().0, e.subject()),
    }
}

fn tp(h: &History, tp: Tp) -> String {
    format!("{}-{}", h.topic_name(tp.topic), tp.partition)
}

fn key(k: Option<u64>) -> String {
    k.map_or_else(|| "null".to_string(), |k| k.to_string())
}

fn polled(h: &History, r: &Polled) -> String {
    format!("{}@{} key={} {}", tp(h, r.tp), r.offset, key(r.key), event(h, r.value))
}

/// `"[  12] t=1.234567s order-service-0: send order-created-1 key=7 order-created(order 7)"`.
pub fn describe(h: &History, i: usize) -> String {
    let Some(e) = h.entries.get(i) else {
        return format!("[{i}] <no such entry>");
    };
    let mut s = String::new();
    let _ = write!(s, "[{i}] t={}.{:06}s {}: ", e.time / 1_000_000, e.time % 1_000_000, h.node_name(e.process));
    s.push_str(&describe_op(h, &e.op));
    s
}

/// What `op` did, in words, without the entry's number, time and process
/// (`"send order-created-1 key=7 order-created(order 7)"`).
pub fn describe_op(h: &History, op: &Op) -> String {
    match op {
        Op::StockInitialised { product, stock } => format!("product {product} stock initialised to {stock}"),
        Op::StockFinal { product, stock } => format!("product {product} final stock {stock}"),
        Op::OrderRequested { order, user, product, qty } => {
            format!("order {order} requested by user {user}: {qty} x product {product}")
        }
        Op::OrderCommitted { order, product, qty, stock_after, .. } => {
            format!("order {order} committed PENDING; product {product} stock -{qty} -> {stock_after}")
        }
        Op::OrderRejected { order, product, qty, stock } => {
            format!("order {order} rolled back: {qty} x product {product} but stock {stock}")
        }
        Op::RankingIncremented { product, by, cause } => {
            format!("ranking of product {product} +{by} (because of {})", event(h, *cause))
        }
        Op::CartDeleted { user, cause } => format!("cart of user {user} deleted (because of {})", event(h, *cause)),
        Op::Send { tp: t, key: k, value } => format!("send {} key={} {}", tp(h, *t), key(*k), event(h, *value)),
        Op::SendOk { tp: t, key: k, value, offset } => format!(
            "send ok {}@{} key={} {}",
            tp(h, *t),
            offset.map_or_else(|| "?".to_string(), |o| o.to_string()),
            key(*k),
            event(h, *value)
        ),
        Op::SendFailed { tp: t, key: k, value, error } => {
            format!("send FAILED {:?} {} key={} {}", error, tp(h, *t), key(*k), event(h, *value))
        }
        Op::Poll { group, records } if records.len() <= 6 => {
            let list: Vec<String> = records.iter().map(|r| polled(h, r)).collect();
            format!("poll ({}) -> [{}]", h.group_name(*group), list.join(", "))
        }
        Op::Poll { group, records } => {
            // A long poll reads as the offset ranges it covers, per partition.
            let mut ranges: Vec<(crate::history::Tp, u64, u64, usize)> = Vec::new();
            for r in records {
                match ranges.iter_mut().find(|(t, ..)| *t == r.tp) {
                    Some((_, lo, hi, n)) => {
                        *lo = (*lo).min(r.offset);
                        *hi = (*hi).max(r.offset);
                        *n += 1;
                    }
                    None => ranges.push((r.tp, r.offset, r.offset, 1)),
                }
            }
            let list: Vec<String> =
                ranges.iter().map(|(t, lo, hi, n)| format!("{}@{lo}..@{hi} ({n} records)", tp(h, *t))).collect();
            format!("poll ({}) -> {} records: {}", h.group_name(*group), records.len(), list.join(", "))
        }
        Op::Processed { group, record, ok } => {
            format!("processed ({}) {} {}", h.group_name(*group), polled(h, record), if *ok { "ok" } else { "FAILED" })
        }
        Op::Commit { group, generation, offsets, error } => {
            let list: Vec<String> = offsets.iter().map(|(t, o)| format!("{}={}", tp(h, *t), o)).collect();
            format!(
                "commit ({} gen {generation}) [{}] -> {}",
                h.group_name(*group),
                list.join(", "),
                error.map_or_else(|| "ok".to_string(), |e| format!("{e:?}"))
            )
        }
        Op::Assigned { group, generation, partitions } => {
            let list: Vec<String> = partitions.iter().map(|t| tp(h, *t)).collect();
            format!("assigned ({} gen {generation}) [{}]", h.group_name(*group), list.join(", "))
        }
        Op::Revoked { group, partitions } => {
            let list: Vec<String> = partitions.iter().map(|t| tp(h, *t)).collect();
            format!("revoked ({}) [{}]", h.group_name(*group), list.join(", "))
        }
        Op::LeftGroup { group, reason } => format!("left group {} ({reason:?})", h.group_name(*group)),
        Op::MemberRemoved { group, member, reason } => {
            format!("removed {} from group {} ({reason:?})", h.node_name(*member), h.group_name(*group))
        }
        Op::DuplicateSkipped { group, record } => {
            format!(
                "skipped duplicate ({}) {} (already in the processed table)",
                h.group_name(*group),
                polled(h, record)
            )
        }
        Op::BalanceInitialised { user, balance } => format!("user {user} balance initialised to {balance}"),
        Op::PaymentRequested { order, user, amount } => {
            format!("payment of order {order} requested by user {user}: {amount}")
        }
        Op::PaymentCommitted { order, amount, balance_after, .. } => {
            format!("order {order} PAID: balance -{amount} -> {balance_after}")
        }
        Op::PaymentRejected { order, amount, reason, .. } => {
            format!("payment of order {order} ({amount}) rolled back: {reason:?}")
        }
        Op::OrderCancelled { order, product, qty, stock_after } => {
            format!("order {order} CANCELLED; product {product} stock +{qty} -> {stock_after} (compensation)")
        }
        Op::PlatformSent { cause } => format!("data platform received {}", event(h, *cause)),
        Op::CouponInitialised { coupon, quantity } => format!("coupon {coupon} limited to {quantity}"),
        Op::CouponRequested { request, coupon, user } => {
            format!("request {request}: user {user} asks for coupon {coupon}")
        }
        Op::CouponRequestRefused { request, coupon, user } => {
            format!("request {request} refused: user {user} already asked for coupon {coupon} (Redis set)")
        }
        Op::CouponIssued { request, coupon, user, issued } => {
            format!("request {request}: coupon {coupon} issued to user {user} ({issued} issued)")
        }
        Op::CouponNotIssued { request, coupon, user, sold_out } => format!(
            "request {request}: coupon {coupon} not issued to user {user} ({})",
            if *sold_out { "sold out" } else { "unique constraint: already issued" }
        ),
        Op::OutboxInserted { event: ev } => format!("outbox row INIT for {}", event(h, *ev)),
        Op::OutboxMarked { event: ev } => format!("outbox row PUBLISHED for {}", event(h, *ev)),
        Op::OutboxPending { event: ev } => format!("at the end, the outbox row of {} is still INIT", event(h, *ev)),
        Op::FinalLag { group, tp: t, lag } => {
            format!("at the end, group {} is {lag} record(s) behind on {}", h.group_name(*group), tp(h, *t))
        }
        Op::PointsAdded { user, points, cause } => {
            format!("user {user} +{points} points (because of {})", event(h, *cause))
        }
        Op::CouponUsed { user, cause } => format!("user {user}'s coupon marked used (because of {})", event(h, *cause)),
        Op::EmailSent { user, cause } => format!("e-mail sent to user {user} (because of {})", event(h, *cause)),
        Op::QueueRateLimit { group, tokens, interval_us } => {
            format!("{} activates at most {tokens} token(s) per {} ms", h.group_name(*group), interval_us / 1_000)
        }
        Op::QueueEntered { token, concert, user } => {
            format!("user {user} entered concert {concert}'s queue: token {token}")
        }
        Op::TokenActivated { token, concert, user, .. } => {
            format!("token {token} activated: user {user} may enter concert {concert}")
        }
        Op::Crashed => "CRASHED (memory lost)".to_string(),
        Op::FaultStarted { fault, kind } => format!("fault #{fault} {} starts", kind.name()),
        Op::FaultEnded { fault, kind } => format!("fault #{fault} {} ends", kind.name()),
        Op::LeaderElected { tp: t, leader, epoch, log_end, unclean } => match leader {
            Some(l) => format!(
                "{} leader is now {} (epoch {epoch}, log end {log_end}){}",
                tp(h, *t),
                h.node_name(*l),
                if *unclean { ", UNCLEAN election: an out-of-sync replica leads" } else { "" }
            ),
            None => format!("{} is offline: no replica in the ISR is alive", tp(h, *t)),
        },
        Op::IsrChanged { tp: t, isr } => {
            let list: Vec<&str> = isr.iter().map(|b| h.node_name(*b)).collect();
            format!("{} in-sync replicas: [{}]", tp(h, *t), list.join(", "))
        }
        Op::OffsetReset { group, tp: t, from, to } => format!(
            "{}: position {from} on {} is beyond the log end (OFFSET_OUT_OF_RANGE): reset to {to}",
            h.group_name(*group),
            tp(h, *t)
        ),
        Op::LogRecovered { tp: t, log_end, lost } => {
            format!("{} recovered its log to offset {log_end} ({lost} unflushed record(s) lost)", tp(h, *t))
        }
        Op::Retransmitted { peer, retransmissions, late_us, queued } => format!(
            "segment to {} lost, got through on retransmission {retransmissions}, {} ms late{}",
            h.node_name(*peer),
            late_us / 1_000,
            if *queued > 0 { format!(" ({queued} message(s) waited behind it)") } else { String::new() }
        ),
        Op::Discarded { peer, retransmissions, late_us, queued } => format!(
            "segment to {} lost and never got through: the connection closed {} ms after it was sent, \
             after {retransmissions} retransmission(s){}",
            h.node_name(*peer),
            late_us / 1_000,
            if *queued > 0 { format!(" ({queued} message(s) behind it were discarded too)") } else { String::new() }
        ),
        Op::Disconnected { peer, reason, in_flight, coordinator } => format!(
            "disconnected from {}{} ({}): {in_flight} request(s) in flight failed",
            h.node_name(*peer),
            if *coordinator { " (group coordinator connection)" } else { "" },
            match reason {
                crate::history::DisconnectReason::RequestTimeout => "request timed out",
                crate::history::DisconnectReason::Reset => "connection reset by the peer",
                crate::history::DisconnectReason::TcpRetriesExhausted => "TCP gave up after tcp_retries2",
                crate::history::DisconnectReason::SetupTimeout => "socket.connection.setup.timeout.ms passed",
                crate::history::DisconnectReason::CoordinatorUnknown => "coordinator unknown",
            }
        ),
        Op::Connected { peer, syns, after_us, coordinator } => format!(
            "connected to {}{} after {syns} SYN(s), {} ms after starting",
            h.node_name(*peer),
            if *coordinator { " (group coordinator connection)" } else { "" },
            after_us / 1_000
        ),
        Op::BrokerFenced { broker } => {
            format!("controller fenced {}: no heartbeat within broker.session.timeout.ms", h.node_name(*broker))
        }
        Op::Requested { handler, id } => format!("request {} #{id}", h.handler_name(*handler)),
        Op::TxnCommitted { handler, id, event: ev } => format!(
            "{} #{id}: transaction committed{}",
            h.handler_name(*handler),
            ev.map_or(String::new(), |ev| format!(", publishes {}", event(h, ev)))
        ),
        Op::TxnRolledBack { handler, id, event: ev } => format!(
            "{} #{id}: transaction rolled back{}",
            h.handler_name(*handler),
            ev.map_or(String::new(), |ev| format!(", {} not published", event(h, ev)))
        ),
        Op::Effect { group, cause, handler, step } => format!(
            "{} of group {}: step {} took effect (because of {})",
            h.handler_name(*handler),
            h.group_name(*group),
            step + 1,
            event(h, *cause)
        ),
        Op::Refused { handler, id } => format!("{} #{id}: refused by a guard", h.handler_name(*handler)),
        Op::ListenerRejected { group, cause, handler, step } => format!(
            "{} of group {}: step {} rejected {} (transaction rolled back, record acknowledged)",
            h.handler_name(*handler),
            h.group_name(*group),
            step + 1,
            event(h, *cause)
        ),
        Op::InvariantBroken { invariant, row } => match h.header.invariants.get(*invariant as usize) {
            Some(i) => format!("{} row {row} breaks {} ({})", i.table, i.name, i.condition),
            None => format!("row {row} breaks invariant {invariant}"),
        },
        Op::BrokerUnfenced { broker } => {
            format!("controller unfenced {}: heartbeats arrive again", h.node_name(*broker))
        }
        Op::Coordinator { group, coordinator } => match coordinator {
            Some(c) => format!("{} coordinates group {}", h.node_name(*c), h.group_name(*group)),
            None => format!(
                "group {} has no coordinator: no replica of its offsets partition can lead",
                h.group_name(*group)
            ),
        },
        Op::DeadLettered { group, record, to, offset } => format!(
            "{} gave up on {} and parked it on the dead-letter topic at {}@{}",
            h.group_name(*group),
            polled(h, record),
            tp(h, *to),
            offset.map_or_else(|| "?".to_string(), |o| o.to_string())
        ),
        Op::RebalanceStarted { group } => format!("rebalance of {} started", h.group_name(*group)),
        Op::GenerationStarted { group, generation, members } => {
            let list: Vec<&str> = members.iter().map(|m| h.node_name(*m)).collect();
            format!("{} generation {generation}: [{}]", h.group_name(*group), list.join(", "))
        }
    }
}

/// The entries that tell a counterexample's story: the violation's own entries, plus the faults
/// and cluster events (fault starts and ends, crashes, leader elections, log recoveries) from its
/// first entry on, in history order (what happened after the last entry can be why something
/// never came: a record lost with a crashed leader).
pub fn story_entries(h: &History, entries: &[usize]) -> Vec<usize> {
    let Some(&first) = entries.iter().min() else {
        return Vec::new();
    };
    let mut out: Vec<usize> = entries.to_vec();
    for (i, e) in h.entries.iter().enumerate().skip(first) {
        if matches!(
            e.op,
            Op::FaultStarted { .. }
                | Op::FaultEnded { .. }
                | Op::Crashed
                | Op::LeaderElected { .. }
                | Op::LogRecovered { .. }
                | Op::OffsetReset { .. }
                | Op::IsrChanged { .. }
                | Op::Disconnected { .. }
                | Op::Connected { .. }
                | Op::BrokerFenced { .. }
                | Op::BrokerUnfenced { .. }
                | Op::Coordinator { .. }
        ) {
            out.push(i);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}
