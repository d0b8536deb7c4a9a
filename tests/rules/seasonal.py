"""Four weeks of checkout history with a weekly and a daily pattern, as counters.

One scenario feeds both the shipped ``promtool test rules`` file and the real Prometheus
(OpenMetrics backfill ending now). Time is in minutes from a midnight; "now" is
``NOW`` = day 28, 03:30 — the same time of the week as days 0, 7, 14 and 21.

- eu, prod: 50 checkouts started a minute, 30% complete; two weeks ago at this hour a bad
  week (10%); since 02:50 today 10% — a drop: fires (the bad week does not move the median).
- us, prod: every week from 02:30 to 04:30 on this day only 12% complete (a weekly batch
  window), today too — a seasonal dip: silent.
- ap, prod: at night (00:00-06:00) only 5 checkouts a minute, 50 by day; since 02:50 none
  complete — low traffic: the usual traffic at this hour is 13% of the day's mean, silent.
- eu, staging: since 02:50 none complete — silent, the stage matches only env="prod".
- sa, prod: as eu without its bad week, but since 02:50 nothing at all, neither started nor
  completed (an outage): the ratio is 0/0, no number, and it fires all the same.
- dr, prod: a standby region whose counters were set to 0 up front (as Prometheus advises)
  and never moved: no traffic now, none ever: nothing fell, silent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

DAY = 1440
WEEK = 7 * DAY
NOW = 4 * WEEK + 3 * 60 + 30
DROP = NOW - 40
"""Minute the drop (eu), the missing completions (ap, staging) start."""


def _dip(minute: int) -> bool:
    """02:30-04:30 on the day of the week of ``NOW``."""
    return minute // DAY % 7 == 0 and 150 <= minute % DAY < 270


def _night(minute: int) -> bool:
    return minute % DAY < 360


@dataclass(frozen=True)
class Region:
    labels: str
    started: Callable[[int], float]
    completed: Callable[[int], float]


def _eu_completed(m: int) -> float:
    bad_week = _dip(m) and m // WEEK == 2
    return 5.0 if bad_week or m >= DROP else 15.0


REGIONS = (
    Region('env="prod",region="eu"', lambda m: 50.0, _eu_completed),
    Region('env="prod",region="us"', lambda m: 50.0, lambda m: 6.0 if _dip(m) else 15.0),
    Region(
        'env="prod",region="ap"',
        lambda m: 5.0 if _night(m) else 50.0,
        lambda m: 0.0 if m >= DROP else (1.5 if _night(m) else 15.0),
    ),
    Region('env="staging",region="eu"', lambda m: 50.0, lambda m: 0.0 if m >= DROP else 15.0),
    Region(
        'env="prod",region="sa"',
        lambda m: 0.0 if m >= DROP else 50.0,
        lambda m: 0.0 if m >= DROP else 15.0,
    ),
    Region('env="prod",region="dr"', lambda m: 0.0, lambda m: 0.0),
)
SERIES = (("checkout_started_total", "started"), ("checkout_completed_total", "completed"))


def counters(end: int = NOW) -> Iterator[tuple[str, str, list[float]]]:
    """(metric, labels, value at each minute 0..end) for every series."""
    for region in REGIONS:
        for metric, which in SERIES:
            step = region.started if which == "started" else region.completed
            values = [0.0]
            for minute in range(1, end + 1):
                values.append(values[-1] + step(minute))
            yield metric, region.labels, values


def expanding(values: list[float]) -> str:
    """``values`` in promtool's expanding notation: ``a+bxn`` for each run of equal steps."""
    parts: list[str] = []
    start = 0
    while start < len(values):
        end = start
        step = values[start + 1] - values[start] if start + 1 < len(values) else 0.0
        while end + 1 < len(values) and values[end + 1] - values[end] == step:
            end += 1
        parts.append(f"{_num(values[start])}+{_num(step)}x{end - start}")
        start = end + 1
    return " ".join(parts)


def _num(value: float) -> str:
    # Exact: the counters pass a million, where %g's six digits would drop the halves.
    return f"{value:.15g}"


def openmetrics(now_seconds: int) -> str:
    """The scenario as OpenMetrics, with ``NOW`` at ``now_seconds`` (a minute boundary)."""
    origin = now_seconds - NOW * 60
    families: dict[str, list[str]] = {}
    for metric, labels, values in counters():
        samples = families.setdefault(metric, [])
        samples.extend(
            f"{metric}{{{labels}}} {_num(value)} {origin + minute * 60}"
            for minute, value in enumerate(values)
        )
    lines: list[str] = []
    for metric, samples in families.items():
        lines.append(f"# TYPE {metric.removesuffix('_total')} counter")
        lines.extend(samples)
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


PROMTOOL_HEADER = """\
# promtool test rules for the rules `journey-receiver rules` makes of journeys.yaml (here
# tests/rules/data/journeys.yaml, rendered into kpi-rules.yaml next to this file):
#
#   cd tests/rules/data
#   journey-receiver rules --journeys journeys.yaml > kpi-rules.yaml
#   promtool test rules kpi-rules.test.yaml
#
# Written by tests/rules/seasonal.py (the scenario is described there; a test keeps this file
# in step with it). Four weeks of history at one sample a minute; "now" is day 28, 03:30:
# eu drops at 02:50 (a bad week two weeks ago does not move the median) and fires once the
# drop has lasted `for: 10m`; us dips as it does every week at this hour and stays silent;
# ap loses every completion at night, when its usual traffic is too low to judge; staging
# is not a stage of the journey; sa loses all its traffic at 02:50 (0/0: no ratio at all)
# and fires as eu does; dr, a standby region, never had any traffic and stays silent.
"""


def _expected_alert(region: str, value: str) -> str:
    """The firing alert of the prod ``region`` whose KPI reads ``value``."""
    return f"""\
          - exp_labels:
              journey: checkout
              kpi: conversion
              service: payment-service
              severity: critical
              env: prod
              region: {region}
            exp_annotations:
              summary: >-
                checkout: conversion is {value} ratio, more than 30% below its usual level at
                this hour (env=prod region={region})
              description: >-
                conversion of journey checkout (Checkout) has been past
                journey:kpi:lower_band (the median of the same hour over the last 4 weeks,
                ± 30%) for 10m; it lands in the journey's incident through stage payment.
"""


def promtool_test_file() -> str:
    series = "".join(
        f"      - series: '{metric}{{{labels}}}'\n        values: '{expanding(values)}'\n"
        for metric, labels, values in counters()
    )
    return (
        PROMTOOL_HEADER
        + """rule_files: [kpi-rules.yaml]
# promtool evaluates every rule from 0 to the last eval_time, four weeks, and each
# evaluation reads four weeks back: every 30m keeps the file under a few seconds, and
# `for: 10m` still needs two evaluations in a row.
evaluation_interval: 30m
tests:
  - interval: 1m
    input_series:
"""
        + series
        + """    alert_rule_test:
      # 03:00, the first evaluation to see eu below its band: pending, not yet firing.
      - eval_time: 28d3h
        alertname: JourneyKpiDegraded
        exp_alerts: []
      - eval_time: 28d3h30m
        alertname: JourneyKpiDegraded
        exp_alerts:
"""
        + _expected_alert("eu", "0.1")
        + _expected_alert("sa", "0")
        + """    promql_expr_test:
      # The baselines: eu keeps 30% despite its bad week, us has its weekly 12%; dr has
      # none (0/0 every week: no number, left out here).
      - expr: round(journey:kpi:baseline > -1, 0.001)
        eval_time: 28d3h30m
        exp_samples:
          - labels: '{env="prod", journey="checkout", kpi="conversion", region="ap"}'
            value: 0.3
          - labels: '{env="prod", journey="checkout", kpi="conversion", region="eu"}'
            value: 0.3
          - labels: '{env="prod", journey="checkout", kpi="conversion", region="sa"}'
            value: 0.3
          - labels: '{env="prod", journey="checkout", kpi="conversion", region="us"}'
            value: 0.12
      # ap is below its band as well; only the traffic guard keeps it silent.
      - expr: journey:kpi < journey:kpi:lower_band
        eval_time: 28d3h30m
        exp_samples:
          - labels: 'journey:kpi{env="prod", journey="checkout", kpi="conversion", region="ap"}'
            value: 0
          - labels: 'journey:kpi{env="prod", journey="checkout", kpi="conversion", region="eu"}'
            value: 0.1
      # ... because its usual traffic at this hour, 5 checkouts a minute, is below 25% of
      # the day's mean (38.75 a minute).
      - expr: round(60 * (journey:kpi:traffic_baseline < 0.25 * journey:kpi:traffic_typical))
        eval_time: 28d3h30m
        exp_samples:
          - labels: '{env="prod", journey="checkout", kpi="conversion", region="ap"}'
            value: 5
"""
    )
