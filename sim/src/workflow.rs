//! Running a workflow file in the simulator (issue 15), beside the compiled-in services: a
//! `[services.<name>]` table runs the workflow's requests whose `service` is `<name>`, and a
//! `[consumers.<name>]` table runs the workflow's listener `<name>`; the other tables keep their
//! Rust services. The run owns the workflow's state (its tables and cache, through the
//! executor), the requests' field values until their transaction runs, and the published
//! events' field values, by event id: records carry only the id.
//!
//! Not built yet (docs/workflow-language.md): a scenario key that names the workflow (the
//! scenario's `workflow` is set by the caller), publishing in the transaction or through the
//! outbox (a preview of the transaction), declared invariants' verdicts, and the real backend.

use crate::kernel::SimRng;
use crate::requests::Requests;
use crate::world::{Ev, World};
use evsim_model::actor::Input;
use evsim_model::event::{Event, Message};
use evsim_model::history::{EventId, EventInfo, EventKind, GroupId, NodeId, Op, Polled};
use evsim_model::scenario::{PublishStrategy, Scenario};
use evsim_model::workflow::exec::{self, State, Stop};
use evsim_model::workflow::expr::Value;
use evsim_model::workflow::{Handler, InvariantDecl, Step, Workflow};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A workflow's part of a run.
#[derive(Debug)]
pub(crate) struct WorkflowRun {
    pub(crate) wf: Arc<Workflow>,
    state: State,
    requests: Requests,
    /// Per request type, the service instances that handle it.
    pub(crate) handlers_of: Vec<Vec<u16>>,
    /// Requests whose transaction has not run yet: (request type, id) -> field values.
    inputs: BTreeMap<(u16, u64), Vec<Value>>,
    /// Published events' field values.
    values: BTreeMap<EventId, Box<[Value]>>,
    /// The first expression that failed (overflow, division by zero): the workflow is wrong,
    /// and the run gives no verdict (exit 2).
    pub(crate) error: Option<String>,
}

/// The header's declaration of a workflow's events: in file order, each announcing a committed
/// fact when a transaction publishes it.
pub(crate) fn events(wf: &Workflow) -> Vec<EventInfo> {
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

/// Handler `handler` of `wf`: its request types', then its listeners'.
fn handler_of(wf: &Workflow, handler: u16) -> &Handler {
    match (handler as usize).checked_sub(wf.requests.len()) {
        None => &wf.requests[handler as usize].handler,
        Some(l) => &wf.listeners[l].handler,
    }
}

/// The header's declaration of a workflow's invariants.
pub(crate) fn invariants(wf: &Workflow) -> Vec<evsim_model::history::InvariantInfo> {
    wf.invariants
        .iter()
        .map(|i| {
            let (InvariantDecl::Always { table, text, .. } | InvariantDecl::Eventually { table, text, .. }) = i;
            evsim_model::history::InvariantInfo {
                name: i.name().to_string(),
                table: wf.tables[*table as usize].name.clone(),
                condition: text.clone(),
            }
        })
        .collect()
}

/// The header's names of a workflow's handlers: its request types, then its listeners.
pub(crate) fn handlers(wf: &Workflow) -> Vec<String> {
    wf.requests.iter().map(|r| r.name.clone()).chain(wf.listeners.iter().map(|l| l.name.clone())).collect()
}

/// The workflow listener a `[consumers.<name>]` table runs, as a handler index.
pub(crate) fn listener_of(scenario: &Scenario, consumer: &str) -> Option<u16> {
    let wf = scenario.workflow.as_ref()?;
    let i = wf.listeners.iter().position(|l| l.name == consumer)?;
    Some((wf.requests.len() + i) as u16)
}

/// Whether a `[services.<name>]` table runs a workflow's requests.
pub(crate) fn runs_requests(scenario: &Scenario, service: &str) -> bool {
    scenario.workflow.as_ref().is_some_and(|wf| wf.requests.iter().any(|r| r.service == service))
}

impl WorkflowRun {
    pub(crate) fn new(wf: Arc<Workflow>, rng: SimRng) -> Self {
        let requests = Requests::new(&wf, rng);
        Self {
            state: State::new(&wf),
            requests,
            handlers_of: vec![Vec::new(); wf.requests.len()],
            inputs: BTreeMap::new(),
            values: BTreeMap::new(),
            error: None,
            wf,
        }
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
        self.values.entry(id).or_insert(values);
        Message { key, value: Event::Declared { id } }
    }

    /// Remember the first failed expression.
    fn failed(&mut self, what: &str, stop: &Option<Stop>) {
        if let Some(Stop::Error { step, error }) = stop
            && self.error.is_none()
        {
            self.error = Some(format!("{what}, step {}: {error}", step + 1));
        }
    }

    /// The rows `writes` leave breaking an `always` invariant, as entries.
    fn broken(&mut self, writes: &[exec::Write]) -> Vec<Op> {
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
    pub(crate) fn broken_rows(&mut self, eventually: bool) -> Vec<Op> {
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
    fn would_publish(&self, h: &Handler, frame: &[Value], inputs: u16) -> Option<EventId> {
        h.transaction.iter().chain(&h.after).find_map(|s| {
            let Step::Publish { event, values } = s else { return None };
            let subject = &values[self.wf.events[*event as usize].subject as usize];
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
        for h in 0..run.wf.requests.len() {
            if !run.handlers_of[h].is_empty() {
                let at = run.requests.next_at(h);
                self.q.schedule_at(at, Ev::NextRequest { handler: h as u16 });
            }
        }
    }

    /// The next request of request type `handler`, to a live instance of its service
    /// (round-robin by id, as a load balancer with health checks would).
    pub(crate) fn next_request(&mut self, handler: u16) {
        if self.now() >= self.history.header.quiet_from {
            return;
        }
        let run = self.wf.as_mut().expect("a workflow run");
        let (id, values) = run.requests.next(handler as usize);
        let instances = &run.handlers_of[handler as usize];
        let n = instances.len() as u64;
        let live = (0..n).map(|i| instances[((id + i) % n) as usize]).find(|&s| self.services[s as usize].alive);
        self.stats.requests += 1;
        if let Some(service) = live {
            run.inputs.insert((handler, id), values);
            self.record(NodeId(0), Op::Requested { handler, id });
            self.service_input(service, Input::Request(evsim_model::actor::Request::Workflow { handler, id }));
        }
        let run = self.wf.as_mut().expect("a workflow run");
        let at = run.requests.next_at(handler as usize);
        self.q.schedule_at(at, Ev::NextRequest { handler });
    }

    /// In-transaction publishing: the event request `id`'s transaction publishes when it
    /// reaches its `publish` step, from the rows as they are now; nothing is written. None
    /// when it stops before (a guard, a missing row), or when the database cannot be reached
    /// (the transaction fails at its first statement, before any send).
    pub(crate) fn workflow_preview(&mut self, handler: u16, id: u64) -> Option<Message> {
        if !self.db_down.is_empty() {
            return None;
        }
        let run = self.wf.as_mut().expect("a workflow run");
        let values = run.inputs.get(&(handler, id))?.clone();
        let wf = run.wf.clone();
        let h = handler_of(&wf, handler);
        let mut frame = exec::frame(h, std::iter::once(Value::Int(id as i64)).chain(values));
        let name = &wf.requests[handler as usize].name;
        match run.state.preview(&h.transaction, &mut frame) {
            Ok(Some((event, values))) => Some(run.message(event, values)),
            Ok(None) => None,
            Err(Stop::Thrown { step, message }) => {
                // Scenario validation refuses this workflow; a caller that set it directly
                // gets no verdict rather than a run with locks not held over the send.
                run.error.get_or_insert_with(|| format!("{name}, step {}: {message} (not modelled)", step + 1));
                None
            }
            Err(stop) => {
                run.failed(name, &Some(stop));
                None
            }
        }
    }

    /// Request `id`'s transaction reaches its commit: run it, record its decision, and tell
    /// the service what it publishes.
    pub(crate) fn workflow_txn(&mut self, service: u16, token: u64, handler: u16, id: u64) {
        let node = self.services[service as usize].node;
        let db_down = !self.db_down.is_empty();
        if db_down {
            self.outage_hit(evsim_model::scenario::FaultKind::DbUnavailable, None);
        }
        let run = self.wf.as_mut().expect("a workflow run");
        let Some(values) = run.inputs.remove(&(handler, id)) else { return };
        let inputs = 1 + values.len() as u16;
        let wf = run.wf.clone();
        let h = handler_of(&wf, handler);
        let mut frame = exec::frame(h, std::iter::once(Value::Int(id as i64)).chain(values));
        let mut events = Vec::new();
        let mut broken = Vec::new();
        let name = &wf.requests[handler as usize].name;
        let committed = if db_down {
            // The database cannot be reached: the transaction fails without running.
            false
        } else {
            let out = run.state.transaction(&wf, &h.transaction, &mut frame);
            run.failed(name, &out.stop);
            if out.stop.is_none() {
                broken = run.broken(&out.writes);
                let after = run.state.steps(&h.after, &mut frame);
                run.failed(name, &after.stop);
                for (event, values) in out.published.into_iter().chain(after.published) {
                    events.push(run.message(event, values));
                }
                true
            } else {
                false
            }
        };
        let op = if committed {
            self.stats.orders_committed += 1;
            Op::TxnCommitted { handler, id, event: events.first().map(|m| m.value.id()) }
        } else {
            self.stats.orders_rejected += 1;
            Op::TxnRolledBack { handler, id, event: run.would_publish(h, &frame, inputs) }
        };
        self.record(node, op);
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
        self.service_input(service, Input::WorkflowDone { token, committed, events });
    }

    /// A workflow listener's steps on `record`, by consumer `node` of `group`: each step that
    /// took effect is an entry. Returns whether the record may be acknowledged (the steps
    /// completed, or a guard rejected it) or the handler threw.
    pub(crate) fn workflow_steps(&mut self, node: NodeId, group: GroupId, handler: u16, record: Polled) -> bool {
        let run = self.wf.as_mut().expect("a workflow run");
        let wf = run.wf.clone();
        let h = handler_of(&wf, handler);
        let listens_to = wf.listeners[handler as usize - wf.requests.len()].event;
        let values = match run.values.get(&record.value) {
            // Another event on the same topic (or not the workflow's): the listener's method
            // takes only its own event, so the record passes without effect.
            Some(values) if record.value.kind().0 as u16 == listens_to => values,
            _ => return true,
        };
        let mut frame = exec::frame(h, values.iter().cloned());
        let mut effects = Vec::new();
        let mut stop = None;
        let mut broken = Vec::new();
        let name = &wf.listeners[handler as usize - wf.requests.len()].name;
        if !h.transaction.is_empty() {
            let out = run.state.transaction(&wf, &h.transaction, &mut frame);
            run.failed(name, &out.stop);
            broken = run.broken(&out.writes);
            effects.extend(out.effects);
            // A committed transaction that wrote is one effect, at its first write.
            if out.stop.is_none() && !out.writes.is_empty() {
                let first_write =
                    h.transaction.iter().position(|s| matches!(s, Step::Update { .. } | Step::Insert { .. }));
                effects.extend(first_write.map(|i| i as u16));
                effects.sort_unstable();
            }
            stop = out.stop;
        }
        if stop.is_none() {
            let out = run.state.steps(&h.after, &mut frame);
            run.failed(name, &out.stop);
            let first = h.transaction.len() as u16;
            effects.extend(out.effects.into_iter().map(|s| s + first));
            stop = out.stop;
        }
        for step in effects {
            self.record(node, Op::Effect { group, cause: record.value, handler, step });
        }
        for op in broken {
            self.record(node, op);
        }
        !matches!(stop, Some(Stop::Thrown { .. } | Stop::Error { .. }))
    }
}
