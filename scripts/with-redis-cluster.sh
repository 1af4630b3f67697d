#!/usr/bin/env bash
# Run a command with a real Redis Cluster (3 primaries, 3 replicas) on free loopback ports;
# stop it afterwards. Installs Debian's redis-server when missing. Exports
# REDIS_CLUSTER_URL (redis+cluster://127.0.0.1:PORT, one startup node), and for tests that
# kill and restart a node REDIS_CLUSTER_PORTS (the six ports) and REDIS_CLUSTER_DIR.
set -euo pipefail

if ! command -v redis-server >/dev/null 2>&1; then
    echo "with-redis-cluster: redis-server not found, installing Debian's package" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi

# Six free ports whose cluster bus ports (port + 10000) are free too.
ports=$(python3 - <<'PY'
import socket
found = []
while len(found) < 6:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    if port + 10000 > 65535 or port in found:
        continue
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", port + 10000))
    except OSError:
        continue
    finally:
        b.close()
    found.append(port)
print(" ".join(map(str, found)))
PY
)
dir=$(mktemp -d)
pids=()
cleanup() {
    # Nodes a test restarted record their pids in extra.pids.
    if [ -f "$dir/extra.pids" ]; then
        while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$dir/extra.pids"
    fi
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    # The nodes are disowned (no job notice when a test SIGKILLs one): poll for their exit.
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    done
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

for port in $ports; do
    mkdir -p "$dir/$port"
    redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
        --cluster-config-file "$dir/$port/nodes.conf" --cluster-node-timeout 2000 \
        --save '' --appendonly no --dir "$dir/$port" --daemonize no --loglevel warning \
        >"$dir/$port/redis.log" 2>&1 &
    pids+=($!)
    disown $!
done
for port in $ports; do
    for _ in $(seq 1 100); do
        if redis-cli -p "$port" ping >/dev/null 2>&1; then break; fi
        sleep 0.05
    done
done
nodes=""
for port in $ports; do nodes="$nodes 127.0.0.1:$port"; done
# shellcheck disable=SC2086
redis-cli --cluster create $nodes --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 || {
    echo "with-redis-cluster: cluster create failed" >&2; cat "$dir/create.log" >&2; exit 1; }
first=${ports%% *}
# Ready when every node says ok and sees three replicas (gossip takes a few seconds).
ready() {
    for port in $ports; do
        redis-cli -p "$port" cluster info 2>/dev/null | grep -q 'cluster_state:ok' || return 1
        [ "$(redis-cli -p "$port" cluster nodes 2>/dev/null | grep -c slave)" -eq 3 ] || return 1
    done
}
for _ in $(seq 1 300); do
    if ready; then break; fi
    sleep 0.1
done
ready || { echo "with-redis-cluster: cluster did not become ok" >&2; exit 1; }

export REDIS_CLUSTER_URL="redis+cluster://127.0.0.1:$first"
export REDIS_CLUSTER_PORTS="$ports"
# Each node's directory is $REDIS_CLUSTER_DIR/PORT (nodes.conf, redis.log): a test that kills
# a node can restart it with the same identity; it appends the new pid to extra.pids.
export REDIS_CLUSTER_DIR="$dir"
echo "with-redis-cluster: 6-node Redis Cluster on 127.0.0.1 ports $ports" >&2
set +e
"$@"
status=$?
exit $status
