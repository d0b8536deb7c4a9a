"""Pick the store from ``store.url``.

- ``memory://`` — an embedded server in this process: for trying the receiver out; one
  replica only, nothing survives a restart.
- ``redis://``, ``rediss://`` — one Redis (TLS options as URL query, e.g. ``ssl_ca_certs``).
- ``redis+sentinel://[user:pass@]host:port[,host:port…]/<master name>[/db]`` — Sentinel.
- ``redis+cluster://[user:pass@]host:port`` — Redis Cluster (all keys share one hash tag).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel

from receiver.store.base import StoreSettings
from receiver.store.redis import RedisStore

# Short socket timeouts keep a Redis outage a fast 503 (Alertmanager retries), not a hang.
_TIMEOUTS: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}


def open_store(
    url: str,
    settings: StoreSettings | None = None,
    observe: Callable[[str, float], None] | None = None,
) -> RedisStore:
    client, helpers = _client(url)
    return RedisStore(client, settings or StoreSettings(), helpers=helpers, observe=observe)


def _client(url: str) -> tuple[Any, list[Any]]:
    """The client for ``url`` and any helper clients it depends on (closed with it)."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from fakeredis import FakeServer
        from fakeredis.aioredis import FakeRedis

        return FakeRedis(server=FakeServer(), decode_responses=True), []
    if scheme in ("redis", "rediss", "unix"):
        return Redis.from_url(url, decode_responses=True, **_TIMEOUTS), []
    if scheme == "redis+cluster":
        cluster_url = "redis" + url[len("redis+cluster") :]
        return RedisCluster.from_url(cluster_url, decode_responses=True, **_TIMEOUTS), []
    if scheme == "redis+sentinel":
        return _sentinel_client(url)
    raise ValueError(
        f"unsupported store URL scheme {scheme!r}: "
        "use memory, redis, rediss, redis+sentinel or redis+cluster"
    )


def _sentinel_client(url: str) -> tuple[Redis, list[Any]]:
    parts = urlsplit(url)
    hosts = []
    for hostport in parts.netloc.rpartition("@")[2].split(","):
        host, _, port = hostport.rpartition(":")
        hosts.append((host or hostport, int(port) if host else 26379))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError(
            "redis+sentinel:// URL needs the master name: redis+sentinel://host:26379/mymaster[/db]"
        )
    db = int(path[1]) if len(path) > 1 else 0
    password = unquote(parts.password) if parts.password else None
    username = unquote(parts.username) if parts.username else None
    sentinel = Sentinel(hosts, **_TIMEOUTS)
    master: Redis = sentinel.master_for(
        path[0], db=db, password=password, username=username, decode_responses=True, **_TIMEOUTS
    )
    return master, list(sentinel.sentinels)
