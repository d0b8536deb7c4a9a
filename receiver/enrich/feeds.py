"""Change events pulled from other systems when an incident is enriched.

A feed is asked for the changes in a time window and answers a list of ``ChangeEvent``.
What a feed answers is untrusted: items that are not change events are skipped and
counted, and a response that is not what the feed's API promises (not JSON, not a list)
fails the whole fetch with a short ``EnrichmentError`` reason. Reasons never carry a
token, a header or the URL (which may hold credentials).

Each fetch makes up to ``attempts`` requests, retrying quickly with jitter on connection
errors and 5xx answers, never on 4xx, and all of them together take at most the feed's
``timeout``: enrichment runs once ``group_wait`` is over and must not hold the incident.
"""

from __future__ import annotations

import hashlib
import json
import ssl
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import anyio
import httpx
from pydantic import ConfigDict, ValidationError
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from receiver.config.feeds import FeedConfig, GrafanaFeedConfig, JsonFeedConfig
from receiver.config.fields import show
from receiver.enrich import EnrichmentError
from receiver.events import ChangeEvent

SUMMARY_MAX = 1000
"""Longest summary kept from a feed item; longer ones are cut and end with an ellipsis."""


class FeedEvent(ChangeEvent):
    """A change event read from a feed; ``source`` is the feed's name.

    Fields a feed sends beyond those of ``POST /api/v1/events`` are ignored rather than
    refused: the receiver does not own the feed's format.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    source: str


def source_of(event: ChangeEvent) -> str:
    """Where an event came from: a feed's name, or ``"api"`` for ``/api/v1/events``."""
    return event.source if isinstance(event, FeedEvent) else "api"


class FeedEvents(list[ChangeEvent]):
    """The events of one fetch, with ``notes`` on what was left out (malformed items,
    a result cut at a limit). A plain list is a complete answer."""

    def __init__(self, events: Iterable[ChangeEvent] = (), notes: Sequence[str] = ()) -> None:
        super().__init__(events)
        self.notes = tuple(notes)


class Feed(Protocol):
    """One source of change events besides the store."""

    name: str

    async def events(self, start: datetime, end: datetime) -> list[ChangeEvent]:
        """The changes with ``start <= at <= end``; raises ``EnrichmentError``."""
        ...

    async def aclose(self) -> None: ...


class _ServerError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def _transient(exc: BaseException) -> bool:
    return isinstance(
        exc, _ServerError | httpx.ConnectError | httpx.ConnectTimeout | httpx.RemoteProtocolError
    )


def _seconds(value: float) -> str:
    return f"{value:g}s"


class _HttpFeed:
    """One httpx client per feed, built once; retries and the deadline of every fetch."""

    def __init__(
        self,
        name: str,
        *,
        headers: dict[str, str],
        timeout: float,
        ca_file: str | None,
        attempts: int,
        backoff: float,
    ) -> None:
        self.name = name
        self._timeout = timeout
        self._attempts = attempts
        self._backoff = backoff
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=ca_file) if ca_file else True
        )
        self._client = httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(timeout), verify=verify
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _get_json(self, url: str, params: list[tuple[str, str]]) -> Any:
        try:
            with anyio.fail_after(self._timeout):
                response = await self._get(url, params)
        except TimeoutError:
            raise EnrichmentError(f"timed out after {_seconds(self._timeout)}") from None
        except _ServerError as exc:
            raise EnrichmentError(f"HTTP {exc.status} after {self._attempts} attempts") from None
        except httpx.TimeoutException:
            raise EnrichmentError(f"timed out after {_seconds(self._timeout)}") from None
        except httpx.ConnectError:
            raise EnrichmentError(f"cannot connect ({self._attempts} attempts)") from None
        except httpx.HTTPError as exc:
            raise EnrichmentError(f"request failed ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise EnrichmentError(_status_reason(response.status_code))
        try:
            return response.json()
        except ValueError:
            raise EnrichmentError("response is not JSON") from None

    async def _get(self, url: str, params: list[tuple[str, str]]) -> httpx.Response:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=self._backoff, max=1.0)
            + wait_random(0, self._backoff),
            retry=retry_if_exception(_transient),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                response = await self._client.get(httpx.URL(url).copy_merge_params(tuple(params)))
                if response.status_code >= 500:
                    raise _ServerError(response.status_code)
                return response
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover


def _status_reason(status: int) -> str:
    hint = {401: "check the credentials", 403: "check the credentials' permissions"}.get(status)
    if hint is None and (status == 404 or 300 <= status < 400):
        hint = "check the url"
    return f"HTTP {status}: {hint}" if hint else f"HTTP {status}"


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return show(value)


def _summary(text: object) -> str | None:
    """Untrusted text on one line, cut to ``SUMMARY_MAX``; escaping is the sinks' job."""
    if not isinstance(text, str):
        return None
    line = " ".join(text.split())
    return line if len(line) <= SUMMARY_MAX else line[: SUMMARY_MAX - 1] + "…"


def _skipped(count: int, what: str) -> list[str]:
    if not count:
        return []
    return [f"{count} malformed {what}{'' if count == 1 else 's'} skipped"]


class JsonFeed(_HttpFeed):
    """``GET <url>?since=<RFC3339>&until=<RFC3339>`` answering change events as JSON.

    The list is the body, or at the dotted path ``items`` of it; the window is applied
    here again whatever the endpoint does with ``since``/``until``. An item without
    ``id`` gets one derived from its content, so the same item keeps the same id.
    """

    def __init__(self, config: JsonFeedConfig, *, attempts: int = 3, backoff: float = 0.05):
        super().__init__(
            config.name,
            headers={key: value.get_secret_value() for key, value in config.headers.items()},
            timeout=config.timeout,
            ca_file=str(config.ca_file) if config.ca_file else None,
            attempts=attempts,
            backoff=backoff,
        )
        self._url = config.url
        self._items = config.items

    async def events(self, start: datetime, end: datetime) -> FeedEvents:
        params = [("since", _rfc3339(start)), ("until", _rfc3339(end))]
        items = _list_at(await self._get_json(self._url, params), self._items)
        events: list[ChangeEvent] = []
        bad = 0
        for item in items:
            event = self._event(item)
            if event is None:
                bad += 1
            elif start <= event.at <= end:
                events.append(event)
        return FeedEvents(events, _skipped(bad, "item"))

    def _event(self, item: object) -> FeedEvent | None:
        if not isinstance(item, dict):
            return None
        data = {**item, "source": self.name}
        if isinstance(data.get("id"), int) and not isinstance(data["id"], bool):
            data["id"] = str(data["id"])
        elif "id" not in data:
            canonical = json.dumps(item, sort_keys=True, default=str).encode()
            data["id"] = hashlib.sha256(canonical).hexdigest()[:32]
        if isinstance(data.get("summary"), str):
            data["summary"] = _summary(data["summary"])
        try:
            return FeedEvent.model_validate(data)
        except ValidationError:
            return None


def _list_at(body: Any, path: str) -> list[Any]:
    node = body
    for key in path.split(".") if path else ():
        if not isinstance(node, dict):
            raise EnrichmentError(f'expected an object with "{path}", got {_kind(node)}')
        if key not in node:
            raise EnrichmentError(f'no "{path}" in the response')
        node = node[key]
    if not isinstance(node, list):
        where = f'at "{path}"' if path else "at the top level"
        raise EnrichmentError(f"expected a list {where}, got {_kind(node)}")
    return node


class GrafanaFeed(_HttpFeed):
    """Grafana annotations as change events.

    Grafana's HTTP API, "Find Annotations"
    (https://grafana.com/docs/grafana/latest/developers/http_api/annotations/)::

        GET /api/annotations?from=<epoch ms>&to=<epoch ms>&tags=a&tags=b&limit=100

    ``tags`` given more than once is an AND filter (``matchAny=false``, the default of
    ``ItemQuery.MatchAny`` in pkg/services/annotations), ``type=annotation`` leaves out
    alert-state annotations, ``limit`` defaults to 100 and the newest come first. The
    answer is a JSON list of objects with ``id``, ``time`` and ``timeEnd`` (epoch ms),
    ``text``, ``tags`` (and dashboard/panel/user fields not used here). A region
    annotation counts at its ``time``.
    """

    def __init__(self, config: GrafanaFeedConfig, *, attempts: int = 3, backoff: float = 0.05):
        token = config.token.get_secret_value() if config.token else None
        super().__init__(
            config.name,
            headers={"Authorization": f"Bearer {token}"} if token else {},
            timeout=config.timeout,
            ca_file=str(config.ca_file) if config.ca_file else None,
            attempts=attempts,
            backoff=backoff,
        )
        self._url = config.url.rstrip("/") + "/api/annotations"
        self._config = config

    async def events(self, start: datetime, end: datetime) -> FeedEvents:
        config = self._config
        params = [
            ("from", str(_ms(start))),
            ("to", str(_ms(end))),
            ("type", "annotation"),
            ("matchAny", "false"),
            ("limit", str(config.limit)),
            *(("tags", tag) for tag in config.tags),
        ]
        body = await self._get_json(self._url, params)
        if not isinstance(body, list):
            raise EnrichmentError(f"expected a list of annotations, got {_kind(body)}")
        events: list[ChangeEvent] = []
        bad = 0
        for item in body:
            found = self._events(item)
            if found is None:
                bad += 1
            events.extend(event for event in found or () if start <= event.at <= end)
        notes = _skipped(bad, "annotation")
        if len(body) >= config.limit:
            notes.append(f"{len(body)} annotations, the limit: older ones may be missing")
        return FeedEvents(events, notes)

    def _events(self, item: object) -> list[FeedEvent] | None:
        """The events of one annotation: none without a service tag, None if malformed."""
        if not isinstance(item, dict):
            return None
        ident, time, tags = item.get("id"), item.get("time"), item.get("tags")
        if (
            not isinstance(ident, int)
            or isinstance(ident, bool)
            or not isinstance(time, int | float)
            or isinstance(time, bool)
            or not isinstance(tags, list | None)
        ):
            return None
        tags = [tag for tag in tags or () if isinstance(tag, str)]
        services = list(dict.fromkeys(_tagged(tags, self._config.service_tag_prefix)))
        common = {
            "type": next(_tagged(tags, self._config.type_tag_prefix), "annotation"),
            "version": next(_tagged(tags, self._config.version_tag_prefix), None),
            "summary": _summary(item.get("text")) or None,
            "source": self.name,
        }
        try:
            at = datetime.fromtimestamp(time / 1000, UTC)
            return [
                FeedEvent.model_validate(
                    {
                        **common,
                        "id": str(ident) if len(services) == 1 else f"{ident}:{service}",
                        "service": service,
                        "at": at,
                    }
                )
                for service in services
            ]
        except (ValidationError, ValueError, OverflowError, OSError):
            return None


def _tagged(tags: Iterable[str], prefix: str) -> Iterator[str]:
    for tag in tags:
        if tag.startswith(prefix) and (value := tag[len(prefix) :].strip()):
            yield value


def build_feeds(
    configs: Sequence[FeedConfig], *, attempts: int = 3, backoff: float = 0.05
) -> list[Feed]:
    """One client per configured feed, in config order; close them with ``aclose``.

    ``attempts`` requests at most per fetch; ``backoff`` (seconds) is the first pause
    between them and the spread of their jitter.
    """
    feeds: list[Feed] = []
    for config in configs:
        if isinstance(config, JsonFeedConfig):
            feeds.append(JsonFeed(config, attempts=attempts, backoff=backoff))
        else:
            feeds.append(GrafanaFeed(config, attempts=attempts, backoff=backoff))
    return feeds
