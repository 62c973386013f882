#!/usr/bin/env bash
# Prints the configuration the Debian package installs as /etc/callpool/callpool.toml, made from
# callpool.example.toml: every field with its documentation and default, the embedded store under
# /var/lib/callpool, and the example's numbers, PBX and site commented out (a fresh install serves
# nothing and accepts no webhook until the operator adds their own). deploy/package-test.sh fails
# when deploy/debian/callpool.toml differs from what this prints; after editing the example:
#
#   deploy/debian/make-config.sh > deploy/debian/callpool.toml
set -euo pipefail
cd "$(dirname "$0")/../.."

cat <<'HEAD'
# /etc/callpool/callpool.toml: the configuration of the callpool service (callpool.service).
# Check it with `callpool --config /etc/callpool/callpool.toml check-config`, then `systemctl reload callpool`.
# Secrets may go to /etc/default/callpool instead (CALLPOOL_ADMIN_TOKEN=..., read by the unit; mode 0600).
# Installed from callpool.example.toml (/usr/share/doc/callpool/examples/): the store is under /var/lib/callpool,
# and the example's shared numbers, PBX and site are commented out; uncomment and edit them to serve a site.
HEAD
awk '
  # The first two lines of the example (its title, "copy to callpool.toml") give way to the lines above.
  NR <= 2 { next }
  /^\[/ { table = $0 }
  {
    example = table ~ /^\[\[(pbx|site)\]\]/ || table ~ /^\[site\./
    if (table == "[store]" && $0 ~ /^data_dir = /) { print "data_dir = \"/var/lib/callpool\""; next }
    if (table == "[pool]" && $0 ~ /^numbers = /) { print "# " $0; next }
    if (example && $0 != "" && $0 !~ /^#/) { print "# " $0; next }
    print
  }
' callpool.example.toml
