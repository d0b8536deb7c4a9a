"""A small cache every replica shares: answers that are slow or scarce to get again
(a Slack channel's ID for its name) kept in the store for a while.

Each entry is a plain key ``<prefix>cache:<namespace>:<field>`` with its own expiry
(``SET … PX``), under the store's hash tag like every other key, so it works on Redis
Cluster. An entry is only ever a hint: a caller must cope with a stale or missing one.
What several replicas each say of themselves (``say``, ``sayers``; ``Said``) is a sorted
set under such a key instead: who said it, scored by when.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from receiver.store.scripts import text, unavailable


class Cache(Protocol):
    async def get(self, namespace: str, field: str) -> str | None:
        """The value kept for ``field``, or None when there is none (or it expired)."""
        ...

    async def set(self, namespace: str, field: str, value: str, ttl_ms: int) -> None:
        """Keep ``value`` for ``field`` for ``ttl_ms`` milliseconds."""
        ...


class SharedCache:
    """The cache in the store, seen by every replica (``store.cache``)."""

    def __init__(self, client: Any, prefix: str) -> None:
        self._r = client
        self._p = prefix + "cache:"

    def key(self, namespace: str, field: str) -> str:
        return f"{self._p}{namespace}:{field}"

    @unavailable
    async def get(self, namespace: str, field: str) -> str | None:
        value = await self._r.get(self.key(namespace, field))
        return None if value is None else text(value)

    @unavailable
    async def set(self, namespace: str, field: str, value: str, ttl_ms: int) -> None:
        await self._r.set(self.key(namespace, field), value, px=max(1, ttl_ms))

    @unavailable
    async def setdefault(self, namespace: str, field: str, value: str, ttl_ms: int) -> str:
        """The value kept for ``field``, keeping ``value`` (for ``ttl_ms``) when there is none.

        Of replicas racing to keep their own value, one wins (``SET NX``) and every one of
        them gets the winner's value back.
        """
        key = self.key(namespace, field)
        await self._r.set(key, value, px=max(1, ttl_ms), nx=True)
        kept = await self._r.get(key)
        return value if kept is None else text(kept)

    @unavailable
    async def say(self, namespace: str, field: str, by: str, now_ms: int, ttl_ms: int) -> None:
        """Note that ``by`` says ``field`` now, for ``ttl_ms`` (on the receiver's clock);
        unlike ``set``, what the others say of it stays."""
        key = self.key(namespace, field)
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {by: now_ms})
            pipe.zremrangebyscore(key, "-inf", now_ms - ttl_ms)
            # The set goes once nobody says it any more.
            pipe.pexpire(key, max(1, ttl_ms))
            await pipe.execute()

    @unavailable
    async def unsay(self, namespace: str, field: str, by: str) -> None:
        """Take back what ``by`` said of ``field`` (``say``), before it would expire."""
        await self._r.zrem(self.key(namespace, field), by)

    @unavailable
    async def sayers(self, namespace: str, field: str, now_ms: int, ttl_ms: int) -> frozenset[str]:
        """Who said ``field`` within the last ``ttl_ms`` (``say``)."""
        said = await self._r.zrangebyscore(self.key(namespace, field), now_ms - ttl_ms, "+inf")
        return frozenset(text(by) for by in said)


class Said:
    """What this replica has (its sinks, its actions' definitions), said in ``cache``
    under ``namespace`` for the other replicas: each field every ``every_ms`` and at once
    when the set changed, kept ``for_ms``; what it no longer has taken back at once. It
    says so under a token of its own, so that what it said itself (before a reload, or as
    the only replica) is never another replica having it."""

    def __init__(
        self, cache: SharedCache, namespace: str, every_ms: int = 30_000, for_ms: int = 120_000
    ) -> None:
        self._cache = cache
        self._namespace = namespace
        self._every_ms = every_ms
        self._for_ms = for_ms
        self.token = secrets.token_hex(8)
        self._said: frozenset[str] = frozenset()
        self._said_ms: int | None = None

    async def say(self, fields: Iterable[str], now_ms: int) -> int:
        """Say ``fields`` (all this replica has) when due; how many were said (0: not due)."""
        having = frozenset(fields)
        fresh = self._said_ms is not None and now_ms - self._said_ms < self._every_ms
        if having == self._said and fresh:
            return 0
        for field in sorted(having):
            await self._cache.say(self._namespace, field, self.token, now_ms, self._for_ms)
        # Left to expire, what every replica said before a change they all reloaded would
        # have each one count the others as still having it, for two minutes.
        for field in sorted(self._said - having):
            await self._cache.unsay(self._namespace, field, self.token)
        self._said, self._said_ms = having, now_ms
        return len(having)

    async def elsewhere(self, field: str, now_ms: int) -> bool:
        """Whether another replica says it has ``field``."""
        sayers = await self._cache.sayers(self._namespace, field, now_ms, self._for_ms)
        return bool(sayers - {self.token})


class LocalCache:
    """The same in this process only, for a sink built without a store (tests, tools)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[tuple[str, str], tuple[str, float]] = {}

    async def get(self, namespace: str, field: str) -> str | None:
        entry = self._entries.get((namespace, field))
        if entry is None or entry[1] <= self._clock():
            return None
        return entry[0]

    async def set(self, namespace: str, field: str, value: str, ttl_ms: int) -> None:
        now = self._clock()
        # Expired entries go as new ones come: the map stays as small as what is live.
        for key in [k for k, (_, until) in self._entries.items() if until <= now]:
            del self._entries[key]
        self._entries[(namespace, field)] = (value, now + ttl_ms / 1000)

    async def setdefault(self, namespace: str, field: str, value: str, ttl_ms: int) -> str:
        kept = await self.get(namespace, field)
        if kept is not None:
            return kept
        await self.set(namespace, field, value, ttl_ms)
        return value
