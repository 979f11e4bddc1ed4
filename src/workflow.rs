//! `evsim workflow`: compile a workflow file and show what it declares, or where it is wrong.

use crate::{EXIT_HELD, bad_input, print_json, read_text};
use evsim_model::workflow::expr::Value;
use evsim_model::workflow::{Draw, Param, Workflow, compile};
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  evsim workflow scenarios/workflows/order.toml\n  evsim workflow \
scenarios/workflows/order.toml --set products=10 --set rate_per_sec=200 --json\n\nThe language: \
docs/workflow-language.md. A scenario runs a workflow file with `[workflow] file = \"...\"`; this \
checks one on its own: every name resolved, every expression typed, each error at its file, line and \
column (exit 2).")]
pub struct WorkflowArgs {
    /// The workflow file.
    pub file: PathBuf,
    /// Bind a parameter (repeatable): `--set products=10`. An integer, a float, true or false,
    /// or else a string, of the type of the parameter's default.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
    /// Print what the workflow declares as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A `--set` value, read as the most specific type it can be.
fn param(value: &str) -> Param {
    match value {
        "true" => Param::Bool(true),
        "false" => Param::Bool(false),
        _ => value
            .parse::<i64>()
            .map(Param::Int)
            .or_else(|_| value.parse::<f64>().map(Param::Float))
            .unwrap_or_else(|_| Param::Str(value.to_string())),
    }
}

pub fn workflow(args: WorkflowArgs) -> u8 {
    let mut bindings = Vec::new();
    for s in &args.set {
        let Some((k, v)) = s.split_once('=') else {
            return bad_input(format!("--set {s}: expected NAME=VALUE, such as --set products=10"));
        };
        bindings.push((k.trim().to_string(), param(v.trim())));
    }
    let (name, source) = match read_text(&args.file, "workflow") {
        Ok(t) => t,
        Err(code) => return code,
    };
    let wf = match compile(&name, &source, &bindings) {
        Ok(wf) => wf,
        Err(e) => return bad_input(e),
    };
    if args.json {
        return print_json(&summary(&wf)).err().unwrap_or(EXIT_HELD);
    }
    print!("{}", text(&wf));
    EXIT_HELD
}

fn value(v: &Value, enums: Option<&[String]>) -> serde_json::Value {
    match v {
        Value::Int(i) => json!(i),
        Value::Bool(b) => json!(b),
        Value::Str(s) => json!(s),
        Value::Enum(i) => json!(enums.and_then(|e| e.get(*i as usize)).cloned().unwrap_or_default()),
    }
}

fn draw(d: &Draw) -> String {
    match d {
        Draw::Uniform { lo, hi } => format!("uniform({lo}, {hi})"),
        Draw::Zipf { n, s } => format!("zipf({n}, {s})"),
        Draw::Const(v) => format!("{}", value(v, None)),
        Draw::Parent(..) => "from the request it follows".to_string(),
    }
}

/// How request `r`'s requests arrive: at a rate, or after the request they follow.
fn arrivals(wf: &Workflow, r: &evsim_model::workflow::RequestDecl) -> String {
    match &r.follows {
        None => format!("at {}/s", r.rate_per_sec),
        Some(f) => format!("{} ms after {} succeeded", f.delay_us / 1_000, wf.requests[f.parent as usize].name),
    }
}

/// What `--json` prints: the workflow's declarations with parameters applied.
fn summary(wf: &Workflow) -> serde_json::Value {
    let ty = |t: &evsim_model::workflow::expr::Type| match t {
        evsim_model::workflow::expr::Type::Enum(e) => json!(wf.enums[*e as usize]),
        other => json!(format!("{other:?}").to_lowercase()),
    };
    json!({
        "workflow": wf.name,
        "description": wf.description,
        "params": wf.params.iter().map(|(k, v)| (k.clone(), value(v, None))).collect::<serde_json::Map<_, _>>(),
        "tables": wf.tables.iter().map(|t| json!({
            "name": t.name,
            "fields": t.fields.iter().map(|(n, t)| json!([n, ty(t)])).collect::<Vec<_>>(),
            "initial_rows": t.initial_rows,
            "unique": t.unique.iter().map(|u| u.iter().map(|&c| t.fields[c as usize].0.clone()).collect::<Vec<_>>()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "cache": wf.caches.iter().map(|c| json!({ "name": c.name, "type": format!("{:?}", c.kind) })).collect::<Vec<_>>(),
        "systems": wf.systems.iter().map(|x| json!({
            "name": x.name,
            "error_rate": x.error_rate,
            "outages_ms": x.outages_us.iter().map(|&(a, b)| [a / 1_000, b / 1_000]).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "events": wf.events.iter().map(|e| json!({
            "name": e.name,
            "topic": e.topic,
            "key": e.key.map(|k| e.fields[k as usize].0.clone()),
            "subject": e.fields[e.subject as usize].0,
            "fields": e.fields.iter().map(|(n, t)| json!([n, ty(t)])).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "requests": wf.requests.iter().map(|r| json!({
            "name": r.name,
            "service": r.service,
            "rate_per_sec": r.rate_per_sec,
            "follows": r.follows.as_ref().map(|f| wf.requests[f.parent as usize].name.clone()),
            "delay_ms": r.follows.as_ref().map(|f| f.delay_us / 1_000),
            "compensation": r.compensation.map(|c| {
                let c = &wf.compensations[c as usize];
                json!({
                    "propagation": format!("{:?}", c.propagation),
                    "transaction_steps": c.handler.transaction.len(),
                })
            }),
            "fields": r.fields.iter().map(|(n, d)| json!([n, draw(d)])).collect::<Vec<_>>(),
            "transaction_steps": r.handler.transaction.len(),
            "steps": r.handler.after.len(),
        })).collect::<Vec<_>>(),
        "listeners": wf.listeners.iter().map(|l| json!({
            "name": l.name,
            "event": wf.events[l.event as usize].name,
            "transaction_steps": l.handler.transaction.len(),
            "steps": l.handler.after.len(),
        })).collect::<Vec<_>>(),
        "invariants": wf.invariants.iter().map(|i| i.name().to_string()).collect::<Vec<_>>(),
    })
}

/// The same, for a person.
fn text(wf: &Workflow) -> String {
    let mut out = format!("workflow {}: {}\n", wf.name, wf.description);
    for t in &wf.tables {
        let fields: Vec<&str> = t.fields.iter().map(|(n, _)| n.as_str()).collect();
        out += &format!("  table {} ({}), {} initial rows\n", t.name, fields.join(", "), t.initial_rows);
    }
    for c in &wf.caches {
        out += &format!("  cache {} ({:?})\n", c.name, c.kind);
    }
    for x in &wf.systems {
        let windows: Vec<String> =
            x.outages_us.iter().map(|&(a, b)| format!("[{}, {}) ms", a / 1_000, b / 1_000)).collect();
        out += &format!(
            "  system {} (error rate {}, down {})\n",
            x.name,
            x.error_rate,
            if windows.is_empty() { "never".to_string() } else { windows.join(", ") }
        );
    }
    for e in &wf.events {
        let key = e.key.map_or("no key".to_string(), |k| format!("key {}", e.fields[k as usize].0));
        out += &format!("  event {} on topic {}, {key}\n", e.name, e.topic);
    }
    for r in &wf.requests {
        let fields: Vec<String> = r.fields.iter().map(|(n, d)| format!("{n} = {}", draw(d))).collect();
        out += &format!(
            "  request {} to {} {}: {}; {} transaction steps, {} after\n",
            r.name,
            r.service,
            arrivals(wf, r),
            fields.join(", "),
            r.handler.transaction.len(),
            r.handler.after.len()
        );
    }
    for l in &wf.listeners {
        out += &format!(
            "  listener {} of {}: {} transaction steps, {} after\n",
            l.name,
            wf.events[l.event as usize].name,
            l.handler.transaction.len(),
            l.handler.after.len()
        );
    }
    for i in &wf.invariants {
        out += &format!("  invariant {}: {}\n", i.name(), i.text());
    }
    out + "compiled: every name resolved, every expression typed\n"
}
