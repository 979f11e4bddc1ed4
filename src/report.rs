//! `evsim report`: a design-review report of a scenario's run or of a sweep, as a self-contained
//! HTML page, a Markdown summary, a JSON summary and charts (SVG and PNG).

use crate::{EXIT_BAD_INPUT, EXIT_HELD, EXIT_VIOLATED, load_scenario};
use evsim_reports::sweep::SweepResult;
use evsim_sim::run_scenario;
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(after_help = "INPUT is a scenario file (.toml: one run is simulated and reported) or a sweep's result \
(.json, from `evsim sweep --out`).\n\nDIR receives index.html (self-contained: inline SVG, no scripts, \
nothing fetched), summary.md (for a pull request; counterexamples as Mermaid diagrams), summary.json, \
and charts/*.svg and *.png.\n\nExamples:\n  evsim report scenarios/order-failover-acks1.toml --out out/failover\n  \
evsim sweep scenarios/order-basic.toml --vary 'services.*.producer.acks=1,all' \\\n      --set 'services.*.producer.enable.idempotence=false' --out sweep.json\n  \
evsim report sweep.json --out out/acks\n\nExit codes: 0 every claimed invariant held; 1 one was violated \
(the report is written all the same); 2 bad input, or the report cannot be written.")]
pub struct ReportArgs {
    /// A scenario file (.toml) or a sweep result (.json).
    input: PathBuf,
    /// The folder to write the report into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The seed to simulate (scenario input; default: the scenario's `run.seed`).
    #[arg(long)]
    seed: Option<u64>,
    /// Print the JSON summary on stdout.
    #[arg(long)]
    json: bool,
}

pub fn report(args: ReportArgs) -> u8 {
    let is_json = args.input.extension().is_some_and(|e| e == "json");
    let built = if is_json { sweep_page(&args) } else { scenario_page(&args) };
    let (page, json) = match built {
        Ok(x) => x,
        Err(code) => return code,
    };
    if let Err(e) = evsim_reports::page::write(&args.out, &page, &json) {
        crate::report_error(e);
        return EXIT_BAD_INPUT;
    }
    if args.json {
        if let Err(code) = crate::print_json(&json) {
            return code;
        }
    } else {
        println!("{}", page.verdict);
        for c in &page.charts {
            println!("{}\n  {}", c.title, c.finding);
        }
        println!("report written to {}: index.html, summary.md, summary.json, charts/", args.out.display());
    }
    if page.passed { EXIT_HELD } else { EXIT_VIOLATED }
}

type Built = Result<(evsim_reports::page::Page, serde_json::Value), u8>;

fn scenario_page(args: &ReportArgs) -> Built {
    let scenario = load_scenario(&args.input)?;
    let seed = args.seed.unwrap_or(scenario.run.seed);
    let file = args.input.display().to_string();
    let outcome = run_scenario(&scenario, seed);
    if let Some(why) = &outcome.stopped {
        return Err(crate::bad_input(format!("{file} seed {seed}: {why}")));
    }
    let report = evsim_reports::scenario::report(&scenario, &file, &outcome);
    let replay = format!("evsim report {file} --seed {seed} --out {}", args.out.display());
    let json = serde_json::to_value(&report.summary).map_err(|e| {
        crate::report_error(format!("cannot render the summary as JSON: {e}"));
        EXIT_BAD_INPUT
    })?;
    Ok((report.page(&replay), json))
}

fn sweep_page(args: &ReportArgs) -> Built {
    let name = args.input.display();
    let text = std::fs::read_to_string(&args.input).map_err(|e| {
        crate::report_error(format!("cannot read {name}: {e}"));
        EXIT_BAD_INPUT
    })?;
    let result: SweepResult = serde_json::from_str(&text).map_err(|e| {
        eprintln!(
            "error: {name}:{}:{}: not a sweep result ({e}); expected the JSON `evsim sweep --out FILE` writes",
            e.line(),
            e.column()
        );
        EXIT_BAD_INPUT
    })?;
    if let Err(e) = result.validate() {
        crate::report_error(format!(
            "{name}: not a whole sweep result ({e}); expected the JSON `evsim sweep --out FILE` writes"
        ));
        return Err(EXIT_BAD_INPUT);
    }
    let json = serde_json::to_value(&result).map_err(|e| {
        crate::report_error(format!("cannot render the sweep as JSON: {e}"));
        EXIT_BAD_INPUT
    })?;
    Ok((result.page(&crate::sweep::replay_command(&result)), json))
}
