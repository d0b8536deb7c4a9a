"""store.replica_acks on a real master and replica: a batch is acknowledged only once the
replica holds it, so a failover cannot lose what Alertmanager was told was taken."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from receiver.errors import StoreUnavailable
from receiver.store import StoreSettings, open_store
from tests.store.builders import group, placed
from tests.support.processes import free_port, redis_args, running

pytestmark = pytest.mark.anyio
T = 1_776_500_000_000


@pytest.fixture
def master_and_replica(tmp_path: Path) -> Iterator[tuple[int, int, int]]:
    """(master port, replica port, replica PID), the replica in sync."""
    master, replica = free_port(), free_port()
    (tmp_path / "m").mkdir()
    (tmp_path / "r").mkdir()
    with (
        # No 5 s wait before the replica's first sync (the default waits for more replicas).
        running(
            redis_args(master, tmp_path / "m", "--repl-diskless-sync-delay", "0"),
            master,
            tmp_path / "m.log",
        ),
        running(
            [*redis_args(replica, tmp_path / "r"), "--replicaof", "127.0.0.1", str(master)],
            replica,
            tmp_path / "r.log",
        ) as proc,
        SyncRedis(port=replica, decode_responses=True) as r,
    ):
        deadline = time.monotonic() + 20
        while r.info("replication")["master_link_status"] != "up":
            assert time.monotonic() < deadline, "the replica never synced"
            time.sleep(0.05)
        yield master, replica, proc.pid


async def test_a_batch_is_answered_only_once_a_replica_holds_it(
    master_and_replica: tuple[int, int, int],
) -> None:
    master, replica, replica_pid = master_and_replica
    # Long enough for a busy machine's replica to answer; the stopped one costs the test
    # this long once.
    store = open_store(
        f"redis://127.0.0.1:{master}/0",
        StoreSettings(key_prefix="acks", replica_acks=1, replica_ack_timeout_ms=1_000),
    )
    copy = Redis(port=replica, decode_responses=True)
    try:
        (o,) = await store.ingest([group(placed("a"))], 0, T)
        # Answered: the replica has the incident already, not some time later.
        assert await copy.hexists(f"{{acks}}:inc:{o.incident_id}", "state")

        os.kill(replica_pid, signal.SIGSTOP)  # a replica that falls behind
        try:
            with pytest.raises(StoreUnavailable, match="0 of the 1 replicas"):
                await store.ingest([group(placed("b"))], 0, T + 1)
        finally:
            os.kill(replica_pid, signal.SIGCONT)
        # Alertmanager's retry of the same batch: taken, and counted once.
        (again,) = await store.ingest([group(placed("b"))], 0, T + 2)
        assert (again.incident_id, again.changed, again.duplicates) == (o.incident_id, 0, 1)
        assert await copy.hexists(f"{{acks}}:am:{o.incident_id}", "b")
    finally:
        await copy.aclose()
        await store.aclose()
