"""``replay --store URL``: the Redis a replay runs on, under a key prefix of its own.

``memory://`` is the embedded store, gone with the process; ``auto``, the default, is a
redis-server of the replay's own when there is one (``server.py``), else ``memory://``.
Any other URL of the receiver's ``store.url`` grammar (``receiver/store/urls.py``: ``redis://``,
``rediss://``, ``unix://``, ``redis+sentinel://``, ``rediss+sentinel://``,
``redis+cluster://``) is a real Redis, where the replay writes only keys under a scratch
prefix unique to the run, ``{journey-receiver-replay:<16 hex digits>}:``, and deletes every
one of them when it ends (SCAN … MATCH, then UNLINK in batches) — on success, on an error,
and when interrupted. It reads and writes nothing else, so it may be pointed at a Redis
that others use; the prefix is one Cluster hash tag, so on a Cluster all of its keys sit in
one slot (the scripts run unchanged) and SCAN goes over every master. A process killed
outright leaves its keys: ``SCRATCH_PREFIX`` names them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from typing import Any
from urllib.parse import urlsplit

from receiver.store import urls

MEMORY = "memory://"
SCRATCH_PREFIX = "journey-receiver-replay:"
"""Every replay's keys on a real Redis start with ``{`` and this."""

_SCAN_COUNT = 1000
_UNLINK_BATCH = 500
logger = logging.getLogger("journey_receiver.replay")


class StoreError(Exception):
    """``--store`` cannot be used: a bad URL, or a Redis that does not answer."""


def is_memory(url: str) -> bool:
    return urlsplit(url).scheme == "memory"


def scratch_prefix() -> str:
    """A key prefix no other run of the replay (or receiver) uses."""
    return SCRATCH_PREFIX + secrets.token_hex(8)


def client_for(url: str) -> tuple[Any, list[Any]]:
    """The client for ``url`` and its helpers (sentinels), as the receiver builds them;
    ``StoreError`` naming ``--store`` when the URL is wrong."""
    try:
        urls.check_url(url)
        return urls.client_for(url)
    except ValueError as exc:
        raise StoreError(f"--store {shown(url)}: {exc}") from exc


def check(url: str) -> None:
    """Raise ``StoreError`` unless ``url`` is a store URL whose Redis answers a PING."""
    if is_memory(url):
        return

    async def ping() -> None:
        client, helpers = client_for(url)
        try:
            await reachable(url, client)
        finally:
            await close(client, helpers)

    asyncio.run(ping())


async def reachable(url: str, client: Any) -> None:
    try:
        await client.ping()
    except Exception as exc:  # any client error: connection, auth, TLS, cluster discovery
        raise StoreError(f"--store {shown(url)}: Redis does not answer: {_reason(exc)}") from exc


async def close(client: Any, helpers: list[Any]) -> None:
    with contextlib.suppress(Exception):
        await client.aclose()
    for helper in helpers:
        with contextlib.suppress(Exception):
            await helper.aclose()


async def delete_prefix(client: Any, key_prefix: str) -> int:
    """Delete every key of the store whose ``key_prefix`` this is (all of them sit under
    ``{key_prefix}:``); how many there were."""
    pattern = re.sub(r"([*?\[\]\\])", r"\\\1", "{" + key_prefix + "}:") + "*"
    deleted = 0
    batch: list[str] = []
    async for key in client.scan_iter(match=pattern, count=_SCAN_COUNT):
        batch.append(key)
        if len(batch) >= _UNLINK_BATCH:
            deleted += await client.unlink(*batch)
            batch.clear()
    if batch:
        deleted += await client.unlink(*batch)
    return deleted


async def delete_scratch(url: str, client: Any, key_prefix: str) -> None:
    """``delete_prefix``, a failure a warning naming the keys left behind."""
    try:
        await delete_prefix(client, key_prefix)
    except Exception as exc:
        left_behind(url, key_prefix, _reason(exc))


def left_behind(url: str, key_prefix: str, why: str) -> None:
    logger.warning(
        "journey-receiver replay: --store %s: could not delete the scratch keys {%s}:* (%s); "
        "delete them by hand",
        shown(url),
        key_prefix,
        why,
    )


def shown(url: str) -> str:
    try:
        return urls.shown_url(url)
    except ValueError:
        return "(an unreadable URL)"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
