"""Paged reads of the incident index: a reader walks every incident a page at a time, each
page one read of at most ``page_size`` incidents, whatever opens or expires meanwhile."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import pytest

from receiver.store.base import capped
from receiver.store.records import IncidentState
from receiver.store.redis import RedisStore
from tests.store.builders import group, placed
from tests.store.test_contract import T

pytestmark = pytest.mark.anyio


class CountingClient:
    """A Redis client that passes every call on and records, for each pipeline it sends,
    how many incident states (HMGETs) the pipeline asked for."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.reads: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def pipeline(self, transaction: bool = True) -> CountingPipeline:
        return CountingPipeline(self._client.pipeline(transaction=transaction), self.reads)


class CountingPipeline:
    def __init__(self, pipe: Any, reads: list[int]) -> None:
        self._pipe = pipe
        self._reads = reads
        self._asked = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipe, name)

    async def __aenter__(self) -> CountingPipeline:
        await self._pipe.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._pipe.__aexit__(*exc)

    def hmget(self, *args: Any) -> Any:
        self._asked += 1
        return self._pipe.hmget(*args)

    async def execute(self) -> Any:
        self._reads.append(self._asked)
        return await self._pipe.execute()


def counted(store: RedisStore) -> tuple[RedisStore, CountingClient]:
    """A second store over ``store``'s keys whose reads are counted."""
    client = CountingClient(store._r)
    return RedisStore(client, store.settings), client


async def open_incidents(
    store: RedisStore, at: int, *regions: str, journey: str = "checkout"
) -> list[str]:
    """One incident per region, all opened by one batch at ``at`` (so at one index score)."""
    groups = [group(placed(f"{journey}-{r}", region=r), region=r, journey=journey) for r in regions]
    ids = [o.incident_id for o in await store.ingest(groups, 0, at)]
    assert all(ids)
    return [i for i in ids if i]


async def history(store: RedisStore) -> None:
    """25 incidents: 7 opened by one batch (one score, across page boundaries), then one
    at a time, two journeys taking turns."""
    await open_incidents(store, T, *(f"a{i}" for i in range(7)))
    for i in range(18):
        journey = "signup" if i % 3 == 0 else "checkout"
        await open_incidents(store, T + 1_000 * (i + 1), f"b{i}", journey=journey)


async def walked(pages: AsyncGenerator[list[IncidentState], None]) -> list[list[str]]:
    return [[s.id for s in page] async for page in pages]


def flat(pages: list[list[str]]) -> list[str]:
    return [i for page in pages for i in page]


async def test_pages_give_what_one_read_gives_in_the_same_order(store: RedisStore) -> None:
    await history(store)
    every = [s.id for s in await store.list_incidents("all", None, 100)]
    assert len(every) == 25
    for size in (1, 3, 4, 7, 25, 200):
        pages = await walked(store.iter_incidents("all", None, size))
        assert flat(pages) == every
        assert all(0 < len(page) <= size for page in pages)
    checkout = [s.id for s in await store.list_incidents("open", "checkout", 100)]
    assert flat(await walked(store.iter_incidents("open", "checkout", 4))) == checkout
    assert await walked(store.iter_incidents("resolved", None, 4)) == []
    since = [s.id for s in await store.incidents_since(T + 6_000, "signup", 100)]
    assert len(since) == 4
    assert flat(await walked(store.iter_incidents_since(T + 6_000, "signup", 2))) == since
    assert flat(await walked(store.iter_incidents_since(T, None, 3))) == every


async def test_each_page_is_one_read_of_at_most_page_size_incidents(store: RedisStore) -> None:
    await history(store)
    reader, client = counted(store)
    pages = await walked(reader.iter_incidents("all", None, 4))
    assert len(flat(pages)) == 25
    # Seven reads of four states at most (the last one of one), never the 25 at once.
    assert client.reads == [4, 4, 4, 4, 4, 4, 1]
    client.reads.clear()
    # One journey's walk reads that journey's states only (an id names its journey): the
    # six of signup, from the pages of the index that hold one.
    assert len(flat(await walked(reader.iter_incidents_since(T, "signup", 4)))) == 6
    assert client.reads == [1, 1, 2, 1, 1]


async def test_a_journey_whose_id_begins_another_ones_is_told_apart(store: RedisStore) -> None:
    pay = await open_incidents(store, T, "eu", "us", journey="pay")
    later = await open_incidents(store, T + 1, "eu", journey="pay-later")
    assert flat(await walked(store.iter_incidents("open", "pay", 1))) == sorted(pay, reverse=True)
    assert flat(await walked(store.iter_incidents_since(T, "pay-later", 1))) == later


async def test_a_reader_that_stops_early_reads_no_further(store: RedisStore) -> None:
    await history(store)
    reader, client = counted(store)
    assert len(await reader.list_incidents("all", None, 3)) == 3
    assert len(client.reads) == 1
    # Capped where a page ends, or inside one: not a page more is read.
    client.reads.clear()
    assert [len(p) for p in await walked(capped(reader.iter_incidents("all", None, 4), 8))] == [
        4,
        4,
    ]
    assert [len(p) for p in await walked(capped(reader.iter_incidents("all", None, 4), 6))] == [
        4,
        2,
    ]
    assert client.reads == [4, 4, 4, 4]


async def test_incidents_opened_or_expired_during_a_walk(store: RedisStore) -> None:
    await history(store)
    every = [s.id for s in await store.list_incidents("all", None, 100)]
    pages = store.iter_incidents("all", None, 5)
    first = [s.id for s in await anext(pages)]
    assert first == every[:5]
    # Meanwhile: one incident opens (newer than the walk), one opens at the very time the
    # walk stands at (a replica whose clock lags), one not read yet expires with its
    # retention and one already read does too.
    (newer,) = await open_incidents(store, T + 100_000, "new")
    (lagging,) = await open_incidents(store, T + 14_000, "lagging")
    expired, read_before = every[9], every[2]
    for gone in (expired, read_before):
        await store._r.delete(store._p + "inc:" + gone)
    rest = flat([[s.id for s in page] async for page in pages])
    walk = first + rest
    assert len(walk) == len(set(walk))
    assert newer not in walk  # opened above the walk: the next walk has it
    assert lagging in walk  # at or below where the walk stood
    assert [i for i in walk if i != lagging] == [i for i in every if i != expired]
    # The expired incident's index entry went with it.
    assert await store._r.zscore(store._idx, expired) is None
    listed = {s.id for s in await store.list_incidents("all", None, 100)}
    assert listed == set(every) - {expired, read_before} | {newer, lagging}


async def test_a_page_size_below_one_is_refused(store: RedisStore) -> None:
    with pytest.raises(ValueError, match="page_size must be at least 1, not 0"):
        await anext(store.iter_incidents("all", None, 0))


async def test_expired_incidents_read_at_a_tied_score_hide_nothing_after_them(
    store: RedisStore,
) -> None:
    (older,) = await open_incidents(store, T, "old")
    await open_incidents(store, T + 1, *(f"r{i}" for i in range(4)))  # one score
    every = [s.id for s in await store.list_incidents("all", None, 100)]
    assert len(every) == 5 and every[-1] == older
    # The first page's two expired with their retention; their index entries are still there.
    for gone in every[:2]:
        await store._r.delete(store._p + "inc:" + gone)
    assert flat(await walked(store.iter_incidents("all", None, 2))) == every[2:]
