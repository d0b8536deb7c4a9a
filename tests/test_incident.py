"""The narrative: title and summary read like a doctor's chart, deterministically."""

from __future__ import annotations

from receiver.causes import CAUSE_CONFIDENCE
from receiver.config import Journey, Owner
from receiver.incident import TITLE_MAX, summary, title
from receiver.scoring import Impact
from receiver.store.records import CauseRecord, ChangeRecord, IncidentState, StoredAlert
from tests.support.incidents import conversion

T = 1_776_506_400_000  # 2026-04-18T10:00:00Z
CHECKOUT = Journey(
    id="checkout", name="Checkout", weight=1.0, owner=Owner(team="payments"), stages=[]
)
P1 = Impact(score=80.0, priority="P1", factors=())


def chart(**fields: object) -> IncidentState:
    base: dict[str, object] = {
        "id": "checkout-1",
        "key": "k",
        "digest": "d",
        "journey": "checkout",
        "group_labels": {"env": "prod", "region": "eu"},
        "status": "open",
        "created_at": T,
        "updated_at": T,
        "first_firing_at": T,
        "alert_count": 12,
        "firing_count": 12,
        "services": {"payment-service": T, "cart": T},
        "stages": {"payment": T, "cart": T},
        "firing_services": {"payment-service": 9, "cart": 3},
        "firing_classes": {'["payment", "critical", ""]': 9, '["cart", "critical", ""]': 3},
        "kpis": [conversion(revenue_at_risk_per_min=1234.5)],
        "changes": [
            ChangeRecord(
                id="e1",
                type="deploy",
                service="payment-service",
                at=T - 120_000,
                minutes_before=2.0,
                overlap=True,
                version="2026.04.18-3",
            )
        ],
        "probable_causes": [
            CauseRecord(
                kind="change",
                text="deploy 2026.04.18-3 to payment-service",
                score=87.5,
                evidence=["deploy 2026.04.18-3 to payment-service 2 min before the first alert"],
                change_id="e1",
            )
        ],
    }
    base.update(fields)
    return IncidentState.model_validate(base)


def test_title_says_what_where_how_bad_and_what_changed() -> None:
    # In full it is 134 characters; the change names the service, so the list goes.
    assert title(chart(), P1) == (
        "checkout/eu P1 — 12 alerts; "
        "conversion \u221261% vs last week; deploy 2026.04.18-3 to payment-service 2 min before"
    )
    no_kpi = chart(kpis=[])
    assert title(no_kpi, P1) == (
        "checkout/eu P1 — 12 alerts in payment-service, cart; "
        "deploy 2026.04.18-3 to payment-service 2 min before"
    )


def test_title_leaves_out_what_it_does_not_know_and_fits_its_limit() -> None:
    bare = chart(kpis=[], changes=[], probable_causes=[])
    assert title(bare, P1) == "checkout/eu P1 — 12 alerts in payment-service, cart"
    busy = chart(firing_services={f"service-with-a-long-name-{i:02}": 40 - i for i in range(40)})
    assert title(busy, P1) == (
        "checkout/eu P1 — 12 alerts; "
        "conversion \u221261% vs last week; deploy 2026.04.18-3 to payment-service 2 min before"
    )
    assert len(title(busy, P1)) <= TITLE_MAX


def test_a_service_cause_does_not_put_a_change_in_the_title() -> None:
    service_first = chart(
        probable_causes=[CauseRecord(kind="service", text="payment-service", score=25.0)]
    )
    assert title(service_first, P1) == (
        "checkout/eu P1 — 12 alerts in payment-service, cart; conversion −61% vs last week"
    )


def test_the_title_and_summary_tell_the_top_causes_story() -> None:
    # A later change to another service ranks lower: the title must not pick it by time.
    later = ChangeRecord(
        id="e2", type="config", service="cart", at=T - 30_000, minutes_before=0.5,
        overlap=True,
    )  # fmt: skip
    two = chart(
        changes=[*chart().changes, later],
        probable_causes=[
            *chart().probable_causes,
            CauseRecord(kind="change", text="config on cart", score=68.0, change_id="e2"),
        ],
    )
    assert title(two, P1).endswith("; deploy 2026.04.18-3 to payment-service 2 min before")
    assert "What changed: deploy 2026.04.18-3 to payment-service" in summary(two, CHECKOUT, P1)


def test_below_the_confidence_the_cause_is_unknown_not_guessed() -> None:
    guess = chart(
        kpis=[],
        probable_causes=[
            CauseRecord(
                kind="change",
                text="deploy 2026.04.18-3 to payment-service",
                score=CAUSE_CONFIDENCE - 5,
                change_id="e1",
            )
        ],
    )
    assert title(guess, P1) == "checkout/eu P1 — 12 alerts in payment-service, cart; cause unknown"
    assert (
        "Cause unknown: the best candidate, deploy 2026.04.18-3 to payment-service, scores 15, "
        "below the confidence of 20."
    ) in summary(guess, CHECKOUT, P1)


def firing(name: str, said: str, tier: str, n: int) -> StoredAlert:
    return StoredAlert(
        fp=f"{name}-{n}", status="firing", labels={"alertname": name, "tier": tier},
        annotations={"summary": said}, service="payment-service", severity="critical",
        first_seen=T, changed_at=T,
    )  # fmt: skip


def test_summary_reads_as_a_chart() -> None:
    alerts = [
        firing("GatewayErrors", "Card declines\nabove 40%", "gold", 1),
        firing("Latency", "p99 above 2s", "platinum", 2),
        firing("GatewayErrors", "Card declines\nabove 40%", "gold", 3),
        firing("Replication", "<!channel> lag", "gold", 4),
        firing("Timeouts", "upstream timeouts calling payment-service", "gold", 5),
        StoredAlert.model_validate(
            {**firing("Stale", "gone", "free", 6).model_dump(), "status": "resolved"}
        ),
    ]
    text = summary(
        chart(context_notes=["context unavailable: grafana: timed out"]), CHECKOUT, P1, alerts
    )
    assert text == (
        "Checkout (checkout) in env prod, region eu, since 2026-04-18T10:00:00.000Z: 12 of 12 "
        "alert(s) firing across cart, payment-service. "
        "What broke (the latest 5 of 12 firing): 2× GatewayErrors, 1× Latency, "
        "1× Replication +1 more — "
        '"Card declines above 40%"; "p99 above 2s"; "<!channel> lag"; +1 more. '
        "For whom: stages cart, payment; customer tier gold, platinum. "
        "How bad: conversion \u221261% vs last week (now 0.012, then 0.031 ratio); "
        "1,234/min of revenue at risk; impact score 80/100 → P1. "
        "What changed: deploy 2026.04.18-3 to payment-service "
        "(deploy 2026.04.18-3 to payment-service 2 min before the first alert). "
        "Owner: payments. (context unavailable: grafana: timed out)"
    )


def test_customer_tiers_are_listed_like_services() -> None:
    # A tier label that carries customer ids: 200 distinct values, one of them 5,000
    # characters long with a line break, would come before how bad it is and the owner.
    alerts = [firing("GatewayErrors", "", f"cust-{n:03}", n) for n in range(200)]
    alerts.append(firing("GatewayErrors", "", "a\n" + "x" * 5000, 200))
    text = summary(chart(), CHECKOUT, P1, alerts)
    assert "For whom: stages cart, payment; customer tier a " + "x" * 37 + "…, cust-000, " in text
    assert "cust-004 +195 more. How bad:" in text
    assert len(text) < 1000


def test_an_incident_waiting_out_resolve_after_says_so() -> None:
    quiet = chart(firing_count=0, firing_services={}, kpis=[], probable_causes=[])
    assert title(quiet, P1) == "checkout/eu P1 — resolving: 12 alerts in cart, payment-service"
