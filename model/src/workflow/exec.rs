//! Executing a compiled workflow's steps against its state: the DB's tables and the cache.
//!
//! Sans-IO, like the rest of `model/`: the driver that owns the state (the simulator, or the
//! real backend, whose DB and cache are in-process too) calls [`State::transaction`] when a
//! transaction commits and [`State::steps`] for the steps outside one; what they publish and
//! call comes back as data for the driver to carry out. Nothing here reads a clock or draws a
//! random number.
//!
//! A transaction is atomic: its writes are staged and applied together at the end, or not at
//! all. Rows are read as the transaction has written them so far. Redis is not transactional:
//! a cache command inside a `transaction` list takes effect at once and stays when the
//! transaction rolls back, as it does under Spring's `@Transactional` without Redis
//! transaction support.

use super::expr::{EvalError, Expr, Value};
use super::idmap::{IdMap, KeyMap, KeySet};
use super::{CacheCommand, CacheKind, InvariantDecl, Otherwise, RowDraw, Step, Workflow};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// One table's rows and its unique indexes.
#[derive(Clone, Debug, Default, PartialEq)]
struct Rows {
    rows: IdMap<Box<[Value]>>,
    /// Per unique constraint, the values its fields hold in some row.
    unique: Vec<BTreeSet<Vec<Value>>>,
}

/// One cache structure's contents. Redis answers commands by key, and no command iterates a
/// structure, so they are hashed (see [`KeyMap`]): the order of their contents never reaches a
/// run's behaviour.
#[derive(Clone, Debug, PartialEq)]
enum CacheData {
    Set(KeyMap<Value, KeySet<Value>>),
    Sorted(KeyMap<Value, i64>),
    Counter(KeyMap<Value, i64>),
    Keys(KeySet<Value>),
}

/// The DB's tables and the cache of a workflow's run.
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    tables: Vec<Rows>,
    caches: Vec<CacheData>,
    /// Per invariant, for `unique` ones: the rows holding each value of its fields.
    unique_index: Vec<BTreeMap<Vec<Value>, BTreeSet<i64>>>,
    /// A transaction's buffers, empty between transactions (kept so that one allocates none).
    txn: Txn,
}

/// A committed write: the row before (none for an insert); the row after is the state's
/// ([`State::written`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    pub table: u16,
    pub id: i64,
    pub before: Option<Box<[Value]>>,
}

/// Why steps stopped early.
#[derive(Clone, Debug, PartialEq)]
pub enum Stop {
    /// A `require` or a missing row with `otherwise = "reject"`: a business rejection.
    Rejected { step: u16, message: Arc<str> },
    /// A `require` with `otherwise = "throw"`, a duplicate key or a unique constraint: an
    /// exception (rollback; a listener's error handler retries).
    Thrown { step: u16, message: Arc<str> },
    /// An expression's arithmetic failed: the workflow is wrong, and the run stops with exit 2.
    Error { step: u16, error: EvalError },
}

/// What a list of steps did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// `None`: every step ran (and a transaction committed).
    pub stop: Option<Stop>,
    /// Committed writes, in the order they were made (empty when a transaction rolled back).
    pub writes: Vec<Write>,
    /// Events to publish, in step order, with every field's value (a rolled-back transaction
    /// publishes nothing; what the publishing strategy does with them is the service's affair).
    pub published: Vec<(u16, Box<[Value]>)>,
    /// External systems called, in step order.
    pub calls: Vec<String>,
    /// The steps that took effect outside the DB, in order: cache commands (which stay when a
    /// transaction rolls back) and external calls. A listener's effects, by step.
    pub effects: Vec<u16>,
    /// The steps stopped at a publish that waits for its acknowledgement (the last event of
    /// `published`): the step to go on from once it came.
    pub waiting: Option<u16>,
}

impl State {
    /// The state a run starts with: each table's initial rows, empty cache structures.
    /// `chance(p)` answers a drawn field's draw (true with probability `p`), called for each
    /// row in id order and each drawn field in field order, tables in declaration order.
    pub fn new(wf: &Workflow, chance: &mut dyn FnMut(f64) -> bool) -> Self {
        let tables = wf
            .tables
            .iter()
            .map(|t| {
                let mut r = Rows { rows: IdMap::default(), unique: vec![BTreeSet::new(); t.unique.len()] };
                let mut row: Box<[Value]> = t.initial_values.clone().into_boxed_slice();
                for id in 0..t.initial_rows as i64 {
                    for (field, draw) in &t.initial_draws {
                        let RowDraw::Chance { p, then, otherwise } = draw;
                        row[*field as usize] = if chance(*p) { *then } else { *otherwise };
                    }
                    for (u, cols) in t.unique.iter().enumerate() {
                        r.unique[u].insert(cols.iter().map(|&c| row[c as usize]).collect());
                    }
                    r.rows.insert(id, row.clone());
                }
                r
            })
            .collect();
        let caches = wf
            .caches
            .iter()
            .map(|c| match c.kind {
                CacheKind::Set => CacheData::Set(KeyMap::default()),
                CacheKind::SortedSet => CacheData::Sorted(KeyMap::default()),
                CacheKind::Counter => CacheData::Counter(KeyMap::default()),
                CacheKind::Keys => CacheData::Keys(KeySet::default()),
            })
            .collect();
        let mut st =
            Self { tables, caches, unique_index: vec![BTreeMap::new(); wf.invariants.len()], txn: Txn::default() };
        for (n, inv) in wf.invariants.iter().enumerate() {
            let InvariantDecl::Unique { table, fields, .. } = inv else { continue };
            let index: Vec<(Vec<Value>, i64)> = st.rows(*table).map(|(id, row)| (project(row, fields), id)).collect();
            for (key, id) in index {
                st.unique_index[n].entry(key).or_default().insert(id);
            }
        }
        st
    }

    /// The row `w` wrote, as the state holds it (until a later write replaces it).
    pub fn written(&self, w: &Write) -> &[Value] {
        self.row(w.table, w.id).unwrap_or(&[])
    }

    /// Row `id` of `table`, as committed.
    pub fn row(&self, table: u16, id: i64) -> Option<&[Value]> {
        self.tables.get(table as usize)?.rows.get(id).map(|r| &r[..])
    }

    /// The rows of `table` in id order.
    pub fn rows(&self, table: u16) -> impl Iterator<Item = (i64, &[Value])> + '_ {
        self.tables.get(table as usize).into_iter().flat_map(|t| t.rows.iter().map(|(id, r)| (id, &r[..])))
    }

    /// A sorted set's score of `member` (0 if absent), a counter's value, for tests and reports.
    pub fn score(&self, cache: u16, member: &Value) -> i64 {
        match self.caches.get(cache as usize) {
            Some(CacheData::Sorted(m) | CacheData::Counter(m)) => m.get(member).copied().unwrap_or(0),
            _ => 0,
        }
    }

    /// Whether key `key` of a `keys` structure exists, or a set at `key` holds anything.
    pub fn has_key(&self, cache: u16, key: &Value) -> bool {
        match self.caches.get(cache as usize) {
            Some(CacheData::Keys(k)) => k.contains(key),
            Some(CacheData::Set(s)) => s.get(key).is_some_and(|m| !m.is_empty()),
            _ => false,
        }
    }

    /// Run `steps` as one transaction against `frame` (the input's values in its first slots,
    /// sized by the handler): all its writes, or none.
    pub fn transaction(&mut self, wf: &Workflow, steps: &[Step], frame: &mut [Value]) -> Outcome {
        let mut out = Outcome::default();
        self.transaction_into(wf, steps, frame, &mut out, &mut |_| None);
        out
    }

    /// [`State::transaction`] into `out` (cleared first, its buffers reused). `fails(system)`
    /// answers each call to a declared external system: the reason it fails (an exception
    /// the step throws), or none.
    pub fn transaction_into(
        &mut self,
        wf: &Workflow,
        steps: &[Step],
        frame: &mut [Value],
        out: &mut Outcome,
        fails: &mut dyn FnMut(u16) -> Option<Arc<str>>,
    ) {
        out.clear();
        // The buffers of the last transaction, empty, reused.
        let mut txn = std::mem::take(&mut self.txn);
        for (i, step) in steps.iter().enumerate() {
            let i = i as u16;
            let res = match step {
                Step::Read { table, id, into, missing, .. } => {
                    self.read(*table, id, *into, *missing, frame, &mut txn, i)
                }
                Step::Update { table, from, set } => self.update(*table, *from, set, frame, &mut txn, i),
                Step::Insert { table, id, values, on_duplicate } => {
                    self.insert(wf, (*table, *on_duplicate), id, values, frame, &mut txn, i)
                }
                other => self.common(other, frame, out, i, fails),
            };
            if let Err(stop) = res {
                self.txn = txn.emptied();
                return out.roll_back(stop);
            }
        }
        // Commit: unique constraints over the rows as written (an insert was checked when it
        // ran; an update that took another row's values is caught here), then every write.
        for &((t, id), (existed, ref after)) in &txn.staged {
            let before = if existed { self.row(t, id) } else { None };
            if let Some(message) = self.unique_conflict(wf, &txn, t, id, before, after) {
                self.txn = txn.emptied();
                return out.roll_back(Stop::Thrown { step: steps.len() as u16, message: message.into() });
            }
        }
        for ((t, id), (_, after)) in txn.staged.drain(..) {
            let rows = &mut self.tables[t as usize];
            // The committed row it replaces (none for an insert) is what it was before.
            let before = rows.rows.insert(id, after);
            let after = rows.rows.get(id).expect("inserted just now");
            for (u, cols) in wf.tables[t as usize].unique.iter().enumerate() {
                if let Some(b) = &before {
                    rows.unique[u].remove(&project(b, cols));
                }
                rows.unique[u].insert(project(after, cols));
            }
            for (n, inv) in wf.invariants.iter().enumerate() {
                let InvariantDecl::Unique { table, fields, .. } = inv else { continue };
                if *table != t {
                    continue;
                }
                let index = &mut self.unique_index[n];
                if let Some(b) = &before
                    && let Some(ids) = index.get_mut(&project(b, fields))
                {
                    ids.remove(&id);
                }
                index.entry(project(after, fields)).or_default().insert(id);
            }
            out.writes.push(Write { table: t, id, before });
        }
        self.txn = txn.emptied();
    }

    /// In-transaction publishing's preview: the event a transaction sends when it reaches its
    /// first `publish`, before it touches the database. None when a guard before it rejects or
    /// throws (the transaction then runs to its rollback), or when it publishes nothing.
    ///
    /// Only guards on the input may come before the `publish`: a transaction that read or wrote
    /// rows first would hold their locks over the send, which is not modelled (lock waits are
    /// issue 16), and a cache command or a call could not be taken back. Such a step is an
    /// error (`Stop::Thrown` naming it; scenario validation refuses these workflows first).
    pub fn preview(&self, steps: &[Step], frame: &mut [Value]) -> Result<Option<Published>, Stop> {
        for (i, step) in steps.iter().enumerate() {
            let i = i as u16;
            match step {
                Step::Require { cond, .. } => {
                    if !cond.truth(frame).map_err(|error| Stop::Error { step: i, error })? {
                        return Ok(None);
                    }
                }
                Step::Publish { event, values, .. } => {
                    return Ok(Some((*event, eval_all(values, frame, i)?)));
                }
                Step::Read { .. }
                | Step::Update { .. }
                | Step::Insert { .. }
                | Step::Call { .. }
                | Step::Cache { .. } => {
                    let message = "a step before the in-transaction publish that is not a guard on the input".into();
                    return Err(Stop::Thrown { step: i, message });
                }
            }
        }
        Ok(None)
    }

    /// Run `steps` outside a transaction (after one committed, or in a handler without one):
    /// cache commands, guards, publications and calls, in order, until one stops them.
    pub fn steps(&mut self, steps: &[Step], frame: &mut [Value]) -> Outcome {
        let mut out = Outcome::default();
        self.steps_from(steps, 0, frame, &mut out, &mut |_| None);
        out
    }

    /// [`State::steps`] from step `from` on (numbered in the whole list: 0, or the step after
    /// a publish that waited) into `out` (cleared first, its buffers reused); `fails` as for
    /// [`State::transaction_into`]. They stop after the next publish that waits, the step to
    /// go on from in `out.waiting`.
    pub fn steps_from(
        &mut self,
        steps: &[Step],
        from: u16,
        frame: &mut [Value],
        out: &mut Outcome,
        fails: &mut dyn FnMut(u16) -> Option<Arc<str>>,
    ) {
        out.clear();
        for (i, step) in (from..).zip(steps.get(from as usize..).unwrap_or_default()) {
            if let Err(stop) = self.common(step, frame, out, i, fails) {
                out.stop = Some(stop);
                return;
            }
            if let Step::Publish { wait: true, .. } = step {
                out.waiting = Some(i + 1);
                return;
            }
        }
    }

    /// The invariants of kind `always` or `unique` that a committed write breaks: (invariant,
    /// table, row id). A `unique` one is broken by a row written with values another row holds.
    pub fn check_always(&self, wf: &Workflow, writes: &[Write]) -> Result<Vec<(u16, u16, i64)>, EvalError> {
        let mut broken = Vec::new();
        for (n, inv) in wf.invariants.iter().enumerate() {
            match inv {
                InvariantDecl::Always { table, cond, .. } => {
                    for w in writes.iter().filter(|w| w.table == *table) {
                        if !cond.truth(self.written(w))? {
                            broken.push((n as u16, *table, w.id));
                        }
                    }
                }
                // Once per value that these writes made shared: at the first written row that
                // holds it, when at most one row held it before them.
                InvariantDecl::Unique { table, fields, .. } => {
                    let mut reported: BTreeSet<Vec<Value>> = BTreeSet::new();
                    let written = writes.iter().filter(|w| w.table == *table);
                    for w in written.clone() {
                        let key = project(self.written(w), fields);
                        let holders = self.unique_index[n].get(&key).map_or(0, BTreeSet::len);
                        // Rows these writes gave the value (a row that kept it held it before).
                        let new = written
                            .clone()
                            .filter(|x| {
                                project(self.written(x), fields) == key
                                    && x.before.as_ref().is_none_or(|b| project(b, fields) != key)
                            })
                            .count();
                        if holders >= 2 && holders - new <= 1 && !reported.contains(&key) {
                            broken.push((n as u16, *table, w.id));
                            reported.insert(key);
                        }
                    }
                }
                // An update (a row written that existed before), on the row as it was and as
                // written.
                InvariantDecl::Transition { table, cond, .. } => {
                    for w in writes.iter().filter(|w| w.table == *table) {
                        let Some(before) = &w.before else { continue };
                        let frame: Vec<Value> = before.iter().chain(self.written(w)).cloned().collect();
                        if !cond.truth(&frame)? {
                            broken.push((n as u16, *table, w.id));
                        }
                    }
                }
                InvariantDecl::Eventually { .. } | InvariantDecl::Fifo { .. } | InvariantDecl::Rate { .. } => {}
            }
        }
        Ok(broken)
    }

    /// The rows that break an invariant of kind `eventually`, at the end of a run (and, for
    /// `always`, any row that broke it from the start: initial rows are not written).
    pub fn check_end(&self, wf: &Workflow) -> Result<Vec<(u16, u16, i64)>, EvalError> {
        let mut broken = Vec::new();
        for (n, inv) in wf.invariants.iter().enumerate() {
            match inv {
                InvariantDecl::Always { table, cond, .. } | InvariantDecl::Eventually { table, cond, .. } => {
                    for (id, row) in self.rows(*table) {
                        if !cond.truth(row)? {
                            broken.push((n as u16, *table, id));
                        }
                    }
                }
                // Each shared value, at its second row (by id).
                InvariantDecl::Unique { table, .. } => {
                    for ids in self.unique_index[n].values() {
                        broken.extend(ids.iter().nth(1).map(|&id| (n as u16, *table, id)));
                    }
                }
                // Judged at each update, or from the history's messages: nothing at the end.
                InvariantDecl::Transition { .. } | InvariantDecl::Fifo { .. } | InvariantDecl::Rate { .. } => {}
            }
        }
        broken.sort_by_key(|&(n, _, id)| (n, id));
        Ok(broken)
    }

    #[allow(clippy::too_many_arguments)]
    fn read(
        &self,
        table: u16,
        id: &Expr,
        into: u16,
        missing: Otherwise,
        frame: &mut [Value],
        txn: &mut Txn,
        step: u16,
    ) -> Result<(), Stop> {
        let id = eval(id, frame, step)?.as_int();
        let row = txn.get(table, id).map(|(_, r)| &r[..]).or_else(|| self.row(table, id));
        let Some(row) = row else {
            let message: Arc<str> = format!("row {id} not found").into();
            return Err(match missing {
                Otherwise::Reject => Stop::Rejected { step, message },
                Otherwise::Throw => Stop::Thrown { step, message },
            });
        };
        let into = into as usize;
        frame[into..into + row.len()].copy_from_slice(row);
        txn.read_ids.push((into as u16, id));
        Ok(())
    }

    fn update(
        &self,
        table: u16,
        from: u16,
        set: &[(u16, Expr)],
        frame: &mut [Value],
        txn: &mut Txn,
        step: u16,
    ) -> Result<(), Stop> {
        let Some(id) = txn.read_id(from) else {
            // The compiler puts a read before every update; keep going wrong loudly, not silently.
            return Err(Stop::Thrown { step, message: "an update of a row that was not read".into() });
        };
        let base = from as usize;
        if txn.get(table, id).is_none() {
            match self.row(table, id) {
                Some(r) => txn.put(table, id, (true, Box::from(r))),
                // Read in this transaction, so staged or committed: never here.
                None => return Err(Stop::Thrown { step, message: format!("row {id} vanished").into() }),
            }
        }
        // Every value from the row as read (the frame), then written together (SQL's `SET`); a
        // failed expression rolls the whole transaction back, staged row included.
        let after = txn.get_mut(table, id).expect("staged just now");
        for (f, e) in set {
            after[*f as usize] = eval(e, frame, step)?;
        }
        for (f, _) in set {
            frame[base + *f as usize] = after[*f as usize];
        }
        Ok(())
    }

    /// `INSERT`: a duplicate primary key or a unique constraint's violation stops it as
    /// `on_duplicate` says (an unchecked exception by default; `Reject` when the handler catches
    /// Spring's `DataIntegrityViolationException`).
    #[allow(clippy::too_many_arguments)]
    fn insert(
        &self,
        wf: &Workflow,
        (table, on_duplicate): (u16, Otherwise),
        id: &Expr,
        values: &[Expr],
        frame: &mut [Value],
        txn: &mut Txn,
        step: u16,
    ) -> Result<(), Stop> {
        let id = eval(id, frame, step)?.as_int();
        let stop = |message: String| match on_duplicate {
            Otherwise::Reject => Stop::Rejected { step, message: message.into() },
            Otherwise::Throw => Stop::Thrown { step, message: message.into() },
        };
        if txn.get(table, id).is_some() || self.row(table, id).is_some() {
            let message = format!(
                "duplicate entry {id} for the primary key of {} (DuplicateKeyException)",
                wf.tables[table as usize].name
            );
            return Err(stop(message));
        }
        let row = eval_all(values, frame, step)?;
        if let Some(message) = self.unique_conflict(wf, txn, table, id, None, &row) {
            return Err(stop(message));
        }
        txn.put(table, id, (false, row));
        Ok(())
    }

    /// Whether row `id` of `t`, written as `after` (`before` as committed), takes the values
    /// of a unique constraint another row holds, committed or written in `txn`: the
    /// `DataIntegrityViolationException` it raises.
    fn unique_conflict(
        &self,
        wf: &Workflow,
        txn: &Txn,
        t: u16,
        id: i64,
        before: Option<&[Value]>,
        after: &[Value],
    ) -> Option<String> {
        let table = &wf.tables[t as usize];
        for (u, cols) in table.unique.iter().enumerate() {
            let key = project(after, cols);
            let own = before.map(|b| project(b, cols));
            let taken_by_another = self.tables[t as usize].unique[u].contains(&key) && own.as_ref() != Some(&key);
            let taken_here =
                txn.staged.iter().any(|&((t2, id2), (_, ref row))| t2 == t && id2 != id && project(row, cols) == key);
            if taken_by_another || taken_here {
                let names: Vec<&str> = cols.iter().map(|&c| table.fields[c as usize].0.as_str()).collect();
                return Some(format!(
                    "duplicate entry for the unique constraint on {}({}) (DataIntegrityViolationException)",
                    table.name,
                    names.join(", ")
                ));
            }
        }
        None
    }

    /// The steps that run the same inside and outside a transaction.
    fn common(
        &mut self,
        step: &Step,
        frame: &mut [Value],
        out: &mut Outcome,
        i: u16,
        fails: &mut dyn FnMut(u16) -> Option<Arc<str>>,
    ) -> Result<(), Stop> {
        match step {
            Step::Require { cond, otherwise, message, .. } => {
                if !cond.truth(frame).map_err(|error| Stop::Error { step: i, error })? {
                    let message = message.clone();
                    return Err(match otherwise {
                        Otherwise::Reject => Stop::Rejected { step: i, message },
                        Otherwise::Throw => Stop::Thrown { step: i, message },
                    });
                }
            }
            Step::Publish { event, values, .. } => {
                out.published.push((*event, eval_all(values, frame, i)?));
            }
            Step::Call { system, declared } => {
                // A call that fails throws (Spring's `RestClientException` and the like): in a
                // transaction, a rollback; in a listener, its error handler's turn.
                if let Some(message) = declared.and_then(&mut *fails) {
                    return Err(Stop::Thrown { step: i, message });
                }
                out.calls.push(system.clone());
                out.effects.push(i);
            }
            Step::Cache { cache, command, answer } => {
                let added = self.cache(*cache, command, frame, i)?;
                if let Some(slot) = answer {
                    frame[*slot as usize] = Value::Bool(added);
                }
                if !matches!(command, CacheCommand::Sismember { .. }) {
                    out.effects.push(i);
                }
            }
            Step::Read { .. } | Step::Update { .. } | Step::Insert { .. } => {
                // The compiler keeps these inside transactions.
                return Err(Stop::Thrown { step: i, message: "a DB step outside a transaction".into() });
            }
        }
        Ok(())
    }

    /// Apply a Redis command; SADD's answer (whether the member was added).
    fn cache(&mut self, cache: u16, command: &CacheCommand, frame: &[Value], step: u16) -> Result<bool, Stop> {
        let data = &mut self.caches[cache as usize];
        Ok(match (command, data) {
            (CacheCommand::Sadd { key, member }, CacheData::Set(m)) => {
                m.entry(eval(key, frame, step)?).or_default().insert(eval(member, frame, step)?)
            }
            (CacheCommand::Sismember { key, member }, CacheData::Set(m)) => {
                let k = eval(key, frame, step)?;
                let v = eval(member, frame, step)?;
                m.get(&k).is_some_and(|s| s.contains(&v))
            }
            (CacheCommand::Srem { key, member }, CacheData::Set(m)) => {
                let k = eval(key, frame, step)?;
                let v = eval(member, frame, step)?;
                m.get_mut(&k).is_some_and(|s| s.remove(&v))
            }
            (CacheCommand::Zincrby { member, by }, CacheData::Sorted(m)) => {
                let (k, by) = (eval(member, frame, step)?, eval(by, frame, step)?.as_int());
                let score = m.entry(k).or_insert(0);
                *score = score.checked_add(by).ok_or(Stop::Error { step, error: EvalError::Overflow })?;
                true
            }
            (CacheCommand::Incrby { key, by }, CacheData::Counter(m)) => {
                let (k, by) = (eval(key, frame, step)?, eval(by, frame, step)?.as_int());
                let n = m.entry(k).or_insert(0);
                *n = n.checked_add(by).ok_or(Stop::Error { step, error: EvalError::Overflow })?;
                true
            }
            (CacheCommand::Del { key }, data) => {
                let k = eval(key, frame, step)?;
                match data {
                    CacheData::Keys(s) => s.remove(&k),
                    CacheData::Set(m) => m.remove(&k).is_some(),
                    CacheData::Counter(m) | CacheData::Sorted(m) => m.remove(&k).is_some(),
                }
            }
            // The compiler checks each command's structure type.
            _ => false,
        })
    }
}

/// An event a step published: its index in the workflow's events, and its fields' values.
pub type Published = (u16, Box<[Value]>);

/// A row a transaction wrote: whether it existed before (an update; its committed row is what
/// it was), and as written.
type Staged = (bool, Box<[Value]>);

/// A transaction under way: staged rows and which row each read loaded. A transaction touches
/// a few rows, so both are short lists searched in order (no map to allocate and walk).
#[derive(Clone, Debug, Default, PartialEq)]
struct Txn {
    /// (table, id), whether the row existed and the row as written, in the order rows were
    /// first written.
    staged: Vec<((u16, i64), Staged)>,
    /// The first slot of each read and the id of the row it loaded (the latest read of a slot
    /// last).
    read_ids: Vec<(u16, i64)>,
}

impl Txn {
    /// Empty, its buffers kept: what the state holds between transactions.
    fn emptied(mut self) -> Self {
        self.staged.clear();
        self.read_ids.clear();
        self
    }

    fn get(&self, t: u16, id: i64) -> Option<&Staged> {
        self.staged.iter().find(|(k, _)| *k == (t, id)).map(|(_, s)| s)
    }

    /// The row as written so far.
    fn get_mut(&mut self, t: u16, id: i64) -> Option<&mut [Value]> {
        self.staged.iter_mut().find(|(k, _)| *k == (t, id)).map(|(_, (_, row))| &mut row[..])
    }

    /// Stage `row`, not staged yet, for (t, id) (later writes edit it in place).
    fn put(&mut self, t: u16, id: i64, row: Staged) {
        debug_assert!(self.get(t, id).is_none(), "a row is staged once");
        self.staged.push(((t, id), row));
    }

    fn read_id(&self, slot: u16) -> Option<i64> {
        self.read_ids.iter().rev().find(|(s, _)| *s == slot).map(|&(_, id)| id)
    }
}

impl Outcome {
    /// A rolled-back transaction: no writes, nothing published or called; cache commands stay.
    fn roll_back(&mut self, stop: Stop) {
        self.stop = Some(stop);
        self.writes.clear();
        self.published.clear();
        self.calls.clear();
    }

    /// Empty, keeping its buffers.
    pub fn clear(&mut self) {
        self.stop = None;
        self.writes.clear();
        self.published.clear();
        self.calls.clear();
        self.effects.clear();
        self.waiting = None;
    }
}

#[inline]
/// Every expression of `values`, in order, into a row or an event's fields (allocated once at
/// its size: a collected `Result` would grow a vector, then shrink it into the box).
fn eval_all(values: &[Expr], frame: &[Value], step: u16) -> Result<Box<[Value]>, Stop> {
    let mut out = Vec::with_capacity(values.len());
    for e in values {
        out.push(eval(e, frame, step)?);
    }
    Ok(out.into_boxed_slice())
}

/// An expression's value; a field or a constant (most of a row's and an event's values) read
/// in place.
#[inline]
fn eval(e: &Expr, frame: &[Value], step: u16) -> Result<Value, Stop> {
    match e {
        Expr::Slot(s) => Ok(frame[*s as usize]),
        Expr::Const(v) => Ok(*v),
        _ => e.eval(frame).map_err(|error| Stop::Error { step, error }),
    }
}

fn project(row: &[Value], cols: &[u16]) -> Vec<Value> {
    cols.iter().map(|&c| row[c as usize]).collect()
}

/// Make `frame` (a buffer kept between handlers) `handler`'s frame: the request's `id` (none
/// for a listener) and `input` in its first slots, the rest zero.
pub fn fill(frame: &mut Vec<Value>, handler: &super::Handler, id: Option<i64>, input: &[Value]) {
    frame.clear();
    frame.extend(id.map(Value::Int));
    frame.extend_from_slice(input);
    frame.resize(handler.frame as usize, Value::Int(0));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::compile;

    /// A new frame for `handler` with `input` in its first slots and the rest zero (as [`fill`]).
    fn frame<const N: usize>(handler: &crate::workflow::Handler, input: [Value; N]) -> Vec<Value> {
        let mut f = Vec::new();
        fill(&mut f, handler, None, &input);
        f
    }

    const ORDER: &str = include_str!("../../../scenarios/workflows/order.toml");

    fn order() -> Workflow {
        compile("order.toml", ORDER, &[("stock_per_product".into(), compile::Param::Int(5))]).expect("compiles")
    }

    /// A create-order request: id, user, product, qty.
    fn create(wf: &Workflow, id: i64, product: i64, qty: i64) -> Vec<Value> {
        let h = &wf.request("create-order").expect("create-order").handler;
        frame(h, [id, 9, product, qty].map(Value::Int))
    }

    #[test]
    fn an_order_commits_all_its_writes_or_none() {
        let wf = order();
        let mut st = State::new(&wf, &mut |_| false);
        let (product, orders) = (wf.table("product").expect("t"), wf.table("orders").expect("t"));
        let steps = &wf.request("create-order").expect("r").handler.transaction;
        let out = st.transaction(&wf, steps, &mut create(&wf, 1, 2, 4));
        assert_eq!(out.stop, None);
        assert_eq!(st.row(product, 2), Some(&[Value::Int(1)][..]));
        assert_eq!(st.row(orders, 1).map(|r| r[3]), Some(Value::Enum(0)), "PENDING");
        assert_eq!(out.writes.len(), 2);
        assert_eq!(out.writes[0].before.as_deref(), Some(&[Value::Int(5)][..]));
        assert_eq!(out.published, vec![(0, vec![Value::Int(1), Value::Int(9), Value::Int(2), Value::Int(4)].into())]);

        // Not enough stock left: rejected, nothing written, nothing published.
        let before = st.clone();
        let out = st.transaction(&wf, steps, &mut create(&wf, 2, 2, 2));
        assert!(matches!(out.stop, Some(Stop::Rejected { step: 1, .. })), "{:?}", out.stop);
        assert!(out.writes.is_empty() && out.published.is_empty());
        assert_eq!(st, before);

        // An unknown product: the read finds no row.
        let out = st.transaction(&wf, steps, &mut create(&wf, 3, 99, 1));
        assert!(matches!(out.stop, Some(Stop::Rejected { step: 0, .. })), "{:?}", out.stop);

        // The same order id again: the primary key refuses it, and the stock deduction with it.
        let out = st.transaction(&wf, steps, &mut create(&wf, 1, 3, 1));
        assert!(
            matches!(&out.stop, Some(Stop::Thrown { step: 3, message }) if message.contains("DuplicateKeyException"))
        );
        assert_eq!(st.row(product, 3), Some(&[Value::Int(5)][..]));
        assert_eq!(st.check_end(&wf), Ok(vec![]));
    }

    /// The preview sends what a publish-first transaction publishes and writes nothing; a guard
    /// on the request before it can stop it; a read before it is refused (its lock would be
    /// held over the send).
    #[test]
    fn a_preview_gives_the_event_a_publish_first_transaction_sends_and_writes_nothing() {
        let publish = "  { publish = \"order-created\", values = { order_id = \"request.id\", user = \"request.user\", product = \"request.product\", qty = \"request.qty\" } },\n";
        let first = "transaction = [\n";
        let text = ORDER.replacen(publish, "", 1).replacen(
            first,
            &format!("{first}  {{ require = \"request.qty < 3\" }},\n{publish}"),
            1,
        );
        let wf = compile("order.toml", &text, &[]).expect("compiles");
        let st = State::new(&wf, &mut |_| false);
        let steps = &wf.request("create-order").expect("r").handler.transaction;
        let before = st.clone();
        let sent = st.preview(steps, &mut create(&wf, 1, 2, 2)).expect("no error");
        assert_eq!(sent, Some((0, vec![Value::Int(1), Value::Int(9), Value::Int(2), Value::Int(2)].into())));
        assert_eq!(st, before);
        assert_eq!(st.preview(steps, &mut create(&wf, 1, 2, 4)), Ok(None), "the guard stops it");
        let wf = order();
        let refused =
            st.preview(&wf.request("create-order").expect("r").handler.transaction, &mut create(&wf, 1, 2, 2));
        assert!(matches!(refused, Err(Stop::Thrown { step: 0, .. })), "{refused:?}");
    }

    #[test]
    fn the_listener_updates_the_ranking_and_deletes_the_cart() {
        let wf = order();
        let mut st = State::new(&wf, &mut |_| false);
        let l = wf.listener("order-event-consumer").expect("listener");
        let mut f = frame(&l.handler, [1, 9, 2, 4].map(Value::Int));
        let out = st.steps(&l.handler.after, &mut f);
        assert_eq!((out.stop, out.effects), (None, vec![0, 1]));
        let ranking = wf.caches.iter().position(|c| c.name == "ranking").expect("ranking") as u16;
        assert_eq!(st.score(ranking, &Value::Int(2)), 4);
        st.steps(&l.handler.after, &mut f);
        assert_eq!(st.score(ranking, &Value::Int(2)), 8, "ZINCRBY is not idempotent");
    }

    #[test]
    fn an_always_invariant_catches_the_write_that_breaks_it() {
        // The order workflow without its guard oversells.
        let text = ORDER.replace("{ require = \"product.stock >= request.qty\", otherwise = \"reject\" },", "");
        let wf =
            compile("order.toml", &text, &[("stock_per_product".into(), compile::Param::Int(5))]).expect("compiles");
        let mut st = State::new(&wf, &mut |_| false);
        let steps = &wf.request("create-order").expect("r").handler.transaction;
        let out = st.transaction(&wf, steps, &mut create(&wf, 1, 2, 3));
        assert_eq!(st.check_always(&wf, &out.writes), Ok(vec![]));
        let out = st.transaction(&wf, steps, &mut create(&wf, 2, 2, 3));
        assert_eq!(out.stop, None);
        assert_eq!(st.check_always(&wf, &out.writes), Ok(vec![(0, wf.table("product").expect("t"), 2)]));
        assert_eq!(st.check_end(&wf).map(|v| v.len()), Ok(1));
    }

    #[test]
    fn a_unique_constraint_rejects_the_second_row_and_a_cache_command_outlives_a_rollback() {
        let text = r#"
[workflow]
name = "coupons"

[tables.user_coupon]
fields = { coupon = "int", user = "int" }
unique = [["coupon", "user"]]

[cache.requested]
type = "set"

[events.issued]
topic = "issued"
key = "request"
fields = { request = "int" }

[requests.issue]
service = "coupon-api"
rate_per_sec = 10
fields = { coupon = 1, user = "uniform(0, 9)" }
transaction = [
  { sadd = "requested", key = "request.coupon", member = "request.user", as = "added" },
  { insert = "user_coupon", id = "request.id", values = { coupon = "request.coupon", user = "request.user" } },
]
"#;
        let wf = compile("coupons.toml", text, &[]).unwrap_or_else(|e| panic!("{e}"));
        let mut st = State::new(&wf, &mut |_| false);
        let h = &wf.request("issue").expect("issue").handler;
        let first = st.transaction(&wf, &h.transaction, &mut frame(h, [1, 1, 7].map(Value::Int)));
        assert_eq!((first.stop, first.writes.len()), (None, 1));
        let second = st.transaction(&wf, &h.transaction, &mut frame(h, [2, 1, 7].map(Value::Int)));
        assert!(
            matches!(&second.stop, Some(Stop::Thrown { message, .. }) if message.contains("user_coupon(coupon, user)")),
            "{:?}",
            second.stop
        );
        assert_eq!(st.rows(0).count(), 1);
        // The SADD of the rolled-back transaction stayed: Redis is not part of it.
        assert_eq!(second.effects.len(), 1);
        assert!(st.has_key(0, &Value::Int(1)));

        // Caught by the handler (`on_duplicate = "reject"`): a rejection at the insert, for the
        // primary key as for the constraint.
        let insert = "{ insert = \"user_coupon\", id = \"request.id\", values = { coupon = \"request.coupon\", user = \"request.user\" } }";
        assert!(text.contains(insert));
        let caught = text.replace(insert, &insert.replace(" } }", " }, on_duplicate = \"reject\" }"));
        let wf = compile("coupons.toml", &caught, &[]).unwrap_or_else(|e| panic!("{e}"));
        let h = &wf.request("issue").expect("issue").handler;
        let mut st = State::new(&wf, &mut |_| false);
        let mut run =
            |id: i64, user: i64| st.transaction(&wf, &h.transaction, &mut frame(h, [id, 1, user].map(Value::Int)));
        assert_eq!(run(1, 7).stop, None);
        for (id, user, what) in [(2, 7, "user_coupon(coupon, user)"), (1, 8, "primary key")] {
            let out = run(id, user);
            assert!(
                matches!(&out.stop, Some(Stop::Rejected { step: 1, message }) if message.contains(what)),
                "{:?}",
                out.stop
            );
            assert!(out.writes.is_empty());
        }

        // A constraint that exists only where `unique_when` holds.
        let text = text.replace(
            "unique = [[\"coupon\", \"user\"]]",
            "unique = [[\"coupon\", \"user\"]]\nunique_when = \"params.strict\"",
        );
        let text = text.replace("name = \"coupons\"", "name = \"coupons\"\n\n[params]\nstrict = false");
        let wf = compile("coupons.toml", &text, &[]).unwrap_or_else(|e| panic!("{e}"));
        assert!(wf.tables[0].unique.is_empty());
        let h = &wf.request("issue").expect("issue").handler;
        let mut st = State::new(&wf, &mut |_| false);
        for id in [1, 2] {
            let out = st.transaction(&wf, &h.transaction, &mut frame(h, [id, 1, 7].map(Value::Int)));
            assert_eq!(out.stop, None, "no constraint: the second copy commits");
        }
        let strict =
            compile("coupons.toml", &text, &[("strict".into(), compile::Param::Bool(true))]).expect("compiles");
        assert_eq!(strict.tables[0].unique, vec![vec![0, 1]]);
    }

    /// A `transition` invariant judges each committed update on the row as it was and as
    /// written: an order moved from PAID back to PENDING breaks "forward only"; a move from
    /// PENDING, an unchanged status and an insert do not.
    #[test]
    fn a_transition_invariant_judges_each_update_on_the_old_and_new_row() {
        let text = r#"
[workflow]
name = "statuses"

[tables.orders]
fields = { status = ["PENDING", "PAID", "CANCELLED"], note = "int" }
rows = { count = 1 }

[requests.pay]
service = "order-service"
rate_per_sec = 10
transaction = [
  { read = "orders", id = "0", lock = "for-update" },
  { update = "orders", set = { status = "'PAID'" } },
]

[requests.reopen]
service = "order-service"
rate_per_sec = 10
transaction = [
  { read = "orders", id = "0", lock = "for-update" },
  { update = "orders", set = { status = "'PENDING'" } },
]

[requests.add]
service = "order-service"
rate_per_sec = 10
fields = { note = "uniform(0, 9)" }
transaction = [
  { insert = "orders", id = "request.id", values = { status = "'PAID'", note = "request.note" } },
]

[invariants.forward]
transition = "orders"
holds = "old.status == new.status or old.status == 'PENDING'"
"#;
        let wf = compile("statuses.toml", text, &[]).unwrap_or_else(|e| panic!("{e}"));
        let mut st = State::new(&wf, &mut |_| false);
        let to = |st: &mut State, request: &str| {
            let h = &wf.request(request).expect("a request").handler;
            let out = st.transaction(&wf, &h.transaction, &mut frame(h, [Value::Int(1)]));
            assert_eq!(out.stop, None);
            st.check_always(&wf, &out.writes).expect("evaluates")
        };
        assert_eq!(to(&mut st, "pay"), vec![], "PENDING to PAID");
        assert_eq!(to(&mut st, "pay"), vec![], "PAID stays PAID");
        assert_eq!(to(&mut st, "reopen"), vec![(0, 0, 0)], "PAID back to PENDING");
        let add = &wf.request("add").expect("add").handler;
        let out = st.transaction(&wf, &add.transaction, &mut frame(add, [5, 3].map(Value::Int)));
        assert_eq!(st.check_always(&wf, &out.writes), Ok(vec![]), "an insert is no transition");
        assert_eq!(st.check_end(&wf), Ok(vec![]), "judged at updates only");
    }

    /// A `unique` invariant detects what no constraint stops: the second row with a user's
    /// coupon breaks it at its commit, an update that moves a row's values away settles it, and
    /// the end of a run names every row but the first of each shared value.
    #[test]
    fn a_uniqueness_invariant_breaks_at_the_second_row_holding_the_values() {
        let text = r#"
[workflow]
name = "coupons"

[tables.user_coupon]
fields = { coupon = "int", user = "int" }
rows = { count = 2, values = { coupon = 5 } }

[requests.issue]
service = "coupon-api"
rate_per_sec = 10
fields = { coupon = 1, user = "uniform(0, 9)" }
transaction = [
  { insert = "user_coupon", id = "request.id", values = { coupon = "request.coupon", user = "request.user" } },
]

[requests.move]
service = "coupon-api"
rate_per_sec = 10
fields = { user = "uniform(0, 9)" }
transaction = [
  { read = "user_coupon", id = "request.id", lock = "for-update" },
  { update = "user_coupon", set = { user = "request.user" } },
]

[invariants.coupon-once]
unique = ["user_coupon.coupon", "user_coupon.user"]
"#;
        let wf = compile("coupons.toml", text, &[]).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(&wf.invariants[0], InvariantDecl::Unique { fields, text, .. }
            if fields == &vec![0, 1] && text == "unique(user_coupon.coupon, user_coupon.user)"));
        let mut st = State::new(&wf, &mut |_| false);
        // The two initial rows share (5, 0): the second breaks it from the start.
        assert_eq!(st.check_end(&wf), Ok(vec![(0, 0, 1)]));
        let issue = &wf.request("issue").expect("issue").handler;
        let run = |st: &mut State, id: i64, user: i64| {
            let out = st.transaction(&wf, &issue.transaction, &mut frame(issue, [id, 1, user].map(Value::Int)));
            assert_eq!(out.stop, None);
            st.check_always(&wf, &out.writes)
        };
        assert_eq!(run(&mut st, 10, 7), Ok(vec![]));
        assert_eq!(run(&mut st, 11, 8), Ok(vec![]));
        assert_eq!(run(&mut st, 12, 7), Ok(vec![(0, 0, 12)]), "user 7's second coupon 1");
        assert_eq!(run(&mut st, 13, 7), Ok(vec![]), "a third copy: the value was shared already");
        assert_eq!(st.check_end(&wf), Ok(vec![(0, 0, 1), (0, 0, 12)]));
        let mv = &wf.request("move").expect("move").handler;
        for (row, user) in [(12, 9), (13, 8)] {
            let out = st.transaction(&wf, &mv.transaction, &mut frame(mv, [row, user].map(Value::Int)));
            let broke = st.check_always(&wf, &out.writes);
            // Row 13 moves to user 8, whose coupon row 11 holds: shared again.
            assert_eq!((out.stop, broke), (None, Ok(if row == 13 { vec![(0, 0, 13)] } else { vec![] })));
        }
        assert_eq!(st.check_end(&wf), Ok(vec![(0, 0, 1), (0, 0, 13)]), "(1, 7) no longer shared");
    }

    #[test]
    fn overflow_stops_the_steps_with_an_error() {
        let text = ORDER.replace("product.stock - request.qty", "product.stock * 9223372036854775807");
        let wf = compile("order.toml", &text, &[]).expect("compiles");
        let mut st = State::new(&wf, &mut |_| false);
        let steps = &wf.request("create-order").expect("r").handler.transaction;
        let out = st.transaction(&wf, steps, &mut create(&wf, 1, 2, 1));
        assert_eq!(out.stop, Some(Stop::Error { step: 2, error: EvalError::Overflow }));
        assert!(out.writes.is_empty());
    }

    /// A call to a declared external system that fails throws at its step: the transaction
    /// rolls back, nothing is written or published; answered, it commits and the call is made.
    #[test]
    fn a_failed_call_rolls_its_transaction_back() {
        let publish = "  { publish = \"order-created\"";
        let text = ORDER.replacen("[cache.cart]", "[systems.gateway]\nerror_rate = 0.5\n\n[cache.cart]", 1).replacen(
            publish,
            &format!("  {{ call = \"gateway\" }},\n{publish}"),
            1,
        );
        let wf = compile("order.toml", &text, &[]).unwrap_or_else(|e| panic!("{e}"));
        let steps = &wf.request("create-order").expect("r").handler.transaction;
        let mut st = State::new(&wf, &mut |_| false);
        let before = st.clone();
        let mut out = Outcome::default();
        let mut asked = Vec::new();
        st.transaction_into(&wf, steps, &mut create(&wf, 1, 2, 1), &mut out, &mut |s| {
            asked.push(s);
            Some("gateway is down".into())
        });
        assert_eq!(out.stop, Some(Stop::Thrown { step: 4, message: "gateway is down".into() }));
        assert!(out.writes.is_empty() && out.published.is_empty() && out.calls.is_empty());
        assert_eq!((st == before, asked), (true, vec![0]));
        st.transaction_into(&wf, steps, &mut create(&wf, 1, 2, 1), &mut out, &mut |_| None);
        assert_eq!((out.stop, out.writes.len(), out.calls.clone()), (None, 2, vec!["gateway".to_string()]));
    }
}
