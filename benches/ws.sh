#!/usr/bin/env bash
# Reproduces the websocket figures in BENCHMARKS.md (loopback only; each run is bounded and stops
# by itself). Needs Redis and RabbitMQ for the two-node run: pass their URLs in
# CALLPOOL_BENCH_REDIS_URL and CALLPOOL_BENCH_AMQP_URL (./deploy/test.sh shows how to start them).
#
#   ./benches/ws.sh idle 19000          idle tabs on one node: memory per tab, accept rate
#   ./benches/ws.sh swaps 1000 10 1     1,000 swaps/s for 10 s on one node
#   ./benches/ws.sh swaps 1000 10 2     the same across two nodes (Redis + RabbitMQ)
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet
cargo bench --bench wsload --no-run --quiet 2>/dev/null || cargo bench --bench wsload --no-run
exec cargo bench --quiet --bench wsload -- "$@"
