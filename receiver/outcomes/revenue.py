"""Revenue at risk over an incident's time. Pure.

Each look at the KPIs gives a figure per minute: the largest ``revenue_at_risk_per_min``
of its KPIs (they measure one loss from several sides, so they are not added up). The
count runs while people are told of an episode, from its start to its resolve:

- its first notification (``lifecycle.advance``) counts the figure of the look made for
  it from the episode's start (Alertmanager's ``startsAt``), when its alerts began;
- each later look (``enrich.enricher.apply``, at most every group_interval while open)
  counts the last figure from the last count to now, then holds its own;
- its resolve (``lifecycle.advance``) counts the last figure up to then.

A blip (every alert gone within group_wait) is never counted, nor the time between a
resolve and a reopen. The incident keeps what is counted (``revenue_at_risk``, up to
``revenue_counted_to``), so a later look that finds the KPIs back in their band (the one
made at the resolve, usually) takes nothing back.
"""

from __future__ import annotations

from collections.abc import Sequence

from receiver.store.records import IncidentState, KpiRecord

_MINUTE_MS = 60_000


def per_min(kpis: Sequence[KpiRecord]) -> float | None:
    """The largest revenue-at-risk figure of ``kpis``; None when none carries one."""
    figures = [k.revenue_at_risk_per_min for k in kpis if k.revenue_at_risk_per_min is not None]
    return max(figures) if figures else None


def at_risk(state: IncidentState, until_ms: int) -> float | None:
    """The revenue at risk over the incident's time, counted to ``until_ms`` while an
    episode people were told of is open; None when no count had a figure."""
    rate = per_min(state.kpis)
    counted_to = state.revenue_counted_to
    if _stored_before(state):
        # Counted as the version that wrote it did: the last figure over its whole time.
        end = until_ms if state.resolved_at is None else state.resolved_at
        return None if rate is None else rate * max(0, end - state.started) / _MINUTE_MS
    if rate is None or counted_to is None or not _running(state):
        return state.revenue_at_risk
    return (state.revenue_at_risk or 0.0) + rate * max(0, until_ms - counted_to) / _MINUTE_MS


def count(state: IncidentState, kpis: Sequence[KpiRecord], now_ms: int) -> tuple[float | None, int]:
    """``revenue_at_risk`` and ``revenue_counted_to`` once ``kpis`` hold from ``now_ms``
    on: the last figure counted up to now, or, where the count is not running (an
    episode's first notification), the new figure from the episode's start."""
    counted = at_risk(state, now_ms)
    rate = per_min(kpis)
    if rate is not None and not _running(state) and not _stored_before(state):
        # Not from before the last episode's count ended: a reopen's alert may say it
        # started before that resolve.
        since = max(state.started, state.revenue_counted_to or state.started)
        counted = (counted or 0.0) + rate * max(0, now_ms - since) / _MINUTE_MS
    return counted, now_ms


def closed(state: IncidentState, now_ms: int) -> tuple[float | None, int | None]:
    """``revenue_at_risk`` and ``revenue_counted_to`` as the episode resolves at
    ``now_ms``: the last figure counted to the resolve, and no further."""
    if state.revenue_counted_to is None and not _stored_before(state):
        return state.revenue_at_risk, None
    return at_risk(state, now_ms), now_ms


def _stored_before(state: IncidentState) -> bool:
    """Told of, yet never counted: written by a version that kept no count (every told
    episode's first notification starts one now). It is read as that version read it,
    until its next count."""
    return (
        state.revenue_counted_to is None
        and state.revenue_at_risk is None
        and state.notified_at is not None
    )


def _running(state: IncidentState) -> bool:
    """Whether the last figure still counts: the incident is open, its episode told (not
    ``pending`` its first notification) and counted from (a reopen sets
    ``first_firing_at`` after the last episode's resolve, or at it: a replica whose clock
    is behind the resolver's reopens it at the same millisecond, see ingest.lua)."""
    counted_to = state.revenue_counted_to
    return (
        state.status == "open"
        and state.pending is None
        and counted_to is not None
        and counted_to >= state.first_firing_at
    )
