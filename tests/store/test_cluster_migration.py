"""A Redis Cluster moving the store's slot to another master while batches keep coming:
the redirections a live cluster sends (ASK while the slot migrates, MOVED once it has
moved) are followed, a script whose keys are split between the two masters is refused as
a 503 that Alertmanager retries, an incident is read whole all along, and nothing
acknowledged is lost.

Every key of the store sits under one hash tag, so its whole state is one slot: an
operator rebalancing the cluster (``redis-cli --cluster reshard``) moves it key by key,
which is what this test does by hand (CLUSTER SETSLOT IMPORTING/MIGRATING, MIGRATE, then
SETSLOT NODE on every master).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from receiver.errors import StoreUnavailable
from receiver.store import StoreSettings, open_store
from receiver.store.redis import RedisStore
from tests.store.builders import group, placed
from tests.support.redis_cluster import Cluster, redis_cluster

pytestmark = pytest.mark.anyio

T = 1_776_500_000_000
PREFIX = "moving"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    # A cluster of its own: the test moves a slot, which the shared one must not see.
    with redis_cluster(tmp_path, masters=3, replicas_per_master=0) as formed:
        yield formed


def admin(port: int) -> Redis:
    return Redis(port=port, decode_responses=True, socket_timeout=10)


def move_keys(source: Redis, target_port: int, slot: int, count: int) -> int:
    """MIGRATE up to ``count`` keys of ``slot`` from ``source``; how many went."""
    keys = source.cluster("GETKEYSINSLOT", slot, count)
    for key in keys:
        source.execute_command("MIGRATE", "127.0.0.1", target_port, key, 0, 5000)
    return len(keys)


async def test_a_slot_moved_under_load_is_followed_and_loses_nothing(cluster: Cluster) -> None:
    masters = [n for n in cluster.nodes if n.role == "master"]
    store = open_store(
        cluster.url,
        StoreSettings(key_prefix=PREFIX, retention_ms=3_600_000, events_retention_ms=3_600_000),
    )
    assert isinstance(store, RedisStore)
    acked: set[str] = set()
    refused = 0

    async def send(n: int) -> None:
        nonlocal refused
        batch = [group(*(placed(f"a{i}", service=f"svc-{i % 5}") for i in range(n + 1)))]
        try:
            await store.ingest(batch, 0, T + n)
        except StoreUnavailable:
            refused += 1  # a 503: Alertmanager sends the group again
        else:
            acked.update(f"a{i}" for i in range(n + 1))

    with admin(masters[0].port) as any_master:
        slot = int(any_master.cluster("KEYSLOT", "{" + PREFIX + "}"))
    source_node = next(m for m in masters if any(lo <= slot <= hi for lo, hi in m.slots))
    target_node = next(m for m in masters if m is not source_node)
    # A busy replica holds several idle connections to every master: the ASKING an ASK
    # calls for and the read after it must still go down one of them.
    await store._r.initialize()
    target = next(n for n in store._r.get_nodes() if n.port == target_node.port)
    await asyncio.gather(*(store._r.execute_command("PING", target_nodes=target) for _ in range(4)))
    assert len(target._free) > 1
    sent = 0
    for _ in range(5):
        await send(sent)
        sent += 1
    with admin(source_node.port) as source, admin(target_node.port) as target:
        source_id, target_id = source.cluster("MYID"), target.cluster("MYID")
        target.cluster("SETSLOT", slot, "IMPORTING", source_id)
        source.cluster("SETSLOT", slot, "MIGRATING", target_id)
        # Half the keys on each master: a script whose keys are split is refused (TRYAGAIN),
        # a read of a key already moved is redirected (ASK).
        total = len(source.cluster("GETKEYSINSLOT", slot, 10_000))
        assert total > 4
        move_keys(source, target_node.port, slot, total // 2)
        for _ in range(5):
            await send(sent)
            sent += 1
        # Split between two masters, a script cannot run: each batch was a 503, not a 500.
        assert refused == 5
        listed = await store.list_incidents("all", None, 10)
        assert [st.journey for st in listed] == ["checkout"]
        # Read whole with its timeline, its state moved (MIGRATE answers NOKEY if it had
        # gone): the source answers ASK, which a transaction does not follow; the reads
        # apart are redirected.
        incident_id = listed[0].id
        state_key = f"{{{PREFIX}}}:inc:{incident_id}"
        source.execute_command("MIGRATE", "127.0.0.1", target_node.port, state_key, 0, 5000)
        whole = await store.load(incident_id)
        assert whole is not None and whole.state.id == incident_id
        assert [e.kind for e in whole.state.timeline][:1] == ["opened"]
        while move_keys(source, target_node.port, slot, 100):
            pass
        for node in masters:
            with admin(node.port) as each:
                each.cluster("SETSLOT", slot, "NODE", target_id)
    # Moved for good: the client's slot map is stale, the first answer is MOVED. Before any
    # batch brings alerts again, every one acknowledged so far is there.
    (incident,) = await store.list_incidents("all", None, 10)
    page = await store.load_alerts(incident.id, 1000)
    assert acked <= {a.fp for a in page.alerts}
    for _ in range(5):
        await send(sent)
        sent += 1
    assert refused == 5  # the slot has one master again: every batch lands
    with admin(target_node.port) as target:
        assert target.cluster("COUNTKEYSINSLOT", slot) > 0
    with admin(source_node.port) as source:
        assert source.cluster("COUNTKEYSINSLOT", slot) == 0

    # The last batch carries every alert sent: what was refused came back with it, as
    # Alertmanager's next notification of the group brings it.
    assert f"a{sent - 1}" in acked
    (incident,) = await store.list_incidents("all", None, 10)
    page = await store.load_alerts(incident.id, 1000)
    assert {a.fp for a in page.alerts} == acked == {f"a{i}" for i in range(sent)}
    assert incident.alert_count == sent
    await store.aclose()
