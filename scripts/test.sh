#!/usr/bin/env bash
# The full test suite, as CI runs it on a fresh machine (Rust toolchain only).
#   1. the README's main command, release build: order-basic over 100 seeds must hold;
#   2. the durable failover scenario over 20 seeds, each run twice: its faults fire, nothing is
#      lost, and every seed replays byte for byte;
#   3. every unit and integration test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== evsim run scenarios/order-basic.toml --seeds 100 (release build)"
cargo run --release --locked --bin evsim -- run scenarios/order-basic.toml --seeds 100

echo "== evsim run scenarios/order-failover-acks-all.toml --seeds 20 --verify-determinism"
cargo run --release --locked --bin evsim -- run scenarios/order-failover-acks-all.toml --seeds 20 --verify-determinism

echo "== cargo test --workspace"
cargo test --workspace --locked
