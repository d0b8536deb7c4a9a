"""A receiver app in the test's event loop: memory store, fake clock, recording sink."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from receiver import scheduler
from receiver.app import Receiver, create_app
from receiver.incident import Incident
from receiver.sinks import Delivery, Receipt, Sink
from tests.conftest import EXAMPLE_JOURNEYS, FakeClock, body


@dataclass
class RecordingSink:
    """Remembers every delivery, in order."""

    name: str = "log"
    sent: list[tuple[str, str, Incident]] = field(default_factory=list)
    coalesces_updates: bool = False

    async def deliver(
        self, incident: Incident, delivery: Delivery, previous: Receipt | None
    ) -> Receipt:
        self.sent.append((delivery.kind, incident.id, incident))
        return Receipt(sink=self.name, state=incident.status)

    async def aclose(self) -> None:
        return None

    def kinds(self, incident_id: str | None = None) -> list[str]:
        return [k for k, i, _ in self.sent if incident_id in (None, i)]


@dataclass
class Attempt:
    kind: str
    incident_id: str
    attempt: int
    changes: tuple[str, ...]
    previous: Receipt | None


@dataclass
class ScriptedSink:
    """A sink that fails as scripted: each attempt takes the next entry of ``script`` (an
    exception to raise, or None to succeed); with the script used up, every attempt
    succeeds. Its receipt carries a ref counting its successes, as a real object id would."""

    name: str = "log"
    script: list[Exception | None] = field(default_factory=list)
    coalesces_updates: bool = False
    attempts: list[Attempt] = field(default_factory=list)
    delivered: list[Attempt] = field(default_factory=list)

    async def deliver(
        self, incident: Incident, delivery: Delivery, previous: Receipt | None
    ) -> Receipt:
        attempt = Attempt(delivery.kind, incident.id, delivery.attempt, delivery.changes, previous)
        self.attempts.append(attempt)
        failure = self.script.pop(0) if self.script else None
        if failure is not None:
            raise failure
        self.delivered.append(attempt)
        ref = previous.refs["object"] if previous else f"obj-{incident.id}"
        return Receipt(sink=self.name, state=incident.status, refs={"object": ref})

    async def aclose(self) -> None:
        return None

    def kinds(self) -> list[str]:
        return [a.kind for a in self.delivered]


def write_config(tmp: Path, text: str = "", journeys: Path = EXAMPLE_JOURNEYS) -> Path:
    """A receiver.yaml with short, explicit timers plus ``text`` (extra top-level YAML);
    open on purpose (``allow_open``) unless ``text`` has a ``server`` section of its own."""
    own_server = any(line.startswith("server:") for line in text.splitlines())
    cfg = tmp / "receiver.yaml"
    cfg.write_text(
        f"journeys_file: {journeys}\n"
        "store: {url: 'memory://'}\n"
        "grouping: {group_wait: 30s, group_interval: 2m, resolve_after: 5m, reopen_window: 30m}\n"
        + ("" if own_server else "server: {auth: {allow_open: true}}\n")
        + text
    )
    return cfg


@dataclass
class Harness:
    client: httpx.AsyncClient
    receiver: Receiver
    clock: FakeClock
    sink: RecordingSink

    async def post(self, alerts: list[dict[str, Any]], **headers: str) -> httpx.Response:
        return await self.client.post(
            "/webhook/alertmanager",
            content=body(alerts),
            headers={"content-type": "application/json", **headers},
        )

    async def tick(self, seconds: float = 0.0) -> None:
        """Let ``seconds`` pass, then run the scheduler once, as the loop would."""
        self.clock.advance(seconds)
        await scheduler.tick(self.receiver.pipeline, self.receiver.outbox, self.receiver.peer)

    async def incident(self, incident_id: str) -> dict[str, Any]:
        r = await self.client.get(f"/api/v1/incidents/{incident_id}")
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data

    async def incidents(self, query: str = "status=all") -> list[dict[str, Any]]:
        r = await self.client.get(f"/api/v1/incidents?{query}")
        assert r.status_code == 200, r.text
        result: list[dict[str, Any]] = r.json()["incidents"]
        return result


@contextlib.asynccontextmanager
async def harness(
    config: Path | None,
    clock: FakeClock,
    sink: RecordingSink | None = None,
    sinks: dict[str, Sink] | None = None,
    *,
    configured_sinks: bool = False,
    **kwargs: Any,
) -> AsyncIterator[Harness]:
    """``sinks`` replaces the configured sinks by name (the config must still name them,
    for routing); by default one recording ``log`` sink; with ``configured_sinks`` the
    sinks the config sets up (real clients)."""
    sink = sink or RecordingSink()
    chosen = None if configured_sinks else (sinks or {"log": sink})
    app = create_app(config, clock=clock, sinks=chosen, run_scheduler=False, **kwargs)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rx") as client,
    ):
        yield Harness(client, app.state.receiver, clock, sink)


def dumps(data: object) -> bytes:
    return json.dumps(data).encode()
