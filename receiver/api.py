"""HTTP routes only. Checks run in SPEC order: auth (401), size (413), JSON (400), schema (422).

The request path touches the store and nothing slower: enrichment and delivery happen in
the scheduler, after group_wait.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

import anyio
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from receiver.alertmanager.client import AlertmanagerError
from receiver.alertmanager.silences import parse_silence, silence_incident
from receiver.auth import Role
from receiver.errors import ConfigError, PayloadError, StoreUnavailable
from receiver.events import parse_events
from receiver.feedback import parse_feedback, record_feedback
from receiver.inbound import routes as inbound
from receiver.incident import rfc3339
from receiver.logtext import printable
from receiver.normalize import normalize
from receiver.outcomes import stats as outcome_stats
from receiver.redrive import parse_redrive
from receiver.store.deliveries import DeadLetter, Job, Waiting
from receiver.webhook import parse_webhook

if TYPE_CHECKING:
    from receiver.app import Receiver

logger = logging.getLogger("journey_receiver")
Handler = Callable[[Request], Awaitable[Response]]
_STATUSES = ("open", "resolved", "all")
_DELIVERY_STATES = ("dead", "pending", "retrying")
_MAX_LIMIT = 1000


def error(status: int, message: str, errors: list[dict[str, str]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status)


def _receiver(request: Request) -> Receiver:
    receiver: Receiver = request.app.state.receiver
    return receiver


async def _body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is larger than ``limit`` (read no further than that)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        return None
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _guarded(role: Role, handler: Callable[[Request, Receiver], Awaitable[Response]]) -> Handler:
    """Auth first, then the handler; payload and store errors become their status codes."""

    async def endpoint(request: Request) -> Response:
        receiver = _receiver(request)
        header = request.headers.get("authorization")
        verdict = receiver.auth.check(role, header)
        if verdict != "allowed":
            # Who knocked and where, never what they sent: the header may hold a real secret
            # meant for another system, or a near miss of ours.
            status = 403 if verdict == "forbidden" else 401
            why = (
                f"a credential without the {role} role"
                if status == 403
                else f"{'wrong' if header else 'no'} credentials"
            )
            client = request.client.host if request.client else "unknown client"
            logger.warning(
                "%d on %s %s from %s: %s",
                status,
                request.method,
                printable(request.url.path),
                client,
                why,
            )
            if handler is webhook:
                receiver.metrics.webhook_requests.labels(str(status)).inc()
            if status == 403:
                return error(
                    403,
                    f"forbidden: this endpoint needs a credential of the {role} role"
                    + (" (server.auth.admin_bearer_tokens)" if role == "admin" else ""),
                )
            return JSONResponse(
                {"error": "unauthorized: missing or wrong credentials"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="journey-receiver"'},
            )
        return await _answered(receiver, handler(request, receiver))

    return endpoint


async def _answered(receiver: Receiver, answer: Awaitable[Response]) -> Response:
    """The handler's answer; payload and store errors become their status codes."""
    try:
        return await answer
    except PayloadError as exc:
        return error(exc.status, exc.message, exc.errors)
    except StoreUnavailable as exc:
        receiver.metrics.store_up.set(0)
        return error(503, f"store unavailable, retry later: {exc}")


def _signed(handler: Callable[[Request, Receiver, bytes], Awaitable[Response]]) -> Handler:
    """An ``/inbound/*`` endpoint: no bearer token (the vendor's signature, checked by the
    handler, is the credential)."""

    async def endpoint(request: Request) -> Response:
        # Before the body is read: a vendor's deadline (Slack's 3 s) runs from here.
        request.state.arrived = anyio.current_time()
        receiver = _receiver(request)

        async def answer() -> Response:
            return await handler(request, receiver, await _read_limited(request, receiver))

        return await _answered(receiver, answer())

    return endpoint


async def _read_limited(request: Request, receiver: Receiver) -> bytes:
    limit = receiver.settings.config.server.max_body_bytes
    body = await _body(request, limit)
    if body is None:
        raise PayloadError(413, f"body larger than the limit of {limit} bytes (max_body_bytes)")
    return body


async def webhook(request: Request, receiver: Receiver) -> Response:
    try:
        body = await _read_limited(request, receiver)
        batch = normalize(parse_webhook(body))
        outcomes = await receiver.pipeline.ingest(batch)
    except PayloadError as exc:
        receiver.metrics.webhook_requests.labels(str(exc.status)).inc()
        raise
    except StoreUnavailable:
        receiver.metrics.webhook_requests.labels("503").inc()
        raise
    receiver.metrics.webhook_accepted.inc()
    receiver.metrics.store_up.set(1)
    ids = list(dict.fromkeys(o.incident_id for o in outcomes if o.incident_id))
    receiver.peer.truncated(batch, ids)
    await receiver.peer.heard(batch)
    # orjson: the answer Alertmanager waits for on every batch, a third of JSONResponse's cost.
    answer = {"status": "accepted", "alerts": len(batch.alerts), "incidents": ids}
    return Response(orjson.dumps(answer), media_type="application/json")


async def post_events(request: Request, receiver: Receiver) -> Response:
    body = await _read_limited(request, receiver)
    now = datetime.fromtimestamp(receiver.clock(), UTC)
    events = parse_events(body, now)
    await receiver.store.add_events(
        [(round(e.at.timestamp() * 1000), e.to_json()) for e in events],
        receiver.pipeline.now_ms(),
    )
    return JSONResponse({"accepted": len(events)}, status_code=202)


async def list_incidents(request: Request, receiver: Receiver) -> Response:
    params = request.query_params
    status = params.get("status", "all")
    if status not in _STATUSES:
        reason = "must be open, resolved or all"
        raise PayloadError(422, f"status {reason}", [{"field": "status", "reason": reason}])
    states = await receiver.store.list_incidents(
        status,  # type: ignore[arg-type]  # checked against _STATUSES above
        params.get("journey"),
        _limit(params.get("limit", "50")),
    )
    summaries = [receiver.summary(st) for st in states]
    return JSONResponse({"incidents": summaries})


async def stats(request: Request, receiver: Receiver) -> Response:
    query = outcome_stats.parse_query(request.query_params)
    figures = await outcome_stats.cached_stats(receiver, query)
    return JSONResponse(figures.model_dump(mode="json"))


async def get_incident(request: Request, receiver: Receiver) -> Response:
    stored = await receiver.store.load(request.path_params["incident_id"])
    if stored is None:
        return error(404, "no such incident")
    incident = await receiver.pipeline.incident(stored)
    return JSONResponse(incident.model_dump(mode="json"))


async def post_feedback(request: Request, receiver: Receiver) -> Response:
    body = await _read_limited(request, receiver)
    feedback = parse_feedback(body)
    outcome = await record_feedback(
        receiver.store,
        receiver.pipeline.sinks,
        request.path_params["incident_id"],
        feedback,
        receiver.pipeline.now_ms(),
    )
    if outcome == "unknown":
        return error(404, "no such incident")
    return JSONResponse({"status": "recorded"}, status_code=201)


def _limit(raw: str) -> int:
    # ASCII only: "²" is a digit to isdigit() and none to int().
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= _MAX_LIMIT:
        reason = f"must be a whole number from 1 to {_MAX_LIMIT}"
        raise PayloadError(422, f"limit {reason}", [{"field": "limit", "reason": reason}])
    return int(raw)


async def post_silence(request: Request, receiver: Receiver) -> Response:
    body = await _read_limited(request, receiver)
    wanted = parse_silence(body)
    by = wanted.by or "journey-receiver API"
    try:
        ids = await silence_incident(
            receiver, request.path_params["incident_id"], wanted.seconds(), by, wanted.comment
        )
    except AlertmanagerError as exc:
        return error(502, f"alertmanager: {exc}")
    if ids is None:
        return error(404, "no such incident")
    return JSONResponse({"status": "silenced", "silences": ids}, status_code=201)


async def list_deliveries(request: Request, receiver: Receiver) -> Response:
    params = request.query_params
    state = params.get("state", "dead")
    if state not in _DELIVERY_STATES:
        reason = "must be dead, pending or retrying"
        raise PayloadError(422, f"state {reason}", [{"field": "state", "reason": reason}])
    limit = _limit(params.get("limit", "100"))
    if state == "dead":
        letters = await receiver.outbox.dead_letters(limit)
        return JSONResponse({"deliveries": [dead_letter_json(d) for d in letters]})
    jobs = await receiver.outbox.waiting("pending" if state == "pending" else "retrying", limit)
    return JSONResponse({"deliveries": [waiting_json(w) for w in jobs]})


def _job_json(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "incident": job.incident,
        "sink": job.sink,
        "kind": job.kind,
        "changes": job.changes,
        "due_at": rfc3339(job.due),
    }


def dead_letter_json(letter: DeadLetter) -> dict[str, Any]:
    return {
        **_job_json(letter.job),
        "state": "dead",
        "error": letter.error,
        "attempts": letter.attempts,
        "dead_at": rfc3339(letter.dead_at),
    }


def waiting_json(waiting: Waiting) -> dict[str, Any]:
    return {
        **_job_json(waiting.job),
        "state": waiting.state,
        "error": waiting.error,
        "attempts": waiting.attempts,
        "position": waiting.position,
        "sending": waiting.sending,
        "next_attempt_at": rfc3339(waiting.next_attempt),
    }


async def redrive(request: Request, receiver: Receiver) -> Response:
    body = await _read_limited(request, receiver)
    wanted = parse_redrive(body)
    done = await receiver.outbox.redrive(wanted.ids, wanted.sink)
    return JSONResponse(
        {
            "redriven": len(done.jobs),
            "jobs": done.jobs,
            "cleared": done.cleared,
            "expired": done.expired,
        }
    )


async def reload(request: Request, receiver: Receiver) -> Response:
    try:
        later = receiver.reload()
    except ConfigError as exc:
        # In the log as well as in the answer, as a rejected SIGHUP is: the person who
        # asked may not be the one who reads the log.
        logger.error("reload (POST /-/reload) rejected, running config kept:\n%s", exc)
        return error(
            400,
            "config rejected; the running config is kept",
            [{"field": p.path, "reason": str(p)} for p in exc.problems],
        )
    return JSONResponse({"status": "reloaded", "restart_needed": later})


async def openapi(request: Request, receiver: Receiver) -> Response:
    """This API as OpenAPI 3.1: ``receiver/openapi.json``, which tests/test_openapi.py holds
    to the routes and the models. A read endpoint: it says nothing the README does not, but
    where reads need a token, so does learning what there is to read."""
    return Response(_openapi_document(), media_type="application/json")


@functools.cache
def _openapi_document() -> bytes:
    return resources.files("receiver").joinpath("openapi.json").read_bytes()


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    receiver = _receiver(request)
    try:
        await receiver.store.ping()
    except StoreUnavailable as exc:
        receiver.metrics.store_up.set(0)
        return error(503, f"not ready: {exc}")
    # No store_up 1 here: a PING is answered by a Redis that refuses writes (READONLY).
    return JSONResponse({"status": "ready"})


async def metrics(request: Request) -> Response:
    receiver = _receiver(request)
    if receiver.settings.config.server.auth.metrics_need_read_token:
        return await _guarded("read", _exposition)(request)
    return await _exposition(request, receiver)


async def _exposition(request: Request, receiver: Receiver) -> Response:
    return Response(generate_latest(receiver.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405 as JSON, like every other answer of the API."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    message = {404: "no such endpoint", 405: "method not allowed"}.get(exc.status_code, exc.detail)
    if exc.status_code == 405 and "Allow" in headers:
        message = f"method not allowed; this path takes {headers['Allow']}"
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=headers)


exception_handlers = {HTTPException: http_error}

routes = [
    Route("/webhook/alertmanager", _guarded("write", webhook), methods=["POST"]),
    Route("/api/v1/events", _guarded("write", post_events), methods=["POST"]),
    Route("/api/v1/incidents", _guarded("read", list_incidents), methods=["GET"]),
    Route("/api/v1/stats", _guarded("read", stats), methods=["GET"]),
    Route("/api/v1/incidents/{incident_id}", _guarded("read", get_incident), methods=["GET"]),
    Route(
        "/api/v1/incidents/{incident_id}/feedback",
        _guarded("write", post_feedback),
        methods=["POST"],
    ),
    Route(
        "/api/v1/incidents/{incident_id}/silence",
        _guarded("admin", post_silence),
        methods=["POST"],
    ),
    Route("/api/v1/deliveries", _guarded("read", list_deliveries), methods=["GET"]),
    Route("/api/v1/deliveries/redrive", _guarded("admin", redrive), methods=["POST"]),
    Route("/-/reload", _guarded("admin", reload), methods=["POST"]),
    Route("/inbound/pagerduty", _signed(inbound.pagerduty_webhook), methods=["POST"]),
    Route("/inbound/slack/interactions", _signed(inbound.slack_interactions), methods=["POST"]),
    Route("/inbound/jira", _signed(inbound.jira_webhook), methods=["POST"]),
    Route("/openapi.json", _guarded("read", openapi), methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
