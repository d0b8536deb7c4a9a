"""Build the configured feeds: a ``JsonFeed`` or a ``GrafanaFeed`` for each.

Apart from ``feeds.py`` so that the feeds' modules can import ``FeedEvent`` from there
without an import cycle.
"""

from __future__ import annotations

from collections.abc import Sequence

from receiver.config.feeds import FeedConfig, JsonFeedConfig
from receiver.enrich.feeds import Feed
from receiver.enrich.grafana import GrafanaFeed
from receiver.enrich.json_feed import JsonFeed
from receiver.retired import Closable


def build_feeds(
    configs: Sequence[FeedConfig],
    *,
    attempts: int = 3,
    backoff: float = 0.05,
    made: list[Closable] | None = None,
) -> list[Feed]:
    """One client per configured feed, in config order; close them with ``aclose``.

    ``attempts`` requests at most per fetch; ``backoff`` (seconds) is the first pause
    between them and the spread of their jitter. ``made``: each feed as it is built, for
    the caller to close should a later one fail to build.
    """
    feeds: list[Feed] = []
    made = [] if made is None else made
    for config in configs:
        if isinstance(config, JsonFeedConfig):
            feeds.append(JsonFeed(config, attempts=attempts, backoff=backoff))
        else:
            feeds.append(GrafanaFeed(config, attempts=attempts, backoff=backoff))
        made.append(feeds[-1])
    return feeds
