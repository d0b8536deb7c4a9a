"""A/B of the webhook path: the receiver of another revision against this working tree,
side by side on one core with one Redis, in interleaved rounds.

    .venv/bin/python -m benchmarks.ab --base HEAD       # this tree's changes, ~3 min
    .venv/bin/python -m benchmarks.ab --base main~3 --sizes 1,10,100 --rounds 8

The machine this runs on is shared and noisy: two runs of ``benchmarks.ingest`` a few
minutes apart can differ by more than a change is worth. Here both receivers run at once,
so noise hits both: revision ``--base`` (exported with ``git archive`` into a temporary
directory: "A") and the working tree ("B"), each ``journey-receiver serve`` on its own tree's
example config with its own key prefix, both pinned with one ``redis-server`` to core 0 (as
issue 15's goals are set: receiver and Redis share a core), the load generator on core 1.
For each batch size a warm-up round each, then ``--rounds`` pairs of rounds, A then B, B
then A; the one not measured is SIGSTOPped. The floor of each comparison is A itself: the
table gives B's alerts/s over A's (median rounds) and each one's CPU per alert, its own and
Redis's. Both stores start empty and grow with what each took, so the later rounds of both
meet larger incidents. A runs on the working tree's installed dependencies. This is a
script that prints a table, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import redis
import yaml

from benchmarks.ingest import (
    ROOT,
    Bench,
    Placement,
    Round,
    Server,
    bench_workdir,
    machine,
    pinned,
    script_us_per_alert,
)
from tests.support.processes import binary, free_port, running
from tests.support.processes import redis_args as redis_command

BUDGET_S = 600.0  # a run stays under ten minutes, whatever it is asked


@dataclass(frozen=True)
class Pair:
    a: Server
    b: Server
    redis_pid: int

    @property
    def servers(self) -> tuple[Server, Server]:
        return (self.a, self.b)


def export(revision: str, into: Path) -> Path:
    """The tree of ``revision`` (committed files only), written under ``into``."""
    tree = Path(tempfile.mkdtemp(prefix="base-", dir=into))
    archive = subprocess.run(
        [binary("git"), "-C", str(ROOT), "archive", "--format=tar", revision],
        capture_output=True,
        check=True,
    )
    subprocess.run([binary("tar"), "-x", "-C", str(tree)], input=archive.stdout, check=True)
    # ``python -m`` run from the tree must import the tree's receiver, not the working
    # tree's (the editable install comes after the current directory on sys.path).
    where = subprocess.run(
        [sys.executable, "-c", "import receiver; print(receiver.__file__)"],
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(where).resolve().is_relative_to(tree.resolve()):
        raise RuntimeError(f"{revision}'s tree imports the receiver from {where}, not itself")
    return tree


def config_for(tree: Path, workdir: Path, redis_port: int, prefix: str) -> Path:
    """``tree``'s example receiver.yaml on the benchmark's Redis, under its own prefix."""
    cfg = yaml.safe_load((tree / "config" / "receiver.yaml").read_text())
    cfg.setdefault("store", {})["url"] = f"redis://127.0.0.1:{redis_port}/0"
    cfg["store"]["key_prefix"] = prefix
    cfg["journeys_file"] = str(tree / "config" / "journeys.yaml")
    cfg["server"]["auth"]["allow_open"] = True
    path = workdir / f"receiver-{prefix}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


async def measure(bench: Bench, pair: Pair, sizes: Sequence[int], args: argparse.Namespace) -> None:
    try:
        await bench.compare(pair.servers, sizes, args.rounds, args.round_seconds, 1.0)
    finally:
        for s in pair.servers:
            s.resume()


def table(rounds: Sequence[Round], sizes: Sequence[int]) -> list[str]:
    head = (
        "batch | A alerts/s | B alerts/s |  B / A | CPU per alert, us: A receiver + redis "
        "| B receiver + redis | script us/alert: A / B | foreign load"
    )
    lines = [head, "-" * len(head)]
    for size in sizes:
        a, b = ([r for r in rounds if r.size == size and r.target == n] for n in "AB")
        rate_a = statistics.median(r.alerts_per_s for r in a)
        rate_b = statistics.median(r.alerts_per_s for r in b)
        errors = sum(r.errors for r in a + b)
        foreign = statistics.fmean(r.cpu.get("foreign", 0.0) for r in a + b)
        lines.append(
            f"{size:>5} | {rate_a:>10,.0f} | {rate_b:>10,.0f} | {rate_b / rate_a:>5.3f}x "
            f"| {_per_alert(a, 'A'):>19.1f} + {_per_alert(a, 'redis'):<5.1f} "
            f"| {_per_alert(b, 'B'):>9.1f} + {_per_alert(b, 'redis'):<6.1f} "
            f"| {script_us_per_alert(a):>14.1f} / {script_us_per_alert(b):<5.1f} | {foreign:>4.0%}"
            + (f"  ({errors} non-200 answers!)" if errors else "")
        )
    return lines


def _per_alert(rounds: Sequence[Round], who: str) -> float:
    return statistics.median(r.cpu_us_per_alert(who) for r in rounds)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.ab",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--base", default="HEAD", help="the revision B is compared with (A)")
    p.add_argument("--sizes", default="1,100", help="batch sizes (default 1,100)")
    p.add_argument("--rounds", type=int, default=6, help="round pairs per size")
    p.add_argument("--round-seconds", type=float, default=6.0)
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    p.add_argument("--keep", type=Path, help="keep configs and server logs in this directory")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    planned = len(sizes) * (2 + 2 * args.rounds * args.round_seconds)
    if planned > BUDGET_S - 60:
        p.error(f"that plan takes ~{planned:.0f} s; keep it under {BUDGET_S - 60:.0f} s")
    if len(os.sched_getaffinity(0)) < 2:
        p.error("needs two cores: the receivers and Redis on one, the load generator on another")
    where = machine()  # before pinning: it counts the cores this process may use
    # With it set, ``python -m`` would not look in the current directory: A would run B.
    os.environ.pop("PYTHONSAFEPATH", None)
    os.sched_setaffinity(0, {1})
    place = Placement(server=0, client=1, redis=0)
    # A SIGTERM ends the run through its ``finally`` blocks: no server is left stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with contextlib.ExitStack() as stack:
        workdir = bench_workdir(stack, args.keep)
        base = export(args.base, workdir)
        redis_port = free_port()
        rds = stack.enter_context(
            running(
                pinned(0, redis_command(redis_port, workdir)), redis_port, workdir / "redis.log"
            )
        )
        servers = []
        for name, tree in (("A", base), ("B", ROOT)):
            port = free_port()
            serve = [
                sys.executable, "-m", "receiver.cli", "serve",
                "--config", str(config_for(tree, workdir, redis_port, f"ab{name}")),
                "--host", "127.0.0.1", "--port", str(port),
            ]  # fmt: skip
            # Run from its own tree: ``-m`` imports the receiver package found there first.
            proc = stack.enter_context(
                running(pinned(0, serve), port, workdir / f"receiver-{name}.log", tree)
            )
            servers.append(Server(name, "127.0.0.1", port, proc.pid))
        pair = Pair(servers[0], servers[1], rds.pid)
        client = redis.Redis(port=redis_port)
        stack.callback(client.close)
        bench = Bench(pair, place, client, args.concurrency, "raw")
        asyncio.run(asyncio.wait_for(measure(bench, pair, sizes, args), BUDGET_S - 30))
    print()
    print(where)
    print(
        f"A: {args.base} (git archive), B: the working tree; pinned with taskset: both "
        "receivers and redis-server on core 0, the load generator on core 1; the receiver "
        "not being measured is SIGSTOPped"
    )
    print(
        f"load: {args.concurrency} requests in flight, {args.rounds} interleaved round pairs "
        f"of {args.round_seconds:g} s per size; alerts/s is the median round"
    )
    print(*table(bench.rounds, sizes), sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
