"""The receiver's own metrics, named after the steps of the flow.

Each app owns its registry, so several receivers can run in one process (tests do).

The ``journey_receiver_journey_*`` gauges are the one exception to "set where it happens":
``refresh_journey_metrics`` recomputes them from the open incidents in the store, which
every replica shares, so that every replica exports the same numbers (docs/operating.md,
"Metrics"; deploy/grafana-journey-health.json draws them).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from receiver.config.fields import PRIORITIES
from receiver.store.records import IncidentState

if TYPE_CHECKING:
    from receiver.app import Receiver

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
_NOTIFY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        p = "journey_receiver_"
        self.webhook_requests = Counter(
            p + "webhook_requests", "Webhook requests by HTTP status code.", ["code"], registry=r
        )
        self.batches = Counter(p + "batches", "Webhook batches accepted.", registry=r)
        self.alerts_received = Counter(
            p + "alerts_received", "Alerts received, by status.", ["status"], registry=r
        )
        self.alerts_duplicate = Counter(
            p + "alerts_duplicate",
            "Alerts received again unchanged (retries, HA peers).",
            registry=r,
        )
        self.truncated_alerts = Counter(
            p + "truncated_alerts",
            "Alerts Alertmanager left out of batches (truncatedAlerts).",
            registry=r,
        )
        self.incidents_opened = Counter(
            p + "incidents_opened", "Incidents opened.", ["journey"], registry=r
        )
        self.incidents_reopened = Counter(
            p + "incidents_reopened", "Incidents reopened.", ["journey"], registry=r
        )
        self.incidents_resolved = Counter(
            p + "incidents_resolved", "Incidents resolved.", ["journey"], registry=r
        )
        self.notifications = Counter(
            p + "notifications",
            "Notifications decided (each goes to every sink routing picks), by journey, "
            "priority and kind (open, update, resolve, reopen).",
            ["journey", "priority", "kind"],
            registry=r,
        )
        self.blips = Counter(
            p + "blips",
            "Alerts that fired and resolved within group_wait; never notified.",
            ["journey"],
            registry=r,
        )
        self.alerts_per_incident = Histogram(
            p + "alerts_per_incident",
            "Alerts in an incident when it is first notified.",
            buckets=_SIZE_BUCKETS,
            registry=r,
        )
        self.store_latency = Histogram(
            p + "store_latency_seconds",
            "Store operation latency.",
            ["op"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.deliveries = Counter(
            p + "deliveries",
            "Outbox jobs by sink, kind and outcome (delivered, retried, dead).",
            ["sink", "kind", "outcome"],
            registry=r,
        )
        self.delivery_attempts = Counter(
            p + "delivery_attempts",
            "Delivery attempts by sink and result: delivered, or why not (auth, "
            "rate_limited, client, server, timeout, error).",
            ["sink", "result"],
            registry=r,
        )
        self.delivery_latency = Histogram(
            p + "delivery_latency_seconds",
            "From the decision that made a notification due to its delivery.",
            ["sink"],
            buckets=_NOTIFY_BUCKETS,
            registry=r,
        )
        self.peer_backfills = Counter(
            p + "alertmanager_backfills",
            "Truncated batches whose group was read back from Alertmanager.",
            registry=r,
        )
        self.peer_reconciles = Counter(
            p + "alertmanager_reconciles",
            "Rounds comparing the open incidents with the alerts Alertmanager holds.",
            registry=r,
        )
        self.peer_reconciles_skipped = Counter(
            p + "alertmanager_reconciles_skipped",
            "Reconcile rounds skipped because an Alertmanager started within restart_grace "
            "(it may not hold its alerts again yet).",
            registry=r,
        )
        self.peer_errors = Counter(
            p + "alertmanager_errors",
            "Back-fills and reconciles that failed because no Alertmanager answered.",
            registry=r,
        )
        self.peer_alerts = Counter(
            p + "alertmanager_alerts",
            "Alerts changed by what Alertmanager holds: backfilled (left out of a truncated "
            "batch), resolved (no longer held), suppressed (newly silenced or inhibited).",
            ["change"],
            registry=r,
        )
        self.slack_lookup_degraded = Counter(
            p + "slack_lookup_degraded",
            "Slack lookups for an earlier attempt's message refused for a scope or channel "
            "membership (missing_scope, not_in_channel, channel_not_found), by that reason: "
            "the sink posted without checking, so a duplicate is possible.",
            ["reason"],
            registry=r,
        )
        self.dead_letters_total = Counter(
            p + "dead_letters",
            "Jobs moved to the dead-letter list, by sink.",
            ["sink"],
            registry=r,
        )
        self.dead_letters = Gauge(
            p + "dead_letters_current",
            "Jobs in the dead-letter list now (all replicas).",
            registry=r,
        )
        self.outbox_pending = Gauge(
            p + "outbox_pending_queues",
            "Outbox queues (one per incident and sink) with jobs waiting (all replicas).",
            registry=r,
        )
        self.flush_errors = Counter(
            p + "flush_errors",
            "Incidents whose decision failed unexpectedly (retried after the lease).",
            registry=r,
        )
        self.enrichment_failures = Counter(
            p + "enrichment_failures",
            "Incidents whose context (KPIs, changes) could not be gathered in time.",
            registry=r,
        )
        self.config_reloads = Counter(
            p + "config_reloads", "Config reloads by outcome.", ["outcome"], registry=r
        )
        self.config_last_reload_success = Gauge(
            p + "config_last_reload_successful",
            "1 if the last config reload succeeded.",
            registry=r,
        )
        self.store_up = Gauge(
            p + "store_up", "1 if the last store operation reached the store.", registry=r
        )

        # The figures of GET /api/v1/stats (receiver/outcomes/stats.py) by journey ("" for
        # all journeys together) and window, set whenever they are computed; a figure with
        # no value (nothing to take a median or a share of) has no series.
        stats = ["journey", "window"]
        self.stats_alerts = Gauge(
            p + "stats_alerts", "Alerts in the incidents created in the window.", stats, registry=r
        )
        self.stats_incidents = Gauge(
            p + "stats_incidents", "Incidents created in the window.", stats, registry=r
        )
        self.stats_alerts_per_incident = Gauge(
            p + "stats_alerts_per_incident",
            "Alerts per incident created in the window.",
            stats,
            registry=r,
        )
        self.stats_blips = Gauge(
            p + "stats_blips",
            "Alerts of the window's incidents that fired and resolved within group_wait.",
            stats,
            registry=r,
        )
        self.stats_not_useful_ratio = Gauge(
            p + "stats_not_useful_ratio",
            "Share of the window's incidents with feedback that someone marked not useful.",
            stats,
            registry=r,
        )
        self.stats_mtta_seconds_p50 = Gauge(
            p + "stats_mtta_seconds_p50",
            "Median time from first notification to first acknowledgement.",
            stats,
            registry=r,
        )
        self.stats_mttr_seconds_p50 = Gauge(
            p + "stats_mttr_seconds_p50",
            "Median time from the incident's start to its first resolve.",
            stats,
            registry=r,
        )
        self.stats_ack_ratio = Gauge(
            p + "stats_ack_ratio",
            "Share of the window's notified incidents that someone acknowledged.",
            stats,
            registry=r,
        )
        self.stats_revenue_quantified_ratio = Gauge(
            p + "stats_revenue_quantified_ratio",
            "Share of the window's notified incidents with a revenue-at-risk figure.",
            stats,
            registry=r,
        )
        self.stats_revenue_at_risk = Gauge(
            p + "stats_revenue_at_risk",
            "Revenue at risk over the window's incidents: per minute × minutes open.",
            stats,
            registry=r,
        )
        self.stats_change_to_detection_seconds_p50 = Gauge(
            p + "stats_change_to_detection_seconds_p50",
            "Median time from the change named as probable cause to the incident's start.",
            stats,
            registry=r,
        )
        self.stats_minutes_degraded = Gauge(
            p + "stats_minutes_degraded",
            "Minutes of the window in which the journey had an open P1-P3 incident.",
            stats,
            registry=r,
        )

        # Journey health, recomputed from the open incidents (refresh_journey_metrics).
        self.journey_open_incidents = Gauge(
            p + "journey_open_incidents",
            "Open incidents touching the journey's stage, by the priority of their last "
            "decision (all replicas); an incident touching two stages counts in both.",
            ["journey", "stage", "priority"],
            registry=r,
        )
        self.journey_kpi_deviation_percent = Gauge(
            p + "journey_kpi_deviation_percent",
            "The KPI's worst deviation from its baseline, in percent, among the journey's "
            "open incidents (the one furthest in its bad direction).",
            ["journey", "kpi"],
            registry=r,
        )
        self.journey_degraded_seconds = Gauge(
            p + "journey_degraded_seconds",
            "Seconds since the earliest start of the journey's open P1-P3 incidents; 0 when "
            "it has none.",
            ["journey"],
            registry=r,
        )

    def observe_store(self, op: str, seconds: float) -> None:
        self.store_latency.labels(op).observe(seconds)


# The journey-health gauges read at most the newest OPEN_READ open incidents.
OPEN_READ = 10_000
# The priorities at which a journey counts as degraded (as minutes_degraded of the stats).
DEGRADED = frozenset({"P1", "P2", "P3"})


@dataclass(frozen=True, slots=True)
class JourneyHealth:
    """What the ``journey_receiver_journey_*`` gauges say, keyed by their labels."""

    open_incidents: Mapping[tuple[str, str, str], int]
    kpi_deviation_percent: Mapping[tuple[str, str], float]
    degraded_seconds: Mapping[str, float]


def journey_health(
    incidents: Iterable[IncidentState], now_ms: int, stages: Mapping[str, Sequence[str]]
) -> JourneyHealth:
    """The journey-health figures of the open ``incidents`` at ``now_ms``. ``stages`` maps
    each configured journey to its stages (``unmapped`` to none): those show 0 without
    incidents; a journey or stage no longer configured shows while it has open incidents.

    An incident counts once its first decision gave it a priority (after group_wait), at
    the priority of its last decision; one that matched no stage counts under stage "".
    """
    counts: dict[tuple[str, str, str], int] = {
        (journey, stage, priority): 0
        for journey, ids in stages.items()
        for stage in (ids or [""])
        for priority in PRIORITIES
    }
    # (journey, kpi) -> (how far it moved in its bad direction, its deviation).
    worst: dict[tuple[str, str], tuple[float, float]] = {}
    degraded_since: dict[str, int | None] = dict.fromkeys(stages)
    for state in incidents:
        if state.status != "open":
            continue
        journey = state.journey
        degraded_since.setdefault(journey, None)
        for kpi in state.kpis:
            if kpi.deviation_pct is None:
                continue
            moved = -kpi.deviation_pct if kpi.bad_when == "down" else kpi.deviation_pct
            if moved > worst.get((journey, kpi.name), (-math.inf, 0.0))[0]:
                worst[journey, kpi.name] = (moved, kpi.deviation_pct)
        if state.priority is None:
            continue
        for stage in sorted(state.stages) or [""]:
            key = (journey, stage, state.priority)
            counts[key] = counts.get(key, 0) + 1
        since = degraded_since[journey]
        if state.priority in DEGRADED and (since is None or state.started < since):
            degraded_since[journey] = state.started
    return JourneyHealth(
        open_incidents=counts,
        kpi_deviation_percent={key: deviation for key, (_, deviation) in worst.items()},
        degraded_seconds={
            journey: 0.0 if since is None else max(0, now_ms - since) / 1000
            for journey, since in degraded_since.items()
        },
    )


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
    incidents = await receiver.store.list_incidents("open", None, OPEN_READ)
    stages = {j.id: [s.id for s in j.stages] for j in receiver.settings.catalog.journeys}
    health = journey_health(incidents, receiver.pipeline.now_ms(), stages)
    publish_journey_health(receiver.metrics, health)
    return health
