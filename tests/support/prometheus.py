"""A real Prometheus with backfilled history, and two small servers that misbehave.

``prometheus_server`` turns an OpenMetrics file into TSDB blocks with ``promtool tsdb
create-blocks-from openmetrics`` and serves them; the data lies in the past, so the blocks
are older than the (empty) head and every query names its ``time``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.fake_server import FakeServer, serve
from tests.support.processes import binary, free_port, running
from tests.support.receiver_process import poll

DATA = Path(__file__).resolve().parent.parent / "data" / "prometheus"

_CONFIG = """\
global:
  scrape_interval: 1m
scrape_configs: []
"""


@contextlib.contextmanager
def prometheus_server(workdir: Path, openmetrics: Path, rules: str = "") -> Iterator[str]:
    """Prometheus serving the samples of ``openmetrics``; yields its base URL. ``rules``:
    a rule file's text to load too (evaluated on the empty present, so they only show in
    the rules API)."""
    workdir.mkdir(parents=True, exist_ok=True)
    tsdb = workdir / "tsdb"
    backfill = subprocess.run(
        [binary("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(openmetrics),
         str(tsdb)],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    if backfill.returncode != 0:
        raise RuntimeError(f"promtool backfill failed:\n{backfill.stdout}\n{backfill.stderr}")
    config = workdir / "prometheus.yml"
    config.write_text(_CONFIG)
    if rules:
        (workdir / "rules.yml").write_text(rules)
        config.write_text(_CONFIG + f"rule_files: [{json.dumps(str(workdir / 'rules.yml'))}]\n")
    port = free_port()
    args = [
        binary("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={tsdb}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=100y",
        "--log.level=warn",
    ]
    log = workdir / "prometheus.log"
    with running(args, port, log):
        url = f"http://127.0.0.1:{port}"
        poll(
            lambda: _ready(url),
            bool,
            what="prometheus /-/ready",
            timeout=30.0,
            context=lambda: log.read_text()[-3000:],
        )
        yield url


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def tcp_server(
    handle: Callable[[socket.socket, threading.Event], None] | None = None,
) -> Iterator[tuple[int, list[socket.socket]]]:
    """A TCP port on 127.0.0.1 that accepts connections and gives each to ``handle`` (with
    the event set on exit) on a thread of its own; without ``handle`` none is answered.
    Yields the port and the connections accepted so far.

    On exit every accepted connection is closed, so clients still reading give up.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.05)
    stop = threading.Event()
    accepted: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                conn, _ = listener.accept()
                accepted.append(conn)
                if handle is not None:
                    threading.Thread(target=handle, args=(conn, stop), daemon=True).start()

    thread = threading.Thread(target=accept, name="tcp-server", daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers; yields the port."""
    with tcp_server() as (port, _):
        yield port


@dataclass
class FakeHttp:
    """What ``fake_http`` answers to every request, and the requests it saw."""

    status: int
    body: bytes
    content_type: str = "application/json"
    server: FakeServer = field(default_factory=FakeServer)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def seen_headers(self) -> list[dict[str, str]]:
        """Each request's headers, names in lower case."""
        return [seen.headers for seen in self.server.requests()]


def self_signed_cert(workdir: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA, and its key: (cert, key)."""
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(
        [binary("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@contextlib.contextmanager
def fake_http(
    status: int,
    body: bytes,
    content_type: str = "application/json",
    *,
    tls: tuple[Path, Path] | None = None,
) -> Iterator[FakeHttp]:
    """An HTTP server giving the same answer to every request (a broken or hostile backend).

    With ``tls`` (cert, key) it speaks HTTPS.
    """
    fake = FakeHttp(status, body, content_type)

    async def answer(request: Request) -> Response:
        return Response(fake.body, status_code=fake.status, media_type=fake.content_type)

    app = Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST"])])
    with serve(app, fake.server, tls=tls):
        yield fake
