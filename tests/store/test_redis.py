"""What only a real Redis can show: key lifetimes, one hash tag, the store contract
through Sentinel (with passwords, with TLS)."""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import pytest
from redis.asyncio import Redis
from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from receiver.errors import StoreUnavailable
from receiver.store import StoreSettings, open_store
from receiver.store.records import TimelineEntry
from receiver.store.redis import RedisStore
from receiver.store.scripts import unavailable
from tests.store import test_contract as contract
from tests.store.builders import group, placed
from tests.support.processes import free_port, redis_server
from tests.support.redis_sentinel import SentinelSet, redis_sentinel

pytestmark = pytest.mark.anyio

T = 1_776_500_000_000


async def test_every_key_is_bounded_and_shares_one_hash_tag(redis_port: int) -> None:
    store = open_store(
        f"redis://127.0.0.1:{redis_port}/0",
        StoreSettings(key_prefix="ttl", retention_ms=3_600_000, events_retention_ms=3_600_000),
    )
    await store.ingest([group(placed("a"))], 0, T)
    # Resolved alerts get a set of their own, made by a batch that renews no lifetime.
    await store.ingest([group(placed("a", status="resolved"))], 0, T + 1)
    await store.add_events([(T, '{"id":"e"}')], T)
    raw = Redis(port=redis_port, decode_responses=True)
    keys = [k async for k in raw.scan_iter("*ttl*")]
    assert keys and all(k.startswith("{ttl}:") for k in keys)
    # Indexes are trimmed by score on every write; every other key expires by itself, the
    # owner index's buckets (one a retention) two buckets after their own.
    indexes = {"{ttl}:due", "{ttl}:idx", "{ttl}:alive", "{ttl}:events"}
    for k in set(keys) - indexes:
        ttl = await raw.pttl(k)
        assert 0 < ttl <= 3_600_000 * (3 if k.startswith("{ttl}:owners:") else 1), k
    await raw.aclose()
    await store.aclose()


async def test_the_id_counter_lives_as_long_as_the_incidents_it_numbered(redis_port: int) -> None:
    store = open_store(
        f"redis://127.0.0.1:{redis_port}/0", StoreSettings(key_prefix="seq", retention_ms=1_000_000)
    )
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    raw = Redis(port=redis_port, decode_responses=True)
    digest = o.incident_id.split("-")[1] if o.incident_id else ""
    await raw.pexpire(f"{{seq}}:seq:{digest}", 10)  # as if created long ago
    # Lifetimes are renewed once a 64th of the retention has gone by (ingest.lua).
    await store.ingest([group(placed("b"))], 0, T + 1_000_000 // 64)
    assert await raw.pttl(f"{{seq}}:seq:{digest}") > 900_000
    await raw.aclose()
    await store.aclose()


async def test_a_commit_keeps_the_id_counter_alive_with_its_incident(redis_port: int) -> None:
    store = open_store(
        f"redis://127.0.0.1:{redis_port}/0",
        StoreSettings(key_prefix="seq2", retention_ms=1_000_000),
    )
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    assert o.incident_id
    digest = o.incident_id.split("-")[1]
    raw = Redis(port=redis_port, decode_responses=True)
    await raw.pexpire(f"{{seq2}}:seq:{digest}", 10)  # as if its last batch was long ago
    await raw.pexpire(f"{{seq2}}:key:{digest}", 10)
    (claim,) = await store.claim_due(T + 30_000, 1_000, 10)
    stored = await store.load(claim.incident_id)
    assert stored
    assert await store.commit(claim, stored.version, stored.state, {}, None, [], T + 30_000) == "ok"
    assert await raw.pttl(f"{{seq2}}:seq:{digest}") > 900_000
    assert await raw.pttl(f"{{seq2}}:key:{digest}") > 900_000
    await raw.aclose()
    await store.aclose()


def _contract_cases() -> list[Callable[[RedisStore], Awaitable[None]]]:
    """Every contract test that needs nothing but a store."""
    return [
        case
        for name, case in vars(contract).items()
        if name.startswith("test_") and list(inspect.signature(case).parameters) == ["store"]
    ]


@pytest.fixture(scope="module")
def sentinels_with_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    """Redis and the sentinels each with their own password, so that a client mixing
    them up is refused."""
    with redis_sentinel(
        tmp_path_factory.mktemp("sentinel-auth"),
        password="redis-pw+/@",  # every character a URL must escape
        sentinel_password="sentinel-pw:&=",
    ) as nodes:
        yield nodes


@pytest.fixture(scope="module")
def sentinels_with_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    """TLS only, everywhere, with a client certificate asked for; and both passwords."""
    with redis_sentinel(
        tmp_path_factory.mktemp("sentinel-tls"),
        password="redis-pw",
        sentinel_password="sentinel-pw",
        tls=True,
    ) as nodes:
        yield nodes


@pytest.fixture(params=["auth", "tls"])
def sentinels(request: pytest.FixtureRequest) -> SentinelSet:
    nodes: SentinelSet = request.getfixturevalue(f"sentinels_with_{request.param}")
    return nodes


_sentinel_prefixes = itertools.count(1)


@pytest.mark.parametrize("case", _contract_cases(), ids=lambda case: case.__name__[5:])
async def test_the_store_contract_holds_through_three_sentinels(
    sentinels: SentinelSet, case: Callable[[RedisStore], Awaitable[None]]
) -> None:
    store = open_store(
        sentinels.url,
        StoreSettings(key_prefix=f"s{next(_sentinel_prefixes)}", events_retention_ms=86_400_000),
    )
    try:
        await case(store)
    finally:
        await store.aclose()


async def test_what_goes_through_the_sentinels_lands_on_the_master(
    sentinels: SentinelSet,
) -> None:
    store = open_store(sentinels.url, StoreSettings(key_prefix="landed", retention_ms=60_000))
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    await store.aclose()
    with sentinels.redis(sentinels.master.port) as raw:
        assert raw.exists(f"{{landed}}:inc:{o.incident_id}") == 1


@pytest.mark.parametrize(
    "option",
    ["", "?sentinel_password=redis-pw%2B%2F%40"],  # none; Redis's, not the sentinels'
    ids=["none", "redis-password"],
)
async def test_sentinels_with_a_password_refuse_a_url_without_theirs(
    sentinels_with_auth: SentinelSet, option: str
) -> None:
    url = sentinels_with_auth.url.partition("?")[0] + option
    store = open_store(url, StoreSettings(key_prefix="refused"))
    with pytest.raises(StoreUnavailable, match="AuthenticationError") as refused:
        await store.ingest([group(placed("a"))], 0, T)
    await store.aclose()
    assert "redis-pw" not in str(refused.value)  # the error names no password


async def test_cluster_url_runs_the_scripts_on_a_real_cluster(tmp_path: Path) -> None:
    # A one-node cluster holding every slot: the scripts' keys must all hash to one slot
    # (or the cluster refuses them) and the client must route by it.
    bus = free_port()  # by default the bus takes port + 10000, which may be taken or > 65535
    cluster = ("--cluster-enabled", "yes", "--cluster-port", str(bus),
               "--cluster-config-file", str(tmp_path / "nodes.conf"))  # fmt: skip
    with redis_server(tmp_path / "cluster", *cluster) as port:
        raw = Redis(port=port, decode_responses=True)
        await raw.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        for _ in range(200):  # the node takes a moment to call its state ok
            if "cluster_state:ok" in await raw.execute_command("CLUSTER", "INFO"):
                break
            await anyio.sleep(0.05)
        await raw.aclose()
        store = open_store(
            f"redis+cluster://127.0.0.1:{port}",
            StoreSettings(
                key_prefix="cl",
                retention_ms=60_000,
                events_retention_ms=60_000,
                reopen_window_ms=60_000,
            ),
        )
        (o,) = await store.ingest([group(placed("a"))], 0, T)
        assert o.opened and o.incident_id
        (claim,) = await store.claim_due(T + 30_000, 1_000, 10)
        stored = await store.load(claim.incident_id)
        assert stored
        outcome = await store.commit(claim, stored.version, stored.state, {}, None, [], T)
        assert outcome == "ok"
        assert [s.id for s in await store.list_incidents("all", None, 5)] == [o.incident_id]
        await store.aclose()


async def test_a_decision_appends_more_entries_than_one_lua_call_can_spread(
    redis_port: int,
) -> None:
    store = open_store(f"redis://127.0.0.1:{redis_port}/0", StoreSettings(key_prefix="many"))
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    (claim,) = await store.claim_due(T + 30_000, 1_000, 10)
    stored = await store.load(claim.incident_id)
    assert stored and o.incident_id
    entries = [TimelineEntry(at=T, kind="kpi", text=f"KPI k{i} -50.0% vs 1w") for i in range(8_500)]
    outcome = await store.commit(claim, stored.version, stored.state, {}, None, entries, T + 30_000)
    assert outcome == "ok"
    after = await store.load(o.incident_id)
    assert after is not None
    # All of them went in (the cap then keeps the first ten and the latest).
    assert (len(after.state.timeline), after.state.timeline_dropped) == (200, 8_501 - 200)
    assert after.state.timeline[-1].text == "KPI k8499 -50.0% vs 1w"
    await store.aclose()


async def test_a_full_redis_is_unavailable_and_the_batch_lands_once_it_has_room(
    redis_port: int,
) -> None:
    store = open_store(f"redis://127.0.0.1:{redis_port}/0", StoreSettings(key_prefix="full"))
    raw = Redis(port=redis_port, decode_responses=True)
    await raw.config_set("maxmemory-policy", "noeviction")
    await raw.config_set("maxmemory", 1)  # every write is over it
    try:
        with pytest.raises(
            StoreUnavailable, match="store full: command not allowed when used memory"
        ):
            await store.ingest([group(placed("a"))], 0, T)
        assert [k async for k in raw.scan_iter("{full}:*")] == []  # nothing half-written
    finally:
        await raw.config_set("maxmemory", 0)
    (o,) = await store.ingest([group(placed("a"))], 0, T)  # Alertmanager's retry
    assert o.opened
    await raw.aclose()
    await store.aclose()


@pytest.mark.parametrize(
    "error",
    [
        ClusterDownError("CLUSTERDOWN The cluster is down"),
        MasterDownError("MASTERDOWN Link with MASTER is down"),
        TryAgainError("TRYAGAIN Multiple keys request during rehashing of slot"),
        SlotNotCoveredError("Slot 1234 is not covered by the cluster"),
        RedisClusterException("Redis Cluster cannot be connected"),
        RedisConnectionError("Connection refused"),
    ],
)
async def test_a_store_failing_over_is_unavailable_never_an_error(error: Exception) -> None:
    """Each is what a cluster says mid-failover: a 503 that Alertmanager retries."""

    @unavailable
    async def call() -> None:
        raise error

    with pytest.raises(StoreUnavailable, match="store unreachable"):
        await call()
