"""The figures behind ``GET /api/v1/stats``: signal quality, response and business impact,
rolled up from the incidents the store keeps (SPEC "Learning from outcomes").

``compute`` is pure: the incidents created in a window, each with the alertnames it held,
and the window's bounds in; the figures out. ``read_stats`` reads those from the store a
page at a time and adds each page up (``StatsTally``) before it reads the next: it holds
one page of incidents at a time (and, for the medians, a number or two per incident).
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
from collections import Counter, OrderedDict
from collections.abc import AsyncGenerator, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple
from weakref import WeakKeyDictionary

from prometheus_client import Gauge
from pydantic import BaseModel, ConfigDict, ValidationError

from receiver.causes import change_to_detection
from receiver.config.fields import parse_duration, show
from receiver.errors import PayloadError
from receiver.incident import (
    counted_response,
    latest_verdicts,
    response_times,
    rfc3339,
    told_before,
)
from receiver.metrics import Metrics
from receiver.outcomes import revenue
from receiver.outcomes.slo import (
    DEFAULT_DEGRADED_AT,
    JourneySlo,
    Span,
    degraded_spans,
    journey_slo,
    overlaps,
    union_ms,
    with_timelines,
)
from receiver.settings import ms
from receiver.store.base import GroupStore, capped
from receiver.store.records import IncidentState

if TYPE_CHECKING:
    from receiver.app import Receiver

DEFAULT_WINDOW = "7d"
MAX_WINDOW = "90d"
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
# Incidents read from the store at once: what the figures hold in memory at a time.
READ_PAGE = 200
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
    retention_limited: bool = False
    """The window reaches back further than ``store.retention``: incidents that ended
    before that are gone, so ``since`` is moved up to what the store can still show and
    the figures (attainment and error budget too) cover that part only."""
    capped: bool = False
    """The window holds more incidents than are read (the newest 20,000): the older ones
    are left out of every figure."""


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
        window_ms = round(parse_duration(window, MAX_WINDOW) * 1000)
    except ValueError as exc:
        raise _bad_window(str(exc)) from exc
    # In whole milliseconds, as the clock: a window under half of one is none at all.
    if window_ms <= 0:
        raise _bad_window(f"{show(window)} must be longer than 0s")
    return StatsQuery(window, window_ms, params.get("journey") or None)


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
    tally = StatsTally(since_ms, until_ms, journeys, slos)
    tally.add(outcomes)
    tally.carry(carried)
    return tally.stats(window, journey)


class StatsTally:
    """The figures of a window, added a page of incidents at a time (``compute`` adds them
    all at once): it keeps counts, sums, the few numbers per incident a median needs and
    each journey's degraded spans, never the incidents themselves."""

    def __init__(
        self,
        since_ms: int,
        until_ms: int,
        journeys: Sequence[str],
        slos: Mapping[str, SloPolicy] | None = None,
    ) -> None:
        self._since, self._until = since_ms, until_ms
        self._policies = slos or {}
        self.overall = _Tally()
        # Shown: the configured journeys, in their order, then those of the outcomes.
        self._journeys: dict[str, _Tally] = {j: _Tally() for j in journeys}
        self._spans: dict[str, list[Span]] = {}

    def add(self, outcomes: Iterable[Outcome]) -> None:
        """Incidents created in the window."""
        for outcome in outcomes:
            self.overall.add(outcome, self._until)
            self._journeys.setdefault(outcome.state.journey, _Tally()).add(outcome, self._until)
            self._degraded(outcome.state)

    def carry(self, states: Iterable[IncidentState]) -> None:
        """Incidents created before the window that were open in it."""
        for state in states:
            self._degraded(state)

    def _degraded(self, state: IncidentState) -> None:
        policy = self._policies.get(state.journey, SloPolicy())
        spans = degraded_spans(state, policy.degraded_at, self._until)
        self._spans.setdefault(state.journey, []).extend(spans)

    def stats(
        self,
        window: str,
        journey: str | None,
        retention_limited: bool = False,
        capped: bool = False,
    ) -> Stats:
        overall = self.overall.figures(self._until)
        return Stats(
            retention_limited=retention_limited,
            capped=capped,
            signal=overall.signal,
            response=overall.response,
            business=overall.business,
            actions=overall.actions,
            window=window,
            since=rfc3339(self._since) or "",
            until=rfc3339(self._until) or "",
            journey=journey,
            journeys={j: self._journey(j, tally) for j, tally in self._journeys.items()},
        )

    def _journey(self, journey: str, tally: _Tally) -> JourneyFigures:
        figures = tally.figures(self._until)
        policy = self._policies.get(journey, SloPolicy())
        degraded = union_ms(self._spans.get(journey, []), self._since, self._until)
        return JourneyFigures(
            signal=figures.signal,
            response=figures.response,
            business=figures.business,
            actions=figures.actions,
            minutes_degraded=round(degraded / 60_000, 1),
            slo=journey_slo(
                degraded, self._since, self._until, policy.degraded_at, policy.objective
            ),
        )


class _Tally:
    """The signal, response, business and action figures of some incidents, added one at
    a time (in the order they are read, which the revenue sum keeps)."""

    def __init__(self) -> None:
        self.incidents = 0
        self._alerts = 0
        self._blips = 0
        # Only a verdict on usefulness judges: "wrong cause" or "what fixed it" says
        # nothing of it.
        self._judged = 0
        self._not_useful = 0
        # alertname -> [incidents, not useful, blips, noise (either)]
        self._names: dict[str, list[int]] = {}
        # People answer what they were told of: the response figures leave out blips
        # and incidents routing sent to no sink.
        self._told = 0
        self._acked = 0
        self._quantified = 0
        self._mtta: list[float] = []
        self._mttr: list[float] = []
        self._revenue = 0.0
        self._with_revenue = 0
        self._to_detection: list[float] = []
        self._runs: Counter[str] = Counter()
        self._verdicts: Counter[str] = Counter()

    def add(self, outcome: Outcome, until_ms: int) -> None:
        s = outcome.state
        self.incidents += 1
        self._alerts += s.alert_count
        self._blips += s.blips
        unwanted, blipped = not_useful(s), blip(s)
        if any(f.useful is not None for f in s.feedback):
            self._judged += 1
            self._not_useful += unwanted
        for name in outcome.alertnames:
            c = self._names.setdefault(name, [0, 0, 0, 0])
            c[0] += 1
            c[1] += unwanted
            c[2] += blipped
            c[3] += unwanted or blipped
        money = revenue.at_risk(s, until_ms)
        if s.sent_anywhere:
            self._told += 1
            mtta, mttr = response_times(s)
            if mtta is not None:
                self._mtta.append(mtta)
            if mttr is not None:
                self._mttr.append(mttr)
            answered = counted_response(s)
            self._acked += answered is not None and answered.acknowledged_at is not None
            self._quantified += money is not None
        if money is not None:
            self._revenue += money
            self._with_revenue += 1
        if (detection := change_to_detection_s(s)) is not None:
            self._to_detection.append(detection)
        self._runs.update(r.status for r in s.actions_run)
        self._verdicts.update(o.verdict for o in s.action_outcomes.values())

    def figures(self, until_ms: int) -> Figures:
        runs, verdicts = self._runs, self._verdicts
        return Figures(
            signal=Signal(
                alerts=self._alerts,
                incidents=self.incidents,
                alerts_per_incident=(
                    round(self._alerts / self.incidents, 2) if self.incidents else None
                ),
                blips=self._blips,
                not_useful_pct=pct(self._not_useful, self._judged),
                noisy_alertnames=_noisy(self._names),
            ),
            response=ResponseFigures(
                mtta_s_p50=p50(self._mtta),
                mttr_s_p50=p50(self._mttr),
                ack_pct=pct(self._acked, self._told),
            ),
            business=Business(
                revenue_quantified_pct=pct(self._quantified, self._told),
                revenue_at_risk_total=round(self._revenue, 2) if self._with_revenue else None,
                change_to_detection_s_p50=p50(self._to_detection),
            ),
            actions=ActionFigures(
                ran=runs["ran"],
                failed=runs["failed"],
                refused=runs["refused"],
                skipped=runs["skipped"],
                dry_run=runs["dry_run"],
                helped=verdicts["helped"],
                no_change=verdicts["no_change"],
                worse=verdicts["worse"],
                helped_pct=pct(verdicts["helped"], verdicts.total()),
            ),
        )


def _noisy(counts: Mapping[str, list[int]]) -> list[NoisyAlertname]:
    """Alertnames held by incidents that were noise (marked not useful, or blips), most
    noisy incidents first, then the highest share of noise, then by name; at most
    ``NOISY_CAP``. ``incidents``, ``not_useful`` and ``blips`` count incidents."""
    ranked = sorted(
        (name for name, c in counts.items() if c[3]),
        key=lambda name: (-counts[name][3], -counts[name][3] / counts[name][0], name),
    )
    return [
        NoisyAlertname(alertname=name, incidents=c[0], not_useful=c[1], blips=c[2])
        for name in ranked[:NOISY_CAP]
        for c in (counts[name],)
    ]


def p50(values: Sequence[float]) -> float | None:
    """The median (the mean of the middle two for an even count), to 0.1; None for none."""
    return round(statistics.median(values), 1) if values else None


def pct(part: int, whole: int) -> float | None:
    """``part`` of ``whole`` in percent, to 0.1; None when there is no whole."""
    return round(100 * part / whole, 1) if whole else None


def not_useful(state: IncidentState) -> bool:
    """Someone said the incident was not useful (whatever anyone else said), and did not
    take it back: a person's later verdict replaces their earlier one, and records with no
    ``by`` are one voice, the API's, as the Slack message counts them; a record about
    something else (``useful`` None: the cause was wrong) is no such word."""
    return False in latest_verdicts((f.by, f.useful) for f in state.feedback).values()


def blip(state: IncidentState) -> bool:
    """Resolved without a notification: every alert came and went within group_wait."""
    return state.status == "resolved" and state.notified_at is None


def change_to_detection_s(state: IncidentState) -> float | None:
    """``causes.change_to_detection`` of the incident's latest episode people were told
    of: a later one nobody was told of (a blip) reads the context again against its own
    start, and leaves the told one's as it was. An incident never told of (a blip, or one
    still within group_wait) has none."""
    told = told_before(state)
    if told is not None:
        wrong = _cause_called_wrong(state, told.first_firing_at, state.first_firing_at)
        return None if wrong else told.change_to_detection_s
    if state.notified_at is None or _cause_called_wrong(state, state.first_firing_at):
        return None
    return change_to_detection(state)


def _cause_called_wrong(state: IncidentState, since_ms: int, until_ms: int | None = None) -> bool:
    """Someone said the probable cause was wrong during the episode from ``since_ms`` (to
    ``until_ms``, the next one's start): its change is then not the change behind it."""
    return any(
        f.wrong_cause and since_ms <= f.at and (until_ms is None or f.at < until_ms)
        for f in state.feedback
    )


class Alertnames:
    """Each incident's alertnames as last read, with what its state said of its alerts then
    (``_alerts_stamp``): an incident whose alerts did not change is not read again. Every
    minute's figures read every incident of the week, and choosing the alerts to name is
    the costly part for a large one (all of its alerts are ranked). The least recently
    used go first past ``size``."""

    def __init__(self, size: int = INCIDENTS_READ) -> None:
        self._size = size
        self._kept: OrderedDict[str, tuple[tuple[int, ...], frozenset[str]]] = OrderedDict()

    def get(self, state: IncidentState) -> frozenset[str] | None:
        kept = self._kept.get(state.id)
        if kept is None or kept[0] != _alerts_stamp(state):
            return None
        self._kept.move_to_end(state.id)
        return kept[1]

    def put(self, state: IncidentState, names: frozenset[str]) -> None:
        self._kept[state.id] = (_alerts_stamp(state), names)
        self._kept.move_to_end(state.id)
        while len(self._kept) > self._size:
            self._kept.popitem(last=False)


def _alerts_stamp(state: IncidentState) -> tuple[int, ...]:
    # Ingest moves updated_at with every change to an alert it keeps (a new one, a status,
    # a time), and alerts_dropped when it lets resolved ones go; the counts guard against
    # two changes within one millisecond.
    return (state.updated_at, state.alert_count, state.firing_count, state.alerts_dropped)


@dataclass
class Reading:
    """How many incidents a read of the window took in, and when the oldest of them was
    created; ``capped`` once that is all it reads and the window's own incidents may be
    cut (the cap reached only among those before it, carried in, leaves the window
    whole)."""

    since_ms: int = 0
    read: int = 0
    oldest_ms: int | None = None

    def took(self, states: Sequence[IncidentState]) -> None:
        self.read += len(states)
        if states:
            oldest = min(s.created_at for s in states)
            self.oldest_ms = oldest if self.oldest_ms is None else min(self.oldest_ms, oldest)

    @property
    def capped(self) -> bool:
        return self.read >= INCIDENTS_READ and (
            self.oldest_ms is None or self.oldest_ms >= self.since_ms
        )


async def read_outcomes(
    store: GroupStore,
    since_ms: int,
    journey: str | None,
    page_size: int = READ_PAGE,
    names: Alertnames | None = None,
    reading: Reading | None = None,
) -> AsyncGenerator[list[Outcome], None]:
    """The incidents created since ``since_ms`` (of ``journey``), with their alertnames,
    then those created up to ``CARRY_IN_MS`` before it that were open after it (without
    alertnames: they count towards minutes degraded only); the notified ones with their
    timelines. In pages, newest first, each from one store read of at most ``page_size``
    incidents (the newest ``INCIDENTS_READ`` in all): a reader that adds up each page
    before it asks for the next holds one page at a time. ``names``: the alertnames read
    before, kept across calls; ``reading`` counts the incidents read."""
    memo = names if names is not None else Alertnames()
    pages = store.iter_incidents_since(since_ms - CARRY_IN_MS, journey, page_size)
    async for read in capped(pages, INCIDENTS_READ):
        if reading is not None:
            reading.took(read)
        outcomes = await _outcomes(store, read, since_ms, memo)
        if outcomes:
            yield outcomes


async def _outcomes(
    store: GroupStore, read: Sequence[IncidentState], since_ms: int, names: Alertnames
) -> list[Outcome]:
    states = await with_timelines(
        store, [s for s in read if s.created_at >= since_ms or overlaps(s, since_ms)]
    )
    inside = [s for s in states if s.created_at >= since_ms]
    known = {s.id: kept for s in inside if (kept := names.get(s)) is not None}
    unread = [s for s in inside if s.id not in known]
    for start in range(0, len(unread), _CONCURRENT_READS):
        chunk = unread[start : start + _CONCURRENT_READS]
        pages = await asyncio.gather(*(store.load_alerts(s.id, ALERTS_READ) for s in chunk))
        for s, page in zip(chunk, pages, strict=True):
            known[s.id] = frozenset(a.labels.get("alertname", "") for a in page.alerts) - {""}
            names.put(s, known[s.id])
    return [Outcome(s, known[s.id]) for s in inside] + [
        Outcome(s, frozenset()) for s in states if s.created_at < since_ms
    ]


async def read_stats(
    store: GroupStore,
    query: StatsQuery,
    now_ms: int,
    journeys: Collection[str],
    slos: Mapping[str, SloPolicy] | None = None,
    page_size: int = READ_PAGE,
    retention_ms: int | None = None,
    names: Alertnames | None = None,
) -> Stats:
    """The figures for ``query``; ``journeys`` are the configured ones (``unmapped`` too),
    ``slos`` their SLOs. A ``journey`` neither configured nor with incidents in the window
    is refused (422). The incidents are read and added up ``page_size`` at a time. A window
    longer than ``retention_ms`` is cut to it (``retention_limited``): counting the time the
    store no longer shows as time without incidents would overstate attainment. ``names``:
    alertnames kept from earlier reads (``Alertnames``)."""
    asked = now_ms - query.window_ms
    since = asked if retention_ms is None else max(asked, now_ms - retention_ms)
    shown = list(journeys) if query.journey is None else [query.journey]
    tally = StatsTally(since, now_ms, shown, slos)
    reading = Reading(since)
    async for page in read_outcomes(store, since, query.journey, page_size, names, reading):
        tally.add(o for o in page if o.state.created_at >= since)
        tally.carry(o.state for o in page if o.state.created_at < since)
    if query.journey is not None and query.journey not in journeys and not tally.overall.incidents:
        raise PayloadError(
            422,
            f"journey {show(query.journey)} is not configured and has no incidents in the window",
            [{"field": "journey", "reason": f"unknown journey {show(query.journey)}"}],
        )
    return tally.stats(
        query.window, query.journey, retention_limited=since > asked, capped=reading.capped
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
    asked = _COMPUTING.setdefault(receiver, {})
    key = (query.window, query.journey)
    question = asked.setdefault(key, _Question())
    question.askers += 1
    try:
        async with question.lock:
            kept = await _kept(receiver, query)
            if kept is not None and now - _until_ms(kept) < FRESH_MS:
                return kept
            return await _computed(receiver, query, now)
    finally:
        # The window is the request's own text, so questions are unbounded: one is kept
        # only while someone asks it.
        question.askers -= 1
        if not question.askers:
            del asked[key]


@dataclass
class _Question:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    askers: int = 0


# Per receiver (tests run several, each on its own event loop).
_COMPUTING: WeakKeyDictionary[Receiver, dict[tuple[str, str | None], _Question]] = (
    WeakKeyDictionary()
)
_ALERTNAMES: WeakKeyDictionary[Receiver, Alertnames] = WeakKeyDictionary()


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
    retention_ms = ms(receiver.settings.config.store.retention)
    names = _ALERTNAMES.setdefault(receiver, Alertnames())
    stats = await read_stats(
        receiver.store, query, now_ms, journeys, slos, retention_ms=retention_ms, names=names
    )
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
        kept = Stats.model_validate_json(raw)
    except ValidationError:
        # Kept by a replica of another version (a rolling upgrade): only a hint, so none.
        return None
    # Computed under another store.retention (a reload, or a replica not yet reloaded or
    # upgraded): it covers another span than this replica would, so it is not the answer.
    span = min(query.window_ms, ms(receiver.settings.config.store.retention))
    if _until_ms(kept) - _ms_of(kept.since) != span:
        return None
    return kept


def _field(query: StatsQuery) -> str:
    # A window never holds a colon, so (window, journey) maps to one field each.
    return query.window if query.journey is None else f"{query.window}:{query.journey}"


def _until_ms(stats: Stats) -> int:
    return _ms_of(stats.until)


def _ms_of(rfc3339: str) -> int:
    return round(datetime.fromisoformat(rfc3339).timestamp() * 1000)
