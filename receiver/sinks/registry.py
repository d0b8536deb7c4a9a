"""Build the configured sinks. Adding a sink = its module plus one line in ``_BUILDERS``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from receiver.sinks import Sink
from receiver.sinks.log import LogSink

_BUILDERS: dict[str, Callable[[Any], Sink]] = {
    "log": lambda config: LogSink(),
}


def names() -> frozenset[str]:
    return frozenset(_BUILDERS)


def build(configs: dict[str, Any]) -> dict[str, Sink]:
    """One sink per configured entry; a disabled entry is left out."""
    return {
        name: _BUILDERS[name](cfg)
        for name, cfg in configs.items()
        if cfg is not None and getattr(cfg, "enabled", True)
    }
