"""The incident as people and sinks see it: title, summary, members, timeline. Pure.

Built from the stored state on every read and every notification, so a wording change
applies to old incidents too. Wording is deterministic: tests assert on it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from receiver.config import Journey
from receiver.scoring import Impact
from receiver.store.records import StoredAlert, StoredIncident

TITLE_MAX = 120
_QUIET_ENVS = frozenset({"prod", "production"})


class Incident(BaseModel):
    """The incident object of SPEC ("Incident object"), ready to serialise."""

    model_config = ConfigDict(frozen=True)

    id: str
    key: str
    journey: str
    journey_name: str
    stages: list[str]
    status: str
    priority: str
    score: float
    score_breakdown: list[dict[str, Any]]
    title: str
    summary: str
    group_labels: dict[str, str]
    services: list[str]
    regions: list[str]
    alerts: list[dict[str, Any]]
    alert_count: int
    firing_count: int
    kpis: list[dict[str, Any]]
    changes: list[dict[str, Any]]
    probable_causes: list[dict[str, Any]]
    runbooks: list[dict[str, str]]
    suggested_actions: list[dict[str, Any]]
    automation: str
    owner: dict[str, Any]
    timeline: list[dict[str, str]]
    timeline_omitted: int
    sinks: dict[str, dict[str, str]]
    context_notes: list[str]
    blips: int
    truncated_alerts: int
    created_at: str
    notified_at: str | None
    updated_at: str
    resolved_at: str | None
    reopened_count: int
    feedback: list[dict[str, Any]]


def rfc3339(ms: int | None) -> str | None:
    if ms is None:
        return None
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def location(group_labels: dict[str, str]) -> str:
    """``eu`` for {env: prod, region: eu}: production is the normal case, so it is not
    spelled out; any other group label value is."""
    parts = [
        v for k, v in group_labels.items() if v and not (k == "env" and v.lower() in _QUIET_ENVS)
    ]
    return "/".join(parts)


def _listing(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" +{len(names) - limit} more" if len(names) > limit else "")


def _worst(alerts: list[StoredAlert], impact: Impact) -> str | None:
    for factor in impact.factors:
        if factor.name == "severity" and alerts:
            return factor.reason
    return None


def title(stored: StoredIncident, impact: Impact) -> str:
    st = stored.state
    where = location(st.group_labels)
    head = f"{st.journey}/{where}" if where else st.journey
    firing_services = sorted({a.service for a in stored.alerts if a.status == "firing"})
    if st.status == "resolved":
        what = f"resolved: {st.alert_count} alert(s) in {_listing(sorted(st.services))}"
    else:
        what = f"{st.firing_count} alert(s) firing in {_listing(firing_services)}"
    text = f"{head} {impact.priority} — {what}"
    return text if len(text) <= TITLE_MAX else text[: TITLE_MAX - 1] + "…"


def summary(stored: StoredIncident, journey: Journey, impact: Impact) -> str:
    st = stored.state
    where = ", ".join(f"{k} {v}" for k, v in st.group_labels.items() if v) or "all locations"
    since = rfc3339(st.first_firing_at)
    stages = ", ".join(sorted(st.stages)) or "no stage matched"
    lines = [
        f"{journey.name} ({st.journey}) in {where}: {st.firing_count} of {st.alert_count} "
        f"alert(s) firing across {_listing(sorted(st.services), 6)} since {since}; "
        f"stages: {stages}.",
    ]
    worst = _worst(stored.alerts, impact)
    if worst:
        lines.append(worst[0].upper() + worst[1:] + ".")
    lines.append(f"Impact score {impact.score:g}/100 → {impact.priority}.")
    if st.status == "resolved":
        lines.append(f"Resolved at {rfc3339(st.resolved_at)}.")
    return " ".join(lines)


def _alert_json(a: StoredAlert) -> dict[str, Any]:
    return {
        "fingerprint": a.fp,
        "status": a.status,
        "labels": a.labels,
        "annotations": a.annotations,
        "startsAt": rfc3339(a.starts_at),
        "endsAt": rfc3339(a.ends_at),
        "generatorURL": a.generator_url,
        "stage": a.stage,
        "service": a.service,
        "severity": a.severity,
    }


def _runbooks(journey: Journey, alerts: list[StoredAlert]) -> list[dict[str, str]]:
    live = [a for a in alerts if a.status == "firing"] or alerts
    return [
        {"title": rb.title, "url": rb.url}
        for rb in journey.runbooks
        if not rb.match or any(all(m.matches(a.labels) for m in rb.match) for a in live)
    ]


def build(stored: StoredIncident, journey: Journey, impact: Impact) -> Incident:
    st = stored.state
    owner = journey.owner
    return Incident(
        id=st.id,
        key=st.key,
        journey=st.journey,
        journey_name=journey.name,
        stages=sorted(st.stages),
        status=st.status,
        priority=impact.priority,
        score=impact.score,
        score_breakdown=[f.model_dump() for f in impact.factors],
        title=title(stored, impact),
        summary=summary(stored, journey, impact),
        group_labels=st.group_labels,
        services=sorted(st.services),
        regions=sorted(st.regions),
        alerts=[_alert_json(a) for a in stored.alerts],
        alert_count=st.alert_count,
        firing_count=st.firing_count,
        kpis=[],
        changes=[],
        probable_causes=[],
        runbooks=_runbooks(journey, stored.alerts),
        suggested_actions=[],
        automation=journey.automation,
        owner={
            "team": owner.team,
            "routing": {
                "slack_channel": owner.slack_channel,
                "jira_project": owner.jira_project,
                "pagerduty": "journey" if owner.pagerduty_routing_key else "default",
            },
        },
        timeline=[
            {"time": rfc3339(e.at) or "", "kind": e.kind, "text": e.text} for e in st.timeline
        ],
        timeline_omitted=st.timeline_dropped,
        sinks=st.sinks,
        context_notes=[],
        blips=st.blips,
        truncated_alerts=st.truncated_alerts,
        created_at=rfc3339(st.created_at) or "",
        notified_at=rfc3339(st.notified_at),
        updated_at=rfc3339(st.updated_at) or "",
        resolved_at=rfc3339(st.resolved_at),
        reopened_count=st.reopened_count,
        feedback=[f.model_dump(exclude_none=True) for f in st.feedback],
    )
