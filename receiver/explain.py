"""``journey-receiver explain``: what the receiver would do with a webhook body. No network.

It runs the same pure steps as the live flow — placement, key, score, title, routing — on
an incident made of this batch alone, as if group_wait had just ended.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from receiver import config
from receiver.enrich.enricher import Enricher, apply
from receiver.enrich.prometheus import PrometheusKpis
from receiver.incident import build, number
from receiver.normalize import normalize
from receiver.placement import place
from receiver.settings import Settings
from receiver.store import AlertGroup
from receiver.store.records import AlertPage, IncidentState, StoredAlert
from receiver.terminal import escaped
from receiver.topology import Ranking
from receiver.webhook import parse_webhook


@dataclass(frozen=True, slots=True)
class ExplainReport:
    alerts: list[dict[str, Any]]
    incidents: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        return {"alerts": self.alerts, "incidents": self.incidents}

    def as_text(self) -> str:
        out = [f"{len(self.alerts)} alert(s) → {len(self.incidents)} incident(s)", ""]
        out.append("Alerts:")
        for a in self.alerts:
            out.append(
                f"  {a['fingerprint']}  {a['status']:<8} {a['alertname'] or '-'} on "
                f"{a['service']}: journey {a['journey']}, stage {a['stage'] or '-'} "
                f"→ {a['key']}"
            )
        for inc in self.incidents:
            out += ["", f"Incident {inc['key']}", f"  title:    {inc['title']}"]
            out.append(f"  summary:  {inc['summary']}")
            out.append(f"  priority: {inc['priority']} (score {inc['score']:g}/100)")
            for f in inc["score_breakdown"]:
                out.append(f"    {f['name']:<13} {f['value']:<6g} {f['reason']}")
            for k in inc["kpis"]:
                if k["deviation_pct"] is not None:
                    dev = f"{k['deviation_pct']:+.1f}%"
                elif k["value"] is not None and k["baseline"] is not None:
                    # From a baseline of zero there is no percentage, yet it was measured.
                    dev = f"{number(k['baseline'])} \u2192 {number(k['value'])}"
                else:
                    dev = "no data"
                out.append(f"  kpi:      {k['name']} {dev} vs {k['vs']}")
            upstream = inc["upstream"]
            if upstream["ranking"]:
                lead = upstream["service"] or "unknown"
                out.append(f"  upstream: {lead} ({'; '.join(upstream['evidence'])})")
            for note in inc["context_notes"]:
                out.append(f"  note:     {note}")
            out.append(f"  sinks:    {', '.join(inc['sinks']) or 'none (routing matched none)'}")
        # Alert text fills most lines: none may break into a line of its own or steer the
        # terminal. Escaped line by line, so the report's own line breaks stay.
        return "\n".join(map(escaped, out))


def incident_of(group: AlertGroup, now_ms: int) -> tuple[IncidentState, AlertPage]:
    """The state and alerts an incident made of this group alone would have."""
    alerts = [
        StoredAlert(
            fp=p.alert.fingerprint,
            status=p.alert.status,
            labels=p.alert.labels,
            annotations=p.alert.annotations,
            # Milliseconds as the store keeps them: truncated (receiver/store/redis.py _ms).
            starts_at=int(p.alert.starts_at.timestamp() * 1000) if p.alert.starts_at else None,
            ends_at=int(p.alert.ends_at.timestamp() * 1000) if p.alert.ends_at else None,
            generator_url=p.alert.generator_url,
            stage=p.stage,
            service=p.service,
            severity=p.severity,
            first_seen=now_ms,
            changed_at=now_ms,
        )
        for p in group.alerts
    ]
    firing = [p for p in group.alerts if p.alert.status == "firing"]
    state = IncidentState(
        id="(dry-run)",
        key=group.key.text,
        digest=group.key.digest,
        journey=group.key.journey,
        group_labels=group.key.label_map(),
        status="open",
        created_at=now_ms,
        updated_at=now_ms,
        first_firing_at=now_ms,
        started_at=min(
            (
                a.starts_at
                for a in alerts
                if a.status == "firing" and a.starts_at is not None and 0 < a.starts_at <= now_ms
            ),
            default=now_ms,
        ),
        last_change_at=now_ms,
        alert_count=len(alerts),
        firing_count=len(firing),
        services={p.service: now_ms for p in group.alerts},
        stages={p.stage: now_ms for p in group.alerts if p.stage},
        regions={p.region: now_ms for p in group.alerts if p.region},
        firing_classes=dict(Counter(p.impact_class for p in firing)),
        firing_services=dict(Counter(p.service for p in firing)),
    )
    return state, AlertPage(alerts=alerts, total=len(alerts))


async def _context(
    settings: Settings,
    states: list[IncidentState],
    rankings: list[Ranking],
    url: str | None,
    at_ms: int,
) -> list[IncidentState]:
    """Each incident with its context as the live enrichment makes it: the upstream
    service ranked as a cause, and, with ``url``, its journey's KPIs from that Prometheus."""
    prometheus = settings.config.prometheus.model_copy(update={"url": url})
    source = PrometheusKpis(prometheus) if url else None
    try:
        # No store and no feeds: a dry run knows no change events (so its lookback is 0:
        # no evidence may say no change came before).
        enricher = Enricher(
            None, source, [], lookback_s=0,
            baseline_offset_s=settings.config.prometheus.baseline_offset,
            scope_labels=settings.config.events.scope_labels,
        )  # fmt: skip
        return [
            apply(st, await enricher.enrich(st, settings.catalog.find(st.journey), at_ms, r), at_ms)
            for st, r in zip(states, rankings, strict=True)
        ]
    finally:
        if source is not None:
            await source.aclose()


def explain_batch(
    body: bytes,
    config_path: Path | None,
    journeys_path: Path | None,
    now_ms: int = 0,
    prometheus_url: str | None = None,
) -> ExplainReport:
    """With ``prometheus_url``, KPIs are read from it at ``now_ms`` (the time of the dry
    run when 0); that is the only network the dry run uses."""
    if config_path is None:
        cfg = config.ReceiverConfig()
        journeys = (
            config.load_journeys(journeys_path, cfg, offline=True)
            if journeys_path
            else config.JourneysConfig()
        )
    else:
        # It neither listens nor sends: the operators' secrets and credentials may be unset.
        cfg, journeys = config.load(config_path, journeys_path, offline=True)
    settings = Settings.build(cfg, journeys)
    groups = place(normalize(parse_webhook(body)), settings)
    alerts = [
        {
            "fingerprint": p.alert.fingerprint,
            "status": p.alert.status,
            "alertname": p.alert.labels.get("alertname", ""),
            "service": p.service,
            "journey": g.key.journey,
            "stage": p.stage,
            "key": g.key.text,
        }
        for g in groups
        for p in g.alerts
    ]
    at_ms = now_ms or round(time.time() * 1000)
    # As serve's ingest: resolutions of alerts no incident holds open nothing (a dry run
    # holds none), so a group with nothing firing is no incident, no score, no sink.
    groups = [g for g in groups if any(p.alert.status == "firing" for p in g.alerts)]
    made = [incident_of(g, at_ms) for g in groups]
    states = [state for state, _ in made]
    rankings = [settings.rank_services(page.alerts, at_ms) for _, page in made]
    states = anyio.run(_context, settings, states, rankings, prometheus_url, at_ms)
    incidents = []
    for g, state, (_, page), ranking in zip(groups, states, made, rankings, strict=True):
        impact = settings.impact(state)
        journey = settings.catalog.find(g.key.journey)
        incident = build(state, page, journey, impact, settings.rules.tier_label)
        incidents.append(
            {
                "key": g.key.text,
                "journey": g.key.journey,
                "title": incident.title,
                "summary": incident.summary,
                "priority": impact.priority,
                "score": impact.score,
                "score_breakdown": incident.score_breakdown,
                "alert_count": incident.alert_count,
                "sinks": sorted(settings.sinks_for(impact.priority)),
                "kpis": incident.kpis,
                "context_notes": incident.context_notes,
                # journeys.yaml topology, then startsAt, severity, alert count: never names.
                "upstream": {
                    "service": ranking.upstream.service if ranking.upstream else None,
                    "ranking": [s.service for s in ranking.services],
                    "evidence": ranking.evidence(),
                },
            }
        )
    return ExplainReport(alerts=alerts, incidents=incidents)
