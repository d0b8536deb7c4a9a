"""The figures behind ``GET /api/v1/stats``: signal quality, response and business impact,
rolled up from the incidents the store keeps (SPEC "Learning from outcomes").

``compute`` is pure: the incidents created in a window, each with the alertnames it held,
and the window's bounds in; the figures out. ``read_stats`` reads those from the store.
Reading is the costly part (every incident of the window and its alerts), so an answer is
kept a minute in the cache every replica shares (``store.cache``): ``cached_stats`` answers
the API from it, and ``refresh_metrics``, once a minute on every replica, has one replica
(the holder of that minute's lease) compute the default window for all journeys while
every replica sets the ``journey_receiver_stats_*`` gauges (``publish``) from that one
answer. docs/operating.md ("Figures: GET /api/v1/stats") defines each figure in words;
this module is the same in code. ``minutes_degraded`` and ``slo`` of each journey come
from ``slo.py``: they also count incidents created before the window that were still
open in it (read up to ``CARRY_IN_MS`` back), and read each notified incident's timeline.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple
from weakref import WeakKeyDictionary

from prometheus_client import Gauge
from pydantic import BaseModel, ConfigDict, ValidationError

from receiver.causes import change_of, leading
from receiver.config.fields import parse_duration, show
from receiver.errors import PayloadError
from receiver.incident import response_times, rfc3339
from receiver.metrics import Metrics
from receiver.outcomes.slo import (
    DEFAULT_DEGRADED_AT,
    JourneySlo,
    degraded_ms,
    journey_slo,
    overlaps,
    with_timelines,
)
from receiver.store.base import GroupStore
from receiver.store.records import IncidentState

if TYPE_CHECKING:
    from receiver.app import Receiver

DEFAULT_WINDOW = "7d"
MAX_WINDOW_S = 90 * 86_400
# Answers kept in ``store.cache`` under CACHE_NAMESPACE, one field per (window, journey).
# One serves the same question again while its ``until`` is less than FRESH_MS behind the
# receiver's clock; the store drops it after CACHE_TTL_MS, so that a replica whose turn
# to compute was lost still has the last answer to publish.
CACHE_NAMESPACE = "figures"
FRESH_MS = 60_000
CACHE_TTL_MS = 3 * 60_000
# The periodic refresh: one lease per REFRESH_SLOT_MS of the receiver's clock, kept two
# slots so that a replica whose clock lags cannot take the same slot again.
REFRESH_SLOT_MS = 60_000
NOISY_CAP = 10
# How far before the window an incident may have been created and still count towards
# the minutes degraded in it (while open in the window): a week of an incident left open.
CARRY_IN_MS = 7 * 86_400_000
# Reading bounds: the window's newest INCIDENTS_READ incidents, and an incident's alertnames
# from ALERTS_READ of its alerts (firing first, then the latest to change).
INCIDENTS_READ = 20_000
ALERTS_READ = 500
_CONCURRENT_READS = 32
_PARAMS = ("window", "journey")


class StatsQuery(NamedTuple):
    window: str
    window_ms: int
    journey: str | None


class SloPolicy(NamedTuple):
    """A journey's ``slo`` of journeys.yaml, as the figures use it."""

    degraded_at: str = DEFAULT_DEGRADED_AT
    objective: float | None = None


class Outcome(NamedTuple):
    """One incident as the figures read it: its state and the alertnames of its alerts."""

    state: IncidentState
    alertnames: frozenset[str]


class _Figure(BaseModel):
    model_config = ConfigDict(frozen=True)


class NoisyAlertname(_Figure):
    alertname: str
    incidents: int
    not_useful: int
    blips: int


class Signal(_Figure):
    alerts: int
    incidents: int
    alerts_per_incident: float | None
    blips: int
    not_useful_pct: float | None
    noisy_alertnames: list[NoisyAlertname]


class ResponseFigures(_Figure):
    mtta_s_p50: float | None
    mttr_s_p50: float | None
    ack_pct: float | None


class Business(_Figure):
    revenue_quantified_pct: float | None
    revenue_at_risk_total: float | None
    change_to_detection_s_p50: float | None


class ActionFigures(_Figure):
    """Action runs decided in the window's incidents (``actions_run``), by status, and the
    verdicts of their outcome windows; ``helped_pct`` of the runs with a verdict."""

    ran: int
    failed: int
    refused: int
    skipped: int
    dry_run: int
    helped: int
    no_change: int
    worse: int
    helped_pct: float | None


class Figures(_Figure):
    signal: Signal
    response: ResponseFigures
    business: Business
    actions: ActionFigures


class JourneyFigures(Figures):
    minutes_degraded: float
    slo: JourneySlo


class Stats(Figures):
    """All journeys together (or the one asked for), then each journey on its own."""

    window: str
    since: str
    until: str
    journey: str | None
    journeys: dict[str, JourneyFigures]


def parse_query(params: Mapping[str, str]) -> StatsQuery:
    """``?window=7d&journey=``; an empty ``journey`` means all journeys."""
    unknown = sorted(set(params) - set(_PARAMS))
    if unknown:
        raise PayloadError(
            422,
            f"unknown query parameter {show(unknown[0])}; this endpoint takes window and journey",
            [{"field": name, "reason": "unknown query parameter"} for name in unknown],
        )
    window = params.get("window", DEFAULT_WINDOW).strip()
    try:
        seconds = parse_duration(window)
    except ValueError as exc:
        raise _bad_window(str(exc)) from exc
    if seconds <= 0:
        raise _bad_window(f"{show(window)} must be longer than 0s")
    if seconds > MAX_WINDOW_S:
        raise _bad_window(f"{show(window)} is longer than the maximum 90d")
    return StatsQuery(window, round(seconds * 1000), params.get("journey") or None)


def _bad_window(reason: str) -> PayloadError:
    return PayloadError(422, f"window: {reason}", [{"field": "window", "reason": reason}])


def compute(
    outcomes: Sequence[Outcome],
    since_ms: int,
    until_ms: int,
    journeys: Sequence[str],
    *,
    window: str = DEFAULT_WINDOW,
    journey: str | None = None,
    slos: Mapping[str, SloPolicy] | None = None,
    carried: Sequence[IncidentState] = (),
) -> Stats:
    """The figures of ``outcomes`` (the incidents created in ``[since_ms, until_ms]``);
    ``journeys`` lists the journeys to show even without incidents, in their order.
    ``carried`` are incidents created before the window that were open in it: they count
    towards minutes degraded only. ``slos`` are the journeys' SLOs (default P3, none)."""
    by_journey: dict[str, list[Outcome]] = {j: [] for j in journeys}
    for outcome in outcomes:
        by_journey.setdefault(outcome.state.journey, []).append(outcome)
    before: dict[str, list[IncidentState]] = {}
    for state in carried:
        before.setdefault(state.journey, []).append(state)
    policies = slos or {}
    overall = _figures(outcomes, until_ms)
    return Stats(
        signal=overall.signal,
        response=overall.response,
        business=overall.business,
        actions=overall.actions,
        window=window,
        since=rfc3339(since_ms) or "",
        until=rfc3339(until_ms) or "",
        journey=journey,
        journeys={
            j: _journey(
                group,
                before.get(j, []),
                policies.get(j, SloPolicy()),
                since_ms,
                until_ms,
            )
            for j, group in by_journey.items()
        },
    )


def _journey(
    outcomes: Sequence[Outcome],
    carried: Sequence[IncidentState],
    policy: SloPolicy,
    since_ms: int,
    until_ms: int,
) -> JourneyFigures:
    figures = _figures(outcomes, until_ms)
    states = [*carried, *(o.state for o in outcomes)]
    degraded = degraded_ms(states, policy.degraded_at, since_ms, until_ms)
    return JourneyFigures(
        signal=figures.signal,
        response=figures.response,
        business=figures.business,
        actions=figures.actions,
        minutes_degraded=round(degraded / 60_000, 1),
        slo=journey_slo(degraded, since_ms, until_ms, policy.degraded_at, policy.objective),
    )


def _figures(outcomes: Sequence[Outcome], until_ms: int) -> Figures:
    states = [o.state for o in outcomes]
    alerts = sum(s.alert_count for s in states)
    # Only a verdict on usefulness judges: "wrong cause" or "what fixed it" says nothing of it.
    judged = [s for s in states if any(f.useful is not None for f in s.feedback)]
    # People answer what they were told of: the response figures leave blips out.
    notified = [s for s in states if s.notified_at is not None]
    times = [response_times(s) for s in notified]
    acked = [s for s in notified if s.response and s.response.acknowledged_at is not None]
    revenue = [(s, r) for s in states if (r := revenue_per_min(s)) is not None]
    return Figures(
        signal=Signal(
            alerts=alerts,
            incidents=len(states),
            alerts_per_incident=round(alerts / len(states), 2) if states else None,
            blips=sum(s.blips for s in states),
            not_useful_pct=pct(sum(map(not_useful, judged)), len(judged)),
            noisy_alertnames=noisy_alertnames(outcomes),
        ),
        response=ResponseFigures(
            mtta_s_p50=p50([a for a, _ in times if a is not None]),
            mttr_s_p50=p50([r for _, r in times if r is not None]),
            ack_pct=pct(len(acked), len(notified)),
        ),
        business=Business(
            revenue_quantified_pct=pct(
                sum(revenue_per_min(s) is not None for s in notified), len(notified)
            ),
            revenue_at_risk_total=(
                round(sum(r * minutes_open(s, until_ms) for s, r in revenue), 2)
                if revenue
                else None
            ),
            change_to_detection_s_p50=p50(
                [d for s in states if (d := change_to_detection_s(s)) is not None]
            ),
        ),
        actions=action_figures(states),
    )


def action_figures(states: Sequence[IncidentState]) -> ActionFigures:
    runs = Counter(r.status for s in states for r in s.actions_run)
    verdicts = Counter(o.verdict for s in states for o in s.action_outcomes.values())
    return ActionFigures(
        ran=runs["ran"],
        failed=runs["failed"],
        refused=runs["refused"],
        skipped=runs["skipped"],
        dry_run=runs["dry_run"],
        helped=verdicts["helped"],
        no_change=verdicts["no_change"],
        worse=verdicts["worse"],
        helped_pct=pct(verdicts["helped"], verdicts.total()),
    )


def p50(values: Sequence[float]) -> float | None:
    """The median (the mean of the middle two for an even count), to 0.1; None for none."""
    return round(statistics.median(values), 1) if values else None


def pct(part: int, whole: int) -> float | None:
    """``part`` of ``whole`` in percent, to 0.1; None when there is no whole."""
    return round(100 * part / whole, 1) if whole else None


def not_useful(state: IncidentState) -> bool:
    """Someone said the incident was not useful (whatever anyone else said); a record
    about something else (``useful`` None: the cause was wrong) is no such word."""
    return any(f.useful is False for f in state.feedback)


def blip(state: IncidentState) -> bool:
    """Resolved without a notification: every alert came and went within group_wait."""
    return state.status == "resolved" and state.notified_at is None


def revenue_per_min(state: IncidentState) -> float | None:
    """The largest revenue-at-risk figure of the incident's KPIs (they measure one loss
    from several sides, so they are not added up); None when none carries one."""
    figures = [
        k.revenue_at_risk_per_min for k in state.kpis if k.revenue_at_risk_per_min is not None
    ]
    return max(figures) if figures else None


def minutes_open(state: IncidentState, until_ms: int) -> float:
    """From its start (Alertmanager's startsAt) to its resolve, or to ``until_ms``."""
    end = until_ms if state.resolved_at is None else state.resolved_at
    return max(0, end - state.started) / 60_000


def change_to_detection_s(state: IncidentState) -> float | None:
    """Seconds from the change the incident names as its probable cause (the leading,
    trusted cause, when it is a change) to the incident's start; None without one, or
    when that change came after the start."""
    cause = leading(state)
    change = change_of(state, cause) if cause is not None else None
    if change is None or change.at > state.started:
        return None
    return (state.started - change.at) / 1000


def noisy_alertnames(outcomes: Sequence[Outcome]) -> list[NoisyAlertname]:
    """Alertnames held by incidents that were noise (marked not useful, or blips), most
    noisy incidents first, then the highest share of noise, then by name; at most
    ``NOISY_CAP``. ``incidents``, ``not_useful`` and ``blips`` count incidents."""
    counts: dict[str, list[int]] = {}
    for outcome in outcomes:
        unwanted, blipped = not_useful(outcome.state), blip(outcome.state)
        for name in outcome.alertnames:
            c = counts.setdefault(name, [0, 0, 0, 0])
            c[0] += 1
            c[1] += unwanted
            c[2] += blipped
            c[3] += unwanted or blipped
    ranked = sorted(
        (name for name, c in counts.items() if c[3]),
        key=lambda name: (-counts[name][3], -counts[name][3] / counts[name][0], name),
    )
    return [
        NoisyAlertname(alertname=name, incidents=c[0], not_useful=c[1], blips=c[2])
        for name in ranked[:NOISY_CAP]
        for c in (counts[name],)
    ]


async def read_outcomes(store: GroupStore, since_ms: int, journey: str | None) -> list[Outcome]:
    """The incidents created since ``since_ms`` (of ``journey``), with their alertnames,
    then those created up to ``CARRY_IN_MS`` before it that were open after it (without
    alertnames: they count towards minutes degraded only); the notified ones with their
    timelines."""
    read = await store.incidents_since(since_ms - CARRY_IN_MS, journey, INCIDENTS_READ)
    states = await with_timelines(
        store, [s for s in read if s.created_at >= since_ms or overlaps(s, since_ms)]
    )
    carried = [Outcome(s, frozenset()) for s in states if s.created_at < since_ms]
    states = [s for s in states if s.created_at >= since_ms]
    outcomes: list[Outcome] = []
    for start in range(0, len(states), _CONCURRENT_READS):
        chunk = states[start : start + _CONCURRENT_READS]
        pages = await asyncio.gather(*(store.load_alerts(s.id, ALERTS_READ) for s in chunk))
        outcomes += [
            Outcome(s, frozenset(a.labels.get("alertname", "") for a in page.alerts) - {""})
            for s, page in zip(chunk, pages, strict=True)
        ]
    return outcomes + carried


async def read_stats(
    store: GroupStore,
    query: StatsQuery,
    now_ms: int,
    journeys: Collection[str],
    slos: Mapping[str, SloPolicy] | None = None,
) -> Stats:
    """The figures for ``query``; ``journeys`` are the configured ones (``unmapped`` too),
    ``slos`` their SLOs. A ``journey`` neither configured nor with incidents in the window
    is refused (422)."""
    since = now_ms - query.window_ms
    read = await read_outcomes(store, since, query.journey)
    outcomes = [o for o in read if o.state.created_at >= since]
    carried = [o.state for o in read if o.state.created_at < since]
    if query.journey is not None and query.journey not in journeys and not outcomes:
        raise PayloadError(
            422,
            f"journey {show(query.journey)} is not configured and has no incidents in the window",
            [{"field": "journey", "reason": f"unknown journey {show(query.journey)}"}],
        )
    shown = list(journeys) if query.journey is None else [query.journey]
    return compute(
        outcomes,
        since,
        now_ms,
        shown,
        window=query.window,
        journey=query.journey,
        slos=slos,
        carried=carried,
    )


def _gauges(m: Metrics) -> list[tuple[Gauge, Callable[[Figures], float | None]]]:
    def ratio(value: float | None) -> float | None:
        return None if value is None else value / 100

    def slo_ratio(value: float | None) -> float | None:
        # Objectives are 99.9-like: shown as 0.999, not 0.9990000000000001.
        return None if value is None else round(value / 100, 6)

    return [
        (m.stats_alerts, lambda f: f.signal.alerts),
        (m.stats_incidents, lambda f: f.signal.incidents),
        (m.stats_alerts_per_incident, lambda f: f.signal.alerts_per_incident),
        (m.stats_blips, lambda f: f.signal.blips),
        (m.stats_not_useful_ratio, lambda f: ratio(f.signal.not_useful_pct)),
        (m.stats_mtta_seconds_p50, lambda f: f.response.mtta_s_p50),
        (m.stats_mttr_seconds_p50, lambda f: f.response.mttr_s_p50),
        (m.stats_ack_ratio, lambda f: ratio(f.response.ack_pct)),
        (m.stats_revenue_quantified_ratio, lambda f: ratio(f.business.revenue_quantified_pct)),
        (m.stats_revenue_at_risk, lambda f: f.business.revenue_at_risk_total),
        (
            m.stats_change_to_detection_seconds_p50,
            lambda f: f.business.change_to_detection_s_p50,
        ),
        (
            m.stats_minutes_degraded,
            lambda f: f.minutes_degraded if isinstance(f, JourneyFigures) else None,
        ),
        (
            m.stats_slo_attainment_ratio,
            lambda f: slo_ratio(f.slo.attainment_pct) if isinstance(f, JourneyFigures) else None,
        ),
        (
            m.stats_slo_objective_ratio,
            lambda f: slo_ratio(f.slo.objective_pct) if isinstance(f, JourneyFigures) else None,
        ),
    ]


def publish(metrics: Metrics, stats: Stats) -> None:
    """Set the gauges from ``stats``, the figures of all journeys (the periodic refresh's):
    all journeys together under ``journey=""``, each journey under its id, with the
    window's name. A figure without a value, or a journey no longer shown, loses its
    series."""
    window = stats.window
    rows: dict[str, Figures] = {"": stats, **stats.journeys}
    for gauge, read in _gauges(metrics):
        for journey, figures in rows.items():
            value = read(figures)
            if value is not None:
                gauge.labels(journey, window).set(value)
        for journey in _series(gauge, window):
            if journey not in rows or read(rows[journey]) is None:
                gauge.remove(journey, window)


def _series(gauge: Gauge, window: str) -> set[str]:
    """The journeys ``gauge`` has a series of ``window`` for."""
    return {
        sample.labels["journey"]
        for family in gauge.collect()
        for sample in family.samples
        if sample.labels.get("window") == window
    }


async def cached_stats(receiver: Receiver, query: StatsQuery) -> Stats:
    """The answer to ``query`` (GET /api/v1/stats): the one kept in the shared cache while
    it is fresh (for the default window and all journeys, normally the periodic
    refresh's), else computed now and kept for the next asker on any replica."""
    now = receiver.pipeline.now_ms()
    kept = await _kept(receiver, query)
    if kept is not None and now - _until_ms(kept) < FRESH_MS:
        return kept
    # One computation per question on this replica: viewers asking at once wait for it
    # and read what it kept, rather than each reading the whole window.
    locks = _COMPUTING.setdefault(receiver, {})
    lock = locks.setdefault((query.window, query.journey), asyncio.Lock())
    async with lock:
        kept = await _kept(receiver, query)
        if kept is not None and now - _until_ms(kept) < FRESH_MS:
            return kept
        return await _computed(receiver, query, now)


# Per receiver (tests run several, each on its own event loop).
_COMPUTING: WeakKeyDictionary[Receiver, dict[tuple[str, str | None], asyncio.Lock]] = (
    WeakKeyDictionary()
)


async def refresh_metrics(receiver: Receiver) -> Stats | None:
    """Set the gauges from the default window's figures for every journey, for a caller
    on every replica once a minute: the replica that takes this minute's lease computes
    them and keeps them in the shared cache, every other one publishes what is kept
    there. None (the gauges as they were) when nothing is kept yet."""
    query = parse_query({})
    now = receiver.pipeline.now_ms()
    lease = f"{CACHE_NAMESPACE}:{now // REFRESH_SLOT_MS}"
    # The lease only decides who computes; it is never renewed nor handed back, so the
    # holder's name needs to be unique, not remembered.
    if await receiver.store.take_lease(lease, secrets.token_hex(8), 2 * REFRESH_SLOT_MS):
        stats: Stats | None = await _computed(receiver, query, now)
    else:
        stats = await _kept(receiver, query)
    if stats is not None:
        publish(receiver.metrics, stats)
    return stats


async def _computed(receiver: Receiver, query: StatsQuery, now_ms: int) -> Stats:
    catalog = receiver.settings.catalog.journeys
    journeys = [j.id for j in catalog]
    slos = {j.id: SloPolicy(j.slo.degraded_at, j.slo.objective) for j in catalog}
    stats = await read_stats(receiver.store, query, now_ms, journeys, slos)
    await receiver.store.cache.set(
        CACHE_NAMESPACE, _field(query), stats.model_dump_json(), CACHE_TTL_MS
    )
    return stats


async def _kept(receiver: Receiver, query: StatsQuery) -> Stats | None:
    """The answer kept for ``query``, if any: the JSON the API answers, read back."""
    raw = await receiver.store.cache.get(CACHE_NAMESPACE, _field(query))
    if raw is None:
        return None
    try:
        return Stats.model_validate_json(raw)
    except ValidationError:
        # Kept by a replica of another version (a rolling upgrade): only a hint, so none.
        return None


def _field(query: StatsQuery) -> str:
    # A window never holds a colon, so (window, journey) maps to one field each.
    return query.window if query.journey is None else f"{query.window}:{query.journey}"


def _until_ms(stats: Stats) -> int:
    return round(datetime.fromisoformat(stats.until).timestamp() * 1000)
