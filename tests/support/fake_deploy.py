"""A fake deploy system that takes signed webhook runs: ``POST /rollback`` (any method).

It holds runs to the rules a careful receiving system would, so the executor is tested
against them rather than against a permissive echo:

- the ``X-Journey-Receiver-Signature: sha256=<hex>`` header must be the HMAC-SHA256 of the
  raw body bytes with the shared secret (compared in constant time), else 401;
- ``Idempotency-Key`` must be present, else 400;
- a key seen before gets the first answer again without a second effect; the same key
  with a different body is a 422 (as the IETF draft "The Idempotency-Key HTTP Header
  Field" says for a reused key).

``calls`` are every request that reached the app; ``effects`` are the rollbacks it
carried out, one per key. 429, 5xx, slow answers and dropped connections come from
:class:`tests.support.fake_server.Fault` (``fail`` and ``slow`` wrap it); a fault with
``applied`` lets the effect land before the client hears anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.fake_server import FakeServer, Fault, serve

SECRET = "deploy-webhook-SECRET-4242"
RESPONDERS = ["U0ALICE", "alice@example.com"]
FIRST_ALERT = 1_776_499_800 - 30  # 2026-04-18T08:09:30Z, 2 min after the bad deploy
PATH = "/rollback"


@dataclass
class Call:
    method: str
    headers: dict[str, str]
    body: bytes
    status: int
    target: str = ""
    """The path and query as sent (still percent-encoded)."""


@dataclass
class Effect:
    """One rollback the fake carried out: its key and the body it was asked with."""

    key: str
    body: Any


@dataclass
class FakeDeploy:
    secret: str = SECRET
    server: FakeServer = field(default_factory=FakeServer)
    calls: list[Call] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)
    _answers: dict[str, tuple[bytes, int, dict[str, Any]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return self.server.url + PATH

    def fail(self, status: int, *, times: int = 1, retry_after: str | None = None) -> None:
        self.server.inject(Fault(PATH, status=status, times=times, retry_after=retry_after))

    def slow(self, delay: float, *, applied: bool = True) -> None:
        """Answer the next request after ``delay`` seconds; ``applied``: act first."""
        self.server.inject(Fault(PATH, delay=delay, applied=applied))

    @property
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(path, self._rollback, methods=["POST", "PUT", "PATCH", "DELETE"])
                for path in (PATH, PATH + "/{rest:path}")
            ]
        )

    async def _rollback(self, request: Request) -> JSONResponse:
        body = await request.body()
        status, answer = self._answer(request, body)
        with self._lock:
            query = request.scope["query_string"].decode()
            target = request.scope["raw_path"].decode() + (f"?{query}" if query else "")
            self.calls.append(Call(request.method, dict(request.headers), body, status, target))
        return JSONResponse(answer, status_code=status)

    def _answer(self, request: Request, body: bytes) -> tuple[int, dict[str, Any]]:
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        given = request.headers.get("x-journey-receiver-signature", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return 401, {"error": "bad signature"}
        key = request.headers.get("idempotency-key")
        if not key:
            return 400, {"error": "Idempotency-Key is required"}
        with self._lock:
            if key in self._answers:
                first_body, status, answer = self._answers[key]
                if first_body != body:
                    return 422, {"error": "Idempotency-Key reused with a different body"}
                return status, answer
            is_json = request.headers.get("content-type", "").startswith("application/json")
            self.effects.append(Effect(key, json.loads(body) if is_json else body.decode()))
            answer = {"status": "rolled back", "run": len(self.effects)}
            self._answers[key] = (body, 202, answer)
            return 202, answer


@contextlib.contextmanager
def serve_deploy(secret: str = SECRET) -> Iterator[FakeDeploy]:
    """A running fake over plain HTTP; runs go to ``fake.url``."""
    fake = FakeDeploy(secret)
    with serve(fake.app, fake.server):
        yield fake


def journeys(tmp: Path, url: str, level: str, when: str = "") -> Path:
    """A journeys.yaml with one journey (checkout, payment-service) at ``level`` whose
    action ``rollback`` runs a signed webhook to ``url`` on a deploy within 15 min to one
    service; ``when`` adds conditions (``, priorities: [P1]``)."""
    path = tmp / "journeys.yaml"
    path.write_text(
        f"""
journeys:
  - id: checkout
    name: Checkout
    weight: 1.0
    owner:
      team: payments
      slack_channel: "#inc-checkout"
      jira_project: PAY
      responders: {json.dumps(RESPONDERS)}
    stages:
      - id: payment
        weight: 1.0
        match: ['service="payment-service"']
    actions:
      - id: rollback
        title: "Roll back {{service}} to {{previous_version}}"
        when: {{change_type: deploy, within: 15m, single_service: true{when}}}
        run:
          webhook:
            url: {url}
            body:
              {{service: "{{service}}", to: "{{previous_version}}", incident: "{{incident_id}}"}}
            secret: {SECRET}
            timeout: 2s
    automation: {level}
"""
    )
    return path


def deploys(region: str = "eu") -> list[dict[str, str]]:
    """v41 the day before, then v42 to payment-service 2 min before ``FIRST_ALERT``: the
    rollback goes back to v41."""
    return [
        {"type": "deploy", "service": "payment-service", "version": "v41",
         "at": "2026-04-17T10:00:00Z", "environment": "prod", "region": region},
        {"type": "deploy", "service": "payment-service", "version": "v42",
         "at": "2026-04-18T08:07:30Z", "environment": "prod", "region": region},
    ]  # fmt: skip
