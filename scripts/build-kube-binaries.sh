#!/usr/bin/env bash
# Builds kube-apiserver and etcd from the Go module proxy into .cache/kube-bin,
# for the local API server (internal/harness/localapi). No prebuilt download is
# reachable here, so the binaries come from source; a cold build takes
# minutes, a warm one seconds. While
# it builds, a line every 30 seconds says how far it got, so it never looks hung.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/.cache/kube-bin"
mkdir -p "$out"
# One build at a time: make test, make run and the bench may all ask at once
# on a fresh machine, and two builds of the same .tmp file break each other.
exec 9>"$out/.build.lock"
flock 9
k8s_version=v1.37.2
etcd_version=v3.7.3
# A clean clone (CI) reuses binaries built by another checkout on this
# machine: they are keyed by version outside the work tree.
shared="${PORTAL_DOMAINS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/portal-domains}/kube-bin-$k8s_version-etcd-$etcd_version"
. "$root/scripts/lib/gobuild.sh"
copy_missing "$shared" "$out" etcd kube-apiserver


if [ ! -x "$out/etcd" ]; then
  echo "building etcd $etcd_version into $out (about 1 minute the first time)..." >&2
  gobuild etcd "$root/tools/etcd" -trimpath -o "$out/etcd.tmp" . && mv "$out/etcd.tmp" "$out/etcd"
fi
if [ ! -x "$out/kube-apiserver" ]; then
  echo "building kube-apiserver $k8s_version into $out (8 to 20 minutes and 2.3 GB the first time, depending on the machine)..." >&2
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"
  GOFLAGS=-mod=mod gobuild kube-apiserver "$root/tools/kube-apiserver" -trimpath -ldflags "$ldflags" -o "$out/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver && mv "$out/kube-apiserver.tmp" "$out/kube-apiserver"
fi
copy_missing "$out" "$shared" etcd kube-apiserver
echo "$out"
