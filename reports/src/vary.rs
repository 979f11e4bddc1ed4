//! `--vary KEY=V1,V2,...` and `--set KEY=V`: scenario settings changed by their path in the
//! scenario file, so that any key a scenario can hold can be swept.
//!
//! A key is the path of a value in the TOML file, its parts joined by dots, with Kafka's own
//! dotted names at the end: `topics.coupon-issue-request.partitions`,
//! `services.order-service.producer.acks`, `consumers.order-event-consumer.commit_strategy`,
//! `consumers.order-event-consumer.consumer.max.poll.records`, `faults.0.rate`,
//! `swarm.max_faults`. A `*` part stands for every table at that level
//! (`services.*.producer.enable.idempotence`). Keys joined by `+` change together
//! (`topics.t.partitions+consumers.c.instances=1..12`: partitions and consumers move in step).
//!
//! Values are TOML values (`1`, `0.5`, `true`, `"all"`); a bare word is a string (`all`,
//! `outbox`). `A..B` is every integer from A to B inclusive.

use evsim_model::scenario::Scenario;
use serde::{Deserialize, Serialize};
use toml::{Table, Value};

/// One swept dimension: the keys it changes (together) and the values it takes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    /// The `--vary` argument as given (for the command that replays the sweep).
    #[serde(default)]
    pub arg: String,
    pub keys: Vec<String>,
    /// The values as the user wrote them (after range expansion), for labels.
    pub labels: Vec<String>,
    #[serde(skip)]
    values: Vec<Value>,
}

impl Axis {
    /// The axis as a label: `topics.t.partitions + consumers.c.instances`.
    pub fn name(&self) -> String {
        self.keys.join(" + ")
    }

    /// A short name for chart axes and legends: the last part of each key.
    pub fn short_name(&self) -> String {
        self.keys.iter().map(|k| short_key(k)).collect::<Vec<_>>().join(" + ")
    }

    /// Whether every value is a number (the axis can be a numeric x axis).
    pub fn numeric(&self) -> bool {
        self.labels.iter().all(|l| l.parse::<f64>().is_ok())
    }
}

/// The last meaningful part of a key: `partitions`, `acks`, `max.poll.records`.
pub fn short_key(key: &str) -> String {
    for table in ["producer.", "consumer.", "config."] {
        if let Some(i) = key.rfind(table) {
            return key[i + table.len()..].to_string();
        }
    }
    key.rsplit('.').next().unwrap_or(key).to_string()
}

/// A bad `--vary` or `--set` (exit 2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaryError(pub String);

impl std::fmt::Display for VaryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for VaryError {}

const FORM: &str = "expected KEY=V1,V2,... (e.g. topics.orders.partitions=1..12 or \
                    services.*.producer.acks=1,all)";

/// Parse one `--vary` argument.
pub fn parse_axis(arg: &str) -> Result<Axis, VaryError> {
    let (keys, values) = arg.split_once('=').ok_or_else(|| VaryError(format!("--vary {arg}: {FORM}")))?;
    let keys: Vec<String> = keys.split('+').map(|k| k.trim().to_string()).collect();
    if keys.iter().any(|k| k.is_empty() || k.split('.').any(str::is_empty)) {
        return Err(VaryError(format!("--vary {arg}: a key is empty or has an empty part; {FORM}")));
    }
    let mut labels = Vec::new();
    let mut parsed = Vec::new();
    for raw in split_values(values) {
        let raw = raw.trim();
        if let Some((a, b)) = raw.split_once("..") {
            let b = b.strip_prefix('=').unwrap_or(b);
            let (Ok(a), Ok(b)) = (a.trim().parse::<i64>(), b.trim().parse::<i64>()) else {
                return Err(VaryError(format!("--vary {arg}: `{raw}` is not a range of integers like 1..12")));
            };
            if b.checked_sub(a).is_none_or(|d| !(0..10_000).contains(&d)) {
                return Err(VaryError(format!("--vary {arg}: the range {raw} is empty or longer than 10,000")));
            }
            for v in a..=b {
                labels.push(v.to_string());
                parsed.push(Value::Integer(v));
            }
        } else if raw.is_empty() {
            return Err(VaryError(format!("--vary {arg}: an empty value; {FORM}")));
        } else {
            labels.push(raw.trim_matches('"').to_string());
            parsed.push(value(raw));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(dup) = labels.iter().find(|l| !seen.insert(l.as_str())) {
        return Err(VaryError(format!("--vary {arg}: the value {dup} is listed twice")));
    }
    Ok(Axis { arg: arg.to_string(), keys, labels, values: parsed })
}

/// Parse one `--set KEY=V` argument.
pub fn parse_set(arg: &str) -> Result<(String, Value), VaryError> {
    let (key, v) = arg
        .split_once('=')
        .ok_or_else(|| VaryError(format!("--set {arg}: expected KEY=VALUE (e.g. workload.rate_per_sec=2000)")))?;
    if key.trim().is_empty() || v.trim().is_empty() {
        return Err(VaryError(format!("--set {arg}: expected KEY=VALUE (e.g. workload.rate_per_sec=2000)")));
    }
    Ok((key.trim().to_string(), value(v.trim())))
}

/// Values split at commas outside brackets and quotes (`[1, 2]` is one array value).
fn split_values(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '[' | '{' if !quoted => depth += 1,
            ']' | '}' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// A value as TOML reads it, or a bare word as a string.
fn value(raw: &str) -> Value {
    toml::from_str::<Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_string()))
}

/// Set `key` to `v` in `doc`. Returns how many places were set (a `*` can match several).
fn set(doc: &mut Table, key: &str, v: &Value) -> Result<usize, String> {
    let parts: Vec<&str> = key.split('.').collect();
    match set_in_table(doc, &parts, v, key, &mut Vec::new())? {
        0 => Err(format!("{key}: matched nothing in the scenario")),
        n => Ok(n),
    }
}

/// Whether the table at `trail` holds Kafka properties, whose dotted names TOML reads as nested
/// tables: a new property there may create them (`max.in.flight.requests.per.connection`).
fn kafka_props(trail: &[String]) -> bool {
    matches!(trail, [t, _] if t == "topics")
        || matches!(trail.last().map(String::as_str), Some("producer" | "consumer" | "config"))
}

fn set_in_table(t: &mut Table, parts: &[&str], v: &Value, key: &str, trail: &mut Vec<String>) -> Result<usize, String> {
    if parts[0] == "*" {
        if parts.len() == 1 {
            return Err(format!("{key}: `*` cannot be the last part"));
        }
        let mut n = 0;
        for (name, child) in t.iter_mut() {
            trail.push(name.clone());
            n += set_in_value(child, &parts[1..], v, key, trail)?;
            trail.pop();
        }
        if n == 0 {
            return Err(format!("{key}: `*` matched no table"));
        }
        return Ok(n);
    }
    // The longest run of parts that is a key here: table names and Kafka names hold dots
    // (`[topics."order.completed"]`, `"enable.idempotence" = true`).
    for k in (1..=parts.len()).rev() {
        let name = parts[..k].join(".");
        if let Some(child) = t.get_mut(&name) {
            if k == parts.len() {
                *child = v.clone();
                return Ok(1);
            }
            trail.push(name);
            let n = set_in_value(child, &parts[k..], v, key, trail);
            trail.pop();
            return n;
        }
    }
    // Nothing of it exists yet: a new value in this table (a key the scenario left at its
    // default), or a new Kafka property in tables created as TOML's dotted keys would. A new
    // topic, service or consumer table is a misspelt name, not a setting.
    if parts.contains(&"*") {
        return Err(format!("{key}: `*` matched no table (`{}` is not in the scenario)", parts[0]));
    }
    if parts.len() > 1 && !kafka_props(trail) {
        let here = if trail.is_empty() { "the scenario".to_string() } else { format!("`{}`", trail.join(".")) };
        return Err(format!("{key}: `{}` is not in {here}", parts[0]));
    }
    let mut value = v.clone();
    for part in parts[1..].iter().rev() {
        let mut table = Table::new();
        table.insert((*part).to_string(), value);
        value = Value::Table(table);
    }
    t.insert(parts[0].to_string(), value);
    Ok(1)
}

fn set_in_value(
    node: &mut Value,
    parts: &[&str],
    v: &Value,
    key: &str,
    trail: &mut Vec<String>,
) -> Result<usize, String> {
    match node {
        Value::Table(t) => set_in_table(t, parts, v, key, trail),
        Value::Array(items) => {
            let index: Option<usize> = parts[0].parse().ok();
            match index {
                Some(i) if i < items.len() => {
                    if parts.len() == 1 {
                        items[i] = v.clone();
                        Ok(1)
                    } else {
                        set_in_value(&mut items[i], &parts[1..], v, key, trail)
                    }
                }
                _ if parts[0] == "*" => {
                    let mut n = 0;
                    for item in items.iter_mut() {
                        n += set_in_value(item, &parts[1..], v, key, trail)?;
                    }
                    Ok(n)
                }
                _ => Err(format!("{key}: `{}` is not an index of a list of {} item(s)", parts[0], items.len())),
            }
        }
        _ => Err(format!("{key}: `{}` is inside a value that is not a table", parts[0])),
    }
}

/// A base scenario and the changes every setting of a sweep shares.
#[derive(Clone, Debug)]
pub struct Base {
    /// The file name, for messages.
    pub file: String,
    doc: Table,
}

impl Base {
    /// Read the scenario text (already known to parse as a scenario) and apply `sets`.
    pub fn new(file: &str, source: &str, sets: &[(String, Value)]) -> Result<Self, VaryError> {
        let mut doc: Table =
            toml::from_str(source).map_err(|e| VaryError(format!("{file}: not a TOML table: {}", e.message())))?;
        for (key, v) in sets {
            set(&mut doc, key, v).map_err(|e| VaryError(format!("--set {e}")))?;
        }
        Ok(Self { file: file.to_string(), doc })
    }

    /// The scenario with each axis at the value of `choice` (an index per axis). `what` names
    /// the setting in errors (`partitions=4, acks=all`).
    pub fn scenario(&self, axes: &[Axis], choice: &[usize], what: &str) -> Result<Scenario, VaryError> {
        let mut doc = self.doc.clone();
        for (axis, &i) in axes.iter().zip(choice) {
            for key in &axis.keys {
                set(&mut doc, key, &axis.values[i]).map_err(|e| VaryError(format!("--vary {e}")))?;
            }
        }
        let text =
            toml::to_string(&doc).map_err(|e| VaryError(format!("{}: cannot write the setting: {e}", self.file)))?;
        evsim_sim::files::parse_scenario(&self.file, &text).map_err(|e| {
            VaryError(format!(
                "{} with {what}: {} (a --vary or --set value the scenario does not accept)",
                self.file, e.message
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = r#"
name = "t"
[topics."order.completed"]
partitions = 3
[services.a.producer]
"enable.idempotence" = true
acks = "all"
[services.b.producer]
acks = "all"
[[faults]]
rate = 0.1
"#;

    fn doc() -> Table {
        toml::from_str(SRC).unwrap()
    }

    #[test]
    fn ranges_lists_and_linked_keys_parse() {
        let a = parse_axis("topics.t.partitions+consumers.c.instances=1..3,8").unwrap();
        assert_eq!(a.keys, ["topics.t.partitions", "consumers.c.instances"]);
        assert_eq!(a.labels, ["1", "2", "3", "8"]);
        assert!(a.numeric());
        assert_eq!(a.short_name(), "partitions + instances");
        let b = parse_axis("services.*.producer.acks=1,all,\"0\"").unwrap();
        assert_eq!(b.labels, ["1", "all", "0"]);
        assert_eq!(b.values, [Value::Integer(1), Value::String("all".into()), Value::String("0".into())]);
        assert!(!b.numeric());
        assert_eq!(short_key("consumers.c.consumer.max.poll.records"), "max.poll.records");
    }

    #[test]
    fn bad_axes_say_what_was_expected() {
        for (arg, want) in [
            ("partitions", "expected KEY=V1,V2"),
            ("a..b=1", "empty part"),
            ("x=1..b", "not a range of integers"),
            ("x=5..1", "empty or longer"),
            ("x=1,,2", "an empty value"),
            ("x=1,1", "listed twice"),
            ("x=-9223372036854775808..9223372036854775807", "empty or longer"),
        ] {
            let e = parse_axis(arg).unwrap_err();
            assert!(e.0.contains(want), "{arg}: {e}");
        }
    }

    #[test]
    fn dotted_names_wildcards_and_indices_are_found() {
        let mut d = doc();
        assert_eq!(set(&mut d, "topics.order.completed.partitions", &Value::Integer(6)), Ok(1));
        assert_eq!(d["topics"]["order.completed"]["partitions"], Value::Integer(6));
        // The file's quoted Kafka name is the one changed, not a nested twin beside it.
        assert_eq!(set(&mut d, "services.a.producer.enable.idempotence", &Value::Boolean(false)), Ok(1));
        assert_eq!(d["services"]["a"]["producer"]["enable.idempotence"], Value::Boolean(false));
        assert_eq!(set(&mut d, "services.*.producer.acks", &Value::String("1".into())), Ok(2));
        assert_eq!(d["services"]["b"]["producer"]["acks"], Value::String("1".into()));
        assert_eq!(set(&mut d, "faults.0.rate", &Value::Float(0.5)), Ok(1));
        assert_eq!(d["faults"][0]["rate"], Value::Float(0.5));
        // A key the file does not have yet is added as TOML's dotted keys would add it.
        assert_eq!(set(&mut d, "services.b.producer.max.in.flight.requests.per.connection", &Value::Integer(5)), Ok(1));
        assert_eq!(
            d["services"]["b"]["producer"]["max"]["in"]["flight"]["requests"]["per"]["connection"],
            Value::Integer(5)
        );
        assert!(set(&mut d, "faults.3.rate", &Value::Float(0.5)).unwrap_err().contains("not an index"));
        assert!(set(&mut d, "name.x", &Value::Float(0.5)).unwrap_err().contains("not a table"));
        assert!(set(&mut d, "nothing.*.x", &Value::Float(0.5)).unwrap_err().contains("matched no table"));
        // A misspelt topic is not a new topic; a new key in an existing table is fine.
        let e = set(&mut d, "topics.order-completed.partitions", &Value::Integer(6)).unwrap_err();
        assert!(e.contains("`order-completed` is not in `topics`"), "{e}");
        assert_eq!(set(&mut d, "topics.order.completed.replication.factor", &Value::Integer(3)), Ok(1));
        assert_eq!(set(&mut d, "services.a.instances", &Value::Integer(3)), Ok(1));
        let mut empty: Table = toml::from_str("faults = []").unwrap();
        assert!(set(&mut empty, "faults.*.rate", &Value::Float(0.5)).unwrap_err().contains("matched nothing"));
    }

    #[test]
    fn a_setting_the_scenario_refuses_names_the_setting() {
        let src = include_str!("../../scenarios/order-basic.toml");
        let base = Base::new("order-basic.toml", src, &[]).unwrap();
        let axis = parse_axis("services.order-service.producer.acks=all,2").unwrap();
        let ok = base.scenario(std::slice::from_ref(&axis), &[0], "acks=all").unwrap();
        assert_eq!(ok.services[0].producer.acks, evsim_model::scenario::Acks::All);
        let e = base.scenario(&[axis], &[1], "acks=2").unwrap_err();
        assert!(e.0.starts_with("order-basic.toml with acks=2: "), "{e}");
        assert!(e.0.contains("acks"), "{e}");
    }
}
