"""``/incidents/{id}``: one incident as a chart, its feedback form and its Run buttons.

The page reads the incident as ``GET /api/v1/incidents/{id}`` does (``store.load``, then
``pipeline.incident``) and records feedback as ``POST /api/v1/incidents/{id}/feedback``
does (``receiver.feedback.record_feedback``). Every label and annotation is alert text, so
untrusted: the template escapes it, and a link is only made of an http(s) URL
(:func:`web_url`). The KPI charts are the one piece of markup not made by the template:
SVG from ``receiver.web.charts``, which escapes its own text.

Run (a journey at ``assist`` or ``auto``, an open incident, a runnable action) is two
POSTs to ``/incidents/{id}/actions/{action}/run``, so it works without JavaScript: the
first answers with a page asking to confirm, the second (``confirm=yes``) presses Run as
Slack's button does (``receiver.runs.press``) and sends the browser back to the incident,
told a fixed sentence per answer (``?ran=<status>``) above the recorded runs. The
confirmation carries what it showed of the action (``shown``): a press runs that or
nothing, as the probable cause may move while the page is open.

Who pressed it: both POSTs need the write role (a session signed in with a write token,
or writes open), else the refused page. The person is the viewer's name, lowercased as
its only id (:func:`person_of`): the name typed at sign-in, or the trusted proxy's user.
``press`` runs the action only when that name is one of the journey's
``owner.responders`` (so write it there as people sign in, e.g. their e-mail address) and
records a refusal otherwise. The name typed at sign-in is the person's word, not proven:
anyone holding a write token can type a responder's name, so on the pages the responders
list narrows who runs an action by mistake, and the write token is what keeps strangers
out. A viewer known by the trusted proxy's header may read only, so presses nothing.
"""

from __future__ import annotations

import logging
import re
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import anyio
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from receiver.act import STATUS_WORDS
from receiver.act.levels import Person, shows_run_button
from receiver.act.outcome import VERDICT_WORDS
from receiver.act.runs import DONE
from receiver.causes import change_of
from receiver.feedback import Feedback, record_feedback
from receiver.incident import Incident, number
from receiver.logtext import printable
from receiver.store.records import CauseRecord, IncidentState
from receiver.web.auth import Viewer
from receiver.web.pages import FormError, Visit, form, render
from receiver.web.series import ChartUnavailable, KpiSeries, kpi_series

if TYPE_CHECKING:
    from receiver.app import Receiver

logger = logging.getLogger("journey_receiver.web")

FIXED_OTHER = ""
"""The ``fixed_by`` choice meaning "none of the suggested actions" (the free text says)."""
NO_NAME = "someone with no name (writes are open)"
"""``by`` of a press from a viewer the pages know no name of: no responder is called that."""

RAN: dict[str, str] = {
    "queued": "Asked to run. It runs in a moment; its result shows under Runs.",
    "refused": "Not run: refused. The reason is recorded under Runs.",
    "dry_run": "Not run: automation.dry_run is on, so nothing was called. Recorded under Runs.",
    "already": (
        "Not run again: it already ran, failed, or was already asked for, on this incident."
    ),
}
"""What the incident page says after a confirmed Run, per ``Answer.status``: fixed text,
so nothing of the query is ever shown."""
_PRESS = re.compile(r"[A-Za-z0-9_-]{16}")


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


def _change_url(state: IncidentState, cause: CauseRecord) -> str | None:
    """The link of the change a cause names (the deploy's page, say), when its event gave
    one: what on-call opens first."""
    change = change_of(state, cause)
    return web_url(change.url) if change is not None else None


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
            "cause_urls": [_change_url(stored.state, c) for c in stored.state.probable_causes],
            "silences": [{**s, "url": web_url(s.get("url"))} for s in incident.silences],
            "similar_gone": await _similar_gone(receiver, incident),
            "may_write": visit.viewer is not None and visit.viewer.may("write"),
            "thanks": request.query_params.get("thanks") == "1",
            "fixed_other": FIXED_OTHER,
            # One per page shown: a form sent twice (a double click, a resend after a
            # slow answer) is recorded once, and its Slack thread told once.
            "sent": secrets.token_urlsafe(12),
            "run_here": _runs_here(incident),
            "runs": [_run(r) for r in reversed(incident.actions_run)],
            "done": {
                r.get("action"): r.get("status")
                for r in incident.actions_run
                if r.get("status") in DONE
            },
            "ran": RAN.get(request.query_params.get("ran", "")),
            "number": number,
        },
    )


async def _similar_gone(receiver: Receiver, incident: Incident) -> set[str]:
    """The similar past incidents the store no longer keeps: taken at the opening, each is
    older than this one and goes first, once its ``store.retention`` is over."""
    ids = [str(s["id"]) for s in incident.similar]
    found = await receiver.store.load_many(ids) if ids else []
    return {i for i, stored in zip(ids, found, strict=True) if stored is None}


def person_of(viewer: Viewer | None) -> Person:
    """The person pressing Run on a page: the viewer's name (typed at sign-in, or the
    trusted proxy's user) is both who the incident records and, lowercased, the one id
    matched against ``owner.responders``. A viewer with no name matches nobody."""
    name = viewer.name if viewer is not None and viewer.name else None
    return Person.of(name or NO_NAME, [name] if name else [])


async def post_run(request: Request, receiver: Receiver) -> Response:
    """Run an action: without ``confirm=yes`` the page asking to confirm, with it the press
    (once per confirmation page: a double submit is one press) and back to the incident."""
    incident_id = request.path_params["incident_id"]
    key = request.path_params["action_id"]
    fields = await form(request)
    stored = await receiver.store.load(incident_id)
    if stored is None:
        return render(request, "incident_missing.html", {"incident_id": incident_id}, status=404)
    here = f"/incidents/{quote(incident_id, safe='')}"
    if fields.get("confirm") != "yes":
        incident = await receiver.pipeline.incident(stored)
        action = next((a for a in incident.suggested_actions if a.get("id") == key), None)
        return render(
            request,
            "run_confirm.html",
            {
                "incident": incident,
                "key": key,
                "title": action["title"] if action else key,
                "suggested": action is not None,
                "shown": incident.shown_values.get(key),
                "back": f"{here}#actions",
                "press": secrets.token_urlsafe(12),
            },
        )
    visit: Visit = request.state.visit
    person = person_of(visit.viewer)
    press = fields.get("press", "")
    press_id = f"web:{press}" if _PRESS.fullmatch(press) else None
    shown = fields.get("shown")
    answer = await receiver.runs.press(stored.state, key, person, press_id, shown)
    logger.info(
        "Run of %s on incident %s pressed on its page by %s: %s",
        printable(key),  # the URL's: any action a writer types, line breaks included
        incident_id,
        person.who,
        answer.status,
    )
    return RedirectResponse(f"{here}?ran={answer.status}#runs", status_code=303)


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
    sent = fields.get("sent", "")
    once = f"web:feedback:{sent}" if _PRESS.fullmatch(sent) else None
    outcome = await record_feedback(
        receiver.store,
        receiver.pipeline.sinks,
        incident_id,
        feedback,
        receiver.pipeline.now_ms(),
        once,
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


def _runs_here(incident: Incident) -> str | None:
    """Why the page shows no Run button on this incident; None when it shows them."""
    if not shows_run_button(incident.automation):
        return f"The journey is at {incident.automation}: its actions are not run from here."
    if incident.status != "open":
        return "The incident is resolved: its actions are not run any more."
    return None


def _run(run: dict[str, Any]) -> dict[str, Any]:
    """One entry of ``actions_run`` as the page shows it, its status and verdict in words."""
    status = str(run.get("status", ""))
    told = run.get("outcome")
    outcome = None
    if isinstance(told, dict):
        verdict = str(told.get("verdict", ""))
        outcome = {
            "verdict": verdict,
            "words": VERDICT_WORDS.get(verdict, verdict),
            "because": told.get("because", ""),
            "at": told.get("at") or "",
        }
    return {
        "title": run.get("title") or run.get("action", ""),
        "status": status,
        "words": STATUS_WORDS.get(status, status),
        "by": run.get("by", ""),
        "at": run.get("at") or "",
        "result": run.get("result", ""),
        "outcome": outcome,
    }


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
        # Why Alertmanager holds it quiet (silenced, inhibited), as the last reconcile found.
        "suppressed": alert.get("suppressed") or "",
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
