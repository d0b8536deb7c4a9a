"""journey-receiver as a real process: write its config, start it, read its notifications."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import binary, free_port, running

T = TypeVar("T")

# The log sink's JSON payload carries this; the logging format puts a prefix before it.
NOTIFICATION_MARK = '"event": "incident_notification"'


def poll(
    fetch: Callable[[], T],
    done: Callable[[T], bool],
    *,
    what: str,
    timeout: float = 20.0,
    step: float = 0.1,
    context: Callable[[], str] | None = None,
) -> T:
    """``fetch()`` until ``done`` holds for its value; waits for real processes, not time.

    On timeout the error shows the last value and ``context()`` (e.g. a process's log).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() >= deadline:
            extra = f"\n{context()}" if context else ""
            raise AssertionError(
                f"{what}: not reached within {timeout}s; last seen:\n{value!r}{extra}"
            )
        time.sleep(step)


def write_config(
    path: Path,
    *,
    store_url: str,
    key_prefix: str,
    token: str,
    journeys_file: Path,
    grouping: dict[str, Any] | None = None,
    scheduler: dict[str, Any] | None = None,
    **sections: Any,
) -> Path:
    """A receiver.yaml shaped like ``config/receiver.yaml``, with short timers by default;
    ``sections`` replace top-level sections (``routing``, ``sinks``, ``outbox``...)."""
    config = {
        "server": {
            "host": "127.0.0.1",
            "port": 9095,
            "keepalive_timeout": "120s",
            "max_body_bytes": 5 * 1024 * 1024,
            "auth": {"bearer_tokens": [token]},
        },
        "store": {"url": store_url, "key_prefix": key_prefix, "retention": "1h"},
        "prometheus": {"timeout": "1s"},
        "events": {"retention": "1h", "lookback": "30m"},
        "grouping": grouping
        or {
            "group_by": ["env", "region"],
            "group_wait": "1s",
            "group_interval": "2s",
            "resolve_after": "2s",
            "reopen_window": "10m",
        },
        "scheduler": scheduler or {"tick": "200ms", "lease": "5s", "batch": 100},
        "routing": {"log": ["P1", "P2", "P3", "P4", "P5"]},
        "sinks": {"log": {"enabled": True}},
        "journeys_file": str(journeys_file.resolve()),
    } | sections
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def receiver_binary() -> str:
    """The console script installed next to this interpreter (the venv's), else on PATH."""
    local = Path(sys.executable).with_name("journey-receiver")
    return str(local) if local.exists() else binary("journey-receiver")


@dataclass(frozen=True)
class ReceiverProcess:
    url: str
    port: int
    pid: int
    token: str
    log: Path

    def client(self) -> httpx.Client:
        """A client with the write token; a 5xx fails at once, with the receiver's log."""

        def no_server_error(response: httpx.Response) -> None:
            if response.status_code >= 500:
                request = response.request
                raise AssertionError(
                    f"{request.method} {request.url} answered {response.status_code}\n"
                    + self.tail(settle=True)
                )

        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=5.0,
            event_hooks={"response": [no_server_error]},
        )

    def post_alerts(self, alerts: list[dict[str, Any]]) -> list[str]:
        """Post ``alerts`` as one Alertmanager webhook (it must be taken); the incident ids."""
        from tests.conftest import body

        with self.client() as client:
            r = client.post(
                "/webhook/alertmanager",
                content=body(alerts),
                headers={"content-type": "application/json"},
            )
        assert r.status_code == 200, r.text
        incidents: list[str] = r.json()["incidents"]
        return incidents

    def samples(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        """The values of one metric family from ``/metrics``, by their sorted labels."""
        response = httpx.get(f"{self.url}/metrics", timeout=5.0)
        response.raise_for_status()
        return {
            tuple(sorted(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text)
            if family.name == name
            for sample in family.samples
            if sample.name == f"{name}_total"
        }

    def tail(self, chars: int = 6000, *, settle: bool = False) -> str:
        """The end of the process's output, for failure messages.

        ``settle``: the server logs the traceback behind a 5xx just after answering, so
        first wait (up to 2 s) until the log stops growing.
        """
        if settle:
            size, deadline = -1, time.monotonic() + 2.0
            while size != self.log.stat().st_size and time.monotonic() < deadline:
                size = self.log.stat().st_size
                time.sleep(0.2)
        return f"--- {self.log} (end) ---\n{self.log.read_text(errors='replace')[-chars:]}"

    def notifications(self) -> list[dict[str, Any]]:
        """Every notification the ``log`` sink wrote so far, in order."""
        found = []
        # Only whole lines: the last one may still be being written.
        for line in self.log.read_text(errors="replace").split("\n")[:-1]:
            if NOTIFICATION_MARK in line:
                found.append(json.loads(line[line.index("{") :]))
        return found

    def notification_counts(self) -> Counter[tuple[str, str]]:
        """How many notifications per (incident id, kind)."""
        return Counter((n["incident"], n["kind"]) for n in self.notifications())


def _ready(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200
    return False


@contextlib.contextmanager
def receiver_process(config: Path, workdir: Path, token: str) -> Iterator[ReceiverProcess]:
    """``journey-receiver serve`` on a free port, ready (``/readyz`` 200); stopped by PID after."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / "receiver.log"
    args = [
        receiver_binary(),
        "serve",
        "--config", str(config),
        "--host", "127.0.0.1",
        "--port", str(port),
    ]  # fmt: skip
    with running(args, port, log, cwd=workdir) as proc:
        try:
            poll(lambda: _ready(url), bool, what=f"{url}/readyz answers 200", timeout=15.0)
        except AssertionError as exc:
            raise RuntimeError(f"{exc}\n--- {log} ---\n{log.read_text()[-3000:]}") from exc
        yield ReceiverProcess(url=url, port=port, pid=proc.pid, token=token, log=log)
