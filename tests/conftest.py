"""Shared fixtures: an injectable clock, builders for alerts and batches, a real Redis
and a real Redis Cluster."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from receiver.store import StoreSettings, open_store
from receiver.store.redis import RedisStore
from tests.support.processes import redis_server
from tests.support.prometheus import DATA as PROMETHEUS_DATA
from tests.support.prometheus import prometheus_server
from tests.support.redis_cluster import redis_cluster
from tests.support.sink_world import Fakes, fakes

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "config" / "receiver.yaml"
EXAMPLE_JOURNEYS = ROOT / "config" / "journeys.yaml"
# The example config runs open only when told to, as scripts/serve tells it; tests that
# load it do the same (tests/test_auth.py checks it is refused without).
os.environ.setdefault("ALLOW_OPEN", "true")
T0 = 1_776_500_000.0  # 2026-04-18T08:13:20Z


class FakeClock:
    """Time that moves only when a test says so."""

    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    @property
    def ms(self) -> int:
        return round(self.now * 1000)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


_fps = itertools.count(1)


def make_alert(
    service: str = "payment-service",
    *,
    status: str = "firing",
    alertname: str = "HighErrorRate",
    region: str = "eu",
    env: str = "prod",
    severity: str = "critical",
    fingerprint: str | None = None,
    starts_at: str = "2026-04-18T08:10:00.123456789Z",
    ends_at: str = "0001-01-01T00:00:00Z",
    annotations: dict[str, str] | None = None,
    **labels: str,
) -> dict[str, Any]:
    """One alert as Alertmanager 0.25+ puts it in a webhook body."""
    all_labels = {
        "alertname": alertname,
        "service": service,
        "region": region,
        "env": env,
        "severity": severity,
        **labels,
    }
    return {
        "status": status,
        "labels": all_labels,
        "annotations": annotations or {"summary": f"{alertname} on {service}"},
        "startsAt": starts_at,
        "endsAt": ends_at if status == "firing" else "2026-04-18T08:20:00Z",
        "generatorURL": "",
        "fingerprint": fingerprint or f"{next(_fps):016x}",
    }


def resolved(alert: dict[str, Any]) -> dict[str, Any]:
    """``alert`` resolved: at 08:20, or 10 minutes after it started if that was later (an
    endsAt before the startsAt is an earlier episode's resolution)."""
    started = str(alert.get("startsAt", ""))[:19]
    ends = "2026-04-18T08:20:00Z"
    if started > ends[:19]:
        ends = (datetime.fromisoformat(started) + timedelta(minutes=10)).isoformat() + "Z"
    return {**alert, "status": "resolved", "endsAt": ends}


def make_batch(alerts: list[dict[str, Any]], truncated: int = 0) -> dict[str, Any]:
    """A webhook v4 body around ``alerts``."""
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return {
        "version": "4",
        "groupKey": '{}:{alertname="HighErrorRate"}',
        "truncatedAlerts": truncated,
        "status": status,
        "receiver": "journey-receiver",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    }


def body(alerts: list[dict[str, Any]], truncated: int = 0) -> bytes:
    return json.dumps(make_batch(alerts, truncated)).encode()


@pytest.fixture(scope="session")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with redis_server(tmp_path_factory.mktemp("redis")) as port:
        yield port


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Three masters with a replica each. Shared by the session: a test that kills a node
    starts its own cluster instead."""
    with redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster.url


_prefixes = itertools.count(1)


def store_url(request: pytest.FixtureRequest) -> str:
    """The URL of the backend named by ``request.param``, starting its server if need be."""
    if request.param == "memory":
        return "memory://"
    if request.param == "redis":
        return f"redis://127.0.0.1:{request.getfixturevalue('redis_port')}/0"
    url: str = request.getfixturevalue("redis_cluster_url")
    return url


@pytest.fixture(params=["memory", "redis", "cluster"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[RedisStore]:
    """The store contract holds on every backend. Each test gets its own key prefix, which
    is the store's hash tag, so on the cluster tests spread over the masters."""
    s = open_store(
        store_url(request),
        StoreSettings(key_prefix=f"t{next(_prefixes)}", events_retention_ms=86_400_000),
    )
    yield s
    await s.aclose()


@pytest.fixture(scope="session")
def prometheus_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus holding the checkout KPI history of tests/data/prometheus."""
    with prometheus_server(
        tmp_path_factory.mktemp("prometheus"), PROMETHEUS_DATA / "checkout.om"
    ) as url:
        yield url


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Fakes]:
    """Fake PagerDuty (TLS), Slack and Jira, enforcing the vendors' rules."""
    with fakes(tmp_path) as f:
        yield f
