"""``replay --context``: each decision's context read at its virtual time.

The receiver's own enricher (``receiver/enrich/enricher.py``), built from the config's
``prometheus`` and ``events`` sections: a journey's KPIs are evaluated at the decision's
virtual time against ``baseline_offset`` before it — the query the scheduler would have
run then — and the change feeds of ``events.feeds`` are asked for that window. The KPIs
come from the config's ``prometheus.url``, else from the replay's ``--prometheus``.

Change events posted to the receiver (``POST /api/v1/events``) live in its store, which a
replay does not read: only the feeds' changes can be probable causes here.

An open incident of a journey with KPIs is looked at every ``group_interval``, and each
look also asks for the KPI's value when the incident started, which is the same every
time: ``_PastKpis`` asks Prometheus for an instant once per replay (the window is in the
past, so its answer cannot change; a failed query is not kept). It cuts the queries of a
context replay by about two fifths.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from receiver.config.receiver_yaml import PrometheusConfig
from receiver.enrich.enricher import Enricher
from receiver.enrich.feed_registry import build_feeds
from receiver.enrich.prometheus import PrometheusKpis, _Job
from receiver.settings import Settings


class _PastKpis(PrometheusKpis):
    """``PrometheusKpis`` that asks for each instant query once (the window is past)."""

    def __init__(self, config: PrometheusConfig) -> None:
        super().__init__(config)
        self._answers: dict[tuple[str, float], object] = {}
        self._lock = threading.Lock()

    def _fetch(self, job: _Job, timeout: float) -> object:
        if job.until is not None:  # now and the baseline: a new pair at every look
            return super()._fetch(job, timeout)
        key = (job.query, job.at.timestamp())
        with self._lock:
            if key in self._answers:
                return self._answers[key]
        answer = super()._fetch(job, timeout)  # raises on failure: nothing kept
        with self._lock:
            self._answers[key] = answer
        return answer


def enricher_for(prometheus_url: str) -> Callable[[Settings], Enricher]:
    """Builds, for each replay's settings, an enricher of its own (a replay closes it)."""

    def build(settings: Settings) -> Enricher:
        cfg = settings.config
        prometheus = cfg.prometheus
        if prometheus.url is None:
            prometheus = prometheus.model_copy(update={"url": prometheus_url})
        return Enricher(
            None,  # the receiver's stored change events are not the replay's to read
            _PastKpis(prometheus),
            build_feeds(cfg.events.feeds),
            lookback_s=cfg.events.lookback,
            baseline_offset_s=prometheus.baseline_offset,
            scope_labels=cfg.events.scope_labels,
        )

    return build
