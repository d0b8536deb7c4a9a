"""Business impact score (0–100) and priority of an incident. Pure.

score = 100 × journey weight × (stage weight × severity weight × tier weight of the worst
firing alerts) × blast radius × KPI factor

Every factor is in [0, 1] and none can fall when an incident gets worse: a new firing alert
can only raise the worst-class product, services and regions are only ever added, so the
score is monotonic. It reads only the incident's state (firing alerts counted per class),
never the alerts themselves, so it costs the same for 5 alerts or 50,000. The KPI factor
comes from the last KPI measurement stored on the incident. docs/scoring.md has the
formula with worked examples; tests/test_scoring_doc.py checks them.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from receiver.store.records import IncidentState, KpiRecord, ScoreFactor

# Blast radius: one service in one region is 0.8; each further service adds 0.05 and each
# further region 0.1, up to 1.0. A wider storm never scores lower.
_BLAST_BASE = 0.8
_BLAST_PER_SERVICE = 0.05
_BLAST_PER_REGION = 0.1
# KPI factor: 0.75 with every KPI at its baseline, rising linearly to 1.0 when the worst KPI
# is 50% or more off in its bad direction; 0.85 (where a 20% drop would sit) when the
# journey's KPIs could not be measured; 0.75, neutral, for a journey that has none (it can
# show no harm, so it must not outscore one whose KPIs are healthy). See docs/scoring.md.
KPI_HEALTHY = 0.75
KPI_UNKNOWN = 0.85
KPI_FULL_AT_PCT = 50.0


@dataclass(frozen=True, slots=True)
class ScoringRules:
    """The scoring part of receiver.yaml, in the shape scoring needs."""

    thresholds: Mapping[str, float]
    severity_weights: Mapping[str, float]
    default_severity_weight: float
    tier_label: str
    tier_weights: Mapping[str, float]
    default_tier_weight: float


@dataclass(frozen=True, slots=True)
class JourneyWeights:
    id: str
    name: str
    weight: float
    stage_weights: Mapping[str, float]
    has_kpis: bool = False


@dataclass(frozen=True, slots=True)
class Impact:
    score: float
    priority: str
    factors: tuple[ScoreFactor, ...]
    # The weight of each of the incident's stages as scored now (kept on the incident:
    # ``IncidentState.stage_weights``).
    stage_weights: Mapping[str, float] = field(default_factory=dict)


def priority_for(score: float, thresholds: Mapping[str, float]) -> str:
    for name in ("P1", "P2", "P3", "P4"):
        if score >= thresholds[name]:
            return name
    return "P5"


def measured(kpi: KpiRecord) -> bool:
    """Whether the KPI was read now and at its baseline. One with a baseline of zero has no
    percentage, yet is measured: errors none last week and none now is healthy."""
    return kpi.deviation_pct is not None or (kpi.value is not None and kpi.baseline is not None)


def deviation(kpi: KpiRecord) -> float | None:
    """Its signed deviation in percent; from a baseline of zero, 0 when it did not move and
    an infinite one in the direction it moved (errors from none to 30: +inf); None when not
    measured."""
    if kpi.deviation_pct is not None or not measured(kpi):
        return kpi.deviation_pct
    assert kpi.value is not None and kpi.baseline is not None
    return 0.0 if kpi.value == kpi.baseline else math.copysign(math.inf, kpi.value - kpi.baseline)


def badness(kpi: KpiRecord) -> float:
    """How far, in percent, the KPI has moved in its bad direction (0 if not at all). One
    that went bad from a baseline of zero (errors from none to 30 a minute) has no
    percentage and is as bad as it gets: infinity."""
    if kpi.deviation_pct is None:
        return math.inf if kpi.bad else 0.0
    return max(0.0, -kpi.deviation_pct if kpi.bad_when == "down" else kpi.deviation_pct)


def kpi_factor(kpis: Sequence[KpiRecord], configured: bool) -> tuple[float, str]:
    if not configured:
        return KPI_HEALTHY, f"the journey has no KPIs: neutral, as if healthy: {KPI_HEALTHY:g}"
    read = [k for k in kpis if measured(k)]
    if not read:
        return KPI_UNKNOWN, f"no KPI measured (no data, or none reachable): {KPI_UNKNOWN:g}"
    worst = max(read, key=lambda k: (badness(k), k.name))
    value = round(KPI_HEALTHY + (1 - KPI_HEALTHY) * min(1.0, badness(worst) / KPI_FULL_AT_PCT), 4)
    if badness(worst) == 0:
        return value, f"every KPI at or better than its baseline: {value:g}"
    moved = (
        f"{worst.deviation_pct:+.1f}%"
        if worst.deviation_pct is not None
        else f"{worst.baseline:g} → {worst.value:g} (from a zero baseline)"
    )
    return value, f"{worst.name} {moved} vs baseline (bad when {worst.bad_when}): {value:g}"


def impact_class(stage: str | None, severity: str, tier: str | None, rules: ScoringRules) -> str:
    """The class an alert is counted under: what its score depends on, and no more.

    Severities and tiers the rules do not weigh fold into one class, so untrusted label
    values cannot grow the counts: "other", as every version has written it (replicas of
    two versions side by side read each other's counts), or ``null`` where the rules weigh
    a severity or tier of that name; an absent tier is "".
    """
    sev = severity if severity in rules.severity_weights else _unlisted(rules.severity_weights)
    known_tier = tier if tier in rules.tier_weights else _unlisted(rules.tier_weights)
    return _class_key(stage or "", sev, "" if tier is None else known_tier)


def _unlisted(weights: Mapping[str, float]) -> str | None:
    return None if _UNLISTED in weights else _UNLISTED


@functools.lru_cache(maxsize=1024)  # its arguments come from the config: a bounded set
def _class_key(stage: str, severity: str | None, tier: str | None) -> str:
    return json.dumps([stage, severity, tier])


# An unlisted severity or tier, as written unless the rules weigh one of that name.
_UNLISTED = "other"


def assess(journey: JourneyWeights, state: IncidentState, rules: ScoringRules) -> Impact:
    """The incident's impact from the firing alerts' classes in its state; an incident
    with nothing firing keeps the score it had (resolved is not harmless in hindsight)."""
    classes = [(_read_class(c, rules), n) for c, n in state.firing_classes.items() if n > 0]
    if not classes and state.score is not None and state.priority is not None:
        return kept(state)
    # A stage the journey no longer has (a reload renamed or removed it) weighs what it did
    # when the incident was last scored; one never weighed, as no stage at all.
    stage_weights = {
        s: w
        for s in sorted({*state.stages, *(cls[0] for cls, _ in classes)} - {""})
        if (w := journey.stage_weights.get(s, state.stage_weights.get(s))) is not None
    }

    def weights(cls: _Class) -> tuple[float, float, float]:
        stage, sev, tier = cls
        return (
            stage_weights.get(stage, 1.0) if stage else 1.0,
            rules.default_severity_weight
            if sev is None
            else rules.severity_weights.get(sev, rules.default_severity_weight),
            rules.default_tier_weight
            if tier is None
            else rules.tier_weights.get(tier, rules.default_tier_weight),
        )

    def product(item: tuple[_Class, int]) -> tuple[float, str]:
        s, v, t = weights(item[0])
        return (s * v * t, json.dumps(item[0]))  # ties: by the class, None and all

    worst = max(classes, key=product)[0] if classes else None
    # No alert, no impact: an empty incident must not score as if every factor were neutral.
    stage_w, severity_w, tier_w = weights(worst) if worst else (0.0, 0.0, 0.0)
    services, regions = len(state.shown_services), len(state.regions)
    blast = min(
        1.0,
        _BLAST_BASE
        + _BLAST_PER_SERVICE * max(services - 1, 0)
        + _BLAST_PER_REGION * max(regions - 1, 0),
    )
    kpi, kpi_why = kpi_factor(state.kpis, journey.has_kpis)
    firing = sum(n for _, n in classes)
    if worst is None:
        stage_why = severity_why = tier_why = "no firing alerts"
    else:
        stage, sev, tier = worst
        stage_why = (
            f"worst firing alerts are in stage {stage} (weight {stage_w:g})"
            if stage
            else "no stage matched: neutral"
        )
        if stage and stage not in journey.stage_weights:
            stage_why += (
                ", as when last scored: journeys.yaml no longer has it"
                if stage in stage_weights
                else ": a stage the journey no longer has, neutral"
            )
        severity_why = (
            f"worst severity firing is {sev} (weight {severity_w:g})"
            if sev is not None
            else f"severity not in scoring.severity_weights: default weight {severity_w:g}"
        )
        if tier == "":
            tier_why = f"no {rules.tier_label} label: default weight {tier_w:g}"
        elif tier is None:
            tier_why = f"{rules.tier_label} not in scoring.tier.weights: default weight {tier_w:g}"
        else:
            tier_why = f"customer tier {tier} (weight {tier_w:g})"
    factors = (
        ScoreFactor(
            name="journey",
            value=journey.weight,
            reason=f"journey {journey.id} ({journey.name}) has weight {journey.weight:g}",
        ),
        ScoreFactor(name="stage", value=stage_w, reason=stage_why),
        ScoreFactor(name="severity", value=severity_w, reason=severity_why),
        ScoreFactor(name="tier", value=tier_w, reason=tier_why),
        ScoreFactor(
            name="blast_radius",
            value=round(blast, 4),
            reason=f"{firing} firing alert(s); {services} service(s) in {regions or 1} region(s)",
        ),
        ScoreFactor(name="kpi", value=kpi, reason=kpi_why),
    )
    raw = 100.0 * journey.weight * stage_w * severity_w * tier_w * blast * kpi
    score = round(min(max(raw, 0.0), 100.0), 1)
    return Impact(
        score=score,
        priority=priority_for(score, rules.thresholds),
        factors=factors,
        stage_weights=stage_weights,
    )


_Class = tuple[str, str | None, str | None]


def _read_class(key: str, rules: ScoringRules) -> _Class:
    """An impact class as stored: [stage, severity, tier], unlisted ones None ("other"
    unless the rules weigh one of that name, then ``null``)."""
    stage, sev, tier = json.loads(key)
    return (
        stage,
        None if sev == _UNLISTED and sev not in rules.severity_weights else sev,
        None if tier == _UNLISTED and tier not in rules.tier_weights else tier,
    )


def kept(state: IncidentState) -> Impact:
    """The score the incident was last given (it has one)."""
    assert state.score is not None and state.priority is not None
    return Impact(
        state.score, state.priority, tuple(state.score_breakdown), dict(state.stage_weights)
    )
