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
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.fake_server import FakeServer, Fault, serve

SECRET = "deploy-webhook-SECRET-4242"
PATH = "/rollback"


@dataclass
class Call:
    method: str
    headers: dict[str, str]
    body: bytes
    status: int


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
            routes=[Route(PATH, self._rollback, methods=["POST", "PUT", "PATCH", "DELETE"])]
        )

    async def _rollback(self, request: Request) -> JSONResponse:
        body = await request.body()
        status, answer = self._answer(request, body)
        with self._lock:
            self.calls.append(Call(request.method, dict(request.headers), body, status))
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
