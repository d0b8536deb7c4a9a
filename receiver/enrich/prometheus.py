"""Journey KPIs from Prometheus: the value at the incident and at the baseline before it.

For each KPI of the journey, with the incident's group labels substituted into its query
(``receiver.enrich.promql``), the query is evaluated at ``at`` and at
``at - baseline_offset`` (the KPI's own offset, else ``prometheus.baseline_offset``; a
week by default, so the comparison carries the weekly season) in one request: a range
query from the baseline to ``at`` whose step is the offset has exactly those two points,
read per time as the two instant queries they stand for (half the requests, which is
where the time goes). A ``revenue_query`` is one instant query. All queries of an incident
run at once on worker threads (``prometheus-api-client`` is blocking), each bounded by
``prometheus.timeout`` and all of them together by ``prometheus.budget``. Whatever has not
answered by then, or failed, becomes a ``context unavailable: prometheus: <reason>`` note;
the KPIs that did answer are returned. ``kpis()`` never raises and never waits past the
budget.

Formulas (``value`` at ``at``, ``baseline`` at the offset)::

    deviation_pct = round((value - baseline) / |baseline| * 100, 1)
                    None when either is missing or baseline == 0
    bad           = deviation_pct < 0 for bad_when "down", > 0 for "up"
                    (baseline 0: value < baseline / value > baseline)
    loss          = max(0, baseline - value) for "down", max(0, value - baseline) for "up"
    revenue_at_risk_per_min
      revenue_per_unit r:  loss * r
          (r is revenue per KPI unit, so the KPI should be a per-minute rate: orders/min)
      revenue_query:       R * min(1, loss / |baseline|)
          (R = the revenue query at the baseline time: revenue per minute the journey
           normally carries; the relative KPI loss is the share of it at risk)
      neither, or an input missing: None.  Rounded to 0.01.

A KPI query must return one series (or a scalar); with several, the first is used and a
note says so; with none (or NaN/Inf) the value is None and a note says so.

``range()`` is the same client's range query, for charts (``receiver.web.series``): the
query as given, bounded by ``prometheus.timeout``, a failure a reason instead of an exception.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial

import anyio
import requests
from prometheus_api_client import PrometheusConnect
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

from receiver.config.journeys_yaml import Journey, Kpi
from receiver.config.receiver_yaml import PrometheusConfig
from receiver.enrich import EnrichmentError, KpiReport, KpiValue
from receiver.enrich.prometheus_answers import (
    Failed,
    Outcome,
    Pair,
    Sample,
    failure_reason,
    read,
    read_pair,
)
from receiver.enrich.promql import substitute
from receiver.enrich.worker_threads import Busy, WorkerThreads

# A start this close to now would only repeat the value now.
_START_APART = timedelta(minutes=1)
logger = logging.getLogger("journey_receiver.enrich.prometheus")

UNAVAILABLE = "context unavailable: prometheus: "


class PrometheusKpis:
    """Journey KPIs of an incident; build once at startup, ``aclose()`` at shutdown.

    Without ``config.url`` every call returns an empty ``KpiReport`` at once.
    ``max_threads`` bounds the worker threads (and so the connections) in use at once.
    """

    def __init__(self, config: PrometheusConfig, *, max_threads: int = 16) -> None:
        self._config = config
        self._max_threads = max_threads
        self._limiter: anyio.CapacityLimiter | None = None
        # A query given up keeps its thread (a read timeout is per socket read: an answer
        # that drips in keeps it reading): threads and connections stay within it.
        self._running = WorkerThreads(max_threads)
        self._client: PrometheusConnect | None = None
        if config.url is not None:
            session = requests.Session()
            if config.ca_file is not None:
                session.verify = str(config.ca_file)
            headers = {name: value.get_secret_value() for name, value in config.headers.items()}
            url = config.url.rstrip("/")
            # The budget is the retry policy: no hidden retries with backoff sleeps.
            no_retries = Retry(total=0, redirect=False)
            self._client = PrometheusConnect(
                url=url, headers=headers or None, retry=no_retries, session=session
            )
            # Its adapter keeps 10 connections; with more threads than that, a burst would
            # throw connections away and open new ones (and warn each time). Replaces it.
            session.mount(url, HTTPAdapter(max_retries=no_retries, pool_maxsize=max_threads))

    async def kpis(
        self,
        journey: Journey,
        group_labels: Mapping[str, str],
        at: datetime,
        started: datetime | None = None,
    ) -> KpiReport:
        """The journey's KPIs for the incident with ``group_labels`` at ``at``, and at
        ``started`` (when the incident started) if that is a minute or more before ``at``.

        ``at`` without a timezone is taken as UTC.
        """
        if self._client is None or not journey.kpis:
            return KpiReport()
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        notes: list[str] = []
        jobs: dict[_Key, _Job] = {}
        planned: list[Kpi] = []
        for kpi in journey.kpis:
            try:
                jobs.update(self._plan(kpi, group_labels, at, started))
            except EnrichmentError as exc:
                notes.append(f"KPI {kpi.name}: {exc}")
                logger.warning("prometheus: journey %s KPI %s: %s", journey.id, kpi.name, exc)
                continue
            planned.append(kpi)

        outcomes: dict[_Key, Outcome] = {}
        with anyio.move_on_after(self._config.budget):
            async with anyio.create_task_group() as tasks:
                for key, job in jobs.items():
                    tasks.start_soon(self._run, key, job, outcomes)

        late = Failed(f"no answer within the {_seconds(self._config.budget)} budget")
        failures: dict[str, list[str]] = {}
        values: list[KpiValue] = []
        for kpi in planned:
            value = self._assemble(kpi, jobs, outcomes, late, notes, failures)
            if value is not None:
                values.append(value)
        for reason, names in failures.items():
            notes.append(f"{UNAVAILABLE}{reason} ({', '.join(names)})")
            logger.warning("prometheus: journey %s: %s (%s)", journey.id, reason, ", ".join(names))
        unavailable = tuple(dict.fromkeys(n for names in failures.values() for n in names))
        return KpiReport(kpis=tuple(values), notes=tuple(notes), unavailable=unavailable)

    async def range(
        self, query: str, start: datetime, end: datetime, step: float
    ) -> tuple[Series, ...] | Failed:
        """``query`` (PromQL as given, no placeholders filled) evaluated every ``step``
        seconds from ``start`` to ``end``; ``Failed`` with a short reason when Prometheus is
        not configured, fails, answers nonsense or takes longer than ``prometheus.timeout``.

        Times without a timezone are taken as UTC. Only a ``step`` that is not a positive
        number raises (``ValueError``): that is the caller's bug, not Prometheus's.
        """
        if self._client is None:
            return Failed("not configured (prometheus.url)")
        if not math.isfinite(step) or step <= 0:
            raise ValueError(f"step must be a positive number of seconds, not {step!r}")
        start = start if start.tzinfo is not None else start.replace(tzinfo=UTC)
        end = end if end.tzinfo is not None else end.replace(tzinfo=UTC)
        timeout = self._config.timeout
        answer = await self._blocking(partial(self._fetch_range, query, start, end, step, timeout))
        return answer if isinstance(answer, Failed) else _read_matrix(answer)

    def baseline_offset(self, kpi: Kpi) -> float:
        """Seconds between a KPI's value and its baseline: its own offset, else the config's."""
        return kpi.baseline_offset or self._config.baseline_offset

    async def aclose(self) -> None:
        if self._client is not None:
            self._client.close()

    def _plan(
        self, kpi: Kpi, labels: Mapping[str, str], at: datetime, started: datetime | None
    ) -> dict[_Key, _Job]:
        then = at - timedelta(seconds=self.baseline_offset(kpi))
        query = substitute(kpi.query, labels)
        # Now and the baseline in one request: a range query from the baseline to now whose
        # step is the offset yields exactly those two points, for half the requests.
        jobs = {_Key(kpi.name, "pair"): _Job(query, then, until=at)}
        if started is not None and at - started >= _START_APART:
            # Whether it is getting better or worse since the incident began.
            jobs[_Key(kpi.name, "start")] = _Job(query, started.astimezone(UTC))
        if kpi.revenue_query is not None:
            jobs[_Key(kpi.name, "revenue")] = _Job(substitute(kpi.revenue_query, labels), then)
        return jobs

    async def _run(self, key: _Key, job: _Job, outcomes: dict[_Key, Outcome]) -> None:
        answer = await self._ask(job)
        if isinstance(answer, Pair):
            outcomes[_Key(key.kpi, "baseline")] = answer.then
            outcomes[_Key(key.kpi, "value")] = answer.now
        elif job.until is None:
            outcomes[key] = answer
        else:  # the pair's request failed: both points with the same reason
            outcomes[_Key(key.kpi, "baseline")] = outcomes[_Key(key.kpi, "value")] = answer

    async def _ask(self, job: _Job) -> Outcome | Pair:
        result = await self._blocking(partial(self._fetch, job, self._config.timeout))
        if isinstance(result, Failed):
            return result
        if job.until is None:
            return read(result)
        return read_pair(result, job.at.timestamp(), job.until.timestamp())

    async def _blocking(self, fetch: Callable[[], object]) -> object:
        """``fetch()`` on a worker thread within ``prometheus.timeout``, else ``Failed``."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._max_threads)
        timeout = self._config.timeout
        try:
            with anyio.fail_after(timeout):
                result = await self._running.run(fetch, self._limiter)
        except Busy:
            return Failed(f"{self._max_threads} earlier queries have not ended yet")
        except TimeoutError:
            return Failed(f"timed out after {_seconds(timeout)}")
        except Exception as exc:  # whatever the client raises is a reason, never a crash
            return Failed(failure_reason(exc, timeout))
        return result

    def _fetch(self, job: _Job, timeout: float) -> object:
        assert self._client is not None
        at = job.at.timestamp()
        if job.until is None:
            params = {"time": f"{at:.3f}", "timeout": f"{timeout:g}"}  # seconds
            return self._client.custom_query(job.query, params=params, timeout=timeout)
        until = job.until.timestamp()
        # The client rounds start and end to whole seconds; these keep the exact times.
        exact = {"start": f"{at:.3f}", "end": f"{until:.3f}", "timeout": f"{timeout:g}"}
        return self._client.custom_query_range(
            job.query,
            start_time=job.at,
            end_time=job.until,
            step=f"{until - at:.3f}",
            params=exact,
            timeout=timeout,
        )

    def _fetch_range(
        self, query: str, start: datetime, end: datetime, step: float, timeout: float
    ) -> object:
        assert self._client is not None
        # The client rounds start and end to whole seconds; these keep the exact times.
        exact = {
            "start": f"{start.timestamp():.3f}",
            "end": f"{end.timestamp():.3f}",
            "timeout": f"{timeout:g}",
        }
        return self._client.custom_query_range(
            query, start_time=start, end_time=end, step=f"{step:g}", params=exact, timeout=timeout
        )

    def _assemble(
        self,
        kpi: Kpi,
        jobs: Mapping[_Key, _Job],
        outcomes: Mapping[_Key, Outcome],
        late: Failed,
        notes: list[str],
        failures: dict[str, list[str]],
    ) -> KpiValue | None:
        def get(role: str) -> Sample | None:
            outcome = outcomes.get(_Key(kpi.name, role), late)
            if isinstance(outcome, Failed):
                names = failures.setdefault(outcome.reason, [])
                if kpi.name not in names:
                    names.append(kpi.name)
                return None
            return outcome

        now = get("value")
        if now is None:
            return None
        then = get("baseline")
        revenue = get("revenue") if _Key(kpi.name, "revenue") in jobs else None
        # At the start is a courtesy: a failed read of it is no missing context.
        start = outcomes.get(_Key(kpi.name, "start"))
        start = start if isinstance(start, Sample) else None
        said = {
            "now": now.note,
            "at the baseline": then.note if then is not None else None,
            "revenue_query": revenue.note if revenue is not None else None,
            "at the start": start.note if start is not None else None,
        }
        if said["now"] is not None and said["now"] == said["at the baseline"]:
            at_start = said["at the start"]
            said = {
                "now and at the baseline": said["now"],
                "revenue_query": said["revenue_query"],
                "at the start": None if at_start == said["now"] else at_start,
            }
        notes.extend(f"KPI {kpi.name} ({when}): {note}" for when, note in said.items() if note)
        value = assess(
            kpi,
            now.value,
            then.value if then is not None else None,
            revenue_per_min=revenue.value if revenue is not None else None,
            query=jobs[_Key(kpi.name, "pair")].query,
        )
        return replace(value, at_start=start.value) if start is not None else value


def assess(
    kpi: Kpi,
    value: float | None,
    baseline: float | None,
    *,
    revenue_per_min: float | None = None,
    query: str = "",
) -> KpiValue:
    """Deviation, direction and revenue at risk of ``kpi`` (formulas in the module doc).

    ``revenue_per_min`` is the result of ``kpi.revenue_query``; ignored without one.
    """
    deviation: float | None = None
    bad = False
    revenue: float | None = None
    if value is not None and baseline is not None:
        if baseline != 0:
            deviation = round((value - baseline) / abs(baseline) * 100, 1) + 0.0  # no -0.0
            bad = deviation < 0 if kpi.bad_when == "down" else deviation > 0
        else:
            bad = value < baseline if kpi.bad_when == "down" else value > baseline
        loss = max(0.0, baseline - value if kpi.bad_when == "down" else value - baseline)
        if kpi.revenue_per_unit is not None:
            revenue = round(loss * kpi.revenue_per_unit, 2)
        elif kpi.revenue_query is not None and revenue_per_min is not None and baseline != 0:
            revenue = round(revenue_per_min * min(1.0, loss / abs(baseline)), 2)
    return KpiValue(
        name=kpi.name,
        value=value,
        baseline=baseline,
        deviation_pct=deviation,
        unit=kpi.unit,
        bad_when=kpi.bad_when,
        bad=bad,
        revenue_at_risk_per_min=revenue,
        query=query,
    )


@dataclass(frozen=True, slots=True)
class Series:
    """One series of a range query: its labels and its points (unix seconds, value), the
    value None where Prometheus said NaN or ±Inf."""

    labels: Mapping[str, str]
    points: tuple[tuple[float, float | None], ...]


def _read_matrix(result: object) -> tuple[Series, ...] | Failed:
    """The ``data.result`` of a range query: a matrix (list of series with ``values``)."""
    if not isinstance(result, list) or not all(isinstance(s, dict) for s in result):
        return Failed("unexpected response (not a query result)")
    out: list[Series] = []
    for series in result:
        values, metric = series.get("values"), series.get("metric", {})
        if not isinstance(values, list) or not isinstance(metric, dict):
            return Failed("unexpected response (not a range query result)")
        points: list[tuple[float, float | None]] = []
        for point in values:
            if (
                not isinstance(point, list)
                or len(point) != 2
                or not isinstance(point[0], int | float)
                or isinstance(point[0], bool)
            ):
                return Failed("unexpected response (malformed sample)")
            if not isinstance(point[1], str):
                return Failed("unexpected response (sample value is not a string)")
            try:
                value = float(point[1])
            except ValueError:
                return Failed("unexpected response (sample value is not a number)")
            points.append((float(point[0]), value if math.isfinite(value) else None))
        labels = {str(name): str(value) for name, value in metric.items()}
        out.append(Series(labels=labels, points=tuple(points)))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class _Key:
    kpi: str
    role: str
    """value | baseline | revenue | start"""


@dataclass(frozen=True, slots=True)
class _Job:
    """An instant query at ``at``; with ``until``, the pair of points ``at`` and ``until``."""

    query: str
    at: datetime
    until: datetime | None = None


def _seconds(seconds: float) -> str:
    return f"{seconds:g}s"
