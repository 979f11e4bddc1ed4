//! A violated invariant's counterexample as a story a reviewer can follow: the checker's entries
//! (and the faults and cluster events around them) as a sequence of messages between the
//! workload, the services, the brokers and the consumers, rendered as a Mermaid
//! `sequenceDiagram`, as an SVG drawn here, and as a text timeline.

use crate::charts::fit;
use evsim_model::checkers::Violation;
use evsim_model::describe::{describe_op, story_entries};
use evsim_model::history::{GroupId, History, NodeId, Op, Tp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// At most this many steps in a diagram; the timeline has them all.
pub const MAX_STEPS: usize = 40;

/// How a step is drawn.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    /// A request (solid arrow).
    Request,
    /// A response (dashed arrow).
    Response,
    /// Something that happened at one participant.
    Note,
}

/// One step of the story: an entry of the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Index of the history entry.
    pub entry: usize,
    pub time_us: u64,
    /// Indices into [`Counterexample::participants`].
    pub from: usize,
    pub to: usize,
    pub kind: StepKind,
    pub text: String,
}

/// A violated invariant, its message, and the story that shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Counterexample {
    pub invariant: String,
    pub claimed: bool,
    pub seed: u64,
    /// For a sweep: the setting the run had (`partitions=4, acks=all`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub setting: Option<String>,
    pub message: String,
    /// How many violations of this invariant the run had (this is the first).
    pub violations: usize,
    /// The processes of the diagram, left to right.
    pub participants: Vec<String>,
    /// The diagram's steps (at most [`MAX_STEPS`]).
    pub steps: Vec<Step>,
    /// Every entry of the story, one line each, as `evsim run` prints them.
    pub timeline: Vec<String>,
}

/// Where records and commits go: each partition's leader (from the simulator's placement and
/// the elections the history records) and each group's coordinator.
struct Cluster {
    brokers: Vec<NodeId>,
    first_partition: Vec<usize>,
    leader: BTreeMap<Tp, NodeId>,
    /// Each group's coordinator, as the history's `Coordinator` entries say.
    coordinator: BTreeMap<GroupId, NodeId>,
}

impl Cluster {
    fn new(h: &History) -> Self {
        let brokers: Vec<NodeId> = (0..h.header.nodes.len())
            .filter(|&i| h.header.nodes[i].starts_with("broker-"))
            .map(|i| NodeId(i as u16))
            .collect();
        let mut first_partition = Vec::new();
        let mut n = 0;
        for t in &h.header.topics {
            first_partition.push(n);
            n += t.partitions as usize;
        }
        Self { brokers, first_partition, leader: BTreeMap::new(), coordinator: BTreeMap::new() }
    }

    fn leader(&self, tp: Tp) -> Option<NodeId> {
        if let Some(&l) = self.leader.get(&tp) {
            return Some(l);
        }
        let global = self.first_partition.get(tp.topic.0 as usize)? + tp.partition as usize;
        let b = evsim_sim::cluster::preferred_leader(global, self.brokers.len() as u32);
        self.brokers.get(b as usize).copied()
    }

    fn coordinator(&self, group: GroupId) -> Option<NodeId> {
        self.coordinator.get(&group).copied()
    }
}

/// The steps an entry makes: `(from, to, kind)` by node.
fn shape(cluster: &Cluster, process: NodeId, op: &Op) -> (NodeId, NodeId, StepKind) {
    let to_leader = |tp: Tp| cluster.leader(tp).unwrap_or(process);
    match op {
        Op::Send { tp, .. } => (process, to_leader(*tp), StepKind::Request),
        Op::SendOk { tp, .. } | Op::SendFailed { tp, .. } => (to_leader(*tp), process, StepKind::Response),
        Op::Poll { records, .. } => match records.first() {
            Some(r) => (to_leader(r.tp), process, StepKind::Response),
            None => (process, process, StepKind::Note),
        },
        Op::Commit { group, .. } => (process, cluster.coordinator(*group).unwrap_or(process), StepKind::Request),
        _ => (process, process, StepKind::Note),
    }
}

/// The counterexample of `violation` of `invariant` in `h`.
pub fn build(
    h: &History,
    invariant: &str,
    claimed: bool,
    violations: &[Violation],
    seed: u64,
) -> Option<Counterexample> {
    let violation = violations.first()?;
    let story = story_entries(h, &violation.entries);
    let timeline: Vec<String> = story.iter().map(|&i| h.describe(i)).collect();
    let mut cluster = Cluster::new(h);
    // Leaders and coordinators as of each story entry: replay the elections up to it.
    let mut elections = h
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e.op, Op::LeaderElected { .. } | Op::Coordinator { .. }))
        .peekable();
    let mut raw: Vec<(usize, NodeId, NodeId, StepKind)> = Vec::new();
    for &i in story.iter().take(MAX_STEPS) {
        while let Some((j, e)) = elections.peek() {
            if *j > i {
                break;
            }
            match &e.op {
                Op::LeaderElected { tp, leader: Some(l), .. } => {
                    cluster.leader.insert(*tp, *l);
                }
                Op::Coordinator { group, coordinator: Some(c) } => {
                    cluster.coordinator.insert(*group, *c);
                }
                _ => {}
            }
            elections.next();
        }
        let e = &h.entries[i];
        let (from, to, kind) = shape(&cluster, e.process, &e.op);
        raw.push((i, from, to, kind));
    }
    // Participants left to right: the workload, services, brokers, consumers (a request flows
    // that way), each only if the story involves it. Consumers are the nodes that poll.
    let involved: std::collections::BTreeSet<NodeId> = raw.iter().flat_map(|r| [r.1, r.2]).collect();
    let consumers: std::collections::BTreeSet<NodeId> = h
        .entries
        .iter()
        .filter(|e| matches!(e.op, Op::Poll { .. } | Op::Assigned { .. } | Op::Processed { .. }))
        .map(|e| e.process)
        .collect();
    let rank = |n: NodeId| {
        let class = if h.node_name(n) == "workload" {
            0
        } else if cluster.brokers.contains(&n) {
            2
        } else if consumers.contains(&n) {
            3
        } else {
            1
        };
        (class, n.0)
    };
    let mut order: Vec<NodeId> = involved.into_iter().collect();
    order.sort_by_key(|&n| rank(n));
    let index: BTreeMap<NodeId, usize> = order.iter().enumerate().map(|(k, &n)| (n, k)).collect();
    let steps = raw
        .into_iter()
        .map(|(i, from, to, kind)| Step {
            entry: i,
            time_us: h.entries[i].time,
            from: index[&from],
            to: index[&to],
            kind,
            text: describe_op(h, &h.entries[i].op),
        })
        .collect();
    Some(Counterexample {
        invariant: invariant.to_string(),
        claimed,
        seed,
        setting: None,
        message: violation.message.clone(),
        violations: violations.len(),
        participants: order.iter().map(|&n| h.node_name(n).to_string()).collect(),
        steps,
        timeline,
    })
}

/// Mermaid's sequence text stops at `;` and `#`, and `%%` starts a comment: write them as
/// Mermaid's entity codes.
fn mermaid_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '#' => out.push_str("#35;"),
            ';' => out.push_str("#59;"),
            '%' => out.push_str("#37;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Time as `1.234567s`.
pub fn seconds(us: u64) -> String {
    format!("{}.{:06}s", us / 1_000_000, us % 1_000_000)
}

impl Counterexample {
    /// The story as a Mermaid `sequenceDiagram`.
    pub fn mermaid(&self) -> String {
        let mut out = String::from("sequenceDiagram\n    autonumber\n");
        for (k, p) in self.participants.iter().enumerate() {
            out.push_str(&format!("    participant P{k} as {}\n", mermaid_text(p)));
        }
        for s in &self.steps {
            let text = mermaid_text(&format!("t={} {}", seconds(s.time_us), s.text));
            match s.kind {
                StepKind::Request => out.push_str(&format!("    P{}->>P{}: {text}\n", s.from, s.to)),
                StepKind::Response => out.push_str(&format!("    P{}-->>P{}: {text}\n", s.from, s.to)),
                StepKind::Note => out.push_str(&format!("    Note over P{}: {text}\n", s.from)),
            }
        }
        if self.timeline.len() > self.steps.len() {
            let last = self.participants.len().saturating_sub(1);
            out.push_str(&format!(
                "    Note over P0,P{last}: {} more entries in the text timeline\n",
                self.timeline.len() - self.steps.len()
            ));
        }
        out
    }

    /// The story drawn as an SVG sequence diagram (lifelines, arrows, notes), self-contained.
    pub fn svg(&self) -> String {
        const COL: f64 = 190.0;
        const ROW: f64 = 30.0;
        const TOP: f64 = 56.0;
        const LEFT: f64 = 110.0;
        let n = self.participants.len().max(1) as f64;
        let width = LEFT + COL * n;
        let height = TOP + ROW * (self.steps.len() as f64 + 1.0) + 16.0;
        let x = |p: usize| LEFT + COL * (p as f64 + 0.5);
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" \
             font-family=\"sans-serif\" font-size=\"12\" role=\"img\" aria-label=\"sequence diagram of the {} counterexample\">\n\
             <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\">\
             <path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#333\"/></marker></defs>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
            xml(&self.invariant)
        );
        for (k, p) in self.participants.iter().enumerate() {
            let cx = x(k);
            s.push_str(&format!(
                "<rect x=\"{}\" y=\"8\" width=\"{}\" height=\"30\" rx=\"4\" fill=\"#eef3fb\" stroke=\"#4a6fa5\"/>\
                 <text x=\"{cx}\" y=\"28\" text-anchor=\"middle\" font-weight=\"bold\">{}</text>\n\
                 <line x1=\"{cx}\" y1=\"38\" x2=\"{cx}\" y2=\"{}\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>\n",
                cx - COL / 2.0 + 8.0,
                COL - 16.0,
                xml(&fit(p, 26)),
                height - 8.0
            ));
        }
        for (row, step) in self.steps.iter().enumerate() {
            let y = TOP + ROW * (row as f64 + 0.5) + 8.0;
            s.push_str(&format!(
                "<text x=\"8\" y=\"{}\" fill=\"#666\">{}</text>\n",
                y + 4.0,
                xml(&format!("{:>3}. {}", row + 1, seconds(step.time_us)))
            ));
            let title = format!("<title>{}</title>", xml(&step.text));
            if step.kind == StepKind::Note || step.from == step.to {
                // Centred on its participant, kept clear of the time column and the right edge.
                let w = (COL * 1.6).min(width - LEFT - 4.0);
                let left = (x(step.from) - w / 2.0).clamp(LEFT + 2.0, width - w - 2.0);
                let cx = left + w / 2.0;
                s.push_str(&format!(
                    "<g>{title}<rect x=\"{}\" y=\"{}\" width=\"{w}\" height=\"{}\" rx=\"3\" fill=\"#fff8dc\" stroke=\"#c9b458\"/>\
                     <text x=\"{cx}\" y=\"{}\" text-anchor=\"middle\">{}</text></g>\n",
                    left,
                    y - 11.0,
                    ROW - 8.0,
                    y + 4.0,
                    xml(&fit(&step.text, (w / 6.6) as usize))
                ));
            } else {
                let (a, b) = (x(step.from), x(step.to));
                let dash = if step.kind == StepKind::Response { " stroke-dasharray=\"6 4\"" } else { "" };
                let span = (a - b).abs();
                s.push_str(&format!(
                    "<g>{title}<line x1=\"{a}\" y1=\"{}\" x2=\"{b}\" y2=\"{}\" stroke=\"#333\"{dash} marker-end=\"url(#arrow)\"/>\
                     <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text></g>\n",
                    y + 6.0,
                    y + 6.0,
                    (a + b) / 2.0,
                    y,
                    xml(&fit(&step.text, ((span + COL * 0.6) / 6.6) as usize))
                ));
            }
        }
        s.push_str("</svg>\n");
        s
    }
}

/// Text escaped for XML and HTML.
pub fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use evsim_model::history::{EventId, GroupInfo, Header, Polled, TopicId, TopicInfo};
    use evsim_model::scenario::FaultKind;

    const TP: Tp = Tp { topic: TopicId(0), partition: 1 };

    /// A lost write: acknowledged by broker-1 (partition 1's leader with two brokers), broker-1
    /// crashes, broker-0 leads without the record, the consumer reads past it.
    fn history() -> (History, Violation) {
        let mut h = History::new(Header {
            scenario: "t".into(),
            seed: 3,
            nodes: ["workload", "broker-0", "broker-1", "order-service-0", "order-event-consumer-0"]
                .map(String::from)
                .to_vec(),
            topics: vec![TopicInfo { name: "order-created".into(), partitions: 2 }],
            groups: vec![GroupInfo { name: "g".into(), topics: vec![TopicId(0)], effect_once: true }],
            events: evsim_model::event::builtin_events(),
            handlers: Vec::new(),
            invariants: Vec::new(),
            quiet_from: 10,
            end: 20,
        });
        let v = EventId::order_created(7);
        h.push(0, NodeId(0), Op::Coordinator { group: GroupId(0), coordinator: Some(NodeId(1)) });
        h.push(1, NodeId(3), Op::Send { tp: TP, key: Some(7), value: v });
        h.push(2, NodeId(3), Op::SendOk { tp: TP, key: Some(7), value: v, offset: Some(0) });
        h.push(3, NodeId(2), Op::FaultStarted { fault: 0, kind: FaultKind::BrokerCrash });
        h.push(
            4,
            NodeId(2),
            Op::LeaderElected { tp: TP, leader: Some(NodeId(1)), epoch: 1, log_end: 0, unclean: false },
        );
        let other = EventId::order_created(8);
        let polled = Polled { tp: TP, offset: 0, key: Some(8), value: other };
        h.push(5, NodeId(4), Op::Poll { group: GroupId(0), records: vec![polled] });
        h.push(6, NodeId(4), Op::Commit { group: GroupId(0), generation: 1, offsets: vec![(TP, 1)], error: None });
        (h, Violation::new("lost; really", vec![1, 2, 5, 6]))
    }

    #[test]
    fn the_story_flows_from_service_to_leader_to_consumer() {
        let (h, v) = history();
        let c = build(&h, "lost-write", true, &[v], 3).unwrap();
        assert_eq!(c.participants, ["order-service-0", "broker-0", "broker-1", "order-event-consumer-0"]);
        let arrows: Vec<(usize, usize, StepKind)> = c.steps.iter().map(|s| (s.from, s.to, s.kind)).collect();
        assert_eq!(
            arrows,
            [
                (0, 2, StepKind::Request),  // send to partition 1's preferred leader, broker-1
                (2, 0, StepKind::Response), // its acknowledgement
                (2, 2, StepKind::Note),     // broker-1 crashes
                (2, 2, StepKind::Note),     // the election, recorded by the old leader
                (1, 3, StepKind::Response), // the poll is answered by the new leader, broker-0
                (3, 1, StepKind::Request),  // the commit goes to the group's coordinator
            ]
        );
        assert_eq!(c.timeline.len(), c.steps.len());
    }

    #[test]
    fn mermaid_names_participants_by_alias_and_escapes_its_separators() {
        let (h, v) = history();
        let c = build(&h, "lost-write", true, &[v], 3).unwrap();
        let m = c.mermaid();
        assert!(m.starts_with("sequenceDiagram\n    autonumber\n    participant P0 as order-service-0\n"), "{m}");
        assert!(m.contains("    P0->>P2: t=0.000001s send order-created-1 key=7 order-created(order 7)\n"), "{m}");
        assert!(m.contains("    P2-->>P0: "), "{m}");
        assert!(m.contains("Note over P2: t=0.000003s fault #35;0 broker-crash starts"), "{m}");
        for line in m.lines().skip(1) {
            let text = line.split_once(": ").map_or("", |x| x.1);
            assert!(!text.contains(';') || text.contains("#35;") || text.contains("#59;"), "{line}");
            assert!(!text.replace("#35;", "").replace("#59;", "").replace("#37;", "").contains('#'), "{line}");
        }
    }

    #[test]
    fn the_svg_has_a_lifeline_per_participant_and_a_row_per_step() {
        let (h, v) = history();
        let c = build(&h, "lost-write", true, &[v], 3).unwrap();
        let svg = c.svg();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert_eq!(svg.matches("stroke-dasharray=\"4 3\"").count(), c.participants.len());
        assert_eq!(svg.matches("<title>").count(), c.steps.len());
        assert!(svg.contains("fault #0 broker-crash starts"));
        assert_eq!(xml("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
