"""What every sink shares about talking HTTP: status -> retryable?, Retry-After,
blocking client calls kept off the event loop (secrets are kept out of error text with
receiver.logtext)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import TypeVar
from urllib.parse import quote

import anyio.to_thread

from receiver.errors import (
    DeliveryError,
    DeliveryReason,
    PermanentDeliveryError,
    RetryableDeliveryError,
)
from receiver.logtext import clip

T = TypeVar("T")


RETRY_AFTER_MAX_S = 3600.0
"""The longest ``Retry-After`` waited out: a year asked by a misbehaving proxy would park
the delivery (and the incident's later ones behind it) for that long."""


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date
    (RFC 9110 §10.2.3), at most ``RETRY_AFTER_MAX_S``; None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():  # int() and float() take other digits, not ²
        return min(float(text), RETRY_AFTER_MAX_S)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        # asctime and "-0000" dates come back without a zone: HTTP dates are GMT, never
        # this machine's local time.
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, when.timestamp() - now), RETRY_AFTER_MAX_S)


def reason_for(status: int) -> DeliveryReason:
    if status in (401, 403):
        return "auth"
    if status == 429:
        return "rate_limited"
    if status == 408:
        return "timeout"
    return "server" if status >= 500 else "client"


def error_for_status(
    sink: str,
    incident_id: str,
    status: int,
    detail: str,
    retry_after_s: float | None = None,
) -> DeliveryError:
    """The error for an HTTP answer that was not a success: 408, 429 and 5xx are worth
    another attempt; any other 4xx (bad credentials, a payload the API refuses) is not."""
    reason = reason_for(status)
    text = f"HTTP {status}: {clip(detail)}"
    if status in (408, 429) or status >= 500:
        return RetryableDeliveryError(sink, incident_id, reason, text, retry_after_s)
    return PermanentDeliveryError(sink, incident_id, reason, text)


async def off_loop(fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Run a blocking client call on a worker thread."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


def incident_url(external_url: str | None, incident_id: str) -> str | None:
    if not external_url:
        return None
    return f"{external_url.rstrip('/')}/incidents/{quote(incident_id, safe='')}"
