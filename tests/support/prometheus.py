"""A real Prometheus with backfilled history, and two small servers that misbehave.

``prometheus_server`` turns an OpenMetrics file into TSDB blocks with ``promtool tsdb
create-blocks-from openmetrics`` and serves them; the data lies in the past, so the blocks
are older than the (empty) head and every query names its ``time``.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from tests.support.processes import binary, free_port, running
from tests.support.receiver_process import poll

DATA = Path(__file__).resolve().parent.parent / "data" / "prometheus"

_CONFIG = """\
global:
  scrape_interval: 1m
scrape_configs: []
"""


@contextlib.contextmanager
def prometheus_server(workdir: Path, openmetrics: Path) -> Iterator[str]:
    """Prometheus serving the samples of ``openmetrics``; yields its base URL."""
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
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers; yields the port.

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

    thread = threading.Thread(target=accept, name="silent-server", daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


@dataclass
class FakeHttp:
    """What ``fake_http`` answers to every request, and the request headers it saw."""

    status: int
    body: bytes
    content_type: str = "application/json"
    seen_headers: list[dict[str, str]] = field(default_factory=list)
    url: str = ""


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

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fake.seen_headers.append(dict(self.headers))
            self.send_response(fake.status)
            self.send_header("Content-Type", fake.content_type)
            self.send_header("Content-Length", str(len(fake.body)))
            self.end_headers()
            self.wfile.write(fake.body)

        do_POST = do_GET

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-http", daemon=True
    )
    thread.start()
    scheme = "https" if tls is not None else "http"
    fake.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
