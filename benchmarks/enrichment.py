"""Enrichment benchmark: group_wait expiry to notification, with KPI context and without.

    .venv/bin/python -m benchmarks.enrichment         # from the repository root, ~10 s

What it starts (and stops again, each by its PID):

- ``redis-server`` on a free port, no persistence;
- ``prometheus`` on TSDB blocks backfilled (``promtool tsdb create-blocks-from
  openmetrics``) from an OpenMetrics file this script writes: the checkout series of
  tests/data/prometheus/checkout.om (the windows 07:55–08:15Z on 2026-04-18 and a week
  earlier) for a few hundred regions instead of two. Every tenth region has no series,
  so its KPIs come back as notes, as they do for a region Prometheus does not know.

Both are pinned with ``taskset`` to one core; this process, which is the receiver, pins
itself to the other. Two receivers run in this process, built by ``create_app`` with the
same Redis (separate key prefixes), a fake clock and a sink that records when each
notification arrives; ``run_scheduler=False``, so the script calls the real
``pipeline.flush_due()`` itself, as the scheduler loop would on its tick. One receiver
has ``prometheus.url`` (journey KPIs from Prometheus, now vs a week ago) and one has not
(change correlation only, the rest identical).

A round posts ``n`` alerts of distinct regions at 08:09:30Z (each its own incident),
moves the clock to 08:10:00Z, when group_wait (30 s) ends, and calls ``flush_due()``
once; each incident's latency is the wall time from that call to its notification. The
rounds of the two receivers alternate (A B, B A, ...), so machine noise hits both. Burst
sizes (incidents due in the same tick): 1 (one incident alone, 30 rounds), 8
(``flush_due`` flushes 8 side by side), 25 and 50 (a storm: the eight slots turn over
about three and six times); at least 200 incidents per receiver for each of 8, 25, 50.

Prometheus's own ``/metrics`` gives the queries it answered, their server-side time and
the TCP connections it accepted.

This is a script that prints a table, not a test; docs/benchmarks.md has a reading.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.ingest import (
    bench_workdir,
    core_busy_seconds,
    cpu_seconds,
    machine,
    ms,
    pinned,
    quantile,
)
from receiver.app import Receiver, create_app
from receiver.incident import Incident
from receiver.sinks import Delivery, Receipt
from tests.conftest import make_batch
from tests.support.processes import binary, free_port, running
from tests.support.processes import redis_args as redis_command

QUERY_AT = 1_776_499_800  # 2026-04-18T08:10:00Z: group_wait ends, the KPIs are asked for
WEEK = 7 * 86400
GROUP_WAIT_S = 30
WINDOW_START = QUERY_AT - 15 * 60  # 07:55Z; one sample a minute until 08:15Z
WINDOW_MINUTES = 21
DROP_AT = QUERY_AT - 10 * 60  # 08:00Z: conversion falls in every other region
NO_DATA_EVERY = 10  # every tenth region has no series at all
DEADLINE_S = 110.0  # the measuring stays under two minutes, whatever the servers do
GOAL_ADDED_P99_S = 0.150

JOURNEYS_HEAD = """\
journeys:
  - id: checkout
    name: Checkout
    weight: 1.0
    owner: {team: payments}
    stages:
      - {id: payment, weight: 1.0, match: ['service=~"payment-service|payments-db"']}
    kpis:
"""
# The KPIs of the checkout journey, first --kpis of them. Queries per incident: two each
# (now and a week ago), plus one for a revenue_query.
KPIS = [
    """\
      - name: conversion
        query: >-
          sum(rate(checkout_completed_total{env="$env", region="$region"}[5m]))
          / sum(rate(checkout_started_total{env="$env", region="$region"}[5m]))
        unit: ratio
        bad_when: down
        revenue_query: sum(rate(order_value_eur_total{env="$env", region="$region"}[5m])) * 60
""",
    """\
      - name: orders
        query: sum(rate(checkout_completed_total{env="$env", region="$region"}[5m])) * 60
        unit: orders/min
        bad_when: down
        revenue_per_unit: 30
""",
    """\
      - name: checkouts_started
        query: sum(rate(checkout_started_total{env="$env", region="$region"}[5m])) * 60
        unit: checkouts/min
        bad_when: down
""",
]
QUERIES_PER_KPI = [2, 1, 1]  # one range query each (now + baseline), plus revenue_query


# --- data --------------------------------------------------------------------------------


def region(i: int) -> str:
    return f"r{i:03d}"


def openmetrics(regions: int) -> str:
    """checkout.om's three counters for ``regions`` regions (all env="prod"): started
    +100/min, completed +50/min (+20 from 08:00Z on the incident day in even regions:
    conversion 0.5 -> 0.2, -60 %), order value +1500/min; both days, 07:55–08:15Z."""
    out: list[str] = []

    def family(name: str, per_min: Any) -> None:
        out.append(f"# TYPE {name} counter")
        for i in range(regions):
            if i % NO_DATA_EVERY == NO_DATA_EVERY - 1:
                continue
            labels = f'{{region="{region(i)}",env="prod"}}'
            for day, base in ((WINDOW_START - WEEK, 10_000), (WINDOW_START, 1_000_000)):
                value = base
                for minute in range(WINDOW_MINUTES):
                    ts = day + 60 * minute
                    out.append(f"{name}_total{labels} {value} {ts}")
                    value += per_min(i, ts)

    family("checkout_started", lambda i, ts: 100)
    family("checkout_completed", lambda i, ts: 20 if i % 2 == 0 and ts >= DROP_AT else 50)
    family("order_value_eur", lambda i, ts: 1500)
    out.append("# EOF")
    return "\n".join(out) + "\n"


def webhook_body(numbers: Sequence[int], starts_at: str) -> bytes:
    """One Alertmanager webhook v4 body: one alert per region number."""
    alerts = [
        {
            "status": "firing",
            "labels": {
                "alertname": "PaymentErrors",
                "service": "payment-service",
                "region": region(n),
                "env": "prod",
                "severity": "critical",
            },
            "annotations": {"summary": "PaymentErrors on payment-service"},
            "startsAt": starts_at,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": f"{n:016x}",
        }
        for n in numbers
    ]
    return json.dumps(make_batch(alerts)).encode()


# --- processes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    receiver: int | None  # this process
    servers: int | None  # redis-server and prometheus

    def describe(self) -> str:
        if self.receiver is None:
            return (
                "not pinned (fewer than two cores, or one core asked for both): the "
                "receivers, redis-server and prometheus share the machine's cores"
            )
        return (
            f"pinned with taskset: the receivers (this process, its worker threads "
            f"included) on core {self.receiver}, redis-server and prometheus on core "
            f"{self.servers}"
        )


@dataclass
class Servers:
    redis_port: int
    redis_pid: int
    prometheus_url: str
    prometheus_pid: int


@contextlib.contextmanager
def start(place: Placement, workdir: Path, regions: int) -> Iterator[Servers]:
    """Redis and a backfilled Prometheus; each is stopped by its PID on the way out."""
    data = workdir / "checkout-regions.om"
    data.write_text(openmetrics(regions))
    tsdb = workdir / "tsdb"
    backfill = subprocess.run(
        [binary("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(data), str(tsdb)],
        capture_output=True,
        text=True,
        check=False,
    )
    if backfill.returncode != 0:
        raise RuntimeError(f"promtool backfill failed:\n{backfill.stdout}\n{backfill.stderr}")
    prometheus_yml = workdir / "prometheus.yml"
    prometheus_yml.write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
    redis_port, prometheus_port = free_port(), free_port()
    redis_args = redis_command(redis_port, workdir)
    prometheus_args = [
        binary("prometheus"),
        f"--config.file={prometheus_yml}",
        f"--storage.tsdb.path={tsdb}",
        f"--web.listen-address=127.0.0.1:{prometheus_port}",
        "--storage.tsdb.retention.time=100y",
        "--log.level=warn",
    ]
    log = workdir / "prometheus.log"
    with (
        running(pinned(place.servers, redis_args), redis_port, workdir / "redis.log") as rds,
        running(pinned(place.servers, prometheus_args), prometheus_port, log) as prom,
    ):
        url = f"http://127.0.0.1:{prometheus_port}"
        deadline = time.monotonic() + 30
        while not _ready(url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus not ready after 30 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield Servers(redis_port, rds.pid, url, prom.pid)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def prometheus_counters(client: httpx.Client, url: str) -> dict[str, float]:
    """What Prometheus counted about itself: instant queries answered (by status), their
    summed server-side seconds, and the TCP connections its web listener accepted."""
    text = client.get(f"{url}/metrics").text
    out: dict[str, float] = collections.defaultdict(float)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            # KPIs ask for now and the baseline in one range query; revenue is an instant one.
            if s.labels.get("handler") in ("/api/v1/query", "/api/v1/query_range"):
                if s.name == "prometheus_http_requests_total":
                    out["ok" if s.labels.get("code") == "200" else "failed"] += s.value
                elif s.name == "prometheus_http_request_duration_seconds_sum":
                    out["seconds"] += s.value
            if (
                s.name == "net_conntrack_listener_conn_accepted_total"
                and s.labels.get("listener_name") == "http"
            ):
                out["connections"] += s.value
    return dict(out)


# --- receivers ---------------------------------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True, slots=True)
class Arrival:
    at: float  # perf_counter
    incident_id: str
    kind: str
    kpis_valued: int  # KPIs with a value now
    notes: tuple[str, ...]


@dataclass
class TimingSink:
    """Records when each notification arrives, and what context it carries."""

    name: str = "log"
    arrivals: list[Arrival] = field(default_factory=list)
    coalesces_updates: bool = False

    async def deliver(
        self, incident: Incident, delivery: Delivery, previous: Receipt | None
    ) -> Receipt:
        kind = delivery.kind
        self.arrivals.append(
            Arrival(
                time.perf_counter(),
                incident.id,
                kind,
                sum(k.get("value") is not None for k in incident.kpis),
                tuple(incident.context_notes),
            )
        )
        return Receipt(sink=self.name, state=incident.status)

    async def aclose(self) -> None:
        return None


@dataclass
class Mode:
    name: str
    receiver: Receiver
    client: httpx.AsyncClient
    clock: Clock
    sink: TimingSink
    next_region: int = 0
    latencies: dict[int, list[float]] = field(default_factory=dict)  # burst size -> seconds
    cpu: float = 0.0  # this process's CPU seconds in measured rounds
    server_cpu: float = 0.0  # redis + prometheus CPU seconds in measured rounds
    core_busy: float = 0.0  # busy seconds of the receiver's core in measured rounds
    seconds: float = 0.0  # wall time of the measured rounds
    incidents: int = 0


def receiver_config(
    workdir: Path, name: str, redis_port: int, journeys: Path, prometheus_url: str | None
) -> Path:
    cfg: dict[str, Any] = {
        "journeys_file": str(journeys),
        "server": {"auth": {"allow_open": True}},  # in-process, no port
        "store": {"url": f"redis://127.0.0.1:{redis_port}/0", "key_prefix": f"bench-{name}"},
        "grouping": {
            "group_by": ["env", "region"],
            "group_wait": f"{GROUP_WAIT_S}s",
            "group_interval": "2m",
            "resolve_after": "5m",
            "reopen_window": "30m",
        },
        "scheduler": {"tick": "1s", "lease": "30s", "batch": 100},
        "routing": {"log": ["P1", "P2", "P3", "P4", "P5"]},
        "sinks": {"log": {"enabled": True}},
    }
    if prometheus_url is not None:
        # timeout and budget as shipped (2 s each): they bound a slow Prometheus, and are
        # not what this measures.
        cfg["prometheus"] = {"url": prometheus_url}
    path = workdir / f"receiver-{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@contextlib.asynccontextmanager
async def receiver(name: str, config: Path) -> AsyncIterator[Mode]:
    clock = Clock(QUERY_AT - GROUP_WAIT_S)
    sink = TimingSink()
    app = create_app(config, clock=clock, sinks={"log": sink}, run_scheduler=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rx") as client,
    ):
        yield Mode(name, app.state.receiver, client, clock, sink)


def _cpu(servers: Servers, core: int | None) -> tuple[float, float, float]:
    """This process's CPU seconds, redis + prometheus CPU seconds, busy seconds of ``core``."""
    return (
        time.process_time(),
        cpu_seconds(servers.redis_pid) + cpu_seconds(servers.prometheus_pid),
        core_busy_seconds()[core] if core is not None else 0.0,
    )


async def flush_round(
    mode: Mode, size: int, servers: Servers, core: int | None, record: bool
) -> None:
    """``size`` new incidents whose group_wait ends now; one ``flush_due()``."""
    numbers = range(mode.next_region, mode.next_region + size)
    mode.next_region += size
    # The clock goes back to 08:09:30Z for every round: earlier rounds' incidents were
    # notified at 08:10:00Z and are next due at 08:12:00Z (group_interval), so only the
    # new ones are due at 08:10:00Z.
    mode.clock.now = QUERY_AT - GROUP_WAIT_S
    starts_at = datetime.fromtimestamp(mode.clock.now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    response = await mode.client.post(
        "/webhook/alertmanager",
        content=webhook_body(numbers, starts_at),
        headers={"content-type": "application/json"},
    )
    if response.status_code != 200:
        raise RuntimeError(f"{mode.name}: webhook answered {response.status_code}")
    mode.clock.now = QUERY_AT
    before = len(mode.sink.arrivals)
    cpu_before = _cpu(servers, core)
    started = time.perf_counter()
    claimed = await mode.receiver.pipeline.flush_due()
    await mode.receiver.outbox.deliver_due()
    ended = time.perf_counter()
    cpu_after = _cpu(servers, core)
    arrivals = mode.sink.arrivals[before:]
    if claimed != size or len(arrivals) != size or any(a.kind != "open" for a in arrivals):
        kinds = collections.Counter(a.kind for a in arrivals)
        raise RuntimeError(
            f"{mode.name}: {size} incidents due, {claimed} claimed, notifications {kinds}"
        )
    if record:
        mode.latencies.setdefault(size, []).extend(a.at - started for a in arrivals)
        mode.cpu += cpu_after[0] - cpu_before[0]
        mode.server_cpu += cpu_after[1] - cpu_before[1]
        mode.core_busy += cpu_after[2] - cpu_before[2]
        mode.seconds += ended - started
        mode.incidents += size


@dataclass
class Plan:
    incidents: int  # per mode and burst size (at least; whole rounds)
    bursts: list[int]
    singles: int
    kpis: int
    events: int = 0  # change events stored before the rounds
    warmup: int = 8

    @property
    def queries_per_incident(self) -> int:
        return sum(QUERIES_PER_KPI[: self.kpis])

    def rounds(self, burst: int) -> int:
        return self.singles if burst == 1 and self.singles else -(-self.incidents // burst)

    def regions(self) -> int:
        return self.warmup + sum(self.rounds(b) * b for b in self.bursts)


def change_events(count: int) -> list[list[dict[str, Any]]]:
    """``count`` change events over the week before the rounds, in requests of 1,000: deploys
    with versions to 200 services (payment-service among them, every 50th), in prod and
    staging and three regions, as a busy shop's CI posts them. What enrichment reads of
    them is what this measures."""
    events = []
    for i in range(count):
        service = "payment-service" if i % 50 == 0 else f"service-{i % 200:03}"
        at = QUERY_AT - 60 - (count - i) * (6 * 86400 // max(count, 1))
        events.append(
            {
                "type": "deploy",
                "service": service,
                "version": f"2026.04.{i:05}",
                "environment": ("prod", "staging")[i % 2],
                "region": ("eu", "us", "ap")[i % 3],
                "at": datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
    return [events[i : i + 1000] for i in range(0, count, 1000)]


async def post_events(modes: Sequence[Mode], count: int) -> None:
    for chunk in change_events(count):
        for mode in modes:
            response = await mode.client.post("/api/v1/events", content=json.dumps(chunk))
            if response.status_code != 202:
                raise RuntimeError(f"{mode.name}: events answered {response.status_code}")


async def measure(plan: Plan, modes: Sequence[Mode], servers: Servers, core: int | None) -> None:
    await post_events(modes, plan.events)
    for mode in modes:  # warm-up: connections, Lua scripts, code paths; not recorded
        await flush_round(mode, plan.warmup, servers, core, record=False)
    for burst in plan.bursts:
        rounds = plan.rounds(burst)
        for i in range(rounds):
            for mode in modes if i % 2 == 0 else modes[::-1]:
                await flush_round(mode, burst, servers, core, record=True)
        done = ", ".join(f"{m.name} p99 {ms(quantile(m.latencies[burst], 0.99))} ms" for m in modes)
        print(f"  burst {burst:>2}: {rounds} rounds per receiver; {done}", flush=True)


# --- report ------------------------------------------------------------------------------


def prometheus_version() -> str:
    out = subprocess.run(
        [binary("prometheus"), "--version"], capture_output=True, text=True, check=False
    )
    words = (out.stdout or out.stderr).split()
    return words[2] if len(words) > 2 else "?"


def table(plan: Plan, on: Mode, off: Mode) -> tuple[list[str], dict[int, float]]:
    head = (
        "burst | incidents | with KPIs p50 / p99 / max ms | without p50 / p99 / max ms "
        "| added p50 / p99 ms"
    )
    lines = [head, "-" * len(head)]
    added_p99: dict[int, float] = {}
    for burst in plan.bursts:
        a, b = on.latencies[burst], off.latencies[burst]
        pa = (quantile(a, 0.5), quantile(a, 0.99), max(a))
        pb = (quantile(b, 0.5), quantile(b, 0.99), max(b))
        added_p99[burst] = pa[1] - pb[1]
        lines.append(
            f"{burst:>5} | {len(a):>9} | "
            f"{ms(pa[0]):>9} / {ms(pa[1]):>6} / {ms(pa[2]):>6}      | "
            f"{ms(pb[0]):>7} / {ms(pb[1]):>6} / {ms(pb[2]):>6}    | "
            f"{ms(pa[0] - pb[0]):>6} / {ms(pa[1] - pb[1]):>6}"
        )
    return lines, added_p99


def report(
    header: str,
    plan: Plan,
    place: Placement,
    on: Mode,
    off: Mode,
    prom: dict[str, float],
    log_counts: collections.Counter[str],
) -> None:
    print()
    print(header)
    print(place.describe())
    print(
        f"checkout journey with {len(on.receiver.settings.catalog.find('checkout').kpis)} "
        f"KPI(s), {plan.queries_per_incident} Prometheus queries per incident; "
        "latency = flush_due() call -> the incident's notification (via the outbox), wall time"
    )
    print(f"{plan.events} change events stored before the rounds (--events)")
    print()
    lines, added = table(plan, on, off)
    print(*lines, sep="\n")
    print()
    for mode in (on, off):
        print(
            f"CPU per incident, {mode.name + ':':<10} receiver {ms(mode.cpu / mode.incidents)}"
            f" ms, redis + prometheus {ms(mode.server_cpu / mode.incidents)} ms"
        )
    if place.receiver is not None:
        foreign = sum(m.core_busy - m.cpu for m in (on, off)) / (on.seconds + off.seconds)
        print(
            f"foreign load on the receiver core (busy time not ours) during the rounds: "
            f"{max(0.0, foreign):.0%}"
        )
    enriched = on.sink.arrivals
    valued = sum(a.kpis_valued == plan.kpis for a in enriched)
    partial = sum(0 < a.kpis_valued < plan.kpis for a in enriched)
    noted = [a for a in enriched if a.notes]
    print(
        f"with KPIs: {len(enriched)} notifications (warm-up included): {valued} with every "
        f"KPI valued, {partial} with some, {len(noted)} with notes"
    )
    notes = collections.Counter(n for a in noted for n in a.notes)
    for text, count in notes.most_common(3):
        print(f"  {count:>4} x {text}")
    unavailable = sum(any("unavailable" in n for n in a.notes) for a in enriched)
    if unavailable:
        print(f"  warning: {unavailable} incident(s) went out with 'context unavailable'")
    expected = len(enriched) * plan.queries_per_incident
    answered = prom.get("ok", 0)
    print(
        f"prometheus /metrics: {answered:.0f} queries answered (expected {expected}),"
        f" {prom.get('failed', 0):.0f} failed; server-side "
        f"{ms(prom.get('seconds', 0) / max(answered, 1))} ms per query on average; "
        f"{prom.get('connections', 0):.0f} TCP connections accepted"
    )
    if log_counts:
        print("log records at WARNING and above (logger: message start):")
        for text, count in log_counts.most_common(5):
            print(f"  {count:>4} x {text}")
    extra = (on.cpu / on.incidents) - (off.cpu / off.incidents)
    print(
        f"added receiver CPU per incident: {ms(extra)} ms on one core, so a burst of n "
        f"incidents due at once delays its last notification by about n x {ms(extra)} ms"
    )
    print(f"goal: enrichment adds < {GOAL_ADDED_P99_S * 1000:.0f} ms at p99")
    for burst, value in added.items():
        verdict = "met" if value < GOAL_ADDED_P99_S else "MISSED"
        print(f"  burst {burst:>3}: +{ms(value):>6} ms -- {verdict}")


class CountingHandler(logging.Handler):
    def __init__(self, path: Path) -> None:
        super().__init__(logging.WARNING)
        self.counts = collections.Counter[str]()
        self._file = logging.FileHandler(path)

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[f"{record.name}: {record.getMessage()[:60]}"] += 1
        self._file.emit(record)

    def close(self) -> None:
        self._file.close()
        super().close()


# --- main --------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.enrichment",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--incidents", type=int, default=200, help="per receiver and burst size")
    p.add_argument("--bursts", default="8,25,50", help="incidents due at once (default 8,25,50)")
    p.add_argument("--singles", type=int, default=30, help="rounds of one incident alone")
    p.add_argument("--kpis", type=int, choices=[1, 2, 3], default=2, help="checkout KPIs")
    p.add_argument(
        "--events", type=int, default=0, help="change events stored before the rounds (e.g. 10000)"
    )
    p.add_argument("--receiver-cpu", type=int, default=0, help="core of this process")
    p.add_argument("--servers-cpu", type=int, default=1, help="core of redis and prometheus")
    p.add_argument("--keep", type=Path, help="keep data, configs and logs in this directory")
    args = p.parse_args(argv)
    bursts = [int(b) for b in args.bursts.split(",")]
    if any(not 1 <= b <= 100 for b in bursts):
        p.error("a burst is 1..100 incidents (scheduler.batch is 100)")
    bursts = sorted({*bursts, 1} if args.singles else set(bursts))
    plan = Plan(args.incidents, bursts, args.singles, args.kpis, args.events)
    if plan.regions() > 2000:
        p.error(f"that plan needs {plan.regions()} regions; keep it under 2000")

    header = f"{machine()}, prometheus {prometheus_version()}"
    if len(os.sched_getaffinity(0)) < 2 or args.receiver_cpu == args.servers_cpu:
        place = Placement(None, None)
    else:
        place = Placement(args.receiver_cpu, args.servers_cpu)
        # Before any thread exists: the worker threads of the Prometheus client inherit it.
        os.sched_setaffinity(0, {args.receiver_cpu})

    with contextlib.ExitStack() as stack:
        workdir = bench_workdir(stack, args.keep)
        handler = CountingHandler(workdir / "receiver.log")
        logging.getLogger().addHandler(handler)
        stack.callback(logging.getLogger().removeHandler, handler)
        stack.callback(handler.close)
        started = time.monotonic()
        servers = stack.enter_context(start(place, workdir, plan.regions()))
        print(
            f"started redis-server and prometheus ({plan.regions()} regions backfilled) in "
            f"{time.monotonic() - started:.1f} s",
            flush=True,
        )
        journeys = workdir / "journeys.yaml"
        journeys.write_text(JOURNEYS_HEAD + "".join(KPIS[: args.kpis]))
        scrape = stack.enter_context(httpx.Client(timeout=5.0))
        prom_before = prometheus_counters(scrape, servers.prometheus_url)

        async def run() -> tuple[Mode, Mode]:
            async with (
                receiver(
                    "with KPIs",
                    receiver_config(
                        workdir, "kpis", servers.redis_port, journeys, servers.prometheus_url
                    ),
                ) as on,
                receiver(
                    "without",
                    receiver_config(workdir, "off", servers.redis_port, journeys, None),
                ) as off,
            ):
                await asyncio.wait_for(
                    measure(plan, [on, off], servers, place.receiver), DEADLINE_S
                )
                return on, off

        on, off = asyncio.run(run())
        prom_after = prometheus_counters(scrape, servers.prometheus_url)
    prom = {k: prom_after.get(k, 0) - prom_before.get(k, 0) for k in prom_after}
    report(header, plan, place, on, off, prom, handler.counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
