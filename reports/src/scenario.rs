//! The report of one simulated run: verdicts, figures, the lag and latency charts, and a
//! counterexample for every violated invariant. Its JSON summary is deterministic (no wall
//! time), so it is also the regression snapshot of a scenario.

use crate::charts::{Band, Chart, Plot, Series, number};
use crate::counterexample::{self, Counterexample};
use crate::findings::capitalise;
use crate::metrics::{self, Metrics, PeriodKind};
use crate::page::{Page, Table};
use evsim_model::scenario::Scenario;
use evsim_sim::{RunOutcome, Stats};
use serde::Serialize;

/// One invariant's verdict, for the summary.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InvariantSummary {
    pub name: &'static str,
    pub claimed: bool,
    pub held: bool,
    /// Violations found (checkers list at most 20 and say how many more in the message).
    pub violations: usize,
    /// The first violation's message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first: Option<String>,
}

/// A counterexample as the summary lists it: the story as text lines.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StorySummary {
    pub invariant: String,
    pub message: String,
    pub timeline: Vec<String>,
}

/// The JSON summary of a scenario's run.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioSummary {
    pub scenario: String,
    pub file: String,
    pub seed: u64,
    pub history_hash: String,
    /// Every claimed invariant held and the run was not vacuous.
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vacuous: Option<String>,
    pub stats: Stats,
    pub metrics: Metrics,
    pub invariants: Vec<InvariantSummary>,
    pub charts: Vec<Chart>,
    pub counterexamples: Vec<StorySummary>,
}

/// Everything a scenario report shows.
pub struct ScenarioReport {
    pub summary: ScenarioSummary,
    pub description: String,
    pub charts: Vec<Chart>,
    pub counterexamples: Vec<Counterexample>,
}

/// The report of `outcome`, a run of `scenario` read from `file`.
pub fn report(scenario: &Scenario, file: &str, outcome: &RunOutcome) -> ScenarioReport {
    let h = &outcome.history;
    let metrics = metrics::measure(h);
    let invariants: Vec<InvariantSummary> = outcome
        .verdicts
        .iter()
        .map(|v| InvariantSummary {
            name: v.invariant.name(),
            claimed: v.claimed,
            held: v.violations.is_empty(),
            violations: v.violations.len(),
            first: v.violations.first().map(|x| x.message.clone()),
        })
        .collect();
    // Claimed invariants first: they decide the verdict.
    let mut violated: Vec<&evsim_sim::Verdict> = outcome.verdicts.iter().filter(|v| !v.violations.is_empty()).collect();
    violated.sort_by_key(|v| !v.claimed);
    let counterexamples: Vec<Counterexample> = violated
        .iter()
        .filter_map(|v| counterexample::build(h, v.invariant.name(), v.claimed, &v.violations, outcome.seed))
        .collect();
    let mut charts = Vec::new();
    charts.extend(lag_chart(scenario, outcome));
    charts.extend(latency_chart(scenario, outcome));
    let summary = ScenarioSummary {
        scenario: scenario.name.clone(),
        file: file.to_string(),
        seed: outcome.seed,
        history_hash: format!("{:016x}", outcome.history_hash),
        passed: outcome.passed(),
        vacuous: outcome.vacuous.clone(),
        stats: outcome.stats.clone(),
        metrics,
        invariants,
        charts: charts.clone(),
        counterexamples: counterexamples
            .iter()
            .map(|c| StorySummary {
                invariant: c.invariant.clone(),
                message: c.message.clone(),
                timeline: c.timeline.clone(),
            })
            .collect(),
    };
    ScenarioReport { summary, description: scenario.description.clone(), charts, counterexamples }
}

/// Each group's lag over the run, faults and rebalances shaded.
fn lag_chart(scenario: &Scenario, outcome: &RunOutcome) -> Option<Chart> {
    let h = &outcome.history;
    let lags = metrics::lag_series(h);
    if lags.is_empty() {
        return None;
    }
    let end = h.header.end.max(1);
    let periods = metrics::periods(h);
    let series: Vec<Series> =
        lags.iter().map(|l| Series { name: l.group.clone(), points: downsample(&l.points, end, 400) }).collect();
    let bands: Vec<Band> = periods
        .iter()
        .map(|p| Band {
            from: p.from as f64 / 1e6,
            to: p.to as f64 / 1e6,
            kind: if p.kind == PeriodKind::Fault { 0 } else { 1 },
        })
        .collect();
    // The finding: the worst group's peak, what was going on then, and whether it drained.
    let (worst, peak, at) = lags
        .iter()
        .filter_map(|l| l.points.iter().max_by_key(|p| (p.1, std::cmp::Reverse(p.0))).map(|p| (l, p.1, p.0)))
        .max_by_key(|(_, peak, at)| (*peak, std::cmp::Reverse(*at)))?;
    let during = periods.iter().find(|p| p.from <= at && at <= p.to).map(|p| format!(" during {}", p.label));
    let last = worst.points.last().map_or(0, |p| p.1);
    let drained = if last == 0 {
        let back = worst.points.iter().rev().take_while(|p| p.1 == 0).last().map_or(0, |p| p.0);
        format!("it is back to 0 at {:.1} s", back as f64 / 1e6)
    } else {
        format!("it is still {} at the end of the run", number(last as f64))
    };
    let finding = if peak == 0 {
        "No group ever had a record waiting: lag stays at 0.".to_string()
    } else {
        capitalise(&format!(
            "{}'s lag peaks at {} record(s) at {:.1} s{}; {drained}.",
            worst.group,
            number(peak as f64),
            at as f64 / 1e6,
            during.unwrap_or_default()
        ))
    };
    Some(Chart {
        id: "lag".into(),
        title: "Does consumer lag return to zero?".into(),
        subtitle: format!("{}, seed {}: each group's lag; faults and rebalances shaded", scenario.name, outcome.seed),
        finding,
        x_label: "simulated time (s)".into(),
        y_label: "lag (records acknowledged, not committed)".into(),
        plot: Plot::Lines {
            series: series
                .into_iter()
                .map(|s| Series { points: s.points.iter().map(|&(t, v)| (t / 1e6, v)).collect(), ..s })
                .collect(),
            bands,
            band_names: vec!["faults".into(), "rebalances".into()],
        },
    })
}

/// At most `n` points of a step series: each bucket's largest value, so that peaks survive.
fn downsample(points: &[(u64, u64)], end: u64, n: u64) -> Vec<(f64, f64)> {
    let width = (end / n).max(1);
    let mut out: Vec<(f64, f64)> = Vec::new();
    let mut bucket: Option<(u64, u64)> = None;
    for &(t, v) in points {
        let b = t / width;
        match bucket {
            Some((cur, max)) if cur == b => bucket = Some((cur, max.max(v))),
            Some((cur, max)) => {
                out.push(((cur * width) as f64, max as f64));
                bucket = Some((b, v));
            }
            None => bucket = Some((b, v)),
        }
    }
    if let Some((cur, max)) = bucket {
        out.push(((cur * width) as f64, max as f64));
    }
    // A step series holds its last value: to the last change, then to the end of the run.
    if let Some(&(t, v)) = points.last() {
        out.push((t as f64, v as f64));
        out.push((end.max(t) as f64, v as f64));
    }
    out
}

/// The distribution of request-to-effect latencies, with its median and 99th percentile.
fn latency_chart(scenario: &Scenario, outcome: &RunOutcome) -> Option<Chart> {
    let samples = metrics::latencies(&outcome.history);
    let p = metrics::Percentiles::of(&samples)?;
    // The bulk of the distribution, not its tail: up to 1.25 x p99 (what lies beyond is counted
    // in the finding).
    let upper = (p.p99_ms * 1.25).min(p.max_ms).max(0.001);
    let bins_n = 40;
    let width = upper / f64::from(bins_n);
    let mut counts = vec![0u64; bins_n as usize];
    let mut beyond = 0;
    for &s in &samples {
        let ms = s as f64 / 1_000.0;
        if ms > upper {
            beyond += 1;
        } else {
            counts[((ms / width) as usize).min(bins_n as usize - 1)] += 1;
        }
    }
    let bins = counts.iter().enumerate().map(|(i, &n)| (i as f64 * width, (i + 1) as f64 * width, n)).collect();
    let tail =
        if beyond > 0 { format!(" ({} beyond the chart's right edge)", number(beyond as f64)) } else { String::new() };
    Some(Chart {
        id: "latency".into(),
        title: "How long from a request to its downstream effect?".into(),
        subtitle: format!("{}, seed {}: every effect's time since its client request", scenario.name, outcome.seed),
        finding: format!(
            "Half of the {} effects were applied within {} ms of their request and 99% within {} ms; the slowest took {} ms{tail}.",
            number(p.samples as f64),
            number(p.p50_ms),
            number(p.p99_ms),
            number(p.max_ms)
        ),
        x_label: "request to effect (ms, simulated)".into(),
        y_label: "effects".into(),
        plot: Plot::Histogram {
            bins,
            markers: vec![
                (format!("median {} ms", number(p.p50_ms)), p.p50_ms),
                (format!("p99 {} ms", number(p.p99_ms)), p.p99_ms),
            ],
        },
    })
}

impl ScenarioReport {
    /// The report as a page.
    pub fn page(&self, replay: &str) -> Page {
        let s = &self.summary;
        let claimed_violated: Vec<&str> =
            s.invariants.iter().filter(|i| i.claimed && !i.held).map(|i| i.name).collect();
        let verdict = if let Some(v) = &s.vacuous {
            format!("VACUOUS: {v}; a run that moved nothing proves nothing.")
        } else if claimed_violated.is_empty() {
            "Every claimed invariant held.".to_string()
        } else {
            format!("VIOLATED: {}.", claimed_violated.join(", "))
        };
        let m = &s.metrics;
        let latency = m.latency.as_ref().map_or("-".to_string(), |l| {
            format!("median {} ms, p99 {} ms, max {} ms", number(l.p50_ms), number(l.p99_ms), number(l.max_ms))
        });
        let figures = Table {
            caption: "What the run measured".into(),
            header: vec!["figure".into(), "value".into()],
            rows: vec![
                vec![
                    "records produced / consumed".into(),
                    format!(
                        "{} / {}",
                        number(s.stats.records_produced as f64),
                        number(s.stats.records_consumed as f64)
                    ),
                ],
                vec!["throughput (records handled per simulated second)".into(), number(m.throughput_rps)],
                vec!["request to downstream effect".into(), latency],
                vec!["effects applied twice".into(), number(m.duplicate_effects as f64)],
                vec!["values written at two offsets".into(), number(m.log_duplicates as f64)],
                vec!["sends that landed before an earlier send of their key".into(), number(m.reordered_sends as f64)],
                vec![
                    "largest consumer lag / lag left at the end".into(),
                    format!("{} / {}", number(m.max_lag as f64), number(m.final_lag as f64)),
                ],
                vec![
                    "rebalances / offset commits failed".into(),
                    format!("{} / {}", s.stats.rebalances, s.stats.commits_failed),
                ],
            ],
        };
        let verdicts = Table {
            caption: "Invariants (claimed ones decide the verdict)".into(),
            header: vec!["invariant".into(), "claimed".into(), "verdict".into(), "first violation".into()],
            rows: s
                .invariants
                .iter()
                .map(|i| {
                    vec![
                        i.name.to_string(),
                        if i.claimed { "claimed" } else { "informational" }.to_string(),
                        if i.held { "held".to_string() } else { format!("VIOLATED ({})", i.violations) },
                        i.first.clone().unwrap_or_default(),
                    ]
                })
                .collect(),
        };
        let mut lead =
            vec![format!("Scenario {} ({}), seed {}, history hash {}.", s.scenario, s.file, s.seed, s.history_hash)];
        if !self.description.is_empty() {
            lead.push(self.description.clone());
        }
        Page {
            title: format!("{}: design review", s.scenario),
            lead,
            passed: s.passed,
            verdict,
            tables: vec![verdicts, figures],
            charts: self.charts.clone(),
            counterexamples: self.counterexamples.clone(),
            replay: replay.to_string(),
        }
    }
}
