"""``/incidents/{id}``: one incident as a chart, and its feedback form.

The page reads the incident as ``GET /api/v1/incidents/{id}`` does (``store.load``, then
``pipeline.incident``) and records feedback as ``POST /api/v1/incidents/{id}/feedback``
does (``receiver.feedback.record_feedback``). Every label and annotation is alert text, so
untrusted: the template escapes it, and a link is only made of an http(s) URL
(:func:`web_url`). The KPI charts are the one piece of markup not made by the template:
SVG from ``receiver.web.charts``, which escapes its own text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import anyio
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from receiver.feedback import Feedback, record_feedback
from receiver.incident import Incident
from receiver.web.pages import FormError, Visit, form, render
from receiver.web.series import ChartUnavailable, KpiSeries, kpi_series

if TYPE_CHECKING:
    from receiver.app import Receiver

FIXED_OTHER = ""
"""The ``fixed_by`` choice meaning "none of the suggested actions" (the free text says)."""


def web_url(value: object) -> str | None:
    """``value`` when it is an absolute http(s) URL with a host, else None: a link made of
    alert text must never be ``javascript:`` or ``data:``."""
    if not isinstance(value, str) or any(c.isspace() or not c.isprintable() for c in value):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    return value if parts.scheme in ("http", "https") and parts.netloc else None


async def incident_page(request: Request, receiver: Receiver) -> Response:
    incident_id = request.path_params["incident_id"]
    stored = await receiver.store.load(incident_id)
    if stored is None:
        return render(request, "incident_missing.html", {"incident_id": incident_id}, status=404)
    incident = await receiver.pipeline.incident(stored)
    visit: Visit = request.state.visit
    return render(
        request,
        "incident.html",
        {
            "incident": incident,
            "charts": await _charts(receiver, incident),
            "alerts": [_alert(a) for a in incident.alerts],
            "sink_links": _sink_links(receiver, incident),
            "alertmanager_url": web_url(incident.links.get("alertmanager")),
            "silences": [{**s, "url": web_url(s.get("url"))} for s in incident.silences],
            "may_write": visit.viewer is not None and visit.viewer.may("write"),
            "thanks": request.query_params.get("thanks") == "1",
            "fixed_other": FIXED_OTHER,
        },
    )


async def post_incident_feedback(request: Request, receiver: Receiver) -> Response:
    incident_id = request.path_params["incident_id"]
    fields = await form(request)
    fixed = fields.get("fixed_by", FIXED_OTHER).strip()
    text = fields.get("fixed_text", "").strip()
    visit: Visit = request.state.visit
    useful = fields.get("useful")
    if useful not in ("yes", "no"):
        raise FormError(422)
    try:
        feedback = Feedback(
            useful=useful == "yes",
            wrong_cause=True if fields.get("wrong_cause") == "on" else None,
            wrong_grouping=True if fields.get("wrong_grouping") == "on" else None,
            fixed_by=(fixed if fixed != FIXED_OTHER else text) or None,
            note=(text if fixed != FIXED_OTHER and text else None),
            by=(visit.viewer.name if visit.viewer and visit.viewer.name else None),
        )
    except ValidationError as exc:
        raise FormError(422) from exc
    outcome = await record_feedback(
        receiver.store, incident_id, feedback, receiver.pipeline.now_ms()
    )
    if outcome == "unknown":
        return render(request, "incident_missing.html", {"incident_id": incident_id}, status=404)
    target = f"/incidents/{quote(incident_id, safe='')}?thanks=1#feedback"
    return RedirectResponse(target, status_code=303)


async def _charts(receiver: Receiver, incident: Incident) -> list[KpiSeries | ChartUnavailable]:
    journeys = receiver.settings.journeys.journeys
    journey = next((j for j in journeys if j.id == incident.journey), None)
    if journey is None or not journey.kpis:
        return []
    started = _moment(incident.started_at)
    resolved = _moment(incident.resolved_at) if incident.resolved_at else None
    now = datetime.fromtimestamp(receiver.pipeline.now_ms() / 1000, UTC)
    source = receiver.enricher.chart_source
    charts: list[KpiSeries | ChartUnavailable | None] = [None] * len(journey.kpis)

    async def chart(index: int) -> None:
        charts[index] = await kpi_series(
            source,
            journey.kpis[index],
            incident.group_labels,
            started=started,
            resolved=resolved,
            now=now,
        )

    async with anyio.create_task_group() as tasks:
        for index in range(len(journey.kpis)):
            tasks.start_soon(chart, index)
    return [c for c in charts if c is not None]


def _moment(rfc3339: str) -> datetime:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))


def _alert(alert: dict[str, Any]) -> dict[str, Any]:
    labels = alert.get("labels") or {}
    return {
        "name": labels.get("alertname", ""),
        "status": alert.get("status", ""),
        "starts_at": alert.get("startsAt", ""),
        "labels": sorted(labels.items()),
        "annotations": sorted((alert.get("annotations") or {}).items()),
        "url": web_url(alert.get("generatorURL")),
    }


def _sink_links(receiver: Receiver, incident: Incident) -> list[dict[str, str]]:
    """Where the incident lives in each sink it was sent to, with a link when one can be
    made: PagerDuty's incident (its URL as PagerDuty told it), the Slack channel, the Jira
    issue under the configured Jira."""
    shown: list[dict[str, str]] = []
    for name, refs in sorted(incident.sinks.items()):
        url: str | None = None
        what = refs.get("state", "")
        if name == "pagerduty":
            url = web_url(refs.get("url"))
            label = "PagerDuty incident"
        elif name == "slack":
            channel = refs.get("channel", "")
            if channel:
                url = f"https://slack.com/app_redirect?channel={quote(channel, safe='')}"
            label = f"Slack message in {channel}" if channel else "Slack message"
        elif name == "jira":
            key = refs.get("key", "")
            jira = receiver.settings.config.sinks.jira
            if key and jira is not None:
                url = web_url(f"{str(jira.url).rstrip('/')}/browse/{quote(key, safe='')}")
            label = f"Jira issue {key}" if key else "Jira issue"
        else:
            label = name
        shown.append({"name": name, "label": label, "state": what, "url": url or ""})
    return shown
