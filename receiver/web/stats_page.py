"""The value page (``GET /stats``): the figures of ``GET /api/v1/stats`` (signal quality,
response, business impact, journey SLOs) per journey over 7 or 30 days (its tabs) or any
window the API takes, as tables and small bar charts, and the noisy alertnames as tuning
suggestions. Read through ``parse_query`` and ``cached_stats``, the API's own calls: no
second query path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from receiver.errors import PayloadError
from receiver.outcomes.stats import (
    DEFAULT_WINDOW,
    Figures,
    Stats,
    StatsQuery,
    cached_stats,
    parse_query,
)
from receiver.web.bars import Bar, bar_chart

if TYPE_CHECKING:
    from receiver.app import Receiver

_Pick = Callable[[Figures], float | None]
_Text = Callable[[float | None], str]

WINDOWS = ("7d", "30d")


@dataclass(frozen=True)
class Chart:
    title: str
    svg: str


@dataclass(frozen=True)
class StatsPage:
    window: str
    windows: tuple[str, ...]
    stats: Stats
    names: dict[str, str]
    charts: dict[str, list[Chart]]
    refused: str | None
    """Why the window asked for is not the one shown (the default), as the API says it."""


def query_of(asked: str | None) -> tuple[StatsQuery, str | None]:
    """The window asked for, read as ``GET /api/v1/stats`` reads it (any duration up to its
    maximum); else the default, and why."""
    if not asked:
        return parse_query({}), None
    try:
        return parse_query({"window": asked}), None
    except PayloadError as exc:
        return parse_query({}), f"{exc.message}; showing {DEFAULT_WINDOW}"


async def load(receiver: Receiver, asked: str | None) -> StatsPage:
    query, refused = query_of(asked)
    stats = await cached_stats(receiver, query)
    catalog = receiver.settings.catalog
    names = {j: catalog.find(j).name if catalog.find(j).id == j else j for j in stats.journeys}
    rows = list(stats.journeys.items())

    def chart(title: str, pick: _Pick, text: _Text) -> Chart:
        bars: list[Bar] = [(j, pick(f), text(pick(f))) for j, f in rows]
        return Chart(title, bar_chart(title, bars))

    charts = {
        "signal": [
            chart("Incidents", lambda f: f.signal.incidents, count),
            chart("Alerts per incident", lambda f: f.signal.alerts_per_incident, ratio),
        ],
        "response": [
            chart("Time to acknowledge (p50)", lambda f: f.response.mtta_s_p50, duration),
            chart("Time to resolve (p50)", lambda f: f.response.mttr_s_p50, duration),
        ],
        "business": [
            chart(
                "Minutes degraded",
                lambda f: getattr(f, "minutes_degraded", None),
                minutes,
            ),
            chart("Revenue at risk", lambda f: f.business.revenue_at_risk_total, money),
        ],
    }
    return StatsPage(query.window, WINDOWS, stats, names, charts, refused)


def count(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def plain(value: float) -> str:
    """A figure as people write it: its digits (the API's rounding, at most 3 decimals),
    thousands separated, never in scientific notation (``:g`` writes -9999900 as
    -9.9999e+06)."""
    text = f"{value:,.3f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def ratio(value: float | None) -> str:
    return "—" if value is None else plain(value)


def percent(value: float | None) -> str:
    return "—" if value is None else f"{plain(value)}%"


def money(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def minutes(value: float | None) -> str:
    return "—" if value is None else f"{plain(value)} min"


def slo_status(attainment: float, objective: float | None) -> str:
    """Whether the journey met its objective over the window; ``—`` without one."""
    if objective is None:
        return "—"
    return "met" if attainment >= objective else "missed"


def duration(value: float | None) -> str:
    """Seconds for people: ``45 s``, ``12 min``, ``3.5 h``; ``—`` without data."""
    if value is None:
        return "—"
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"
