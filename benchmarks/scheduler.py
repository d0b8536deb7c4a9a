"""Scheduler benchmark: how fast one replica opens a storm of new incidents when the store
already holds a history of them, against the store's bare claim + load + commit.

    .venv/bin/python -m benchmarks.scheduler              # from the repository root, ~2 min
    .venv/bin/python -m benchmarks.scheduler --history 1000 --storm 200 --profile out.pstats

A ``redis-server`` on a free port (no persistence), stopped by its PID whatever happens, and
the receiver's own objects in this process (``receiver.app.Receiver`` on the example
receiver.yaml switched to that Redis, benchmarks/memory.py's journeys file: one journey
grouped by ``[env, namespace]``, the ``log`` sink on and muted), on a virtual clock:

1. **History**: ``--history`` incidents of the journey (3 alerts each over the services and
   alertnames of benchmarks.ingest), created over the three days before the storm, each
   given its alertnames and title by one bare commit, 70 % of them resolved, one in ten
   with feedback saying what fixed it: what similar-incident lookups read.
2. **Storm**: ``--storm`` new incidents in one storm (batches of 100 alerts), the clock
   moved past ``group_wait``, then the scheduler's own ``tick`` (decide: load, enrich,
   score, lifecycle, similar incidents, commit with the notification jobs; deliver: the
   outbox to the log sink) until every one of them has had its opening notification
   delivered: **time to notify all**, and incidents decided per second.
3. **Floor**: as many other new incidents, claimed and committed with the same batch and
   concurrency by ``claim_due`` + ``load`` + ``commit`` with no decision work: what any
   decision costs at least in store round trips. It runs before and after the storm; the
   ratio is the storm's rate over the floors' mean.

Pinned with ``taskset``/``sched_setaffinity`` when there are two cores: this process (the
receiver) on core 0, redis-server on core 1. This is a script that prints a table, not a
test; absolute rates move with the machine's other load, the ratio much less.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import redis

from benchmarks.ingest import ALERTNAMES, SERVICES, bench_workdir, machine, pinned
from benchmarks.memory import write_config
from receiver import scheduler
from receiver.app import Receiver
from receiver.normalize import normalize
from receiver.store import Claim
from receiver.store.base import Annotation
from receiver.store.records import IncidentState
from receiver.webhook import parse_webhook
from tests.conftest import body as webhook_body
from tests.support.processes import free_port, running
from tests.support.processes import redis_args as redis_command

DAY_S = 86_400.0
ALERTS_PER_INCIDENT = 3
ALERTS_PER_BATCH = 99  # 33 incidents per webhook body
RESOLVED_SHARE = 0.7
FEEDBACK_EVERY = 10
CONCURRENCY = 8  # as receiver.pipeline's flushes run side by side
START_S = 1_780_000_000.0  # the virtual clock's start (2026-05-28)

Shape = Callable[[IncidentState, int], None]
"""What a bare commit writes into a state besides the end of pending (history only)."""


class Clock:
    """A settable clock: everything the receiver decides runs on it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def body(tag: str, incidents: Sequence[int]) -> bytes:
    """One webhook body: ``ALERTS_PER_INCIDENT`` firing alerts for each namespace
    ``ns-<tag>-<i>`` of ``incidents``, their services and alertnames varied by ``i``."""
    services = [s for s in SERVICES if SERVICES[s] != "unmapped"]
    alerts = []
    for i in incidents:
        for k in range(ALERTS_PER_INCIDENT):
            service = services[(i + k * 3) % len(services)]
            name = ALERTNAMES[(i // 3 + k) % len(ALERTNAMES)]
            labels = {
                "alertname": name,
                "service": service,
                "namespace": f"ns-{tag}-{i}",
                "env": "prod",
                "region": "eu-west-1",
                "severity": ("critical", "warning")[(i + k) % 2],
                "instance": f"10.0.{k}.{i % 250}:8080",
                "job": service,
            }
            alerts.append(
                {
                    "status": "firing",
                    "labels": labels,
                    "annotations": {"summary": f"{name} on {service}"},
                    "startsAt": "2026-05-28T08:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "",
                    "fingerprint": f"{tag}{i:08x}{k:02x}",
                }
            )
    return webhook_body(alerts)


async def open_incidents(rx: Receiver, clock: Clock, tag: str, n: int, spread_s: float) -> None:
    """``n`` new incidents ``ns-<tag>-*``, their creation spread over ``spread_s`` of the
    clock from now on."""
    per_body = ALERTS_PER_BATCH // ALERTS_PER_INCIDENT
    bodies = range(0, n, per_body)
    step = spread_s / max(1, len(bodies))
    for first in bodies:
        batch = normalize(parse_webhook(body(tag, range(first, min(n, first + per_body)))))
        await rx.pipeline.ingest(batch)
        clock.now += step


async def bare(rx: Receiver, claim: Claim, shape: Shape | None = None) -> bool:
    """claim → load → commit of one incident with no decision work; True when committed."""
    store = rx.store
    stored = await store.load(claim.incident_id)
    if stored is None:
        await store.release(claim, None)
        return False
    now = rx.pipeline.now_ms()
    state = stored.state
    state.pending = None
    state.notified_at = now
    if shape is not None:
        shape(state, now)
    outcome = await store.commit(claim, stored.version, state, {}, None, [], now)
    return outcome == "ok"


async def bare_round(rx: Receiver, shape: Shape | None = None) -> int:
    """The floor's tick: claim a batch, commit each bare, ``CONCURRENCY`` at a time."""
    sched = rx.settings.config.scheduler
    lease_ms = int(sched.lease * 1000)
    claims = await rx.store.claim_due(rx.pipeline.now_ms(), lease_ms, sched.batch)
    limiter = anyio.CapacityLimiter(CONCURRENCY)
    done = 0

    async def one(claim: Claim) -> None:
        nonlocal done
        async with limiter:
            done += await bare(rx, claim, shape)

    async with anyio.create_task_group() as tg:
        for claim in claims:
            tg.start_soon(one, claim)
    return len(claims)


async def history(rx: Receiver, clock: Clock, n: int) -> None:
    """``n`` past incidents over three days, each given alertnames and a title, most of them
    resolved, some with feedback."""
    clock.now = START_S - 3 * DAY_S
    await open_incidents(rx, clock, "h", n, 3 * DAY_S - 3600)
    clock.now = START_S - 1800
    shaped = 0

    def shape(state: IncidentState, now: int) -> None:
        nonlocal shaped
        number = int(state.group_labels.get("namespace", "ns-h-0").rsplit("-", 1)[1])
        state.alertnames = sorted({ALERTNAMES[(number // 3 + k) % 4] for k in range(3)})
        state.title = f"shop/{state.group_labels.get('namespace')} P3 — history"
        state.priority = "P3"
        if number % 10 < RESOLVED_SHARE * 10:
            state.status = "resolved"
            state.resolved_at = now
        shaped += 1

    while await bare_round(rx, shape):
        pass
    assert shaped == n, f"history: {shaped} of {n} incidents committed"
    ids = [i.id for i in await rx.store.incidents_since(0, None, n)]
    for k, incident_id in enumerate(ids):
        if k % FEEDBACK_EVERY == 0:
            record = {"at": int(clock.now * 1000), "useful": True, "fixed_by": "restart"}
            await rx.store.annotate(
                incident_id, Annotation(append={"feedback": [record]}), int(clock.now * 1000)
            )


def notified(rx: Receiver) -> int:
    """Opening notifications delivered so far (the outbox's delivered counter)."""
    total = 0.0
    for family in rx.metrics.registry.collect():
        if family.name != "journey_receiver_deliveries":
            continue
        for sample in family.samples:
            labels = sample.labels
            if sample.name.endswith("_total") and labels.get("outcome") == "delivered":
                total += sample.value
    return int(total)


@dataclass
class Run:
    name: str
    incidents: int
    done: int
    seconds: float
    timed_out: bool

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0


async def storm(
    rx: Receiver, clock: Clock, tag: str, n: int, deadline_s: float, profile: Path | None
) -> Run:
    """The scheduler's ticks over ``n`` new incidents until each one's opening notification
    is delivered."""
    await open_incidents(rx, clock, tag, n, 1.0)
    clock.now += rx.settings.timers.group_wait_ms / 1000 + 1
    before = notified(rx)
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    timed_out = False
    while notified(rx) - before < n:
        if time.perf_counter() - started > deadline_s:
            timed_out = True
            break
        if not await scheduler.tick(rx.pipeline, rx.outbox):
            await asyncio.sleep(0)
    seconds = time.perf_counter() - started
    if profiler and profile:
        profiler.disable()
        profiler.dump_stats(profile)
    return Run("receiver: scheduler ticks", n, notified(rx) - before, seconds, timed_out)


async def floor(rx: Receiver, clock: Clock, tag: str, n: int) -> Run:
    await open_incidents(rx, clock, tag, n, 1.0)
    clock.now += rx.settings.timers.group_wait_ms / 1000 + 1
    started = time.perf_counter()
    while await bare_round(rx):
        pass
    seconds = time.perf_counter() - started
    return Run("floor: claim + load + commit", n, n, seconds, False)


@dataclass
class Result:
    history: int
    runs: list[Run]

    @property
    def receiver(self) -> Run:
        return next(r for r in self.runs if r.name.startswith("receiver"))

    @property
    def floor_rate(self) -> float:
        floors = [r.rate for r in self.runs if r.name.startswith("floor")]
        return sum(floors) / len(floors)


@contextlib.contextmanager
def redis_server(workdir: Path, core: int | None) -> Iterator[int]:
    port = free_port()
    with running(pinned(core, redis_command(port, workdir)), port, workdir / "redis.log"):
        yield port


async def one_size(
    args: argparse.Namespace, port: int, workdir: Path, size: int, profile: Path | None
) -> Result:
    redis.Redis(port=port).flushall()
    config = write_config(workdir, port, "7d", True)
    clock = Clock(START_S)
    rx = Receiver(config, None, clock=clock)
    try:
        started = time.perf_counter()
        await history(rx, clock, size)
        print(f"  history of {size:,}: {time.perf_counter() - started:.0f} s", flush=True)
        clock.now = START_S
        runs = [await floor(rx, clock, "fa", args.storm)]
        runs.append(await storm(rx, clock, "s", args.storm, args.deadline, profile))
        runs.append(await floor(rx, clock, "fb", args.storm))
        for r in runs:
            print(f"  {r.name}: {r.done:,} in {r.seconds:.1f} s", flush=True)
        return Result(size, runs)
    finally:
        await rx.aclose()


def report(args: argparse.Namespace, results: Sequence[Result]) -> None:
    print()
    print(
        f"a storm of {args.storm:,} new incidents ({ALERTS_PER_INCIDENT} alerts each), one "
        "journey, scheduler batch 100, after a history of past incidents of that journey"
    )
    head = (
        "history | receiver: time to notify all | decided/s | floor decided/s "
        "(before / after) | ratio"
    )
    print(head)
    print("-" * len(head))
    for res in results:
        r = res.receiver
        floors = [f for f in res.runs if f.name.startswith("floor")]
        note = f" (deadline: {r.done:,} of {r.incidents:,})" if r.timed_out else ""
        print(
            f"{res.history:>7,} | {r.seconds:>24.1f} s{note} | {r.rate:>9,.0f} | "
            f"{floors[0].rate:>10,.0f} / {floors[1].rate:<8,.0f}           | "
            f"{r.rate / res.floor_rate:.2f}x"
        )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.scheduler",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--history",
        type=int,
        nargs="+",
        default=[1_000, 10_000],
        help="past incidents in the store, one run each",
    )
    p.add_argument("--storm", type=int, default=1_000, help="new incidents in the storm")
    p.add_argument("--deadline", type=float, default=240.0, help="seconds per storm at most")
    p.add_argument("--profile", type=Path, help="cProfile the last storm into this file")
    p.add_argument("--keep", type=Path, help="keep configs and the server log here")
    args = p.parse_args(argv)
    logging.getLogger("journey_receiver").setLevel(logging.CRITICAL)

    print(machine())
    core: int | None = None
    if len(os.sched_getaffinity(0)) >= 2:
        core = 1
        os.sched_setaffinity(0, {0})
        print("pinned: this process (the receiver) on core 0, redis-server on core 1")
    else:
        print("not pinned (fewer than two cores)")
    results = []
    with contextlib.ExitStack() as stack:
        workdir = bench_workdir(stack, args.keep)
        port = stack.enter_context(redis_server(workdir, core))
        for k, size in enumerate(args.history):
            last = k == len(args.history) - 1
            profile = args.profile if last else None
            results.append(asyncio.run(one_size(args, port, workdir, size, profile)))
    report(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
