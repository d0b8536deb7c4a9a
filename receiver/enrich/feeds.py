"""Change events pulled from other systems when an incident is enriched.

A feed is asked for the changes in a time window and answers a list of ``ChangeEvent``.
What a feed answers is untrusted: items that are not change events are skipped and
counted, and a response that is not what the feed's API promises (not JSON, not a list)
fails the whole fetch with a short ``EnrichmentError`` reason. Reasons never carry a
token, a header or the URL (which may hold credentials).

The feeds are HTTP APIs sharing ``http_feed.HttpFeed`` (its retries and deadline):
``json_feed.JsonFeed`` and ``grafana.GrafanaFeed``, built from the config by
``feed_registry.build_feeds``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol

from pydantic import ConfigDict

from receiver.events import ChangeEvent


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
