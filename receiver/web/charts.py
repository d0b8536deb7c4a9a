"""Charts as small server-made SVG: no script, no ``style=`` (the CSP forbids inline
styles), every text escaped.

``kpi_chart`` draws a journey KPI over an incident's window: now as a solid line, the
baseline (the same KPI ``baseline_offset`` earlier, moved onto the same times) dashed, a
vertical marker where the incident started, the lowest and highest value with the unit, and
the window's times in UTC. A missing point (None, NaN, ±Inf, or a hole in time wider than
1.5 of the series' usual step) breaks the line. Colours, widths and dashes are presentation
attributes, defaults the site CSS may override through the classes ``kpi-chart``,
``kpi-chart-now``, ``kpi-chart-baseline``, ``kpi-chart-bad``, ``kpi-chart-start``,
``kpi-chart-grid``, ``kpi-chart-label`` and ``kpi-chart-empty``.

Layout (viewBox ``0 0 320 120``, no fixed size: it takes the width its container gives)::

    max label                         ── now  ╌╌ last week     y 11
    ┌──────────────────│─────────────────────────────────┐    y 16  (PLOT_TOP)
    │  ╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌│╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌╌  │
    │ ─────────────────│──╮                              │
    │                  │  ╰────────────────────────────  │
    └──────────────────│─────────────────────────────────┘    y 100 (PLOT_BOTTOM)
    min label                                 07:30–08:30 UTC  y 112
    x 4 (PLOT_LEFT)                                  x 316 (PLOT_RIGHT)
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from itertools import pairwise
from typing import Literal

Point = tuple[float, float | None]
"""(unix seconds, value); None, NaN or ±Inf is a gap."""

WIDTH = 320
HEIGHT = 120
PLOT_LEFT = 4.0
PLOT_RIGHT = 316.0
PLOT_TOP = 16.0
PLOT_BOTTOM = 100.0

_NOW_STROKE = "#1565c0"
_BAD_STROKE = "#c62828"
_START_STROKE = "#e65100"
_DASHES = "4 3"
_CHAR_WIDTH = 6.5  # a generous width of one character at font-size 10, to lay out the legend
# Characters XML 1.0 does not allow at all: a title with one would make the SVG unreadable.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def kpi_chart(
    now: Sequence[Point],
    baseline: Sequence[Point],
    *,
    start: float,
    end: float,
    unit: str,
    bad_when: Literal["down", "up"],
    incident_start: float,
    title: str,
    vs: str = "last week",
) -> str:
    """A standalone ``<svg>`` of ``now`` (solid) against ``baseline`` (dashed) from
    ``start`` to ``end`` (unix seconds); points outside that window are left out.

    ``title`` names the KPI, ``vs`` the baseline in words; with ``bad_when`` they make the
    accessible summary (``<title>`` and ``aria-label``), e.g. "conversion now 0.41 vs 0.93
    last week (ratio)", where "now" is the last point that has a value. The "now" line is
    marked bad (class ``kpi-chart-bad``, red) when that value is worse than the baseline at
    the same time in the ``bad_when`` direction. Without any value: an SVG saying "no data".
    """
    if not (math.isfinite(start) and math.isfinite(end) and end > start):
        raise ValueError(f"the window must have end > start, not {start!r}..{end!r}")
    current = _inside(now, start, end)
    before = _inside(baseline, start, end)
    values = [v for _, v in (*current, *before) if v is not None]
    latest = _last_value(current)
    then = _baseline_at(before, latest[0]) if latest is not None else None
    if latest is None:
        summary = f"{title}: no data" if then is None and not values else f"{title}: no data now"
    else:
        summary = f"{title} now {number(latest[1])} vs "
        summary += f"{number(then)} {vs}" if then is not None else f"no data {vs}"
        if unit:
            summary += f" ({unit})"
    if not values:
        return _svg(summary, [_text(WIDTH / 2, HEIGHT / 2 + 4, "no data", "middle", "empty")])

    low, high = min(values), max(values)
    bad = (
        latest is not None
        and then is not None
        and (latest[1] < then if bad_when == "down" else latest[1] > then)
    )

    def x(t: float) -> float:
        return PLOT_LEFT + (t - start) / (end - start) * (PLOT_RIGHT - PLOT_LEFT)

    def y(v: float) -> float:
        if high == low:
            return (PLOT_TOP + PLOT_BOTTOM) / 2
        return PLOT_BOTTOM - (v - low) / (high - low) * (PLOT_BOTTOM - PLOT_TOP)

    low_label = f"{number(low)} {unit}".strip()
    times = _window(start, end)
    parts = [
        _line(PLOT_LEFT, PLOT_TOP, PLOT_RIGHT, PLOT_TOP, "kpi-chart-grid", grid=True),
        _line(PLOT_LEFT, PLOT_BOTTOM, PLOT_RIGHT, PLOT_BOTTOM, "kpi-chart-grid", grid=True),
        _text(PLOT_LEFT, 11, f"{number(high)} {unit}".strip(), "start", "label"),
        _text(PLOT_LEFT, 112, low_label, "start", "label"),
        _text(PLOT_RIGHT, 112, times, "end", "label"),
        *_legend(vs, bad),
    ]
    if start <= incident_start <= end:
        at = x(incident_start)
        marker = _line(at, PLOT_TOP, at, PLOT_BOTTOM, "kpi-chart-start")
        when = f"incident start {_clock(incident_start, end - start)} UTC"
        parts.append(marker.replace("/>", f"><title>{escape(when)}</title></line>"))
        # "start" under the marker, where it does not run into the labels of that row; in
        # the text colour (the marker's orange is 3.8:1 on white, too faint for words).
        room = (PLOT_LEFT + len(low_label) * _CHAR_WIDTH, PLOT_RIGHT - len(times) * _CHAR_WIDTH)
        if room[0] + 20 < at < room[1] - 20:
            parts.append(_text(at, 112, "start", "middle", "start-label"))
    base_path = _path(before, x, y)
    if base_path:
        parts.append(
            f'<path class="kpi-chart-baseline" d="{base_path}" fill="none" '
            f'stroke="currentColor" stroke-opacity="0.6" stroke-width="1.5" '
            f'stroke-dasharray="{_DASHES}" stroke-linecap="round"/>'
        )
    now_path = _path(current, x, y)
    if now_path:
        parts.append(
            f'<path class="{_now_class(bad)}" d="{now_path}" fill="none" stroke="{_stroke(bad)}" '
            f'stroke-width="2" stroke-linecap="round" stroke-linejoin="round"/>'
        )
    return _svg(summary, parts)


def number(value: float) -> str:
    """A KPI value for people: 0.41, 12.5, 1,200, 0.0012."""
    size = abs(value)
    if size >= 1000:
        text = f"{value:,.0f}"
    elif size >= 0.01 or size == 0:
        text = f"{value:.3f}".rstrip("0").rstrip(".")
    else:
        text = f"{value:.2g}"
    return "0" if text == "-0" else text


def escape(text: str) -> str:
    """``text`` for SVG/XML content or an attribute: escaped, and without the control
    characters XML cannot carry at all."""
    return html.escape(_NOT_XML.sub("", text), quote=True)


def _inside(points: Sequence[Point], start: float, end: float) -> list[Point]:
    kept: list[Point] = []
    for t, v in sorted(points, key=lambda point: point[0]):
        if start <= t <= end:
            kept.append((t, v if v is not None and math.isfinite(v) else None))
    return kept


def _last_value(points: Sequence[Point]) -> tuple[float, float] | None:
    for t, v in reversed(points):
        if v is not None:
            return t, v
    return None


def _baseline_at(points: Sequence[Point], t: float) -> float | None:
    """The baseline at ``t``: its point at that time, else its last value before."""
    found: float | None = None
    for when, v in points:
        if when > t:
            break
        if v is not None:
            found = v
        elif when == t:
            found = None
    return found


def _segments(points: Sequence[Point]) -> list[list[tuple[float, float]]]:
    """Runs of points with values, split at a gap value or a hole in time."""
    steps = sorted(b[0] - a[0] for a, b in pairwise(points) if b[0] > a[0])
    usual = steps[len(steps) // 2] if steps else math.inf
    runs: list[list[tuple[float, float]]] = []
    run: list[tuple[float, float]] = []
    for t, v in points:
        if v is None or (run and t - run[-1][0] > 1.5 * usual):
            if run:
                runs.append(run)
            run = []
        if v is not None:
            run.append((t, v))
    if run:
        runs.append(run)
    return runs


def _path(points: Sequence[Point], x: Callable[[float], float], y: Callable[[float], float]) -> str:
    out: list[str] = []
    for run in _segments(points):
        head, *rest = run
        out.append(f"M{x(head[0]):.1f} {y(head[1]):.1f}")
        out.extend(f"L{x(t):.1f} {y(v):.1f}" for t, v in rest)
        if not rest:
            out.append("h0")  # a lone point: a zero-length line, a dot with round caps
    return "".join(out)


def _legend(vs: str, bad: bool) -> list[str]:
    """``── now  ╌╌ <vs>``, laid out from the right with a generous guess at text widths."""
    vs_left = PLOT_RIGHT - len(vs) * _CHAR_WIDTH
    dash = (vs_left - 18, vs_left - 4)
    now_right = dash[0] - 8
    solid = (now_right - 3 * _CHAR_WIDTH - 18, now_right - 3 * _CHAR_WIDTH - 4)
    return [
        _line(solid[0], 8, solid[1], 8, _now_class(bad), stroke=_stroke(bad)),
        _text(now_right, 11, "now", "end", "label"),
        _line(dash[0], 8, dash[1], 8, "kpi-chart-baseline", dashed=True),
        _text(PLOT_RIGHT, 11, vs, "end", "label"),
    ]


def _stroke(bad: bool) -> str:
    return _BAD_STROKE if bad else _NOW_STROKE


def _now_class(bad: bool) -> str:
    return "kpi-chart-now kpi-chart-bad" if bad else "kpi-chart-now"


def _line(
    x1: float,
    y1: float,
    x2: float,
    y2: float,
    css: str,
    *,
    grid: bool = False,
    dashed: bool = False,
    stroke: str | None = None,
) -> str:
    width: float = 1
    if grid:
        paint = 'stroke="currentColor" stroke-opacity="0.15"'
    elif dashed:
        paint = f'stroke="currentColor" stroke-opacity="0.6" stroke-dasharray="{_DASHES}"'
        width = 1.5
    elif stroke is not None:  # the legend's sample of the "now" line
        paint = f'stroke="{stroke}"'
        width = 2
    else:
        paint = f'stroke="{_START_STROKE}"'
    return (
        f'<line class="{css}" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
        f'{paint} stroke-width="{width}"/>'
    )


def _text(x: float, y: float, text: str, anchor: str, kind: str) -> str:
    return (
        f'<text class="kpi-chart-{kind}" x="{x:.1f}" y="{y:.1f}" '
        f'text-anchor="{anchor}">{escape(text)}</text>'
    )


def _window(start: float, end: float) -> str:
    span = end - start
    return f"{_clock(start, span)}–{_clock(end, span)} UTC"


def _clock(t: float, span: float) -> str:
    moment = datetime.fromtimestamp(t, UTC)
    return moment.strftime("%b %d %H:%M" if span >= 86400 else "%H:%M")


def _svg(summary: str, parts: Sequence[str]) -> str:
    label = escape(summary)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="kpi-chart" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" aria-label="{label}" '
        f'font-family="sans-serif" font-size="10" fill="currentColor">'
        f"<title>{label}</title>{''.join(parts)}</svg>"
    )
