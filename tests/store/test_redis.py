"""What only a real Redis can show: key lifetimes, one hash tag, Sentinel URLs."""

from __future__ import annotations

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
from receiver.store.scripts import unavailable
from tests.store.builders import group, placed
from tests.support.processes import binary, free_port, redis_server, running

pytestmark = pytest.mark.anyio

T = 1_776_500_000_000


async def test_every_key_is_bounded_and_shares_one_hash_tag(redis_port: int) -> None:
    store = open_store(
        f"redis://127.0.0.1:{redis_port}/0",
        StoreSettings(key_prefix="ttl", retention_ms=3_600_000, events_retention_ms=3_600_000),
    )
    await store.ingest([group(placed("a"))], 0, T)
    await store.add_events([(T, '{"id":"e"}')], T)
    raw = Redis(port=redis_port, decode_responses=True)
    keys = [k async for k in raw.scan_iter("*ttl*")]
    assert keys and all(k.startswith("{ttl}:") for k in keys)
    # Indexes are trimmed by score on every write; every other key expires by itself.
    indexes = {"{ttl}:due", "{ttl}:idx", "{ttl}:alive", "{ttl}:events"}
    for k in set(keys) - indexes:
        ttl = await raw.pttl(k)
        assert 0 < ttl <= 3_600_000, k
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


async def test_sentinel_url_reaches_the_master(tmp_path: Path, redis_port: int) -> None:
    sentinel_port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\n"
        f"sentinel monitor jrmaster 127.0.0.1 {redis_port} 1\n"
    )
    args = [binary("redis-server"), str(conf), "--sentinel"]
    with running(args, sentinel_port, tmp_path / "sentinel.log"):
        store = open_store(
            f"redis+sentinel://127.0.0.1:{sentinel_port}/jrmaster/0",
            StoreSettings(
                key_prefix="sentinel",
                retention_ms=60_000,
                events_retention_ms=60_000,
                reopen_window_ms=60_000,
            ),
        )
        (o,) = await store.ingest([group(placed("a"))], 0, T)
        assert o.opened
        raw = Redis(port=redis_port, decode_responses=True)
        assert await raw.exists(f"{{sentinel}}:inc:{o.incident_id}") == 1
        await raw.aclose()
        await store.aclose()


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
