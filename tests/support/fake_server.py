"""A starlette app served by uvicorn on a free 127.0.0.1 port, in a thread, with faults.

The sink fakes (PagerDuty, Slack, Jira) are starlette apps wrapped by :func:`serve`. Each
request first meets the fault queue: a fault can answer with a status (and Retry-After),
be slow, or drop the connection before or after the fake applied the request, which is the
ambiguous case a crash-safe sink must survive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass
class Fault:
    """What to do to the next ``times`` requests whose path starts with ``path``.

    ``applied``: the fake applies the request first, whatever follows (the sink's write
    lands even if the client never hears of it). ``delay``: then wait this long.
    ``drop``: then close the connection mid-response. ``status``: or answer with it (and
    ``retry_after`` as Retry-After, ``body`` as JSON) instead of the fake's answer."""

    path: str = "/"
    status: int | None = None
    retry_after: str | None = None
    body: dict[str, Any] | None = None
    delay: float = 0.0
    drop: bool = False
    applied: bool = False
    times: int = 1


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeServer:
    """A running fake: its base ``url``, the requests it saw, and its fault queue."""

    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def inject(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if path.startswith(fault.path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def requests(self, path: str = "/") -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.path.startswith(path)]


class _Dropped(Exception):
    """Raised after the response started: uvicorn then closes the connection mid-body."""


def _with_faults(app: ASGIApp, fake: FakeServer) -> ASGIApp:
    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        request = Request(scope, receive)
        body = await request.body()
        with fake.lock:
            fake.seen.append(Seen(scope["method"], scope["path"], dict(request.headers), body))

        async def replay() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        fault = fake.take_fault(scope["path"])
        if fault is None:
            await app(scope, replay, send)
            return
        answer: list[Message] = []
        if fault.applied:

            async def keep(message: Message) -> None:
                answer.append(message)

            await app(scope, replay, keep)
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.drop:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"100")]})  # fmt: skip
            raise _Dropped
        if fault.status is not None:
            await _refuse(fault, send)
        elif fault.applied:
            for message in answer:
                await send(message)
        else:
            await app(scope, replay, send)

    return wrapped


async def _refuse(fault: Fault, send: Send) -> None:
    payload = json.dumps(fault.body or {"error": "injected fault"}).encode()
    headers = [(b"content-type", b"application/json")]
    if fault.retry_after is not None:
        headers.append((b"retry-after", fault.retry_after.encode()))
    await send({"type": "http.response.start", "status": fault.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


@contextlib.contextmanager
def serve(
    app: ASGIApp, fake: FakeServer, *, tls: tuple[Path, Path] | None = None
) -> Iterator[FakeServer]:
    """Serve ``app`` (behind ``fake``'s faults) until the block ends; ``tls`` = (cert, key)."""
    config = uvicorn.Config(
        _with_faults(app, fake),
        host="127.0.0.1",
        port=0,
        log_level="critical",
        lifespan="off",
        ssl_certfile=str(tls[0]) if tls else None,
        ssl_keyfile=str(tls[1]) if tls else None,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="fake-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("fake server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    fake.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        server.should_exit = True
        thread.join(timeout=10)
