#!/usr/bin/env bash
# Two-node swaps side by side with the peer (../shared/peers/seedstack, the seed's architecture in
# Python): two nodes of each on the same Redis and RabbitMQ, the same load generator
# (seedstack's loadgen.py in swap mode with callpool_adapter.py: 1,000 visitors x 2 tabs, one tab
# on each node, a pool of 2,000 numbers, a 50 ms delay), runs alternated, fresh nodes and a fresh
# Redis database for every run. Loopback only; every run is bounded (loadgen's --timeout).
#
#   CALLPOOL_BENCH_REDIS_URL=redis://127.0.0.1:6391 CALLPOOL_BENCH_AMQP_URL='amqp://guest:guest@127.0.0.1:5691/%2f' \
#     ./benches/peer.sh 250 500 1000 0      # visitors/s (0: every hello at once); RUNS=2 repeats each
#     SAMPLE=1 ./benches/peer.sh 250          # the same, counting Redis round trips and broker messages
#
# For each run it prints loadgen's figures (latency = receipt in the tab - (that tab's hello + 50 ms), on the
# load generator's clock, the same for both), the adapter's check (mismatched tabs, numbers shared) and the CPU
# seconds of the nodes, Redis and RabbitMQ in the swap phase; with SAMPLE=1 also the Redis round trips (script
# runs) and broker messages published per visitor in the swap phase (until the first tab closes).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PEER=${PEER:-$ROOT/../shared/peers/seedstack}
REDIS=${CALLPOOL_BENCH_REDIS_URL:?set CALLPOOL_BENCH_REDIS_URL (redis://127.0.0.1:PORT)}
REDIS=${REDIS%/}
AMQP=${CALLPOOL_BENCH_AMQP_URL:?set CALLPOOL_BENCH_AMQP_URL}
RUNS=${RUNS:-1}
# SAMPLE=1: also count Redis round trips and broker messages per visitor (a sampler polls Redis and the nodes
# every 100 ms, which costs CPU: take latencies from runs without it).
SAMPLE=${SAMPLE:-0}
VISITORS=${VISITORS:-1000}
POOL=${POOL:-2000}
VENV=${VENV:-$HOME/.cache/callpool-peer-venv}
RATES=("$@")
[ ${#RATES[@]} -gt 0 ] || RATES=(250 500 1000 0)
REDIS_PORT=$(echo "$REDIS" | sed -E 's#.*:([0-9]+)$#\1#')
ulimit -n "$(ulimit -Hn)"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q tornado redis hiredis aio-pika websockets
fi
PY=$VENV/bin/python
cargo build --release --quiet
BIN=$ROOT/target/release/callpool

WORK=$(mktemp -d)
PIDS=()
stop_nodes() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}
trap 'stop_nodes; rm -rf "$WORK"' EXIT

# callpool's two nodes: site `demo` (key demo-site-key, as the adapter sends), POOL dedicated numbers.
numbers=$(seq 1 "$POOL" | awk '{printf "%s\"+749512%05d\"", (NR>1?", ":""), $1}')
config() { # node id, port
  cat <<EOF
[server]
listen = "127.0.0.1:$2"
node_id = "$1"
ws_connects_per_ip_per_minute = 1000000
[store]
kind = "redis"
redis_url = "$REDIS/2"
[bus]
kind = "rabbitmq"
amqp_url = "$AMQP"
[pool]
reaper_interval = "1s"
[[site]]
id = "demo"
key = "demo-site-key"
allowed_origins = ["https://load.example"]
default_before = "+74959990001"
default_after = "+74959990002"
numbers = [$numbers]
delay_to_show = "50ms"
reclaim_after_idle = "5m"
leases_per_address = "off"
EOF
}

wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
pid_of_port() { ss -ltnpH "sport = :$1" | sed -E 's/.*pid=([0-9]+).*/\1/' | head -1; }
# Round trips to Redis for the pool: script runs (EVALSHA, EVAL).
redis_scripts() {
  redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' | awk -F'[:=,]' '/^cmdstat_(evalsha|eval):/ {s += $3} END {print s+0}'
}
# Every 100 ms until stopped: time, script runs, callpool's publishes and closed tabs (both nodes).
sample() {
  while :; do
    local m=""
    if [ "$1" = callpool ]; then
      m=$(for p in 8811 8812; do curl -s "http://127.0.0.1:$p/metrics"; done | awk '
        /^callpool_bus_published_total / {pub += $2} /^callpool_ws_closed_total/ {closed += $NF}
        END {print pub + 0, closed + 0}')
    fi
    echo "$(date +%s.%N) $(redis_scripts) $m"
    sleep 0.1
  done
}
REDIS_PID=$(pid_of_port "$REDIS_PORT")
RABBIT_PID=$(pid_of_port "$(echo "$AMQP" | sed -E 's#.*:([0-9]+)/.*#\1#')")

start() { # system
  if [ "$1" = callpool ]; then
    redis-cli -p "$REDIS_PORT" -n 2 flushdb > /dev/null
    config n1 8811 > "$WORK/n1.toml"; config n2 8812 > "$WORK/n2.toml"
    RUST_LOG=warn TOKIO_WORKER_THREADS=${NODE_THREADS:-2} "$BIN" --config "$WORK/n1.toml" serve > "$WORK/cp1.log" 2>&1 & PIDS+=($!)
    RUST_LOG=warn TOKIO_WORKER_THREADS=${NODE_THREADS:-2} "$BIN" --config "$WORK/n2.toml" serve > "$WORK/cp2.log" 2>&1 & PIDS+=($!)
    wait_port 8811; wait_port 8812
    URLS=(--url ws://127.0.0.1:8811 --url ws://127.0.0.1:8812); ADAPTER=callpool_adapter:CallpoolAdapter
  else
    redis-cli -p "$REDIS_PORT" -n 1 flushdb > /dev/null
    for n in 1 2; do
      (cd "$PEER" && exec "$PY" hub.py --port 880$n --node-id "n$n" --delay 0.05 --idle 300 --numbers "$POOL" \
        --redis-url "$REDIS/1" --amqp-url "$AMQP") > "$WORK/ss$n.log" 2>&1 & PIDS+=($!)
    done
    wait_port 8801; wait_port 8802
    URLS=(--url ws://127.0.0.1:8801 --url ws://127.0.0.1:8802); ADAPTER=callpool_adapter:SeedClientClock
  fi
  sleep "${WARMUP:-1}"
}

echo "machine: $(nproc) cores, $(uname -m); $(date -u +%F)"
for rate in "${RATES[@]}"; do
  for run in $(seq "$RUNS"); do
    for system in ${SYSTEMS:-seedstack callpool}; do
      start "$system"
      SAMPLER=
      if [ "$SAMPLE" = 1 ]; then sample "$system" > "$WORK/samples" & SAMPLER=$!; sleep 0.3; fi
      out=$(cd "$PEER" && LG_DELAY_S=0.05 LG_EXPECT_TABS=$((VISITORS * 2)) \
        LG_CPU_PIDS="nodes=${PIDS[0]},${PIDS[1]};redis=$REDIS_PID;rabbitmq=$RABBIT_PID" \
        "$PY" loadgen.py swap "${URLS[@]}" --visitors "$VISITORS" --rate "$rate" --timeout 60 --adapter "$ADAPTER" 2>&1)
      echo "== $system, rate ${rate} visitors/s (0 = burst), run $run"
      echo "$out" | grep -vE '^\s*$' | grep -v '^Traceback' | tail -n 6
      if [ -n "$SAMPLER" ]; then
        sleep 0.3
        kill "$SAMPLER"; wait "$SAMPLER" 2>/dev/null || true
      # The swap phase: from the first sample to the last one before any tab closed (callpool), or the whole run.
      awk -v n="$VISITORS" -v sys="$system" '
        NR == 1 { s0 = $2; p0 = $3; c0 = $4 }
        { if (sys != "callpool" || $4 == c0) { s1 = $2; p1 = $3 } last = $2 }
        END {
          printf "redis round trips (scripts) per visitor: %.2f in the swap phase, %.2f in the whole run\n", (s1 - s0) / n, (last - s0) / n
          if (sys == "callpool") printf "broker messages published per visitor in the swap phase: %.2f\n", (p1 - p0) / n
        }' "$WORK/samples"
      fi
      stop_nodes
    done
  done
done
