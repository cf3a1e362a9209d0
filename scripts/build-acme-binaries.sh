#!/usr/bin/env bash
# Builds cert-manager's ACME controllers (tools/cert-manager-controller, cert-manager v1.21.2)
# and Pebble, the ACME test CA (tools/pebble, v2.10.3), from the Go module proxy into
# .cache/acme-bin, for the local stack and the tests. A cold build takes minutes, a warm one
# seconds; a line every 30 seconds says how far it got. Prints the directory.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/.cache/acme-bin"
mkdir -p "$out"
exec 9>"$out/.build.lock"
flock 9
cm_version=v1.21.2
pebble_version=v2.10.3
# Keyed by version outside the work tree, so another checkout on this machine reuses them.
# The key also covers our own wiring of the controllers (main.go, go.mod).
wiring=$(cat "$root/tools/cert-manager-controller/main.go" "$root/tools/cert-manager-controller/go.mod" | sha256sum | cut -c1-12)
shared="${PORTAL_DOMAINS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portal-domains}/acme-bin-cert-manager-$cm_version-$wiring-pebble-$pebble_version"
stamp="$out/.key"
if [ "$(cat "$stamp" 2>/dev/null)" != "$shared" ]; then
  rm -f "$out/cert-manager-controller" "$out/pebble"
  echo "$shared" >"$stamp"
fi
. "$root/scripts/lib/gobuild.sh"
copy_missing "$shared" "$out" cert-manager-controller pebble


if [ ! -x "$out/pebble" ]; then
  echo "building pebble $pebble_version into $out (under a minute the first time)..." >&2
  gobuild pebble "$root/tools/pebble" -trimpath -o "$out/pebble.tmp" github.com/letsencrypt/pebble/v2/cmd/pebble && mv "$out/pebble.tmp" "$out/pebble"
fi
if [ ! -x "$out/cert-manager-controller" ]; then
  echo "building cert-manager $cm_version controllers into $out (about 6 minutes the first time on 2 cores)..." >&2
  gobuild cert-manager-controller "$root/tools/cert-manager-controller" -trimpath -ldflags "-s -w" -o "$out/cert-manager-controller.tmp" . && mv "$out/cert-manager-controller.tmp" "$out/cert-manager-controller"
fi
copy_missing "$out" "$shared" cert-manager-controller pebble
echo "$out"
