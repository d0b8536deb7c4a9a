"""Shutdown lets the round under way finish (within scheduler.drain), so a delivery is not
cut between the sink's answer and its receipt."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest

from receiver.app import create_app
from receiver.incident import Incident
from receiver.sinks import Delivery, Receipt
from tests.conftest import FakeClock, body, make_alert
from tests.support.harness import write_config

pytestmark = pytest.mark.anyio


class HeldSink:
    """Holds each delivery until ``gate`` opens; ``finished`` counts those that returned."""

    name = "log"
    coalesces_updates = False

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.gate = anyio.Event()
        self.finished = 0

    async def deliver(
        self, incident: Incident, delivery: Delivery, previous: Receipt | None
    ) -> Receipt:
        self.started.set()
        await self.gate.wait()
        self.finished += 1
        return Receipt(sink=self.name, state=incident.status)

    async def aclose(self) -> None:
        return None


async def shut_down_while_delivering(tmp_path: Path, drain: str, release: bool) -> float:
    """Start a receiver, let a delivery begin, shut down; returns the delivered count."""
    sink = HeldSink()
    config = write_config(tmp_path, f"scheduler: {{tick: 20ms, drain: {drain}}}\n")
    clock = FakeClock()
    app = create_app(config, clock=clock, sinks={"log": sink})
    closed = anyio.Event()
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://rx") as client:
        r = await client.post(
            "/webhook/alertmanager",
            content=body([make_alert("payment-service")]),
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 200
    clock.advance(30)  # group_wait
    await sink.started.wait()

    async def close() -> None:
        await lifespan.__aexit__(None, None, None)
        closed.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(close)
        await anyio.wait_all_tasks_blocked()
        assert not closed.is_set()  # waiting for the delivery under way
        if release:
            sink.gate.set()
    deliveries = app.state.receiver.metrics.deliveries
    delivered: float = deliveries.labels("log", "open", "delivered")._value.get()
    assert sink.finished == delivered
    return delivered


async def test_shutdown_waits_for_the_delivery_under_way(tmp_path: Path) -> None:
    assert await shut_down_while_delivering(tmp_path, "10s", release=True) == 1


async def test_shutdown_waits_no_longer_than_the_drain_timeout(tmp_path: Path) -> None:
    with anyio.fail_after(5):
        assert await shut_down_while_delivering(tmp_path, "200ms", release=False) == 0
