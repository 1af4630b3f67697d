"""Raw redis-py clients for the tests' own bookkeeping, for a server or a cluster URL."""

from __future__ import annotations

from typing import Any

import redis
import redis.cluster


def raw_client(url: str) -> Any:
    """A sync client for ``url``: ``redis+cluster://`` gives a RedisCluster."""
    if url.startswith(("redis+cluster://", "rediss+cluster://")):
        return redis.cluster.RedisCluster.from_url(url.replace("+cluster", "", 1))
    return redis.Redis.from_url(url)


def delete_prefix(client: Any, prefix: str) -> None:
    """Delete every key that starts with ``prefix`` (one key at a time: a cluster's keys
    hash to many slots)."""
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)


def wait_for_server(port: int, seconds: float = 10.0) -> None:
    """Return once a Redis server answers PING on ``port`` (or the time is up)."""
    import time

    client = redis.Redis(port=port)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
    finally:
        client.close()
