"""One replay: Alertmanager's batches for the firings, the receiver's decisions on them,
and the figures. The firings are read once and replayed against each journeys file."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import anyio

from receiver.enrich.enricher import Enricher
from receiver.replay.batches import Route, plan
from receiver.replay.drive import drive
from receiver.replay.history import Firing
from receiver.replay.report import Report, summarize
from receiver.replay.scratch import MEMORY
from receiver.settings import Settings, ms

T = TypeVar("T")
_STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
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
    settings: Settings,
    firings: list[Firing],
    route: Route,
    since_ms: int,
    until_ms: int,
    *,
    store_url: str = MEMORY,
    context: Callable[[Settings], Enricher] | None = None,
) -> Report:
    """Replay ``firings`` under ``settings``. Decisions run until the receiver's group_wait
    after ``until_ms``, so an incident the window's last alerts opened is still told.

    ``store_url``: the store it runs on (``scratch.py``); ``context``: builds the enricher
    that reads each decision's KPIs at its virtual time (``context.py``), else none."""
    sent = plan(firings, route, until_ms)
    replayed = await drive(
        settings,
        sent.notifications,
        until_ms + settings.timers.group_wait_ms,
        store_url=store_url,
        enricher=context(settings) if context is not None else None,
    )
    return summarize(settings, firings, sent, replayed, since_ms, until_ms)


def interruptible(main: Callable[[], Awaitable[T]]) -> T:
    """``main()`` in an event loop of its own; Ctrl-C (and SIGTERM, SIGHUP: a CI job
    cancelled, ``timeout``, a closed terminal; each unless the replay was started to ignore
    it) cancels it and raises ``KeyboardInterrupt`` once it has wound down (a ``--store``'s
    keys deleted, the private redis-server stopped and its directory removed).

    Cancelled through an anyio cancel scope, which cancels every await until the replay has
    left it, not asyncio's single ``Task.cancel()``: a Redis client's timeout wrapper
    (``asyncio.wait_for`` before Python 3.12) may swallow that one, and the replay would run
    on to its end. Further Ctrl-Cs while it winds down are ignored.
    """

    async def body() -> list[T]:
        done: list[T] = []
        interrupted = False
        scope = anyio.CancelScope()
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                nonlocal interrupted
                # A signal the replay was started to ignore stays ignored (``nohup``: a
                # closed terminal must not stop it; ``&`` in a script: nor a Ctrl-C).
                heard = [s for s in _STOPS if signal.getsignal(s) is not signal.SIG_IGN]
                with anyio.open_signal_receiver(*heard) as signals:
                    async for _ in signals:
                        interrupted = True
                        scope.cancel()

            tg.start_soon(watch)
            with scope:
                done.append(await main())
            tg.cancel_scope.cancel()
        if interrupted:
            raise KeyboardInterrupt
        return done

    return anyio.run(body)[0]
