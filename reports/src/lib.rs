//! evsim's reports for design reviews: parameter sweeps over any scenario key, the figures a run
//! measured, charts, counterexamples as sequence diagrams, and self-contained HTML, Markdown and
//! JSON summaries.
//!
//! - [`vary`]: `--vary` and `--set`, a scenario key changed by its path in the file.
//! - [`sweep`]: the cartesian product of settings x seeds, in parallel and deterministic.
//! - [`metrics`]: throughput, latency, duplicates, reordering and lag, read off a history.
//! - [`scenario`]: the report of one run, and its JSON summary (the regression snapshot).
//! - [`charts`]: charts as data, drawn with plotters to SVG and PNG.
//! - [`counterexample`]: a violation's story as Mermaid, as SVG and as text.
//! - [`page`]: HTML, Markdown and JSON files.

pub mod charts;
pub mod counterexample;
pub mod findings;
pub mod metrics;
pub mod page;
mod raster;
pub mod scenario;
pub mod sweep;
pub mod vary;
