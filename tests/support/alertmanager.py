"""The real Alertmanager (``prometheus-alertmanager``, 0.25) for end-to-end tests.

Start it on a free port with one webhook receiver, post alerts through its API v2 and let it
send real webhook batches, with its own grouping, retries and ``send_resolved``.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.processes import free_port, running
from tests.support.receiver_process import poll

# Debian names the binary prometheus-alertmanager; upstream tarballs name it alertmanager.
BINARIES = ("prometheus-alertmanager", "alertmanager")
FAR_FUTURE = timedelta(hours=1)


def alertmanager_binary() -> str:
    for name in BINARIES:
        path = shutil.which(name)
        if path is not None:
            return path
    raise RuntimeError("prometheus-alertmanager is not installed: run scripts/setup --test")


def write_config(
    path: Path,
    *,
    webhook_url: str,
    token: str,
    group_by: Sequence[str],
    group_wait: str = "500ms",
    group_interval: str = "1s",
    repeat_interval: str = "1h",
    max_alerts: int = 0,
    inhibit_rules: Sequence[Mapping[str, Any]] = (),
) -> Path:
    """One route to one webhook receiver that sends resolved alerts too, in whole batches
    (or, with ``max_alerts``, at most that many alerts per webhook, the rest counted in
    ``truncatedAlerts``), and ``inhibit_rules`` as Alertmanager's config has them."""
    config: dict[str, Any] = {
        "route": {
            "receiver": "journey-receiver",
            "group_by": list(group_by),
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
        },
        "receivers": [
            {
                "name": "journey-receiver",
                "webhook_configs": [
                    {
                        "url": webhook_url,
                        "send_resolved": True,
                        "max_alerts": max_alerts,
                        "http_config": {"authorization": {"credentials": token}},
                    }
                ],
            }
        ],
    }
    if inhibit_rules:
        config["inhibit_rules"] = [dict(rule) for rule in inhibit_rules]
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alert(
    labels: Mapping[str, str],
    *,
    starts_at: datetime,
    ends_at: datetime | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A postable alert for API v2; without ``ends_at`` it keeps firing for an hour."""
    return {
        "labels": dict(labels),
        "annotations": dict(annotations or {"summary": f"{labels.get('alertname')} firing"}),
        "startsAt": rfc3339(starts_at),
        "endsAt": rfc3339(ends_at or starts_at + FAR_FUTURE),
        "generatorURL": "http://prometheus.test/graph",
    }


@dataclass(frozen=True)
class Alertmanager:
    url: str
    pid: int
    log: Path

    def post_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        response = httpx.post(f"{self.url}/api/v2/alerts", json=list(alerts), timeout=10.0)
        assert response.status_code == 200, response.text

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts``: what Alertmanager holds now (active, by default)."""
        response = httpx.get(f"{self.url}/api/v2/alerts", params=filters, timeout=10.0)
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()
        return found

    def add_silence(
        self, labels: Mapping[str, str], *, created_by: str, comment: str, ends_at: datetime
    ) -> str:
        """``POST /api/v2/silences`` as a person would in the UI or amtool: a silence on
        exactly ``labels``, from now until ``ends_at``; its id."""
        body = {
            "matchers": [
                {"name": k, "value": v, "isRegex": False, "isEqual": True}
                for k, v in labels.items()
            ],
            "startsAt": rfc3339(datetime.now(UTC)),
            "endsAt": rfc3339(ends_at),
            "createdBy": created_by,
            "comment": comment,
        }
        response = httpx.post(f"{self.url}/api/v2/silences", json=body, timeout=10.0)
        assert response.status_code == 200, response.text
        silence_id: str = response.json()["silenceID"]
        return silence_id

    def expire(self, silence_id: str) -> None:
        """A person expires (deletes) the silence in Alertmanager."""
        httpx.delete(f"{self.url}/api/v2/silence/{silence_id}", timeout=10.0).raise_for_status()

    def silence(self, silence_id: str) -> dict[str, Any]:
        """``GET /api/v2/silence/{id}``: the silence as Alertmanager keeps it."""
        response = httpx.get(f"{self.url}/api/v2/silence/{silence_id}", timeout=10.0)
        response.raise_for_status()
        found: dict[str, Any] = response.json()
        return found


def _ready(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200
    return False


@contextlib.contextmanager
def alertmanager(config: Path, workdir: Path, port: int | None = None) -> Iterator[Alertmanager]:
    """A single, unclustered Alertmanager on ``port`` (a free one by default), its state in
    ``workdir``; stopped by PID after."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    storage = workdir / "alertmanager-data"
    storage.mkdir(parents=True, exist_ok=True)
    log = workdir / "alertmanager.log"
    args = [
        alertmanager_binary(),
        f"--config.file={config}",
        f"--storage.path={storage}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--web.external-url={url}",
        "--cluster.listen-address=",
        "--log.level=debug",
    ]
    with running(args, port, log, cwd=workdir) as proc:
        try:
            poll(lambda: _ready(url), bool, what=f"{url}/-/ready answers 200", timeout=15.0)
        except AssertionError as exc:
            raise RuntimeError(f"{exc}\n--- {log} ---\n{log.read_text()[-3000:]}") from exc
        yield Alertmanager(url=url, pid=proc.pid, log=log)
