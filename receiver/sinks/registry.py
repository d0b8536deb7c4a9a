"""Build the configured sinks. Adding a sink = its module, its config model in
``config/sinks.py`` and one line in ``_BUILDERS`` (a test checks the two agree)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from receiver.config import ReceiverConfig
from receiver.metrics import Metrics
from receiver.retired import Closable
from receiver.sinks import Shared, Sink
from receiver.sinks.jira import JiraSink
from receiver.sinks.log import LogSink
from receiver.sinks.pagerduty import PagerDutySink
from receiver.sinks.slack import SlackSink
from receiver.store.cache import Cache

Builder = Callable[[Any, str | None, Shared], Sink]


def _alone(sink: Callable[[Any, str | None], Sink]) -> Builder:
    """A sink built from its config section and the external URL only."""
    return lambda config, external_url, shared: sink(config, external_url)


_BUILDERS: dict[str, Builder] = {
    "log": _alone(LogSink),
    "pagerduty": PagerDutySink,
    "slack": SlackSink,
    "jira": JiraSink,
}


def names() -> frozenset[str]:
    return frozenset(_BUILDERS)


def build(
    config: ReceiverConfig,
    *,
    cache: Cache | None = None,
    metrics: Metrics | None = None,
    made: list[Closable] | None = None,
) -> dict[str, Sink]:
    """One sink per configured and enabled entry of ``sinks``; clients are built once.
    ``cache`` (the store's, seen by every replica) and ``metrics`` go to the sinks that
    use them; without them those sinks keep to themselves. ``made``: each sink as it is
    built, for the caller to close should a later one fail to build."""
    shared = Shared(cache=cache, metrics=metrics, retention_ms=round(config.store.retention * 1000))
    made = [] if made is None else made
    sinks: dict[str, Sink] = {}
    for name in config.sinks.enabled():
        sinks[name] = _BUILDERS[name](_section(config, name), config.server.external_url, shared)
        made.append(sinks[name])
    return sinks


def _section(config: ReceiverConfig, name: str) -> Any:
    section = getattr(config.sinks, name)
    if name == "slack" and section.buttons is None:
        # Buttons by default once someone listens for them: the signing secret says so.
        listening = bool(config.inbound.slack.all_secrets())
        section = section.model_copy(update={"buttons": listening})
    return section
