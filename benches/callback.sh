#!/usr/bin/env bash
# Reproduces the callback request figures in BENCHMARKS.md (loopback only, bounded, stops by itself).
# The cluster run needs Redis and RabbitMQ: pass their URLs in CALLPOOL_BENCH_REDIS_URL and
# CALLPOOL_BENCH_AMQP_URL (./deploy/test.sh shows how to start them).
#
#   ./benches/callback.sh embedded accept 20 32    embedded store, every request its own number, 20 s, 32 connections
#   ./benches/callback.sh cluster flood 20 32      Redis + RabbitMQ, every request for one number
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
cargo bench --bench cbload --no-run --quiet 2>/dev/null || cargo bench --bench cbload --no-run
exec cargo bench --quiet --bench cbload -- "$@"
