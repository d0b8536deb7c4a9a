"""The generic webhook executor: one signed HTTP request per run attempt.

The request carries ``Idempotency-Key: <the run's key>``, the same on every attempt, and
``X-Journey-Receiver-Signature: sha256=<hex>``, the HMAC-SHA256 of the exact body bytes
sent with ``run.webhook.secret``, so the receiving system can check that the request is
the receiver's and act once per key. Answers are read as a sink reads them
(``receiver/sinks/_http.py``): 2xx is done; 408, 429 and 5xx are worth another attempt
(a 5xx may have acted, so it is ambiguous), and so is 409, the Idempotency-Key draft's
answer to a retry while the first request is still being processed; any other answer,
redirects included, is permanent; no answer at all (a timeout, a dropped connection) is
retryable and ambiguous, unless the connection was never made.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from urllib.parse import parse_qsl, quote, urlsplit

import anyio
import httpx
from pydantic import JsonValue

from receiver.act import RunRequest, RunResult
from receiver.act.template import MissingValues, fields, render, strings
from receiver.config.actions import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, Body, WebhookRun
from receiver.errors import DeliveryReason, PermanentDeliveryError, RetryableDeliveryError
from receiver.logtext import clip, redact
from receiver.sinks._http import error_for_status, retry_after
from receiver.tls import ssl_context

# Control characters, tab aside (RFC 9110: a field value holds visible characters, spaces
# and tabs).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def sign(secret: bytes, body: bytes) -> str:
    """The signature header's value for ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def render_body(body: Body | None, values: Mapping[str, str]) -> tuple[bytes, str | None]:
    """The bytes to send and their default Content-Type: a string template as UTF-8 text,
    a mapping or list as JSON built after its strings are filled (values stay data)."""
    if body is None:
        return b"", None
    missing = sorted({name for text in strings(body) for name in fields(text)} - set(values))
    if missing:
        raise MissingValues(missing)
    if isinstance(body, str):
        return render(body, values).encode(), "text/plain; charset=utf-8"
    filled = _fill(body, values)
    return json.dumps(filled, ensure_ascii=False).encode(), "application/json"


def render_url(url: str, values: Mapping[str, str]) -> str:
    """``url`` with its fields filled, each value percent-encoded whole (a ``/``, ``?`` or
    ``#`` in a label stays inside its own path segment or query value); ValueError for a
    value of ``.`` or ``..``, which percent-encoding leaves as it is and a URL's path reads
    as a step (``/services/../rollback`` is ``/rollback``): another endpoint."""
    for name in fields(url):
        if values.get(name) in (".", ".."):
            raise ValueError(f"the URL's {{{name}}} would be {values[name]!r}, a path step")
    return render(url, {name: quote(value, safe="") for name, value in values.items()})


def render_headers(headers: Mapping[str, str], values: Mapping[str, str]) -> dict[str, str]:
    """The headers with their fields filled; ValueError naming the header when a filled
    value is not one HTTP carries as it is: a line break or another control character
    (tab aside), or a character that is not ASCII (a label's ``é``). Refused here, so the
    run fails for good with nothing sent: the HTTP client's own errors for these read as
    a run that may have happened, and would be tried again."""
    filled = {name: render(value, values) for name, value in headers.items()}
    for name, value in filled.items():
        # The value may hold a token: the error says what kind of character, never which.
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name} would carry a line break")
        if _CONTROL.search(value):
            raise ValueError(f"header {name} would carry a control character")
        if not value.isascii():
            raise ValueError(f"header {name} would carry a character that is not ASCII")
    return filled


def _fill(value: JsonValue, values: Mapping[str, str]) -> JsonValue:
    if isinstance(value, str):
        return render(value, values)
    if isinstance(value, list):
        return [_fill(item, values) for item in value]
    if isinstance(value, dict):
        return {key: _fill(item, values) for key, item in value.items()}
    return value


class WebhookExecutor:
    """Runs one action's ``run.webhook``; build it once, at startup, and reuse it."""

    kind = "webhook"

    def __init__(
        self, config: WebhookRun, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._config = config
        self._secret = config.secret.get_secret_value().encode()
        parts = urlsplit(config.url)
        self._secrets = [
            config.secret.get_secret_value(),
            *(value.get_secret_value() for value in config.headers.values()),
            parts.password,
            *(value for _, value in parse_qsl(parts.query)),
        ]
        self._headers = {name: value.get_secret_value() for name, value in config.headers.items()}
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(config.timeout),
            verify=ssl_context(config.ca_file),
            follow_redirects=False,
            transport=transport,
        )

    async def run(self, request: RunRequest) -> RunResult:
        name = f"action:{request.action_id}"
        try:
            body, content_type = render_body(self._config.body, request.values)
            url = render_url(self._config.url, request.values)
            headers = render_headers(self._headers, request.values)
        except (MissingValues, ValueError) as exc:
            raise PermanentDeliveryError(name, request.incident_id, "client", str(exc)) from exc
        if content_type is not None and not any(h.lower() == "content-type" for h in headers):
            headers["Content-Type"] = content_type
        headers[IDEMPOTENCY_HEADER] = request.idempotency_key
        headers[SIGNATURE_HEADER] = sign(self._secret, body)
        try:
            with anyio.fail_after(self._config.timeout):
                response = await self._client.request(
                    self._config.method, url, content=body, headers=headers
                )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # Never connected: nothing was sent, so nothing can have happened.
            reason: DeliveryReason = (
                "timeout" if isinstance(exc, httpx.ConnectTimeout) else "server"
            )
            detail = self._detail(f"cannot connect: {type(exc).__name__}: {exc}")
            raise RetryableDeliveryError(name, request.incident_id, reason, detail) from exc
        except (TimeoutError, httpx.TimeoutException) as exc:
            detail = f"no answer within {self._config.timeout:g}s; the run may have happened"
            raise RetryableDeliveryError(
                name, request.incident_id, "timeout", detail, ambiguous=True
            ) from exc
        except httpx.HTTPError as exc:
            detail = self._detail(f"no answer ({type(exc).__name__}: {exc}); it may have run")
            raise RetryableDeliveryError(
                name, request.incident_id, "server", detail, ambiguous=True
            ) from exc
        text = self._detail(response.text)
        if response.is_success:
            return RunResult(response.status_code, text)
        wait = retry_after(response.headers.get("retry-after"), time.time())
        if response.status_code == 409:
            # The Idempotency-Key draft's answer to a retry that comes while the request
            # with the same key is still being processed (an attempt that timed out here
            # and acts there): the run may be under way, so it is asked about again.
            detail = f"HTTP 409: {clip(text)}"
            raise RetryableDeliveryError(
                name, request.incident_id, "client", detail, wait, ambiguous=True
            )
        error = error_for_status(name, request.incident_id, response.status_code, text, wait)
        if isinstance(error, RetryableDeliveryError):
            error.ambiguous = response.status_code >= 500
        raise error

    def _detail(self, text: str) -> str:
        return clip(redact(text, self._secrets))

    async def aclose(self) -> None:
        await self._client.aclose()
