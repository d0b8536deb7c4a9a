"""The keys that sign session cookies and CSRF tokens, the same on every replica.

With ``server.auth.session_secret`` set, the key is derived from it: every replica has it,
restarts keep sessions, and changing the secret signs everyone out. Without it, the key is
a random one kept in the store's shared cache (``store.cache``): the first replica to need a
key for the current period makes one, every other replica reads that one (``SET NX``). A
period is a week (or ``session_ttl`` when longer); the previous period's key still verifies,
so a sign-in lasts its ``session_ttl`` across the change. A key lost with the store (a
``memory://`` store at restart, a flushed Redis) only means people sign in again.

Each key has an id (``kid``) carried in the clear next to what it signs; a verifier accepts
only the ids above: the configured secret's, or the current or previous period's (or the
next one's, within ``CLOCK_SKEW_S`` of it: a replica whose clock is ahead signs with it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Protocol

WEEK_S = 7 * 86400.0
KEY_BYTES = 32
MEMO_S = 60.0
NAMESPACE = "web"
CLOCK_SKEW_S = 60.0
"""How far apart replicas' clocks may be: what one whose clock is ahead signs (a session
ending later, a key of the next period) is still good on the others."""


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return None


def mac(key: bytes, purpose: str, message: str) -> str:
    """HMAC-SHA256 of ``message`` for one ``purpose`` (a session, a CSRF token...)."""
    return b64(hmac.new(key, f"{purpose}|{message}".encode(), hashlib.sha256).digest())


class KeyCache(Protocol):
    """What keys need of the store's shared cache (``receiver.store.cache.SharedCache``)."""

    async def get(self, namespace: str, field: str) -> str | None: ...

    async def set(self, namespace: str, field: str, value: str, ttl_ms: int) -> None: ...

    async def setdefault(self, namespace: str, field: str, value: str, ttl_ms: int) -> str: ...


@dataclass(frozen=True, slots=True)
class Key:
    kid: str
    secret: bytes


class KeyRing:
    """Finds the signing key and the keys that may verify; one per app. It keeps the
    store's keys for a minute: should the store lose one and another replica make a new
    one, this replica follows within that minute."""

    def __init__(self) -> None:
        self._memo: dict[str, tuple[bytes, float]] = {}

    async def signing(
        self, configured: str | None, cache: KeyCache, now: float, session_ttl: float
    ) -> Key:
        """The key to sign with now."""
        if configured is not None:
            return _configured(configured)
        slot = _slot(now, session_ttl)
        key = await self._stored(f"r{slot}", slot, cache, now, session_ttl, make=True)
        assert key is not None
        return key

    async def verifying(
        self,
        kid: str,
        configured: str | None,
        cache: KeyCache,
        now: float,
        session_ttl: float,
    ) -> Key | None:
        """The key with id ``kid`` if that id may still verify, else None."""
        if configured is not None:
            derived = _configured(configured)
            return derived if kid == derived.kid else None
        slot = _slot(now, session_ttl)
        if kid == f"r{slot}":
            return await self.signing(configured, cache, now, session_ttl)
        if kid == f"r{slot + 1}" and _slot(now + CLOCK_SKEW_S, session_ttl) == slot + 1:
            # Made by a replica whose clock has passed into the next period already.
            return await self._stored(kid, slot + 1, cache, now, session_ttl, make=False)
        if kid != f"r{slot - 1}":
            return None
        return await self._stored(kid, slot, cache, now, session_ttl, make=False)

    async def _stored(
        self, kid: str, slot: int, cache: KeyCache, now: float, session_ttl: float, *, make: bool
    ) -> Key | None:
        memo = self._memo.get(kid)
        if memo is not None and 0 <= now - memo[1] < MEMO_S:
            return Key(kid, memo[0])
        field = f"key:{kid}"
        if make:
            # Kept for this period and the next one, in which it still verifies.
            ttl_ms = int((2 * max(WEEK_S, session_ttl) + 86400) * 1000)
            made = b64(secrets.token_bytes(KEY_BYTES))
            key = _decoded(await cache.setdefault(NAMESPACE, field, made, ttl_ms))
            if key is None:  # not one of ours: never sign with it
                await cache.set(NAMESPACE, field, made, ttl_ms)
                key = _decoded(made)
        else:
            kept = await cache.get(NAMESPACE, field)
            key = None if kept is None else _decoded(kept)
        if key is None:
            return None
        live = {f"r{slot}", f"r{slot - 1}"}
        self._memo = {k: v for k, v in self._memo.items() if k in live}
        self._memo[kid] = (key, now)
        return Key(kid, key)


def _slot(now: float, session_ttl: float) -> int:
    return int(now // max(WEEK_S, session_ttl))


def _decoded(kept: str) -> bytes | None:
    raw = unb64(kept)
    return raw if raw is not None and len(raw) == KEY_BYTES else None


def _configured(secret: str) -> Key:
    root = secret.encode("utf-8", "surrogatepass")
    derived = hmac.new(root, b"journey-receiver pages", hashlib.sha256).digest()
    # The id names the secret without revealing it, so changing it retires old cookies.
    kid = "s" + b64(hmac.new(root, b"journey-receiver key id", hashlib.sha256).digest()[:6])
    return Key(kid, derived)
