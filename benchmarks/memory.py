"""Memory benchmark: what a million alerts cost in Redis and in the receiver, and whether
retention brings it back down.

    .venv/bin/python -m benchmarks.memory            # from the repository root, ~6 min
    .venv/bin/python -m benchmarks.memory --alerts 100000 --watch 75 --growth-only  # ~3 min

Three runs, each on a fresh ``redis-server`` (free port, no persistence) and a fresh
receiver (``journey-receiver serve``, the example receiver.yaml switched to that Redis as
benchmarks/ingest.py does, log sink on), both stopped again by their PIDs whatever happens:

1. **Growth**, scheduler off (one tick a day), ``store.retention`` 7d, so nothing expires:
   ``--alerts`` alerts in webhook batches of ``--batch``, then as many again. Redis
   ``used_memory`` and ``used_memory_dataset``, the receiver's VmRSS and VmHWM
   (``/proc/<pid>/status``) and the number of incidents at 0, 10%, 25%, 50%, 100% and 200%
   of ``--alerts``; at 100%, every key counted by kind and a sample of each kind's ``MEMORY
   USAGE``. The scheduler is off here so that the figures are what the alerts cost: 10,000
   opening notifications take the receiver's core for about a minute on two shared cores
   (some 140-310 openings a second, ``benchmarks/scheduler.py``; some ten a second before
   a scheduler round shared its read of the similar past incidents) and would measure the
   scheduler too. With ``--watch S``, then S seconds without traffic, the receiver's VmRSS
   sampled every half second: its once-a-minute refreshes (the 7-day figures, the
   journey-health gauges) read every incident, a page at a time, which a step would show.
2. **Retention**, scheduler off, then 3. the same with the scheduler on (what production
   runs: its decisions give incidents new lifetimes too), ``store.retention`` =
   ``--retention``: a storm for 1.5 retentions, with a ``Watchdog`` incident whose one
   alert is sent again every second (as Alertmanager repeats a firing group), then no
   traffic for one and for two retentions. Shown: the watchdog incident, older than the
   retention, still lists; what Redis holds once the retention has passed (every key kind
   left is named); what one more batch trims from the indexes.

Alerts: ``benchmarks.ingest.Payloads`` (8 labels and 2 annotations per alert, ~85% new
fingerprints, ~10% repeats, ~5% resolves), with the ``namespace`` label rewritten so that
each batch spreads over ``--spread`` incidents and the batches go round ``--incidents``
namespaces. The journeys file has one journey with a stage per service and ``group_by:
[env, namespace]``, so there is one incident per namespace.

This is a script that prints a table, not a test. Memory figures hold under foreign load;
the alert rates are printed for information only (2 shared cores).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml

from benchmarks.ingest import (
    ROOT,
    SERVICES,
    WEBHOOK_PATH,
    Payloads,
    RawConnection,
    auth_headers,
    bench_workdir,
    machine,
    pinned,
    receiver_config,
)
from tests.support.processes import free_port, running
from tests.support.processes import redis_args as redis_command

PREFIX = "{bench}:"  # receiver_config's key_prefix, as a hash tag
SLOT_MARK = "SSSS"  # in a template's namespace label, replaced per request
CHECKPOINTS = (0.1, 0.25, 0.5, 1.0)  # of --alerts, then 2.0 after the second round
SAMPLES_PER_KIND = 200  # keys per kind whose MEMORY USAGE is read
LONG_RETENTION = "7d"


# --- payloads ----------------------------------------------------------------------------


class SpreadPayloads(Payloads):
    """``Payloads`` whose alerts spread over ``incidents`` namespaces: alert ``i`` of
    request ``n`` has namespace ``ns-<n mod incidents/spread>-<i mod spread>``, so one
    batch reaches ``spread`` incidents and ``incidents / spread`` batches reach them all."""

    def __init__(self, size: int, tag: int, seed: int, incidents: int, spread: int) -> None:
        self.spread = spread
        self.rotation = incidents // spread
        self._served = 0
        super().__init__(size, tag, seed)

    def next(self) -> bytes:
        slot = self._served % self.rotation
        self._served += 1
        return super().next().replace(SLOT_MARK.encode(), b"%04d" % slot)

    def _template(self, rng: random.Random, tag: int, k: int) -> bytes:
        body = json.loads(super()._template(rng, tag, k))
        for i, alert in enumerate(body["alerts"]):
            alert["labels"]["namespace"] = f"ns-{SLOT_MARK}-{i % self.spread}"
        return json.dumps(body, separators=(",", ":")).encode()


def watchdog_body() -> bytes:
    """One firing alert, 8 labels and 2 annotations, in the journey ``watchdog``."""
    alert = {
        "status": "firing",
        "labels": {
            "alertname": "Watchdog",
            "service": "alertmanager",
            "region": "eu-west-1",
            "env": "prod",
            "severity": "warning",
            "instance": "10.0.0.1:9093",
            "job": "alertmanager",
            "namespace": "monitoring",
        },
        "annotations": {
            "summary": "Watchdog: the alerting pipeline is alive",
            "description": "Always firing; it stops when alerts stop reaching the receiver.",
        },
        "startsAt": "2026-04-18T08:00:00.123456789Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=vector(1)",
        "fingerprint": "feedfacecafe0001",
    }
    return json.dumps(
        {
            "version": "4",
            "groupKey": '{}:{alertname="Watchdog"}',
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "journey-receiver",
            "groupLabels": {"alertname": "Watchdog"},
            "commonLabels": alert["labels"],
            "commonAnnotations": alert["annotations"],
            "externalURL": "http://alertmanager:9093",
            "alerts": [alert],
        },
        separators=(",", ":"),
    ).encode()


def journeys() -> dict[str, Any]:
    """A stage per journey of benchmarks.ingest.SERVICES (their ``unmapped`` service in a
    catch-all stage), all grouped by namespace; and the watchdog's own journey first."""
    by_stage: dict[str, list[str]] = defaultdict(list)
    for service, stage in SERVICES.items():
        by_stage["platform" if stage == "unmapped" else stage].append(service)
    group_by = ["env", "namespace"]
    return {
        "unmapped": {"weight": 0.1, "owner": {"team": "sre"}, "group_by": group_by},
        "journeys": [
            {
                "id": "watchdog",
                "name": "Alerting pipeline",
                "weight": 0.1,
                "owner": {"team": "sre"},
                "group_by": group_by,
                "stages": [{"id": "watchdog", "weight": 0.1, "match": ['alertname="Watchdog"']}],
            },
            {
                "id": "shop",
                "name": "Browse → cart → checkout → fulfilment",
                "weight": 1.0,
                "owner": {"team": "shop"},
                "group_by": group_by,
                "stages": [
                    {
                        "id": stage,
                        "weight": 0.5,
                        "match": [f'service=~"{"|".join(services)}"', 'env="prod"'],
                    }
                    for stage, services in by_stage.items()
                ],
            },
        ],
    }


# --- processes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Cpus:
    receiver: int | None
    redis: int | None  # and this process

    def describe(self) -> str:
        if self.receiver is None:
            return "not pinned (fewer than two cores)"
        return (
            f"pinned with taskset: receiver on core {self.receiver}, redis-server and the "
            f"load generator on core {self.redis}"
        )


@dataclass(frozen=True)
class Procs:
    receiver_pid: int
    redis_pid: int
    host: str
    port: int
    redis: redis.Redis

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def write_config(workdir: Path, redis_port: int, retention: str, scheduler: bool) -> Path:
    """benchmarks.ingest's receiver.yaml (without ``scheduler``, one tick a day), with its
    own journeys file and ``store.retention``."""
    path = receiver_config(workdir, redis_port, scheduler)
    cfg = yaml.safe_load(path.read_text())
    cfg["store"]["retention"] = retention
    journeys_file = workdir / "journeys.yaml"
    journeys_file.write_text(yaml.safe_dump(journeys(), sort_keys=False, allow_unicode=True))
    cfg["journeys_file"] = str(journeys_file)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@contextlib.contextmanager
def start(workdir: Path, retention: str, scheduler: bool, cpus: Cpus) -> Iterator[Procs]:
    """Redis and the receiver; each is stopped by its PID on the way out (``running``)."""
    redis_port, port = free_port(), free_port()
    config = write_config(workdir, redis_port, retention, scheduler)
    receiver_args = [
        sys.executable, "-m", "receiver.cli", "serve", "--config", str(config),
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    with (
        running(
            pinned(cpus.redis, redis_command(redis_port, workdir)),
            redis_port,
            workdir / "redis.log",
        ) as rds,
        running(pinned(cpus.receiver, receiver_args), port, workdir / "receiver.log", ROOT) as rec,
    ):
        client = redis.Redis(port=redis_port)
        try:
            yield Procs(rec.pid, rds.pid, "127.0.0.1", port, client)
        finally:
            client.close()


# --- measuring ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    label: str
    alerts: int
    used: int
    dataset: int
    keys: int
    incidents: int
    rss_kb: int
    hwm_kb: int


def vm_kb(pid: int) -> tuple[int, int]:
    """VmRSS and VmHWM of a process, kB (Linux /proc)."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0])
    return found["VmRSS"], found["VmHWM"]


def point(procs: Procs, label: str, alerts: int) -> Point:
    info: dict[str, Any] = procs.redis.info("memory")
    rss, hwm = vm_kb(procs.receiver_pid)
    return Point(
        label=label,
        alerts=alerts,
        used=int(info["used_memory"]),
        dataset=int(info["used_memory_dataset"]),
        keys=int(procs.redis.dbsize()),
        incidents=int(procs.redis.zcard(PREFIX + "idx")),
        rss_kb=rss,
        hwm_kb=hwm,
    )


@dataclass(frozen=True)
class Kind:
    name: str
    keys: int
    sampled: int
    mean_bytes: float  # MEMORY USAGE ... SAMPLES 0 over the sampled keys
    mean_members: float  # fields, members or list entries per key (0 for strings)

    @property
    def total(self) -> float:
        return self.mean_bytes * self.keys


def census(client: redis.Redis) -> list[Kind]:
    """Every key counted by kind (what follows the prefix, up to the next ``:``), in one
    SCAN pass; the MEMORY USAGE of up to SAMPLES_PER_KIND keys of each kind (SCAN order is
    the hash table's, so the first keys met are a fair sample)."""
    counts: Counter[str] = Counter()
    samples: dict[str, list[bytes]] = defaultdict(list)
    for key in client.scan_iter(count=10_000):
        text = key.decode(errors="replace")
        kind = text[len(PREFIX) :].split(":", 1)[0] if text.startswith(PREFIX) else "(others)"
        counts[kind] += 1
        if len(samples[kind]) < SAMPLES_PER_KIND:
            samples[kind].append(key)
    kinds = []
    for name, keys in sorted(samples.items()):
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.memory_usage(key, samples=0)
                pipe.type(key)
            answers = pipe.execute()
        sizes = [int(s or 0) for s in answers[0::2]]
        with client.pipeline(transaction=False) as pipe:
            for key, kind in zip(keys, answers[1::2], strict=True):
                {
                    b"hash": pipe.hlen,
                    b"zset": pipe.zcard,
                    b"list": pipe.llen,
                    b"set": pipe.scard,
                }.get(kind, pipe.exists)(key)
            members = [
                int(n) if kind != b"string" else 0
                for n, kind in zip(pipe.execute(), answers[1::2], strict=True)
            ]
        kinds.append(
            Kind(name, counts[name], len(keys), sum(sizes) / len(keys), sum(members) / len(keys))
        )
    return kinds


def owner_entries(client: redis.Redis) -> int:
    """The owner index's entries, over its buckets (``owners:<width>:<n>``)."""
    return sum(int(client.hlen(key)) for key in client.scan_iter(match=f"{PREFIX}owners:*:*"))


# --- load --------------------------------------------------------------------------------


@dataclass
class Load:
    alerts: int = 0
    errors: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.alerts / self.seconds if self.seconds else 0.0


async def post(
    procs: Procs,
    payloads: Payloads,
    load: Load,
    concurrency: int,
    *,
    batches: int | None = None,
    seconds: float | None = None,
) -> None:
    """Closed loop: ``concurrency`` keep-alive connections post ``batches`` bodies (or for
    ``seconds``); every request is answered before this returns."""
    left = batches
    deadline = time.perf_counter() + seconds if seconds is not None else None
    started = time.perf_counter()

    async def worker() -> None:
        nonlocal left
        conn = RawConnection(procs.host, procs.port)
        try:
            while True:
                if left is not None:
                    if left <= 0:
                        return
                    left -= 1
                if deadline is not None and time.perf_counter() >= deadline:
                    return
                status = await conn.post(payloads.next())
                if status == 200:
                    load.alerts += payloads.size
                else:
                    load.errors += 1
        finally:
            await conn.aclose()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    load.seconds += time.perf_counter() - started


def read_headers() -> dict[str, str]:
    token = os.environ.get("READ_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


async def ready(client: httpx.AsyncClient, procs: Procs) -> None:
    response = await client.get(procs.url + "/readyz")
    if response.status_code != 200:
        raise RuntimeError(f"receiver not ready: {response.status_code} {response.text}")


# --- the two runs ------------------------------------------------------------------------


@dataclass
class Growth:
    points: list[Point]
    kinds: list[Kind]
    load: Load
    # Owner index entries at --alerts: one per distinct fingerprint (nothing expired).
    stored_alerts: int


async def growth(args: argparse.Namespace, procs: Procs) -> Growth:
    payloads = SpreadPayloads(args.batch, 0x10, 1, args.incidents, args.spread)
    load = Load()
    async with httpx.AsyncClient(timeout=10.0) as client:
        await ready(client, procs)
    points = [point(procs, "start", 0)]
    sent = 0
    kinds: list[Kind] = []
    stored = 0
    for share in (*CHECKPOINTS, 2.0):
        target = int(args.alerts * share) // args.batch
        await post(procs, payloads, load, args.concurrency, batches=target - sent)
        sent = target
        points.append(point(procs, f"{share:.0%} of --alerts", sent * args.batch))
        print(
            f"  growth: {sent * args.batch:>9,} alerts posted, {load.rate:,.0f} alerts/s so far",
            flush=True,
        )
        if share == 1.0:
            kinds = census(procs.redis)
            stored = owner_entries(procs.redis)
    return Growth(points, kinds, load, stored)


@dataclass(frozen=True)
class Watch:
    seconds: float
    incidents: int
    open_incidents: int
    rss_kb: list[int]
    hwm_before_kb: int
    hwm_after_kb: int


def watch(procs: Procs, seconds: float) -> Watch:
    """The receiver's VmRSS every half second for ``seconds`` with no traffic: long enough
    for its once-a-minute refreshes (the 7-day figures and the journey-health gauges) to
    read every incident. They page through the store, so RSS should not step up."""
    _, hwm_before = vm_kb(procs.receiver_pid)
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        samples.append(vm_kb(procs.receiver_pid)[0])
        time.sleep(0.5)
    _, hwm_after = vm_kb(procs.receiver_pid)
    ids = [i.decode() for i in procs.redis.zrange(PREFIX + "idx", 0, -1) if isinstance(i, bytes)]
    states = procs.redis.pipeline(transaction=False)
    for i in ids:
        states.hget(PREFIX + "inc:" + i, "state")
    open_count = sum(b'"status":"open"' in (raw or b"") for raw in states.execute())
    return Watch(seconds, len(ids), open_count, samples, hwm_before, hwm_after)


def report_watch(w: Watch) -> None:
    print()
    print(
        f"idle after the growth run, {w.seconds:g} s ({w.open_incidents:,} of {w.incidents:,} "
        "incidents open; the figures and journey-health refreshes run once a minute):"
    )
    print(
        f"receiver VmRSS {w.rss_kb[0] / 1000:,.1f} MB at the start, "
        f"{min(w.rss_kb) / 1000:,.1f}-{max(w.rss_kb) / 1000:,.1f} MB over the watch, "
        f"{w.rss_kb[-1] / 1000:,.1f} MB at the end; VmHWM {w.hwm_before_kb / 1000:,.1f} -> "
        f"{w.hwm_after_kb / 1000:,.1f} MB"
    )


@dataclass
class Retention:
    points: list[Point]
    storm_kinds: list[Kind]
    idle_kinds: list[Kind]
    load: Load
    watchdog: list[str]
    trimmed: list[str]


async def retention(args: argparse.Namespace, procs: Procs) -> Retention:
    keep = args.retention
    payloads = SpreadPayloads(args.batch, 0x20, 2, args.incidents, args.spread)
    load = Load()
    body = watchdog_body()
    async with httpx.AsyncClient(timeout=10.0) as client:
        await ready(client, procs)
        points = [point(procs, "start", 0)]
        headers = {"Content-Type": "application/json", **auth_headers()}
        first = await client.post(procs.url + WEBHOOK_PATH, content=body, headers=headers)
        first.raise_for_status()
        watchdog_id = first.json()["incidents"][0]
        opened = time.monotonic()

        async def repeat() -> None:
            conn = RawConnection(procs.host, procs.port)
            try:
                while True:
                    await asyncio.sleep(1.0)
                    await conn.post(body)
            finally:
                await conn.aclose()

        repeater = asyncio.create_task(repeat())
        try:
            await post(procs, payloads, load, args.concurrency, seconds=1.5 * keep)
        finally:
            repeater.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await repeater
        last_post = time.monotonic()
        age = last_post - opened
        listed = await client.get(
            procs.url + "/api/v1/incidents",
            params={"status": "all", "journey": "watchdog", "limit": "10"},
            headers=read_headers(),
        )
        ids = [i["id"] for i in listed.json().get("incidents", [])]
        got = await client.get(
            procs.url + f"/api/v1/incidents/{watchdog_id}", headers=read_headers()
        )
        indexed = procs.redis.zscore(PREFIX + "idx", watchdog_id) is not None
        watchdog = [
            f"incident {watchdog_id}, opened {age:.0f} s ago ({age / keep:.1f} retentions), its "
            "alert sent again every second",
            f"  in the incident index: {indexed}"
            f"; listed by GET /api/v1/incidents?journey=watchdog: {watchdog_id in ids}; "
            f"GET /api/v1/incidents/<id>: {got.status_code}",
        ]
        points.append(point(procs, f"storm end ({load.alerts:,} alerts)", load.alerts))
        storm_kinds = census(procs.redis)
        print(
            f"  retention: storm over, {load.alerts:,} alerts in {load.seconds:.0f} s; idle "
            "for a retention",
            flush=True,
        )
        # Keys expire between 63/64 of the retention and the retention after their last
        # renewal; Redis's active expiry then needs a moment for a million keys.
        # The scheduler may still be deciding the storm's incidents, and each decision
        # gives the incident's own keys a new lifetime: look again a retention later.
        for wait in (keep + 2.0, 2 * keep + 2.0):
            await asyncio.sleep(max(0.0, last_post + wait - time.monotonic()))
            before = -1
            for _ in range(30):
                keys = int(procs.redis.dbsize())
                if keys == before:
                    break
                before = keys
                await asyncio.sleep(1.0)
            idle = time.monotonic() - last_post
            points.append(point(procs, f"idle {idle:.0f} s", load.alerts))
        idle_kinds = census(procs.redis)
        sizes = {name: _members(procs.redis, name) for name in ("idx", "alive", "due")}
        one = Load()
        await post(procs, payloads, one, 1, batches=1)
        after = {name: _members(procs.redis, name) for name in ("idx", "alive", "due")}
        points.append(point(procs, "after 1 more batch", load.alerts + one.alerts))
    trimmed = [
        f"{name}: {sizes[name]:,} members before one more batch, {after[name]:,} after"
        for name in sizes
    ]
    return Retention(points, storm_kinds, idle_kinds, load, watchdog, trimmed)


def _members(client: redis.Redis, name: str) -> int:
    return int(client.zcard(PREFIX + name))


# --- report ------------------------------------------------------------------------------


def mb(n: float) -> str:
    return f"{n / 1e6:,.1f}"


def points_table(points: Sequence[Point]) -> list[str]:
    head = (
        f"{'when':<28} | {'alerts':>9} | {'incidents':>9} | {'keys':>9} | used_memory MB "
        "| dataset MB | receiver VmRSS MB | VmHWM MB"
    )
    lines = [head, "-" * len(head)]
    for p in points:
        lines.append(
            f"{p.label:<28} | {p.alerts:>9,} | {p.incidents:>9,} | {p.keys:>9,} "
            f"| {mb(p.used):>14} | {mb(p.dataset):>10} | {p.rss_kb / 1000:>17,.1f} "
            f"| {p.hwm_kb / 1000:>8,.1f}"
        )
    return lines


def kinds_table(kinds: Sequence[Kind], dataset: int) -> list[str]:
    head = (
        f"{'kind':<10} | {'keys':>9} | {'members/key':>11} | {'bytes/key':>9} "
        f"| {'total MB (est.)':>15} | share of dataset"
    )
    lines = [head, "-" * len(head)]
    for k in sorted(kinds, key=lambda k: -k.total):
        lines.append(
            f"{k.name:<10} | {k.keys:>9,} | {k.mean_members:>11,.1f} | {k.mean_bytes:>9,.0f} "
            f"| {mb(k.total):>15} | {k.total / max(1, dataset):>6.1%}"
        )
    return lines


def report_growth(args: argparse.Namespace, g: Growth) -> None:
    print()
    print(
        f"1. growth, scheduler off: store.retention {LONG_RETENTION}, {args.alerts:,} alerts "
        f"(then as many again) in batches of {args.batch}, {args.concurrency} connections, "
        f"each batch over {args.spread} of {args.incidents:,} incidents"
    )
    print(*points_table(g.points), sep="\n")
    start, full, second = g.points[0], g.points[len(CHECKPOINTS)], g.points[-1]
    per_alert = (full.used - start.used) / max(1, full.alerts)
    print()
    print(
        f"per alert posted: {per_alert:,.0f} bytes of used_memory "
        f"({(full.dataset - start.dataset) / max(1, full.alerts):,.0f} of dataset); "
        f"per alert stored ({g.stored_alerts:,} distinct fingerprints): "
        f"{(full.used - start.used) / max(1, g.stored_alerts):,.0f} bytes"
    )
    print(
        f"per incident ({full.incidents:,}): "
        f"{(full.used - start.used) / max(1, full.incidents):,.0f} bytes of used_memory in all"
    )
    print(
        f"second {args.alerts:,}: used_memory {mb(full.used)} -> {mb(second.used)} MB "
        f"(x{second.used / max(1, full.used):.2f}); receiver VmRSS {full.rss_kb / 1000:,.1f} -> "
        f"{second.rss_kb / 1000:,.1f} MB ({(second.rss_kb - full.rss_kb) / 1000:+,.1f} MB), "
        f"VmHWM {full.hwm_kb / 1000:,.1f} -> {second.hwm_kb / 1000:,.1f} MB"
    )
    print(
        f"rate (information only, shared machine): {g.load.rate:,.0f} alerts/s over "
        f"{g.load.seconds:.0f} s, {g.load.errors} non-200 answers"
    )
    print()
    print(
        f"keys at {full.alerts:,} alerts by kind (MEMORY USAGE ... SAMPLES 0 of up to "
        f"{SAMPLES_PER_KIND} keys per kind, times the count):"
    )
    print(*kinds_table(g.kinds, full.dataset), sep="\n")
    per_incident = ("inc", "tl", "key", "seq")
    fixed = sum(k.mean_bytes for k in g.kinds if k.name in per_incident)
    alert_part = sum(k.total for k in g.kinds if k.name in ("am", "ab", "owners"))
    print(
        f"an incident's own keys ({'+'.join(per_incident)}): {fixed:,.0f} bytes; its alerts "
        f"(am + ab + owners): {alert_part / max(1, g.stored_alerts):,.0f} bytes per distinct "
        "fingerprint"
    )


def report_retention(args: argparse.Namespace, r: Retention, n: int, scheduler: bool) -> None:
    print()
    print(
        f"{n}. retention, scheduler {'on' if scheduler else 'off'}: store.retention "
        f"{args.retention:g}s; a storm for {1.5 * args.retention:g} s (+ the watchdog every "
        "second), then no traffic"
    )
    print(*points_table(r.points), sep="\n")
    print()
    print(*r.watchdog, sep="\n")
    print(f"rate (information only): {r.load.rate:,.0f} alerts/s, {r.load.errors} non-200 answers")
    print()
    print("keys at the end of the storm:")
    print(*kinds_table(r.storm_kinds, r.points[1].dataset), sep="\n")
    print()
    start = r.points[0]
    for idle in r.points[2:4]:
        print(
            f"{idle.label} without traffic: used_memory {mb(idle.used)} MB against "
            f"{mb(start.used)} MB at the start ({(idle.used - start.used) / 1e3:+,.0f} kB), "
            f"{idle.keys:,} keys"
        )
    idle = r.points[3]
    if r.idle_kinds:
        print("key kinds still there (each is a key that did not expire):")
        print(*kinds_table(r.idle_kinds, idle.dataset), sep="\n")
    print(*r.trimmed, sep="\n")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--alerts", type=int, default=1_000_000, help="alerts of the growth run")
    p.add_argument("--incidents", type=int, default=10_000, help="namespaces = incidents")
    p.add_argument("--spread", type=int, default=10, help="incidents one batch reaches")
    p.add_argument("--batch", type=int, default=100, help="alerts per webhook body")
    p.add_argument("--concurrency", type=int, default=4, help="connections posting")
    p.add_argument("--retention", type=float, default=20.0, help="seconds, the retention run")
    p.add_argument("--keep", type=Path, help="keep configs and server logs in this directory")
    p.add_argument(
        "--watch",
        type=float,
        default=0.0,
        help="seconds to sample the receiver's VmRSS after the growth run, without traffic "
        "(75 covers one round of its once-a-minute refreshes)",
    )
    p.add_argument("--growth-only", action="store_true", help="skip the retention runs")
    args = p.parse_args(argv)
    if args.incidents % args.spread or args.incidents // args.spread > 9999:
        p.error("--incidents must be a multiple of --spread, at most 9,999 times it")
    if args.batch < args.spread:
        p.error("--batch must be at least --spread")

    print(machine())
    if len(os.sched_getaffinity(0)) >= 2:
        cpus = Cpus(receiver=0, redis=1)
        os.sched_setaffinity(0, {1})
    else:
        cpus = Cpus(None, None)
    print(cpus.describe(), flush=True)

    with contextlib.ExitStack() as stack:
        workdir = bench_workdir(stack, args.keep and args.keep / "growth")
        procs = stack.enter_context(start(workdir, LONG_RETENTION, False, cpus))
        grown = asyncio.run(growth(args, procs))
        watched = watch(procs, args.watch) if args.watch > 0 else None
        log = (workdir / "receiver.log").read_text(errors="replace")
    report_growth(args, grown)
    if watched is not None:
        report_watch(watched)
    _errors(log)
    if args.growth_only:
        return 0

    for n, scheduler in enumerate((False, True), start=2):
        with contextlib.ExitStack() as stack:
            name = f"retention-scheduler-{'on' if scheduler else 'off'}"
            workdir = bench_workdir(stack, args.keep and args.keep / name)
            procs = stack.enter_context(start(workdir, f"{args.retention:g}s", scheduler, cpus))
            kept = asyncio.run(retention(args, procs))
            log = (workdir / "receiver.log").read_text(errors="replace")
        report_retention(args, kept, n, scheduler)
        _errors(log)
    return 0


def _errors(log: str) -> None:
    errors = [line for line in log.splitlines() if " ERROR " in line]
    if errors:
        print(f"receiver log: {len(errors)} ERROR line(s), the first: {errors[0]}")


if __name__ == "__main__":
    sys.exit(main())
