"""The journey-health gauges and the figures read the store a page at a time and add up
as they go: the same answers as one read of everything, holding one page at a time."""

from __future__ import annotations

import math

import pytest

from receiver.enrich.enricher import Enrichment, apply
from receiver.lifecycle import Assessment, Decision, advance
from receiver.outcomes.health import journey_health, read_journey_health
from receiver.outcomes.stats import SloPolicy, Stats, parse_query, read_stats
from receiver.store.base import Annotation
from receiver.store.deliveries import Job
from receiver.store.records import TimelineEntry
from receiver.store.redis import RedisStore
from tests.store.builders import group, placed
from tests.store.test_contract import WAIT, T
from tests.store.test_paging import counted
from tests.support.incidents import conversion

pytestmark = pytest.mark.anyio

MIN = 60_000
NOW = T + 3 * 60 * MIN
STAGES = {"checkout": ["payment"], "browse": ["search"], "unmapped": []}
DEGRADED_AT = {"checkout": "P2", "browse": "P4"}
SLOS = {"checkout": SloPolicy("P2", 99.0), "browse": SloPolicy("P4", None)}
PRIORITIES = ["P1", "P2", "P3", "P4", "P5"]


async def decided_history(store: RedisStore) -> int:
    """28 incidents over the 3 hours before NOW (five opened by one batch), each decided
    once: priorities, KPIs (some with revenue at risk), a third resolved, a fifth never
    notified (blips), some marked not useful. The number of incidents."""
    batches = [[(0, "eu", "checkout", "payment")] for _ in range(24)]
    batches[6] += [(k, f"x{k}", "browse", "search") for k in range(1, 5)]
    for n, batch in enumerate(batches):
        groups = [
            group(
                placed(f"{journey}-{n}-{k}", region=region, stage=stage if n % 7 else None),
                region=f"{region}{n}",
                journey=journey,
            )
            for k, region, journey, stage in batch
        ]
        await store.ingest(groups, 0, T + n * 7 * MIN)
    claims = await store.claim_due(NOW, 60_000, 100)
    for c, claim in enumerate(sorted(claims, key=lambda c: c.incident_id)):
        stored = await store.load(claim.incident_id)
        assert stored is not None
        state = stored.state
        priority = PRIORITIES[c % 5]
        told = state.created_at + WAIT
        notified = c % 5 != 4
        resolved = c % 3 == 0
        kpi = conversion(
            deviation_pct=-10.0 * (c % 6),
            revenue_at_risk_per_min=None if c % 2 else 100.0 + c,
            bad=c % 6 > 2,
        )
        new = apply(state, Enrichment(kpis=[kpi], changes=[], causes=[], notes=[]), told)
        jobs: list[Job] = []
        if notified:
            # As the scheduler tells it at the end of group_wait (revenue counts from then).
            opening = Decision("open", None, False, 0, ())
            new = advance(new, opening, Assessment(priority, 50.0), told, ["log"])
            jobs.append(Job(incident=state.id, sink="log", kind="open", due=told))
        update: dict[str, object] = {"priority": priority, "pending": None}
        appended = new.timeline[len(state.timeline) :]
        if resolved:
            update |= {"status": "resolved", "resolved_at": told + 20 * MIN}
            appended.append(TimelineEntry(at=told + 20 * MIN, kind="resolved", text="resolved"))
        if not notified:
            update |= {"blips": 1}
        new = new.model_copy(update=update)
        committed = await store.commit(claim, stored.version, new, {}, None, appended, NOW, jobs)
        assert committed == "ok"
        if c % 4 == 1:
            feedback = {"feedback": [{"at": told, "useful": False}]}
            outcome = await store.annotate(claim.incident_id, Annotation(append=feedback), NOW)
            assert outcome == "ok"
    return len(claims)


async def test_journey_health_read_in_pages_is_what_one_read_gives(store: RedisStore) -> None:
    await decided_history(store)
    every = await store.list_incidents("open", None, 1_000)
    one_read = journey_health(every, NOW, STAGES, DEGRADED_AT)
    assert sum(one_read.open_incidents.values()) == len(every) > 10
    assert one_read.kpi_deviation_percent and any(one_read.degraded_seconds.values())
    for size in (1, 3, 4, 1_000):
        assert await read_journey_health(store, NOW, STAGES, DEGRADED_AT, size) == one_read


async def test_journey_health_holds_one_page_of_incidents_at_a_time(store: RedisStore) -> None:
    n = await decided_history(store)
    reader, client = counted(store)
    health = await read_journey_health(reader, NOW, STAGES, DEGRADED_AT, 4)
    assert health == journey_health(
        await store.list_incidents("open", None, 1_000), NOW, STAGES, DEGRADED_AT
    )
    # Every index entry read once, four states at a time: never all of them at once.
    assert client.reads == [4] * (n // 4) + ([n % 4] if n % 4 else [])
    assert len(client.reads) == math.ceil(n / 4)


async def figures(store: RedisStore, query: str, page_size: int) -> Stats:
    params = dict(p.split("=") for p in query.split("&"))
    return await read_stats(
        store, parse_query(params), NOW, list(STAGES), SLOS, page_size=page_size
    )


@pytest.mark.parametrize("query", ["window=1h", "window=7d", "window=90m&journey=checkout"])
async def test_figures_read_in_pages_are_what_one_read_gives(store: RedisStore, query: str) -> None:
    await decided_history(store)
    one_read = await figures(store, query, 1_000)
    assert one_read.signal.incidents > 3
    journeys = one_read.journeys.values()
    assert any(j.minutes_degraded for j in journeys)
    assert one_read.business.revenue_at_risk_total is not None
    assert one_read.response.ack_pct is not None
    assert one_read.signal.not_useful_pct is not None
    for size in (1, 3, 4):
        assert (await figures(store, query, size)).model_dump() == one_read.model_dump()


async def test_the_figures_hold_one_page_of_incidents_at_a_time(store: RedisStore) -> None:
    await decided_history(store)
    reader, client = counted(store)
    paged = await read_stats(reader, parse_query({}), NOW, list(STAGES), SLOS, page_size=4)
    assert paged.model_dump() == (await figures(store, "window=7d", 1_000)).model_dump()
    # The index pages (four states each) and each notified incident's timeline (one).
    assert max(client.reads) == 4
    assert client.reads.count(4) == 7
