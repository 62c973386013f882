#!/usr/bin/env bash
# Reproduces the pool figures in BENCHMARKS.md: starts a throw-away Redis on loopback, measures
# the raw EVALSHA rate with redis-benchmark (a trivial script, same machine, same run), then runs
# the criterion benchmark of lease+release cycles on both stores against that Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${CALLPOOL_BENCH_REDIS_PORT:-6391}
WORK=$(mktemp -d /tmp/callpool-bench.XXXXXX)
trap 'kill "$(cat "$WORK/redis.pid" 2>/dev/null)" 2>/dev/null; rm -rf "$WORK"' EXIT
command -v redis-benchmark >/dev/null || { echo "install redis-server and redis-tools first (./deploy/test.sh does)"; exit 1; }
redis-server --port "$PORT" --bind 127.0.0.1 --dir "$WORK" --save '' --appendonly no --daemonize yes \
  --pidfile "$WORK/redis.pid" --logfile "$WORK/redis.log"
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

SHA=$(redis-cli -p "$PORT" SCRIPT LOAD "return 1")
echo "== raw redis-benchmark: EVALSHA of 'return 1'"
for c in 1 32; do
  printf 'clients=%-3s pipeline=1  ' "$c"
  redis-benchmark -p "$PORT" -n 200000 -c "$c" -q EVALSHA "$SHA" 0 | tr '\r' '\n' | grep -E 'requests per second' | tail -1
done
printf 'clients=32  pipeline=16 '
redis-benchmark -p "$PORT" -n 1000000 -c 32 -P 16 -q EVALSHA "$SHA" 0 | tr '\r' '\n' | grep -E 'requests per second' | tail -1

echo "== cargo bench --bench pool"
CALLPOOL_BENCH_REDIS_URL="redis://127.0.0.1:$PORT/" cargo bench --bench pool -- "$@" 2>&1 | grep -E '^(embedded|redis)/|thrpt' 
