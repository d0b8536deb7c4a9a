"""A real multi-master Redis Cluster on loopback: masters with replicas, stopped by PID."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis import Redis

from tests.support.processes import binary, free_port, redis_args, running

# Short, so a test that kills a master sees its replica take over within seconds, yet a
# node is failed over only after this long without answering: far more than a busy
# machine holds one up.
NODE_TIMEOUT_MS = 2000
FORM_TIMEOUT_S = 60.0  # redis-cli's join wait and replica syncs, on a busy 2-core machine
_UNWELL = {"fail", "fail?", "handshake", "noaddr"}  # CLUSTER NODES flags of a node not yet in


@dataclass(frozen=True)
class ClusterNode:
    port: int
    pid: int
    role: str  # "master" or "replica" as the cluster was formed; a failover changes it
    slots: tuple[tuple[int, int], ...]  # inclusive slot ranges a master serves; () on replicas


@dataclass(frozen=True)
class Cluster:
    url: str  # redis+cluster:// seed URL, pointing at a master
    nodes: tuple[ClusterNode, ...]


@contextlib.contextmanager
def redis_cluster(
    workdir: Path, masters: int = 3, replicas_per_master: int = 1
) -> Iterator[Cluster]:
    """Start ``masters * (1 + replicas_per_master)`` nodes, form a cluster of them, wait
    until every node agrees it is whole, yield it; stop every node (by PID) on exit.
    redis-cli refuses to form a cluster of fewer than 3 masters. The nodes' roles and
    slots are as formed: after a test kills a master, ask the cluster for the new ones."""
    count = masters * (1 + replicas_per_master)
    # The bus port is passed explicitly: the default, port + 10000, may be taken or > 65535.
    ports = _distinct_free_ports(2 * count)
    with contextlib.ExitStack() as stack:
        procs: dict[int, subprocess.Popen[bytes]] = {}
        for port, bus in zip(ports[:count], ports[count:], strict=True):
            node_dir = workdir / f"node-{port}"
            node_dir.mkdir(parents=True)
            args = redis_args(
                port, node_dir,
                "--cluster-enabled", "yes",
                "--cluster-port", str(bus),
                "--cluster-config-file", str(node_dir / "nodes.conf"),
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                # The default holds a replica's first sync back 5 s, waiting for others.
                "--repl-diskless-sync-delay", "0",
            )  # fmt: skip
            procs[port] = stack.enter_context(running(args, port, node_dir / "redis.log"))
        _create(list(procs), replicas_per_master)
        clients = [
            stack.enter_context(Redis(port=p, decode_responses=True, socket_timeout=5))
            for p in procs
        ]
        view = _wait_until_formed(clients, masters, count - masters)
        nodes = tuple(
            sorted((_node(addr, info, procs) for addr, info in view.items()), key=lambda n: n.port)
        )
        seed = next(n for n in nodes if n.role == "master")
        yield Cluster(url=f"redis+cluster://127.0.0.1:{seed.port}", nodes=nodes)


def _node(
    addr: str, info: dict[str, Any], procs: dict[int, subprocess.Popen[bytes]]
) -> ClusterNode:
    port = int(addr.rpartition(":")[2])
    return ClusterNode(
        port=port,
        pid=procs[port].pid,
        role="master" if "master" in info["flags"].split(",") else "replica",
        slots=tuple((int(s[0]), int(s[-1])) for s in info["slots"]),  # "5461" or "0-5460"
    )


def _distinct_free_ports(count: int) -> list[int]:
    # free_port() lets its port go, so the kernel may hand the same one out twice.
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _create(ports: list[int], replicas_per_master: int) -> None:
    done = subprocess.run(
        [
            binary("redis-cli"), "--cluster", "create",
            *(f"127.0.0.1:{p}" for p in ports),
            "--cluster-replicas", str(replicas_per_master),
            "--cluster-yes",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=FORM_TIMEOUT_S,
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"redis-cli --cluster create failed:\n{done.stdout}{done.stderr}")


def _wait_until_formed(clients: list[Redis], masters: int, replicas: int) -> dict[str, Any]:
    """Poll until every node calls the cluster ok and sees the same masters and replicas,
    and every replica's link to its master is up; return one node's CLUSTER NODES."""
    deadline = time.monotonic() + FORM_TIMEOUT_S
    while True:
        problem, view = _formed(clients, masters, replicas)
        if problem is None:
            return view
        if time.monotonic() > deadline:
            raise TimeoutError(f"cluster not formed after {FORM_TIMEOUT_S}s: {problem}")
        time.sleep(0.05)


def _formed(clients: list[Redis], masters: int, replicas: int) -> tuple[str | None, dict[str, Any]]:
    """What still keeps the cluster from being whole (None once nothing does), and the
    last node's view of it."""
    view: dict[str, Any] = {}
    for r in clients:
        port = r.connection_pool.connection_kwargs["port"]
        state = r.cluster("info")
        if state["cluster_state"] != "ok":
            return f"node {port}: {state}", view
        view = r.cluster("nodes")
        flags = [set(info["flags"].split(",")) for info in view.values()]
        # Every node must know each replica's master: a replica's failover needs the votes
        # of the other masters, which they give only to a replica of a master they know.
        seen = (sum("master" in f for f in flags), sum("slave" in f for f in flags))
        if seen != (masters, replicas) or any(f & _UNWELL for f in flags):
            return f"node {port} sees {sorted(map(sorted, flags))}", view
        me = next(info for info in view.values() if "myself" in info["flags"])
        if "slave" in me["flags"] and r.info("replication")["master_link_status"] != "up":
            return f"replica {port} not synced with its master", view
    return None, view
