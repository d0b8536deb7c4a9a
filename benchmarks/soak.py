"""Soak: three receivers behind nginx under a webhook storm for minutes, a replica SIGKILLed
every few seconds and Redis SIGKILLed once; then every acknowledged alert is looked for in
its incident and every decision at the sink fakes.

    .venv/bin/python -m benchmarks.soak                  # from the repository root, 3 min
    .venv/bin/python -m benchmarks.soak --minutes 10 --kill-every 2

The same soak as ``tests/e2e/test_replicas_soak.py`` (``tests/support/soak.py`` drives
both), run longer. It needs ``redis-server`` and ``nginx`` on the PATH. Every process it
starts is stopped again by its PID, even when a run fails. It prints a table, then every
problem found; the exit status is 1 if there was one.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.support.soak import Plan, run_soak


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--minutes", type=float, default=3.0, help="storm length (default 3)")
    p.add_argument("--kill-every", type=float, default=3.0, help="mean s between kills")
    p.add_argument(
        "--keep-up",
        type=int,
        default=1,
        help="put a kill off while only this many replicas are up (0: total outages too)",
    )
    p.add_argument("--lanes", type=int, default=8, help="alert groups under way at once")
    p.add_argument(
        "--appendfsync",
        choices=["always", "everysec"],
        default="always",
        help="Redis AOF fsync policy (everysec may lose the last second to the crash)",
    )
    p.add_argument("--no-redis-restart", action="store_true")
    p.add_argument("--seed", type=int, help="replica kills are drawn from it")
    p.add_argument("--keep", type=Path, help="keep configs and every process's log here")
    args = p.parse_args(argv)
    plan = Plan(
        duration=args.minutes * 60,
        kill_every=args.kill_every,
        keep_up=args.keep_up,
        lanes=args.lanes,
        appendfsync=args.appendfsync,
        redis_restart_at=None if args.no_redis_restart else 0.4,
        settle_timeout=120.0,
        **({"seed": args.seed} if args.seed is not None else {}),
    )
    print(
        f"soak: {args.minutes:g} min, {plan.lanes} lanes of waves of {plan.batches_per_wave}"
        f" batches every {plan.batch_every:g} s, a kill every ~{plan.kill_every:g} s,"
        f" seed {plan.seed}; Python {platform.python_version()}",
        flush=True,
    )
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        result = run_soak(plan, args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="soak-") as workdir:
            result = run_soak(plan, Path(workdir))
    print(result.figures.table())
    for problem in result.problems:
        print(f"PROBLEM {problem}")
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
