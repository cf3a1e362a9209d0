#!/usr/bin/env bash
# Makes sure a Postgres answers at the host and port of the URL given as $1
# (default postgres://postgres@127.0.0.1:5432/postgres). When nothing answers,
# it starts a throwaway cluster there with the system's initdb/pg_ctl (as
# user postgres when run as root), installing Debian's postgresql package if
# it is missing, and says what it started and where.
set -euo pipefail
url=${1:-postgres://postgres@127.0.0.1:5432/postgres}
hostport=$(printf '%s' "$url" | sed -E 's#^[a-z]+://([^@/]*@)?([^/?]*).*#\2#')
host=${hostport%:*}
port=${hostport##*:}
[ "$host" = "$hostport" ] && port=5432
[ -z "$host" ] && host=127.0.0.1

answers() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$host" -p "$port" -t 2
  else
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
  fi
}

if answers; then
  exit 0
fi
case "$host" in
  127.*|localhost|::1) ;;
  *) echo "ensure-postgres: nothing answers at $host:$port and it is not local; start it or fix the URL" >&2; exit 1 ;;
esac

find_bin() {
  local name=$1
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return; fi
  ls -d /usr/lib/postgresql/*/bin/"$name" 2>/dev/null | sort -V | tail -1
}
initdb=$(find_bin initdb)
pg_ctl=$(find_bin pg_ctl)
if [ -z "$initdb" ] || [ -z "$pg_ctl" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "ensure-postgres: no Postgres at $host:$port and no initdb/pg_ctl; install postgresql (apt-get install postgresql)" >&2
    exit 1
  fi
  echo "ensure-postgres: installing Debian's postgresql package..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq postgresql >/dev/null
  initdb=$(find_bin initdb)
  pg_ctl=$(find_bin pg_ctl)
fi

data=/tmp/portal-domains-pg-$port
as_postgres() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi
if [ ! -f "$data/PG_VERSION" ]; then
  mkdir -p "$data"
  [ "$(id -u)" = 0 ] && chown postgres "$data"
  as_postgres "$initdb" -D "$data" -U postgres -A trust --no-sync >/dev/null
fi
as_postgres "$pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
  -o "-c listen_addresses=$host -p $port -k /tmp -c fsync=off -c max_connections=400" start >/dev/null
echo "ensure-postgres: started a throwaway Postgres at $host:$port (data $data, log $data/server.log; stop it with: $pg_ctl -D $data stop)" >&2
