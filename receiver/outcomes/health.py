"""Journey health: the ``journey_receiver_journey_*`` gauges, recomputed once a minute
from the open incidents in the store, which every replica shares, so that every replica
exports the same numbers (docs/operating.md, "Metrics"; deploy/grafana-journey-health.json
draws them).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import Gauge

from receiver.config.fields import PRIORITIES
from receiver.metrics import Metrics
from receiver.outcomes.slo import DEFAULT_DEGRADED_AT, at_or_above
from receiver.scoring import deviation
from receiver.store.base import GroupStore, capped
from receiver.store.records import IncidentState

if TYPE_CHECKING:
    from receiver.app import Receiver

# The journey-health gauges read at most the newest OPEN_READ open incidents, READ_PAGE at
# a time (one store read each).
OPEN_READ = 10_000
READ_PAGE = 200


@dataclass(frozen=True, slots=True)
class JourneyHealth:
    """What the ``journey_receiver_journey_*`` gauges say, keyed by their labels."""

    open_incidents: Mapping[tuple[str, str, str], int]
    kpi_deviation_percent: Mapping[tuple[str, str], float]
    degraded_seconds: Mapping[str, float]


def journey_health(
    incidents: Iterable[IncidentState],
    now_ms: int,
    stages: Mapping[str, Sequence[str]],
    degraded_at: Mapping[str, str] | None = None,
) -> JourneyHealth:
    """The journey-health figures of the open ``incidents`` at ``now_ms`` (``HealthTally``
    says how each counts)."""
    tally = HealthTally(stages, degraded_at)
    tally.add(incidents)
    return tally.health(now_ms)


class HealthTally:
    """The journey-health figures of open incidents, added a page at a time: it keeps
    counts, never the incidents. ``stages`` maps each configured journey to its stages
    (``unmapped`` to none): those show 0 without incidents; a journey or stage no longer
    configured shows while it has open incidents.

    An incident counts once its first decision gave it a priority (after group_wait), at
    the priority of its last decision; one that matched no stage counts under stage "".
    A journey is degraded by an open incident at or above its ``slo.degraded_at``
    (``degraded_at``, default P3), as in its minutes degraded (``slo.py``); KPI time is
    left to those (it needs the timelines, which this once-a-minute read does not load).
    """

    def __init__(
        self, stages: Mapping[str, Sequence[str]], degraded_at: Mapping[str, str] | None = None
    ) -> None:
        self._thresholds = degraded_at or {}
        self._counts: dict[tuple[str, str, str], int] = {
            (journey, stage, priority): 0
            for journey, ids in stages.items()
            for stage in (ids or [""])
            for priority in PRIORITIES
        }
        # (journey, kpi) -> (how far it moved in its bad direction, its deviation).
        self._worst: dict[tuple[str, str], tuple[float, float]] = {}
        self._degraded_since: dict[str, int | None] = dict.fromkeys(stages)

    def add(self, incidents: Iterable[IncidentState]) -> None:
        counts, worst, degraded_since = self._counts, self._worst, self._degraded_since
        for state in incidents:
            if state.status != "open":
                continue
            journey = state.journey
            degraded_since.setdefault(journey, None)
            for kpi in state.kpis:
                signed = deviation(kpi)
                if signed is None:
                    continue
                moved = -signed if kpi.bad_when == "down" else signed
                if moved > worst.get((journey, kpi.name), (-math.inf, 0.0))[0]:
                    worst[journey, kpi.name] = (moved, signed)
            if state.priority is None:
                continue
            # As people were told them (the board's): a stage whose alerts were all blips
            # lights nothing.
            for stage in state.shown_stages or [""]:
                key = (journey, stage, state.priority)
                counts[key] = counts.get(key, 0) + 1
            since = degraded_since[journey]
            threshold = self._thresholds.get(journey, DEFAULT_DEGRADED_AT)
            degraded = at_or_above(state.priority, threshold)
            if degraded and (since is None or state.started < since):
                degraded_since[journey] = state.started

    def health(self, now_ms: int) -> JourneyHealth:
        """The figures of the incidents added so far, at ``now_ms``."""
        return JourneyHealth(
            open_incidents=dict(self._counts),
            kpi_deviation_percent={key: deviation for key, (_, deviation) in self._worst.items()},
            degraded_seconds={
                journey: 0.0 if since is None else max(0, now_ms - since) / 1000
                for journey, since in self._degraded_since.items()
            },
        )


async def read_journey_health(
    store: GroupStore,
    now_ms: int,
    stages: Mapping[str, Sequence[str]],
    degraded_at: Mapping[str, str] | None = None,
    page_size: int = READ_PAGE,
) -> JourneyHealth:
    """The journey-health figures of the newest ``OPEN_READ`` open incidents in ``store``,
    read ``page_size`` at a time: what is held at once is one page, not every incident."""
    tally = HealthTally(stages, degraded_at)
    async for page in capped(store.iter_incidents("open", None, page_size), OPEN_READ):
        tally.add(page)
    return tally.health(now_ms)


def publish_journey_health(metrics: Metrics, health: JourneyHealth) -> None:
    """Set the journey-health gauges to ``health``; a label set it no longer has loses its
    series (set first, removed after, so that no scrape sees a gap)."""
    _publish(
        metrics.journey_open_incidents,
        ("journey", "stage", "priority"),
        {labels: float(n) for labels, n in health.open_incidents.items()},
    )
    _publish(
        metrics.journey_kpi_deviation_percent,
        ("journey", "kpi"),
        {labels: pct for labels, pct in health.kpi_deviation_percent.items()},
    )
    _publish(
        metrics.journey_degraded_seconds,
        ("journey",),
        {(journey,): s for journey, s in health.degraded_seconds.items()},
    )


def _publish(gauge: Gauge, names: Sequence[str], values: Mapping[tuple[str, ...], float]) -> None:
    for labels, value in values.items():
        gauge.labels(*labels).set(value)
    shown = {
        tuple(sample.labels[name] for name in names)
        for family in gauge.collect()
        for sample in family.samples
    }
    for labels in shown - set(values):
        gauge.remove(*labels)


async def refresh_journey_metrics(receiver: Receiver) -> JourneyHealth:
    """Recompute the journey-health gauges from the open incidents in the store. Every
    replica reads the same store, so every replica exports the same numbers (one may lag
    by the time between their refreshes): aggregate them with ``max``, never ``sum``."""
    catalog = receiver.settings.catalog.journeys
    stages = {j.id: [s.id for s in j.stages] for j in catalog}
    thresholds = {j.id: j.slo.degraded_at for j in catalog}
    health = await read_journey_health(
        receiver.store, receiver.pipeline.now_ms(), stages, thresholds
    )
    publish_journey_health(receiver.metrics, health)
    return health
