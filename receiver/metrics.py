"""The receiver's own metrics, named after the steps of the flow.

Each app owns its registry, so several receivers can run in one process (tests do).

The ``journey_receiver_journey_*`` gauges are the one exception to "set where it happens":
``receiver/outcomes/health.py`` recomputes them from the open incidents in the store.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
_NOTIFY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)


_READ_OPS = frozenset({"load"})
"""Store operations that only read: they do not show that the store takes writes."""


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
            "batch), resolved (no longer held), suppressed (newly silenced or inhibited), "
            "fired_again (resolved here, held again since).",
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
        self.action_runs = Counter(
            p + "action_runs",
            "Decisions about running an action, by journey, action and status (ran, failed, "
            "refused, skipped, dry_run).",
            ["journey", "action", "status"],
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
            "Minutes of the window in which the journey was degraded: an open incident at "
            "or above its slo.degraded_at (default P3), or a KPI of one out of its band.",
            stats,
            registry=r,
        )
        self.stats_slo_attainment_ratio = Gauge(
            p + "stats_slo_attainment_ratio",
            "Share of the window in which the journey was not degraded.",
            stats,
            registry=r,
        )
        self.stats_slo_objective_ratio = Gauge(
            p + "stats_slo_objective_ratio",
            "The journey's slo.objective as a ratio (only journeys that set one): alert "
            "when stats_slo_attainment_ratio falls below it.",
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
            "Seconds since the earliest start of the journey's open incidents at or above "
            "its slo.degraded_at (default P3); 0 when it has none.",
            ["journey"],
            registry=r,
        )

        # The children every webhook request counts into, looked up once: ``labels()``
        # takes a lock and builds a key each time, a few percent of a one-alert request.
        self.webhook_accepted = self.webhook_requests.labels("200")
        self.alerts_firing = self.alerts_received.labels("firing")
        self.alerts_resolved = self.alerts_received.labels("resolved")
        self._store_ops: dict[str, Histogram] = {}

    def observe_store(self, op: str, seconds: float) -> None:
        """A store operation that reached the store (the scheduler's too, not only the
        requests', so that store_up is true in a quiet hour). Only a write says the store
        is up: a replica Redis (READONLY) or one that stopped writes (MISCONF) answers
        reads, and the reads of probes and dashboards would reset store_up to 1 between
        the failing webhooks and ticks."""
        if op not in _READ_OPS:
            self.store_up.set(1)
        child = self._store_ops.get(op)
        if child is None:
            child = self._store_ops[op] = self.store_latency.labels(op)
        child.observe(seconds)
