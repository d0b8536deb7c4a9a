"""The journey-health refresh counts its open incidents a page at a time where the store
can page (``IncidentPages``), and counts the same as over one read of all of them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from receiver.metrics import Metrics
from receiver.outcomes import health
from receiver.outcomes.health import (
    HEALTH_PAGE,
    IncidentPages,
    Tally,
    journey_health,
    open_pages,
    refresh_journey_metrics,
)
from receiver.store.base import IncidentStatusFilter
from receiver.store.records import IncidentState, KpiRecord
from tests.support.incidents import incident_state

pytestmark = pytest.mark.anyio
STAGES = {"checkout": ["payment", "cart"], "browse": ["search"]}


def many(n: int) -> list[IncidentState]:
    """``n`` incidents newest first: checkout and browse, every priority, some resolved,
    some not decided yet, a KPI on some."""
    states = []
    for i in range(n):
        journey = "checkout" if i % 3 else "browse"
        stages = {"search": 1} if journey == "browse" else {("payment", "cart")[i % 2]: 1}
        kpis = [KpiRecord(name="conversion", deviation_pct=-(i % 70))] if i % 7 == 0 else []
        states.append(
            incident_state(
                i,
                journey=journey,
                stages=stages,
                status="resolved" if i % 11 == 0 else "open",
                priority=None if i % 13 == 0 else f"P{1 + i % 5}",
                first_firing_at=1_000 * (n - i),
                created_at=1_000 * (n - i),
                kpis=kpis,
            )
        )
    return states


class PagingStore:
    """A store with ``list_incidents_page`` over a fixed list; it remembers its pages."""

    def __init__(self, states: list[IncidentState]) -> None:
        self.states = states
        self.pages: list[int] = []
        self.whole_reads = 0

    async def list_incidents(
        self, status: IncidentStatusFilter, journey: str | None, limit: int
    ) -> list[IncidentState]:
        self.whole_reads += 1
        return [s for s in self.states if status in ("all", s.status)][:limit]

    async def list_incidents_page(
        self, status: IncidentStatusFilter, journey: str | None, limit: int, cursor: str | None
    ) -> tuple[list[IncidentState], str | None]:
        matching = [s for s in self.states if status in ("all", s.status)]
        start = int(cursor or 0)
        page = matching[start : start + limit]
        self.pages.append(len(page))
        end = start + len(page)
        return page, (str(end) if end < len(matching) else None)


async def test_pages_count_what_one_read_counts() -> None:
    states = many(3 * HEALTH_PAGE + 17)
    store = PagingStore(states)
    assert isinstance(store, IncidentPages)
    tally = Tally(STAGES, {"checkout": "P2"})
    async for page in open_pages(store):  # type: ignore[arg-type]
        assert len(page) <= HEALTH_PAGE
        tally.add(page)
    opened = [s for s in states if s.status == "open"]
    assert store.whole_reads == 0
    assert len(store.pages) > 1 and sum(store.pages) == len(opened) == tally.read
    whole = journey_health(opened, 10_000_000, STAGES, {"checkout": "P2"})
    assert tally.health(10_000_000) == whole
    assert sum(whole.open_incidents.values()) == sum(s.priority is not None for s in opened)


async def test_the_pages_stop_at_the_read_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    store = PagingStore(many(2 * HEALTH_PAGE))
    monkeypatch.setattr(health, "HEALTH_PAGE", 300)
    pages = [len(p) async for p in open_pages(store, total=700)]  # type: ignore[arg-type]
    assert pages == [300, 300, 100]


async def test_a_store_that_cannot_page_is_read_once() -> None:
    class Whole:
        def __init__(self) -> None:
            self.inner = PagingStore(many(50))

        async def list_incidents(self, *args: Any) -> list[IncidentState]:
            return await self.inner.list_incidents(*args)

    store = Whole()
    assert not isinstance(store, IncidentPages)
    pages = [p async for p in open_pages(store)]  # type: ignore[arg-type]
    assert len(pages) == 1 and store.inner.whole_reads == 1


async def test_the_refresh_publishes_what_the_pages_counted() -> None:
    states = many(2 * HEALTH_PAGE + 1)
    store = PagingStore(states)
    journeys = [
        SimpleNamespace(id=j, stages=[SimpleNamespace(id=s) for s in ids], slo=slo)
        for j, ids in STAGES.items()
        for slo in (SimpleNamespace(degraded_at="P3"),)
    ]
    metrics = Metrics()
    receiver: Any = SimpleNamespace(
        store=store,
        settings=SimpleNamespace(catalog=SimpleNamespace(journeys=journeys)),
        pipeline=SimpleNamespace(now_ms=lambda: 10_000_000),
        metrics=metrics,
    )
    got = await refresh_journey_metrics(receiver)
    assert len(store.pages) == 2  # 910 open incidents
    opened = [s for s in states if s.status == "open"]
    assert got == journey_health(opened, 10_000_000, STAGES, {"checkout": "P3", "browse": "P3"})
    p1_payment = metrics.registry.get_sample_value(
        "journey_receiver_journey_open_incidents",
        {"journey": "checkout", "stage": "payment", "priority": "P1"},
    )
    assert p1_payment == got.open_incidents["checkout", "payment", "P1"] > 0
