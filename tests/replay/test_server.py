"""``replay``'s own redis-server: reachable only by its owner, gone when the replay is (even
after ``kill -9``), and when it cannot run, a reason instead of a failure.

The real ``redis-server`` from ``PATH``; the reasons come from stand-in scripts named
``redis-server`` on a ``PATH`` of the test's own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from redis import Redis

from receiver.replay.scratch import MEMORY
from receiver.replay.server import AUTO, Unavailable, private_redis, store


def alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (killed, not yet reaped by whoever adopted it) does not."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return not alive(pid)


def stand_in(directory: Path, script: str) -> None:
    """A ``redis-server`` in ``directory`` that runs ``script`` (sh) instead."""
    fake = directory / "redis-server"
    fake.write_text("#!/bin/sh\n" + script)
    fake.chmod(0o755)


def test_the_private_server_answers_on_a_socket_only_its_owner_may_open_and_then_is_gone() -> None:
    with private_redis() as server:
        assert server.url.startswith("unix://")
        socket = Path(server.url.removeprefix("unix://"))
        assert stat.S_ISSOCK(socket.stat().st_mode)
        assert stat.S_IMODE(socket.stat().st_mode) == 0o700
        client = Redis.from_url(server.url)
        try:
            assert client.ping()
            # No TCP listener, nothing it would write to disk.
            assert client.config_get("port") == {"port": "0"}
            assert client.config_get("save") == {"save": ""}
            assert client.config_get("appendonly") == {"appendonly": "no"}
        finally:
            client.close()
        assert alive(server.pid)
    assert not alive(server.pid)
    assert not socket.parent.exists()


def test_auto_is_the_private_server_and_anything_else_is_as_given() -> None:
    with store(AUTO) as (url, why):
        assert url.startswith("unix://")
        assert why is None
    with store("redis://127.0.0.1:1/3") as (url, why):
        assert (url, why) == ("redis://127.0.0.1:1/3", None)


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        (None, "no redis-server on PATH"),
        ("echo 'Redis server v=6.0.9 sha=00000000:0 malloc=jemalloc-5.2.1 bits=64'\n",
         "{bin} is Redis 6.0; the scripts need 6.2 or later"),
        ("echo 'redis-server, the one and only'\n",
         "{bin} --version does not say which version it is"),
        # Started, then refused to run: the last line of its log is the reason.
        ('[ "$1" = --version ] && { echo "Redis server v=7.2.4"; exit 0; }\n'
         'while [ $# -gt 0 ]; do [ "$1" = --logfile ] && log="$2"; shift; done\n'
         'echo "# Fatal error, cannot bind the socket" >> "$log"; exit 1\n',
         "redis-server exited at once: # Fatal error, cannot bind the socket"),
    ],
    ids=["missing", "too-old", "no-version", "exits"],
)  # fmt: skip
def test_without_a_usable_server_auto_is_the_embedded_store_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str | None, reason: str
) -> None:
    if script is not None:
        stand_in(tmp_path, script)
    monkeypatch.setenv("PATH", str(tmp_path))
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    why = reason.format(bin=tmp_path / "redis-server")
    with pytest.raises(Unavailable) as raised, private_redis():
        pass
    assert str(raised.value) == why
    with store(AUTO) as (url, said):
        assert (url, said) == (MEMORY, why)
    # The temporary directory of a server that did not run is gone too.
    assert list(temporary.iterdir()) == []


# A replay started from a terminal hears these, even when the tests run under nohup or `&`
# (a child inherits the signals its parent ignores).
_HEARD = (
    "import signal as _signal\n"
    "_signal.signal(_signal.SIGINT, _signal.default_int_handler)\n"
    "_signal.signal(_signal.SIGTERM, _signal.SIG_DFL)\n"
    "_signal.signal(_signal.SIGHUP, _signal.SIG_DFL)\n"
)
_PRELUDE = _HEARD + "from receiver.replay.server import private_redis\n"


@contextlib.contextmanager
def replay_process(tmp_path: Path, script: str, **popen: Any) -> Iterator[Holder]:
    """A Python process running ``script`` (which holds a private redis-server and prints
    its pid first), its temporary directories under ``tmp_path``; killed if still running
    after the block."""
    with subprocess.Popen(
        [sys.executable, "-c", _PRELUDE + script],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "TMPDIR": str(tmp_path)}, **popen,
    ) as process:  # fmt: skip
        try:
            assert process.stdout is not None
            yield Holder(process, process.stdout, int(process.stdout.readline()))
        finally:
            if process.poll() is None:
                process.kill()


@dataclass
class Holder:
    process: subprocess.Popen[str]
    out: IO[str]
    server_pid: int


def test_a_replay_killed_outright_takes_its_server_along(tmp_path: Path) -> None:
    script = (
        "import time\n"
        "with private_redis() as server:\n"
        "    print(server.pid, flush=True)\n"
        "    print(server.url, flush=True)\n"
        "    time.sleep(60)\n"
    )
    with replay_process(tmp_path, script) as holder:
        assert alive(holder.server_pid)
        assert Path(holder.out.readline().strip().removeprefix("unix://")).parent.parent == tmp_path
        holder.process.kill()
    assert gone_within(holder.server_pid, 5.0), "redis-server outlived the replay that started it"


def test_a_ctrl_c_is_the_replays_and_its_server_answers_while_it_winds_down(
    tmp_path: Path,
) -> None:
    script = (
        "import time\n"
        "from redis import Redis\n"
        "with private_redis() as server:\n"
        "    try:\n"  # before the pid is out: the Ctrl-C may come as soon as it is
        "        print(server.pid, flush=True)\n"
        "        time.sleep(60)\n"
        "    except KeyboardInterrupt:\n"
        "        time.sleep(0.5)  # a server that took the Ctrl-C too has shut down by now\n"
        "        print(Redis.from_url(server.url).ping(), flush=True)\n"
    )
    # A terminal of its own: Ctrl-C goes to every process of its foreground group.
    with replay_process(tmp_path, script, start_new_session=True) as holder:
        os.killpg(holder.process.pid, signal.SIGINT)
        assert holder.out.readline() == "True\n"
        assert holder.process.wait(10) == 0
    assert gone_within(holder.server_pid, 5.0)
    assert list(tmp_path.iterdir()) == []


def _replaying(then: str) -> str:
    """A replay's stand-in for ``interruptible``: it says ``replaying`` once its signal
    handlers are in place, then does ``then`` (one line)."""
    return (
        "import anyio\n"
        "from receiver.replay.run import interruptible\n"
        "async def replaying():\n"
        "    await anyio.sleep(0.3)  # its signal handlers are in place by then\n"
        "    print('replaying', flush=True)\n"
        f"    {then}\n"
    )


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_replay_told_to_stop_winds_down_like_on_ctrl_c(
    tmp_path: Path, stop: signal.Signals
) -> None:
    script = _replaying("await anyio.sleep(60)") + (
        "with private_redis() as server:\n"
        "    print(server.pid, flush=True)\n"
        "    try:\n"
        "        interruptible(replaying)\n"
        "    except KeyboardInterrupt:\n"
        "        print('wound down', flush=True)\n"
    )
    with replay_process(tmp_path, script) as holder:
        assert holder.out.readline() == "replaying\n"
        holder.process.send_signal(stop)
        assert holder.out.readline() == "wound down\n"
        assert holder.process.wait(10) == 0
    assert gone_within(holder.server_pid, 5.0)
    # Stopped by the replay itself, not by the kernel: its directory went with it.
    assert list(tmp_path.iterdir()) == []


def test_a_replay_started_to_ignore_hangups_keeps_running_through_one(tmp_path: Path) -> None:
    script = _replaying("await anyio.sleep(0.6); print('done', flush=True)") + (
        "import signal\n"
        "signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup starts it\n"
        "with private_redis() as server:\n"
        "    print(server.pid, flush=True)\n"
        "    interruptible(replaying)\n"
    )
    with replay_process(tmp_path, script) as holder:
        assert holder.out.readline() == "replaying\n"
        holder.process.send_signal(signal.SIGHUP)
        assert holder.out.readline() == "done\n"
        assert holder.process.wait(10) == 0
    assert gone_within(holder.server_pid, 5.0)
