#!/usr/bin/env bash
# ensure-package.sh COMMAND PACKAGE WHY: installs Debian's PACKAGE when COMMAND
# is missing (Chromium for the River UI browser test, git for the manifest
# record's test remote), saying so; as non-root it says what to install.
set -euo pipefail
command=$1 package=$2 why=$3
if command -v "$command" >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "ensure-package: $command is missing ($why); install it with: apt-get install $package" >&2
  exit 1
fi
echo "ensure-package: installing Debian's $package package ($why)..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq "$package" >/dev/null
