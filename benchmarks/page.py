"""Page benchmark: choosing the alerts shown for a large incident, from its latest firings
against ranking all of its alerts.

    .venv/bin/python -m benchmarks.page                   # from the repository root, ~30 s
    .venv/bin/python -m benchmarks.page --alerts 10000 --resolving 0

A ``redis-server`` on a free port (no persistence), stopped by its PID whatever happens,
and the receiver's ``RedisStore`` in this process. One incident gets ``--alerts`` firing
alerts in batches of ``--batch``, one script call each at its own millisecond, as a storm
arrives; after every tenth batch, ``--resolving`` of the alerts of the last ten resolve.
Then ``load_alerts(id, --page)`` (what a notification, the incident page and the figures
read) runs once each way to warm up, then ``--repeats`` times each way, interleaved (the
order alternates):

- **from the list**: as the receiver does it, the page chosen from the incident's latest
  firings (``rc:<id>``) when they prove it;
- **ranked whole** (the floor it is measured against: the way every page was chosen
  before): the same call with the list moved aside, so the page is chosen by ranking
  every alert, 1,000 a round trip.

Each repeat checks that both ways chose the same page, and the run that the list proved
every page it was asked for (else it says so and stops). This process is pinned to core 0
and Redis to core 1 when there are two cores. This is a script that prints a table, not a
test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.ingest import redis_apart
from receiver.store import StoreSettings, open_store
from receiver.store.redis import RedisStore
from tests.store.builders import group, placed

T0 = 1_776_500_000_000
DAY_MS = 86_400_000


async def _storm(store: RedisStore, args: argparse.Namespace) -> str:
    """The incident, as a storm fills it; its id."""
    incident = ""
    for n, first in enumerate(range(0, args.alerts, args.batch)):
        fps = range(first, min(args.alerts, first + args.batch))
        (outcome,) = await store.ingest([group(*(placed(f"fp{i:07d}") for i in fps))], 0, T0 + n)
        incident = outcome.incident_id or incident
        if n % 10 == 9 and args.resolving:
            span = range(max(0, first - 9 * args.batch), first + len(fps))
            step = max(1, len(span) // args.resolving)
            resolved = [placed(f"fp{i:07d}", status="resolved") for i in span]
            await store.ingest([group(*resolved[::step][: args.resolving])], 0, T0 + n)
    return incident


async def _measure(store: RedisStore, incident: str, args: argparse.Namespace) -> list[str]:
    recent = f"{store._p}rc:{incident}"
    aside = f"{store._p}rc-aside:{incident}"
    proven: list[bool] = []
    from_list = store._recent_alerts

    async def spied(*call: Any) -> Any:
        chosen = await from_list(*call)
        proven.append(chosen is not None)
        return chosen

    store._recent_alerts = spied  # type: ignore[method-assign,assignment]

    async def page(way: str) -> tuple[list[str], float, float]:
        if way == "ranked whole":
            await store._r.rename(recent, aside)
        try:
            cpu, wall = time.process_time(), time.perf_counter()
            chosen = await store.load_alerts(incident, args.page)
            fps = [a.fp for a in chosen.alerts]
            return fps, time.perf_counter() - wall, time.process_time() - cpu
        finally:
            if way == "ranked whole":
                await store._r.rename(aside, recent)

    ways = ("from the list", "ranked whole")
    for way in ways:  # warm-up: connections, the script cache
        await page(way)
    timings: dict[str, list[tuple[float, float]]] = {way: [] for way in ways}
    for n in range(args.repeats):
        pages = {}
        for way in ways if n % 2 == 0 else ways[::-1]:
            pages[way], wall, cpu = await page(way)
            timings[way].append((wall, cpu))
        if pages["from the list"] != pages["ranked whole"]:
            raise RuntimeError("the two ways chose different pages")
    if not all(proven):
        raise RuntimeError("the list did not prove the page: both ways ranked every alert")
    floor = statistics.median(wall for wall, _ in timings["ranked whole"])
    lines = ["way           | wall ms (median) | CPU ms (median) | wall / ranked whole"]
    for way, times in timings.items():
        wall = statistics.median(w for w, _ in times)
        cpu = statistics.median(c for _, c in times)
        lines.append(
            f"{way:<13} | {wall * 1000:>16.1f} | {cpu * 1000:>15.1f} | {wall / floor:.2f}x"
        )
    length = await store._r.llen(recent)
    lines.append(f"the list held {length} fingerprints; the page: {args.page} alerts, the same")
    return lines


async def _run(port: int, args: argparse.Namespace) -> list[str]:
    settings = StoreSettings(
        key_prefix="page-bench",
        retention_ms=7 * DAY_MS,
        events_retention_ms=DAY_MS,
        max_alerts_per_incident=0,
    )
    store = open_store(f"redis://127.0.0.1:{port}/0", settings)
    assert isinstance(store, RedisStore)
    try:
        started = time.perf_counter()
        incident = await _storm(store, args)
        total = await store._r.hlen(f"{store._p}am:{incident}")
        head = (
            f"incident {incident}: {total:,} alerts in batches of {args.batch} "
            f"({time.perf_counter() - started:.1f} s to ingest); a page of {args.page}, "
            f"{args.repeats} interleaved repeats each way"
        )
        return [head, "", *await _measure(store, incident, args)]
    finally:
        await store.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.page",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--alerts", type=int, default=50_000, help="alerts of the incident")
    p.add_argument("--batch", type=int, default=100, help="alerts per script call")
    p.add_argument("--resolving", type=int, default=100, help="resolved after every 10 batches")
    p.add_argument("--page", type=int, default=500, help="alerts a page shows (ALERTS_SHOWN)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--keep", type=Path, help="keep the Redis log in this directory")
    args = p.parse_args(argv)
    with contextlib.ExitStack() as stack:
        port, where = redis_apart(stack, args.keep)
        lines = asyncio.run(_run(port, args))
    print(where)
    print(*lines, sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
