"""Journey SLOs: the minutes of a stats window each journey spent degraded, and how that
compares with the journey's objective (``journeys.yaml`` ``slo: {degraded_at, objective}``).

A journey is degraded while one of its incidents is open at its ``degraded_at`` priority
or above, or while a KPI of one of its open incidents is outside its band. What the
receiver knows of that is on each incident's timeline (``receiver/lifecycle.py`` and
``receiver/enrich/enricher.py`` write it):

- an episode of an incident runs from its start (Alertmanager's startsAt) or a
  ``reopened`` entry to a ``resolved`` entry, or to now while it is open; once it was
  reopened, the first episode runs from its opening (the incident's ``created_at``), as
  the start it stores is its latest episode's;
- its priority is the one each ``notified`` entry ("open P2 sent to …") told people: the
  first notification's priority holds from the episode's start (the alerts were already
  firing; group_wait only delayed the decision), each later one from its own time. So a
  raise counts from when it was sent (at once) and a lowering from when it was sent (up
  to group_interval after it was assessed): the figures follow what people were told;
- an episode nobody was told of (a blip: every alert gone within group_wait) is never
  degraded, whatever its priority;
- a ``kpi`` entry is a KPI leaving its band, a ``kpi_ok`` entry one coming back: KPI time
  runs from the first KPI leaving to the moment none is out any more, or to the episode's
  end. A KPI still out when an episode ended is out from the reopen on, until its
  ``kpi_ok`` (the enricher notes a KPI leaving only when the incident had it in its
  band, so a reopen's looks write no new ``kpi`` for it). (A timeline written before
  returns were noted has none: there KPI time runs to the episode's end, or, for the
  latest episode, to the last enrichment, ``enriched_at``, once that found every KPI back
  in its band.) The receiver reads KPIs only while an
  incident is open, so KPI time is only ever known inside an incident's episodes.

An incident read without its timeline (or whose timeline holds no notification, e.g. its
middle was dropped past ``TIMELINE_CAP``) falls back to its state: from its start to its
last resolve (or now), when it was notified and its last priority is at or above the
threshold or a KPI is bad now.

The spans of all the journey's incidents are clipped to the window and merged, so that
overlapping incidents count once. ``degraded_spans`` and ``union_ms`` are pure; times are
milliseconds on the receiver's (injectable) clock.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from receiver.config.fields import PRIORITIES
from receiver.store.base import GroupStore
from receiver.store.records import IncidentState

Span = tuple[int, int]

DEFAULT_DEGRADED_AT = "P3"
# What the lifecycle writes when it notifies: "<kind> <priority> sent to <sinks>…". A
# resolve notification ends the episode, so only these kinds set a priority.
_NOTIFIED = re.compile(r"^(?:open|reopen|update) (P[1-5]) sent\b")
_CONCURRENT_READS = 32
# The enricher's entries (receiver/enrich/enricher.py ``apply``) for a KPI leaving its band
# and coming back: "KPI conversion -41.0% vs last week", "KPI conversion back in its
# band, -3.0% vs last week"; from a zero baseline "KPI errors 0 → 30 vs last week". The
# name is what comes before the figures.
_KPI_LEFT = re.compile(r"^KPI (.+) (?:[+-][0-9.]+%|\S+ → \S+) vs ")
_KPI_BACK = re.compile(r"^KPI (.+) back in its band, ")


class JourneySlo(BaseModel):
    """A journey's SLO figures over the window: its threshold, its objective (percent of
    the window not degraded; None when ``journeys.yaml`` sets none), the share of the
    window it was not degraded, and how much of its error budget (100 − objective percent
    of the window) is left, negative once overspent."""

    model_config = ConfigDict(frozen=True)

    degraded_at: str
    objective_pct: float | None
    attainment_pct: float
    budget_remaining_pct: float | None


@dataclass
class _Episode:
    start: int
    end: int | None = None
    told: list[tuple[int, str]] = field(default_factory=list)
    kpi_spans: list[Span] = field(default_factory=list)
    # Since when a KPI has been out of its band (None: none is), and which ones are.
    kpi_bad_at: int | None = None
    kpis_bad: set[str] = field(default_factory=set)

    def kpi_left(self, at: int, name: str) -> None:
        if self.kpi_bad_at is None:
            self.kpi_bad_at = at
        self.kpis_bad.add(name)

    def kpi_back(self, at: int, name: str) -> None:
        self.kpis_bad.discard(name)
        if not self.kpis_bad and self.kpi_bad_at is not None:
            self.kpi_spans.append((self.kpi_bad_at, at))
            self.kpi_bad_at = None


def at_or_above(priority: str | None, threshold: str) -> bool:
    """P1 is the highest: P2 is at or above P3."""
    if priority not in PRIORITIES:
        return False
    return PRIORITIES.index(priority) <= PRIORITIES.index(threshold)


def degraded_spans(state: IncidentState, degraded_at: str, now_ms: int) -> list[Span]:
    """The times ``state``'s incident kept its journey degraded (unmerged, unclipped)."""
    episodes = _episodes(state)
    if not any(e.told for e in episodes):
        return _from_state(state, degraded_at, now_ms)
    spans: list[Span] = []
    for index, episode in enumerate(episodes):
        if not episode.told:
            continue  # a blip: nobody was told
        end = now_ms if episode.end is None else episode.end
        starts = [episode.start, *(at for at, _ in episode.told[1:])]
        ends = [*starts[1:], end]
        spans += [
            (s, e)
            for s, e, (_, p) in zip(starts, ends, episode.told, strict=True)
            if at_or_above(p, degraded_at)
        ]
        spans += episode.kpi_spans
        if episode.kpi_bad_at is not None:
            # Still out at the episode's end, as far as the timeline says; one written before
            # KPIs returning were noted may have had the latest look find them all back in
            # band: they returned by then.
            back = state.enriched_at
            recovered = (
                index == len(episodes) - 1
                and back is not None
                and back >= episode.kpi_bad_at
                and bool(state.kpis)
                and not any(k.bad for k in state.kpis)
            )
            spans.append(
                (episode.kpi_bad_at, min(end, back) if recovered and back is not None else end)
            )
    return [(s, e) for s, e in spans if e > s]


def _episodes(state: IncidentState) -> list[_Episode]:
    episodes: list[_Episode] = []
    # ``started`` is the latest episode's start (a reopen sets it anew): once there was a
    # reopen, the first episode starts when the incident was opened.
    reopened = any(entry.kind == "reopened" for entry in state.timeline)
    current: _Episode | None = _Episode(start=state.created_at if reopened else state.started)
    for entry in sorted(state.timeline, key=lambda e: e.at):
        if entry.kind == "reopened":
            if current is None:
                current = _Episode(start=entry.at)
                ended = episodes[-1] if episodes else None
                if ended is not None and ended.kpis_bad:
                    # Out of band as the last episode ended: the enricher notes a KPI
                    # leaving only when the incident had it in its band, so one still
                    # out is out from the reopen on, until its ``kpi_ok``.
                    current.kpis_bad = set(ended.kpis_bad)
                    current.kpi_bad_at = entry.at
        elif current is None:
            continue
        elif entry.kind == "notified":
            told = _NOTIFIED.match(entry.text)
            if told:
                current.told.append((entry.at, told.group(1)))
        elif entry.kind == "kpi":
            left = _KPI_LEFT.match(entry.text)
            current.kpi_left(entry.at, left.group(1) if left else entry.text)
        elif entry.kind == "kpi_ok":
            back = _KPI_BACK.match(entry.text)
            current.kpi_back(entry.at, back.group(1) if back else entry.text)
        elif entry.kind == "resolved":
            current.end = entry.at
            episodes.append(current)
            current = None
    if current is not None:
        # No resolve on the timeline: open now, or its resolve fell out of the timeline.
        current.end = state.resolved_at if state.status == "resolved" else None
        if current.end is None or current.end > current.start:
            episodes.append(current)
    return episodes


def _from_state(state: IncidentState, degraded_at: str, now_ms: int) -> list[Span]:
    if state.notified_at is None:
        return []  # a blip, or not decided yet (within group_wait)
    if not at_or_above(state.priority, degraded_at) and not any(k.bad for k in state.kpis):
        return []
    end = now_ms if state.resolved_at is None or state.status == "open" else state.resolved_at
    return [(state.started, end)] if end > state.started else []


def union_ms(spans: Iterable[Span], since_ms: int, until_ms: int) -> int:
    """How much of ``[since_ms, until_ms]`` the ``spans`` cover, overlaps counted once."""
    total = 0
    covered_to = since_ms
    for start, end in sorted(spans):
        start, end = max(start, covered_to), min(end, until_ms)
        if end > start:
            total += end - start
            covered_to = end
    return total


def journey_slo(
    degraded: int, since_ms: int, until_ms: int, degraded_at: str, objective: float | None
) -> JourneySlo:
    """The SLO figures of ``degraded`` milliseconds in the window."""
    window = max(until_ms - since_ms, 1)
    budget = None if objective is None else (100 - objective) / 100 * window
    return JourneySlo(
        degraded_at=degraded_at,
        objective_pct=objective,
        # Rounded down to 0.001 (in integers, so exactly): an attainment rounded up to
        # the objective would read as met while the budget is overspent.
        attainment_pct=max(0, window - degraded) * 100_000 // window / 1000,
        budget_remaining_pct=None if budget is None else round(100 * (1 - degraded / budget), 1),
    )


def overlaps(state: IncidentState, since_ms: int) -> bool:
    """Whether an incident created before the window may have kept its journey degraded
    in it: still open, or last resolved inside it (a notified one only)."""
    if state.notified_at is None:
        return False
    return state.status == "open" or (state.resolved_at or 0) > since_ms


async def with_timelines(store: GroupStore, states: Sequence[IncidentState]) -> list[IncidentState]:
    """``states`` with their timelines (the store's index reads the state documents only).
    Only a notified incident's is read: a blip's, or an undecided one's, cannot count."""
    wanted = [s for s in states if s.notified_at is not None]
    timelines: dict[str, IncidentState] = {}
    for start in range(0, len(wanted), _CONCURRENT_READS):
        chunk = wanted[start : start + _CONCURRENT_READS]
        loaded = await asyncio.gather(*(store.load(s.id) for s in chunk))
        timelines.update(
            {s.id: found.state for s, found in zip(chunk, loaded, strict=True) if found}
        )
    return [
        s.model_copy(update={"timeline": timelines[s.id].timeline}) if s.id in timelines else s
        for s in states
    ]
