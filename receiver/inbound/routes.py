"""The ``/inbound/*`` endpoints. No bearer token: the vendor's signature is the credential.

Each runs in this order: the vendor configured (else 404: a webhook nobody can verify
changes nothing), the body within ``server.max_body_bytes`` (413), the signature (401),
the JSON (400/422), the incident (404); then one atomic ``annotate`` in the store, once per
vendor delivery id (vendors deliver at least once). Every refusal is a JSON error and
changes nothing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from receiver.inbound import jira, pagerduty
from receiver.inbound.signatures import verify_jira, verify_pagerduty
from receiver.store.base import Annotation
from receiver.store.records import IncidentState

if TYPE_CHECKING:
    from receiver.app import Receiver

logger = logging.getLogger("journey_receiver.inbound")


def refused(status: int, message: str, request: Request) -> JSONResponse:
    # Where from and why, never what was sent: a body that fails its signature is untrusted.
    logger.warning(
        "%d on %s from %s: %s",
        status,
        request.url.path,
        request.client.host if request.client else "unknown client",
        message,
    )
    return JSONResponse({"error": message}, status_code=status)


def not_configured(vendor: str, field: str) -> JSONResponse:
    return JSONResponse(
        {"error": f"{vendor} webhooks are not configured here (inbound.{field})"},
        status_code=404,
    )


async def record(
    receiver: Receiver, incident_id: str, annotation: Annotation | None
) -> JSONResponse:
    if annotation is None:
        return JSONResponse({"status": "ignored", "incident": incident_id})
    outcome = await receiver.store.annotate(incident_id, annotation, receiver.pipeline.now_ms())
    if outcome == "unknown":
        return JSONResponse({"error": "no such incident"}, status_code=404)
    status = "recorded" if outcome == "ok" else "already recorded"
    return JSONResponse({"status": status, "incident": incident_id})


async def load_state(receiver: Receiver, incident_id: str) -> IncidentState | None:
    stored = await receiver.store.load(incident_id) if incident_id else None
    return stored.state if stored else None


async def pagerduty_webhook(request: Request, receiver: Receiver, body: bytes) -> Response:
    secrets = receiver.settings.config.inbound.pagerduty.all_secrets()
    if not secrets:
        return not_configured("PagerDuty", "pagerduty.signing_secrets")
    if not verify_pagerduty(body, request.headers.get("x-pagerduty-signature"), secrets):
        return refused(401, "X-PagerDuty-Signature does not match a signing secret", request)
    event = pagerduty.parse(body)
    cache = receiver.store.cache
    incident_id = event.data.incident_key or ""
    pd_incident = event.pagerduty_incident
    if not incident_id and pd_incident:
        incident_id = await cache.get(pagerduty.CACHE_NAMESPACE, pd_incident) or ""
    state = await load_state(receiver, incident_id)
    if state is None:
        return JSONResponse(
            {"error": f"no incident of this receiver for PagerDuty event {event.id}"},
            status_code=404,
        )
    if pd_incident and event.data.incident_key:
        retention = receiver.settings.config.store.retention
        await cache.set(pagerduty.CACHE_NAMESPACE, pd_incident, state.id, round(retention * 1000))
    now = receiver.pipeline.now_ms()
    return await record(receiver, state.id, pagerduty.annotation(event, state, now))


async def jira_webhook(request: Request, receiver: Receiver, body: bytes) -> Response:
    secrets = receiver.settings.config.inbound.jira.all_secrets()
    if not secrets:
        return not_configured("Jira", "jira.secret")
    if not verify_jira(
        body,
        request.query_params.get("secret"),
        request.headers.get("x-hub-signature"),
        secrets,
    ):
        return refused(401, "neither X-Hub-Signature nor ?secret= matches inbound.jira", request)
    event = jira.parse(body)
    for incident_id in event.incident_ids:
        state = await load_state(receiver, incident_id)
        if state is not None:
            delivery = request.headers.get("x-atlassian-webhook-identifier")
            now = receiver.pipeline.now_ms()
            return await record(receiver, state.id, jira.annotation(event, state, now, delivery))
    issue = event.issue.key if event.issue else "(none)"
    return JSONResponse({"error": f"issue {issue} is not an incident's"}, status_code=404)
