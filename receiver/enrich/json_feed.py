"""A feed of change events from any HTTP endpoint answering them as JSON."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from functools import partial
from typing import Any

from pydantic import ValidationError

from receiver.config.feeds import JsonFeedConfig
from receiver.enrich import EnrichmentError
from receiver.enrich.feeds import FeedEvent, FeedEvents
from receiver.enrich.http_feed import HttpFeed, kind, skipped, summary
from receiver.events import ChangeEvent


class JsonFeed(HttpFeed):
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
            max_body_bytes=config.max_body_bytes,
            attempts=attempts,
            backoff=backoff,
        )
        self._url = config.url
        self._items = config.items

    async def events(self, start: datetime, end: datetime) -> FeedEvents:
        params = [("since", _rfc3339(start)), ("until", _rfc3339(end))]
        items = _list_at(await self._get_json(self._url, params), self._items)
        # Validating items costs microseconds each, and an endpoint that ignores since and
        # until answers its whole history: on a worker thread, so that the caller's
        # deadline holds and the event loop keeps serving.
        return await self.off_loop(partial(self._read, items, start, end))

    def _read(self, items: list[Any], start: datetime, end: datetime) -> FeedEvents:
        events: list[ChangeEvent] = []
        bad = 0
        for item in items:
            event = self._event(item)
            if event is None:
                bad += 1
            elif start <= event.at <= end:
                events.append(event)
        return FeedEvents(events, skipped(bad, "item"))

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
            data["summary"] = summary(data["summary"])
        try:
            return FeedEvent.model_validate(data)
        except ValidationError:
            return None


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _list_at(body: Any, path: str) -> list[Any]:
    node = body
    for key in path.split(".") if path else ():
        if not isinstance(node, dict):
            raise EnrichmentError(f'expected an object with "{path}", got {kind(node)}')
        if key not in node:
            raise EnrichmentError(f'no "{path}" in the response')
        node = node[key]
    if not isinstance(node, list):
        where = f'at "{path}"' if path else "at the top level"
        raise EnrichmentError(f"expected a list {where}, got {kind(node)}")
    return node
