# gobuild WHAT DIR GO-BUILD-ARGS...: go build in DIR, printing every 30 seconds how long it
# has taken and how many packages it has compiled, so a cold build never looks hung.
# Sourced by the build-*-binaries.sh scripts.
gobuild() {
  local what=$1 dir=$2; shift 2
  local log start=$SECONDS hb rc=0
  log=$(mktemp)
  ( while sleep 30; do
      echo "  still building $what: $((SECONDS - start)) s, $(grep -c . "$log") packages compiled so far" >&2
    done ) &
  hb=$!
  (cd "$dir" && go build -v "$@" 2>"$log") || rc=$?
  kill "$hb" 2>/dev/null; wait "$hb" 2>/dev/null || true
  if [ "$rc" != 0 ]; then cat "$log" >&2; fi
  echo "  $what: $(grep -c . "$log") packages compiled in $((SECONDS - start)) s" >&2
  rm -f "$log"
  return "$rc"
}

# copy_missing FROM TO BIN...: copies each BIN that TO lacks and FROM has, through a .tmp
# file so a reader never sees half a binary. The build scripts use it both ways: from the
# per-user cache into a checkout (a clean clone reuses what another built), and back.
copy_missing() {
  local from=$1 to=$2 bin; shift 2
  mkdir -p "$to"
  for bin in "$@"; do
    if [ ! -x "$to/$bin" ] && [ -x "$from/$bin" ]; then
      cp "$from/$bin" "$to/$bin.tmp" && mv "$to/$bin.tmp" "$to/$bin"
    fi
  done
}
