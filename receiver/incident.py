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
from receiver.store.records import AlertPage, IncidentState, StoredAlert

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
    alerts_omitted: int
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


def title(state: IncidentState, impact: Impact) -> str:
    where = location(state.group_labels)
    head = f"{state.journey}/{where}" if where else state.journey
    if state.status == "resolved":
        what = f"resolved: {state.alert_count} alert(s) in {_listing(sorted(state.services))}"
    else:
        firing = sorted(state.firing_services)
        what = f"{state.firing_count} alert(s) firing in {_listing(firing)}"
    text = f"{head} {impact.priority} — {what}"
    return text if len(text) <= TITLE_MAX else text[: TITLE_MAX - 1] + "…"


def summary(state: IncidentState, journey: Journey, impact: Impact) -> str:
    where = ", ".join(f"{k} {v}" for k, v in state.group_labels.items() if v) or "all locations"
    stages = ", ".join(sorted(state.stages)) or "no stage matched"
    lines = [
        f"{journey.name} ({state.journey}) in {where}: {state.firing_count} of "
        f"{state.alert_count} alert(s) firing across {_listing(sorted(state.services), 6)} "
        f"since {rfc3339(state.first_firing_at)}; stages: {stages}.",
    ]
    severity = next((f.reason for f in impact.factors if f.name == "severity"), None)
    if severity and state.firing_count:
        lines.append(severity[0].upper() + severity[1:] + ".")
    lines.append(f"Impact score {impact.score:g}/100 → {impact.priority}.")
    if state.status == "resolved":
        lines.append(f"Resolved at {rfc3339(state.resolved_at)}.")
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


def build(state: IncidentState, page: AlertPage, journey: Journey, impact: Impact) -> Incident:
    owner = journey.owner
    return Incident(
        id=state.id,
        key=state.key,
        journey=state.journey,
        journey_name=journey.name,
        stages=sorted(state.stages),
        status=state.status,
        priority=impact.priority,
        score=impact.score,
        score_breakdown=[f.model_dump() for f in impact.factors],
        title=title(state, impact),
        summary=summary(state, journey, impact),
        group_labels=state.group_labels,
        services=sorted(state.services),
        regions=sorted(state.regions),
        alerts=[_alert_json(a) for a in page.alerts],
        alerts_omitted=page.total - len(page.alerts),
        alert_count=state.alert_count,
        firing_count=state.firing_count,
        kpis=[],
        changes=[],
        probable_causes=[],
        runbooks=_runbooks(journey, page.alerts),
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
            {"time": rfc3339(e.at) or "", "kind": e.kind, "text": e.text} for e in state.timeline
        ],
        timeline_omitted=state.timeline_dropped,
        sinks=state.sinks,
        context_notes=[],
        blips=state.blips,
        truncated_alerts=state.truncated_alerts,
        created_at=rfc3339(state.created_at) or "",
        notified_at=rfc3339(state.notified_at),
        updated_at=rfc3339(state.updated_at) or "",
        resolved_at=rfc3339(state.resolved_at),
        reopened_count=state.reopened_count,
        feedback=[{**f.model_dump(exclude_none=True), "at": rfc3339(f.at)} for f in state.feedback],
    )
