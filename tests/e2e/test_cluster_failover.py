"""The Redis Cluster master that owns the receiver's slot is SIGKILLed mid-storm (a real
cluster, a real receiver process, the sink fakes): nothing acknowledged is lost, no sink
object is doubled, the incidents keep their ids, and the webhook never answers 2xx before
a replica is promoted, and always once the receiver's client has found it.

Until then a batch is held while the client retries the dead node and answered 503 when
those retries run out (Alertmanager retries it), or 2xx if the promotion came first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

from redis import Redis

from tests.e2e.test_crash_safety import receiver, receiver_config
from tests.support.failover import Failover, assert_nothing_lost, storm_through
from tests.support.redis_cluster import Cluster, ClusterNode, redis_cluster
from tests.support.sink_world import fakes

# The receiver's cluster client finds the new master only through a topology refresh: the
# first command to fail on the dead node asks for one, and it runs at most once a second
# (redis-py's topology_refresh_min_interval), after the retry backoff (redis-py's cluster
# client retries a dead node 10 times, backing off up to 1 s). One more second covers a
# refresh that asked a node the promoted replica's news had not reached yet.
SETTLE = 2.0
PROMOTION_TIMEOUT = 20.0  # node timeout 2 s, then the election: seconds, even on a busy machine


def owner_and_replica(cluster: Cluster, key_prefix: str) -> tuple[ClusterNode, int]:
    """The master serving the store's hash tag, and the port of its replica."""
    seed = next(n for n in cluster.nodes if n.role == "master")
    with Redis(port=seed.port, decode_responses=True, socket_timeout=5) as r:
        slot = int(r.cluster("keyslot", "{" + key_prefix + "}"))
        view = r.cluster("nodes")
    owner = next(n for n in cluster.nodes if any(lo <= slot <= hi for lo, hi in n.slots))
    nodes = {int(addr.rpartition(":")[2]): info for addr, info in view.items()}
    (replica,) = (
        port for port, info in nodes.items() if info["master_id"] == nodes[owner.port]["node_id"]
    )
    return owner, replica


def kill_and_watch(owner: ClusterNode, replica: int) -> Failover:
    """SIGKILL ``owner``, then ask its replica its role until it calls itself master."""
    with Redis(port=replica, decode_responses=True, socket_timeout=2) as r:
        os.kill(owner.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(owner.pid, 0)
        killed_at = last_replica_at = time.monotonic()
        deadline = killed_at + PROMOTION_TIMEOUT
        while time.monotonic() < deadline:
            asked = time.monotonic()
            if r.execute_command("ROLE")[0] == "master":
                promoted_at = time.monotonic()
                return Failover(killed_at, last_replica_at, promoted_at, promoted_at + SETTLE)
            last_replica_at = asked
            time.sleep(0.01)
    raise AssertionError(f"replica {replica} not promoted within {PROMOTION_TIMEOUT}s")


def test_the_slot_owner_killed_mid_storm_nothing_acknowledged_is_lost_nothing_doubled(
    tmp_path: Path,
) -> None:
    key_prefix = f"failover-{uuid.uuid4().hex[:8]}"
    with (
        fakes(tmp_path) as world,
        redis_cluster(tmp_path / "cluster") as cluster,
        receiver(
            receiver_config(
                tmp_path / "receiver.yaml",
                store_url=cluster.url,
                key_prefix=key_prefix,
                world=world,
            ),
            tmp_path / "receiver",
        ) as process,
    ):
        owner, replica = owner_and_replica(cluster, key_prefix)
        log, failover = storm_through(process, lambda: kill_and_watch(owner, replica))
        assert_nothing_lost(log, failover, process, world, "the slot's master")
