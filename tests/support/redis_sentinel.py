"""Real Redis Sentinel on loopback: a master, its replicas and the sentinels watching
them, with passwords and TLS if asked; every process stopped by its PID."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from redis import Redis

from tests.support.processes import binary, free_port, redis_args, running
from tests.support.prometheus import self_signed_cert

MASTER_NAME = "jrmaster"
QUORUM = 2
# A master is called down after this long without answering: short, so a test that kills
# it sees a replica promoted within seconds, yet far more than a busy machine holds one up.
DOWN_AFTER_MS = 2000
# A failed election is tried again after twice this; it also bounds the wait for the other
# replica to follow the new master.
FAILOVER_TIMEOUT_MS = 4000
FORM_TIMEOUT_S = 60.0  # replica syncs and sentinel discovery, on a busy 2-core machine


@dataclass(frozen=True)
class Node:
    port: int
    pid: int


@dataclass(frozen=True)
class Tls:
    """One self-signed certificate for 127.0.0.1, its own CA: every server's certificate
    and every client's, so that the servers can ask clients for one (``tls-auth-clients``)."""

    ca: Path
    cert: Path
    key: Path

    def options(self) -> dict[str, Any]:
        return {
            "ssl": True,
            "ssl_ca_certs": str(self.ca),
            "ssl_certfile": str(self.cert),
            "ssl_keyfile": str(self.key),
        }


@dataclass(frozen=True)
class SentinelSet:
    master: Node  # as started; a failover changes which node is the master
    replicas: tuple[Node, ...]
    sentinels: tuple[Node, ...]
    password: str | None  # Redis's requirepass (and the replicas' masterauth)
    sentinel_password: str | None  # the sentinels' requirepass
    tls: Tls | None

    @property
    def url(self) -> str:
        """The store URL reaching the master through every sentinel."""
        scheme = "rediss+sentinel" if self.tls else "redis+sentinel"
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        options = []
        if self.sentinel_password:
            options.append(f"sentinel_password={quote(self.sentinel_password, safe='')}")
        if self.tls:
            options += [
                f"ssl_ca_certs={self.tls.ca}",
                f"ssl_certfile={self.tls.cert}",
                f"ssl_keyfile={self.tls.key}",
            ]
        query = f"?{'&'.join(options)}" if options else ""
        return f"{scheme}://{auth}{hosts}/{MASTER_NAME}/0{query}"

    def redis(self, port: int) -> Redis:
        """A client of one Redis node (master or replica), with its password and TLS."""
        return self._client(port, self.password)

    def sentinel(self, port: int) -> Redis:
        """A client of one sentinel, with the sentinels' password and TLS."""
        return self._client(port, self.sentinel_password)

    def _client(self, port: int, password: str | None) -> Redis:
        tls = self.tls.options() if self.tls else {}
        return Redis(
            host="127.0.0.1",
            port=port,
            password=password,
            decode_responses=True,
            socket_timeout=5,
            **tls,
        )


@contextlib.contextmanager
def redis_sentinel(
    workdir: Path,
    *,
    password: str | None = None,
    sentinel_password: str | None = None,
    tls: bool = False,
    replicas: int = 2,
    sentinels: int = 3,
) -> Iterator[SentinelSet]:
    """Start a master, ``replicas`` replicas of it and ``sentinels`` sentinels watching it
    (quorum 2); yield once the replicas are in sync and every sentinel sees the master, every
    replica and every other sentinel; stop every process (by PID) on exit.

    ``password`` guards Redis, ``sentinel_password`` the sentinels; with ``tls`` every
    process listens on TLS only, speaks it to the others and asks clients for a certificate.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    certs = _certs(workdir) if tls else None
    with contextlib.ExitStack() as stack:

        def redis_node(name: str, *extra: str) -> Node:
            port = free_port()
            node_dir = workdir / f"{name}-{port}"
            node_dir.mkdir()
            args = redis_args(
                port, node_dir,
                *_listen(port, certs),
                # Any node may become the master: each asks for the password and gives it.
                *(("--requirepass", password, "--masterauth", password) if password else ()),
                # The default holds a replica's first sync back 5 s, waiting for others.
                "--repl-diskless-sync-delay", "0",
                *extra,
            )  # fmt: skip
            proc = stack.enter_context(running(args, port, node_dir / "redis.log"))
            return Node(port, proc.pid)

        master = redis_node("master")
        copies = tuple(
            redis_node("replica", "--replicaof", "127.0.0.1", str(master.port))
            for _ in range(replicas)
        )
        partial = SentinelSet(master, copies, (), password, sentinel_password, certs)
        # A sentinel learns of replicas from the master's INFO, which it reads on connecting
        # and then only every 10 s: start the sentinels once the replicas are attached.
        _wait(lambda: _replicas_synced(partial), "replicas in sync")
        watchers = []
        for _ in range(sentinels):
            port = free_port()
            node_dir = workdir / f"sentinel-{port}"
            node_dir.mkdir()
            conf = node_dir / "sentinel.conf"  # a sentinel rewrites its file: one each
            conf.write_text(_sentinel_conf(port, node_dir, master.port, partial))
            args = [binary("redis-server"), str(conf), "--sentinel"]
            proc = stack.enter_context(running(args, port, node_dir / "sentinel.log"))
            watchers.append(Node(port, proc.pid))
        formed = SentinelSet(master, copies, tuple(watchers), password, sentinel_password, certs)
        _wait(lambda: _sentinels_agree(formed), "every sentinel sees the whole set")
        yield formed


def _certs(workdir: Path) -> Tls:
    tls_dir = workdir / "tls"
    tls_dir.mkdir()
    cert, key = self_signed_cert(tls_dir)
    return Tls(ca=cert, cert=cert, key=key)


def _listen(port: int, certs: Tls | None) -> tuple[str, ...]:
    """Arguments that make a node listen on ``port``: in the clear, or on TLS only."""
    if certs is None:
        return ()
    return (
        "--port", "0",
        "--tls-port", str(port),
        "--tls-cert-file", str(certs.cert),
        "--tls-key-file", str(certs.key),
        "--tls-ca-cert-file", str(certs.ca),
        "--tls-auth-clients", "yes",
        "--tls-replication", "yes",  # a replica speaks TLS to its master
    )  # fmt: skip


def _sentinel_conf(port: int, workdir: Path, master_port: int, nodes: SentinelSet) -> str:
    lines = [
        "bind 127.0.0.1",
        f"dir {workdir}",
        f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} {QUORUM}",
        f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
        f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}",
        f"sentinel parallel-syncs {MASTER_NAME} 1",
    ]
    if nodes.password:
        lines.append(f"sentinel auth-pass {MASTER_NAME} {nodes.password}")
    if nodes.sentinel_password:
        # What clients must give, and what this sentinel gives the others when it asks
        # them for their votes.
        lines += [
            f"requirepass {nodes.sentinel_password}",
            f"sentinel sentinel-pass {nodes.sentinel_password}",
        ]
    if nodes.tls:
        lines += [
            "port 0",
            f"tls-port {port}",
            f"tls-cert-file {nodes.tls.cert}",
            f"tls-key-file {nodes.tls.key}",
            f"tls-ca-cert-file {nodes.tls.ca}",
            "tls-auth-clients yes",
            # A sentinel speaks TLS to the nodes and to the other sentinels.
            "tls-replication yes",
        ]
    else:
        lines.append(f"port {port}")
    return "\n".join(lines) + "\n"


def _wait(check: Any, what: str) -> None:
    """Poll ``check()`` (None once done, else what is still missing) until done."""
    deadline = time.monotonic() + FORM_TIMEOUT_S
    while True:
        try:
            problem = check()
        except Exception as exc:  # a node still starting refuses or drops the connection
            problem = f"{type(exc).__name__}: {exc}"
        if problem is None:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {FORM_TIMEOUT_S}s: {problem}")
        time.sleep(0.1)


def _replicas_synced(nodes: SentinelSet) -> str | None:
    with nodes.redis(nodes.master.port) as r:
        info = r.info("replication")
    online = [v for k, v in info.items() if k.startswith("slave") and v.get("state") == "online"]
    if len(online) != len(nodes.replicas):
        return f"master sees {len(online)} of {len(nodes.replicas)} replicas online: {info}"
    return None


def _sentinels_agree(nodes: SentinelSet) -> str | None:
    for s in nodes.sentinels:
        with nodes.sentinel(s.port) as r:
            state = r.sentinel_master(MASTER_NAME)
            others = int(state["num-other-sentinels"])
            if (
                not state["is_master"]
                or state["is_sdown"]
                or state["port"] != nodes.master.port
                or int(state["num-slaves"]) != len(nodes.replicas)
                or others != len(nodes.sentinels) - 1
            ):
                return f"sentinel {s.port}: {state}"
            # Each replica must be connected and known to be in sync, or the sentinels
            # could find none fit to promote.
            for replica in r.sentinel_slaves(MASTER_NAME):
                if replica["is_sdown"] or replica.get("master-link-status") != "ok":
                    return f"sentinel {s.port}: replica {replica}"
            r.execute_command("SENTINEL", "CKQUORUM", MASTER_NAME)  # raises without one
    return None
