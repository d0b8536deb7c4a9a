"""A small cache every replica shares: answers that are slow or scarce to get again
(a Slack channel's ID for its name) kept in the store for a while.

Each entry is a plain key ``<prefix>cache:<namespace>:<field>`` with its own expiry
(``SET … PX``), under the store's hash tag like every other key, so it works on Redis
Cluster. An entry is only ever a hint: a caller must cope with a stale or missing one.
What several replicas each say of themselves (``say``, ``sayers``) is a sorted set under
such a key instead: who said it, scored by when.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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
    async def sayers(self, namespace: str, field: str, now_ms: int, ttl_ms: int) -> frozenset[str]:
        """Who said ``field`` within the last ``ttl_ms`` (``say``)."""
        said = await self._r.zrangebyscore(self.key(namespace, field), now_ms - ttl_ms, "+inf")
        return frozenset(text(by) for by in said)


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
