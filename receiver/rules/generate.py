"""``journeys.yaml`` → Prometheus rule groups: one group per journey, for each KPI

=================================  ==========================================================
``journey:kpi``                    the KPI now, one series per label set it keeps apart
``journey:kpi:weeks_ago``          the KPI at this moment 1, 2, 3 and 4 weeks ago (label
                                   ``weeks_ago``), read from the raw series through an offset
                                   subquery, so the baseline works on the first day and
                                   follows an edited query at once
``journey:kpi:baseline``           their median, only when at least 3 of the 4 weeks have
                                   data: one bad week (an outage, a sale) cannot move it
``journey:kpi:lower_band``         baseline × (1 − deviation), baseline × (1 + deviation)
``journey:kpi:upper_band``
``journey:kpi:traffic``            a ``bad_when: down`` ratio's traffic now (its denominator):
                                   at zero the ratio is NaN, and the alert takes that as past
                                   the band
``journey:kpi:traffic_baseline``   the median of the KPI's traffic 1–4 weeks ago (the usual
                                   traffic at this hour), and its mean over the last day
``journey:kpi:traffic_typical``
``JourneyKpiDegraded`` (alert)     the KPI past its band in its bad direction for ``for``,
                                   while the usual traffic at this hour is at least
                                   ``min_traffic_ratio`` of the day's mean
=================================  ==========================================================

Traffic is the denominator of a ratio KPI (``completed / started`` → started; also scaled or
complemented by a number, ``100 * a / b``, ``1 - e / r``), else the KPI
itself when ``bad_when: down`` (orders per minute); a ``bad_when: up`` KPI that is not a ratio
(a latency, a backlog) has no traffic to read and no guard. The guard looks at the usual
traffic, not the current one: an outage that takes traffic to zero must still page.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from receiver.config import Journey, JourneysConfig, Kpi
from receiver.enrich import EnrichmentError
from receiver.enrich.promql import substitute
from receiver.rules.promql import (
    QueryShapeError,
    is_scalar,
    per_group,
    top_level_denominator,
    without_comments,
)
from receiver.rules.routing import UnroutableError, route

ALERTNAME = "JourneyKpiDegraded"
WEEKS = (1, 2, 3, 4)
MIN_WEEKS = 3
"""A median of 3 or more weeks is robust to one bad week; with fewer there is no baseline."""


class RulesError(ValueError):
    """A KPI that cannot become rules; the text names the journey, the KPI and the reason."""


@dataclass(frozen=True, slots=True)
class RuleOptions:
    """Settings of every generated alert (``journey-receiver rules`` flags)."""

    deviation_pct: float = 30.0
    """How far past the baseline, in percent, in the KPI's bad direction pages."""
    for_: str = "10m"
    """How long the KPI must stay past its band (Prometheus ``for:``)."""
    min_traffic_ratio: float = 0.25
    """No page when the usual traffic at this hour is below this share of the day's mean."""
    severity: str = "critical"
    interval: str | None = None
    """``interval`` of each rule group; None = Prometheus' global evaluation_interval."""

    def __post_init__(self) -> None:
        if not 0 < self.deviation_pct < 100:
            raise ValueError("deviation_pct must be between 0 and 100 (exclusive)")
        if not (math.isfinite(self.min_traffic_ratio) and self.min_traffic_ratio >= 0):
            raise ValueError("min_traffic_ratio must be a finite number, not negative")
        for value in (self.for_, self.interval):
            if value is not None and not _PROM_DURATION.fullmatch(value):
                raise ValueError(f"{value!r} is not a Prometheus duration like 10m or 1h30m")


# Prometheus' model.ParseDuration: each unit at most once, largest first ("1h30m", never
# "30m1h"), or a bare 0.
_PROM_DURATION = re.compile(
    r"0|(?=[0-9])" + "".join(f"(?:[0-9]+{unit})?" for unit in ("y", "w", "d", "h", "m", "s", "ms"))
)


def rules_document(
    journeys: JourneysConfig,
    default_group_by: Sequence[str] = ("env", "region"),
    options: RuleOptions | None = None,
) -> dict[str, Any]:
    """``{"groups": [...]}`` for every journey with KPIs; raises ``RulesError`` naming the
    first KPI that cannot be turned into rules."""
    options = options or RuleOptions()
    groups: list[dict[str, Any]] = []
    for index, journey in enumerate(journeys.journeys):
        rules: list[dict[str, Any]] = []
        for kpi_index, kpi in enumerate(journey.kpis):
            where = f"journeys[{index}] {journey.id}, kpis[{kpi_index}] {kpi.name}"
            try:
                rules.extend(_kpi_rules(journeys, journey, kpi, default_group_by, options))
            except (QueryShapeError, UnroutableError, EnrichmentError) as exc:
                raise RulesError(f"{where}: {exc}") from None
        if rules:
            group: dict[str, Any] = {"name": f"journey-receiver:{journey.id}"}
            if options.interval is not None:
                group["interval"] = options.interval
            group["rules"] = rules
            groups.append(group)
    return {"groups": groups}


def _kpi_rules(
    journeys: JourneysConfig,
    journey: Journey,
    kpi: Kpi,
    default_group_by: Sequence[str],
    options: RuleOptions,
) -> list[dict[str, Any]]:
    own = {
        "alertname": ALERTNAME,
        "journey": journey.id,
        "kpi": kpi.name,
        "severity": options.severity,
    }
    written = without_comments(kpi.query)
    kept_apart = per_group(written, {}).labels
    group_by = journey.group_by if journey.group_by is not None else default_group_by
    stray = [label for label in kept_apart if label not in group_by]
    if stray:
        # As `journey-receiver check` says: an incident would not have the label, so an
        # alert split by it would fall into one incident anyway.
        raise QueryShapeError(
            f"uses ${', $'.join(stray)}, which is not among the journey's group_by labels "
            f"({', '.join(group_by) or 'none'})"
        )
    way = route(journeys, journey, own, kept_apart, default_group_by)
    # Pinned, no placeholder is left; a `$$` (label_replace's `$$1`) is then read as the
    # receiver reads it, a literal `$`, so that the rule asks what the KPI asks.
    query = substitute(per_group(written, way.pinned).query, {})
    if is_scalar(query):
        # One number, no series (the enricher reads it so): a rule records a vector, and
        # the weeks ago and the day's mean are subqueries, which take no scalar.
        query = f"vector({query})"
    denominator = top_level_denominator(query)
    traffic = denominator if denominator is not None else query if kpi.bad_when == "down" else None
    ids = {"journey": journey.id, "kpi": kpi.name}
    select = f'{{journey="{_esc(journey.id)}", kpi="{_esc(kpi.name)}"}}'
    factor = options.deviation_pct / 100
    rules: list[dict[str, Any]] = [
        {"record": "journey:kpi", "expr": query, "labels": ids},
        {"record": "journey:kpi:weeks_ago", "expr": _weeks_ago(query), "labels": ids},
        {
            "record": "journey:kpi:baseline",
            "expr": (
                f"quantile without (weeks_ago) (0.5, journey:kpi:weeks_ago{select})\n"
                f"  and count without (weeks_ago) (journey:kpi:weeks_ago{select}) >= {MIN_WEEKS}"
            ),
            "labels": ids,
        },
        {
            "record": "journey:kpi:lower_band",
            "expr": f"journey:kpi:baseline{select} * {_num(1 - factor)}",
            "labels": ids,
        },
        {
            "record": "journey:kpi:upper_band",
            "expr": f"journey:kpi:baseline{select} * {_num(1 + factor)}",
            "labels": ids,
        },
    ]
    worse = "<" if kpi.bad_when == "down" else ">"
    band = "lower_band" if kpi.bad_when == "down" else "upper_band"
    condition = f"journey:kpi{select} {worse} journey:kpi:{band}{select}"
    if denominator is not None and kpi.bad_when == "down":
        # Every request gone makes the ratio 0/0, NaN, which is past no band: the outage
        # that matters most would never page. No traffic at all is past it.
        rules.append({"record": "journey:kpi:traffic", "expr": denominator, "labels": ids})
        condition = f"(\n  {condition}\n  or journey:kpi:traffic{select} == 0\n)"
    if traffic is not None:
        rules += [
            {
                "record": "journey:kpi:traffic_baseline",
                # The KPI as its own traffic: its weeks are recorded already.
                "expr": (
                    f"quantile without (weeks_ago) (0.5, journey:kpi:weeks_ago{select})"
                    if traffic == query
                    else f"quantile without (weeks_ago) (0.5,\n  {_weeks_ago(traffic)}\n)"
                ),
                "labels": ids,
            },
            {
                "record": "journey:kpi:traffic_typical",
                "expr": f"avg_over_time(({traffic})[1d:15m])",
                "labels": ids,
            },
        ]
        # Usual traffic at this hour, not only no less than a share of the day's: a region
        # that never had any (counters at 0 in a standby one) has nothing to fall from.
        condition += (
            f"\nand journey:kpi:traffic_baseline{select}"
            f"\n  >= {_num(options.min_traffic_ratio)} * journey:kpi:traffic_typical{select}"
            f"\nand journey:kpi:traffic_baseline{select} > 0"
        )
    # Alert labels are Go templates too (annotations are): each value is kept as written.
    labels = {k: _text(v) for k, v in way.labels.items() if k != "alertname"}
    rules.append(
        {
            "alert": ALERTNAME,
            "expr": condition,
            "for": options.for_,
            "labels": dict(sorted(labels.items())),
            "annotations": _annotations(journey, kpi, kept_apart, way.stage.id, options),
        }
    )
    return rules


def _annotations(
    journey: Journey, kpi: Kpi, kept_apart: Sequence[str], stage: str, options: RuleOptions
) -> dict[str, str]:
    where = " ".join(f"{label}={{{{ $labels.{label} }}}}" for label in kept_apart)
    direction = "below" if kpi.bad_when == "down" else "above"
    band = "lower_band" if kpi.bad_when == "down" else "upper_band"
    pct = _num(options.deviation_pct)
    name, unit = _text(kpi.name), _text(kpi.unit)
    value = '{{ $value | printf "%.4g" }}'
    return {
        "summary": (
            f"{journey.id}: {name} is {value} {unit}, more than {pct}% {direction} its usual "
            f"level at this hour" + (f" ({where})" if where else "")
        ),
        "description": (
            f"{name} of journey {journey.id} ({_text(journey.name)}) has been past "
            f"journey:kpi:{band} (the median of the same hour over the last {len(WEEKS)} "
            f"weeks, ± {pct}%) for {options.for_}; it lands in the journey's incident through "
            f"stage {stage}."
        ),
    }


def _weeks_ago(query: str) -> str:
    # An offset subquery of the raw query: one step of 1m, aligned like every subquery,
    # so the value is at most a minute older than exactly k weeks ago.
    parts = [
        f"label_replace(last_over_time(({query})[1m:1m] offset {weeks}w), "
        f'"weeks_ago", "{weeks}", "", "")'
        for weeks in WEEKS
    ]
    return "\n  or ".join(parts)


def to_yaml(document: dict[str, Any]) -> str:
    """The document as YAML: multi-line expressions as ``|`` blocks, no anchors."""
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _block_strings(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _block_strings)


def _text(value: str) -> str:
    """Journey text in an alert's labels and annotations, where Prometheus runs Go
    templates: a ``{{`` of a name is written as the template that prints it."""
    return value.replace("{{", '{{ "{{" }}')


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    return f"{value:.6g}"
