"""The impact score: factors in the breakdown, thresholds, and monotonicity, on made-up
weights (tests/test_scoring_doc.py checks docs/scoring.md's examples on the real ones)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.incident import kpi_line, worst_kpi
from receiver.scoring import JourneyWeights, ScoringRules, assess, impact_class, priority_for
from receiver.store.records import IncidentState, KpiRecord

RULES = ScoringRules(
    thresholds={"P1": 80, "P2": 60, "P3": 40, "P4": 20},
    severity_weights={"critical": 1.0, "error": 0.8, "warning": 0.5, "info": 0.2},
    default_severity_weight=0.5,
    tier_label="tier",
    tier_weights={"gold": 1.0, "free": 0.4},
    default_tier_weight=1.0,
)
CHECKOUT = JourneyWeights("checkout", "Checkout", 1.0, {"payment": 1.0, "cart": 0.6}, has_kpis=True)

Firing = tuple[str | None, str, str | None]  # stage, severity, tier of one firing alert


def kpi(deviation: float | None, bad_when: str = "down") -> KpiRecord:
    return KpiRecord.model_validate(
        {"name": "conversion", "deviation_pct": deviation, "unit": "ratio", "bad_when": bad_when}
    )


def state(
    firing: list[Firing],
    services: int = 1,
    regions: int = 1,
    kpis: list[KpiRecord] | None = None,
    rules: ScoringRules = RULES,
) -> IncidentState:
    classes = Counter(impact_class(stage, sev, tier, rules) for stage, sev, tier in firing)
    return IncidentState(
        id="i",
        key="k",
        digest="d",
        journey="j",
        group_labels={},
        status="open",
        created_at=0,
        updated_at=0,
        first_firing_at=0,
        alert_count=len(firing),
        firing_count=len(firing),
        services={f"s{i}": 0 for i in range(services)},
        firing_services={f"s{i}": 1 for i in range(services)} if firing else {},
        regions={f"r{i}": 0 for i in range(regions)},
        firing_classes=dict(classes),
        kpis=kpis or [],
    )


PAYMENT: list[Firing] = [("payment", "critical", None)]


def test_every_factor_is_in_the_breakdown_with_a_reason() -> None:
    impact = assess(CHECKOUT, state([("cart", "warning", "free")], services=2), RULES)
    factors = {f.name: (f.value, f.reason) for f in impact.factors}
    assert factors == {
        "journey": (1.0, "journey checkout (Checkout) has weight 1"),
        "stage": (0.6, "worst firing alerts are in stage cart (weight 0.6)"),
        "severity": (0.5, "worst severity firing is warning (weight 0.5)"),
        "tier": (0.4, "customer tier free (weight 0.4)"),
        "blast_radius": (0.85, "1 firing alert(s); 2 service(s) in 1 region(s)"),
        "kpi": (0.85, "no KPI measured (no data, or none reachable): 0.85"),
    }
    assert impact.score == round(100 * 1.0 * 0.6 * 0.5 * 0.4 * 0.85 * 0.85, 1)


def test_kpi_factor_reads_the_worst_kpi_in_its_bad_direction() -> None:
    latency_up = kpi(40.0, bad_when="up")
    impact = assess(CHECKOUT, state(PAYMENT, kpis=[kpi(-10.0), latency_up]), RULES)
    (factor,) = [f for f in impact.factors if f.name == "kpi"]
    assert (factor.value, factor.reason) == (
        0.95,
        "conversion +40.0% vs baseline (bad when up): 0.95",
    )
    better = assess(CHECKOUT, state(PAYMENT, kpis=[kpi(25.0)]), RULES)
    assert [f.reason for f in better.factors if f.name == "kpi"] == [
        "every KPI at or better than its baseline: 0.75"
    ]


def test_a_kpi_gone_bad_from_a_zero_baseline_is_as_bad_as_it_gets_and_said() -> None:
    # Payment errors: none a minute last week, 30 now. No percentage exists; it is not
    # "not measured", nor healthy beside a healthy KPI.
    errors = KpiRecord.model_validate(
        {"name": "payment_errors", "value": 30.0, "baseline": 0.0, "deviation_pct": None,
         "unit": "errors/min", "bad_when": "up", "bad": True, "vs": "last week"}
    )  # fmt: skip
    for kpis in ([errors], [kpi(2.0), errors]):
        impact = assess(CHECKOUT, state(PAYMENT, kpis=kpis), RULES)
        (factor,) = [f for f in impact.factors if f.name == "kpi"]
        assert (factor.value, factor.reason) == (
            1.0,
            "payment_errors 0 → 30 (from a zero baseline) vs baseline (bad when up): 1",
        )
    told = state(PAYMENT, kpis=[kpi(-5.0), errors])
    assert worst_kpi(told) == errors
    assert kpi_line(errors) == "payment_errors 0 → 30 vs last week (now 30, then 0 errors/min)"
    # None from zero to zero, or a fall from zero where up is bad: no line, no factor.
    flat = errors.model_copy(update={"value": 0.0, "bad": False})
    assert kpi_line(flat) is None and worst_kpi(state(PAYMENT, kpis=[flat])) is None
    # Yet none then and none now was measured: healthy, not "no KPI measured".
    (factor,) = [f for f in assess(CHECKOUT, state(PAYMENT, kpis=[flat]), RULES).factors
                 if f.name == "kpi"]  # fmt: skip
    assert (factor.value, factor.reason) == (0.75, "every KPI at or better than its baseline: 0.75")


def test_a_journey_without_kpis_is_neutral_on_that_factor() -> None:
    without = replace(CHECKOUT, has_kpis=False)
    (factor,) = [f for f in assess(without, state(PAYMENT), RULES).factors if f.name == "kpi"]
    assert (factor.value, factor.reason) == (
        0.75, "the journey has no KPIs: neutral, as if healthy: 0.75"
    )  # fmt: skip
    healthy = assess(CHECKOUT, state(PAYMENT, kpis=[kpi(2.0)]), RULES).score
    unknown = assess(CHECKOUT, state(PAYMENT), RULES).score
    assert assess(without, state(PAYMENT), RULES).score == healthy < unknown


def score(
    journey: JourneyWeights = CHECKOUT,
    firing: Firing = ("payment", "critical", "gold"),
    services: int = 2,
    regions: int = 1,
    deviation: float = -20.0,
) -> float:
    return assess(journey, state([firing], services, regions, [kpi(deviation)]), RULES).score


@pytest.mark.parametrize(
    ("factor", "changed", "ratio"),
    [
        ("journey", {"journey": replace(CHECKOUT, weight=0.5)}, 0.5),
        ("stage", {"firing": ("cart", "critical", "gold")}, 0.6),
        ("severity", {"firing": ("payment", "warning", "gold")}, 0.5),
        ("tier", {"firing": ("payment", "critical", "free")}, 0.4),
        ("blast_radius per service", {"services": 1}, 0.8 / 0.85),
        ("blast_radius per region", {"regions": 2}, 0.95 / 0.85),
        ("kpi", {"deviation": -40.0}, 0.95 / 0.85),
    ],
)
def test_each_factor_moves_the_score_by_exactly_its_weight(
    factor: str, changed: dict[str, Any], ratio: float
) -> None:
    """Removing any term of the product (try it) fails its case here."""
    assert score(**changed) / score() == pytest.approx(ratio, rel=2e-3), factor


def test_an_unlisted_tier_weighs_the_default_even_beside_a_tier_called_other() -> None:
    # "trial" is not listed: it weighs scoring.tier.default, not what a tier named
    # "other" weighs.
    rules = replace(RULES, tier_weights={"enterprise": 1.0, "other": 0.2})
    trial = assess(CHECKOUT, state([("payment", "critical", "trial")], rules=rules), rules)
    assert {f.name: f.value for f in trial.factors}["tier"] == 1.0
    other = assess(CHECKOUT, state([("payment", "critical", "other")], rules=rules), rules)
    tier = {f.name: f for f in other.factors}["tier"]
    assert (tier.value, tier.reason) == (0.2, "customer tier other (weight 0.2)")


def test_an_unlisted_severity_weighs_the_default_even_beside_a_severity_called_other() -> None:
    rules = replace(RULES, severity_weights={"critical": 1.0, "other": 0.1})
    page = assess(CHECKOUT, state([("payment", "page", None)], rules=rules), rules)
    assert {f.name: f.value for f in page.factors}["severity"] == 0.5
    other = assess(CHECKOUT, state([("payment", "other", None)], rules=rules), rules)
    severity = {f.name: f for f in other.factors}["severity"]
    assert (severity.value, severity.reason) == (
        0.1, "worst severity firing is other (weight 0.1)"
    )  # fmt: skip


def test_untrusted_severities_and_tiers_fold_into_other() -> None:
    # One class for every unlisted value: "other", as every version writes it.
    assert impact_class("cart", "EXTREME!!", "whale", RULES) == '["cart", "other", "other"]'
    impact = assess(CHECKOUT, state([("cart", "EXTREME!!", "whale")]), RULES)
    reasons = {f.name: f.reason for f in impact.factors}
    assert reasons["severity"] == "severity not in scoring.severity_weights: default weight 0.5"
    assert reasons["tier"] == "tier not in scoring.tier.weights: default weight 1"


def test_thresholds() -> None:
    th = RULES.thresholds
    assert [priority_for(s, th) for s in (100, 80, 79.9, 60, 40, 20, 19.9, 0)] == [
        "P1", "P1", "P2", "P2", "P3", "P4", "P5", "P5",
    ]  # fmt: skip


def test_a_resolved_incident_keeps_its_score_and_an_empty_one_scores_zero() -> None:
    live = state([("payment", "critical", None)])
    scored = assess(CHECKOUT, live, RULES)
    gone = live.model_copy(
        update={
            "firing_classes": {},
            "firing_count": 0,
            "score": scored.score,
            "priority": scored.priority,
            "score_breakdown": list(scored.factors),
            "stage_weights": dict(scored.stage_weights),
        }
    )
    assert assess(CHECKOUT, gone, RULES) == scored
    assert assess(CHECKOUT, state([]), RULES).score == 0


alerts = st.tuples(
    st.sampled_from(["payment", "cart", None]),
    st.sampled_from(["critical", "error", "warning", "info", "unknown"]),
    st.sampled_from(["gold", "free", "whale", None]),
)


@given(st.lists(alerts, max_size=6), alerts, st.integers(1, 6), st.integers(1, 3))
def test_more_firing_alerts_and_wider_blast_never_lower_the_score(
    existing: list[Firing], extra: Firing, services: int, regions: int
) -> None:
    before = assess(CHECKOUT, state(existing, services, regions), RULES).score
    assert assess(CHECKOUT, state([*existing, extra], services, regions), RULES).score >= before
    assert assess(CHECKOUT, state(existing, services + 1, regions), RULES).score >= before
    assert assess(CHECKOUT, state(existing, services, regions + 1), RULES).score >= before


@given(
    st.lists(alerts, min_size=1, max_size=6),
    st.floats(-100, 100),
    st.floats(-100, 100),
    st.sampled_from(["down", "up"]),
)
def test_a_worse_kpi_never_lowers_the_score(
    firing: list[Firing], d1: float, d2: float, bad_when: str
) -> None:
    # Worse = further in the bad direction.
    mild, worse = sorted((d1, d2), reverse=bad_when == "down")
    lo = assess(CHECKOUT, state(firing, kpis=[kpi(mild, bad_when)]), RULES).score
    hi = assess(CHECKOUT, state(firing, kpis=[kpi(worse, bad_when)]), RULES).score
    assert hi >= lo


@given(st.lists(alerts, min_size=1, max_size=6), st.floats(0, 1), st.floats(0, 1))
def test_a_heavier_journey_never_lowers_the_score(
    firing: list[Firing], w1: float, w2: float
) -> None:
    light, heavy = sorted((w1, w2))
    lo = assess(JourneyWeights("j", "J", light, {}), state(firing), RULES).score
    hi = assess(JourneyWeights("j", "J", heavy, {}), state(firing), RULES).score
    assert hi >= lo


def test_a_stage_a_reload_took_away_weighs_what_it_did_when_last_scored() -> None:
    live = state([("cart", "critical", None)])
    scored = assess(CHECKOUT, live, RULES)
    assert scored.stage_weights == {"cart": 0.6}
    renamed = replace(CHECKOUT, stage_weights={"payment": 1.0, "basket": 0.6})
    remembered = live.model_copy(update={"stage_weights": dict(scored.stage_weights)})
    again = assess(renamed, remembered, RULES)
    stage = next(f for f in again.factors if f.name == "stage")
    assert (stage.value, again.score, again.priority) == (0.6, scored.score, scored.priority)
    assert stage.reason.endswith("as when last scored: journeys.yaml no longer has it")
    assert again.stage_weights == {"cart": 0.6}  # kept for the next look
    # Never scored with it (stored by an older version): no weight to go by, neutral.
    forgotten = assess(renamed, live, RULES)
    assert next(f for f in forgotten.factors if f.name == "stage").value == 1.0
