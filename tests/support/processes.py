"""Real servers for tests: free ports, start, wait until they answer, stop by PID."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s: {proc.args!r}")


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed: run scripts/setup --test")
    return path


@contextlib.contextmanager
def running(
    args: Sequence[str], port: int, log: Path, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``args``, wait for ``port``, stop it (by its PID) on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(list(args), stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    try:
        try:
            wait_for_port(port, proc)
        except Exception as exc:
            raise RuntimeError(f"{exc}\n--- {log} ---\n{log.read_text()[-3000:]}") from exc
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL after 10 s; a process that has already exited is left alone."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def redis_args(port: int, workdir: Path, *extra: str) -> list[str]:
    """A throwaway redis-server on loopback: no persistence, files in ``workdir``."""
    return [
        binary("redis-server"),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(workdir),
        *extra,
    ]  # fmt: skip


@contextlib.contextmanager
def redis_server(workdir: Path, *extra: str) -> Iterator[int]:
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    with running(redis_args(port, workdir, *extra), port, workdir / "redis.log"):
        yield port
