//! Shared helpers for the integration tests.
#![allow(dead_code)]

use evsim_model::scenario::{Direction, FaultKind, FaultSpec, Scenario};
use std::path::PathBuf;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Parse `scenarios/<name>.toml`.
pub fn scenario(name: &str) -> Scenario {
    let path = root().join("scenarios").join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    Scenario::parse(&path.display().to_string(), &text).unwrap_or_else(|e| panic!("{e}"))
}

/// A short version of a scenario, for tests that run many seeds in a debug build.
pub fn shortened(mut s: Scenario, duration_ms: u64) -> Scenario {
    s.run.duration_ms = duration_ms;
    s
}

/// A fault of `kind` on `target` from `at_ms` for `for_ms`, both directions, no rate or delay.
pub fn fault(kind: FaultKind, target: Option<&str>, at_ms: u64, for_ms: u64) -> FaultSpec {
    FaultSpec {
        kind,
        at_ms,
        for_ms: Some(for_ms),
        target: target.map(str::to_string),
        peer: None,
        direction: Direction::Both,
        rate: 0.0,
        delay_ms: 0,
    }
}

/// A fresh directory for one test's files, unique to this process: `evsim-<name>-<pid>` in the
/// system's temp dir. The test removes it when it is done.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("evsim-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}
