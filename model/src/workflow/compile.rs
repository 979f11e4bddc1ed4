//! From a workflow file's text to a [`Workflow`]: serde reads the TOML (unknown keys are
//! errors), then every name is resolved and every expression checked, each error at the file,
//! line and column of what is wrong, with what was expected there.

use super::expr::{self, Resolved, Scope, Type, Value};
use super::{
    Cache, CacheCommand, CacheKind, CompensationDecl, Draw, Duplicate, EventDecl, FollowUp, Handler, InvariantDecl,
    ListenerDecl, Lock, Otherwise, Propagation, RequestDecl, RowDraw, Step, System, Table, Workflow,
};
use crate::scenario::ScenarioError;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;
use toml::Spanned;

/// Bounds on what a workflow may declare (docs/workflow-language.md, "Limits").
pub const MAX_TABLES: usize = 64;
pub const MAX_FIELDS: usize = 64;
pub const MAX_EVENTS: usize = 200;
// Each declared event is an `EventKind` of the history, which has room for 256.
const _: () = assert!(MAX_EVENTS <= crate::history::MAX_EVENT_KINDS);
pub const MAX_REQUESTS: usize = 64;
pub const MAX_LISTENERS: usize = 256;
pub const MAX_CACHES: usize = 64;
/// External systems a workflow declares, and outage windows each.
pub const MAX_SYSTEMS: usize = 64;
pub const MAX_OUTAGES: usize = 64;
pub const MAX_STEPS: usize = 64;
pub const MAX_INVARIANTS: usize = 64;
/// Values of a Zipf distribution (the workload keeps a table of their weights).
pub const MAX_ZIPF_VALUES: u64 = 10_000_000;
/// Initial rows over every table.
pub const MAX_INITIAL_ROWS: u64 = 10_000_000;
/// A follow-up's delay after the request it follows (a day).
pub const MAX_DELAY_MS: i64 = 86_400_000;
/// The most effects a `rate` invariant allows per window.
pub const MAX_RATE_EFFECTS: i64 = 1_000_000;

/// The type of a request field's values.
fn draw_type(d: &Draw) -> Type {
    match d {
        Draw::Parent(_, t) => *t,
        Draw::Const(_) | Draw::Uniform { .. } | Draw::Zipf { .. } => Type::Int,
    }
}

/// A map in the file's order (a request's fields are drawn in the order written).
struct Ordered<T>(Vec<(Spanned<String>, T)>);

impl<T> Default for Ordered<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<Spanned<String>, T>()? {
                    out.push((k, v));
                }
                // The toml crate hands a table's keys over sorted; their spans give back the
                // order they were written in.
                out.sort_by_key(|(k, _)| k.span().start);
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

/// An expression in the file: a string, or a plain TOML integer, boolean or float.
#[derive(Clone, Debug)]
struct Text {
    text: String,
    /// Whether the file wrote a string (so character offsets map into it).
    quoted: bool,
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an expression (a string such as \"product.stock - request.qty\") or a number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text { text: v.to_string(), quoted: true })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text { text: v.to_string(), quoted: false })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text { text: v.to_string(), quoted: false })
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text { text: format!("{v:?}"), quoted: false })
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text { text: v.to_string(), quoted: false })
            }
        }
        d.deserialize_any(V)
    }
}

type RawExpr = Spanned<Text>;

/// A field's type: `"int"`, `"string"`, `"bool"`, or an enum's values.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawType {
    Name(String),
    Enum(Vec<String>),
}

/// A parameter's default value.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawParam {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    workflow: RawHead,
    #[serde(default)]
    params: BTreeMap<String, Spanned<RawParam>>,
    #[serde(default)]
    tables: BTreeMap<Spanned<String>, Spanned<RawTable>>,
    #[serde(default)]
    cache: BTreeMap<Spanned<String>, Spanned<RawCache>>,
    #[serde(default)]
    systems: BTreeMap<Spanned<String>, Spanned<RawSystem>>,
    #[serde(default)]
    events: BTreeMap<Spanned<String>, Spanned<RawEvent>>,
    #[serde(default)]
    requests: BTreeMap<Spanned<String>, Spanned<RawRequest>>,
    #[serde(default)]
    listeners: BTreeMap<Spanned<String>, Spanned<RawListener>>,
    #[serde(default)]
    invariants: BTreeMap<Spanned<String>, Spanned<RawInvariant>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHead {
    name: String,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    fields: Spanned<Ordered<Spanned<RawType>>>,
    #[serde(default)]
    rows: Option<Spanned<RawRows>>,
    #[serde(default)]
    unique: Vec<Spanned<Vec<Spanned<String>>>>,
    /// A condition on the parameters: the unique constraints exist only where it holds (one
    /// file for a design with and without them).
    #[serde(default)]
    unique_when: Option<RawExpr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRows {
    count: RawExpr,
    #[serde(default)]
    values: BTreeMap<Spanned<String>, RawExpr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    #[serde(rename = "type")]
    kind: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSystem {
    #[serde(default)]
    error_rate: Option<RawExpr>,
    #[serde(default)]
    outages_ms: Vec<Spanned<Vec<RawExpr>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    topic: Spanned<String>,
    fields: Spanned<Ordered<Spanned<RawType>>>,
    #[serde(default)]
    key: Option<Spanned<String>>,
    #[serde(default)]
    subject: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    service: Spanned<String>,
    #[serde(default)]
    rate_per_sec: Option<RawExpr>,
    #[serde(default)]
    follows: Option<Spanned<String>>,
    #[serde(default)]
    delay_ms: Option<RawExpr>,
    #[serde(default)]
    fields: Ordered<RawExpr>,
    #[serde(default)]
    transaction: Vec<Spanned<RawStep>>,
    #[serde(default)]
    steps: Vec<Spanned<RawStep>>,
    #[serde(default)]
    compensation: Option<Spanned<RawCompensation>>,
    #[serde(default)]
    duplicate: Option<Spanned<RawDuplicate>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDuplicate {
    rate: RawExpr,
    after_ms: RawExpr,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompensation {
    #[serde(default)]
    propagation: Option<Spanned<String>>,
    transaction: Vec<Spanned<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    event: Spanned<String>,
    #[serde(default)]
    transaction: Vec<Spanned<RawStep>>,
    #[serde(default)]
    steps: Vec<Spanned<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInvariant {
    #[serde(default)]
    always: Option<RawExpr>,
    #[serde(default)]
    eventually: Option<RawExpr>,
    #[serde(default)]
    unique: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    fifo: Option<Spanned<String>>,
    #[serde(default)]
    rate: Option<Spanned<RawRate>>,
    /// `transition = "table"` with `holds`: a condition on every update of a row.
    #[serde(default)]
    transition: Option<Spanned<String>>,
    #[serde(default)]
    holds: Option<RawExpr>,
}

/// `rate = { listener, max, per_ms }`: at most `max` effects of a listener's group per window.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    listener: Spanned<String>,
    max: RawExpr,
    per_ms: RawExpr,
}

/// One step as written: exactly one verb, with the options that verb takes.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStep {
    read: Option<Spanned<String>>,
    id: Option<RawExpr>,
    lock: Option<Spanned<String>>,
    require: Option<RawExpr>,
    otherwise: Option<Spanned<String>>,
    compensate: Option<Spanned<bool>>,
    on_duplicate: Option<Spanned<String>>,
    update: Option<Spanned<String>>,
    set: Option<BTreeMap<Spanned<String>, RawExpr>>,
    insert: Option<Spanned<String>>,
    values: Option<BTreeMap<Spanned<String>, RawExpr>>,
    publish: Option<Spanned<String>>,
    sadd: Option<Spanned<String>>,
    srem: Option<Spanned<String>>,
    sismember: Option<Spanned<String>>,
    zincrby: Option<Spanned<String>>,
    incrby: Option<Spanned<String>>,
    del: Option<Spanned<String>>,
    key: Option<RawExpr>,
    member: Option<RawExpr>,
    by: Option<RawExpr>,
    #[serde(rename = "as")]
    answer: Option<Spanned<String>>,
    call: Option<Spanned<String>>,
    /// `publish` only: wait for the broker's acknowledgement (`kafkaTemplate.send(...).get()`).
    wait: Option<Spanned<bool>>,
    /// A condition on the parameters: the step exists only where it holds.
    when: Option<RawExpr>,
}

/// A parameter's value: what a scenario binds, or the workflow's default.
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}

/// Compile the workflow in `source` (read from `file`), with `bindings` overriding its
/// parameters' defaults (a binding of an undeclared parameter is an error of the binding's
/// caller: it is reported against `file` without a position).
pub fn compile(file: &str, source: &str, bindings: &[(String, Param)]) -> Result<Workflow, ScenarioError> {
    compile_bound(file, source, bindings, &|_, msg| ScenarioError::at(file, source, None, msg))
}

/// [`compile`], with a binding's mistake reported by `at_binding(index of the binding, what
/// was expected)`: a scenario names the place of its own `params` key.
pub fn compile_bound(
    file: &str,
    source: &str,
    bindings: &[(String, Param)],
    at_binding: &dyn Fn(usize, String) -> ScenarioError,
) -> Result<Workflow, ScenarioError> {
    let raw: Raw = toml::from_str(source).map_err(|e| {
        let msg = e.message().to_string();
        ScenarioError::at(file, source, e.span(), msg)
    })?;
    let c = Compiler { file, source, bindings, at_binding };
    c.workflow(raw, bindings, at_binding)
}

struct Compiler<'a> {
    file: &'a str,
    source: &'a str,
    bindings: &'a [(String, Param)],
    at_binding: &'a dyn Fn(usize, String) -> ScenarioError,
}

/// The names a step can see and the slots they live in.
struct Frame<'w> {
    params: &'w BTreeMap<String, Param>,
    tables: &'w [Table],
    enums: &'w [Vec<String>],
    /// `request`, `parent` (both with an `id`) or `event`, and its fields.
    input: (&'static str, Vec<(String, Type)>),
    /// Whether a failed `require` may run a compensation (the request declares one).
    compensates: bool,
    /// Rows read so far: table index and first slot.
    reads: Vec<(u16, u16)>,
    /// SADD answers bound with `as`.
    answers: Vec<(String, u16)>,
    next: u16,
}

fn kind(p: &Param) -> &'static str {
    match p {
        Param::Int(_) => "an integer",
        Param::Float(_) => "a number",
        Param::Bool(_) => "true or false",
        Param::Str(_) => "a string",
    }
}

fn param_value(p: &Param) -> Result<Value, String> {
    match p {
        Param::Int(i) => Ok(Value::Int(*i)),
        Param::Bool(b) => Ok(Value::Bool(*b)),
        Param::Str(s) => Ok(Value::str(s)),
        Param::Float(_) => Err("an integer, boolean or string parameter (a float one can only be a rate)".into()),
    }
}

fn resolve_param(params: &BTreeMap<String, Param>, path: &[&str]) -> Option<Result<Resolved, String>> {
    let ["params", name] = path else { return None };
    Some(match params.get(*name) {
        Some(p) => param_value(p).map(Resolved::Const),
        None => Err(format!(
            "a declared parameter ({}), not `{name}`",
            params.keys().map(|k| format!("params.{k}")).collect::<Vec<_>>().join(", ")
        )),
    })
}

impl Scope for Frame<'_> {
    fn resolve(&self, path: &[&str]) -> Result<Resolved, String> {
        if let Some(r) = resolve_param(self.params, path) {
            return r;
        }
        if let [head, field] = path {
            if *head == self.input.0 {
                if self.input.0 != "event" && *field == "id" {
                    return Ok(Resolved::Slot(0, Type::Int));
                }
                let base = u16::from(self.input.0 != "event");
                return match self.input.1.iter().position(|(n, _)| n == field) {
                    Some(i) => Ok(Resolved::Slot(base + i as u16, self.input.1[i].1)),
                    None => Err(format!("a field of the {} ({}), not `{field}`", self.input.0, self.input_names())),
                };
            }
            if let Some(t) = self.tables.iter().position(|t| t.name == *head) {
                let Some(&(_, base)) = self.reads.iter().rev().find(|(ti, _)| *ti as usize == t) else {
                    return Err(format!("a row this step can see: `{head}` is not read before it (add a `read` step)"));
                };
                return row_field(&self.tables[t], field, base);
            }
        }
        if let [name] = path
            && let Some((_, slot)) = self.answers.iter().find(|(n, _)| n == name)
        {
            return Ok(Resolved::Slot(*slot, Type::Bool));
        }
        let mut seen: Vec<String> = vec![format!("{}.<field>", self.input.0)];
        seen.extend(self.reads.iter().map(|(t, _)| format!("{}.<field>", self.tables[*t as usize].name)));
        seen.extend(self.answers.iter().map(|(n, _)| n.clone()));
        seen.push("params.<name>".into());
        Err(format!("a name this step can see ({}), not `{}`", seen.join(", "), path.join(".")))
    }

    fn enum_value(&self, ty: u16, name: &str) -> Option<u16> {
        enum_value(self.enums, ty, name)
    }

    fn enum_values(&self, ty: u16) -> Vec<String> {
        self.enums.get(ty as usize).cloned().unwrap_or_default()
    }
}

impl Frame<'_> {
    fn input_names(&self) -> String {
        let mut names: Vec<&str> = Vec::new();
        if self.input.0 != "event" {
            names.push("id");
        }
        names.extend(self.input.1.iter().map(|(n, _)| n.as_str()));
        names.join(", ")
    }
}

/// Only parameters: what initial rows, rates and distributions may use.
struct ParamsOnly<'w> {
    params: &'w BTreeMap<String, Param>,
}

impl Scope for ParamsOnly<'_> {
    fn resolve(&self, path: &[&str]) -> Result<Resolved, String> {
        resolve_param(self.params, path).unwrap_or_else(|| {
            Err(format!("a constant: numbers and params.<name> only here, not `{}`", path.join(".")))
        })
    }
    fn enum_value(&self, _: u16, _: &str) -> Option<u16> {
        None
    }
    fn enum_values(&self, _: u16) -> Vec<String> {
        Vec::new()
    }
}

/// An invariant's row: `table.field` of any one table.
struct RowOf<'w> {
    params: &'w BTreeMap<String, Param>,
    tables: &'w [Table],
    enums: &'w [Vec<String>],
    table: Cell<Option<u16>>,
}

impl Scope for RowOf<'_> {
    fn resolve(&self, path: &[&str]) -> Result<Resolved, String> {
        if let Some(r) = resolve_param(self.params, path) {
            return r;
        }
        let [head, field] = path else {
            return Err(format!("a table's field (table.field) or params.<name>, not `{}`", path.join(".")));
        };
        let Some(t) = self.tables.iter().position(|t| t.name == *head) else {
            return Err(format!(
                "a table ({}), not `{head}`",
                self.tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
            ));
        };
        match self.table.get() {
            Some(u) if u as usize != t => {
                return Err(format!(
                    "fields of one table per invariant (it already names {})",
                    self.tables[u as usize].name
                ));
            }
            _ => self.table.set(Some(t as u16)),
        }
        row_field(&self.tables[t], field, 0)
    }
    fn enum_value(&self, ty: u16, name: &str) -> Option<u16> {
        enum_value(self.enums, ty, name)
    }
    fn enum_values(&self, ty: u16) -> Vec<String> {
        self.enums.get(ty as usize).cloned().unwrap_or_default()
    }
}

/// A transition of a row of `table`: `old.<field>` as the row was, `new.<field>` as an update
/// wrote it (slots: the old row, then the new).
struct OldNew<'w> {
    params: &'w BTreeMap<String, Param>,
    table: &'w Table,
    enums: &'w [Vec<String>],
}

impl Scope for OldNew<'_> {
    fn resolve(&self, path: &[&str]) -> Result<Resolved, String> {
        if let Some(r) = resolve_param(self.params, path) {
            return r;
        }
        match path {
            ["old", field] => row_field(self.table, field, 0),
            ["new", field] => row_field(self.table, field, self.table.fields.len() as u16),
            _ => Err(format!(
                "old.<field> or new.<field> of table {} ({}), or params.<name>, not `{}`",
                self.table.name,
                names(&self.table.fields),
                path.join(".")
            )),
        }
    }
    fn enum_value(&self, ty: u16, name: &str) -> Option<u16> {
        enum_value(self.enums, ty, name)
    }
    fn enum_values(&self, ty: u16) -> Vec<String> {
        self.enums.get(ty as usize).cloned().unwrap_or_default()
    }
}

/// Field `field` of a row of `table` whose first field is at slot `base`.
fn row_field(table: &Table, field: &str, base: u16) -> Result<Resolved, String> {
    match table.fields.iter().position(|(n, _)| n == field) {
        Some(i) => Ok(Resolved::Slot(base + i as u16, table.fields[i].1)),
        None => Err(format!("a field of table {} ({}), not `{field}`", table.name, names(&table.fields))),
    }
}

fn enum_value(enums: &[Vec<String>], ty: u16, name: &str) -> Option<u16> {
    enums.get(ty as usize)?.iter().position(|v| v == name).map(|i| i as u16)
}

/// The names of `fields`, for error messages.
fn names(fields: &[(String, Type)]) -> String {
    fields.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
}

/// A name that expressions can use: a letter or `_`, then letters, digits and `_`.
fn is_identifier(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_') && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

const RESERVED: [&str; 9] = ["params", "request", "event", "parent", "and", "or", "not", "true", "false"];

impl Compiler<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> ScenarioError {
        ScenarioError::at(self.file, self.source, Some(span), message)
    }

    fn at_name(&self, name: &Spanned<String>, what: &str) -> Result<(), ScenarioError> {
        // A field is named after a `.` (`event.request`), where no word is reserved.
        let reserved = !what.ends_with("field") && RESERVED.contains(&name.get_ref().as_str());
        if !is_identifier(name.get_ref()) || reserved {
            return Err(self.err(
                name.span(),
                format!(
                    "a {what} name usable in expressions (a letter or `_`, then letters, digits, `_`; not one of {}), not `{}`",
                    RESERVED.join(", "),
                    name.get_ref()
                ),
            ));
        }
        Ok(())
    }

    fn bound(&self, span: Range<usize>, n: usize, max: usize, what: &str) -> Result<(), ScenarioError> {
        if n > max {
            return Err(
                self.err(span, format!("at most {max} {what} (docs/workflow-language.md, \"Limits\"), found {n}"))
            );
        }
        Ok(())
    }

    /// Compile expression `raw` against `scope`.
    fn expr(&self, raw: &RawExpr, scope: &dyn Scope, want: Option<Type>) -> Result<expr::Expr, ScenarioError> {
        let t = raw.get_ref();
        expr::compile(&t.text, scope, want).map(|(e, _)| e).map_err(|e| self.expr_error(raw, e))
    }

    fn expr_error(&self, raw: &RawExpr, e: expr::ExprError) -> ScenarioError {
        let t = raw.get_ref();
        let pos =
            if t.quoted { super::expr_position(self.source, raw.span(), &t.text, e.offset) } else { raw.span().start };
        self.err(pos..pos, format!("expected {} (in `{}`)", e.message, t.text))
    }

    /// Expression `raw` against `scope`, whatever its type.
    fn expr_typed(&self, raw: &RawExpr, scope: &dyn Scope) -> Result<(expr::Expr, Type), ScenarioError> {
        expr::compile(&raw.get_ref().text, scope, None).map_err(|e| self.expr_error(raw, e))
    }

    /// A constant: evaluated before the run, from numbers and parameters.
    fn constant(&self, raw: &RawExpr, params: &BTreeMap<String, Param>, want: Type) -> Result<Value, ScenarioError> {
        let e = self.expr(raw, &ParamsOnly { params }, Some(want))?;
        e.eval(&[]).map_err(|x| self.err(raw.span(), format!("a constant that can be computed: {x}")))
    }

    fn field_type(&self, t: &Spanned<RawType>, enums: &mut Vec<Vec<String>>) -> Result<Type, ScenarioError> {
        match t.get_ref() {
            RawType::Name(n) => match n.as_str() {
                "int" => Ok(Type::Int),
                "string" => Ok(Type::Str),
                "bool" => Ok(Type::Bool),
                _ => Err(self.err(
                    t.span(),
                    format!("a type: \"int\", \"string\", \"bool\" or an enum's values ([\"PENDING\", \"PAID\"]), not \"{n}\""),
                )),
            },
            RawType::Enum(values) => {
                let mut seen = std::collections::BTreeSet::new();
                if values.is_empty() || values.len() > 256 || !values.iter().all(|v| seen.insert(v)) {
                    return Err(self.err(t.span(), "an enum of 1 to 256 distinct values"));
                }
                enums.push(values.clone());
                Ok(Type::Enum((enums.len() - 1) as u16))
            }
        }
    }

    fn fields(
        &self,
        raw: &Spanned<Ordered<Spanned<RawType>>>,
        enums: &mut Vec<Vec<String>>,
        what: &str,
    ) -> Result<Vec<(String, Type)>, ScenarioError> {
        self.bound(raw.span(), raw.get_ref().0.len(), MAX_FIELDS, "fields")?;
        let mut out: Vec<(String, Type)> = Vec::new();
        for (name, t) in &raw.get_ref().0 {
            self.at_name(name, what)?;
            out.push((name.get_ref().clone(), self.field_type(t, enums)?));
        }
        Ok(out)
    }

    fn workflow(
        &self,
        raw: Raw,
        bindings: &[(String, Param)],
        at_binding: &dyn Fn(usize, String) -> ScenarioError,
    ) -> Result<Workflow, ScenarioError> {
        // Parameters: defaults, then the bindings.
        let mut params: BTreeMap<String, Param> = BTreeMap::new();
        for (name, p) in &raw.params {
            let v = match p.get_ref() {
                RawParam::Int(i) => Param::Int(*i),
                RawParam::Float(f) => Param::Float(*f),
                RawParam::Bool(b) => Param::Bool(*b),
                RawParam::Str(s) => Param::Str(s.clone()),
            };
            if !is_identifier(name) {
                return Err(self.err(p.span(), format!("a parameter name of letters, digits and `_`, not `{name}`")));
            }
            params.insert(name.clone(), v);
        }
        for (i, (name, v)) in bindings.iter().enumerate() {
            let declared = params.keys().cloned().collect::<Vec<_>>().join(", ");
            let Some(slot) = params.get_mut(name) else {
                return Err(at_binding(
                    i,
                    format!("a binding of a parameter {} declares ({declared}), not `{name}`", self.file),
                ));
            };
            let same_kind = matches!(
                (&*slot, v),
                (Param::Int(_), Param::Int(_))
                    | (Param::Float(_), Param::Float(_) | Param::Int(_))
                    | (Param::Bool(_), Param::Bool(_))
                    | (Param::Str(_), Param::Str(_))
            );
            if !same_kind {
                return Err(at_binding(
                    i,
                    format!(
                        "{} for params.{name} (the type of its default in {}), not {}",
                        kind(slot),
                        self.file,
                        kind(v)
                    ),
                ));
            }
            *slot = match (&*slot, v) {
                (Param::Float(_), Param::Int(i)) => Param::Float(*i as f64),
                _ => v.clone(),
            };
        }

        let mut enums = Vec::new();
        let mut tables = Vec::new();
        let mut rows_total = 0u64;
        self.bound(0..0, raw.tables.len(), MAX_TABLES, "tables")?;
        for (name, t) in &raw.tables {
            self.at_name(name, "table")?;
            let fields = self.fields(&t.get_ref().fields, &mut enums, "field")?;
            let mut unique = Vec::new();
            for u in &t.get_ref().unique {
                let mut cols = Vec::new();
                for f in u.get_ref() {
                    cols.push(self.field_of(&fields, &format!("table {}", name.get_ref()), f)? as u16);
                }
                if cols.is_empty() {
                    return Err(self.err(u.span(), "a unique constraint over one or more fields"));
                }
                unique.push(cols);
            }
            if let Some(when) = &t.get_ref().unique_when {
                if t.get_ref().unique.is_empty() {
                    return Err(self.err(when.span(), "`unique_when` on a table with `unique` constraints"));
                }
                if !self.constant(when, &params, Type::Bool)?.as_bool() {
                    unique.clear();
                }
            }
            let mut initial_values: Vec<Value> = fields
                .iter()
                .map(|(_, t)| match t {
                    Type::Int => Value::Int(0),
                    Type::Bool => Value::Bool(false),
                    Type::Str => Value::str(""),
                    Type::Enum(_) => Value::Enum(0),
                })
                .collect();
            let mut initial_rows = 0;
            let mut initial_draws = Vec::new();
            if let Some(rows) = &t.get_ref().rows {
                let n = self.constant(&rows.get_ref().count, &params, Type::Int)?.as_int();
                if n < 0 {
                    return Err(self.err(rows.get_ref().count.span(), format!("a row count of 0 or more, found {n}")));
                }
                initial_rows = n as u64;
                rows_total = rows_total.saturating_add(initial_rows);
                if rows_total > MAX_INITIAL_ROWS {
                    return Err(self.err(
                        rows.get_ref().count.span(),
                        format!("at most {MAX_INITIAL_ROWS} initial rows over every table (docs/workflow-language.md, \"Limits\"), found {rows_total}"),
                    ));
                }
                for (f, v) in &rows.get_ref().values {
                    let i = self.field_of(&fields, &format!("table {}", name.get_ref()), f)?;
                    match self.row_draw(v, &params, fields[i].1)? {
                        Some(draw) => initial_draws.push((i as u16, draw)),
                        None => initial_values[i] = self.constant(v, &params, fields[i].1)?,
                    }
                }
                initial_draws.sort_by_key(|(i, _)| *i);
            }
            tables.push(Table {
                name: name.get_ref().clone(),
                fields,
                initial_rows,
                initial_values,
                initial_draws,
                unique,
            });
        }

        let mut caches = Vec::new();
        self.bound(0..0, raw.cache.len(), MAX_CACHES, "cache structures")?;
        for (name, c) in &raw.cache {
            self.at_name(name, "cache")?;
            let kind = match c.get_ref().kind.get_ref().as_str() {
                "set" => CacheKind::Set,
                "sorted-set" => CacheKind::SortedSet,
                "counter" => CacheKind::Counter,
                "keys" => CacheKind::Keys,
                other => {
                    return Err(self.err(
                        c.get_ref().kind.span(),
                        format!("a cache type: \"set\", \"sorted-set\", \"counter\" or \"keys\", not \"{other}\""),
                    ));
                }
            };
            caches.push(Cache { name: name.get_ref().clone(), kind });
        }

        let mut systems = Vec::new();
        self.bound(0..0, raw.systems.len(), MAX_SYSTEMS, "external systems")?;
        for (name, sys) in &raw.systems {
            self.at_name(name, "system")?;
            systems.push(self.system(name.get_ref(), sys, &params)?);
        }

        let mut events = Vec::new();
        self.bound(0..0, raw.events.len(), MAX_EVENTS, "events")?;
        for (name, e) in &raw.events {
            let e = e.get_ref();
            let fields = self.fields(&e.fields, &mut enums, "field")?;
            let owner = format!("event {}", name.get_ref());
            let key = match &e.key {
                None => None,
                Some(k) => {
                    let i = self.field_of(&fields, &owner, k)?;
                    if !matches!(fields[i].1, Type::Int | Type::Str) {
                        return Err(self.err(k.span(), "a key field of type int or string"));
                    }
                    Some(i as u16)
                }
            };
            let subject = match (&e.subject, key) {
                (Some(s), _) => self.field_of(&fields, &owner, s)? as u16,
                (None, Some(k)) => k,
                (None, None) => {
                    return Err(
                        self.err(e.fields.span(), "a `subject` field (or a `key`) naming what the event announces")
                    );
                }
            };
            if fields[subject as usize].1 != Type::Int {
                return Err(
                    self.err(e.subject.as_ref().map_or(e.fields.span(), |s| s.span()), "a subject field of type int")
                );
            }
            if e.topic.get_ref().is_empty() {
                return Err(self.err(e.topic.span(), "a topic name"));
            }
            events.push(EventDecl {
                name: name.get_ref().clone(),
                topic: e.topic.get_ref().clone(),
                fields,
                key,
                subject,
            });
        }

        let mut wf = Workflow {
            name: raw.workflow.name.clone(),
            description: raw.workflow.description.clone(),
            params: Vec::new(),
            enums,
            tables,
            caches,
            systems,
            events,
            requests: Vec::new(),
            listeners: Vec::new(),
            compensations: Vec::new(),
            invariants: Vec::new(),
        };

        self.bound(0..0, raw.requests.len(), MAX_REQUESTS, "requests")?;
        self.requests(&mut wf, &params, &raw.requests)?;

        self.bound(0..0, raw.listeners.len(), MAX_LISTENERS, "listeners")?;
        let mut listened = Vec::new();
        for (name, l) in &raw.listeners {
            let l = l.get_ref();
            let event = self.event_of(&wf, &l.event)?;
            let input = wf.events[event as usize].fields.clone();
            let handler = self.handler(&wf, &params, ("event", input), false, &l.transaction, &l.steps)?;
            wf.listeners.push(ListenerDecl { name: name.get_ref().clone(), event, handler });
            listened.push(l.event.span());
        }
        self.reachable_listeners(&wf, &listened)?;

        self.bound(0..0, raw.invariants.len(), MAX_INVARIANTS, "invariants")?;
        for (name, inv) in &raw.invariants {
            let i = inv.get_ref();
            let kinds = [
                i.always.is_some(),
                i.eventually.is_some(),
                i.unique.is_some(),
                i.fifo.is_some(),
                i.rate.is_some(),
                i.transition.is_some(),
            ];
            if kinds.iter().filter(|&&k| k).count() != 1 {
                return Err(self.err(
                    inv.span(),
                    "exactly one of `always`, `eventually`, `unique`, `fifo`, `rate` or `transition`",
                ));
            }
            if let (Some(h), None) = (&i.holds, &i.transition) {
                return Err(self.err(h.span(), "`holds` with `transition = \"<table>\"`"));
            }
            if let Some(t) = &i.transition {
                let Some(holds) = &i.holds else {
                    return Err(self.err(t.span(), "`holds = \"<condition on old.<field> and new.<field>>\"` with it"));
                };
                let table = self.table_of(&wf, t)?;
                let scope = OldNew { params: &params, table: &wf.tables[table as usize], enums: &wf.enums };
                let cond = self.expr(holds, &scope, Some(Type::Bool))?;
                let text = holds.get_ref().text.clone();
                wf.invariants.push(InvariantDecl::Transition { name: name.get_ref().clone(), table, cond, text });
                continue;
            }
            let (cond, always) = match (&i.always, &i.eventually, &i.unique, &i.fifo, &i.rate) {
                (Some(c), None, None, None, None) => (c, true),
                (None, Some(c), None, None, None) => (c, false),
                (None, None, Some(fields), None, None) => {
                    let decl = self.unique_invariant(&wf, name.get_ref(), fields)?;
                    wf.invariants.push(decl);
                    continue;
                }
                (None, None, None, Some(listener), None) => {
                    let text = format!("fifo({})", listener.get_ref());
                    let listener = self.listener_of(&wf, listener)?;
                    wf.invariants.push(InvariantDecl::Fifo { name: name.get_ref().clone(), listener, text });
                    continue;
                }
                (None, None, None, None, Some(rate)) => {
                    let decl = self.rate_invariant(&wf, &params, name.get_ref(), rate.get_ref())?;
                    wf.invariants.push(decl);
                    continue;
                }
                _ => unreachable!("exactly one kind, checked above"),
            };
            let scope = RowOf { params: &params, tables: &wf.tables, enums: &wf.enums, table: Cell::new(None) };
            let e = self.expr(cond, &scope, Some(Type::Bool))?;
            let Some(table) = scope.table.get() else {
                return Err(self.err(cond.span(), "a condition over a table's rows (table.field)"));
            };
            let name = name.get_ref().clone();
            let text = cond.get_ref().text.clone();
            wf.invariants.push(if always {
                InvariantDecl::Always { name, table, cond: e, text }
            } else {
                InvariantDecl::Eventually { name, table, cond: e, text }
            });
        }
        wf.params = params
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Param::Int(i) => Value::Int(i),
                    Param::Bool(b) => Value::Bool(b),
                    Param::Str(s) => Value::str(&s),
                    // Floats are rates and exponents, already folded into what uses them.
                    Param::Float(f) => Value::str(&format!("{f:?}")),
                };
                (k, v)
            })
            .collect();
        Ok(wf)
    }

    /// The requests, each compiled after the request it follows (a follow-up's fields are
    /// typed by that request's), then their compensations, numbered in request order.
    fn requests(
        &self,
        wf: &mut Workflow,
        params: &BTreeMap<String, Param>,
        raw: &BTreeMap<Spanned<String>, Spanned<RawRequest>>,
    ) -> Result<(), ScenarioError> {
        let names: Vec<&str> = raw.keys().map(|k| k.get_ref().as_str()).collect();
        let mut parents = Vec::new();
        for (name, r) in raw {
            let parent = match (&r.get_ref().rate_per_sec, &r.get_ref().follows) {
                (Some(_), None) => None,
                (None, Some(f)) => match names.iter().position(|n| n == f.get_ref()) {
                    Some(p) => Some((p, f.span())),
                    None => {
                        return Err(self.err(
                            f.span(),
                            format!("a declared request ({}), not `{}`", names.join(", "), f.get_ref()),
                        ));
                    }
                },
                _ => {
                    return Err(self.err(
                        name.span(),
                        "exactly one of `rate_per_sec` (arrivals of its own) or `follows` (sent after the request it \
                         names was answered OK)",
                    ));
                }
            };
            if let (None, Some(d)) = (&parent, &r.get_ref().delay_ms) {
                return Err(self.err(d.span(), "`delay_ms` only with `follows`"));
            }
            parents.push(parent);
        }
        // Inputs' types by request, known once it is compiled.
        let mut inputs: Vec<Option<Vec<(String, Type)>>> = vec![None; raw.len()];
        let mut compiled: Vec<Option<RequestDecl>> = vec![None; raw.len()];
        while compiled.iter().any(Option::is_none) {
            let ready = (0..raw.len())
                .find(|&i| compiled[i].is_none() && parents[i].as_ref().is_none_or(|(p, _)| compiled[*p].is_some()));
            let Some(i) = ready else {
                let i = compiled.iter().position(Option::is_none).expect("one left");
                let span = parents[i].as_ref().map_or(0..0, |(_, s)| s.clone());
                return Err(self.err(
                    span,
                    "a chain of follow-ups that starts at a request with a `rate_per_sec`: this one comes back to itself",
                ));
            };
            let (name, r) = raw.iter().nth(i).expect("request i");
            let r = r.get_ref();
            let parent = parents[i].as_ref().map(|(p, _)| (*p as u16, inputs[*p].clone().expect("compiled")));
            let decl = self.request(wf, params, name, r, parent)?;
            inputs[i] = Some(decl.fields.iter().map(|(n, d)| (n.clone(), draw_type(d))).collect());
            compiled[i] = Some(decl);
        }
        wf.requests = compiled.into_iter().map(|r| r.expect("compiled")).collect();
        for (i, r) in raw.values().enumerate() {
            // (A `compensate` without a compensation is refused at the step.)
            let Some(c) = &r.get_ref().compensation else { continue };
            let runs =
                r.get_ref().transaction.iter().any(|s| s.get_ref().compensate.as_ref().is_some_and(|c| *c.get_ref()));
            if !runs {
                return Err(self.err(
                    c.span(),
                    "a compensation that a `require` with `compensate = true` in the request's transaction runs; \
                     none does, so it can never run",
                ));
            }
            let propagation = self.propagation(&c.get_ref().propagation, params)?;
            let input = inputs[i].clone().expect("compiled");
            let handler = self.handler(wf, params, ("request", input), false, &c.get_ref().transaction, &[])?;
            wf.requests[i].compensation = Some(wf.compensations.len() as u16);
            wf.compensations.push(CompensationDecl { request: i as u16, propagation, handler });
        }
        Ok(())
    }

    /// One request type; `parent`: the request it follows and that request's input types.
    fn request(
        &self,
        wf: &Workflow,
        params: &BTreeMap<String, Param>,
        name: &Spanned<String>,
        r: &RawRequest,
        parent: Option<(u16, Vec<(String, Type)>)>,
    ) -> Result<RequestDecl, ScenarioError> {
        let mut fields = Vec::new();
        let mut follows = None;
        let mut rate = 0.0;
        let scope = parent.as_ref().map(|(_, input)| Frame {
            params,
            tables: &wf.tables,
            enums: &wf.enums,
            input: ("parent", input.clone()),
            compensates: false,
            reads: Vec::new(),
            answers: Vec::new(),
            next: 0,
        });
        match &parent {
            None => rate = self.rate(r.rate_per_sec.as_ref().expect("a rate"), params)?,
            Some((p, _)) => {
                let delay_ms = match &r.delay_ms {
                    None => 0,
                    Some(d) => {
                        let v = self.constant(d, params, Type::Int)?.as_int();
                        if !(0..=MAX_DELAY_MS).contains(&v) {
                            return Err(self.err(d.span(), format!("a delay from 0 to {MAX_DELAY_MS} ms, found {v}")));
                        }
                        v
                    }
                };
                follows = Some(FollowUp { parent: *p, delay_us: delay_ms as u64 * 1_000 });
            }
        }
        for (f, d) in &r.fields.0 {
            self.at_name(f, "request field")?;
            if f.get_ref() == "id" {
                return Err(self.err(
                    f.span(),
                    "a field other than `id` (request.id is the request's sequential id, or the id of the request \
                     it follows)",
                ));
            }
            let draw = match &scope {
                None => self.draw(d, params)?,
                Some(scope) => {
                    let (e, t) = self.expr_typed(d, scope)?;
                    Draw::Parent(e, t)
                }
            };
            fields.push((f.get_ref().clone(), draw));
        }
        let duplicate = match (&r.duplicate, &parent) {
            (None, _) => None,
            (Some(d), Some(_)) => {
                return Err(self.err(d.span(), "`duplicate` on a request with a `rate_per_sec` (not a follow-up)"));
            }
            (Some(d), None) => {
                let d = d.get_ref();
                let rate = Self::number(d.rate.get_ref().text.trim(), params).filter(|p| (0.0..=1.0).contains(p));
                let Some(rate) = rate else {
                    return Err(self.err(
                        d.rate.span(),
                        "a probability from 0 to 1 (a number or params.<name>) that the client sends a request twice",
                    ));
                };
                let after = self.constant(&d.after_ms, params, Type::Int)?.as_int();
                if !(0..=MAX_DELAY_MS).contains(&after) {
                    return Err(
                        self.err(d.after_ms.span(), format!("a delay from 0 to {MAX_DELAY_MS} ms, found {after}"))
                    );
                }
                Some(Duplicate { rate, after_us: after as u64 * 1_000 })
            }
        };
        let input = fields.iter().map(|(n, d)| (n.clone(), draw_type(d))).collect();
        let compensates = r.compensation.is_some();
        let handler = self.handler(wf, params, ("request", input), compensates, &r.transaction, &r.steps)?;
        Ok(RequestDecl {
            name: name.get_ref().clone(),
            service: r.service.get_ref().clone(),
            rate_per_sec: rate,
            follows,
            duplicate,
            fields,
            handler,
            compensation: None,
        })
    }

    /// A compensation's propagation: `"required"` (Spring's default), `"requires-new"`, or a
    /// string parameter holding one of them.
    fn propagation(
        &self,
        raw: &Option<Spanned<String>>,
        params: &BTreeMap<String, Param>,
    ) -> Result<Propagation, ScenarioError> {
        let Some(raw) = raw else { return Ok(Propagation::Required) };
        let text = raw.get_ref().as_str();
        let param = text.strip_prefix("params.");
        let value = match param.map(|n| params.get(n)) {
            Some(Some(Param::Str(v))) => v.as_str(),
            Some(_) => {
                return Err(self.err(raw.span(), format!("a declared string parameter, not `{text}`")));
            }
            None => text,
        };
        match value {
            "required" => Ok(Propagation::Required),
            "requires-new" => Ok(Propagation::RequiresNew),
            other => {
                let message = format!(
                    "a propagation: \"required\" (joins the failing transaction and rolls back with it) or \
                     \"requires-new\" (commits on its own){}, not \"{other}\"",
                    param.map_or(", or a string parameter holding one".to_string(), |p| format!(" for params.{p}"))
                );
                // A value bound by a scenario is that binding's mistake.
                match param.and_then(|p| self.bindings.iter().position(|(n, _)| n == p)) {
                    Some(i) => Err((self.at_binding)(i, message)),
                    None => Err(self.err(raw.span(), message)),
                }
            }
        }
    }

    /// A number, or a parameter that holds one.
    fn number(text: &str, params: &BTreeMap<String, Param>) -> Option<f64> {
        text.parse::<f64>().ok().or_else(|| match text.strip_prefix("params.").and_then(|p| params.get(p.trim())) {
            Some(Param::Float(f)) => Some(*f),
            Some(Param::Int(i)) => Some(*i as f64),
            _ => None,
        })
    }

    /// An initial row's drawn value, `chance(p, a, b)`: `a` with probability `p`, else `b`
    /// (both of type `ty`). None when `raw` is not a draw (it is then a constant).
    fn row_draw(
        &self,
        raw: &RawExpr,
        params: &BTreeMap<String, Param>,
        ty: Type,
    ) -> Result<Option<RowDraw>, ScenarioError> {
        let t = raw.get_ref().text.trim();
        let Some(rest) = t.strip_prefix("chance").map(str::trim_start).and_then(|r| r.strip_prefix('(')) else {
            return Ok(None);
        };
        let expected = "chance(p, a, b): a probability from 0 to 1 (a number or params.<name>), then the value \
                        with that probability and the value otherwise";
        let Some(inner) = rest.strip_suffix(')') else { return Err(self.err(raw.span(), expected)) };
        let args: Vec<&str> = inner.split(',').map(str::trim).collect();
        let [p, a, b] = args[..] else { return Err(self.err(raw.span(), expected)) };
        let Some(p) = Self::number(p, params).filter(|p| (0.0..=1.0).contains(p)) else {
            return Err(self.err(raw.span(), expected));
        };
        let value = |a: &str| {
            let sub = Spanned::new(raw.span(), Text { text: a.to_string(), quoted: false });
            self.constant(&sub, params, ty)
        };
        Ok(Some(RowDraw::Chance { p, then: value(a)?, otherwise: value(b)? }))
    }

    /// `unique = ["table.field", ...]`: fields of one table that no two rows share.
    fn unique_invariant(
        &self,
        wf: &Workflow,
        name: &str,
        raw: &Spanned<Vec<Spanned<String>>>,
    ) -> Result<InvariantDecl, ScenarioError> {
        let mut table: Option<u16> = None;
        let mut fields = Vec::new();
        for f in raw.get_ref() {
            let Some((t, field)) = f.get_ref().split_once('.') else {
                return Err(self.err(f.span(), format!("a table's field (table.field), not `{}`", f.get_ref())));
            };
            let t = self.table_of(wf, &Spanned::new(f.span(), t.to_string()))?;
            if table.is_some_and(|u| u != t) {
                return Err(self.err(f.span(), "fields of one table per invariant"));
            }
            table = Some(t);
            let decl = &wf.tables[t as usize];
            let i = self.field_of(
                &decl.fields,
                &format!("table {}", decl.name),
                &Spanned::new(f.span(), field.to_string()),
            )?;
            if fields.contains(&(i as u16)) {
                return Err(self.err(f.span(), format!("each field once, not `{}` twice", f.get_ref())));
            }
            fields.push(i as u16);
        }
        let Some(table) = table else {
            return Err(self.err(raw.span(), "one or more fields of a table (\"table.field\")"));
        };
        let text =
            format!("unique({})", raw.get_ref().iter().map(|f| f.get_ref().as_str()).collect::<Vec<_>>().join(", "));
        Ok(InvariantDecl::Unique { name: name.to_string(), table, fields, text })
    }

    /// `rate = { listener, max, per_ms }`: a listener's group takes at most `max` effects in any
    /// window of `per_ms`.
    fn rate_invariant(
        &self,
        wf: &Workflow,
        params: &BTreeMap<String, Param>,
        name: &str,
        raw: &RawRate,
    ) -> Result<InvariantDecl, ScenarioError> {
        let listener = self.listener_of(wf, &raw.listener)?;
        let max = self.constant(&raw.max, params, Type::Int)?.as_int();
        if !(1..=MAX_RATE_EFFECTS).contains(&max) {
            return Err(self.err(raw.max.span(), format!("from 1 to {MAX_RATE_EFFECTS} effects, found {max}")));
        }
        let per_ms = self.constant(&raw.per_ms, params, Type::Int)?.as_int();
        if !(1..=MAX_DELAY_MS).contains(&per_ms) {
            return Err(self.err(raw.per_ms.span(), format!("a window from 1 to {MAX_DELAY_MS} ms, found {per_ms}")));
        }
        let text = format!("rate({}, {max} per {per_ms} ms)", raw.listener.get_ref());
        Ok(InvariantDecl::Rate {
            name: name.to_string(),
            listener,
            max: max as u32,
            per_us: per_ms as u64 * 1_000,
            text,
        })
    }

    /// A rate: a positive number, or a parameter that holds one.
    /// An external system's declaration: an error rate (a probability) and outage windows
    /// (`[start, end]` in ms of simulated time, constants, start before end).
    fn system(
        &self,
        name: &str,
        raw: &Spanned<RawSystem>,
        params: &BTreeMap<String, Param>,
    ) -> Result<System, ScenarioError> {
        let r = raw.get_ref();
        let error_rate = match &r.error_rate {
            None => 0.0,
            Some(e) => {
                Self::number(e.get_ref().text.trim(), params).filter(|p| (0.0..=1.0).contains(p)).ok_or_else(|| {
                    self.err(e.span(), "a probability from 0 to 1 (a number or params.<name>) that a call fails")
                })?
            }
        };
        self.bound(raw.span(), r.outages_ms.len(), MAX_OUTAGES, "outage windows")?;
        let mut outages_us = Vec::new();
        for w in &r.outages_ms {
            let expected = format!("an outage window [start, end] in ms, 0 <= start < end <= {MAX_DELAY_MS}");
            let [start, end] = w.get_ref().as_slice() else { return Err(self.err(w.span(), expected)) };
            let (start, end) =
                (self.constant(start, params, Type::Int)?.as_int(), self.constant(end, params, Type::Int)?.as_int());
            if !(0 <= start && start < end && end <= MAX_DELAY_MS) {
                return Err(self.err(w.span(), format!("{expected}, not [{start}, {end}]")));
            }
            outages_us.push((start as u64 * 1_000, end as u64 * 1_000));
        }
        Ok(System { name: name.to_string(), error_rate, outages_us })
    }

    fn rate(&self, raw: &RawExpr, params: &BTreeMap<String, Param>) -> Result<f64, ScenarioError> {
        let t = &raw.get_ref().text;
        let v = if let Ok(f) = t.parse::<f64>() {
            Some(f)
        } else if let Some(p) = t.strip_prefix("params.").and_then(|n| params.get(n.trim())) {
            match p {
                Param::Float(f) => Some(*f),
                Param::Int(i) => Some(*i as f64),
                _ => None,
            }
        } else {
            None
        };
        match v {
            Some(r) if r.is_finite() && r > 0.0 && r <= crate::scenario::MAX_RATE_PER_SEC => Ok(r),
            _ => Err(self.err(
                raw.span(),
                format!(
                    "a rate per second above 0 and at most {} (a number or params.<name>), not `{t}`",
                    crate::scenario::MAX_RATE_PER_SEC
                ),
            )),
        }
    }

    /// A request field's distribution: `uniform(lo, hi)`, `zipf(n, s)` or a constant.
    fn draw(&self, raw: &RawExpr, params: &BTreeMap<String, Param>) -> Result<Draw, ScenarioError> {
        let t = raw.get_ref().text.trim();
        let call = |name: &str| t.strip_prefix(name).map(str::trim_start).and_then(|r| r.strip_prefix('('));
        let args = |rest: &str| -> Result<Vec<String>, ScenarioError> {
            let inner = rest.strip_suffix(')').ok_or_else(|| self.err(raw.span(), "`)` closing the distribution"))?;
            Ok(inner.split(',').map(|a| a.trim().to_string()).collect())
        };
        let int_arg = |a: &str| -> Result<i64, ScenarioError> {
            let sub = Spanned::new(raw.span(), Text { text: a.to_string(), quoted: false });
            Ok(self.constant(&sub, params, Type::Int)?.as_int())
        };
        if let Some(rest) = call("uniform") {
            let a = args(rest)?;
            if a.len() != 2 {
                return Err(self.err(raw.span(), "uniform(lo, hi): two integer arguments"));
            }
            let (lo, hi) = (int_arg(&a[0])?, int_arg(&a[1])?);
            if lo > hi || lo < 0 {
                return Err(self.err(raw.span(), format!("uniform(lo, hi) with 0 <= lo <= hi, found {lo} and {hi}")));
            }
            return Ok(Draw::Uniform { lo, hi });
        }
        if let Some(rest) = call("zipf") {
            let a = args(rest)?;
            let n = a.first().map(|x| int_arg(x)).transpose()?.unwrap_or(0);
            let s = match a.get(1) {
                None => 1.0,
                Some(x) => Self::number(x, params).ok_or_else(|| {
                    self.err(raw.span(), format!("a Zipf exponent (a number or params.<name>), not `{x}`"))
                })?,
            };
            if a.len() > 2 || n <= 0 || n as u64 > MAX_ZIPF_VALUES || !(s.is_finite() && (0.0..=10.0).contains(&s)) {
                return Err(self.err(
                    raw.span(),
                    format!("zipf(n, s): from 1 to {MAX_ZIPF_VALUES} values, an exponent s from 0 to 10"),
                ));
            }
            return Ok(Draw::Zipf { n: n as u64, s });
        }
        match self.constant(raw, params, Type::Int) {
            Ok(v) => Ok(Draw::Const(v)),
            Err(e) => {
                Err(ScenarioError { message: format!("uniform(lo, hi), zipf(n, s) or a constant: {}", e.message), ..e })
            }
        }
    }

    fn lock(&self, l: &Option<Spanned<String>>) -> Result<Lock, ScenarioError> {
        match l {
            None => Ok(Lock::None),
            Some(s) => {
                match s.get_ref().as_str() {
                    "none" => Ok(Lock::None),
                    "for-share" => Ok(Lock::ForShare),
                    "for-update" => Ok(Lock::ForUpdate),
                    other => Err(self
                        .err(s.span(), format!("a lock: \"none\", \"for-share\" or \"for-update\", not \"{other}\""))),
                }
            }
        }
    }

    fn otherwise(&self, o: &Option<Spanned<String>>) -> Result<Otherwise, ScenarioError> {
        match o {
            None => Ok(Otherwise::Reject),
            Some(s) => match s.get_ref().as_str() {
                "reject" => Ok(Otherwise::Reject),
                "throw" => Ok(Otherwise::Throw),
                other => Err(self.err(s.span(), format!("\"reject\" or \"throw\", not \"{other}\""))),
            },
        }
    }

    fn event_of(&self, wf: &Workflow, name: &Spanned<String>) -> Result<u16, ScenarioError> {
        wf.event(name.get_ref()).ok_or_else(|| {
            let declared: Vec<&str> = wf.events.iter().map(|e| e.name.as_str()).collect();
            self.err(name.span(), format!("a declared event ({}), not `{}`", declared.join(", "), name.get_ref()))
        })
    }

    /// A declared listener's index in [`Workflow::listeners`].
    fn listener_of(&self, wf: &Workflow, name: &Spanned<String>) -> Result<u16, ScenarioError> {
        let found = wf.listeners.iter().position(|l| l.name == *name.get_ref());
        found.map(|i| i as u16).ok_or_else(|| {
            let declared: Vec<&str> = wf.listeners.iter().map(|l| l.name.as_str()).collect();
            self.err(name.span(), format!("a declared listener ({}), not `{}`", declared.join(", "), name.get_ref()))
        })
    }

    /// The index of field `f` among `fields` (of `owner`, for the message).
    fn field_of(&self, fields: &[(String, Type)], owner: &str, f: &Spanned<String>) -> Result<usize, ScenarioError> {
        fields
            .iter()
            .position(|(n, _)| n == f.get_ref())
            .ok_or_else(|| self.err(f.span(), format!("a field of {owner} ({}), not `{}`", names(fields), f.get_ref())))
    }

    fn table_of(&self, wf: &Workflow, name: &Spanned<String>) -> Result<u16, ScenarioError> {
        wf.table(name.get_ref()).ok_or_else(|| {
            self.err(
                name.span(),
                format!(
                    "a declared table ({}), not `{}`",
                    wf.tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", "),
                    name.get_ref()
                ),
            )
        })
    }

    fn cache_of(&self, wf: &Workflow, name: &Spanned<String>, kinds: &[CacheKind]) -> Result<u16, ScenarioError> {
        let Some(i) = wf.caches.iter().position(|c| &c.name == name.get_ref()) else {
            return Err(self.err(
                name.span(),
                format!(
                    "a declared cache structure ({}), not `{}`",
                    wf.caches.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "),
                    name.get_ref()
                ),
            ));
        };
        if !kinds.contains(&wf.caches[i].kind) {
            return Err(self.err(name.span(), format!("a cache structure of type {kinds:?} for this command")));
        }
        Ok(i as u16)
    }

    /// Every listener can run: its event is published by a request's handler, or by a
    /// listener that can run itself. Events come from nowhere else (the workload is the
    /// requests), so a listener of an event nothing publishes is dead code, and an error at its
    /// `event` (`spans`, one per listener).
    fn reachable_listeners(&self, wf: &Workflow, spans: &[Range<usize>]) -> Result<(), ScenarioError> {
        fn published(h: &Handler, out: &mut BTreeSet<u16>) {
            for s in h.transaction.iter().chain(&h.after) {
                if let Step::Publish { event, .. } = s {
                    out.insert(*event);
                }
            }
        }
        let mut events = BTreeSet::new();
        for r in &wf.requests {
            published(&r.handler, &mut events);
        }
        let mut live = vec![false; wf.listeners.len()];
        loop {
            let before = events.len();
            for (i, l) in wf.listeners.iter().enumerate() {
                if !live[i] && events.contains(&l.event) {
                    live[i] = true;
                    published(&l.handler, &mut events);
                }
            }
            if events.len() == before {
                break;
            }
        }
        match live.iter().position(|&on| !on) {
            None => Ok(()),
            Some(i) => {
                let l = &wf.listeners[i];
                Err(self.err(
                    spans[i].clone(),
                    format!(
                        "an event that a request or a listener that runs publishes: nothing publishes `{}`, so \
                         listener `{}` can never run",
                        wf.events[l.event as usize].name, l.name
                    ),
                ))
            }
        }
    }

    fn handler(
        &self,
        wf: &Workflow,
        params: &BTreeMap<String, Param>,
        input: (&'static str, Vec<(String, Type)>),
        compensates: bool,
        transaction: &[Spanned<RawStep>],
        steps: &[Spanned<RawStep>],
    ) -> Result<Handler, ScenarioError> {
        let next = input.1.len() as u16 + u16::from(input.0 != "event");
        let mut frame = Frame {
            params,
            tables: &wf.tables,
            enums: &wf.enums,
            input,
            compensates,
            reads: Vec::new(),
            answers: Vec::new(),
            next,
        };
        let mut h = Handler { transaction: Vec::new(), after: Vec::new(), frame: 0 };
        for (list, in_txn) in [(transaction, true), (steps, false)] {
            if let Some(s) = list.get(MAX_STEPS) {
                self.bound(s.span(), list.len(), MAX_STEPS, "steps per list")?;
            }
            for s in list {
                if let Some(when) = &s.get_ref().when
                    && !self.constant(when, params, Type::Bool)?.as_bool()
                {
                    continue;
                }
                let step = self.step(wf, &mut frame, s, in_txn)?;
                if in_txn { h.transaction.push(step) } else { h.after.push(step) }
            }
        }
        h.frame = frame.next;
        Ok(h)
    }

    fn step(&self, wf: &Workflow, f: &mut Frame, s: &Spanned<RawStep>, in_txn: bool) -> Result<Step, ScenarioError> {
        let r = s.get_ref();
        let verbs: [(&str, bool); 12] = [
            ("read", r.read.is_some()),
            ("require", r.require.is_some()),
            ("update", r.update.is_some()),
            ("insert", r.insert.is_some()),
            ("publish", r.publish.is_some()),
            ("sadd", r.sadd.is_some()),
            ("sismember", r.sismember.is_some()),
            ("srem", r.srem.is_some()),
            ("zincrby", r.zincrby.is_some()),
            ("incrby", r.incrby.is_some()),
            ("del", r.del.is_some()),
            ("call", r.call.is_some()),
        ];
        let named: Vec<&str> = verbs.iter().filter(|(_, on)| *on).map(|(v, _)| *v).collect();
        if named.len() != 1 {
            return Err(self.err(
                s.span(),
                format!(
                    "exactly one verb per step ({}), found {}",
                    verbs.iter().map(|(v, _)| *v).collect::<Vec<_>>().join(", "),
                    if named.is_empty() { "none".to_string() } else { named.join(" and ") }
                ),
            ));
        }
        let verb = named[0];
        // Which options each verb takes; any other is an error at the step.
        let options: [(&str, bool, &[&str]); 12] = [
            ("id", r.id.is_some(), &["read", "insert"]),
            ("lock", r.lock.is_some(), &["read"]),
            ("otherwise", r.otherwise.is_some(), &["read", "require"]),
            ("compensate", r.compensate.is_some(), &["require"]),
            ("on_duplicate", r.on_duplicate.is_some(), &["insert"]),
            ("set", r.set.is_some(), &["update"]),
            ("values", r.values.is_some(), &["insert", "publish"]),
            ("key", r.key.is_some(), &["sadd", "srem", "sismember", "incrby", "del"]),
            ("member", r.member.is_some(), &["sadd", "srem", "sismember", "zincrby"]),
            ("by", r.by.is_some(), &["zincrby", "incrby"]),
            ("as", r.answer.is_some(), &["sadd", "sismember"]),
            ("wait", r.wait.is_some(), &["publish"]),
        ];
        for (opt, on, verbs) in options {
            if on && !verbs.contains(&verb) {
                return Err(self.err(s.span(), format!("`{opt}` only with {}, not with `{verb}`", verbs.join(" or "))));
            }
        }
        let need = |o: &Option<RawExpr>, name: &str| -> Result<RawExpr, ScenarioError> {
            o.clone().ok_or_else(|| self.err(s.span(), format!("`{name}` for `{verb}`")))
        };
        let in_transaction_only = ["read", "update", "insert"];
        if !in_txn && in_transaction_only.contains(&verb) {
            return Err(self.err(
                s.span(),
                format!("`{verb}` inside the `transaction` list (a DB write or locking read needs a transaction)"),
            ));
        }
        Ok(match verb {
            "read" => {
                let table = self.table_of(wf, r.read.as_ref().expect("read"))?;
                let id = self.expr(&need(&r.id, "id")?, f, Some(Type::Int))?;
                let into = f.next;
                f.next = f.next.saturating_add(wf.tables[table as usize].fields.len() as u16);
                f.reads.push((table, into));
                Step::Read { table, id, lock: self.lock(&r.lock)?, into, missing: self.otherwise(&r.otherwise)? }
            }
            "require" => {
                let raw = r.require.as_ref().expect("require");
                let cond = self.expr(raw, f, Some(Type::Bool))?;
                // A guard that reads nothing the run gives it has one answer: when that is
                // false, the steps after it cannot be reached and the handler never completes.
                if !cond.uses_frame() {
                    match cond.eval(&[]) {
                        Ok(v) if v.as_bool() => {}
                        Ok(_) => {
                            return Err(self.err(
                                raw.span(),
                                "a condition that can hold: this one reads no field, row or answer and is \
                                 false with the parameters bound, so no step after it can be reached and the \
                                 handler never completes",
                            ));
                        }
                        Err(e) => return Err(self.err(raw.span(), format!("a condition that can be evaluated: {e}"))),
                    }
                }
                let compensate = r.compensate.as_ref().is_some_and(|c| *c.get_ref());
                if let Some(c) = &r.compensate
                    && !(in_txn && f.compensates)
                {
                    return Err(self.err(
                        c.span(),
                        "`compensate` on a `require` in the `transaction` of a request that declares \
                         [requests.<name>.compensation]",
                    ));
                }
                // What the stop says when it fails, made once here rather than at each failure.
                let message = format!("required {}", raw.get_ref().text).into();
                Step::Require { cond, otherwise: self.otherwise(&r.otherwise)?, message, compensate }
            }
            "update" => {
                let name = r.update.as_ref().expect("update");
                let table = self.table_of(wf, name)?;
                let Some(&(_, from)) = f.reads.iter().rev().find(|(t, _)| *t == table) else {
                    return Err(self.err(name.span(), format!("a `read` of {} before it is updated", name.get_ref())));
                };
                let set = r.set.as_ref().ok_or_else(|| self.err(s.span(), "`set` for `update`"))?;
                let mut out = Vec::new();
                for (field, v) in set {
                    let fields = &wf.tables[table as usize].fields;
                    let i = self.field_of(fields, &format!("table {}", name.get_ref()), field)?;
                    out.push((i as u16, self.expr(v, f, Some(fields[i].1))?));
                }
                Step::Update { table, from, set: out }
            }
            "insert" => {
                let name = r.insert.as_ref().expect("insert");
                let table = self.table_of(wf, name)?;
                let id = self.expr(&need(&r.id, "id")?, f, Some(Type::Int))?;
                let given = r.values.as_ref().ok_or_else(|| self.err(s.span(), "`values` for `insert`"))?;
                let values = self.all_values(
                    &wf.tables[table as usize].fields,
                    given,
                    f,
                    s,
                    &format!("table {}", name.get_ref()),
                )?;
                let on_duplicate = match &r.on_duplicate {
                    None => Otherwise::Throw,
                    some => self.otherwise(some)?,
                };
                Step::Insert { table, id, values, on_duplicate }
            }
            "publish" => {
                let name = r.publish.as_ref().expect("publish");
                let event = self.event_of(wf, name)?;
                let given = r.values.as_ref().ok_or_else(|| self.err(s.span(), "`values` for `publish`"))?;
                let values = self.all_values(
                    &wf.events[event as usize].fields,
                    given,
                    f,
                    s,
                    &format!("event {}", name.get_ref()),
                )?;
                let wait = r.wait.as_ref().is_some_and(|w| *w.get_ref());
                if let Some(w) = r.wait.as_ref().filter(|_| wait && (in_txn || f.input.0 != "request")) {
                    return Err(self.err(
                        w.span(),
                        "`wait = true` only in a request's `steps` (after its transaction): a send inside the \
                         transaction is the service's `publish = \"in-transaction\"`, and a listener's or a \
                         compensation's blocking send is not modelled yet",
                    ));
                }
                Step::Publish { event, values, wait }
            }
            "sadd" | "srem" | "sismember" => {
                let name = r.sadd.as_ref().or(r.srem.as_ref()).or(r.sismember.as_ref()).expect("a set command");
                if verb == "sismember" && r.answer.is_none() {
                    return Err(self.err(s.span(), "`as` for `sismember` (the name its answer goes by)"));
                }
                let cache = self.cache_of(wf, name, &[CacheKind::Set])?;
                let key = self.expr(&need(&r.key, "key")?, f, None)?;
                let member = self.expr(&need(&r.member, "member")?, f, None)?;
                let answer = match &r.answer {
                    None => None,
                    Some(a) => {
                        self.at_name(a, "answer")?;
                        let slot = f.next;
                        f.next = f.next.saturating_add(1);
                        f.answers.push((a.get_ref().clone(), slot));
                        Some(slot)
                    }
                };
                let command = match verb {
                    "sadd" => CacheCommand::Sadd { key, member },
                    "srem" => CacheCommand::Srem { key, member },
                    _ => CacheCommand::Sismember { key, member },
                };
                Step::Cache { cache, command, answer }
            }
            "zincrby" => {
                let cache = self.cache_of(wf, r.zincrby.as_ref().expect("zincrby"), &[CacheKind::SortedSet])?;
                let member = self.expr(&need(&r.member, "member")?, f, None)?;
                let by = self.expr(&need(&r.by, "by")?, f, Some(Type::Int))?;
                Step::Cache { cache, command: CacheCommand::Zincrby { member, by }, answer: None }
            }
            "incrby" => {
                let cache = self.cache_of(wf, r.incrby.as_ref().expect("incrby"), &[CacheKind::Counter])?;
                let key = self.expr(&need(&r.key, "key")?, f, None)?;
                let by = self.expr(&need(&r.by, "by")?, f, Some(Type::Int))?;
                Step::Cache { cache, command: CacheCommand::Incrby { key, by }, answer: None }
            }
            "del" => {
                let cache = self.cache_of(
                    wf,
                    r.del.as_ref().expect("del"),
                    &[CacheKind::Keys, CacheKind::Counter, CacheKind::Set],
                )?;
                let key = self.expr(&need(&r.key, "key")?, f, None)?;
                Step::Cache { cache, command: CacheCommand::Del { key }, answer: None }
            }
            _ => {
                let system = r.call.as_ref().expect("call").get_ref().clone();
                let declared = wf.systems.iter().position(|x| x.name == system).map(|i| i as u16);
                Step::Call { system, declared }
            }
        })
    }

    /// Every field's value for an insert or a publish, in field order: each field given once.
    fn all_values(
        &self,
        fields: &[(String, Type)],
        given: &BTreeMap<Spanned<String>, RawExpr>,
        f: &Frame,
        s: &Spanned<RawStep>,
        what: &str,
    ) -> Result<Vec<expr::Expr>, ScenarioError> {
        for name in given.keys() {
            if !fields.iter().any(|(n, _)| n == name.get_ref()) {
                return Err(self.err(name.span(), format!("a field of {what}, not `{}`", name.get_ref())));
            }
        }
        let mut out = Vec::new();
        for (name, t) in fields {
            let Some((_, v)) = given.iter().find(|(k, _)| k.get_ref() == name) else {
                return Err(self.err(s.span(), format!("a value for every field of {what}: `{name}` is missing")));
            };
            out.push(self.expr(v, f, Some(*t))?);
        }
        Ok(out)
    }
}
