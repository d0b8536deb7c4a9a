"""The impact score: factors in the breakdown, thresholds, and monotonicity."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from receiver.scoring import JourneyWeights, ScoringRules, assess, priority_for
from receiver.store.records import StoredAlert

RULES = ScoringRules(
    thresholds={"P1": 80, "P2": 60, "P3": 40, "P4": 20},
    severity_weights={"critical": 1.0, "error": 0.8, "warning": 0.5, "info": 0.2},
    default_severity_weight=0.5,
    tier_label="tier",
    tier_weights={"gold": 1.0, "free": 0.4},
    default_tier_weight=1.0,
)
CHECKOUT = JourneyWeights("checkout", "Checkout", 1.0, {"payment": 1.0, "cart": 0.6})
BROWSE = JourneyWeights("browse", "Browse", 0.4, {"search": 0.7})


def alert(
    fp: str, stage: str | None, severity: str, status: str = "firing", **labels: str
) -> StoredAlert:
    return StoredAlert(
        fp=fp,
        status="firing" if status == "firing" else "resolved",
        labels={"alertname": "A", **labels},
        annotations={},
        stage=stage,
        service=f"svc-{fp}",
        severity=severity,
        first_seen=0,
        changed_at=0,
    )


def test_payment_failure_at_checkout_outranks_a_latency_blip_elsewhere() -> None:
    payment = assess(CHECKOUT, [alert("a", "payment", "critical")], 1, 1, RULES)
    latency = assess(BROWSE, [alert("b", "search", "warning")], 1, 1, RULES)
    assert payment.score > latency.score
    assert (payment.priority, latency.priority) == ("P2", "P5")


def test_every_factor_is_in_the_breakdown_with_a_reason() -> None:
    impact = assess(CHECKOUT, [alert("a", "cart", "warning", tier="free")], 2, 1, RULES)
    factors = {f.name: (f.value, f.reason) for f in impact.factors}
    assert factors == {
        "journey": (1.0, "journey checkout (Checkout) has weight 1"),
        "stage": (0.6, "worst alert is in stage cart (weight 0.6)"),
        "severity": (0.5, "worst alert A on svc-a has severity warning (weight 0.5)"),
        "tier": (0.4, "customer tier free (weight 0.4)"),
        "blast_radius": (0.8, "2 service(s) in 1 region(s)"),
        "kpi": (1.0, "not computed: no KPI enrichment in this version, neutral"),
    }
    assert impact.score == round(100 * 1.0 * 0.6 * 0.5 * 0.4 * 0.8, 1)


def test_thresholds() -> None:
    th = RULES.thresholds
    assert [priority_for(s, th) for s in (100, 80, 79.9, 60, 40, 20, 19.9, 0)] == [
        "P1", "P1", "P2", "P2", "P3", "P4", "P5", "P5",
    ]  # fmt: skip


def test_a_resolved_incident_keeps_its_score() -> None:
    impact = assess(CHECKOUT, [alert("a", "payment", "critical", status="resolved")], 1, 1, RULES)
    assert impact.score == 70.0


severities = st.sampled_from(["critical", "error", "warning", "info", "unknown"])
stages = st.sampled_from(["payment", "cart", None])
alerts = st.builds(
    alert,
    fp=st.text("abcdef", min_size=1, max_size=4),
    stage=stages,
    severity=severities,
)


@given(st.lists(alerts, max_size=6), alerts, st.integers(1, 6), st.integers(0, 3))
def test_more_firing_alerts_and_wider_blast_never_lower_the_score(
    existing: list[StoredAlert], extra: StoredAlert, services: int, regions: int
) -> None:
    before = assess(CHECKOUT, existing, services, regions, RULES).score
    assert assess(CHECKOUT, [*existing, extra], services, regions, RULES).score >= before
    assert assess(CHECKOUT, existing, services + 1, regions, RULES).score >= before
    assert assess(CHECKOUT, existing, services, regions + 1, RULES).score >= before


@given(st.lists(alerts, min_size=1, max_size=6), st.floats(0, 1), st.floats(0, 1))
def test_a_heavier_journey_never_lowers_the_score(
    firing: list[StoredAlert], w1: float, w2: float
) -> None:
    light, heavy = sorted((w1, w2))
    lo = assess(JourneyWeights("j", "J", light, {}), firing, 1, 1, RULES).score
    hi = assess(JourneyWeights("j", "J", heavy, {}), firing, 1, 1, RULES).score
    assert hi >= lo
