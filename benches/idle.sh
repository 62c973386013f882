#!/usr/bin/env bash
# Redis's CPU while one callpool node sits idle (no visitor, no call) on a large pool: N shared
# numbers (default 100,000) and S sites (default 1), for D seconds (default 30). Starts a
# throw-away Redis on 127.0.0.1:6393 and the node on 127.0.0.1:18999, then stops both.
#   ./benches/idle.sh [numbers] [sites] [seconds]      (CALLPOOL_BIN=target/release/callpool to pick a build)
set -euo pipefail
cd "$(dirname "$0")/.."
NUMBERS=${1:-100000}
SITES=${2:-1}
SECONDS_=${3:-30}
BIN=${CALLPOOL_BIN:-target/debug/callpool}
DIR=$(mktemp -d)
trap 'kill $(cat "$DIR/node.pid" 2>/dev/null) 2>/dev/null || true; redis-cli -p 6393 shutdown nosave >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
redis-server --port 6393 --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --dir "$DIR" --logfile "$DIR/redis.log"
until redis-cli -p 6393 ping >/dev/null 2>&1; do sleep 0.1; done
python3 - "$NUMBERS" "$SITES" > "$DIR/callpool.toml" <<'PY'
import sys
n, sites = int(sys.argv[1]), int(sys.argv[2])
print('[server]\nlisten = "127.0.0.1:18999"\nadmin_token = "bench-admin-token-0123456789"\n')
print('[store]\nkind = "redis"\nredis_url = "redis://127.0.0.1:6393/"\nredis_prefix = "idle"\n')
print('[pool]\nnumbers = [' + ", ".join(f'"+7495{1000000 + i:07d}"' for i in range(n)) + ']\n')
for s in range(sites):
    print(f'[[site]]\nid = "s{s}"\nkey = "site-key-{s:06d}"\nallowed_origins = ["https://s{s}.example"]')
    print(f'default_before = "+7812{1000000 + 2 * s:07d}"\ndefault_after = "+7812{1000001 + 2 * s:07d}"\nmax_numbers = 10\n')
PY
"$BIN" --config "$DIR/callpool.toml" serve > "$DIR/node.log" 2>&1 &
echo $! > "$DIR/node.pid"
until curl -fs http://127.0.0.1:18999/readyz >/dev/null 2>&1; do
  if ! kill -0 "$(cat "$DIR/node.pid")" 2>/dev/null; then
    echo "the node stopped before it was ready:"; tail -3 "$DIR/node.log"; exit 1
  fi
  sleep 0.2
done
sleep 3
cpu() { redis-cli -p 6393 info cpu | awk -F: '/used_cpu_(user|sys):/ {s += $2} END {printf "%.3f", s}'; }
redis-cli -p 6393 config resetstat >/dev/null
before=$(cpu)
sleep "$SECONDS_"
after=$(cpu)
echo "pool of $NUMBERS shared numbers, $SITES site(s), $SECONDS_ s idle:"
awk -v a="$after" -v b="$before" -v s="$SECONDS_" 'BEGIN { printf "  Redis CPU: %.1f%% of a core\n", 100 * (a - b) / s }'
redis-cli -p 6393 info commandstats | grep -E "^cmdstat_(evalsha|eval|hmget|zrange)" | sed 's/^/  /'
