"""Build the configured sinks. Adding a sink = its module, its config model in
``config/sinks.py`` and one line in ``_BUILDERS`` (a test checks the two agree)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from receiver.config import ReceiverConfig
from receiver.sinks import Sink
from receiver.sinks.jira import JiraSink
from receiver.sinks.log import LogSink
from receiver.sinks.pagerduty import PagerDutySink
from receiver.sinks.slack import SlackSink

_BUILDERS: dict[str, Callable[[Any, str | None], Sink]] = {
    "log": LogSink,
    "pagerduty": PagerDutySink,
    "slack": SlackSink,
    "jira": JiraSink,
}


def names() -> frozenset[str]:
    return frozenset(_BUILDERS)


def build(config: ReceiverConfig) -> dict[str, Sink]:
    """One sink per configured and enabled entry of ``sinks``; clients are built once."""
    return {
        name: _BUILDERS[name](getattr(config.sinks, name), config.server.external_url)
        for name in config.sinks.enabled()
    }
