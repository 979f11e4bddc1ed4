//! Kafka-style property tables: `enable.idempotence = true` written with Kafka's own dotted names.
//!
//! TOML reads a dotted key as nested tables; [`Props`] flattens them back to Kafka's names while
//! keeping each value's place in the file, so that a bad value or an unknown key is reported at its
//! line and column.

use super::error::ScenarioError;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use toml::Spanned;

/// A scalar property value as written.
#[derive(Clone, Debug, PartialEq)]
pub enum PropValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl PropValue {
    fn kind(&self) -> &'static str {
        match self {
            PropValue::Bool(_) => "a boolean",
            PropValue::Int(_) => "an integer",
            PropValue::Float(_) => "a float",
            PropValue::Str(_) => "a string",
        }
    }
}

enum Node {
    Leaf(PropValue),
    Table(BTreeMap<String, Spanned<Node>>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean, integer, float, string or a table of them")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Leaf(PropValue::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
                Ok(Node::Leaf(PropValue::Int(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
                i64::try_from(v).map(|v| Node::Leaf(PropValue::Int(v))).map_err(|_| E::custom("integer too large"))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
                Ok(Node::Leaf(PropValue::Float(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Leaf(PropValue::Str(v.to_string())))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Node, A::Error> {
                let mut t = BTreeMap::new();
                while let Some(k) = m.next_key::<String>()? {
                    let v: Spanned<Node> = m.next_value()?;
                    t.insert(k, v);
                }
                Ok(Node::Table(t))
            }
        }
        d.deserialize_any(V)
    }
}

/// A flattened property table: Kafka name -> (value, byte span of the value in the file).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Props {
    /// The span of the whole table, for "missing key" errors.
    pub span: Option<Range<usize>>,
    entries: BTreeMap<String, (PropValue, Range<usize>)>,
}

impl<'de> Deserialize<'de> for Props {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let root: Spanned<Node> = Deserialize::deserialize(d)?;
        let span = root.span();
        let Node::Table(table) = root.into_inner() else {
            return Err(de::Error::custom("expected a table of Kafka properties, e.g. `acks = \"all\"`"));
        };
        let mut entries = BTreeMap::new();
        for (k, v) in table {
            flatten(k, v, &mut entries);
        }
        Ok(Props { span: Some(span), entries })
    }
}

fn flatten(name: String, node: Spanned<Node>, out: &mut BTreeMap<String, (PropValue, Range<usize>)>) {
    let span = node.span();
    match node.into_inner() {
        Node::Leaf(v) => {
            out.insert(name, (v, span));
        }
        Node::Table(t) => {
            for (k, v) in t {
                flatten(format!("{name}.{k}"), v, out);
            }
        }
    }
}

/// Reads typed values out of a [`Props`] table, turning each mistake into a [`ScenarioError`] at
/// the value's place. Call [`PropReader::finish`] last: a key nobody took is an unknown key.
pub struct PropReader<'a> {
    file: &'a str,
    source: &'a str,
    section: &'a str,
    props: Props,
    known: Vec<&'static str>,
    /// Where each key read so far stands in the file (its value).
    spans: BTreeMap<&'static str, Range<usize>>,
}

impl<'a> PropReader<'a> {
    pub fn new(file: &'a str, source: &'a str, section: &'a str, props: Props) -> Self {
        Self { file, source, section, props, known: Vec::new(), spans: BTreeMap::new() }
    }

    /// Where `key`'s value stands in the file, if the table sets it (after it was read); else
    /// where the table stands, if it is in the file.
    pub fn span_of(&self, key: &str) -> Option<Range<usize>> {
        self.spans.get(key).cloned().or_else(|| self.props.span.clone())
    }

    fn err(&self, span: &Range<usize>, msg: String) -> ScenarioError {
        ScenarioError::at(self.file, self.source, Some(span.clone()), msg)
    }

    fn take(&mut self, key: &'static str) -> Option<(PropValue, Range<usize>)> {
        self.known.push(key);
        let taken = self.props.entries.remove(key);
        if let Some((_, span)) = &taken {
            self.spans.insert(key, span.clone());
        }
        taken
    }

    /// An integer in `min..=max`, or `default` when absent.
    pub fn int(&mut self, key: &'static str, default: i64, min: i64, max: i64) -> Result<i64, ScenarioError> {
        match self.take(key) {
            None => Ok(default),
            Some((PropValue::Int(v), span)) => {
                if v < min || v > max {
                    Err(self.err(
                        &span,
                        format!("`{key}` in [{}] is {v}; expected an integer from {min} to {max}", self.section),
                    ))
                } else {
                    Ok(v)
                }
            }
            Some((other, span)) => Err(self.err(
                &span,
                format!("`{key}` in [{}] is {}; expected an integer from {min} to {max}", self.section, other.kind()),
            )),
        }
    }

    /// A non-negative integer as `u64`.
    pub fn uint(&mut self, key: &'static str, default: u64, min: u64, max: u64) -> Result<u64, ScenarioError> {
        self.int(key, default as i64, min as i64, max.min(i64::MAX as u64) as i64).map(|v| v as u64)
    }

    pub fn float(&mut self, key: &'static str, default: f64, min: f64, max: f64) -> Result<f64, ScenarioError> {
        let (v, span) = match self.take(key) {
            None => return Ok(default),
            Some((PropValue::Float(v), span)) => (v, span),
            Some((PropValue::Int(v), span)) => (v as f64, span),
            Some((other, span)) => {
                return Err(self.err(
                    &span,
                    format!("`{key}` in [{}] is {}; expected a number from {min} to {max}", self.section, other.kind()),
                ));
            }
        };
        if !(min..=max).contains(&v) {
            return Err(
                self.err(&span, format!("`{key}` in [{}] is {v}; expected a number from {min} to {max}", self.section))
            );
        }
        Ok(v)
    }

    pub fn bool(&mut self, key: &'static str, default: bool) -> Result<bool, ScenarioError> {
        match self.take(key) {
            None => Ok(default),
            Some((PropValue::Bool(v), _)) => Ok(v),
            // Kafka property files write booleans as strings; accept those too.
            Some((PropValue::Str(s), _)) if s == "true" => Ok(true),
            Some((PropValue::Str(s), _)) if s == "false" => Ok(false),
            Some((other, span)) => Err(self
                .err(&span, format!("`{key}` in [{}] is {}; expected `true` or `false`", self.section, other.kind()))),
        }
    }

    /// Whether `key` is present (without taking it).
    pub fn has(&self, key: &str) -> bool {
        self.props.entries.contains_key(key)
    }

    pub fn string(&mut self, key: &'static str) -> Result<Option<(String, Range<usize>)>, ScenarioError> {
        match self.take(key) {
            None => Ok(None),
            Some((PropValue::Str(s), span)) => Ok(Some((s, span))),
            Some((other, span)) => {
                Err(self.err(&span, format!("`{key}` in [{}] is {}; expected a string", self.section, other.kind())))
            }
        }
    }

    /// One of `choices` (each a list of accepted spellings mapped to a value), or `default`.
    /// Integers are accepted where a choice is spelled as one (`acks = 1` or `acks = "1"`).
    pub fn choice<T: Copy>(
        &mut self,
        key: &'static str,
        default: T,
        choices: &[(&[&str], T)],
    ) -> Result<T, ScenarioError> {
        let Some((v, span)) = self.take(key) else {
            return Ok(default);
        };
        let text = match &v {
            PropValue::Str(s) => s.clone(),
            PropValue::Int(i) => i.to_string(),
            PropValue::Bool(b) => b.to_string(),
            PropValue::Float(f) => f.to_string(),
        };
        for (names, value) in choices {
            if names.iter().any(|n| *n == text) {
                return Ok(*value);
            }
        }
        let expected: Vec<String> = choices.iter().map(|(names, _)| format!("`{}`", names[0])).collect();
        Err(self
            .err(&span, format!("`{key}` in [{}] is `{text}`; expected one of {}", self.section, expected.join(", "))))
    }

    /// Errors on the first key nobody asked for, naming the keys that are known.
    pub fn finish(self) -> Result<(), ScenarioError> {
        if let Some((key, (_, span))) = self.props.entries.iter().next() {
            let mut known = self.known.clone();
            known.sort_unstable();
            return Err(self.err(
                span,
                format!(
                    "unknown key `{key}` in [{}]; expected one of: {} (keys are Kafka's own config names; see docs/scenario-format.md)",
                    self.section,
                    known.join(", ")
                ),
            ));
        }
        Ok(())
    }
}
