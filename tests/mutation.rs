//! Mutation testing of scenario input: proptest mutates copies of `scenarios/*.toml` (values
//! replaced by extremes, lines deleted, duplicated or cut, keys swapped between files, stray
//! bytes) and runs each mutant with `evsim run --json` in a child process, under the documented
//! memory limit (`ulimit -v`), a lowered event budget (`EVSIM_EVENT_BUDGET`) and a wall-clock
//! limit. Every mutant must end with exit 0, 1 or 2, never a signal (a panic under
//! `panic = "abort"`, an allocation failure, a stack overflow); an exit 2 must say where (file,
//! line and column) or that the run reached its budget; with `--json`, stdout is one JSON object.
//!
//! `EVSIM_MUTANTS` sets the number of mutants (default 400: well under a minute on two
//! cores). cargo fuzz needs a nightly toolchain, so this is the fuzzer CI runs.

mod common;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The memory a run may use: docs/scenario-format.md, "Limits" (the largest accepted run stays
/// well under it; the mutants here, with a lowered event budget, far under it).
const MEMORY_LIMIT_KB: u64 = 8 * 1024 * 1024;
/// The event budget of a mutant's run: a few seconds of simulation at most.
const EVENT_BUDGET: &str = "3000000";
/// A mutant that runs longer than this has escaped its budget.
const WALL_LIMIT: Duration = Duration::from_secs(90);

/// Values a mutation puts in place of a value.
const EXTREMES: &[&str] = &[
    "0",
    "-1",
    "1",
    "2",
    "1000000",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "-9223372036854775808",
    "1e300",
    "-1e300",
    "nan",
    "inf",
    "0.5",
    "1e-9",
    "\"\"",
    "\"x\"",
    "\"broker-0\"",
    "\"all\"",
    "true",
    "false",
    "[]",
    "[1, 2]",
    "{}",
    "1979-05-27T07:32:00Z",
];

#[derive(Clone, Debug)]
enum Mutation {
    /// Replace the value of the n-th `key = value` line.
    Value(usize, usize),
    /// Multiply the n-th numeric value by a power of ten.
    Scale(usize, u32),
    /// Delete the n-th line.
    Delete(usize),
    /// Repeat the n-th line.
    Duplicate(usize),
    /// Put the key of the n-th assignment of another scenario on the n-th line of this one.
    ForeignKey(usize, usize, usize),
    /// Insert a byte at a position (a fraction of the length, in thousandths).
    Byte(u16, u8),
    /// Cut the file at a position (thousandths of its length).
    Truncate(u16),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 0..EXTREMES.len()).prop_map(|(l, v)| Mutation::Value(l, v)),
        3 => (any::<usize>(), 1u32..10).prop_map(|(l, p)| Mutation::Scale(l, p)),
        1 => any::<usize>().prop_map(Mutation::Delete),
        1 => any::<usize>().prop_map(Mutation::Duplicate),
        1 => (any::<usize>(), any::<usize>(), any::<usize>()).prop_map(|(f, k, l)| Mutation::ForeignKey(f, k, l)),
        1 => (0u16..1000, prop_oneof![Just(0xffu8), Just(b'['), Just(b'"'), Just(b'='), Just(b'\n'), Just(0u8), any::<u8>()])
            .prop_map(|(at, b)| Mutation::Byte(at, b)),
        1 => (0u16..1000).prop_map(Mutation::Truncate),
    ]
}

/// The `(line, column of the value)` of every `key = value` line outside comments.
fn assignments(text: &str) -> Vec<(usize, usize)> {
    text.lines()
        .enumerate()
        .filter_map(|(n, l)| {
            let code = l.split('#').next().unwrap_or("");
            let eq = code.find('=')?;
            (!code.trim_start().starts_with('[')).then_some((n, eq + 1))
        })
        .collect()
}

fn apply(files: &[(String, String)], which: usize, mutations: &[Mutation]) -> Vec<u8> {
    let mut text = files[which].1.clone();
    let mut bytes: Option<Vec<u8>> = None;
    for m in mutations {
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        let sites = assignments(&text);
        let mut out = lines.clone();
        match *m {
            Mutation::Value(l, v) if !sites.is_empty() => {
                let (n, col) = sites[l % sites.len()];
                let comment = lines[n].find('#').unwrap_or(lines[n].len()).max(col);
                out[n] = format!("{} {}{}", &lines[n][..col], EXTREMES[v], &lines[n][comment..]);
            }
            Mutation::Scale(l, p) => {
                let numeric: Vec<(usize, usize)> = sites
                    .iter()
                    .copied()
                    .filter(|&(n, col)| {
                        let v = lines[n][col..].split('#').next().unwrap_or("").trim();
                        !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '_' || c == '.')
                    })
                    .collect();
                if !numeric.is_empty() {
                    let (n, col) = numeric[l % numeric.len()];
                    let v = lines[n][col..].split('#').next().unwrap_or("").trim().to_string();
                    let scaled = format!("{v}{}", "0".repeat(p as usize));
                    out[n] = lines[n].replacen(&v, &scaled, 1);
                }
            }
            Mutation::Delete(l) if !lines.is_empty() => {
                out.remove(l % lines.len());
            }
            Mutation::Duplicate(l) if !lines.is_empty() => {
                let n = l % lines.len();
                out.insert(n, lines[n].clone());
            }
            Mutation::ForeignKey(f, k, l) if !sites.is_empty() => {
                let other = &files[f % files.len()].1;
                let theirs = assignments(other);
                if !theirs.is_empty() {
                    let (on, ocol) = theirs[k % theirs.len()];
                    let key = other.lines().nth(on).unwrap_or("")[..ocol - 1].trim();
                    let (n, col) = sites[l % sites.len()];
                    out[n] = format!("{key} ={}", &lines[n][col..]);
                }
            }
            Mutation::Byte(at, b) => {
                let mut raw = text.clone().into_bytes();
                let i = raw.len() * at as usize / 1000;
                raw.insert(i, b);
                match String::from_utf8(raw) {
                    Ok(t) => text = t,
                    Err(e) => bytes = Some(e.into_bytes()),
                }
                continue;
            }
            Mutation::Truncate(at) => {
                let mut i = text.len() * at as usize / 1000;
                while !text.is_char_boundary(i) {
                    i -= 1;
                }
                text.truncate(i);
                continue;
            }
            _ => {}
        }
        text = out.join("\n") + "\n";
    }
    bytes.unwrap_or_else(|| text.into_bytes())
}

/// What a child run of `evsim run --json` on `path` did.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    wall: Duration,
}

fn run_child(path: &str) -> Ran {
    let started = Instant::now();
    let bin = env!("CARGO_BIN_EXE_evsim");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {MEMORY_LIMIT_KB} && exec \"$0\" run \"$1\" --json"))
        .arg(bin)
        .arg(path)
        .env("EVSIM_EVENT_BUDGET", EVENT_BUDGET)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh runs");
    // Read both pipes on threads so a chatty child never blocks; poll for the wall limit.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > WALL_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ran {
        code: status.and_then(|s| s.code()),
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
        wall: started.elapsed(),
    }
}

/// Whether `stderr` names `file:line:column:`.
fn names_a_position(stderr: &str, file: &str) -> bool {
    stderr.match_indices(&format!("{file}:")).any(|(i, m)| {
        let rest = &stderr[i + m.len()..];
        let mut parts = rest.splitn(3, ':');
        let line = parts.next().unwrap_or("");
        let col = parts.next().unwrap_or("");
        !line.is_empty()
            && line.chars().all(|c| c.is_ascii_digit())
            && !col.is_empty()
            && col.chars().all(|c| c.is_ascii_digit())
    })
}

#[test]
fn mutated_scenarios_exit_0_1_or_2_and_never_crash() {
    let dir = common::root().join("scenarios");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "toml").then(|| (p.display().to_string(), std::fs::read_to_string(&p).unwrap()))
        })
        .collect();
    files.sort();
    assert!(files.len() >= 10, "found {} scenarios", files.len());
    let cases: u32 = std::env::var("EVSIM_MUTANTS").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
    let tmp = common::scratch("mutants");
    let path = tmp.join("mutant.toml");
    let p = path.display().to_string();
    // The workflow files beside the mutant, where a scenario's `[workflow] file` finds them.
    let workflows = tmp.join("workflows");
    std::fs::create_dir_all(&workflows).unwrap();
    for e in std::fs::read_dir(dir.join("workflows")).unwrap() {
        let from = e.unwrap().path();
        std::fs::copy(&from, workflows.join(from.file_name().unwrap())).unwrap();
    }
    let workflow_dir = workflows.display().to_string();
    // A fixed seed: the same mutants on every run, so a failure in CI reproduces here.
    let config = Config {
        cases,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(13),
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let tally = std::sync::Mutex::new([0u32; 3]);
    let strategy = (0..files.len(), proptest::collection::vec(mutation(), 1..4));
    let result = runner.run(&strategy, |(which, mutations)| {
        let bytes = apply(&files, which, &mutations);
        std::fs::write(&path, &bytes).unwrap();
        let ran = run_child(&p);
        let what = format!("{} with {mutations:?}", files[which].0);
        let code = ran.code.ok_or_else(|| {
            TestCaseError::fail(format!(
                "{what}: killed by a signal or past {WALL_LIMIT:?} (after {:?})\nstderr: {}",
                ran.wall, ran.stderr
            ))
        })?;
        prop_assert!((0..=2).contains(&code), "{what}: exit {code}\nstderr: {}", ran.stderr);
        prop_assert!(!ran.stderr.contains("panicked"), "{what}: {}", ran.stderr);
        let v: serde_json::Value = serde_json::from_str(&ran.stdout)
            .map_err(|e| TestCaseError::fail(format!("{what}: stdout is not one JSON object ({e}): {}", ran.stdout)))?;
        if code == 2 {
            prop_assert!(v["error"].is_string() && v["exit_code"] == 2, "{what}: {v}");
            // A mutated parameter can make the workflow file wrong where it uses it.
            let in_workflow = ran.stderr.match_indices(&workflow_dir).any(|(i, _)| {
                let file = ran.stderr[i..].split(':').next().unwrap_or("");
                names_a_position(&ran.stderr, file)
            });
            prop_assert!(
                names_a_position(&ran.stderr, &p) || in_workflow || ran.stderr.contains("budget of"),
                "{what}: exit 2 without a position or the budget: {}",
                ran.stderr
            );
        } else {
            prop_assert!(v["runs"] == 1 && v["invariants"].is_array(), "{what}: {v}");
        }
        tally.lock().unwrap()[code as usize] += 1;
        Ok(())
    });
    std::fs::remove_dir_all(&tmp).ok();
    if let Err(e) = result {
        panic!("{e}");
    }
    // Both sides are exercised: mutants that run to a verdict, and mutants refused.
    let [held, violated, refused] = *tally.lock().unwrap();
    eprintln!("{cases} mutants: {held} held, {violated} violated, {refused} refused");
    assert!(held + violated > cases / 10 && refused > cases / 10, "{held} + {violated} ran, {refused} refused");
}

/// Expression-level damage to a workflow file: an operator, a name or a quote changed inside
/// the expressions, where the line-level mutations above rarely reach.
const EXPRESSION_NOISE: &[(&str, &str)] = &[
    (">=", "="),
    (">=", "<"),
    ("-", "- -"),
    ("request.", "event."),
    ("event.", "request."),
    ("product.", "orders."),
    ("'PENDING'", "PENDING"),
    ("'", "\""),
    ("(", "(("),
    (")", ""),
    ("params.", "params"),
    ("1", "99999999999999999999"),
    (" - 1", " / 0"),
    ("stock", "stock * 9223372036854775807"),
];

/// Mutated workflow files (`scenarios/workflows/*.toml`): the compiler never panics, and every
/// refusal names a line and column. In process (the compiler does no I/O): 2,000 mutants in
/// about a second.
#[test]
fn mutated_workflows_compile_or_are_refused_at_a_place() {
    let dir = common::root().join("scenarios/workflows");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("scenarios/workflows/")
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "toml").then(|| (p.display().to_string(), std::fs::read_to_string(&p).expect("read")))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let config = Config {
        cases: 2_000,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(17),
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let tally = std::sync::Mutex::new([0u32; 2]);
    let noise = proptest::collection::vec((0..EXPRESSION_NOISE.len(), any::<usize>()), 0..3);
    let strategy = (0..files.len(), proptest::collection::vec(mutation(), 0..3), noise);
    let result = runner.run(&strategy, |(which, mutations, noise)| {
        let Ok(mut text) = String::from_utf8(apply(&files, which, &mutations)) else { return Ok(()) };
        for (n, at) in &noise {
            let (from, to) = EXPRESSION_NOISE[*n];
            let sites: Vec<usize> = text.match_indices(from).map(|(i, _)| i).collect();
            if !sites.is_empty() {
                let i = sites[at % sites.len()];
                text.replace_range(i..i + from.len(), to);
            }
        }
        let what = format!("{} with {mutations:?} and {noise:?}", files[which].0);
        match evsim_model::workflow::compile(&files[which].0, &text, &[]) {
            Ok(_) => tally.lock().unwrap()[0] += 1,
            Err(e) => {
                prop_assert!(e.line > 0 && e.column > 0, "{what}: refused without a place: {e}");
                tally.lock().unwrap()[1] += 1;
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let [compiled, refused] = *tally.lock().unwrap();
    eprintln!("workflow mutants: {compiled} compiled, {refused} refused");
    assert!(compiled > 100 && refused > 100, "{compiled} compiled, {refused} refused");
}
