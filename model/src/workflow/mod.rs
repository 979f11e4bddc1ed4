//! The workflow language (issue 15): a team's services, events, state, handlers and invariants
//! described as data in the scenario format, compiled once before a run into a compact form
//! the sans-IO services execute. This module grows in steps; docs/workflow-language.md says
//! which constructs exist today.
//!
//! [`compile`] reads a workflow file and resolves every name in it: tables, fields, cache
//! structures, events, requests, listeners; each expression is type-checked against what its
//! step can see. What comes out, a [`Workflow`], refers to everything by index and evaluates
//! expressions against frames of slots, so executing it needs no name lookups.

pub mod compile;
#[cfg(test)]
mod compile_tests;
pub mod exec;
pub mod expr;
pub mod idmap;
pub mod service;

pub use compile::{Param, compile};

use expr::{Expr, Type, Value};
use std::ops::Range;

/// A compiled workflow: every name resolved to an index.
#[derive(Clone, Debug, PartialEq)]
pub struct Workflow {
    pub name: String,
    pub description: String,
    /// The parameters and the values they have in this compilation, in name order.
    pub params: Vec<(String, Value)>,
    /// The values of each enum type, by [`Type::Enum`] index.
    pub enums: Vec<Vec<String>>,
    pub tables: Vec<Table>,
    pub caches: Vec<Cache>,
    /// The external systems the file declares, in name order.
    pub systems: Vec<System>,
    pub events: Vec<EventDecl>,
    pub requests: Vec<RequestDecl>,
    pub listeners: Vec<ListenerDecl>,
    /// The requests' compensations, in request order: handlers numbered after the listeners.
    pub compensations: Vec<CompensationDecl>,
    pub invariants: Vec<InvariantDecl>,
}

/// A DB table: rows keyed by an integer id.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub name: String,
    /// Fields in declaration order: name and type.
    pub fields: Vec<(String, Type)>,
    /// The rows the run starts with: ids `0..count`, each field's initial value (constants).
    pub initial_rows: u64,
    pub initial_values: Vec<Value>,
    /// Fields whose initial value is drawn per row (in row order, then field order, from the
    /// run's `business` random stream), instead of `initial_values`' constant.
    pub initial_draws: Vec<(u16, RowDraw)>,
    /// Unique constraints: each a list of field indices whose values no two rows share (none
    /// where the file's `unique_when` does not hold with the parameters bound).
    pub unique: Vec<Vec<u16>>,
}

/// What kind of Redis structure a cache name holds.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CacheKind {
    /// A Redis set per key (`SADD key member`, answering whether it was added).
    Set,
    /// A sorted set (`ZINCRBY name by member`).
    SortedSet,
    /// An integer counter per key (`INCRBY`).
    Counter,
    /// Plain keys (`SET`, `DEL`).
    Keys,
}

/// A named external system a `call` step calls (a payment gateway, an e-mail provider): when it
/// fails the call (`[systems.<name>]`).
#[derive(Clone, Debug, PartialEq)]
pub struct System {
    pub name: String,
    /// The probability that a call fails with an error (drawn per call from the run's
    /// `external` random stream).
    pub error_rate: f64,
    /// Windows of simulated time, `[start, end)` in microseconds from the run's start, in which
    /// every call fails (the system is down).
    pub outages_us: Vec<(u64, u64)>,
}

impl System {
    /// Whether the system is down at `now` (in an outage window).
    pub fn down_at(&self, now: u64) -> bool {
        self.outages_us.iter().any(|&(start, end)| now >= start && now < end)
    }
}

/// A Redis structure.
#[derive(Clone, Debug, PartialEq)]
pub struct Cache {
    pub name: String,
    pub kind: CacheKind,
}

/// A business event: name, topic, key field, carried fields. Its identity is its name and its
/// subject (the value of its `subject` field).
#[derive(Clone, Debug, PartialEq)]
pub struct EventDecl {
    pub name: String,
    pub topic: String,
    pub fields: Vec<(String, Type)>,
    /// The field whose value is the record key (serialised as its decimal string, as Kafka's
    /// `StringSerializer` would write `Long.toString()`); `None`: records without a key.
    pub key: Option<u16>,
    /// The field that names what the event announces (an order id): with the event's name,
    /// its identity. Integer, below 2^56.
    pub subject: u16,
}

/// How a request field's value is drawn.
#[derive(Clone, Debug, PartialEq)]
pub enum Draw {
    /// `lo + below(hi - lo + 1)`: every integer of `lo..=hi` equally likely.
    Uniform { lo: i64, hi: i64 },
    /// `0..n` with weight `1 / (k + 1)^s` for `k` (a Zipf law: 0 is the hottest).
    Zipf { n: u64, s: f64 },
    /// A constant.
    Const(Value),
    /// A follow-up's field: computed from the request it follows (`parent.<field>`; the
    /// expression reads that request's slots: id, then fields), of the type given.
    Parent(Expr, Type),
}

/// How an initial row's field is drawn.
#[derive(Clone, Debug, PartialEq)]
pub enum RowDraw {
    /// `chance(p, a, b)`: `a` with probability `p`, otherwise `b` (one draw per row).
    Chance { p: f64, then: Value, otherwise: Value },
}

/// A request the client sends after another one was answered OK ("pay 100 ms after the order
/// was created"): it takes the id of the request it follows.
#[derive(Clone, Debug, PartialEq)]
pub struct FollowUp {
    /// The request type it follows.
    pub parent: u16,
    pub delay_us: u64,
}

/// A double click: with probability `rate` (drawn after the fields), the client sends the same
/// request again `after_us` later, as a new request (the next id) with the same fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Duplicate {
    pub rate: f64,
    pub after_us: u64,
}

/// A request type of the workload and the handler that serves it.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestDecl {
    pub name: String,
    /// The service (a `[services.*]` kind) that handles it.
    pub service: String,
    /// Poisson arrivals at this rate; requests get sequential ids from 1 (`request.id`). 0 for a
    /// follow-up.
    pub rate_per_sec: f64,
    /// Sent after another request instead of at a rate: its fields are [`Draw::Parent`]s.
    pub follows: Option<FollowUp>,
    /// A client that sometimes sends the request twice (a double click).
    pub duplicate: Option<Duplicate>,
    /// The fields drawn for each request, in the file's order (the order of the draws).
    pub fields: Vec<(String, Draw)>,
    pub handler: Handler,
    /// Its compensation, an index into [`Workflow::compensations`].
    pub compensation: Option<u16>,
}

/// Spring's transaction propagation for a compensation called from a failing transaction.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Propagation {
    /// `REQUIRED` (the default): it joins the failing transaction, and the rethrown exception
    /// rolls it back with everything else: it has no effect.
    Required,
    /// `REQUIRES_NEW`: it commits in a transaction of its own.
    RequiresNew,
}

/// What a request's handler runs when a `require` marked `compensate` fails:
/// `catch (e) { compensate(); throw e; }` around a `@Transactional` body.
#[derive(Clone, Debug, PartialEq)]
pub struct CompensationDecl {
    /// The request type it belongs to (it sees that request's fields).
    pub request: u16,
    pub propagation: Propagation,
    pub handler: Handler,
}

/// A handler's body: a `@Transactional` part, then what runs after the commit.
#[derive(Clone, Debug, PartialEq)]
pub struct Handler {
    /// The steps of the transaction (all their writes or none).
    pub transaction: Vec<Step>,
    /// Steps outside the transaction, after it committed (cache commands, external calls).
    pub after: Vec<Step>,
    /// The frame's size: slots for the input's fields, rows read and cache answers.
    pub frame: u16,
}

impl Handler {
    /// Whether any of its steps publishes an event.
    pub fn publishes(&self) -> bool {
        self.transaction.iter().chain(&self.after).any(|s| matches!(s, Step::Publish { .. }))
    }

    /// Whether a step after its transaction waits for a send's acknowledgement.
    pub fn waits(&self) -> bool {
        self.after.iter().any(|s| matches!(s, Step::Publish { wait: true, .. }))
    }
}

/// What a failed `require` does.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Otherwise {
    /// A business rejection: roll back and answer the client "rejected"; a listener
    /// acknowledges the record (nothing to retry).
    Reject,
    /// An unchecked exception: roll back; a listener's error handler retries the record.
    Throw,
}

/// `SELECT ... FOR UPDATE`, `FOR SHARE`, or a plain read.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Lock {
    None,
    ForShare,
    ForUpdate,
}

/// One step of a handler.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Read row `id` of `table` into the frame from slot `into` (one slot per field); a missing
    /// row fails the step as `otherwise` says.
    Read { table: u16, id: Expr, lock: Lock, into: u16, missing: Otherwise },
    /// Go on only if `cond` holds; when it does not and `compensate` is set, the request's
    /// compensation runs (Spring's `catch` block, by its propagation).
    Require { cond: Expr, otherwise: Otherwise, message: std::sync::Arc<str>, compensate: bool },
    /// Write fields of the row read at `from` (all values computed from the row as read).
    Update { table: u16, from: u16, set: Vec<(u16, Expr)> },
    /// Insert row `id` with every field's value. A duplicate primary key or unique value stops
    /// it as `on_duplicate` says: `Throw` (Spring's unchecked `DataIntegrityViolationException`)
    /// unless the handler catches it (`Reject`: roll back, answer rejected, acknowledge).
    Insert { table: u16, id: Expr, values: Vec<Expr>, on_duplicate: Otherwise },
    /// Publish `event` with every field's value, by the service's publishing strategy. With
    /// `wait` (a request's steps after its transaction only), the handler blocks on the send
    /// (`kafkaTemplate.send(...).get()`): the steps after it run once the broker acknowledged
    /// it, and a failed send throws.
    Publish { event: u16, values: Vec<Expr>, wait: bool },
    /// A Redis command on `cache`; SADD's and SISMEMBER's answer (1 or 0) goes to slot `answer`.
    Cache { cache: u16, command: CacheCommand, answer: Option<u16> },
    /// Call a named external system: `declared` is its index in [`Workflow::systems`] when the
    /// file declares it (outage windows, an error rate); an undeclared one always answers.
    Call { system: String, declared: Option<u16> },
}

/// A Redis command.
#[derive(Clone, Debug, PartialEq)]
pub enum CacheCommand {
    Sadd {
        key: Expr,
        member: Expr,
    },
    /// `SISMEMBER`: a read, whose answer (whether the member is in the set) goes to the step's
    /// `as`; not an effect.
    Sismember {
        key: Expr,
        member: Expr,
    },
    Srem {
        key: Expr,
        member: Expr,
    },
    Zincrby {
        member: Expr,
        by: Expr,
    },
    Incrby {
        key: Expr,
        by: Expr,
    },
    Set {
        key: Expr,
        value: Expr,
    },
    Del {
        key: Expr,
    },
}

/// A record listener (`@KafkaListener`) of one event.
#[derive(Clone, Debug, PartialEq)]
pub struct ListenerDecl {
    pub name: String,
    pub event: u16,
    pub handler: Handler,
}

/// An invariant the workflow claims.
#[derive(Clone, Debug, PartialEq)]
pub enum InvariantDecl {
    /// `cond` (written `text`) holds for every row of `table`, after every commit.
    Always { name: String, table: u16, cond: Expr, text: String },
    /// `cond` (written `text`) holds for every row of `table` at the end of the quiet period.
    Eventually { name: String, table: u16, cond: Expr, text: String },
    /// No two rows of `table` share the values of `fields` (written `text`), after every
    /// commit: a uniqueness the design claims without a constraint that enforces it.
    Unique { name: String, table: u16, fields: Vec<u16>, text: String },
    /// `cond` (written `text`) holds for every committed update of a row of `table`, evaluated
    /// on the row as it was (slots `0..n`, `old.<field>`) and as written (`n..2n`, `new.<field>`).
    Transition { name: String, table: u16, cond: Expr, text: String },
    /// Listener `listener` (an index into [`Workflow::listeners`]) takes effect on the records
    /// of one key in the order the application sent them: a queue's first-in, first-out
    /// promise, judged from the history's sends and effects.
    Fifo { name: String, listener: u16, text: String },
    /// The consumer group running listener `listener` takes at most `max` effects within any
    /// window of `per_us`: a promised pace, judged from the history's effects.
    Rate { name: String, listener: u16, max: u32, per_us: u64, text: String },
}

impl InvariantDecl {
    /// The table whose rows it judges (none for an invariant over the history's messages).
    pub fn table(&self) -> Option<u16> {
        match self {
            InvariantDecl::Always { table, .. }
            | InvariantDecl::Eventually { table, .. }
            | InvariantDecl::Unique { table, .. }
            | InvariantDecl::Transition { table, .. } => Some(*table),
            InvariantDecl::Fifo { .. } | InvariantDecl::Rate { .. } => None,
        }
    }

    /// What it claims, as written.
    pub fn text(&self) -> &str {
        match self {
            InvariantDecl::Always { text, .. }
            | InvariantDecl::Eventually { text, .. }
            | InvariantDecl::Unique { text, .. }
            | InvariantDecl::Transition { text, .. }
            | InvariantDecl::Fifo { text, .. }
            | InvariantDecl::Rate { text, .. } => text,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            InvariantDecl::Always { name, .. }
            | InvariantDecl::Eventually { name, .. }
            | InvariantDecl::Unique { name, .. }
            | InvariantDecl::Transition { name, .. }
            | InvariantDecl::Fifo { name, .. }
            | InvariantDecl::Rate { name, .. } => name,
        }
    }
}

impl Workflow {
    pub fn table(&self, name: &str) -> Option<u16> {
        self.tables.iter().position(|t| t.name == name).map(|i| i as u16)
    }

    pub fn event(&self, name: &str) -> Option<u16> {
        self.events.iter().position(|e| e.name == name).map(|i| i as u16)
    }

    pub fn request(&self, name: &str) -> Option<&RequestDecl> {
        self.requests.iter().find(|r| r.name == name)
    }

    pub fn listener(&self, name: &str) -> Option<&ListenerDecl> {
        self.listeners.iter().find(|l| l.name == name)
    }

    /// Handler `handler`: request types', then listeners', then compensations'.
    pub fn handler(&self, handler: u16) -> &Handler {
        let h = handler as usize;
        let (r, l) = (self.requests.len(), self.listeners.len());
        if h < r {
            &self.requests[h].handler
        } else if h < r + l {
            &self.listeners[h - r].handler
        } else {
            &self.compensations[h - r - l].handler
        }
    }

    /// Handler `handler`'s name: a request type's, a listener's, or `<request>/compensation`.
    pub fn handler_name(&self, handler: u16) -> String {
        let h = handler as usize;
        let (r, l) = (self.requests.len(), self.listeners.len());
        if h < r {
            self.requests[h].name.clone()
        } else if h < r + l {
            self.listeners[h - r].name.clone()
        } else {
            format!("{}/compensation", self.requests[self.compensations[h - r - l].request as usize].name)
        }
    }

    /// Every handler's name, by index.
    pub fn handler_names(&self) -> Vec<String> {
        (0..(self.requests.len() + self.listeners.len() + self.compensations.len()) as u16)
            .map(|h| self.handler_name(h))
            .collect()
    }

    /// The handler index of request type `request`'s compensation, if it has one.
    pub fn compensation_handler(&self, request: u16) -> Option<u16> {
        let c = self.requests.get(request as usize)?.compensation?;
        Some((self.requests.len() + self.listeners.len()) as u16 + c)
    }
}

/// The byte offset in the file of character `offset` of an expression held by the TOML string
/// at `span` (the span includes the quotes). Exact for a one-line string without escapes (basic
/// `"..."` or literal `'...'`); for any other string, where the text and the file differ, the
/// string's start.
pub fn expr_position(source: &str, span: Range<usize>, text: &str, offset: usize) -> usize {
    let Some(raw) = source.get(span.clone()) else { return span.start };
    for quote in ["\"", "'"] {
        if raw.len() == text.len() + 2
            && raw.starts_with(quote)
            && raw.ends_with(quote)
            && &raw[1..raw.len() - 1] == text
        {
            return span.start + 1 + offset.min(text.len());
        }
    }
    span.start
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expression_error_points_into_the_file() {
        let src = "a = \"product.stock >= x\"\nb = 'q >= 1'\nc = \"say \\\"x\\\"\"\n";
        let a = src.find('"').expect("a");
        assert_eq!(expr_position(src, a..a + 20, "product.stock >= x", 17), a + 18);
        let b = src.find('\'').expect("b");
        assert_eq!(expr_position(src, b..b + 8, "q >= 1", 2), b + 3);
        let c = src.rfind("\"say").expect("c");
        assert_eq!(expr_position(src, c..src.len() - 1, "say \"x\"", 5), c, "escapes: the string's start");
    }
}
