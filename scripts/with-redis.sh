#!/usr/bin/env bash
# Run a command with a real redis-server on a free loopback port; stop it afterwards.
# Installs Debian's redis-server with apt-get when it is missing. Exports REDIS_URL,
# and REDIS_PORT / REDIS_SERVER for tests that stop and restart the server.
set -euo pipefail

if ! command -v redis-server >/dev/null 2>&1; then
    echo "with-redis: redis-server not found, installing Debian's package" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$dir" --daemonize no --loglevel warning >"$dir/redis.log" 2>&1 &
pid=$!
cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

for _ in $(seq 1 100); do
    if redis-cli -p "$port" ping >/dev/null 2>&1; then break; fi
    sleep 0.05
done
redis-cli -p "$port" ping >/dev/null || { echo "with-redis: redis-server did not start" >&2; cat "$dir/redis.log" >&2; exit 1; }

export REDIS_URL="redis://127.0.0.1:$port/0"
export REDIS_PORT="$port"
export REDIS_SERVER="$(command -v redis-server)"
echo "with-redis: redis-server $(redis-server --version | awk '{print $3}') on 127.0.0.1:$port" >&2
set +e
"$@"
status=$?
exit $status
