#!/usr/bin/env bash
# Run a command with a real PostgreSQL server on a free loopback port, in a temporary data
# directory; stop it and remove the directory afterwards. Installs Debian's postgresql
# package with apt-get when it is missing. Exports POSTGRES_URL, and for tests that restart
# the server: POSTGRES_DATA, POSTGRES_LOG, POSTGRES_BIN and POSTGRES_RUNAS (the prefix that
# runs a command as the server's user: PostgreSQL refuses to run as root).
set -euo pipefail

find_bin() {
    local found
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
    if [ -n "$found" ] && [ -x "$found/initdb" ]; then echo "$found"; return; fi
    if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return; fi
}

bin=$(find_bin)
if [ -z "$bin" ]; then
    echo "with-postgres: PostgreSQL not found, installing Debian's package" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
    bin=$(find_bin)
fi
[ -n "$bin" ] || { echo "with-postgres: no initdb after installing postgresql" >&2; exit 1; }

dir=$(mktemp -d)
chmod 755 "$dir"
runas=()
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$dir"
    runas=(runuser -u postgres --)
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
"${runas[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync \
    >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
# fsync off: the tests kill the server process, never the machine, and the OS keeps what
# was written; a crash of the server still replays its WAL.
"${runas[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c fsync=off -c max_connections=200" \
    >/dev/null || { cat "$dir/server.log" >&2; exit 1; }

cleanup() {
    "${runas[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

export POSTGRES_URL="postgresql://postgres@127.0.0.1:$port/postgres"
export POSTGRES_DATA="$dir/data"
export POSTGRES_LOG="$dir/server.log"
export POSTGRES_BIN="$bin"
export POSTGRES_RUNAS="${runas[*]}"
echo "with-postgres: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port" >&2
set +e
"$@"
status=$?
exit $status
