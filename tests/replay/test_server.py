"""``replay``'s own redis-server: reachable only by its owner, gone when the replay is (even
after ``kill -9``), and when it cannot run, a reason instead of a failure.

The real ``redis-server`` from ``PATH``; the reasons come from stand-in scripts named
``redis-server`` on a ``PATH`` of the test's own.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def test_a_replay_killed_outright_takes_its_server_along(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c",
         "import time\n"
         "from receiver.replay.server import private_redis\n"
         "with private_redis() as server:\n"
         "    print(server.pid, server.url, flush=True)\n"
         "    time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
        # Its temporary directory, left behind by a kill -9, under the test's own.
        env={**os.environ, "TMPDIR": str(tmp_path)},
    ) as holder:  # fmt: skip
        try:
            assert holder.stdout is not None
            pid_text, url = holder.stdout.readline().split()
            pid = int(pid_text)
            assert alive(pid)
            assert Path(url.removeprefix("unix://")).parent.parent == tmp_path
        finally:
            holder.kill()
    assert gone_within(pid, 5.0), f"redis-server {pid} outlived the replay that started it"
