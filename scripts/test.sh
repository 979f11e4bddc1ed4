#!/usr/bin/env bash
# The full test suite, as CI runs it on a fresh machine (Rust toolchain, Java 17, Maven; root).
#   1. the README's main command, release build: order-basic over 100 seeds must hold;
#   2. the durable failover scenario over 20 seeds, each run twice: its faults fire, nothing is
#      lost, and every seed replays byte for byte;
#   3. the real backend end to end: order-basic on Apache Kafka started by the harness (a KRaft
#      controller and a broker, each in its own network namespace), compared with the simulator;
#   4. the design-review report of seed 003's coupon sweep (one hot coupon against many), from
#      the release build, into target/ci-report/;
#   5. every unit and integration test of the workspace: Apache Kafka's harness and the
#      differential tests (K real runs per comparison, faults performed for real), the real
#      backend's protocol tests on librdkafka's mock cluster, the regression snapshots of every
#      scenario, and the report tests in headless Chromium (a screenshot, and every Mermaid
#      diagram through Mermaid).
# What the tests need is installed once per machine when it is missing: a JDK and Maven, iproute2
# and iptables (the Kafka nodes' network namespaces and packet-level faults), Debian's chromium
# and a font, Mermaid's browser bundle (from the npm registry, into target/test-tools/), and
# Apache Kafka's jars (from Maven Central, by evsim itself, into ~/.cache/evsim/). Later runs
# reuse them.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$HOME/.cargo/bin:$PATH"
missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing from Debian for the tests (once per machine): ${missing[*]}"
  as_root=""
  if [ "$(id -u)" -ne 0 ]; then as_root="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $as_root apt-get install -y --no-install-recommends "${missing[@]}" \
    || { $as_root apt-get update && $as_root apt-get install -y --no-install-recommends "${missing[@]}"; }
fi

echo "== Mermaid's browser bundle for the diagram tests"
python3 scripts/fetch-mermaid.py

echo "== evsim run scenarios/order-basic.toml --seeds 100 (release build)"
cargo run --release --locked --bin evsim -- run scenarios/order-basic.toml --seeds 100

echo "== evsim run scenarios/order-failover-acks-all.toml --seeds 20 --verify-determinism"
cargo run --release --locked --bin evsim -- run scenarios/order-failover-acks-all.toml --seeds 20 --verify-determinism

echo "== evsim real scenarios/order-basic.toml (Apache Kafka, started and stopped by the harness)"
cargo run --release --locked --bin evsim -- real scenarios/order-basic.toml

echo "== evsim sweep: seed 003's coupons, one hot coupon against 100, 1 to 12 partitions (report in target/ci-report/)"
cargo run --release --locked --bin evsim -- sweep scenarios/coupon-seed003.toml \
  --vary 'topics.coupon-issue-request.partitions+consumers.coupon-issuer.instances=1..12' \
  --vary workload.coupons=1,100 --set workload.coupon_rate_per_sec=3000 --set workload.users=1000000 \
  --seeds 3 --report target/ci-report/coupon-hot-key

echo "== cargo test --workspace"
cargo test --workspace --locked
