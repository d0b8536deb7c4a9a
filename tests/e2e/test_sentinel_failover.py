"""The Redis master behind three sentinels is SIGKILLed mid-storm (real sentinels and
replicas, with passwords and TLS everywhere, a real receiver process, the sink fakes):
the sentinels promote a replica, the receiver finds it through them, nothing acknowledged
is lost, no sink object is doubled, and no batch is accepted while there is no master.

Until the sentinels name the new master, every new connection the receiver's client
makes goes where they still point, the dead master: refused, so the batch is answered
503 once the client's retries run out (Alertmanager retries it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

from tests.e2e.test_crash_safety import receiver, receiver_config
from tests.support.failover import Failover, assert_nothing_lost, storm_through
from tests.support.redis_sentinel import (
    DOWN_AFTER_MS,
    MASTER_NAME,
    SentinelSet,
    redis_sentinel,
)
from tests.support.sink_world import fakes

# Down after DOWN_AFTER_MS, then the sentinels' election and the promotion: seconds, even
# on a busy machine; a failed election is tried again after twice the failover timeout.
PROMOTION_TIMEOUT = 20.0
# Once a sentinel names the new master, a batch's first try reaches it: the client asks the
# sentinels on every new connection, and every connection to the dead master is gone by
# then. The margin is for a receiver still working through the batches held by the gap.
SETTLE = 1.0


def kill_and_watch(nodes: SentinelSet) -> Failover:
    """SIGKILL the master, then ask both replicas their role until one calls itself master,
    then the sentinels until one names it as a master in good standing (the one a client
    takes)."""
    replicas = {r.port: nodes.redis(r.port) for r in nodes.replicas}
    sentinels = [nodes.sentinel(s.port) for s in nodes.sentinels]
    with contextlib.ExitStack() as stack:
        for client in [*replicas.values(), *sentinels]:
            stack.enter_context(client)
        os.kill(nodes.master.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(nodes.master.pid, 0)
        killed_at = last_replica_at = time.monotonic()
        deadline = killed_at + PROMOTION_TIMEOUT
        promoted: int | None = None
        while promoted is None and time.monotonic() < deadline:
            asked = time.monotonic()
            promoted = next(
                (p for p, r in replicas.items() if r.execute_command("ROLE")[0] == "master"), None
            )
            if promoted is None:
                last_replica_at = asked
                time.sleep(0.01)
        promoted_at = time.monotonic()
        while promoted is not None and time.monotonic() < deadline:
            for s in sentinels:
                state = s.sentinel_master(MASTER_NAME)
                if state["port"] == promoted and not (state["is_sdown"] or state["is_odown"]):
                    return Failover(
                        killed_at, last_replica_at, promoted_at, time.monotonic() + SETTLE
                    )
            time.sleep(0.01)
    raise AssertionError(
        f"no replica promoted and named by the sentinels within {PROMOTION_TIMEOUT}s"
        f" (down after {DOWN_AFTER_MS} ms); promoted: {promoted}"
    )


def test_the_master_killed_mid_storm_nothing_acknowledged_is_lost_nothing_doubled(
    tmp_path: Path,
) -> None:
    with (
        fakes(tmp_path) as world,
        redis_sentinel(
            tmp_path / "sentinel",
            password="redis-pw",
            sentinel_password="sentinel-pw",
            tls=True,
        ) as nodes,
        receiver(
            receiver_config(
                tmp_path / "receiver.yaml",
                store_url=nodes.url,
                key_prefix=f"failover-{uuid.uuid4().hex[:8]}",
                world=world,
            ),
            tmp_path / "receiver",
        ) as process,
    ):
        log, failover = storm_through(process, lambda: kill_and_watch(nodes))
        assert_nothing_lost(log, failover, process, world, "the master behind the sentinels")
