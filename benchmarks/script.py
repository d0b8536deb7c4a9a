"""Script benchmark: Redis's time in the ingest script per alert, for ``ingest.lua`` and for
variants of it, with the commands the script ran inside.

    .venv/bin/python -m benchmarks.script                      # from the repository root, ~1 min
    .venv/bin/python -m benchmarks.script --batch 1 --per-call 8 /tmp/variant.lua

A ``redis-server`` on a free port (no persistence) pinned to core 1, stopped by its PID
whatever happens, and the receiver's ``RedisStore`` in this process on core 0, with the
example config's store settings. The scripts: ``receiver/store/lua/ingest.lua`` (the floor
every variant is measured against), then each file given, a copy of it changed to try an
idea; a variant is run through the same store and arguments, so it must read them as
``ingest.lua`` does. For each repeat, every script in turn (the order alternates), on a
fresh key prefix: webhook bodies of ``--batch`` alerts from ``benchmarks.ingest.Payloads``
(~85% new fingerprints, 10% repeats, 5% resolves, several incidents a body), parsed and
placed as the webhook path does it before anything is timed, then ``--calls`` rounds of
``--per-call`` batches given to the store at once (group commit makes them about one
script call); the first quarter of the rounds warms up, then Redis's ``INFO
commandstats`` is reset and read after the rest. Printed: Redis's time in ``EVALSHA`` per
alert (median and every repeat) and its ratio to ``ingest.lua``'s, script calls per batch,
and the commands ``ingest.lua`` ran inside, per alert (a call's time less its commands' is
Lua: the script's own work and its conversions). This is a script that prints a table, not
a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from benchmarks.ingest import EXAMPLE_CONFIG, Payloads, redis_apart
from receiver.app import store_settings
from receiver.normalize import normalize
from receiver.placement import place
from receiver.replay import replay_settings
from receiver.store import open_store
from receiver.store.redis import RedisStore
from receiver.webhook import parse_webhook

INGEST = "ingest.lua"
T0 = 1_800_000_000_000


@dataclass
class Measured:
    """One script's repeats: EVALSHA microseconds per alert, calls per batch, and the
    commands run inside (microseconds per alert, by command)."""

    us_per_alert: list[float] = field(default_factory=list)
    calls_per_batch: list[float] = field(default_factory=list)
    inside: dict[str, float] = field(default_factory=dict)


async def _repeat(
    port: int, source: str, prefix: str, args: argparse.Namespace, seed: int
) -> tuple[float, float, dict[str, float]]:
    settings = replay_settings(EXAMPLE_CONFIG, None)
    store = open_store(
        f"redis://127.0.0.1:{port}/0", replace(store_settings(settings), key_prefix=prefix)
    )
    assert isinstance(store, RedisStore)
    try:
        store._ingest = store._r.register_script(source)
        payloads = Payloads(args.batch, seed % 256, seed)
        batches = [
            place(normalize(parse_webhook(payloads.next())), settings)
            for _ in range(args.calls * args.per_call)
        ]
        warm = args.calls // 4

        async def rounds(first: int, last: int) -> None:
            for n in range(first, last):
                todo = batches[n * args.per_call : (n + 1) * args.per_call]
                await asyncio.gather(*(store.ingest(b, 0, T0 + n) for b in todo))

        await rounds(0, warm)
        await store._r.config_resetstat()
        await rounds(warm, args.calls)
        stats: dict[str, Any] = await store._r.info("commandstats")
    finally:
        await store.aclose()
    alerts = (args.calls - warm) * args.per_call * args.batch
    evalsha = stats["cmdstat_evalsha"]
    inside = {
        name.removeprefix("cmdstat_"): int(v["usec"]) / alerts
        for name, v in stats.items()
        if name not in ("cmdstat_evalsha", "cmdstat_config|resetstat")
    }
    calls = int(evalsha["calls"]) / ((args.calls - warm) * args.per_call)
    return int(evalsha["usec"]) / alerts, calls, inside


async def _run(port: int, scripts: dict[str, str], args: argparse.Namespace) -> list[str]:
    measured = {name: Measured() for name in scripts}
    names = list(scripts)
    for rep in range(args.repeats):
        for k, name in enumerate(names if rep % 2 == 0 else names[::-1]):
            us, calls, commands = await _repeat(
                port, scripts[name], f"script-bench-{rep}-{k}", args, seed=7 + rep
            )
            m = measured[name]
            m.us_per_alert.append(us)
            m.calls_per_batch.append(calls)
            for command, spent in commands.items():
                m.inside[command] = m.inside.get(command, 0.0) + spent / args.repeats
    floor = statistics.median(measured[INGEST].us_per_alert)
    lines = [
        "script                         | EVALSHA us/alert (median) | / ingest.lua "
        "| script calls/batch | every repeat"
    ]
    for name, m in measured.items():
        median = statistics.median(m.us_per_alert)
        lines.append(
            f"{name[-30:]:<30} | {median:>25.2f} | {median / floor:>11.2f}x "
            f"| {statistics.median(m.calls_per_batch):>18.2f} "
            f"| {' '.join(f'{u:.2f}' for u in m.us_per_alert)}"
        )
    inside = measured[INGEST].inside
    total = sum(inside.values())
    lines += ["", f"inside {INGEST}, us per alert (mean of the repeats):"]
    for command, spent in sorted(inside.items(), key=lambda item: -item[1]):
        lines.append(f"  {command:<16} {spent:6.2f}")
    # Both means over the repeats: the commands' share of the same calls' time.
    lua = statistics.fmean(measured[INGEST].us_per_alert) - total
    lines.append(f"  {'commands':<16} {total:6.2f}   Lua and its conversions: {lua:.2f}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.script",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("variants", nargs="*", type=Path, help="changed copies of ingest.lua")
    p.add_argument("--batch", type=int, default=100, help="alerts per webhook batch")
    p.add_argument("--per-call", type=int, default=4, help="batches given at once")
    p.add_argument("--calls", type=int, default=200, help="rounds per script and repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--keep", type=Path, help="keep the Redis log in this directory")
    args = p.parse_args(argv)
    lua = resources.files("receiver.store").joinpath("lua")
    scripts = {INGEST: lua.joinpath(INGEST).read_text()}
    scripts |= {str(v): v.read_text() for v in args.variants}
    with contextlib.ExitStack() as stack:
        port, where = redis_apart(stack, args.keep)
        lines = asyncio.run(_run(port, scripts, args))
    print(where)
    print(
        f"batches of {args.batch}, {args.per_call} given at once, {args.calls} rounds a "
        f"repeat (the first quarter warms up), {args.repeats} repeats, interleaved"
    )
    print(*lines, sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
