//! `evsim sweep`: run the cartesian product of varied settings, N seeds each, in parallel, and
//! compare the settings (a table, charts with `--report`, the whole result with `--out`).

use crate::{EXIT_BAD_INPUT, EXIT_HELD, EXIT_VIOLATED, load_scenario};
use evsim_reports::sweep::{MAX_RUNS, Plan, SweepResult};
use evsim_reports::vary::{parse_axis, parse_set};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args)]
#[command(after_help = "KEY is a value's path in the scenario file, with Kafka's dotted names at the end; `*` \
stands for every table at its level; keys joined by `+` move together. Values are TOML values or bare \
words; A..B is every integer from A to B.\n\nExamples:\n  \
evsim sweep scenarios/coupon-seed003.toml --vary 'topics.coupon-issue-request.partitions+consumers.coupon-issuer.instances=1..12' \\\n      \
--vary workload.coupons=1,100 --set workload.coupon_rate_per_sec=3000 --set workload.users=1000000 --seeds 5 --report out/coupon\n  \
evsim sweep scenarios/order-basic.toml --vary 'services.*.producer.acks=1,all' --set 'services.*.producer.enable.idempotence=false' --seeds 100\n  \
evsim sweep scenarios/order-listener-errors.toml --vary consumers.order-event-consumer.commit_strategy=ack-skips-failures,commit-after-process,idempotent\n  \
evsim sweep scenarios/coupon-retries-lost-responses.toml --vary 'services.*.producer.max.in.flight.requests.per.connection=1,2,5' \\\n      \
--vary 'services.*.producer.enable.idempotence=false,true' --seeds 20\n\n\
The first --vary is the charts' x axis; the others make one line (or bar) per value. With two --vary, \
a heatmap shows where claimed invariants are violated. Results do not depend on --jobs.\n\n\
Exit codes: 0 every run held every claimed invariant; 1 some run violated one (or moved nothing); 2 bad \
input (a key or value the scenario does not accept).")]
pub struct SweepArgs {
    /// Scenario file (TOML) to vary.
    scenario: PathBuf,
    /// A swept setting: KEY=V1,V2,... (repeat for more axes).
    #[arg(long, value_name = "KEY=V1,V2,...")]
    vary: Vec<String>,
    /// A change every setting shares: KEY=VALUE (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Seeds per setting (seeds 1..=N).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    seeds: u64,
    /// Worker threads (default: the number of cores).
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Write the whole result as JSON to FILE (what `evsim report FILE` reads).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Write the report (HTML, Markdown, JSON, charts) into DIR.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// Print the result as one JSON object on stdout instead of a table.
    #[arg(long)]
    json: bool,
}

/// `s` as one word for a POSIX shell.
fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=,+:@".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The command that reruns a sweep, for reports: the arguments as they were given.
pub(crate) fn replay_command(r: &SweepResult) -> String {
    let mut cmd = format!("evsim sweep {}", shell_word(&r.file));
    for a in &r.axes {
        cmd.push_str(&format!(" --vary {}", shell_word(&a.arg)));
    }
    for (k, v) in &r.set {
        cmd.push_str(&format!(" --set {}", shell_word(&format!("{k}={v}"))));
    }
    cmd.push_str(&format!(" --seeds {}", r.seeds));
    cmd
}

pub fn sweep(args: SweepArgs) -> u8 {
    let name = args.scenario.display().to_string();
    // Parse the scenario as written first: its own errors name its lines.
    if let Err(code) = load_scenario(&args.scenario) {
        return code;
    }
    let source = match std::fs::read_to_string(&args.scenario) {
        Ok(s) => s,
        Err(e) => {
            crate::report_error(format!("cannot read scenario {name}: {e}"));
            return EXIT_BAD_INPUT;
        }
    };
    let parsed = args
        .vary
        .iter()
        .map(|a| parse_axis(a))
        .collect::<Result<Vec<_>, _>>()
        .and_then(|axes| Ok((axes, args.set.iter().map(|s| parse_set(s)).collect::<Result<Vec<_>, _>>()?)));
    // How many runs, before any setting is built.
    let total = parsed.as_ref().ok().map(|(axes, _)| {
        axes.iter().try_fold(args.seeds, |n, a| n.checked_mul(a.labels.len() as u64)).filter(|&n| n <= MAX_RUNS)
    });
    if let Some(None) = total {
        crate::report_error(format!("the settings x {} seeds come to more than {MAX_RUNS} runs", args.seeds));
        return EXIT_BAD_INPUT;
    }
    let plan = parsed.and_then(|(axes, sets)| Plan::new(&name, &source, &sets, axes));
    let plan = match plan {
        Ok(p) => p,
        Err(e) => {
            crate::report_error(e);
            return EXIT_BAD_INPUT;
        }
    };
    let total = plan.settings.len() as u64 * args.seeds;
    // Where the results go is checked before hours of runs, not after.
    for dir in args.out.iter().filter_map(|p| p.parent()).chain(args.report.as_deref()) {
        if !dir.as_os_str().is_empty()
            && let Err(e) = std::fs::create_dir_all(dir)
        {
            crate::report_error(format!("cannot create {}: {e}", dir.display()));
            return EXIT_BAD_INPUT;
        }
    }
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let bar = if args.json { ProgressBar::hidden() } else { ProgressBar::new(total) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos}/{len} runs [{bar:30}] {elapsed} (eta {eta}) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(format!("{} setting(s) x {} seeds", plan.settings.len(), args.seeds));
    let started = Instant::now();
    // The first run (in setting and seed order) that stopped at the event budget, if any.
    let stopped: std::sync::Mutex<Option<(usize, u64, String)>> = std::sync::Mutex::new(None);
    let result = plan.run(args.seeds, jobs, &|r| {
        bar.inc(1);
        if let Some(why) = &r.stopped {
            let mut first = stopped.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if first.as_ref().is_none_or(|f| (r.setting, r.seed) < (f.0, f.1)) {
                *first = Some((r.setting, r.seed, why.clone()));
            }
        }
    });
    bar.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();
    if let Some((setting, seed, why)) = stopped.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner) {
        let labels = plan.settings[setting].labels.join(", ");
        return crate::bad_input(format!("{} setting {labels} seed {seed}: {why}", args.scenario.display()));
    }
    if let Some(path) = &args.out
        && let Err(e) = write_json(path, &result)
    {
        crate::report_error(e);
        return EXIT_BAD_INPUT;
    }
    if let Some(dir) = &args.report {
        let page = result.page(&replay_command(&result));
        let json = match serde_json::to_value(&result) {
            Ok(v) => v,
            Err(e) => {
                crate::report_error(format!("cannot render the sweep as JSON: {e}"));
                return EXIT_BAD_INPUT;
            }
        };
        match evsim_reports::page::write(dir, &page, &json) {
            Ok(files) if !args.json => eprintln!("report: {} files in {}", files.len(), dir.display()),
            Ok(_) => {}
            Err(e) => {
                crate::report_error(e);
                return EXIT_BAD_INPUT;
            }
        }
    }
    if args.json {
        if let Err(code) = crate::print_json(&result) {
            return code;
        }
    } else {
        print_table(&result, wall);
    }
    if result.passed_runs == result.runs { EXIT_HELD } else { EXIT_VIOLATED }
}

fn write_json(path: &Path, r: &SweepResult) -> Result<(), String> {
    let text = serde_json::to_string_pretty(r).map_err(|e| format!("cannot render the sweep as JSON: {e}"))?;
    std::fs::write(path, format!("{text}\n")).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn print_table(r: &SweepResult, wall: f64) {
    let page = r.page(&replay_command(r));
    for line in &page.lead {
        println!("{line}");
    }
    println!("{} runs in {wall:.1} s of wall time ({:.0} runs/s)", r.runs, r.runs as f64 / wall.max(1e-9));
    println!();
    for t in &page.tables {
        let widths: Vec<usize> = (0..t.header.len())
            .map(|c| {
                t.rows.iter().map(|row| row[c].chars().count()).chain([t.header[c].chars().count()]).max().unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        };
        println!("{}", line(&t.header));
        for row in &t.rows {
            println!("{}", line(row));
        }
    }
    if !page.charts.is_empty() {
        println!();
    }
    for c in &page.charts {
        println!("{}\n  {}", c.title, c.finding);
    }
    for c in &r.counterexamples {
        println!(
            "\n{} violated (seed {}{}): {}",
            c.invariant,
            c.seed,
            c.setting.as_ref().map(|s| format!(", {s}")).unwrap_or_default(),
            c.message
        );
    }
    println!();
    println!("verdict: {}", page.verdict);
}
