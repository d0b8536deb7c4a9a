"""Replay benchmark: a synthetic week of a busy shop's alerts, replayed against a floor.

    .venv/bin/python -m benchmarks.replay            # from the repository root, ~5 min
    .venv/bin/python -m benchmarks.replay --scale 1 --prometheus --repeat 3

The week (seeded, so every run replays the same one): ``--series`` alert label sets over
the example journeys' services and some unmapped ones, in two envs and three regions, each
firing now and then (median four minutes, a tail of hours: ~``--firings`` firings a week
at scale 1), plus a storm every ~12 hours (60–250 alerts of one region starting within
five minutes, lasting 10–60 minutes). ``--scale`` multiplies the firings and storms.

Per scale, in one process, one after the other, each the best of ``--repeat``:

- **floor**: what any replay must do before the receiver sees a thing — parse the
  ``query_range`` answer Prometheus would give (the week's ``ALERTS`` points as JSON) into
  firing intervals, and build Alertmanager's batches (``receiver/replay/batches.py``);
- **replay**: the floor, then those batches through the receiver's ingest and decisions on
  the virtual clock, and the report: ``journey-receiver replay`` minus the HTTP read, on
  the store it uses by default (a private ``redis-server`` of its own, started and stopped
  with the run: ``receiver/replay/server.py``), or on ``--store URL``;
- **embedded**: the same on the embedded ``memory://`` store (fakeredis), where the replay
  runs when no redis-server is installed; ``--no-memory`` leaves it out.

With ``--prometheus``, the week is also backfilled into a real Prometheus (``promtool tsdb
create-blocks-from openmetrics``; started and stopped by its PID) and read back over HTTP
as the command does, which is timed on its own (``read``); with ``--context`` too, the
replay is run once more with ``replay --context`` against that Prometheus
(``context``): every decision of a journey with KPIs reads them at its virtual time (the
week has no KPI series, so each answer is empty: the cost is the queries).

``--profile FILE`` writes cProfile statistics of one replay (``python -m pstats``).

The example receiver.yaml and journeys.yaml are used, with Alertmanager grouping by
``alertname`` on the config's timers (10 s, 1 m). This is a script that prints a table,
not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from receiver.replay import read_firings, replay_settings, route_for
from receiver.replay.batches import plan
from receiver.replay.context import enricher_for
from receiver.replay.drive import drive
from receiver.replay.history import Firing, firings
from receiver.replay.report import summarize
from receiver.replay.scratch import MEMORY
from receiver.replay.server import AUTO, store
from receiver.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
STEP_MS = 60_000
WEEK_MS = 7 * 86_400_000
SINCE_MS = 1_776_000_000_000 // STEP_MS * STEP_MS
SERVICES = [
    "payment-service", "payments-db", "fraud-check", "checkout-service", "cart-api",
    "frontend", "web-gateway", "search-api", "search-indexer", "catalog-service",
    "recommendations", "auth-service", "user-service", "email-sender", "order-service",
    "inventory", "shipping-service", "warehouse-sync", "subscription-renewer",
    "invoice-service", "batch-export", "metrics-relay", "log-shipper", "cron-runner",
]  # fmt: skip
ALERTNAMES = ["HighErrorRate", "HighLatency", "PodCrashLooping", "Saturation", "TargetDown",
              "SLOBurnFast", "DiskFilling", "QueueBacklog"]  # fmt: skip
SEVERITIES = ["critical", "warning", "warning", "info"]
T = TypeVar("T")


def week(
    scale: float, series: int, per_week: int, seed: int = 7
) -> list[tuple[dict[str, str], list[int]]]:
    """(labels, minute points) per ALERTS series: what ``query_range`` would answer."""
    rng = random.Random(seed)
    points: dict[tuple[tuple[str, str], ...], set[int]] = {}

    def fire(labels: dict[str, str], start: int, minutes: int) -> None:
        key = tuple(sorted(labels.items()))
        end = min(start + minutes * STEP_MS, SINCE_MS + WEEK_MS)
        points.setdefault(key, set()).update(range(start, end, STEP_MS))

    shapes = [
        {
            "alertname": rng.choice(ALERTNAMES),
            "service": rng.choice(SERVICES),
            "env": rng.choice(["prod", "prod", "prod", "staging"]),
            "region": rng.choice(["eu", "us", "ap"]),
            "severity": rng.choice(SEVERITIES),
            "instance": f"10.0.{rng.randrange(8)}.{rng.randrange(250)}:9100",
        }
        for _ in range(series)
    ]
    for _ in range(round(per_week * scale)):
        start = SINCE_MS + rng.randrange(WEEK_MS // STEP_MS) * STEP_MS
        minutes = max(1, round(rng.lognormvariate(1.4, 1.3)))
        fire(rng.choice(shapes), start, minutes)
    for _ in range(round(14 * scale)):
        at = SINCE_MS + rng.randrange(WEEK_MS // STEP_MS) * STEP_MS
        region = rng.choice(["eu", "us", "ap"])
        lasting = rng.randrange(10, 60)
        for i in range(rng.randrange(60, 250)):
            labels = {
                "alertname": rng.choice(ALERTNAMES),
                "service": rng.choice(SERVICES),
                "env": "prod",
                "region": region,
                "severity": rng.choice(SEVERITIES),
                "instance": f"storm-{at}-{i}",
            }
            fire(labels, at + rng.randrange(5) * STEP_MS, lasting + rng.randrange(10))
    return [({"__name__": "ALERTS", "alertstate": "firing", **dict(k)}, sorted(v))
            for k, v in points.items()]  # fmt: skip


def answer(series: list[tuple[dict[str, str], list[int]]]) -> bytes:
    """Prometheus' query_range answer for ``series``."""
    result = [
        {"metric": labels, "values": [[t / 1000, "1"] for t in times]} for labels, times in series
    ]
    return json.dumps(
        {"status": "success", "data": {"resultType": "matrix", "result": result}}
    ).encode()


def parse(body: bytes) -> list[Firing]:
    data: Any = json.loads(body)
    return firings(
        (
            (s["metric"], [round(float(t) * 1000) for t, _ in s["values"]])
            for s in data["data"]["result"]
        ),
        STEP_MS,
        SINCE_MS + WEEK_MS,
    )


def best(repeat: int, run: Callable[[], T]) -> tuple[float, T]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    assert result is not None
    return min(times), result


def openmetrics(series: list[tuple[dict[str, str], list[int]]]) -> str:
    lines = ["# TYPE ALERTS gauge"]
    for labels, times in series:
        text = ",".join(f'{k}="{v}"' for k, v in labels.items() if k != "__name__")
        lines += [f"ALERTS{{{text}}} 1 {t // 1000}" for t in times]
    return "\n".join([*lines, "# EOF"]) + "\n"


@contextlib.contextmanager
def backfilled(series: list[tuple[dict[str, str], list[int]]]) -> Iterator[str]:
    """A real Prometheus holding ``series``; its URL."""
    from tests.support.prometheus import prometheus_server

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "alerts.om"
        source.write_text(openmetrics(series))
        with prometheus_server(Path(tmp) / "prometheus", source) as url:
            yield url


def read_back(url: str) -> tuple[float, int]:
    started = time.perf_counter()
    found = read_firings(url, SINCE_MS, SINCE_MS + WEEK_MS, STEP_MS)
    return time.perf_counter() - started, len(found)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, action="append", help="default: 0.25, 1 and 2")
    p.add_argument("--series", type=int, default=600)
    p.add_argument("--firings", type=int, default=3000, help="background firings a week")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--prometheus", action="store_true", help="also read it from Prometheus")
    p.add_argument("--context", action="store_true", help="with --prometheus: replay --context")
    p.add_argument("--store", metavar="URL", default=AUTO, help="the replay column's store")
    p.add_argument("--no-memory", action="store_true", help="leave the embedded column out")
    p.add_argument("--profile", metavar="FILE", help="cProfile one replay into FILE")
    args = p.parse_args()
    settings: Settings = replay_settings(ROOT / "config" / "receiver.yaml", None)
    route = route_for(settings, ["alertname"])
    until = SINCE_MS + WEEK_MS
    end = until + settings.timers.group_wait_ms
    context = args.context and args.prometheus
    header = ["scale", "alerts", "AM batches", "incidents", "pages", "blips", "floor s",
              "replay s", "ratio", *(["embedded s", "ratio"] if not args.no_memory else []),
              *(["read s"] if args.prometheus else []),
              *(["context s", "ratio"] if context else [])]  # fmt: skip
    rows = [header]
    with contextlib.ExitStack() as stack:
        url, why = stack.enter_context(store(args.store))
        if why is not None:
            print(f"the replay column runs embedded: {why}", file=sys.stderr)
        for scale in args.scale or [0.25, 1.0, 2.0]:
            series = week(scale, args.series, args.firings)
            body = answer(series)

            def floor(body: bytes = body) -> tuple[list[Firing], Any]:
                found = parse(body)
                return found, plan(found, route, until)

            def whole(body: bytes = body, on: str = MEMORY, ctx: Any = None) -> Any:
                found, sent = floor(body)
                replayed = asyncio.run(
                    drive(settings, sent.notifications, end, store_url=on,
                          enricher=ctx(settings) if ctx else None)
                )  # fmt: skip
                return summarize(settings, found, sent, replayed, SINCE_MS, until), sent

            floor_s, _ = best(args.repeat, floor)
            row = [f"{scale:g}"]
            timed: list[str] = []
            replay_s, (report, sent) = best(args.repeat, lambda: whole(on=url))
            timed += [f"{replay_s:.2f}", f"{replay_s / floor_s:.1f}x"]
            if args.profile:
                cProfile.runctx("whole(on=url)", globals(), locals(), args.profile)
            if not args.no_memory:
                embedded_s, (embedded, _) = best(args.repeat, whole)
                assert embedded.as_json() == report.as_json(), (
                    "the embedded store and the replay's differ"
                )
                timed += [f"{embedded_s:.2f}", f"{embedded_s / floor_s:.1f}x"]
            row += [str(report.alerts), str(len(sent.notifications)), str(report.incidents),
                    str(report.pages), str(report.blips), f"{floor_s:.2f}", *timed]  # fmt: skip
            if args.prometheus:
                with backfilled(series) as prometheus:
                    read_s, _ = read_back(prometheus)
                    row.append(f"{read_s:.2f}")
                    if context:
                        ctx = enricher_for(prometheus)
                        context_s, _ = best(args.repeat, partial(whole, on=url, ctx=ctx))
                        row += [f"{context_s:.2f}", f"{context_s / floor_s:.1f}x"]
            rows.append(row)
            print(" | ".join(row), file=sys.stderr, flush=True)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
