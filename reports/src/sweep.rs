//! Parameter sweeps: the cartesian product of the varied settings, N seeds each, run in
//! parallel with results that do not depend on the thread count (they are put back in setting
//! and seed order before anything is aggregated), and the charts that compare the settings.

use crate::charts::{Chart, Plot, Series, number};
use crate::counterexample::{self, Counterexample};
use crate::findings::{capitalise, over_axis};
use crate::metrics::{self, Metrics};
use crate::page::{Page, Table};
use crate::vary::{Axis, Base, VaryError};
use evsim_model::checkers::Invariant;
use evsim_model::scenario::Scenario;
use evsim_sim::run_scenario;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The most runs one sweep may ask for.
pub const MAX_RUNS: u64 = 1_000_000;

/// One combination of the axes' values, and the scenario it gives.
#[derive(Clone, Debug)]
pub struct Setting {
    /// One label per axis.
    pub labels: Vec<String>,
    pub scenario: Scenario,
}

/// A sweep ready to run: every setting parsed and validated.
#[derive(Clone, Debug)]
pub struct Plan {
    pub file: String,
    pub scenario: String,
    pub sets: Vec<(String, String)>,
    pub axes: Vec<Axis>,
    pub settings: Vec<Setting>,
}

impl Plan {
    /// Build every setting of `axes` over the scenario `source` (read from `file`) with `sets`
    /// applied. A value the scenario refuses is an error naming the setting.
    pub fn new(file: &str, source: &str, sets: &[(String, toml::Value)], axes: Vec<Axis>) -> Result<Self, VaryError> {
        let mut keys: Vec<&str> = sets
            .iter()
            .map(|(k, _)| k.as_str())
            .chain(axes.iter().flat_map(|a| a.keys.iter().map(String::as_str)))
            .collect();
        if keys.contains(&"run.seed") {
            return Err(VaryError("run.seed: a sweep runs seeds 1..=N of every setting; use --seeds".to_string()));
        }
        keys.sort_unstable();
        if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
            return Err(VaryError(format!("`{}` is changed twice (by --vary or --set): say it once", w[0])));
        }
        let base = Base::new(file, source, sets)?;
        let mut choices: Vec<Vec<usize>> = vec![Vec::new()];
        for axis in &axes {
            choices = choices
                .into_iter()
                .flat_map(|c| {
                    (0..axis.labels.len()).map(move |i| {
                        let mut c = c.clone();
                        c.push(i);
                        c
                    })
                })
                .collect();
        }
        let mut settings = Vec::with_capacity(choices.len());
        for choice in choices {
            let labels: Vec<String> = axes.iter().zip(&choice).map(|(a, &i)| a.labels[i].clone()).collect();
            let what = describe(&axes, &labels);
            let scenario = base.scenario(&axes, &choice, if what.is_empty() { "no change" } else { &what })?;
            settings.push(Setting { labels, scenario });
        }
        let scenario = settings.first().map(|s| s.scenario.name.clone()).unwrap_or_default();
        // In TOML's form, so that the replayed command means the same (`"0"` stays a string).
        let sets = sets.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
        Ok(Self { file: file.to_string(), scenario, sets, axes, settings })
    }

    /// Run every setting with seeds `1..=seeds` on `jobs` threads; `progress` is called after
    /// each run.
    pub fn run(&self, seeds: u64, jobs: usize, progress: &(dyn Fn(&RunSummary) + Sync)) -> SweepResult {
        let total = self.settings.len() * seeds as usize;
        let jobs = jobs.clamp(1, total.max(1));
        let next = AtomicUsize::new(0);
        let out: Mutex<Vec<RunSummary>> = Mutex::new(Vec::with_capacity(total));
        std::thread::scope(|s| {
            for _ in 0..jobs {
                s.spawn(|| {
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        if k >= total {
                            break;
                        }
                        let (setting, seed) = (k / seeds as usize, k as u64 % seeds + 1);
                        let r = run_one(&self.settings[setting].scenario, setting, seed);
                        progress(&r);
                        out.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(r);
                    }
                });
            }
        });
        let mut runs = out.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Threads finish in any order: the result is in setting and seed order, whatever ran when.
        runs.sort_by_key(|r| (r.setting, r.seed));
        // Every setting has its `seeds` runs, in order.
        let settings: Vec<SettingResult> = self
            .settings
            .iter()
            .zip(runs.chunks(seeds.max(1) as usize))
            .map(|(s, runs)| aggregate(&s.labels, runs))
            .collect();
        let counterexamples = self.counterexamples(&runs);
        SweepResult {
            scenario: self.scenario.clone(),
            file: self.file.clone(),
            seeds,
            runs: runs.len() as u64,
            passed_runs: runs.iter().filter(|r| r.passed).count() as u64,
            set: self.sets.clone(),
            axes: self.axes.clone(),
            settings,
            counterexamples,
        }
    }

    /// For each violated invariant (claimed ones first), the first run that violated it, run
    /// again (a seed replays exactly) for its story.
    fn counterexamples(&self, runs: &[RunSummary]) -> Vec<Counterexample> {
        let mut wanted: Vec<(Invariant, bool, usize, u64)> = Vec::new();
        for inv in every_invariant(runs) {
            if let Some(r) = runs.iter().find(|r| r.violated.iter().any(|v| v.0 == inv)) {
                let claimed = r.violated.iter().any(|v| v.0 == inv && v.1);
                wanted.push((inv, claimed, r.setting, r.seed));
            }
        }
        wanted.sort_by_key(|w| !w.1);
        let mut out = Vec::new();
        let mut replayed: Option<(usize, u64, evsim_sim::RunOutcome)> = None;
        for (inv, claimed, setting, seed) in wanted {
            if replayed.as_ref().is_none_or(|(s, k, _)| (*s, *k) != (setting, seed)) {
                replayed = Some((setting, seed, run_scenario(&self.settings[setting].scenario, seed)));
            }
            let Some((_, _, outcome)) = &replayed else { continue };
            let Some(v) = outcome.verdicts.iter().find(|v| v.invariant == inv) else { continue };
            if let Some(mut c) = counterexample::build(&outcome.history, inv.name(), claimed, &v.violations, seed) {
                c.setting = Some(describe(&self.axes, &self.settings[setting].labels)).filter(|s| !s.is_empty());
                out.push(c);
            }
        }
        out
    }
}

/// `partitions=4, acks=all`.
pub fn describe(axes: &[Axis], labels: &[String]) -> String {
    axes.iter().zip(labels).map(|(a, l)| format!("{}={l}", a.short_name())).collect::<Vec<_>>().join(", ")
}

/// What one run of a sweep left behind.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub setting: usize,
    pub seed: u64,
    pub passed: bool,
    pub vacuous: bool,
    /// Why the run stopped before its end (the event budget), if it did: no verdict.
    pub stopped: Option<String>,
    /// Violated invariants, and whether the scenario claims each.
    pub violated: Vec<(Invariant, bool)>,
    pub records_produced: u64,
    pub records_consumed: u64,
    pub metrics: Metrics,
}

impl RunSummary {
    /// Whether a claimed invariant was violated.
    fn violated_a_claim(&self) -> bool {
        self.violated.iter().any(|v| v.1)
    }
}

fn run_one(scenario: &Scenario, setting: usize, seed: u64) -> RunSummary {
    let o = run_scenario(scenario, seed);
    RunSummary {
        setting,
        seed,
        passed: o.passed(),
        vacuous: o.vacuous.is_some(),
        stopped: o.stopped.clone(),
        violated: o.verdicts.iter().filter(|v| !v.violations.is_empty()).map(|v| (v.invariant, v.claimed)).collect(),
        records_produced: o.stats.records_produced,
        records_consumed: o.stats.records_consumed,
        metrics: metrics::measure(&o.history),
    }
}

/// Mean, least and largest of a figure over a setting's seeds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    /// Over `values`; `None` when no run had the figure (no latency without effects).
    fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let sum: f64 = values.iter().sum();
        Some(Self {
            mean: sum / values.len() as f64,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

/// How many runs of a setting violated one invariant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InvariantRuns {
    pub name: String,
    pub claimed: bool,
    pub runs: u64,
}

/// One setting over its seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SettingResult {
    /// One value per axis.
    pub values: Vec<String>,
    pub runs: u64,
    /// Runs that held every claimed invariant and moved records.
    pub passed: u64,
    /// Runs that moved nothing (or whose faults had no effect): they prove nothing.
    pub vacuous: u64,
    /// Runs that violated a claimed invariant.
    pub violating: u64,
    /// `violating` over runs.
    pub violation_rate: f64,
    /// The first seed that did not pass (violated or vacuous).
    pub first_failing_seed: Option<u64>,
    /// Invariants violated in at least one run.
    pub violated: Vec<InvariantRuns>,
    pub records_produced: u64,
    pub records_consumed: u64,
    pub throughput_rps: Stat,
    /// `None` when no run applied an effect.
    pub latency_p50_ms: Option<Stat>,
    pub latency_p99_ms: Option<Stat>,
    pub duplicate_effects: Stat,
    pub log_duplicates: Stat,
    pub reordered_sends: Stat,
    pub max_lag: Stat,
    pub final_lag: Stat,
}

/// evsim's invariants in report order, then those a workflow declared under names of its own
/// that `runs` violated, in the order they first appear.
fn every_invariant(runs: &[RunSummary]) -> Vec<Invariant> {
    let mut all = Invariant::ALL.to_vec();
    for (inv, _) in runs.iter().flat_map(|r| r.violated.iter()) {
        if !all.contains(inv) {
            all.push(*inv);
        }
    }
    all
}

fn aggregate(labels: &[String], runs: &[RunSummary]) -> SettingResult {
    let n = runs.len() as u64;
    let passed = runs.iter().filter(|r| r.passed).count() as u64;
    let violating = runs.iter().filter(|r| r.violated_a_claim()).count() as u64;
    let maybe = |f: &dyn Fn(&Metrics) -> Option<f64>| {
        Stat::of(&runs.iter().filter_map(|r| f(&r.metrics)).collect::<Vec<f64>>())
    };
    let stat = |f: &dyn Fn(&Metrics) -> f64| maybe(&|m| Some(f(m))).unwrap_or_default();
    let violated = every_invariant(runs)
        .into_iter()
        .filter_map(|inv| {
            let hits: Vec<&(Invariant, bool)> =
                runs.iter().flat_map(|r| r.violated.iter()).filter(|v| v.0 == inv).collect();
            (!hits.is_empty()).then(|| InvariantRuns {
                name: inv.name().to_string(),
                claimed: hits.iter().any(|v| v.1),
                runs: hits.len() as u64,
            })
        })
        .collect();
    SettingResult {
        values: labels.to_vec(),
        runs: n,
        passed,
        vacuous: runs.iter().filter(|r| r.vacuous).count() as u64,
        violating,
        violation_rate: if n == 0 { 0.0 } else { violating as f64 / n as f64 },
        first_failing_seed: runs.iter().find(|r| !r.passed).map(|r| r.seed),
        violated,
        records_produced: runs.iter().map(|r| r.records_produced).sum(),
        records_consumed: runs.iter().map(|r| r.records_consumed).sum(),
        throughput_rps: stat(&|m| m.throughput_rps),
        latency_p50_ms: maybe(&|m| m.latency.as_ref().map(|l| l.p50_ms)),
        latency_p99_ms: maybe(&|m| m.latency.as_ref().map(|l| l.p99_ms)),
        duplicate_effects: stat(&|m| m.duplicate_effects as f64),
        log_duplicates: stat(&|m| m.log_duplicates as f64),
        reordered_sends: stat(&|m| m.reordered_sends as f64),
        max_lag: stat(&|m| m.max_lag as f64),
        final_lag: stat(&|m| m.final_lag as f64),
    }
}

/// A finished sweep: what `evsim sweep --out` writes and `evsim report` reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepResult {
    pub scenario: String,
    pub file: String,
    pub seeds: u64,
    pub runs: u64,
    pub passed_runs: u64,
    /// `--set` changes every setting shares.
    pub set: Vec<(String, String)>,
    pub axes: Vec<Axis>,
    pub settings: Vec<SettingResult>,
    pub counterexamples: Vec<Counterexample>,
}

/// A figure a sweep can chart: its id, its name and unit, and whether it is always charted.
struct Figure {
    id: &'static str,
    question: &'static str,
    name: &'static str,
    unit: &'static str,
    axis: &'static str,
    /// `None`: the setting has no such figure (no effect, so no latency).
    value: fn(&SettingResult) -> Option<f64>,
    always: bool,
}

const FIGURES: [Figure; 6] = [
    Figure {
        id: "throughput",
        question: "How does throughput change",
        name: "throughput",
        unit: "records/s",
        axis: "records handled per simulated second",
        value: |s| Some(s.throughput_rps.mean),
        always: true,
    },
    Figure {
        id: "violations",
        question: "How often is a claimed invariant violated",
        name: "the share of runs violating a claimed invariant",
        unit: "%",
        axis: "runs violating a claimed invariant (%)",
        value: |s| Some(s.violation_rate * 100.0),
        always: true,
    },
    Figure {
        id: "duplicates",
        question: "How many effects are applied twice",
        name: "duplicated effects per run",
        unit: "",
        axis: "effects applied again, per run (mean)",
        value: |s| Some(s.duplicate_effects.mean),
        always: false,
    },
    Figure {
        id: "ordering",
        question: "Do a key's records land out of order",
        name: "reordered sends per run",
        unit: "",
        axis: "sends landing before an earlier send of their key, per run",
        value: |s| Some(s.reordered_sends.mean),
        always: false,
    },
    Figure {
        id: "latency",
        question: "How long do the slowest requests take to take effect",
        name: "p99 request-to-effect latency",
        unit: "ms",
        axis: "p99 request to effect (ms, simulated)",
        value: |s| s.latency_p99_ms.as_ref().map(|l| l.mean),
        always: false,
    },
    Figure {
        id: "final-lag",
        question: "Is consumer lag left at the end",
        name: "lag left at the end",
        unit: "records",
        axis: "lag at the end of the run (records, mean)",
        value: |s| Some(s.final_lag.mean),
        always: false,
    },
];

impl SweepResult {
    /// The sweep's charts: each figure against the first axis, one line (or bar) per
    /// combination of the other axes' values; with two axes, a heatmap of violation rates.
    pub fn charts(&self) -> Vec<Chart> {
        let Some(x) = self.axes.first() else { return Vec::new() };
        let rest = &self.axes[1..];
        // Series: one per combination of the other axes, in setting order.
        let mut series_keys: Vec<Vec<String>> = Vec::new();
        for s in &self.settings {
            let key = s.values[1..].to_vec();
            if !series_keys.contains(&key) {
                series_keys.push(key);
            }
        }
        let series_name = |key: &[String]| describe(rest, key).replace('=', " = ");
        let cell = |xi: usize, key: &[String]| {
            self.settings.iter().find(|s| s.values[0] == x.labels[xi] && s.values[1..] == *key)
        };
        // A numeric axis in numeric order, whatever order the values were given in.
        let mut order: Vec<usize> = (0..x.labels.len()).collect();
        if x.numeric() {
            order.sort_by(|&a, &b| {
                let v = |i: usize| x.labels[i].parse::<f64>().unwrap_or(0.0);
                v(a).total_cmp(&v(b))
            });
        }
        let xs: Vec<String> = order.iter().map(|&i| x.labels[i].clone()).collect();
        let mut charts = Vec::new();
        for f in &FIGURES {
            // Per series, a value per x (None: that setting has no such figure).
            let data: Vec<(String, Vec<Option<f64>>)> = series_keys
                .iter()
                .map(|k| (series_name(k), order.iter().map(|&i| cell(i, k).and_then(f.value)).collect()))
                .collect();
            let any = data.iter().any(|(_, ys)| ys.iter().any(|y| y.is_some_and(|y| y != 0.0)));
            if !f.always && !any {
                continue;
            }
            let name_of = |name: &String| if name.is_empty() { f.name.to_string() } else { name.clone() };
            let present: Vec<(String, Vec<(String, f64)>)> = data
                .iter()
                .map(|(name, ys)| {
                    (name.clone(), xs.iter().zip(ys).filter_map(|(x, y)| y.map(|y| (x.clone(), y))).collect())
                })
                .collect();
            let plot = if x.numeric() {
                Plot::Lines {
                    series: present
                        .iter()
                        .map(|(name, points)| Series {
                            name: name_of(name),
                            points: points.iter().map(|(x, y)| (x.parse().unwrap_or(0.0), *y)).collect(),
                        })
                        .collect(),
                    bands: vec![],
                    band_names: vec![],
                }
            } else {
                Plot::Bars {
                    categories: xs.clone(),
                    series: data
                        .iter()
                        .map(|(name, ys)| (name_of(name), ys.iter().map(|y| y.unwrap_or(0.0)).collect()))
                        .collect(),
                }
            };
            charts.push(Chart {
                id: f.id.to_string(),
                title: format!("{} with {}?", f.question, x.short_name()),
                subtitle: self.subtitle(),
                finding: over_axis(f.name, &x.short_name(), &present, f.unit, x.numeric()),
                x_label: x.name(),
                y_label: f.axis.to_string(),
                plot,
            });
        }
        if let [_, y] = self.axes.as_slice() {
            let cells: Vec<Vec<f64>> = y
                .labels
                .iter()
                .map(|yl| {
                    xs.iter()
                        .map(|xl| {
                            self.settings
                                .iter()
                                .find(|s| &s.values[0] == xl && &s.values[1] == yl)
                                .map_or(0.0, |s| s.violation_rate)
                        })
                        .collect()
                })
                .collect();
            charts.push(Chart {
                id: "violations-heatmap".into(),
                title: format!("Where are claimed invariants violated, by {} and {}?", x.short_name(), y.short_name()),
                subtitle: self.subtitle(),
                finding: self.heatmap_finding(x, y),
                x_label: x.name(),
                y_label: y.name(),
                plot: Plot::Heatmap { x: xs.clone(), y: y.labels.clone(), cells, max: 1.0, percent: true },
            });
        }
        charts
    }

    /// What the sweep ran, under each chart's title.
    fn subtitle(&self) -> String {
        let set: Vec<String> = self.set.iter().map(|(k, v)| format!("{} = {v}", crate::vary::short_key(k))).collect();
        let set = if set.is_empty() { String::new() } else { format!("; {}", set.join(", ")) };
        format!("{}, {} seeds per setting (means){set}", self.scenario, self.seeds)
    }

    fn heatmap_finding(&self, x: &Axis, y: &Axis) -> String {
        let failing: Vec<&SettingResult> = self.settings.iter().filter(|s| s.violation_rate > 0.0).collect();
        // The first of the settings with the highest rate.
        let worst = failing.iter().copied().fold(None::<&SettingResult>, |best, s| match best {
            Some(b) if b.violation_rate >= s.violation_rate => Some(b),
            _ => Some(s),
        });
        let Some(worst) = worst else {
            return format!("No setting violated a claimed invariant in any of its {} seeds.", self.seeds);
        };
        let clean: Vec<String> = y
            .labels
            .iter()
            .filter(|yl| self.settings.iter().filter(|s| &s.values[1] == *yl).all(|s| s.violation_rate == 0.0))
            .map(|yl| format!("{} = {yl}", y.short_name()))
            .collect();
        let held =
            if clean.is_empty() { String::new() } else { format!("; every run held with {}", clean.join(" and ")) };
        capitalise(&format!(
            "claimed invariants were violated in {} of {} settings, most often at {} = {} and {} = {} ({:.0}% of runs){held}.",
            failing.len(),
            self.settings.len(),
            x.short_name(),
            worst.values[0],
            y.short_name(),
            worst.values[1],
            worst.violation_rate * 100.0
        ))
    }

    /// Whether the result is whole: what a hand-edited file could break (exit 2, not a panic).
    pub fn validate(&self) -> Result<(), String> {
        if self.passed_runs > self.runs {
            return Err(format!("passed_runs ({}) is more than runs ({})", self.passed_runs, self.runs));
        }
        for (i, s) in self.settings.iter().enumerate() {
            if s.values.len() != self.axes.len() {
                return Err(format!("setting {i} has {} values for {} axes", s.values.len(), self.axes.len()));
            }
            if s.passed > s.runs || s.vacuous > s.runs || s.violating > s.runs {
                return Err(format!("setting {i} counts more passed or vacuous runs than runs"));
            }
        }
        Ok(())
    }

    /// The sweep as a page.
    pub fn page(&self, replay: &str) -> Page {
        let failed = self.runs.saturating_sub(self.passed_runs);
        let violating: u64 = self.settings.iter().map(|s| s.violating).sum();
        let vacuous: u64 = self.settings.iter().map(|s| s.vacuous).sum();
        let verdict = if failed == 0 {
            format!("Every claimed invariant held in all {} runs.", number(self.runs as f64))
        } else {
            format!(
                "{} of {} runs failed: {} violated a claimed invariant, {} moved nothing (or a planned fault had no effect).",
                number(failed as f64),
                number(self.runs as f64),
                number(violating as f64),
                number(vacuous as f64)
            )
        };
        let mut header: Vec<String> = self.axes.iter().map(Axis::short_name).collect();
        header.extend(
            [
                "runs",
                "violated a claim",
                "vacuous",
                "throughput (records/s)",
                "p99 latency (ms)",
                "duplicated effects",
                "reordered sends",
                "violated (runs)",
            ]
            .map(String::from),
        );
        let rows = self
            .settings
            .iter()
            .map(|s| {
                let mut row = s.values.clone();
                row.push(s.runs.to_string());
                row.push(format!("{:.0}%", s.violation_rate * 100.0));
                row.push(s.vacuous.to_string());
                row.push(number(s.throughput_rps.mean));
                row.push(s.latency_p99_ms.as_ref().map_or("-".to_string(), |l| number(l.mean)));
                row.push(number(s.duplicate_effects.mean));
                row.push(number(s.reordered_sends.mean));
                row.push(
                    s.violated
                        .iter()
                        .map(|v| format!("{}{} ({})", v.name, if v.claimed { "" } else { " (info)" }, v.runs))
                        .collect::<Vec<_>>()
                        .join(", "),
                );
                row
            })
            .collect();
        let mut lead = vec![format!(
            "Sweep of {} ({}): {} setting(s) x {} seeds = {} runs.",
            self.scenario,
            self.file,
            self.settings.len(),
            self.seeds,
            number(self.runs as f64)
        )];
        for a in &self.axes {
            lead.push(format!("Varied {}: {}.", a.name(), a.labels.join(", ")));
        }
        if !self.set.is_empty() {
            lead.push(format!(
                "Set in every setting: {}.",
                self.set.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", ")
            ));
        }
        Page {
            title: format!("{}: sweep", self.scenario),
            lead,
            passed: failed == 0,
            verdict,
            tables: vec![Table { caption: "Settings (means over seeds)".into(), header, rows }],
            charts: self.charts(),
            counterexamples: self.counterexamples.clone(),
            replay: replay.to_string(),
        }
    }
}
