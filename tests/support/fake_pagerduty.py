"""A fake PagerDuty Events API v2: ``POST /v2/enqueue``, with the rules PagerDuty documents.

It validates each event as the documentation says PagerDuty does, answers 202 or 400 with
PagerDuty's bodies, and models what the events do: per (routing key, dedup key) an alert,
open (triggered or acknowledged) or resolved, in its own PagerDuty incident. A trigger for
an open alert is logged on it; a trigger after a resolve opens a new alert and incident
with the same dedup key; an acknowledge or resolve with no open alert is dropped (still
202: the API is asynchronous).

Sources:

- "Send an Alert Event", PagerDuty/developer-docs ``docs/events-API-v2/02-Trigger-Events.md``
  (https://developer.pagerduty.com/docs/events-api-v2/trigger-events/): the fields, which are
  required, the 32-character ``routing_key``, ``dedup_key`` ≤ 255 characters,
  ``payload.summary`` ≤ 1024 characters, the four severities, the ``links`` (``href``
  required) and ``images`` (``src`` required, served over HTTPS) shapes, and the
  de-duplication rules above, including that follow-up events count only on the routing key
  of the original trigger.
- "Events API v2 Overview", same repository, ``docs/events-API-v2/01-Overview.md``: the
  202/400/429/5xx table, the 512 KB payload limit, ``timestamp`` as ISO 8601 (PD-CEF).
- The OpenAPI description, PagerDuty/api-schema ``reference/events-v2/openapiv3.json``:
  ``routing_key`` and ``event_action`` required, ``payload`` requires summary, severity and
  source, ``timestamp`` is a date-time, the success and error bodies.
- The 400 body and its wording (``"invalid event"``, ``"Event object is invalid"``,
  ``"Length of 'routing_key' is incorrect (should be 32 characters)"``): the example
  response of https://v2.developer.pagerduty.com/docs/send-an-event-events-api-v2.

Where the documentation is silent the fake picks the strict reading and says so: 512 KB is
512,000 bytes (as Alertmanager enforces it, prometheus/alertmanager#2225), an oversized
event gets a 400 like any invalid one, and a timestamp needs a date, a time and an offset.
429, 5xx, slow answers and dropped connections come from :class:`tests.support.fake_server.Fault`.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.fake_server import FakeServer, serve
from tests.support.vendor_signing import sign_pagerduty

ROUTING_KEY_LENGTH = 32
DEDUP_KEY_MAX = 255
SUMMARY_MAX = 1024
EVENT_MAX_BYTES = 512_000
ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")


@dataclass
class PdIncident:
    """One PagerDuty alert and the incident it opened; ``events`` are the accepted bodies."""

    number: int
    routing_key: str
    dedup_key: str
    status: str = "triggered"
    events: list[dict[str, Any]] = field(default_factory=list)
    # PagerDuty stamps an incident when the trigger arrives, in whole seconds; the fake
    # takes the trigger's own ``payload.timestamp`` (on the tests' clock), cut to the
    # second, as the v3 webhooks' ``created_at``.
    created_at: str | None = None


@dataclass
class Hold:
    """Keeps the next request waiting: ``arrived`` is set when it is in, and it is answered
    once ``release`` is set."""

    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


class FakePagerDuty:
    """PagerDuty's state as the Events API changes it; ``server`` is the HTTP side (url,
    requests seen, faults)."""

    def __init__(self) -> None:
        self.server = FakeServer()
        self._lock = threading.Lock()
        self._incidents: list[PdIncident] = []
        self._events: list[dict[str, Any]] = []
        self._holds: list[Hold] = []
        self._webhooks = 0
        self.app = Starlette(routes=[Route("/v2/enqueue", self._enqueue, methods=["POST"])])

    def incidents(self, dedup_key: str) -> list[PdIncident]:
        """The PagerDuty incidents opened for ``dedup_key``, oldest first."""
        with self._lock:
            return [i for i in self._incidents if i.dedup_key == dedup_key]

    def events(self, dedup_key: str) -> list[dict[str, Any]]:
        """Every accepted event for ``dedup_key``, dropped ones included, in arrival order."""
        with self._lock:
            return [e for e in self._events if e.get("dedup_key") == dedup_key]

    def actions(self, dedup_key: str) -> list[str]:
        return [e["event_action"] for e in self.events(dedup_key)]

    def person(
        self,
        action: str,
        dedup_key: str,
        who: str,
        secret: str,
        at: float = 1_776_500_400.0,
        which: int = -1,
        **data: Any,
    ) -> tuple[bytes, dict[str, str]]:
        """A person does ``action`` ("acknowledged", "resolved", "annotated", ...) on a
        PagerDuty incident of ``dedup_key`` (``which``: its index among them, oldest first;
        the latest by default), in the web UI: its state changes, and the v3 webhook
        PagerDuty would send for it comes back as (body, headers), signed with ``secret``
        like PagerDuty signs it."""
        agent = {"id": "PUSER01", "type": "user_reference", "summary": who}
        return self._webhook(action, dedup_key, agent, secret, at, which, data)

    def acknowledgement_timed_out(
        self, dedup_key: str, secret: str, at: float = 1_776_500_400.0, which: int = -1
    ) -> tuple[bytes, dict[str, str]]:
        """The acknowledgement of a PagerDuty incident of ``dedup_key`` times out (the
        service's acknowledgement timeout): it is triggered again, pages again, and the
        ``incident.unacknowledged`` webhook comes back, from no person (``agent`` null)."""
        return self._webhook("unacknowledged", dedup_key, None, secret, at, which, {})

    def _webhook(
        self,
        action: str,
        dedup_key: str,
        agent: dict[str, str] | None,
        secret: str,
        at: float,
        which: int,
        data: dict[str, Any],
    ) -> tuple[bytes, dict[str, str]]:
        with self._lock:
            incident = [i for i in self._incidents if i.dedup_key == dedup_key][which]
            if action in ("acknowledged", "resolved"):
                incident.status = action
            elif action == "unacknowledged":
                incident.status = "triggered"
            self._webhooks += 1
            event_id = f"01WEBHOOK{self._webhooks:06d}"
        pd_id = f"P{incident.number:06d}"
        if action == "annotated":
            body = {
                "type": "incident_note",
                "incident": {"id": pd_id, "type": "incident_reference"},
                "content": data.pop("content", ""),
            }
        else:
            body = {
                "id": pd_id,
                "type": "incident",
                "number": incident.number,
                "status": incident.status,
                "incident_key": dedup_key,
                "html_url": f"https://example.pagerduty.com/incidents/{pd_id}",
            }
            if incident.created_at:
                body["created_at"] = incident.created_at
        envelope = {
            "event": {
                "id": event_id,
                "event_type": f"incident.{action}",
                "resource_type": "incident",
                "occurred_at": datetime.fromtimestamp(at, UTC).isoformat(),
                "agent": agent,
                "client": None,
                "data": body | data,
            }
        }
        raw = json.dumps(envelope).encode()
        return raw, {
            "content-type": "application/json",
            "x-webhook-id": event_id,
            "x-pagerduty-signature": sign_pagerduty(raw, secret),
        }

    @contextlib.contextmanager
    def hold_next(self) -> Iterator[Hold]:
        """Hold the next request until ``release`` is set; released at the latest on exit,
        so a failing test does not leave the server waiting."""
        hold = Hold()
        with self._lock:
            self._holds.append(hold)
        try:
            yield hold
        finally:
            hold.release.set()

    async def _enqueue(self, request: Request) -> JSONResponse:
        with self._lock:
            hold = self._holds.pop(0) if self._holds else None
        if hold is not None:
            hold.arrived.set()
            await anyio.to_thread.run_sync(hold.release.wait)
        raw = await request.body()
        try:
            event = json.loads(raw)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            return JSONResponse(
                {
                    "status": "Unrecognized object",
                    "message": "Event object format is unrecognized",
                    "errors": ["JSON parse error"],
                },
                status_code=400,
            )
        errors = _problems(event, len(raw))
        if errors:
            return JSONResponse(
                {"status": "invalid event", "message": "Event object is invalid", "errors": errors},
                status_code=400,
            )
        if event["event_action"] == "trigger" and "dedup_key" not in event:
            event["dedup_key"] = uuid.uuid4().hex
        self._apply(event)
        return JSONResponse(
            {"status": "success", "message": "Event processed", "dedup_key": event["dedup_key"]},
            status_code=202,
        )

    def _apply(self, event: dict[str, Any]) -> None:
        action, key, routing_key = event["event_action"], event["dedup_key"], event["routing_key"]
        with self._lock:
            self._events.append(event)
            current = next(
                (
                    i
                    for i in reversed(self._incidents)
                    if i.dedup_key == key and i.routing_key == routing_key
                ),
                None,
            )
            if action == "trigger" and (current is None or current.status == "resolved"):
                current = PdIncident(
                    len(self._incidents) + 1,
                    routing_key,
                    key,
                    created_at=_whole_seconds(event.get("payload", {}).get("timestamp")),
                )
                self._incidents.append(current)
            elif current is None or current.status == "resolved":
                return
            current.events.append(event)
            if action != "trigger":
                current.status = {"acknowledge": "acknowledged", "resolve": "resolved"}[action]


def _whole_seconds(timestamp: str | None) -> str | None:
    """``timestamp`` as PagerDuty writes a ``created_at``: UTC, to the second."""
    if not timestamp:
        return None
    at = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _problems(event: dict[str, Any], size: int) -> list[str]:
    errors: list[str] = []
    if size > EVENT_MAX_BYTES:
        errors.append(f"Event object is too large ({size} bytes; the limit is 512 KB)")
    routing_key = event.get("routing_key")
    if not isinstance(routing_key, str) or not routing_key:
        errors.append("'routing_key' is missing or blank")
    elif len(routing_key) != ROUTING_KEY_LENGTH:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = event.get("event_action")
    if action not in ACTIONS:
        errors.append(f"'event_action' must be one of {', '.join(ACTIONS)}")
    dedup_key = event.get("dedup_key")
    if dedup_key is None:
        if action in ("acknowledge", "resolve"):
            errors.append(f"'dedup_key' is required for {action} events")
    elif not isinstance(dedup_key, str) or not dedup_key:
        errors.append("'dedup_key' must be a non-empty string")
    elif len(dedup_key) > DEDUP_KEY_MAX:
        errors.append(f"'dedup_key' is too long (maximum is {DEDUP_KEY_MAX} characters)")
    if action == "trigger":
        errors.extend(_payload_problems(event.get("payload")))
    for name in ("client", "client_url"):
        if name in event and not isinstance(event[name], str):
            errors.append(f"'{name}' must be a string")
    errors.extend(_context_problems(event.get("links"), "links", "href", ("text",)))
    errors.extend(_context_problems(event.get("images"), "images", "src", ("href", "alt")))
    return errors


def _payload_problems(payload: object) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is required for trigger events"]
    errors = []
    summary = payload.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        errors.append("'summary' is missing or blank")
    elif len(summary) > SUMMARY_MAX:
        errors.append(f"'summary' is too long (maximum is {SUMMARY_MAX} characters)")
    source = payload.get("source")
    if not isinstance(source, str) or not source.strip():
        errors.append("'source' is missing or blank")
    if payload.get("severity") not in SEVERITIES:
        errors.append(f"'severity' must be one of {', '.join(SEVERITIES)}")
    if "timestamp" in payload and not _is_timestamp(payload["timestamp"]):
        errors.append("'timestamp' must be an ISO 8601 date-time")
    for name in ("component", "group", "class"):
        if name in payload and not isinstance(payload[name], str):
            errors.append(f"'{name}' must be a string")
    if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
        errors.append("'custom_details' must be an object")
    return errors


def _is_timestamp(value: object) -> bool:
    if not isinstance(value, str) or "T" not in value:
        return False
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def _context_problems(
    items: object, name: str, required: str, optional: tuple[str, ...]
) -> list[str]:
    if items is None:
        return []
    if not isinstance(items, list):
        return [f"'{name}' must be an array"]
    errors = []
    for index, item in enumerate(items):
        where = f"'{name}[{index}]'"
        if not isinstance(item, dict):
            errors.append(f"{where} must be an object")
            continue
        # Images must be served over HTTPS (the docs); links may be any web URL.
        schemes = ("https",) if required == "src" else ("http", "https")
        if not _is_url(item.get(required), schemes):
            errors.append(f"{where}.{required} must be a {'/'.join(schemes)} URL")
        for key in optional:
            if key in item and not isinstance(item[key], str):
                errors.append(f"{where}.{key} must be a string")
    return errors


def _is_url(value: object, schemes: tuple[str, ...]) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in schemes and bool(parts.netloc)


@contextlib.contextmanager
def serve_pagerduty(tls: tuple[Path, Path]) -> Iterator[FakePagerDuty]:
    """A running fake over HTTPS; its Events API URL is ``server.url + "/v2/enqueue"``."""
    fake = FakePagerDuty()
    with serve(fake.app, fake.server, tls=tls):
        yield fake
