//! Running a workflow file in the simulator (issue 15), beside the compiled-in services: a
//! `[services.<name>]` table runs the workflow's requests whose `service` is `<name>`, and a
//! `[consumers.<name>]` table runs the workflow's listener `<name>`; the other tables keep their
//! Rust services. The run owns the workflow's state (its tables and cache, through the
//! executor), the requests' field values until their transaction runs, and the published
//! events' field values, by event id: records carry only the id.
//!
//! [`WorkflowRun`] is the part both drivers share (the simulator here, the real Kafka runner in
//! `evsim_real`): requests drawn, transactions previewed and decided, listener steps run,
//! invariants checked; each driver records what it returns and carries it to the services.

use crate::kernel::SimRng;
use crate::requests::Requests;
use crate::world::{Ev, World};
use evsim_model::actor::Input;
use evsim_model::event::{Event, Message};
use evsim_model::history::Micros;
use evsim_model::history::{EventId, EventInfo, EventKind, GroupId, Judged, NodeId, Op, Polled};
use evsim_model::scenario::{PublishStrategy, Scenario};
use evsim_model::workflow::exec::{self, State, Stop};
use evsim_model::workflow::expr::Value;
use evsim_model::workflow::idmap::{IdMap, KeyMap};
use evsim_model::workflow::{Draw, InvariantDecl, Propagation, Step, Workflow};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A workflow's part of a run.
#[derive(Debug)]
pub struct WorkflowRun {
    pub(crate) wf: Arc<Workflow>,
    state: State,
    requests: Requests,
    /// Per request type, the service instances that handle it.
    handlers_of: Vec<Vec<u16>>,
    /// Requests whose transaction has not run yet: (request type, id) -> field values.
    inputs: KeyMap<(u16, u64), Vec<Value>>,
    /// Published events' field values: per event, by subject.
    values: Vec<IdMap<Box<[Value]>>>,
    /// Follow-ups of committed requests, computed from them, until they are sent: (follow-up
    /// request type, id) -> field values.
    follow_ups: KeyMap<(u16, u64), Vec<Value>>,
    /// The first expression that failed (overflow, division by zero): the workflow is wrong,
    /// and the run gives no verdict (exit 2).
    error: Option<String>,
    /// The frame handlers run in, kept between them so that running one allocates nothing.
    scratch: Vec<Value>,
    /// Buffers of decided requests' inputs, for the next requests' (a request then allocates
    /// nothing for its fields).
    spare: Vec<Vec<Value>>,
    /// Requests blocked on a send (`wait = true`): (request type, id) -> their frame and the
    /// step to go on from.
    suspended: KeyMap<(u16, u64), (Vec<Value>, u16)>,
    /// Which calls to an external system fail with an error: the `external` stream.
    external: SimRng,
    /// Per declared external system, its calls so far.
    calls: Vec<SystemStats>,
    /// Per handler, the events its `publish` steps publish and their subjects' expressions, in
    /// step order: what a rolled-back transaction's entry names.
    subjects: Vec<Vec<(u16, evsim_model::workflow::expr::Expr)>>,
    /// What a handler's transaction and the steps after it did, their buffers kept likewise
    /// (`None` while a handler runs: taking them out leaves nothing to drop).
    outcomes: Option<(exec::Outcome, exec::Outcome)>,
}

/// The header's declaration of a workflow's events: in file order, each announcing a committed
/// fact when a transaction publishes it.
pub fn events(wf: &Workflow) -> Vec<EventInfo> {
    let in_transaction = |e: u16| {
        let handlers = wf.requests.iter().map(|r| &r.handler).chain(wf.listeners.iter().map(|l| &l.handler));
        handlers
            .into_iter()
            .any(|h| h.transaction.iter().any(|s| matches!(s, Step::Publish { event, .. } if *event == e)))
    };
    wf.events
        .iter()
        .enumerate()
        .map(|(i, e)| EventInfo {
            name: e.name.clone(),
            subject: e.fields[e.subject as usize].0.clone(),
            announces_fact: in_transaction(i as u16),
            depends_on: None,
        })
        .collect()
}

/// The header's declaration of a workflow's invariants.
pub fn invariants(wf: &Workflow) -> Vec<evsim_model::history::InvariantInfo> {
    wf.invariants
        .iter()
        .map(|i| {
            let listener = |l: u16| (wf.requests.len() + l as usize) as u16;
            let judged = match *i {
                InvariantDecl::Fifo { listener: l, .. } => {
                    Judged::Fifo { handler: listener(l), event: EventKind(wf.listeners[l as usize].event as u8) }
                }
                InvariantDecl::Rate { listener: l, max, per_us, .. } => {
                    Judged::Rate { handler: listener(l), max, per_us }
                }
                _ => Judged::Rows,
            };
            evsim_model::history::InvariantInfo {
                name: i.name().to_string(),
                table: i.table().map_or_else(String::new, |t| wf.tables[t as usize].name.clone()),
                condition: i.text().to_string(),
                judged,
            }
        })
        .collect()
}

/// The header's names of a workflow's handlers: its request types, its listeners, then its
/// compensations (`<request>/compensation`).
pub fn handlers(wf: &Workflow) -> Vec<String> {
    wf.handler_names()
}

/// The workflow listener a `[consumers.<name>]` table runs, as a handler index.
pub fn listener_of(scenario: &Scenario, consumer: &str) -> Option<u16> {
    let wf = scenario.workflow.as_ref()?;
    let i = wf.listeners.iter().position(|l| l.name == consumer)?;
    Some((wf.requests.len() + i) as u16)
}

/// Whether the workflow listener a `[consumers.<name>]` table runs publishes events (its
/// instances then need a KafkaTemplate, in the simulator and on the real backend).
pub fn listener_publishes(scenario: &Scenario, consumer: &str) -> bool {
    let publishes = |h: u16| scenario.workflow.as_ref().is_some_and(|wf| wf.handler(h).publishes());
    listener_of(scenario, consumer).is_some_and(publishes)
}

/// Whether a `[services.<name>]` table runs a workflow's requests.
pub fn runs_requests(scenario: &Scenario, service: &str) -> bool {
    scenario.workflow.as_ref().is_some_and(|wf| wf.requests.iter().any(|r| r.service == service))
}

/// A workflow run's figures, named as its workflow declares them: what the JSON output's
/// `stats.workflow` holds and the text output prints. Counted from the history (the same
/// entries in the simulator and on the real backend), so they agree with what a story shows.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WorkflowStats {
    /// Per request type, and per compensation (`<request>/compensation`), by name: every
    /// declared one, also when none was sent.
    pub requests: BTreeMap<String, RequestStats>,
    /// Per listener, by name.
    pub listeners: BTreeMap<String, ListenerStats>,
    /// Per external system the workflow declares (`[systems.<name>]`), by name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub systems: BTreeMap<String, SystemStats>,
}

/// A declared external system's calls.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SystemStats {
    /// Calls made to it, answered or failed.
    pub calls: u64,
    /// Calls that failed because it was down (in one of its outage windows).
    pub failed_down: u64,
    /// Calls that failed with an error (its error rate).
    pub failed_error: u64,
}

impl WorkflowStats {
    /// Why a run of a workflow whose external systems have outage windows tested nothing about
    /// them: a system's windows that no call met, as a planned fault that never fired.
    pub fn outage_never_met(&self, wf: &Workflow) -> Option<String> {
        wf.systems
            .iter()
            .find(|s| !s.outages_us.is_empty() && self.systems[&s.name].failed_down == 0)
            .map(|s| format!("the outage windows of external system `{}` were never met by a call", s.name))
    }
}

/// A request type's (or a compensation's) figures.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestStats {
    /// Requests a client sent to a live instance (`Requested` entries; a compensation is not
    /// requested, it runs after its request's rollback).
    pub requested: u64,
    /// Transactions that committed (`TxnCommitted`).
    pub committed: u64,
    /// Transactions that rolled back, a guard's rejection or an exception (`TxnRolledBack`).
    pub rolled_back: u64,
    /// Requests refused by a guard of a handler without a transaction (`Refused`).
    pub refused: u64,
}

/// A listener's figures.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ListenerStats {
    /// Steps that took effect (`Effect` entries): a committed transaction's writes count once,
    /// each cache command and external call once, each time a record is handled.
    pub effects: u64,
    /// Records a guard rejected (`ListenerRejected`): acknowledged without the rest.
    pub rejected: u64,
}

/// The figures of a run of `wf` with history `entries` (the external systems' calls come from
/// the run itself: a failed call has no entry of its own).
fn stats(wf: &Workflow, entries: &[evsim_model::history::Entry], systems: &[SystemStats]) -> WorkflowStats {
    let names = wf.handler_names();
    let listener = |h: u16| (wf.requests.len()..wf.requests.len() + wf.listeners.len()).contains(&(h as usize));
    let mut by_handler = vec![RequestStats::default(); names.len()];
    let mut by_listener = vec![ListenerStats::default(); names.len()];
    for e in entries {
        match e.op {
            Op::Requested { handler, .. } => by_handler[handler as usize].requested += 1,
            Op::TxnCommitted { handler, .. } => by_handler[handler as usize].committed += 1,
            Op::TxnRolledBack { handler, .. } => by_handler[handler as usize].rolled_back += 1,
            Op::Refused { handler, .. } => by_handler[handler as usize].refused += 1,
            Op::Effect { handler, .. } => by_listener[handler as usize].effects += 1,
            Op::ListenerRejected { handler, .. } => by_listener[handler as usize].rejected += 1,
            _ => {}
        }
    }
    let mut out = WorkflowStats {
        systems: wf.systems.iter().map(|s| s.name.clone()).zip(systems.iter().cloned()).collect(),
        ..WorkflowStats::default()
    };
    for (h, ((name, r), l)) in names.into_iter().zip(by_handler).zip(by_listener).enumerate() {
        if listener(h as u16) {
            out.listeners.insert(name, l);
        } else {
            out.requests.insert(name, r);
        }
    }
    out
}

/// How calls to `wf`'s declared external systems are answered at `now`: a system in an outage
/// window fails every call; otherwise a call fails with its error rate, drawn from `external`.
/// `calls` counts them.
fn answers<'a>(
    wf: &'a Workflow,
    external: &'a mut SimRng,
    calls: &'a mut [SystemStats],
    now: Micros,
) -> impl FnMut(u16) -> Option<Arc<str>> + 'a {
    move |s| {
        let (system, count) = (&wf.systems[s as usize], &mut calls[s as usize]);
        count.calls += 1;
        if system.down_at(now) {
            count.failed_down += 1;
            Some(format!("{} is down (an outage window): the call fails", system.name).into())
        } else if system.error_rate > 0.0 && external.chance(system.error_rate) {
            count.failed_error += 1;
            Some(format!("{} answered with an error (its error rate)", system.name).into())
        } else {
            None
        }
    }
}

/// What a workflow listener did with a record ([`WorkflowRun::listen`]).
#[derive(Debug)]
pub struct Listened {
    /// The record may be acknowledged (the steps completed, or a guard rejected it); `false`:
    /// the handler threw.
    pub acked: bool,
    /// The entries to record: each step that took effect, then the rows left breaking an
    /// invariant.
    pub ops: Vec<Op>,
    /// The events it publishes (event index, record), in order.
    pub sends: Vec<(u16, Message)>,
}

/// What a request's transaction decided: the entry that records it, the events it publishes,
/// and the rows it left breaking an invariant (entries to record after it).
#[derive(Debug)]
pub struct Decided {
    pub committed: bool,
    /// The entry that records the decision: none for a handler without a transaction that
    /// went through (it decided nothing the history must show).
    pub op: Option<Op>,
    pub events: Vec<Message>,
    pub broken: Vec<Op>,
    /// A rolled-back request whose compensation commits on its own (`requires-new`): the
    /// compensation's handler, to run next as a transaction of its own (same id).
    pub compensate: Option<u16>,
    /// The steps after the transaction stopped at a publish that waits for its acknowledgement
    /// (the last of `events`): [`WorkflowRun::resume`] goes on when the delivery report comes.
    pub waiting: bool,
}

impl WorkflowRun {
    /// The workflow's run, drawing requests from `rng` (the workload stream) and drawn initial
    /// rows from `business` (the business stream); `instances` names each service instance's
    /// `[services.*]` table, in the driver's instance order.
    /// Calls to external systems fail with an error as drawn from `external`.
    pub fn new(wf: Arc<Workflow>, rng: SimRng, mut business: SimRng, external: SimRng, instances: &[&str]) -> Self {
        let requests = Requests::new(&wf, rng);
        let handlers_of = wf
            .requests
            .iter()
            .map(|r| (0..instances.len() as u16).filter(|&i| instances[i as usize] == r.service).collect())
            .collect();
        Self {
            state: State::new(&wf, &mut |p| business.chance(p)),
            requests,
            handlers_of,
            inputs: KeyMap::default(),
            values: (0..wf.events.len()).map(|_| IdMap::default()).collect(),
            follow_ups: KeyMap::default(),
            error: None,
            scratch: Vec::new(),
            spare: Vec::new(),
            suspended: KeyMap::default(),
            outcomes: None,
            external,
            calls: vec![SystemStats::default(); wf.systems.len()],
            subjects: (0..wf.handler_names().len() as u16)
                .map(|h| {
                    let h = wf.handler(h);
                    let publishes = h.transaction.iter().chain(&h.after).filter_map(|s| match s {
                        Step::Publish { event, values, .. } => {
                            Some((*event, values[wf.events[*event as usize].subject as usize].clone()))
                        }
                        _ => None,
                    });
                    publishes.collect()
                })
                .collect(),
            wf,
        }
    }

    /// The workflow.
    pub fn workflow(&self) -> &Arc<Workflow> {
        &self.wf
    }

    /// The first expression that failed, if any: the workflow is wrong, and the run gives no
    /// verdict.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Whether request type `handler` has a service instance to go to.
    pub fn has_instances(&self, handler: u16) -> bool {
        !self.handlers_of[handler as usize].is_empty()
    }

    /// The request types that arrive at a rate of their own (follow-ups arrive after the
    /// request they follow).
    pub fn arriving(&self) -> impl Iterator<Item = u16> + '_ {
        (0..self.wf.requests.len() as u16)
            .filter(|&h| self.wf.requests[h as usize].follows.is_none() && self.has_instances(h))
    }

    /// Request `id` of type `handler` was answered (`ok`: it succeeded): its follow-ups, each
    /// to send after its delay ([`WorkflowRun::follow_up`]), or none when it failed.
    pub fn answered(&mut self, handler: u16, id: u64, ok: bool) -> Vec<(u16, Micros)> {
        let mut out = Vec::new();
        for (f, r) in self.wf.requests.iter().enumerate() {
            let Some(follows) = r.follows.as_ref().filter(|x| x.parent == handler) else { continue };
            let f = f as u16;
            if ok && self.follow_ups.contains_key(&(f, id)) {
                out.push((f, follows.delay_us));
            } else {
                self.follow_ups.remove(&(f, id));
            }
        }
        out
    }

    /// Follow-up request `id` of type `handler` is sent: the service instance it goes to (as
    /// [`WorkflowRun::next_request`] picks one), which then holds its fields; None when no
    /// instance is alive (the client's call fails).
    pub fn follow_up(&mut self, handler: u16, id: u64, alive: impl Fn(u16) -> bool) -> Option<u16> {
        let values = self.follow_ups.remove(&(handler, id))?;
        let live = self.instance(handler, id, alive)?;
        self.inputs.insert((handler, id), values);
        Some(live)
    }

    /// A live instance of request type `handler`'s service for request `id`: round-robin by id,
    /// as a load balancer with health checks would pick.
    fn instance(&self, handler: u16, id: u64, alive: impl Fn(u16) -> bool) -> Option<u16> {
        let instances = &self.handlers_of[handler as usize];
        let n = instances.len() as u64;
        (0..n).map(|i| instances[((id + i) % n) as usize]).find(|&s| alive(s))
    }

    /// When request type `handler`'s next request arrives.
    pub fn next_at(&mut self, handler: u16) -> evsim_model::history::Micros {
        self.requests.next_at(handler as usize)
    }

    /// Request type `handler`'s next request: its id, and the service instance it goes to (a
    /// live one, round-robin by id, as a load balancer with health checks would), which then
    /// holds its fields until its transaction runs.
    ///
    /// The third part is the client's duplicate of it, when it sends it twice: its id and how
    /// long after to send it (as a follow-up: [`WorkflowRun::follow_up`]).
    pub fn next_request(
        &mut self,
        handler: u16,
        alive: impl Fn(u16) -> bool,
    ) -> (u64, Option<u16>, Option<(u64, Micros)>) {
        let mut values = self.spare.pop().unwrap_or_default();
        let (id, duplicate) = self.requests.next_into(handler as usize, &mut values);
        let duplicate = duplicate.map(|again| {
            self.follow_ups.insert((handler, again), values.clone());
            let after = self.wf.requests[handler as usize].duplicate.as_ref().map_or(0, |d| d.after_us);
            (again, after)
        });
        let live = self.instance(handler, id, alive);
        if live.is_some() {
            self.inputs.insert((handler, id), values);
        } else {
            self.spare.push(values);
        }
        (id, live, duplicate)
    }

    /// In-transaction publishing: the event request `id`'s transaction publishes when it
    /// reaches its `publish` step, from the request alone; nothing is written. None when a
    /// guard stops it first, or when `db_down` (the transaction fails at its first statement,
    /// before any send).
    pub fn preview(&mut self, handler: u16, id: u64, db_down: bool) -> Option<Message> {
        if db_down {
            return None;
        }
        let values = self.inputs.get(&(handler, id))?;
        let wf = self.wf.clone();
        let h = wf.handler(handler);
        let mut frame = std::mem::take(&mut self.scratch);
        exec::fill(&mut frame, h, Some(id as i64), values);
        let previewed = self.state.preview(&h.transaction, &mut frame);
        self.scratch = frame;
        match previewed {
            Ok(Some((event, values))) => Some(self.message(event, values)),
            Ok(None) => None,
            Err(Stop::Thrown { step, message }) => {
                // Scenario validation refuses this workflow; a caller that set it directly
                // gets no verdict rather than a run with locks not held over the send.
                let name = wf.handler_name(handler);
                self.error.get_or_insert_with(|| format!("{name}, step {}: {message} (not modelled)", step + 1));
                None
            }
            Err(stop) => {
                self.failed(handler, &Some(stop));
                None
            }
        }
    }

    /// Request `id`'s transaction at its commit (a request type's handler, or a compensation's):
    /// run it (unless `db_down`: then it fails without running) and the steps after it. None
    /// when the request is not held (its instance crashed before).
    ///
    /// `now` is when it runs (an external system's outage windows are in the run's time).
    pub fn decide(&mut self, handler: u16, id: u64, now: Micros, db_down: bool) -> Option<Decided> {
        let values = self.inputs.remove(&(handler, id))?;
        let inputs = 1 + values.len() as u16;
        let wf = self.wf.clone();
        let h = wf.handler(handler);
        // A handler without a transaction does not reach the database.
        let db_down = db_down && self.has_transaction(handler);
        let compensation = wf.requests.get(handler as usize).and_then(|r| r.compensation);
        let mut frame = std::mem::take(&mut self.scratch);
        exec::fill(&mut frame, h, Some(id as i64), &values);
        let kept = if compensation.is_some() {
            Some(values)
        } else {
            self.spare.push(values);
            None
        };
        let mut events = Vec::new();
        let mut broken = Vec::new();
        let mut compensate = None;
        let (mut out, mut after) = self.outcomes.take().unwrap_or_default();
        let mut waiting = false;
        let committed = !db_down && {
            broken = self.transaction(&wf, handler, &mut frame, &mut out, now);
            if out.stop.is_none() {
                self.after_steps(&wf, handler, 0, &mut frame, &mut after, now);
                events.reserve_exact(out.published.len() + after.published.len());
                for (event, values) in out.published.drain(..) {
                    events.push(self.message(event, values));
                }
                let refused;
                (refused, waiting) = self.after_done(handler, id, &frame, &mut after, &mut events);
                !refused
            } else {
                // `catch (e) { compensate(); throw e; }`: a compensation that requires a new
                // transaction commits on its own; one that joins the failing transaction is
                // rolled back with it, and nothing of it remains.
                let step = match &out.stop {
                    Some(Stop::Rejected { step, .. } | Stop::Thrown { step, .. }) => Some(*step as usize),
                    _ => None,
                };
                let compensating = step
                    .and_then(|i| h.transaction.get(i))
                    .is_some_and(|s| matches!(s, Step::Require { compensate: true, .. }));
                if let (true, Some(c), Some(values)) = (compensating, compensation, kept)
                    && wf.compensations[c as usize].propagation == Propagation::RequiresNew
                {
                    let c = wf.compensation_handler(handler).expect("a compensation");
                    self.inputs.insert((c, id), values);
                    compensate = Some(c);
                }
                false
            }
        };
        // Their buffers serve the next handler.
        self.outcomes = Some((out, after));
        let op = match (self.has_transaction(handler), committed) {
            (true, true) => Some(Op::TxnCommitted { handler, id, event: events.first().map(|m| m.value.id()) }),
            (true, false) => {
                Some(Op::TxnRolledBack { handler, id, event: self.would_publish(handler, &frame, inputs) })
            }
            (false, true) => None,
            (false, false) => Some(Op::Refused { handler, id }),
        };
        self.scratch = frame;
        Some(Decided { committed, op, events, broken, compensate, waiting })
    }

    /// The steps after a transaction (or all of them) ran into `after`: their events into
    /// `events`, then whether they refused the request and whether they wait for a send. A
    /// request that waits keeps its frame until [`WorkflowRun::resume`]; one that completed
    /// has its follow-ups computed.
    #[inline]
    fn after_done(
        &mut self,
        handler: u16,
        id: u64,
        frame: &[Value],
        after: &mut exec::Outcome,
        events: &mut Vec<Message>,
    ) -> (bool, bool) {
        for (event, values) in after.published.drain(..) {
            events.push(self.message(event, values));
        }
        // Without a transaction, a guard that stops the steps refuses the request (what its
        // steps published before the guard is sent all the same).
        let refused = !self.has_transaction(handler) && after.stop.is_some();
        if let Some(next) = after.waiting.filter(|_| after.stop.is_none()) {
            self.suspended.insert((handler, id), (frame.to_vec(), next));
            return (false, true);
        }
        if !refused {
            self.compute_follow_ups(handler, id, frame);
        }
        (refused, false)
    }

    /// Request `id`, blocked on a send by a publish that waits, has its delivery report: when
    /// `sent`, its steps go on from the next one (until the next publish that waits); when not,
    /// the send's `.get()` throws and the steps stop there. None when it is not blocked (its
    /// instance crashed). `committed` is whether the request went through: its transaction
    /// committed (what came after it does not undo that), or, without one, its steps all ran.
    pub fn resume(&mut self, handler: u16, id: u64, now: Micros, sent: bool) -> Option<Decided> {
        let (mut frame, next) = self.suspended.remove(&(handler, id))?;
        let transacts = self.has_transaction(handler);
        let mut events = Vec::new();
        let (refused, waiting) = if sent {
            let wf = self.wf.clone();
            let (out, mut after) = self.outcomes.take().unwrap_or_default();
            self.after_steps(&wf, handler, next, &mut frame, &mut after, now);
            let done = self.after_done(handler, id, &frame, &mut after, &mut events);
            self.outcomes = Some((out, after));
            done
        } else {
            (!transacts, false)
        };
        let op = (refused && !transacts).then_some(Op::Refused { handler, id });
        Some(Decided { committed: !refused, op, events, broken: Vec::new(), compensate: None, waiting })
    }

    /// Handler `handler`'s transaction into `out`, at `now`: the rows its commit left breaking
    /// an invariant (none when it rolled back); an expression that failed is remembered.
    #[inline]
    fn transaction(
        &mut self,
        wf: &Workflow,
        handler: u16,
        frame: &mut [Value],
        out: &mut exec::Outcome,
        now: Micros,
    ) -> Vec<Op> {
        let steps = &wf.handler(handler).transaction;
        self.state.transaction_into(wf, steps, frame, out, &mut answers(wf, &mut self.external, &mut self.calls, now));
        self.failed(handler, &out.stop);
        self.broken(&out.writes)
    }

    /// Handler `handler`'s steps after its transaction (or all of them, without one), from
    /// step `from`, into `after`, at `now`; an expression that failed is remembered.
    #[inline]
    fn after_steps(
        &mut self,
        wf: &Workflow,
        handler: u16,
        from: u16,
        frame: &mut [Value],
        after: &mut exec::Outcome,
        now: Micros,
    ) {
        let steps = &wf.handler(handler).after;
        self.state.steps_from(steps, from, frame, after, &mut answers(wf, &mut self.external, &mut self.calls, now));
        self.failed(handler, &after.stop);
    }

    /// The run's figures under the workflow's names, from its history `entries`.
    pub fn stats(&self, entries: &[evsim_model::history::Entry]) -> WorkflowStats {
        stats(&self.wf, entries, &self.calls)
    }

    /// Whether handler `handler` runs a transaction (one without goes through no database: its
    /// steps run as soon as the request arrives).
    pub fn has_transaction(&self, handler: u16) -> bool {
        !self.wf.handler(handler).transaction.is_empty()
    }

    /// A committed request's follow-ups' fields, computed from its input (`frame`'s first slots).
    fn compute_follow_ups(&mut self, handler: u16, id: u64, frame: &[Value]) {
        let wf = self.wf.clone();
        for (f, r) in wf.requests.iter().enumerate() {
            if r.follows.as_ref().is_none_or(|x| x.parent != handler) {
                continue;
            }
            let mut values = Vec::with_capacity(r.fields.len());
            for (field, d) in &r.fields {
                let Draw::Parent(e, _) = d else { continue };
                match e.eval(frame) {
                    Ok(v) => values.push(v),
                    Err(e) => {
                        self.error.get_or_insert_with(|| format!("{}, field {field}: {e}", r.name));
                        return;
                    }
                }
            }
            self.follow_ups.insert((f as u16, id), values);
        }
    }

    /// A workflow listener's steps on `record` for `group`: whether the record may be
    /// acknowledged (the steps completed, or a guard rejected it) or the handler threw, the
    /// entries to record (each step that took effect, then the rows it left breaking an
    /// invariant), and the events it publishes, for its group's `KafkaTemplate` to send: those
    /// of a committed transaction, and those its steps after it published before any stop.
    /// `now` is when the steps run.
    pub fn listen(&mut self, group: GroupId, handler: u16, record: &Polled, now: Micros) -> Listened {
        let wf = self.wf.clone();
        let h = wf.handler(handler);
        let listens_to = wf.listeners[handler as usize - wf.requests.len()].event;
        let kept = self.values.get(record.value.kind().0 as usize).and_then(|m| m.get(record.value.subject() as i64));
        let values = match kept {
            // Another event on the same topic (or not the workflow's): the listener's method
            // takes only its own event, so the record passes without effect.
            Some(values) if record.value.kind().0 as u16 == listens_to => values,
            _ => return Listened { acked: true, ops: Vec::new(), sends: Vec::new() },
        };
        let mut frame = std::mem::take(&mut self.scratch);
        exec::fill(&mut frame, h, None, values);
        let (mut out, mut after) = self.outcomes.take().unwrap_or_default();
        out.clear();
        after.clear();
        let mut stop = None;
        let mut broken = Vec::new();
        if !h.transaction.is_empty() {
            broken = self.transaction(&wf, handler, &mut frame, &mut out, now);
            // A committed transaction that wrote is one effect, at its first write.
            if out.stop.is_none() && !out.writes.is_empty() {
                let first_write =
                    h.transaction.iter().position(|s| matches!(s, Step::Update { .. } | Step::Insert { .. }));
                out.effects.extend(first_write.map(|i| i as u16));
                out.effects.sort_unstable();
            }
            stop = out.stop.take();
        }
        // Steps are numbered through the transaction, then the steps after it.
        let first = h.transaction.len() as u16;
        if stop.is_none() {
            self.after_steps(&wf, handler, 0, &mut frame, &mut after, now);
            stop = after.stop.take().map(|s| match s {
                Stop::Rejected { step, message } => Stop::Rejected { step: step + first, message },
                other => other,
            });
        }
        let steps = out.effects.iter().copied().chain(after.effects.iter().map(|s| s + first));
        let mut ops = Vec::with_capacity(out.effects.len() + after.effects.len() + 1 + broken.len());
        ops.extend(steps.map(|step| Op::Effect { group, cause: record.value, handler, step }));
        if let Some(Stop::Rejected { step, .. }) = stop {
            ops.push(Op::ListenerRejected { group, cause: record.value, handler, step });
        }
        ops.extend(broken);
        self.scratch = frame;
        let mut sends = Vec::new();
        for (event, values) in out.published.drain(..).chain(after.published.drain(..)) {
            sends.push((event, self.message(event, values)));
        }
        // Their buffers serve the next handler.
        self.outcomes = Some((out, after));
        Listened { acked: !matches!(stop, Some(Stop::Thrown { .. } | Stop::Error { .. })), ops, sends }
    }

    /// A published event's id, its record, and its values kept for the listeners. A subject
    /// outside `0..=MAX_SUBJECT` or a negative key cannot be told apart from another event's:
    /// the workflow is wrong for this run (its verdicts are withheld).
    fn message(&mut self, event: u16, values: Box<[Value]>) -> Message {
        let decl = &self.wf.events[event as usize];
        let subject = values[decl.subject as usize].as_int();
        let key = decl.key.map(|k| values[k as usize].as_int());
        if !(0..=evsim_model::history::MAX_SUBJECT as i64).contains(&subject) || key.is_some_and(|k| k < 0) {
            self.error.get_or_insert_with(|| {
                format!(
                    "event {} published with subject {subject} and key {key:?}: subjects are from 0 to 2^56 - 1 \
                     and keys are not negative",
                    decl.name
                )
            });
        }
        let subject = subject.clamp(0, evsim_model::history::MAX_SUBJECT as i64) as u64;
        let key = key.map(|k| k.max(0) as u64);
        let id = EventId::new(EventKind(event as u8), subject);
        // An event's fields are those of its first publication (a record sent before its
        // transaction commits carries what the transaction had computed by then).
        self.values[event as usize].get_or_insert(subject as i64, values);
        Message { key, value: Event::Declared { id } }
    }

    /// Stop the run's verdicts with `why` (the first reason stays).
    pub(crate) fn fail(&mut self, why: String) {
        self.error.get_or_insert(why);
    }

    /// Remember the first failed expression (in handler `handler`).
    fn failed(&mut self, handler: u16, stop: &Option<Stop>) {
        if let Some(Stop::Error { step, error }) = stop
            && self.error.is_none()
        {
            self.error = Some(format!("{}, step {}: {error}", self.wf.handler_name(handler), step + 1));
        }
    }

    /// The rows `writes` leave breaking an `always` invariant, as entries.
    fn broken(&mut self, writes: &[exec::Write]) -> Vec<Op> {
        if writes.is_empty() {
            return Vec::new();
        }
        match self.state.check_always(&self.wf, writes) {
            Ok(rows) => rows.into_iter().map(|(invariant, _, row)| Op::InvariantBroken { invariant, row }).collect(),
            Err(e) => {
                self.error.get_or_insert_with(|| format!("an invariant's condition: {e}"));
                Vec::new()
            }
        }
    }

    /// The rows breaking an invariant of the kind `always` (initial rows, before the run) or
    /// `eventually` (at its end).
    pub fn broken_rows(&mut self, eventually: bool) -> Vec<Op> {
        match self.state.check_end(&self.wf) {
            Ok(rows) => rows
                .into_iter()
                .filter(|&(i, _, _)| {
                    matches!(self.wf.invariants[i as usize], InvariantDecl::Eventually { .. }) == eventually
                })
                .map(|(invariant, _, row)| Op::InvariantBroken { invariant, row })
                .collect(),
            Err(e) => {
                self.error.get_or_insert_with(|| format!("an invariant's condition: {e}"));
                Vec::new()
            }
        }
    }

    /// The event a handler would publish whose subject depends on its input alone (the first
    /// `inputs` slots of `frame`): what a rolled-back transaction's entry names.
    fn would_publish(&self, handler: u16, frame: &[Value], inputs: u16) -> Option<EventId> {
        self.subjects[handler as usize].iter().find_map(|(event, subject)| {
            if !subject.reads_only_below(inputs) {
                return None;
            }
            let v = subject.eval(frame).ok()?.as_int();
            let v = u64::try_from(v).ok().filter(|&v| v <= evsim_model::history::MAX_SUBJECT)?;
            Some(EventId::new(EventKind(*event as u8), v))
        })
    }
}

impl World {
    /// The first request of each of the workflow's request types.
    pub(crate) fn workflow_start(&mut self) {
        let Some(run) = self.wf.as_mut() else { return };
        // Initial rows that break an `always` invariant break it from the start.
        for op in run.broken_rows(false) {
            self.history.push(0, NodeId(0), op);
        }
        let run = self.wf.as_mut().expect("a workflow run");
        for h in run.arriving().collect::<Vec<_>>() {
            let at = run.next_at(h);
            self.q.schedule_at(at, Ev::NextRequest { handler: h });
        }
    }

    /// A workflow service answered request `token` (`ok`: it succeeded): the client sends its
    /// follow-ups after their delays.
    pub(crate) fn workflow_answered(&mut self, token: u64, ok: bool) {
        let (handler, id) = evsim_model::workflow::service::token_request(token);
        let now = self.now();
        let run = self.wf.as_mut().expect("a workflow run");
        for (f, delay) in run.answered(handler, id, ok) {
            self.q.schedule_at(now + delay, Ev::FollowUp { handler: f, id });
        }
    }

    /// The client sends follow-up request `id` of type `handler`.
    pub(crate) fn follow_up(&mut self, handler: u16, id: u64) {
        let run = self.wf.as_mut().expect("a workflow run");
        let services = &self.services;
        if let Some(service) = run.follow_up(handler, id, |s| services[s as usize].alive) {
            self.record(NodeId(0), Op::Requested { handler, id });
            self.service_input(service, Input::Request(evsim_model::actor::Request::Workflow { handler, id }));
        }
    }

    /// The next request of request type `handler`, to a live instance of its service.
    pub(crate) fn next_request(&mut self, handler: u16) {
        if self.now() >= self.history.header.quiet_from {
            return;
        }
        let run = self.wf.as_mut().expect("a workflow run");
        let services = &self.services;
        let (id, live, duplicate) = run.next_request(handler, |s| services[s as usize].alive);
        self.stats.requests += 1;
        if let Some((again, after)) = duplicate {
            // A double click: the same request again, a little later.
            let now = self.now();
            self.q.schedule_at(now + after, Ev::FollowUp { handler, id: again });
        }
        if let Some(service) = live {
            self.record(NodeId(0), Op::Requested { handler, id });
            self.service_input(service, Input::Request(evsim_model::actor::Request::Workflow { handler, id }));
        }
        let run = self.wf.as_mut().expect("a workflow run");
        let at = run.next_at(handler);
        self.q.schedule_at(at, Ev::NextRequest { handler });
    }

    /// In-transaction publishing's preview ([`WorkflowRun::preview`]).
    pub(crate) fn workflow_preview(&mut self, handler: u16, id: u64) -> Option<Message> {
        let db_down = !self.db_down.is_empty();
        self.wf.as_mut().expect("a workflow run").preview(handler, id, db_down)
    }

    /// Request `id`'s transaction reaches its commit: run it, record its decision (with the
    /// outbox rows of its events, when the service publishes through an outbox), and tell the
    /// service what it publishes.
    pub(crate) fn workflow_txn(&mut self, service: u16, token: u64, handler: u16, id: u64) {
        let node = self.services[service as usize].node;
        let db_down = !self.db_down.is_empty();
        let now = self.now();
        let run = self.wf.as_mut().expect("a workflow run");
        let transacts = run.has_transaction(handler);
        let Some(Decided { committed, op, events, broken, compensate, waiting }) =
            run.decide(handler, id, now, db_down)
        else {
            return;
        };
        if transacts {
            if db_down {
                self.outage_hit(evsim_model::scenario::FaultKind::DbUnavailable, None);
            }
            if committed {
                self.stats.orders_committed += 1;
            } else {
                self.stats.orders_rejected += 1;
            }
        }
        if let Some(op) = op {
            self.record(node, op);
        }
        // With the outbox, the events' rows are written by the same transaction.
        let spec = self.services[service as usize].spec as usize;
        if committed && self.scenario.services[spec].publish == PublishStrategy::Outbox {
            let now = self.now();
            for &event in &events {
                self.db.insert_outbox(event, now, &mut self.facts);
            }
            self.record_facts(node);
        }
        for op in broken {
            self.record(node, op);
        }
        self.service_input(service, Input::WorkflowDone { token, committed, events, compensate, waiting });
    }

    /// Request `id`'s steps, blocked on a send, have its delivery report (`sent`): they go on,
    /// and the service hears how they ended.
    pub(crate) fn workflow_resume(&mut self, service: u16, token: u64, handler: u16, id: u64, sent: bool) {
        let node = self.services[service as usize].node;
        let now = self.now();
        let run = self.wf.as_mut().expect("a workflow run");
        let Some(Decided { committed, op, events, waiting, .. }) = run.resume(handler, id, now, sent) else { return };
        if let Some(op) = op {
            self.record(node, op);
        }
        self.service_input(service, Input::WorkflowDone { token, committed, events, compensate: None, waiting });
    }

    /// A workflow listener's steps on `record`, by consumer `node` of `group`: each step that
    /// took effect is an entry. Returns whether the record may be acknowledged (the steps
    /// completed, or a guard rejected it) or the handler threw.
    /// What the steps publish goes to the group's own `KafkaTemplate`, fire and forget: the
    /// record is acknowledged whatever becomes of the send.
    pub(crate) fn workflow_steps(&mut self, c: u16, handler: u16, record: Polled) -> bool {
        let (node, group, template) = {
            let cons = &self.consumers[c as usize];
            (cons.node, cons.group, cons.template)
        };
        let now = self.now();
        let run = self.wf.as_mut().expect("a workflow run");
        let Listened { acked, ops, sends } = run.listen(group, handler, &record, now);
        for op in ops {
            self.record(node, op);
        }
        for (event, message) in sends {
            match (template, self.wf_topics[event as usize]) {
                (Some(producer), Some(topic)) => self.producer_send(producer, topic, message, 0),
                // Scenario validation refuses both; a scenario set up by hand gets no verdict.
                _ => {
                    let run = self.wf.as_mut().expect("a workflow run");
                    run.fail(format!("a listener publishes event {event}, whose topic the scenario lacks"));
                }
            }
        }
        acked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::{Seeds, Stream};
    use evsim_model::workflow::{Param, compile};

    const COUPON: &str = include_str!("../../scenarios/workflows/coupon.toml");

    /// Seed 003's add-after-send API (`cache-set-after-send`): a request stops at the send it
    /// waits for; a failed send refuses it without adding the user (so the same user's next
    /// request is sent again), an acknowledged one adds the user (so the next one is refused).
    #[test]
    fn a_request_blocked_on_its_send_goes_on_by_the_delivery_report() {
        let bindings = [("dedup".to_string(), Param::Str("cache-set-after-send".into()))];
        let wf = Arc::new(compile("coupon.toml", COUPON, &bindings).unwrap_or_else(|e| panic!("{e}")));
        let seeds = Seeds::new(7);
        let (rng, business, external) =
            (seeds.stream(Stream::Workload), seeds.stream(Stream::Business), seeds.stream(Stream::External));
        let mut run = WorkflowRun::new(wf, rng, business, external, &["coupon-api"]);
        let (id, live, _) = run.next_request(0, |_| true);
        assert_eq!(live, Some(0));
        let values = run.inputs[&(0, id)].clone();
        let ask = |run: &mut WorkflowRun, id: u64| {
            run.inputs.insert((0, id), values.clone());
            run.decide(0, id, 1_000, false).expect("held")
        };
        let first = ask(&mut run, id);
        assert!(first.waiting && first.committed && first.op.is_none(), "{first:?}");
        assert_eq!(first.events.len(), 1);
        let failed = run.resume(0, id, 2_000, false).expect("blocked");
        assert_eq!((failed.committed, failed.op, failed.waiting), (false, Some(Op::Refused { handler: 0, id }), false));
        assert!(run.resume(0, id, 2_000, true).is_none(), "settled");

        let again = ask(&mut run, 100);
        assert!(again.waiting, "the failed send left the user out of the set: {again:?}");
        let sent = run.resume(0, 100, 3_000, true).expect("blocked");
        assert_eq!((sent.committed, sent.op, sent.waiting), (true, None, false));
        let third = ask(&mut run, 101);
        assert_eq!(
            (third.committed, third.op, third.events.len()),
            (false, Some(Op::Refused { handler: 0, id: 101 }), 0)
        );
    }
}
