"""A board cell's colour: the worst priority of its open incidents, and a bad KPI on top;
the listed incidents' top cause, a guess said to be one."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from receiver.causes import CAUSE_CONFIDENCE
from receiver.incident import UNKNOWN_CAUSE
from receiver.store.records import KpiRecord
from receiver.web.board import Cell, OpenIncidents, deviation, load
from tests.conftest import FakeClock, make_alert
from tests.support.harness import harness, write_config


def test_a_cell_is_coloured_by_priority_and_marked_when_a_kpi_went_bad() -> None:
    assert Cell("payment").css == "none"
    assert Cell("payment", priority="P2").css == "p2"
    dropped = KpiRecord(name="conversion", deviation_pct=-61.0, bad=True, vs="last week")
    assert Cell("payment", priority="P2", kpi=dropped).css == "p2 kpi-bad"
    steady = KpiRecord(name="conversion", deviation_pct=-2.0, bad=False, vs="last week")
    assert Cell("payment", priority="P2", kpi=steady).css == "p2"
    # Never colour alone: the deviation is written in the cell as well.
    assert deviation(dropped) == "conversion −61% vs last week"


class CountingStore:
    def __init__(self) -> None:
        self.reads = 0

    async def iter_incidents(
        self, status: str, journey: object, page_size: int
    ) -> AsyncIterator[list[object]]:
        self.reads += 1
        yield []


class Clocked:
    def __init__(self, store: CountingStore, clock: list[int]) -> None:
        self.store = store
        self.pipeline = self
        self._clock = clock

    def now_ms(self) -> int:
        return self._clock[0]


@pytest.mark.anyio
async def test_the_open_incidents_are_read_once_per_ten_seconds_whoever_looks() -> None:
    store, clock = CountingStore(), [1_000_000]
    receiver: Any = Clocked(store, clock)
    opened = OpenIncidents()
    for _ in range(5):  # five viewers' boards reloading at once
        await opened.get(receiver)
    assert store.reads == 1
    clock[0] += 9_999
    await opened.get(receiver)
    assert store.reads == 1
    clock[0] += 1
    await opened.get(receiver)
    assert store.reads == 2


@pytest.mark.anyio
async def test_the_most_urgent_incident_is_listed_however_many_newer_ones_are_open(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with harness(write_config(tmp_path), clock) as rx:
        (urgent,) = (await rx.post([make_alert("payment-service")])).json()["incidents"]
        clock.advance(1)
        noise = [
            make_alert("batch-job", alertname="Slow", region=f"r{i}", severity="info")
            for i in range(3)
        ]
        await rx.post(noise)
        await rx.tick(31)
        board = await load(rx.receiver, OpenIncidents(), limit=2)
        # Listed by score from every open incident, not from the newest ones.
        assert board.incidents[0].id == urgent
        assert (len(board.incidents), board.open_count, board.capped) == (2, 4, False)
        assert sum(row.incidents for row in board.rows) == 4


@pytest.mark.anyio
@pytest.mark.parametrize("deployed", ["07:48", "08:08"])
async def test_the_top_cause_is_listed_as_the_summary_tells_it(
    tmp_path: Path, clock: FakeClock, deployed: str
) -> None:
    """A deploy 25 min before the first alert scores below the confidence: the incident's
    title says the cause is unknown and its summary calls the deploy a candidate, so the
    board's top cause says the same, not the deploy as if it were the cause. One 5 min
    before is trusted: the board names it."""
    deploy = {
        "type": "deploy", "service": "payment-service", "version": "v2",
        "at": f"2026-04-18T{deployed}:00Z", "environment": "prod", "region": "eu",
    }  # fmt: skip
    async with harness(write_config(tmp_path), clock) as rx:
        assert (await rx.client.post("/api/v1/events", content=json.dumps(deploy))).is_success
        (inc,) = (
            await rx.post([make_alert("payment-service", starts_at="2026-04-18T08:13:00Z")])
        ).json()["incidents"]
        await rx.tick(31)
        detail = await rx.incident(inc)
        top = detail["probable_causes"][0]
        (line,) = (await load(rx.receiver, OpenIncidents())).incidents
        if top["score"] >= CAUSE_CONFIDENCE:
            assert deployed == "08:08" and line.cause == top["text"]
            return
        assert deployed == "07:48"
        assert detail["title"].endswith(UNKNOWN_CAUSE), detail["title"]
        assert line.cause.startswith("Cause unknown: the best candidate, ")
        assert top["text"] in line.cause
        assert f"{line.cause}." in detail["summary"]  # one story: the summary's words
