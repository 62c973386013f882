#!/usr/bin/env bash
# Fuzzes the HTTP API from its own OpenAPI document: starts callpool ($CALLPOOL_BIN, default
# target/debug/callpool) on a free loopback port with a throw-away config (embedded store, one site
# with a callback form and a report token, one signed PBX webhook), runs a pinned schemathesis against
# /openapi.json with the admin token, and fails on any finding: a 5xx, a response (status, content
# type, body) the document does not describe, or a panic in the server's log. Bounded (a fixed
# number of examples per operation, a fixed seed): well under 3 minutes on 2 cores.
#
#   ./deploy/api-fuzz.sh                         as deploy/test.sh runs it
#   CALLPOOL_FUZZ_EXAMPLES=500 ./deploy/api-fuzz.sh --seed 7 --continue-on-failure
#                                                more cases per operation; arguments go to `schemathesis run`
#
# schemathesis lives in a venv under ~/.cache/callpool-fuzz (reused between runs); python3 and
# python3-venv are installed with apt when missing.
set -euo pipefail

cd "$(dirname "$0")/.."
SCHEMATHESIS_VERSION=4.32.5
BIN=${CALLPOOL_BIN:-target/debug/callpool}
EXAMPLES=${CALLPOOL_FUZZ_EXAMPLES:-100}
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/callpool-fuzz/schemathesis-$SCHEMATHESIS_VERSION"
WORK=$(mktemp -d /tmp/callpool-fuzz.XXXXXX)
ADMIN_TOKEN=fuzz-admin-token-0123456789
ORIGIN=https://shop.example
PBX_SECRET=fuzz-pbx-secret-0123456789
SERVER_PID=""

say() { printf '\n== %s\n' "$*"; }

cleanup() {
  local rc=$?
  set +e
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
  if [ -s "$WORK/server.log" ] && grep -q panicked "$WORK/server.log"; then
    echo "callpool panicked:"; grep -B2 -A8 panicked "$WORK/server.log" | head -n 60
    rc=1
  fi
  [ "$rc" = 0 ] || { echo "callpool's log (last 20 lines):"; tail -n 20 "$WORK/server.log" 2>/dev/null; }
  rm -rf "$WORK"
  if [ "$rc" = 0 ]; then echo "api fuzz: ok"; else echo "api fuzz: FAILED"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ -x "$BIN" ] || { echo "no callpool binary at $BIN (build it, or set CALLPOOL_BIN)"; exit 1; }

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
  if ! command -v python3 >/dev/null || ! python3 -m venv "$WORK/probe" >/dev/null 2>&1; then
    say "installing python3-venv"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
  fi
  say "installing schemathesis $SCHEMATHESIS_VERSION in $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" \
    || { rm -rf "$VENV"; exit 1; }
fi
PY="$VENV/bin/python"

PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$WORK/callpool.toml" <<EOF
[server]
listen = "127.0.0.1:$PORT"
admin_token = "$ADMIN_TOKEN"

[store]
kind = "embedded"
data_dir = "$WORK/data"

[pool]
numbers = ["+74951230101", "+74951230102"]

[[site]]
id = "shop"
key = "shop-fuzz-key"
allowed_origins = ["$ORIGIN"]
timezone = "Europe/Moscow"
default_before = "+74951234567"
default_after = "+74951234568"
numbers = ["+74951230001", "+74951230002", "+74951230003"]
max_numbers = 4
report_token = "fuzz-report-token-0123456789"

[site.callback]
region = "RU"
language = "en"
operator = "+74951230099"
pbx = "office"
min_time_on_site = "0s"
# Nothing listens there: triggers fail and are retried in the background, as with a PBX that is down.
trigger = { kind = "generic", url = "http://127.0.0.1:9/trigger", secret = "fuzz-trigger-secret-0123456789" }
limits = { per_ip = ["1000/1m"], per_site = ["1000/1h"] }

[[pbx]]
id = "office"
secrets = ["$PBX_SECRET"]
EOF
"$BIN" --config "$WORK/callpool.toml" check-config >"$WORK/check.log" 2>&1 || { cat "$WORK/check.log"; exit 1; }

say "starting $BIN on 127.0.0.1:$PORT"
RUST_BACKTRACE=1 "$BIN" --config "$WORK/callpool.toml" serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
"$PY" - "$PORT" "$SERVER_PID" <<'EOF' || exit 1
import os, sys, time, urllib.request
port, pid = sys.argv[1], int(sys.argv[2])
for _ in range(300):
    try:
        if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).status == 200:
            sys.exit(0)
    except Exception:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        break
    time.sleep(0.1)
print("callpool did not become ready")
sys.exit(1)
EOF

# Random values mostly meet "unknown site" or "not a date": draw real ones often, to reach the handlers' logic.
NOW=$(date -u +%Y-%m-%dT%H:%M:%SZ)
TODAY=$(date -u +%F)
cat >"$WORK/schemathesis.toml" <<EOF
hooks = "$WORK/hooks.py"
[cache]
enabled = false

[dictionaries]
site-ids.values = ["shop"]
site-keys.values = ["shop-fuzz-key"]
pbx-ids.values = ["office"]
days.values = ["$TODAY", "2026-01-01", "2025-11-30", "2000-02-29"]
formats.values = ["csv", "json"]
kinds.values = ["ga4", "yandex", "trigger", "cb_ga4", "tg_request", "tg_missed", "hook_request", "hook_missed"]
visitor-numbers.values = ["8 (916) 123-45-67", "+7 916 765-43-21", "+74951230099", "+78091234567", "+12025550123"]
called.values = ["+74951230001", "+74951230002", "+74951230101", "+74951234567", "+7 (495) 123-00-03"]
call-ids.values = ["fuzz-1", "fuzz-2"]
times.values = ["$NOW", "2026-11-22T10:15:00Z", "1700000000"]

[parameters]
"path.site" = { dictionary = "site-ids", probability = 0.8 }
"query.site" = { dictionary = "site-keys", probability = 0.8 }
"query.pbx" = { dictionary = "pbx-ids", probability = 0.8 }
"query.from" = { dictionary = "days", probability = 0.6 }
"query.to" = { dictionary = "days", probability = 0.6 }
"query.format" = { dictionary = "formats", probability = 0.6 }
"query.kind" = { dictionary = "kinds", probability = 0.6 }
"body.kind" = { dictionary = "kinds", probability = 0.6 }
"body.site" = { dictionary = "site-keys", probability = 0.8 }
"body.number" = { dictionary = "visitor-numbers", probability = 0.7 }
"body.called" = { dictionary = "called", probability = 0.7 }
"body.call_id" = { dictionary = "call-ids", probability = 0.5 }
"body.started_at" = { dictionary = "times", probability = 0.6 }
EOF
# PBX webhooks are signed (docs/PROTOCOL.md), so that their bodies get past the signature to the parser.
cat >"$WORK/hooks.py" <<EOF
import hashlib, hmac, json, time, urllib.parse
import schemathesis
from schemathesis.core import NOT_SET

@schemathesis.hook
def before_call(context, case, kwargs):
    if case.path != "/v1/pbx/calls":
        return
    body = case.body
    if body is NOT_SET:
        raw = b""
    elif isinstance(body, (bytes, str)):
        raw = body if isinstance(body, bytes) else body.encode()
    elif "json" in (case.media_type or ""):
        raw = json.dumps(body).encode()
    else:
        raw = urllib.parse.urlencode(body, doseq=True).encode() if isinstance(body, dict) else str(body).encode()
    t = str(int(time.time()))
    sig = hmac.new(b"$PBX_SECRET", t.encode() + b"." + raw, hashlib.sha256).hexdigest()
    kwargs["data"] = raw
    case.headers = {**(case.headers or {}), "Callpool-Signature": f"t={t},v1={sig}"}
EOF

say "schemathesis $SCHEMATHESIS_VERSION against http://127.0.0.1:$PORT/openapi.json ($EXAMPLES examples per operation)"
# One worker: on CPython 3.11 (Debian bookworm's; seen with 3.11.7) parallel workers now and then die with a
# spurious SystemError "AST constructor recursion depth mismatch" (Hypothesis parsing source in two threads).
# Redirects are answers under test (the reports' 303).
(
  cd "$WORK"
  "$VENV/bin/schemathesis" --config-file "$WORK/schemathesis.toml" run "http://127.0.0.1:$PORT/openapi.json" \
    --checks not_a_server_error,response_schema_conformance,content_type_conformance,status_code_conformance,response_headers_conformance \
    --header "Authorization: Bearer $ADMIN_TOKEN" --header "Origin: $ORIGIN" \
    --max-examples "$EXAMPLES" --seed 20261101 --generation-database none \
    --workers 1 --request-timeout 10 --max-redirects 0 --no-color "$@"
)
