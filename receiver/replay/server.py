"""``replay`` without ``--store``: a redis-server of the replay's own, when one is installed.

The embedded store (``memory://``) runs the receiver's Lua scripts in Python (fakeredis on
lupa), which makes a busy week about three times slower than on a real Redis. So unless
``--store`` says otherwise, the replay starts a ``redis-server`` from ``PATH`` for itself and
runs on it as on any ``--store``: no TCP port (a Unix socket, mode 0700, in a temporary
directory of its own), nothing saved to disk, stopped by its PID when the replay ends, and on
Linux killed by the kernel when the replay process dies, ``kill -9`` too (``PR_SET_PDEATHSIG``).
When there is none, when it is older than the scripts need, or when it does not answer
within ``START_TIMEOUT_S``, the replay runs embedded and says why.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from shutil import which

from redis import Redis
from redis.exceptions import RedisError

from receiver.replay.scratch import MEMORY

AUTO = "auto"
"""``--store``'s default: a private redis-server if there is one, else ``memory://``."""
BINARY = "redis-server"
OLDEST = (6, 2)
"""The scripts use ``ZADD … LT`` (Redis 6.2)."""
START_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 5.0
_PR_SET_PDEATHSIG = 1
_VERSION = re.compile(r"\bv=(\d+)\.(\d+)")


@dataclass(frozen=True, slots=True)
class Private:
    """A running private redis-server: where to reach it, and its process."""

    url: str
    pid: int


class Unavailable(Exception):
    """No private redis-server could be started; the message says why."""


@contextlib.contextmanager
def private_redis(binary: str = BINARY) -> Iterator[Private]:
    """A redis-server of this process's own for the block, stopped when it ends.

    ``Unavailable`` (before the block) when ``binary`` is not on ``PATH``, is older than
    ``OLDEST``, or does not answer within ``START_TIMEOUT_S``."""
    path = which(binary)
    if path is None:
        raise Unavailable(f"no {binary} on PATH")
    _check_version(path)
    with tempfile.TemporaryDirectory(prefix="journey-receiver-replay-") as tmp:
        socket = Path(tmp) / "redis.sock"
        log = Path(tmp) / "redis.log"
        argv = [path, "--port", "0", "--unixsocket", str(socket), "--unixsocketperm", "700",
                "--save", "", "--appendonly", "no", "--dir", tmp, "--logfile", str(log),
                "--daemonize", "no"]  # fmt: skip
        # What it says before its log is open (an argument it refuses) goes there too.
        with log.open("ab") as early:
            try:
                process = subprocess.Popen(  # noqa: S603 — redis-server from PATH, fixed arguments
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=early,
                    stderr=early,
                    # Out of the terminal's process group: a Ctrl-C is the replay's to handle
                    # (it still needs its store while it winds down), not the server's.
                    start_new_session=True,
                    preexec_fn=_die_with_parent(),
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise Unavailable(f"{path} did not start: {exc}") from exc
        try:
            _wait_ready(process, socket, log)
            yield Private(f"unix://{socket}", process.pid)
        finally:
            _stop(process)


def _check_version(path: str) -> None:
    try:
        answer = subprocess.run(  # noqa: S603 — redis-server from PATH
            [path, "--version"], capture_output=True, text=True, timeout=START_TIMEOUT_S
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise Unavailable(f"{path} --version failed: {exc}") from exc
    found = _VERSION.search(answer)
    if found is None:
        raise Unavailable(f"{path} --version does not say which version it is")
    version = (int(found[1]), int(found[2]))
    if version < OLDEST:
        raise Unavailable(
            f"{path} is Redis {version[0]}.{version[1]}; the scripts need "
            f"{OLDEST[0]}.{OLDEST[1]} or later"
        )


def _wait_ready(process: subprocess.Popen[bytes], socket: Path, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise Unavailable(f"{BINARY} exited at once: {_last_line(log)}")
        if socket.exists():
            client = Redis(unix_socket_path=str(socket), socket_timeout=1.0)
            try:
                if client.ping():
                    return
            except RedisError:
                pass  # still loading: asked again below
            finally:
                client.close()
        time.sleep(0.01)
    raise Unavailable(f"{BINARY} did not answer within {START_TIMEOUT_S:g}s")


def _last_line(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        lines = []
    return lines[-1] if lines else "no log"


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _die_with_parent() -> Callable[[], None] | None:
    """What the child runs before redis-server: a parent that dies takes it along, or a
    replay killed outright would leave a server running with nobody to stop it. Looked up
    here, before the fork: the child may only make the call.

    Linux sends the signal when the *thread* that forked ends, so the server must be
    started from the thread that outlives the replay (the main one, as ``command.py``
    does), and before any other thread runs (``preexec_fn`` is unsafe with threads)."""
    prctl = getattr(ctypes.CDLL(None), "prctl", None)  # the process's own C library
    if prctl is None:  # not Linux
        return None
    parent = os.getpid()

    def ask() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the replay died before the request was made
            os._exit(1)

    return ask


@contextlib.contextmanager
def store(given: str) -> Iterator[tuple[str, str | None]]:
    """The store URL for ``--store given`` while the block runs, and for ``auto`` why it is
    the embedded one (None when a private redis-server runs for it)."""
    if given != AUTO:
        yield given, None
        return
    with contextlib.ExitStack() as running:
        try:
            url, why = running.enter_context(private_redis()).url, None
        except Unavailable as exc:
            url, why = MEMORY, str(exc)
        yield url, why
