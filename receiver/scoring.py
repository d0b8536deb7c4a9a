"""Business impact score (0–100) and priority of an incident. Pure.

score = 100 × journey weight × (stage weight × severity weight × tier weight of the worst
firing alert) × blast radius × KPI factor

Every factor is in [0, 1] and none can fall when an incident gets worse: a new firing alert
can only raise the worst-alert product, services and regions are only ever added, so the
score is monotonic. The KPI factor stays neutral (1.0) and says so until KPI enrichment
provides a deviation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from receiver.store.records import ScoreFactor, StoredAlert

# Blast radius: one service in one region starts at 0.7; each further service adds 0.1 and
# each further region 0.15, up to 1.0. A wider storm never scores lower.
_BLAST_BASE = 0.7
_BLAST_PER_SERVICE = 0.1
_BLAST_PER_REGION = 0.15


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


@dataclass(frozen=True, slots=True)
class Impact:
    score: float
    priority: str
    factors: tuple[ScoreFactor, ...]


def priority_for(score: float, thresholds: Mapping[str, float]) -> str:
    for name in ("P1", "P2", "P3", "P4"):
        if score >= thresholds[name]:
            return name
    return "P5"


def assess(
    journey: JourneyWeights,
    alerts: Sequence[StoredAlert],
    services: int,
    regions: int,
    rules: ScoringRules,
) -> Impact:
    firing = [a for a in alerts if a.status == "firing"]
    # A resolved incident keeps the score of what it was, not zero.
    considered = firing or list(alerts)

    def parts(a: StoredAlert) -> tuple[float, float, float]:
        stage = journey.stage_weights.get(a.stage, 1.0) if a.stage else 1.0
        severity = rules.severity_weights.get(a.severity, rules.default_severity_weight)
        tier_value = a.labels.get(rules.tier_label)
        tier = (
            rules.tier_weights.get(tier_value, rules.default_tier_weight)
            if tier_value is not None
            else rules.default_tier_weight
        )
        return stage, severity, tier

    def product(a: StoredAlert) -> float:
        s, v, t = parts(a)
        return s * v * t

    worst = max(considered, key=lambda a: (product(a), a.fp)) if considered else None
    # No alert, no impact: an empty incident must not score as if every factor were neutral.
    stage_w, severity_w, tier_w = parts(worst) if worst else (0.0, 0.0, 0.0)
    blast = min(
        1.0,
        _BLAST_BASE
        + _BLAST_PER_SERVICE * max(services - 1, 0)
        + _BLAST_PER_REGION * max(regions - 1, 0),
    )
    kpi = 1.0
    factors = (
        ScoreFactor(
            name="journey",
            value=journey.weight,
            reason=f"journey {journey.id} ({journey.name}) has weight {journey.weight:g}",
        ),
        ScoreFactor(
            name="stage",
            value=stage_w,
            reason=(
                f"worst alert is in stage {worst.stage} (weight {stage_w:g})"
                if worst and worst.stage
                else ("no stage matched: neutral" if worst else "no alerts")
            ),
        ),
        ScoreFactor(
            name="severity",
            value=severity_w,
            reason=(
                f"worst alert {worst.labels.get('alertname', worst.fp)} on {worst.service} "
                f"has severity {worst.severity} (weight {severity_w:g})"
                if worst
                else "no alerts"
            ),
        ),
        ScoreFactor(
            name="tier",
            value=tier_w,
            reason=(
                f"customer tier {worst.labels[rules.tier_label]} (weight {tier_w:g})"
                if worst and rules.tier_label in worst.labels
                else (
                    f"no {rules.tier_label} label: default weight {tier_w:g}"
                    if worst
                    else "no alerts"
                )
            ),
        ),
        ScoreFactor(
            name="blast_radius",
            value=round(blast, 4),
            reason=f"{services} service(s) in {regions or 1} region(s)",
        ),
        ScoreFactor(
            name="kpi",
            value=kpi,
            reason="not computed: no KPI enrichment in this version, neutral",
        ),
    )
    raw = 100.0 * journey.weight * stage_w * severity_w * tier_w * blast * kpi
    score = round(min(max(raw, 0.0), 100.0), 1)
    return Impact(score=score, priority=priority_for(score, rules.thresholds), factors=factors)
