"""Suggested actions follow the journey's conditions on correlated changes."""

from __future__ import annotations

from receiver.actions import render, suggest
from receiver.config import Action, ActionCondition, Journey, Owner
from receiver.store.records import ChangeRecord

ROLLBACK = Action(
    title="Roll back {service} to {previous_version} in {region}",
    when=ActionCondition(change_type="deploy", within=15 * 60),
)
CALL = Action(title="Tell the payments provider")
JOURNEY = Journey(
    id="checkout",
    name="Checkout",
    weight=1.0,
    owner=Owner(team="payments"),
    stages=[],
    actions=[ROLLBACK, CALL],
    automation="recommend",
)


def change(minutes_before: float, overlap: bool = True, type: str = "deploy") -> ChangeRecord:
    return ChangeRecord(
        id=f"c{minutes_before}",
        type=type,
        service="payment-service",
        at=0,
        minutes_before=minutes_before,
        overlap=overlap,
        version="2026.04.18-3",
        previous_version="2026.04.17-9",
    )


def test_a_recent_deploy_to_an_affected_service_suggests_its_rollback() -> None:
    assert suggest(JOURNEY, [change(20), change(2)], {"region": "eu"}) == [
        {
            "title": "Roll back payment-service to 2026.04.17-9 in eu",
            "because": "deploy 2026.04.18-3 to payment-service 2 min before the first alert",
            "automation": "recommend",
        },
        {"title": "Tell the payments provider", "because": "", "automation": "recommend"},
    ]


def test_no_rollback_for_old_unrelated_late_or_other_changes() -> None:
    for c in (change(16), change(2, overlap=False), change(-3), change(2, type="config")):
        assert [s["title"] for s in suggest(JOURNEY, [c], {})] == ["Tell the payments provider"]


def test_templates_fill_plain_names_only() -> None:
    assert render("{a} {b} {a.__class__} {0}", {"a": "x"}) == "x {b} {a.__class__} {0}"
