"""A feed of change events from Grafana annotations, one event per service tagged."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from pydantic import ValidationError

from receiver.config.feeds import GrafanaFeedConfig
from receiver.enrich import EnrichmentError
from receiver.enrich.feeds import FeedEvent, FeedEvents
from receiver.enrich.http_feed import HttpFeed, kind, skipped, summary
from receiver.events import ChangeEvent


class GrafanaFeed(HttpFeed):
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
            max_body_bytes=config.max_body_bytes,
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
            raise EnrichmentError(f"expected a list of annotations, got {kind(body)}")
        events: list[ChangeEvent] = []
        bad = 0
        for item in body:
            found = self._events(item)
            if found is None:
                bad += 1
            events.extend(event for event in found or () if start <= event.at <= end)
        notes = skipped(bad, "annotation")
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
            "environment": next(_tagged(tags, self._config.environment_tag_prefix), None),
            "region": next(_tagged(tags, self._config.region_tag_prefix), None),
            "summary": summary(item.get("text")) or None,
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


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _tagged(tags: Iterable[str], prefix: str) -> Iterator[str]:
    for tag in tags:
        if tag.startswith(prefix) and (value := tag[len(prefix) :].strip()):
            yield value
