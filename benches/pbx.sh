#!/usr/bin/env bash
# Reproduces the PBX webhook figures in BENCHMARKS.md (loopback only, bounded, stops by itself).
# The cluster run needs Redis and RabbitMQ: pass their URLs in CALLPOOL_BENCH_REDIS_URL and
# CALLPOOL_BENCH_AMQP_URL (./deploy/test.sh shows how to start them).
#
#   ./benches/pbx.sh embedded 20 32     embedded store, 20 s, 32 connections
#   ./benches/pbx.sh cluster 20 32      Redis + RabbitMQ
#   ./benches/pbx.sh cluster 10 32 ringing zadarma    a vendor's format: callpool, zadarma, mango, sipuni, uis
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
cargo bench --bench pbxload --no-run --quiet 2>/dev/null || cargo bench --bench pbxload --no-run
exec cargo bench --quiet --bench pbxload -- "$@"
