"""Prometheus ``ALERTS`` over a window → the firing intervals of every alert.

The query is ``last_over_time(ALERTS{alertstate="firing"}[<step - 1ms>])`` on a
``query_range`` with that step, so a point at ``t`` says "a firing sample in (t - step,
t]". Without the ``last_over_time`` a plain selector would look back five minutes (the
lookback delta) and stretch every alert past its end by that much wherever the series has
no staleness marker (backfilled blocks have none). With a step equal to the rule
evaluation interval, every evaluation that saw the alert firing is one point, and a run of
consecutive points is one firing: it starts at its first point and ends one step after its
last one (the evaluation that no longer found it firing). A run that reaches the end of the
window is still firing.

A rule evaluated less often than the step (its group's ``interval``, as Prometheus' rules
API gives it now) leaves a point only every few steps: its alerts' runs go on across gaps
up to that interval and end one interval after their last point, so a step shorter than
some group's interval does not cut every firing into pieces. An alert whose rule
Prometheus no longer lists (renamed, removed, or a server without the rules API) is read
at the step.

The window is read in chunks of ``CHUNK_STEPS`` points, every chunk on the same grid of
multiples of the step, so runs continue across chunks (Prometheus refuses more than 11,000
points per series in one answer). Alerts already firing at the start of the window begin
at its first point: the replay cannot know when they really started.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from receiver.normalize import labels_fingerprint
from receiver.online import shown_url

CHUNK_STEPS = 1440
"""Points per series in one query: a day at the default one-minute step."""

_DROPPED = frozenset({"__name__", "alertstate"})


class HistoryError(Exception):
    """Prometheus could not give the history; the text says why and what to check."""


@dataclass(frozen=True, slots=True)
class Firing:
    """One alert firing from ``start_ms`` until ``end_ms`` (None: still firing at the end
    of the window). ``fingerprint`` is the one Alertmanager gives the alert's labels."""

    fingerprint: str
    labels: Mapping[str, str]
    start_ms: int
    end_ms: int | None


def query(step_ms: int) -> str:
    # One millisecond short of a step: Prometheus 2 closes a range at both ends, 3 only at
    # its end; either way a sample falls in exactly one point's range.
    return f'last_over_time(ALERTS{{alertstate="firing"}}[{step_ms - 1}ms])'


@dataclass(frozen=True, slots=True)
class RuleInterval:
    """An alerting rule as Prometheus' rules API lists it: its alertname, its static
    labels and its group's evaluation interval (ms)."""

    name: str
    labels: Mapping[str, str]
    interval_ms: int


def interval_of(alert: Mapping[str, str], rules: Sequence[RuleInterval], step_ms: int) -> int:
    """The evaluation interval of the rule that raised ``alert``: of those with its
    alertname, the ones whose static labels it carries (teams reuse alertnames in groups
    of their own, at their own intervals); the longest where several do, or where none
    does (a label templated from the query's); the step for an alertname none raises."""
    named = [r for r in rules if r.name == alert.get("alertname")]
    # A label set to "" is one the alert does not carry (Prometheus drops empty labels).
    carried = [r for r in named if all(alert.get(k, "") == v for k, v in r.labels.items())]
    return max((r.interval_ms for r in carried or named), default=step_ms)


def firings(
    points: Iterable[tuple[Mapping[str, str], Iterable[int]]],
    step_ms: int,
    last_ms: int,
    rules: Sequence[RuleInterval] = (),
) -> list[Firing]:
    """The firing intervals of series given as (labels, point times in ms); ``last_ms`` is
    the last point of the window's grid; ``rules``: the alerting rules, whose evaluation
    interval reads their alerts where longer than the step. Sorted by start, then
    fingerprint."""
    found: list[Firing] = []
    for labels, times in points:
        alert = {k: v for k, v in labels.items() if k not in _DROPPED}
        fp = labels_fingerprint(alert)
        every = interval_of(alert, rules, step_ms)
        # On the grid of points: the first point at or after the next evaluation.
        gap = max(1, -(-every // step_ms)) * step_ms
        run_start: int | None = None
        previous = 0
        for t in sorted(set(times)):
            if run_start is not None and t - previous > gap:
                found.append(Firing(fp, alert, run_start, previous + gap))
                run_start = None
            if run_start is None:
                run_start = t
            previous = t
        if run_start is not None:
            end = None if previous + gap > last_ms else previous + gap
            found.append(Firing(fp, alert, run_start, end))
    found.sort(key=lambda f: (f.start_ms, f.fingerprint))
    return found


def grid(since_ms: int, until_ms: int, step_ms: int) -> tuple[int, int]:
    """The first and last point of the window on the grid of multiples of the step."""
    first = -(-since_ms // step_ms) * step_ms
    last = until_ms // step_ms * step_ms
    return first, last


def read_firings(
    url: str,
    since_ms: int,
    until_ms: int,
    step_ms: int,
    *,
    timeout: float = 30.0,
    transport: httpx.BaseTransport | None = None,
) -> list[Firing]:
    """Every firing of ``ALERTS`` between ``since_ms`` and ``until_ms`` from the Prometheus
    at ``url``; ``HistoryError`` when it cannot be read."""
    first, last = grid(since_ms, until_ms, step_ms)
    if last < first:
        raise HistoryError("the window is shorter than one step: widen --since or --until")
    series: dict[tuple[tuple[str, str], ...], list[int]] = {}
    endpoint = url.rstrip("/") + "/api/v1/query_range"
    with httpx.Client(timeout=timeout, transport=transport) as client:
        start = first
        while start <= last:
            end = min(last, start + (CHUNK_STEPS - 1) * step_ms)
            for labels, times in _chunk(client, endpoint, query(step_ms), start, end, step_ms):
                series.setdefault(tuple(sorted(labels.items())), []).extend(times)
            start = end + step_ms
        # After the history: a Prometheus that cannot be reached has been named by then.
        rules = rule_intervals(client, url)
    return firings(((dict(k), v) for k, v in series.items()), step_ms, last, rules)


def rule_intervals(client: httpx.Client, url: str) -> list[RuleInterval]:
    """Every alerting rule with its group's evaluation interval, from Prometheus' rules
    API; empty when it gives none (an answer of another shape included: the history
    itself is what the replay needs)."""
    try:
        response = client.get(url.rstrip("/") + "/api/v1/rules", params={"type": "alert"})
        groups = response.json()["data"]["groups"] if response.status_code == 200 else []
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return []
    found: list[RuleInterval] = []
    for group in groups if isinstance(groups, list) else []:
        try:
            interval = round(float(group["interval"]) * 1000)
            rules = [r for r in group["rules"] if r.get("type") == "alerting"]
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            continue
        for rule in rules:
            name, labels = rule.get("name"), rule.get("labels") or {}
            if isinstance(name, str) and isinstance(labels, dict) and interval > 0:
                # A templated value ("{{ if ... }}critical{{ end }}") is not what its
                # alerts carry: it says nothing of which rule raised one.
                static = {k: v for k, v in labels.items() if isinstance(v, str) and "{{" not in v}
                found.append(RuleInterval(name, static, interval))
    return found


def _chunk(
    client: httpx.Client, endpoint: str, promql: str, start_ms: int, end_ms: int, step_ms: int
) -> list[tuple[dict[str, str], list[int]]]:
    params = {
        "query": promql,
        "start": f"{start_ms / 1000:.3f}",
        "end": f"{end_ms / 1000:.3f}",
        "step": f"{step_ms / 1000:g}",
    }
    # Named in messages without its user info: a password in --prometheus stays unprinted.
    named = shown_url(endpoint)
    try:
        response = client.get(endpoint, params=params)
    except httpx.HTTPError as exc:
        raise HistoryError(f"{named}: {type(exc).__name__}: {exc}") from exc
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict) or body.get("status") != "success":
        why = body.get("error") if isinstance(body, dict) else None
        raise HistoryError(
            f"{named}: HTTP {response.status_code}"
            + (f": {why}" if why else ": not a Prometheus query API answer (check --prometheus)")
        )
    result = body.get("data", {}).get("result", [])
    return [(dict(s["metric"]), [round(float(t) * 1000) for t, _ in s["values"]]) for s in result]
