"""A journey KPI over an incident's window, now and at its baseline, for the incident chart.

``kpi_series`` fills the incident's group labels into the KPI's query exactly as enrichment
does (``receiver.enrich.promql.substitute``) and asks Prometheus for it
(``PrometheusKpis.range``) over the window from 30 minutes before the incident started to
when it resolved (or now); and for the same query over the same window ``baseline_offset``
earlier (the KPI's own, else ``prometheus.baseline_offset``: a week by default), its times
then moved forward by the offset so both lines share the time axis.

The baseline is a shifted window, not ``<query> offset 1w``: PromQL's ``offset`` modifies
a selector, so appended to an expression like ``sum(...) / sum(...)`` it is a parse error.
Evaluating the same query at the earlier times is what ``offset`` on every selector would do.

The step is a round duration (15s, 30s, 1m, 2m, 5m, ...) that keeps each line to at most 120
points, and the window's start is aligned to it, so that a reload asks for the same points.
Both lines come back on that grid: a time Prometheus left out (no sample within its lookback)
or answered NaN/±Inf for is None, a gap in the chart.

Both queries run at once, each bounded by ``prometheus.timeout``. Nothing here raises for
Prometheus: not configured, down, slow, an error or a nonsense answer, or a query whose
placeholders cannot be filled, is a ``ChartUnavailable`` saying "chart unavailable:
<reason>". A failed baseline alone still gives the chart of now, with a note.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import anyio

from receiver.config.journeys_yaml import Kpi
from receiver.enrich import EnrichmentError
from receiver.enrich.enricher import baseline_words
from receiver.enrich.prometheus import PrometheusKpis, Series
from receiver.enrich.prometheus_answers import Failed
from receiver.enrich.promql import substitute
from receiver.web.charts import Point, kpi_chart

BEFORE_START = 30 * 60.0
"""How much of the time before the incident the chart shows, in seconds."""
MAX_POINTS = 120
_STEPS = (15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
_DAY = 86400


@dataclass(frozen=True, slots=True)
class KpiSeries:
    """A KPI over an incident's window: ``now`` and ``baseline`` on the same time grid
    (``start``, ``start + step``, ... up to ``end``; unix seconds), None where there is no
    value. ``baseline`` holds the values of ``baseline_offset`` seconds earlier, at the
    times they are compared with."""

    name: str
    unit: str
    bad_when: Literal["down", "up"]
    query: str
    """The query asked, placeholders filled."""
    start: float
    end: float
    step: float
    incident_start: float
    now: tuple[Point, ...]
    baseline: tuple[Point, ...]
    baseline_offset: float
    vs: str
    """The baseline in words: "last week", "yesterday", "2h ago"."""
    notes: tuple[str, ...] = ()
    """What a person should know about the data, e.g. that the baseline is unavailable."""

    def svg(self) -> str:
        """The chart (``receiver.web.charts.kpi_chart``)."""
        return kpi_chart(
            self.now,
            self.baseline,
            start=self.start,
            end=self.end,
            unit=self.unit,
            bad_when=self.bad_when,
            incident_start=self.incident_start,
            title=self.name,
            vs=self.vs,
        )


@dataclass(frozen=True, slots=True)
class ChartUnavailable:
    """No chart for the KPI ``name``; ``text`` is what the page shows instead."""

    name: str
    reason: str

    @property
    def text(self) -> str:
        return f"chart unavailable: {self.reason}"


async def kpi_series(
    prometheus: PrometheusKpis | None,
    kpi: Kpi,
    group_labels: Mapping[str, str],
    *,
    started: datetime,
    resolved: datetime | None,
    now: datetime,
) -> KpiSeries | ChartUnavailable:
    """``kpi`` for the incident with ``group_labels`` that ``started`` and ``resolved``
    (None while it is open), now and at its baseline; see the module doc.

    ``prometheus`` is the receiver's ``PrometheusKpis`` (None when ``prometheus.url`` is not
    set). ``now`` is the receiver's clock. Times without a timezone are taken as UTC.
    """
    if prometheus is None:
        return ChartUnavailable(kpi.name, "prometheus: not configured (prometheus.url)")
    try:
        query = substitute(kpi.query, group_labels)
    except EnrichmentError as exc:
        return ChartUnavailable(kpi.name, str(exc))
    started_s = _utc(started).timestamp()
    until = _utc(resolved if resolved is not None else now).timestamp()
    start, end, step = window(started_s, until)
    offset = prometheus.baseline_offset(kpi)

    answers: dict[str, tuple[Series, ...] | Failed] = {}

    async def ask(role: str, shift: float) -> None:
        answers[role] = await prometheus.range(query, _at(start - shift), _at(end - shift), step)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(ask, "now", 0.0)
        tasks.start_soon(ask, "baseline", offset)

    vs = baseline_words(offset)
    current, baseline = answers["now"], answers["baseline"]
    if isinstance(current, Failed):
        return ChartUnavailable(kpi.name, f"prometheus: {current.reason}")
    notes: list[str] = []
    now_points = _on_grid(current, start, end, step, 0.0, "now", notes)
    base_points: tuple[Point, ...]
    if isinstance(baseline, Failed):
        notes.append(f"{vs} unavailable: prometheus: {baseline.reason}")
        base_points = tuple((t, None) for t, _ in now_points)
    else:
        base_points = _on_grid(baseline, start, end, step, offset, vs, notes)
    return KpiSeries(
        name=kpi.name,
        unit=kpi.unit,
        bad_when=kpi.bad_when,
        query=query,
        start=start,
        end=end,
        step=step,
        incident_start=started_s,
        now=now_points,
        baseline=base_points,
        baseline_offset=offset,
        vs=vs,
        notes=tuple(notes),
    )


def window(started: float, until: float) -> tuple[float, float, float]:
    """(start, end, step) in unix seconds for an incident that started at ``started`` and
    lasted until ``until``: from ``BEFORE_START`` before it, the start aligned to the step,
    at most ``MAX_POINTS`` points."""
    first = started - BEFORE_START
    end = max(until, started)
    # Aligning the start down adds up to one step: leave room for it.
    need = (end - first) / (MAX_POINTS - 2)
    step = next((float(s) for s in _STEPS if s >= need), math.ceil(need / _DAY) * float(_DAY))
    return math.floor(first / step) * step, end, step


def _on_grid(
    answer: Sequence[Series],
    start: float,
    end: float,
    step: float,
    shift: float,
    what: str,
    notes: list[str],
) -> tuple[Point, ...]:
    """The first series' values at each grid time (None where it has none); ``shift`` is
    added to the answer's times to bring them onto the grid."""
    if not answer:
        notes.append(f"{what}: the query returned no series")
    elif len(answer) > 1:
        notes.append(
            f"{what}: the query returned {len(answer)} series; a KPI must return one, "
            "used the first"
        )
    values = {round((t + shift) * 1000): v for t, v in answer[0].points} if answer else {}
    count = math.floor((end - start) / step + 1e-9) + 1
    grid = (start + k * step for k in range(count))
    return tuple((t, values.get(round(t * 1000))) for t in grid)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)
