#!/usr/bin/env bash
# The benchmark against a cluster: starts a throwaway PostgreSQL 15 (from /usr/lib/postgresql/15/bin,
# as the `postgres` user when run as root), builds the release binaries and runs tempora-bench with
# 3 scheduler nodes and 2 `tempora worker` agents on it (NODES=…, WORKERS=… change that; WORKERS=0
# runs the jobs in the nodes' local pools). Extra arguments go to tempora-bench, e.g.
#   bench/cluster.sh --jobs 200 --duration 60 --failover
#   bench/cluster.sh --drain 5000
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${TEMPORA_BENCH_PROFILE:-release}"
if [ "$profile" = release ]; then cargo build --release -p tempora -p tempora-bench; fi
PG_BIN="${TEMPORA_PG_BIN:-/usr/lib/postgresql/15/bin}"
[ -x "$PG_BIN/pg_ctl" ] || { echo "PostgreSQL 15 binaries not found in $PG_BIN" >&2; exit 1; }
dir="$(mktemp -d)"
as_user=()
if [ "$(id -u)" = 0 ]; then
  chown postgres: "$dir"
  as_user=(setpriv --reuid="$(id -u postgres)" --regid="$(id -g postgres)" --clear-groups --)
fi
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"${as_user[@]}" "$PG_BIN/initdb" -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 --locale=C >/dev/null
"${as_user[@]}" "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w start \
  -o "-h 127.0.0.1 -p $port -k $dir -c max_connections=200 -c shared_buffers=256MB" >/dev/null
trap '"${as_user[@]}" "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null; rm -rf "$dir"' EXIT
"${CARGO_TARGET_DIR:-target}/$profile/tempora-bench" --database-url "postgres://postgres@127.0.0.1:$port/postgres" \
  --nodes "${NODES:-3}" --workers "${WORKERS:-2}" "$@"
