"""Claims whose reply was lost: Redis ran them, the caller saw a timeout.

Made to happen for real (tests/support/busy_redis.py): Redis is held busy, the store's
client (socket timeout 0.3 s) gives up on its call, Redis runs the call afterwards. What
that call took must reach the caller's next call, not wait out its lease: the incident's
notification, the delivery.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path

import pytest
from redis.asyncio import Redis

from receiver.errors import StoreUnavailable
from receiver.store import StoreSettings, open_store
from receiver.store.redis import RedisStore
from receiver.store.scripts import script
from receiver.store.tokens import ClaimTokens
from tests.conftest import FakeClock, make_alert
from tests.support.busy_redis import busy
from tests.support.harness import Harness, ScriptedSink, harness, write_config

pytestmark = pytest.mark.anyio

# Long enough for a slow machine: seen busy (~0.25 s), a call given up on (0.3 s) after.
SPIN_S = 2.0
LEASES = "scheduler: {lease: 60s}\noutbox: {lease: 60s}\n"
_prefixes = itertools.count(1)
LUA = resources.files("receiver.store").joinpath("lua")


@pytest.fixture
async def slow(redis_port: int) -> AsyncIterator[RedisStore]:
    """A store that gives up on a reply after 0.3 s, on its own key prefix."""
    store = open_store(
        f"redis://127.0.0.1:{redis_port}/0?socket_timeout=0.3",
        StoreSettings(key_prefix=f"lost{next(_prefixes)}"),
    )
    yield store
    await store.aclose()


@pytest.fixture
async def rx(
    tmp_path: Path, clock: FakeClock, slow: RedisStore
) -> AsyncIterator[tuple[Harness, ScriptedSink]]:
    sink = ScriptedSink()
    async with harness(write_config(tmp_path, LEASES), clock, sinks={"log": sink}, store=slow) as h:
        yield h, sink


async def due_at(port: int, store: RedisStore, member: str, key: str = "due") -> float | None:
    raw = Redis(port=port)
    try:
        return await raw.zscore(store._p + key, member)
    finally:
        await raw.aclose()


async def test_an_incident_claimed_by_a_lost_call_is_decided_at_the_next_tick(
    rx: tuple[Harness, ScriptedSink], redis_port: int
) -> None:
    h, sink = rx
    r = await h.post([make_alert("payment-service", alertname="Errors")])
    (incident_id,) = r.json()["incidents"]
    store = h.receiver.store
    assert isinstance(store, RedisStore)
    await load_scripts(redis_port)
    h.clock.advance(30)  # group_wait
    async with busy(redis_port, SPIN_S):
        with pytest.raises(StoreUnavailable):
            await h.receiver.pipeline.flush_due()
    # Redis ran the lost claim: the incident is held for the lease (60 s).
    assert await due_at(redis_port, store, incident_id) == h.clock.ms + 60_000
    h.clock.advance(1)
    assert await h.receiver.pipeline.flush_due() == 1
    await h.receiver.outbox.deliver_due()
    assert sink.kinds() == ["open"]
    # Decided once: nothing is claimed again, now or when the lost call's lease ends.
    assert await h.receiver.pipeline.flush_due() == 0
    h.clock.advance(61)
    assert await h.receiver.pipeline.flush_due() == 0


@pytest.mark.parametrize("lost", ["the queues", "their head jobs"])
async def test_a_delivery_claimed_by_a_lost_call_goes_out_at_the_next_round(
    rx: tuple[Harness, ScriptedSink], redis_port: int, lost: str
) -> None:
    h, sink = rx
    await load_scripts(redis_port)
    await h.post([make_alert("payment-service", alertname="Errors")])
    h.clock.advance(30)
    await h.receiver.pipeline.flush_due()
    queue = h.receiver.store.deliveries
    store = h.receiver.store
    assert isinstance(store, RedisStore)
    # A claim is two calls: the queues (outbox_claim.lua), then their heads
    # (outbox_heads.lua). Either reply may be the one lost.
    real_heads = queue._heads

    async def heads_in_a_busy_redis(**kwargs: object) -> object:
        async with busy(redis_port, SPIN_S):
            return await real_heads(**kwargs)

    if lost == "their head jobs":
        queue._heads = heads_in_a_busy_redis  # type: ignore[method-assign]
    async with contextlib.AsyncExitStack() as stack:
        if lost == "the queues":
            await stack.enter_async_context(busy(redis_port, SPIN_S))
        with pytest.raises(StoreUnavailable):
            await h.receiver.outbox.deliver_due()
    queue._heads = real_heads  # type: ignore[method-assign]
    # Redis ran the lost call: the queue is held for the lease (60 s), and with the heads
    # the attempt was counted.
    raw = Redis(port=redis_port, decode_responses=True)
    (held, until), *_ = await raw.zrange(store._p + "ob:ready", 0, -1, withscores=True)
    assert until == h.clock.ms + 60_000
    counted = await raw.hget(store._p + "ob:att", held)
    assert counted == ("1" if lost == "their head jobs" else None)
    await raw.aclose()
    assert sink.kinds() == []

    h.clock.advance(1)
    assert await h.receiver.outbox.deliver_due() == 1
    assert sink.kinds() == ["open"]
    # The attempt a lost call counted is the one made: not counted twice.
    assert [d.attempt for d in sink.delivered] == [1]
    assert await queue.counts() == (0, 0)


async def load_scripts(port: int) -> None:
    """Every store script loaded, so that a call in a busy Redis is the script itself (a
    missing one would be answered NOSCRIPT, and loaded, and tried again)."""
    raw = Redis(port=port)
    for lua in LUA.iterdir():
        if lua.name.endswith(".lua"):
            await raw.script_load(script(lua.name.removesuffix(".lua")))
    await raw.aclose()


async def test_a_token_whose_claim_failed_is_the_next_claims_and_only_its() -> None:
    tokens = ClaimTokens()
    with tokens.token() as first:
        pass
    with tokens.token() as second:
        assert second != first  # answered: a new one
    with pytest.raises(StoreUnavailable), tokens.token() as lost:
        raise StoreUnavailable("timeout")
    with tokens.token() as again:
        assert again == lost
        with tokens.token() as meanwhile:
            assert meanwhile != lost  # a claim running at the same time never shares it
    with tokens.token() as after:
        assert after != lost
