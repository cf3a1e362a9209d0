#!/usr/bin/env bash
# Installs Debian's git for the manifest record tests (a bare repository served by git http-backend) when it is missing.
set -euo pipefail
if command -v git >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "ensure-git: git is missing; install it with: apt-get install git" >&2
  exit 1
fi
echo "ensure-git: installing Debian's git package..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq git >/dev/null
