"""``journey-receiver replay --context``: each decision reads the journey's KPIs at its own
virtual time, from a real Prometheus holding both the storm's ``ALERTS`` (``storm.py``)
and the checkout KPI's history, backfilled with promtool.

The history (one sample a minute, 07:40–09:40Z on the storm's day and a week before):
``checkout_started_total`` +100/min in eu and us; ``checkout_completed_total`` +50/min,
except in eu on the storm's day from 07:50Z, +10/min. So ``conversion`` (completed over
started, 5m rates) is 0.1 in eu during the storm against 0.5 a week before (-80%, bad) and
0.5 against 0.5 in us. All of it lies months before the replay runs: only a query at the
decision's virtual time finds it.

Scores (``docs/scoring.md``): checkout/eu (A, B, C: 3 services, critical) is 100 × 0.9
blast × KPI factor — 0.85 "no KPI measured" without context: 76.5, P2; 1.0 with conversion
-80%: 90, P1. checkout/us (D: cart-api, warning) is 100 × 0.6 × 0.5 × 0.8 × KPI factor —
20.4, P4, without; 18, P5, with its conversion at its baseline (0.75).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from receiver.cli import main
from tests.replay.storm import T0, openmetrics, replay_argv
from tests.support.prometheus import prometheus_server

DATA = Path(__file__).resolve().parent / "data"
WEEK_S = 7 * 86400
DROP_FROM_S = -10 * 60


def kpi_history() -> str:
    """The checkout counters, in OpenMetrics (without the trailing ``# EOF``)."""
    t0 = int(T0.timestamp())
    lines: list[str] = []
    for family, per_minute in (("checkout_started", 100), ("checkout_completed", 50)):
        lines.append(f"# TYPE {family} counter")
        for region in ("eu", "us"):
            for week_start in (t0 - WEEK_S, t0):
                total = 10_000
                for minute in range(-20, 101):
                    at = week_start + 60 * minute
                    dropped = (
                        family == "checkout_completed"
                        and region == "eu"
                        and week_start == t0
                        and at - t0 >= DROP_FROM_S
                    )
                    total += 10 if dropped else per_minute
                    labels = f'env="prod",region="{region}"'
                    lines.append(f"{family}_total{{{labels}}} {total} {at}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("replay-context")
    history = workdir / "history.om"
    history.write_text(openmetrics().removesuffix("# EOF\n") + kpi_history() + "# EOF\n")
    with prometheus_server(workdir, history) as url:
        yield url


NO_SERIES = "KPI search_success_rate (now and at the baseline): the query returned no series"


def replay(url: str, *extra: str) -> list[str]:
    return replay_argv(url, "--journeys", str(DATA / "journeys-kpi.yaml"), *extra)


def as_json(capsys: pytest.CaptureFixture[str], url: str, *extra: str) -> dict[str, Any]:
    assert main(replay(url, "--json", *extra)) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


def test_with_context_a_kpi_gone_bad_raises_the_incident_and_a_healthy_one_lowers_it(
    prometheus: str, capsys: pytest.CaptureFixture[str]
) -> None:
    without = as_json(capsys, prometheus)
    assert "context" not in without
    assert without["journeys"]["checkout"]["by_priority"] == {
        "P1": 0, "P2": 1, "P3": 0, "P4": 1, "P5": 0
    }  # fmt: skip

    with_context = as_json(capsys, prometheus, "--context")
    # checkout/eu: conversion -80% vs last week → P1; checkout/us at its baseline → P5.
    assert with_context["journeys"]["checkout"]["by_priority"] == {
        "P1": 1, "P2": 0, "P3": 0, "P4": 0, "P5": 1
    }  # fmt: skip
    # search's KPI has no series: a note on its incident, and it scores as without context.
    assert with_context["context"] == {
        "told_with_bad_kpi": 1,
        "bad_kpis": {"checkout/conversion": 1},
        "notes": {NO_SERIES: 1},
    }
    # Only priorities moved: the same alerts made the same incidents.
    for figures in (without, with_context):
        figures.pop("context", None)
        for journey in figures["journeys"].values():
            journey.pop("by_priority")
    assert with_context == without


def test_the_text_report_names_the_kpi_gone_bad_and_the_notes(
    prometheus: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(replay(prometheus, "--context")) == 0
    assert capsys.readouterr().out.endswith(
        "total             3      1   1   0   0   0   2       6          6.0      1          5\n"
        "\n"
        "context: 1 of 3 incidents told with a KPI off its baseline (checkout/conversion ×1)\n"
        f"  1× {NO_SERIES}\n"
    )
