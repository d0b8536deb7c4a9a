"""``journey-receiver replay``: its options and what it prints.

Exit 0 with the report; 1 when the config, the journeys, Prometheus' answer or the
``--store`` is wrong (the message names which); 130 when interrupted (a ``--store``'s
scratch keys are deleted first). No receiver credentials are needed (``settings.py``),
except the ``prometheus`` and ``events`` sections' with ``--context``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from receiver.config.fields import parse_duration

if TYPE_CHECKING:
    from receiver.replay.report import Report
    from receiver.settings import Settings

PROMETHEUS_ENV = "PROMETHEUS_URL"
DEFAULT_SINCE = "7d"
DEFAULT_STEP = "1m"
DEFAULT_AM_GROUP_BY = "alertname"
_LAST_INSTANT_S = 253402300800  # 10000-01-01: past it no date is written


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--prometheus",
        metavar="URL",
        help=f"where ALERTS is kept (default ${PROMETHEUS_ENV}: a URL with a password stays "
        "out of the process list)",
    )
    p.add_argument(
        "--since",
        default=DEFAULT_SINCE,
        help=f"start: a duration before --until (default {DEFAULT_SINCE}), an RFC 3339 time "
        "or Unix seconds",
    )
    p.add_argument("--until", help="end: an RFC 3339 time or Unix seconds (default now)")
    p.add_argument(
        "--against", type=Path, metavar="OLD.yaml", help="also replay this journeys file and diff"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object (for CI)")
    p.add_argument(
        "--store",
        metavar="URL",
        # server.AUTO, written out: building the CLI's parser must not load the Redis client.
        default="auto",
        help="where the replay keeps its incidents: auto (default: a redis-server of its own "
        "if one is on PATH, else memory://), memory:// (embedded, slower) or a store.url of a "
        "Redis (redis://, rediss://, redis+sentinel://, redis+cluster://...), used under a "
        "scratch key prefix of the run's own, deleted when it ends",
    )
    p.add_argument(
        "--context",
        action="store_true",
        help="read each decision's KPIs (and the config's change feeds) at its time, from the "
        "config's prometheus.url or else --prometheus",
    )
    p.add_argument(
        "--step",
        metavar="DURATION",
        default=DEFAULT_STEP,
        help=f"the rules' evaluation interval: ALERTS' resolution (default {DEFAULT_STEP}); "
        "a rule group Prometheus lists with a longer interval is read at that one",
    )
    p.add_argument(
        "--am-group-by",
        metavar="LABELS",
        default=DEFAULT_AM_GROUP_BY,
        help="Alertmanager's group_by, comma-separated; ... = every label "
        f"(default {DEFAULT_AM_GROUP_BY})",
    )
    p.add_argument(
        "--am-group-wait",
        metavar="DURATION",
        help="Alertmanager's group_wait (default: the config's grouping.group_wait)",
    )
    p.add_argument(
        "--am-group-interval",
        metavar="DURATION",
        help="Alertmanager's group_interval (default: the config's grouping.group_interval)",
    )
    p.add_argument(
        "--am-repeat-interval",
        metavar="DURATION",
        default="4h",
        help="Alertmanager's repeat_interval (default 4h)",
    )


# A plain number is Unix seconds (as --until takes it), never a duration without a unit.
_NUMBER = re.compile(r"[0-9]+(\.[0-9]*)?")


def _instant(option: str, text: str) -> float:
    try:
        if _NUMBER.fullmatch(text.strip()):
            at = float(text)
        else:
            # RFC 3339 allows a lowercase t and z; Python reads only the capitals.
            written = datetime.fromisoformat(text.strip().upper())
            # Without an offset it is UTC, never this machine's local time.
            at = (written if written.tzinfo else written.replace(tzinfo=UTC)).timestamp()
    except (ValueError, OverflowError):
        at = math.nan
    if not 0 <= at < _LAST_INSTANT_S:
        raise ValueError(
            f"{option} {text!r}: not an RFC 3339 time (2026-04-18T08:00:00Z) or Unix seconds"
        )
    return at


def _window(since: str, until: str | None) -> tuple[int, int]:
    # Never past now: an alert still firing would be read as resolving at its last sample.
    end = min(_instant("--until", until), time.time()) if until else time.time()
    if _NUMBER.fullmatch(since.strip()):
        start = _instant("--since", since)
    else:
        try:
            start = end - parse_duration(since)
        except ValueError:
            try:
                start = _instant("--since", since)
            except ValueError:
                raise ValueError(
                    f"--since {since!r}: not a duration (7d, 36h), an RFC 3339 time or Unix seconds"
                ) from None
    if start >= end:
        raise ValueError(f"--since {since} is not before --until")
    return round(start * 1000), round(end * 1000)


def _seconds(option: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ValueError(f"{option}: {exc}") from exc


def _prometheus(text: str) -> str:
    """``--prometheus`` (or ``$PROMETHEUS_URL``) as the replay calls it: an http(s) base URL
    to which the API paths are added; ``ValueError`` naming the option otherwise."""
    from receiver.online import http_url

    if not text:
        raise ValueError(f"--prometheus: give Prometheus' URL (or set {PROMETHEUS_ENV})")
    try:
        url = http_url(text)
    except ValueError as exc:
        raise ValueError(f"--prometheus: {exc}") from None
    if url.query or url.fragment:
        raise ValueError("--prometheus: no query or fragment (the API paths are added to it)")
    return text


@contextlib.contextmanager
def _store(given: str) -> Iterator[str]:
    """``server.store``, saying why when ``auto`` runs embedded."""
    from receiver.replay.server import store

    with store(given) as (url, why):
        if why is not None:
            print(
                f"journey-receiver replay: note: {why}, so the replay runs on the embedded "
                "store (memory://), about three times slower",
                file=sys.stderr,
            )
        yield url


def run(args: argparse.Namespace, config_path: Path | None, journeys_path: Path | None) -> int:
    from receiver.errors import ConfigError
    from receiver.online import shown_url
    from receiver.replay import (
        HistoryError,
        as_text,
        diff,
        read_firings,
        replay,
        replay_settings,
        route_for,
    )
    from receiver.replay.context import enricher_for
    from receiver.replay.run import interruptible
    from receiver.replay.scratch import StoreError, check
    from receiver.replay.server import AUTO

    try:
        prometheus = _prometheus(args.prometheus or os.environ.get(PROMETHEUS_ENV, ""))
        since_ms, until_ms = _window(args.since, args.until)
        step = _seconds("--step", args.step)
        group_wait = _seconds("--am-group-wait", args.am_group_wait)
        group_interval = _seconds("--am-group-interval", args.am_group_interval)
        repeat = _seconds("--am-repeat-interval", args.am_repeat_interval)
    except ValueError as exc:
        print(f"journey-receiver replay: {exc}", file=sys.stderr)
        return 1
    assert step is not None and repeat is not None
    # The replay's grid is in whole milliseconds: a step that rounds to none is none.
    if round(step * 1000) < 1 or (group_interval is not None and round(group_interval * 1000) < 1):
        print("journey-receiver replay: --step and --am-group-interval must be 1ms or more",
              file=sys.stderr)  # fmt: skip
        return 1
    try:
        settings = replay_settings(config_path, journeys_path, context=args.context)
        old = (
            replay_settings(config_path, args.against, context=args.context)
            if args.against
            else None
        )
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        if args.store != AUTO:
            check(args.store)
    except StoreError as exc:
        print(f"journey-receiver replay: {exc}", file=sys.stderr)
        return 1
    group_by = [name.strip() for name in args.am_group_by.split(",") if name.strip()]
    route = route_for(settings, group_by, group_wait, group_interval, repeat)
    try:
        firings = read_firings(prometheus, since_ms, until_ms, round(step * 1000))
    except HistoryError as exc:
        print(f"journey-receiver replay: {exc}", file=sys.stderr)
        return 1
    if not firings:
        # Exit 0 all the same (a quiet window is a real answer), but not silently: an
        # all-zero report is also what a wrong URL or a window past the retention gives.
        print(
            f"journey-receiver replay: warning: no alert fired in the window at "
            f"{shown_url(prometheus)} (check --prometheus, and that Prometheus still keeps "
            "ALERTS that far back)",
            file=sys.stderr,
        )
    context = enricher_for(prometheus) if args.context else None

    try:
        with _store(args.store) as store_url:

            def replayed(under: Settings) -> Report:
                # Each replay on a scratch prefix of its own (on Redis), deleted as it ends.
                return interruptible(
                    lambda: replay(under, firings, route, since_ms, until_ms,
                                   store_url=store_url, context=context)
                )  # fmt: skip

            report = replayed(settings)
            before = replayed(old) if old is not None else None
    except StoreError as exc:
        print(f"journey-receiver replay: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("journey-receiver replay: interrupted", file=sys.stderr)
        return 130
    changes = diff(report, before) if before is not None else None
    if args.json:
        out = report.as_json() | (changes.as_json() if changes else {})
        print(json.dumps(out, indent=2))
    else:
        sys.stdout.write(as_text(report, changes, str(args.against or "")))
    return 0
