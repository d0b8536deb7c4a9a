"""What the HTTP feeds share: the client, retries and deadline, and reading untrusted items.

Each fetch makes up to ``attempts`` requests, retrying quickly with jitter on connection
errors and 5xx answers, never on 4xx, and all of them together take at most the feed's
``timeout``: enrichment runs once ``group_wait`` is over and must not hold the incident.
A fetch that fails, whose response is not JSON, or whose body (decompressed) is longer
than the feed's ``max_body_bytes``, raises a short ``EnrichmentError`` reason that never
carries a token, a header or the URL (which may hold credentials).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import anyio
import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from receiver.config.fields import show
from receiver.enrich import EnrichmentError
from receiver.enrich.worker_threads import Busy, WorkerThreads
from receiver.logtext import clip
from receiver.tls import ssl_context

SUMMARY_MAX = 1000
"""Longest summary kept from a feed item; longer ones are cut and end with an ellipsis."""


class _ServerError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def _transient(exc: BaseException) -> bool:
    return isinstance(
        exc, _ServerError | httpx.ConnectError | httpx.ConnectTimeout | httpx.RemoteProtocolError
    )


T = TypeVar("T")

# Reads of one feed's answers that may run on worker threads at once: a read given up at
# the budget goes on until it ends, and those must not pile up beside the event loop.
READS_AT_ONCE = 2


class _TooLarge(Exception):
    """The body went past the feed's ``max_body_bytes``."""


def _seconds(value: float) -> str:
    return f"{value:g}s"


class HttpFeed:
    """One httpx client per feed, built once; retries and the deadline of every fetch."""

    def __init__(
        self,
        name: str,
        *,
        headers: dict[str, str],
        timeout: float,
        ca_file: str | None,
        max_body_bytes: int,
        attempts: int,
        backoff: float,
    ) -> None:
        self.name = name
        self._timeout = timeout
        self._max_body_bytes = max_body_bytes
        self._attempts = attempts
        self._backoff = backoff
        self._client = httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(timeout), verify=ssl_context(ca_file)
        )
        self._reading = WorkerThreads(READS_AT_ONCE)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _get_json(self, url: str, params: list[tuple[str, str]]) -> Any:
        try:
            with anyio.fail_after(self._timeout):
                status, body = await self._get(url, params)
        except TimeoutError:
            raise EnrichmentError(f"timed out after {_seconds(self._timeout)}") from None
        except _ServerError as exc:
            raise EnrichmentError(f"HTTP {exc.status} after {self._attempts} attempts") from None
        except _TooLarge:
            raise EnrichmentError(
                f"answer larger than {self._max_body_bytes} bytes (max_body_bytes)"
            ) from None
        except httpx.TimeoutException:
            raise EnrichmentError(f"timed out after {_seconds(self._timeout)}") from None
        except httpx.ConnectError:
            raise EnrichmentError(f"cannot connect ({self._attempts} attempts)") from None
        except httpx.HTTPError as exc:
            raise EnrichmentError(f"request failed ({type(exc).__name__})") from None
        if status != 200:
            raise EnrichmentError(_status_reason(status))
        try:
            # On a worker thread: a body of megabytes (an endpoint answering its whole
            # history) must not hold the incident past its budget.
            return await self.off_loop(partial(json.loads, body))
        except ValueError:
            raise EnrichmentError("response is not JSON") from None

    async def off_loop(self, work: Callable[[], T]) -> T:
        """``work()`` on a worker thread the caller may give up on (its deadline), within
        ``READS_AT_ONCE`` of this feed's still running."""

        try:
            return await self._reading.run(work)
        except Busy:
            raise EnrichmentError(
                f"{READS_AT_ONCE} earlier reads of its answers have not ended yet"
            ) from None

    async def _get(self, url: str, params: list[tuple[str, str]]) -> tuple[int, bytes]:
        """The status of the last attempt, and its body when that is 200."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=self._backoff, max=1.0)
            + wait_random(0, self._backoff),
            retry=retry_if_exception(_transient),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                request = self._client.build_request(
                    "GET", httpx.URL(url).copy_merge_params(tuple(params))
                )
                response = await self._client.send(request, stream=True)
                try:
                    if response.status_code >= 500:
                        raise _ServerError(response.status_code)
                    if response.status_code != 200:
                        return response.status_code, b""
                    return 200, await self._body(response)
                finally:
                    await response.aclose()
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def _body(self, response: httpx.Response) -> bytes:
        # Counted as it arrives, decompressed: an endpoint that ignores since/until, or a
        # small gzip that inflates to gigabytes, stops at the limit instead of filling RAM.
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_body_bytes:
            raise _TooLarge
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self._max_body_bytes:
                raise _TooLarge
            chunks.append(chunk)
        return b"".join(chunks)


def _status_reason(status: int) -> str:
    hint = {401: "check the credentials", 403: "check the credentials' permissions"}.get(status)
    if hint is None and (status == 404 or 300 <= status < 400):
        hint = "check the url"
    return f"HTTP {status}: {hint}" if hint else f"HTTP {status}"


def kind(value: object) -> str:
    """What kind of JSON value ``value`` is, for a reason: "an object", "a list", "null",
    ...; never its content."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return show(value)


def summary(text: object) -> str | None:
    """Untrusted text on one line, cut to ``SUMMARY_MAX``; escaping is the sinks' job."""
    if not isinstance(text, str):
        return None
    return clip(text, SUMMARY_MAX)


def skipped(count: int, what: str) -> list[str]:
    """The note for ``count`` malformed items called ``what``; none when there were none."""
    if not count:
        return []
    return [f"{count} malformed {what}{'' if count == 1 else 's'} skipped"]
