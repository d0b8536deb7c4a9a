"""One replay: Alertmanager's batches for the firings, the receiver's decisions on them,
and the figures. The firings are read once and replayed against each journeys file."""

from __future__ import annotations

from collections.abc import Sequence

from receiver.replay.batches import Route, plan
from receiver.replay.drive import drive
from receiver.replay.history import Firing
from receiver.replay.report import Report, summarize
from receiver.settings import Settings, ms

DEFAULT_REPEAT_INTERVAL_S = 4 * 3600.0
"""Alertmanager's own default ``repeat_interval``."""


def route_for(
    settings: Settings,
    group_by: Sequence[str],
    group_wait_s: float | None = None,
    group_interval_s: float | None = None,
    repeat_interval_s: float = DEFAULT_REPEAT_INTERVAL_S,
) -> Route:
    """Alertmanager's route: ``group_by`` as given, its timers the receiver's ``grouping``
    ones unless given (deploy/alertmanager.yml keeps the two alike)."""
    grouping = settings.config.grouping
    return Route(
        group_by=tuple(group_by),
        group_wait_ms=ms(grouping.group_wait if group_wait_s is None else group_wait_s),
        group_interval_ms=ms(
            grouping.group_interval if group_interval_s is None else group_interval_s
        ),
        repeat_interval_ms=ms(repeat_interval_s),
    )


async def replay(
    settings: Settings, firings: list[Firing], route: Route, since_ms: int, until_ms: int
) -> Report:
    """Replay ``firings`` under ``settings``. Decisions run until the receiver's group_wait
    after ``until_ms``, so an incident the window's last alerts opened is still told."""
    sent = plan(firings, route, until_ms)
    replayed = await drive(settings, sent.notifications, until_ms + settings.timers.group_wait_ms)
    return summarize(settings, firings, sent, replayed, since_ms, until_ms)
