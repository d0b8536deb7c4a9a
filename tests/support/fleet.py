"""The processes a soak kills and starts again: receiver replicas on fixed ports, and a
redis-server that keeps its data on disk (AOF) across a crash.

A replica restarts on its own port, so the balancer in front finds it again without a
reload, as a Kubernetes pod comes back behind its Service. Every process here is stopped
by its PID when the block ends, whatever happened.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import httpx
import redis

from tests.support.processes import free_port, redis_args, stop, wait_for_port
from tests.support.receiver_process import poll, receiver_binary

READY_TIMEOUT = 40.0  # a busy 2-core machine, two other replicas and a storm beside it
# A replica that exits while starting (its store just went away, say) is started again,
# as its supervisor would; more exits than this is a fault of the test, not bad luck.
START_TRIES = 3


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None:
        stop(proc)


def _ready(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200
    return False


class Replica:
    """One ``journey-receiver serve`` slot: a fixed port, one log for all its lives."""

    def __init__(self, index: int, config: Path, workdir: Path) -> None:
        self.index = index
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = config
        self.workdir = workdir
        self.log = workdir / "receiver.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.up = False
        self.starts = 0
        self.ready_after: list[float] = []
        self.down: list[tuple[float, float | None]] = []
        """(killed, ready again) monotonic times of each kill; None while still down."""
        workdir.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        """Start it and wait until ``/readyz`` answers 200."""
        began = time.monotonic()
        for _ in range(START_TRIES):
            self.starts += 1
            args = [
                receiver_binary(), "serve",
                "--config", str(self.config),
                "--host", "127.0.0.1",
                "--port", str(self.port),
            ]  # fmt: skip
            with self.log.open("ab") as out:
                out.write(f"\n--- start {self.starts} of replica {self.index} ---\n".encode())
                out.flush()
                self.proc = subprocess.Popen(
                    args, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir
                )
            poll(
                partial(self._started, self.proc),
                bool,
                what=f"replica {self.index} ready at {self.url}",
                timeout=READY_TIMEOUT,
                step=0.1,
                context=self.tail,
            )
            if self.proc.poll() is None:
                self.ready_after.append(time.monotonic() - began)
                if self.down and self.down[-1][1] is None:
                    self.down[-1] = (self.down[-1][0], time.monotonic())
                self.up = True
                return
        raise RuntimeError(f"replica {self.index} exited {START_TRIES} times\n{self.tail()}")

    def _started(self, proc: subprocess.Popen[bytes]) -> bool:
        """Ready, or exited (the caller tells which)."""
        return proc.poll() is not None or _ready(self.url)

    def kill(self) -> None:
        """SIGKILL, then reap it."""
        self.up = False
        self.down.append((time.monotonic(), None))
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        self.up = False
        _stop(self.proc)

    def tail(self, chars: int = 4000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.log} (end) ---\n{text[-chars:]}"


@contextlib.contextmanager
def replicas(config: Path, workdir: Path, count: int) -> Iterator[list[Replica]]:
    """``count`` replicas started side by side; every one stopped by its PID after."""
    fleet = [Replica(i, config, workdir / f"replica-{i}") for i in range(count)]
    try:
        with ThreadPoolExecutor(count) as pool:
            list(pool.map(Replica.start, fleet))
        yield fleet
    finally:
        for replica in fleet:
            replica.stop()


class DurableRedis:
    """redis-server with AOF on, restarted on the same port and directory after a crash.

    ``appendfsync``: ``always`` writes every command to disk before answering it, so a
    SIGKILL loses nothing that was acknowledged; ``everysec`` (what docs/operating.md
    recommends for production) may lose the last second of writes to a crash.
    """

    def __init__(self, workdir: Path, appendfsync: str = "always") -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.appendfsync = appendfsync
        self.log = workdir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.down_for: list[float] = []
        workdir.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        """Start it and wait until it answers PING (after loading the AOF)."""
        args = redis_args(
            self.port, self.workdir, "--appendonly", "yes", "--appendfsync", self.appendfsync
        )
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.proc)
        with redis.Redis(port=self.port, socket_timeout=2) as client:

            def pong() -> bool:
                with contextlib.suppress(redis.RedisError):
                    return bool(client.ping())
                return False

            poll(pong, bool, what=f"redis on {self.port} loaded its AOF", timeout=READY_TIMEOUT)

    def crash_and_restart(self, down: float) -> None:
        """SIGKILL it, stay down ``down`` seconds (a supervisor's restart delay), start it
        again on its data."""
        assert self.proc is not None
        killed = time.monotonic()
        self.proc.kill()
        self.proc.wait()
        time.sleep(down)
        self.start()
        self.restarts += 1
        self.down_for.append(time.monotonic() - killed)

    def stop(self) -> None:
        _stop(self.proc)


@contextlib.contextmanager
def durable_redis(workdir: Path, appendfsync: str = "always") -> Iterator[DurableRedis]:
    server = DurableRedis(workdir, appendfsync)
    try:
        server.start()
        yield server
    finally:
        server.stop()
