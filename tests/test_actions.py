"""Suggested actions follow the journey's conditions on the incident's trusted causes."""

from __future__ import annotations

from receiver.actions import PREVIOUS_UNKNOWN, changed, match, render, shown, suggest
from receiver.causes import CAUSE_CONFIDENCE
from receiver.config import Action, ActionCondition, Journey, Owner
from receiver.config.journeys_yaml import KpiCondition
from receiver.store.records import CauseRecord, ChangeRecord, IncidentState, KpiRecord

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
ALWAYS = {
    "id": "Tell the payments provider",
    "title": "Tell the payments provider",
    "because": "",
    "automation": "recommend",
    "runnable": False,
    "history": None,
}


def change(
    minutes_before: float,
    overlap: bool = True,
    type: str = "deploy",
    version: str | None = "2026.04.18-3",
    previous: str | None = "2026.04.17-9",
) -> ChangeRecord:
    return ChangeRecord(
        id=f"c{minutes_before}-{type}-{version}",
        type=type,
        service="payment-service",
        at=0,
        minutes_before=minutes_before,
        overlap=overlap,
        version=version,
        previous_version=previous,
    )


def incident(*ranked: tuple[ChangeRecord, float]) -> IncidentState:
    """An open incident in eu whose causes are these changes, with these scores, in order."""
    return IncidentState(
        id="i", key="k", digest="d", journey="checkout", group_labels={"region": "eu"},
        status="open", created_at=0, updated_at=0, first_firing_at=0,
        alert_count=1, firing_count=1,
        changes=[c for c, _ in ranked],
        probable_causes=[
            CauseRecord(kind="change", text=c.id, score=score, change_id=c.id)
            for c, score in ranked
        ],
    )  # fmt: skip


def test_the_best_ranked_deploy_to_an_affected_service_suggests_its_rollback() -> None:
    # The ranking decides, not which change came last.
    ranked = incident((change(8), 60.0), (change(2, version="2026.04.18-4"), 40.0))
    assert suggest(JOURNEY, ranked) == [
        {
            "id": "Roll back {service} to {previous_version} in {region}",
            "title": "Roll back payment-service to 2026.04.17-9 in eu",
            "because": "deploy 2026.04.18-3 to payment-service 8 min before the first alert",
            "automation": "recommend",
            "runnable": False,
            "history": None,
        },
        ALWAYS,
    ]


def test_no_rollback_for_old_unrelated_late_other_or_untrusted_changes() -> None:
    for c, score in (
        (change(16), 50.0),
        (change(2, overlap=False), 50.0),
        (change(-3), 50.0),
        (change(2, type="config"), 50.0),
        (change(2), CAUSE_CONFIDENCE - 0.1),
    ):
        assert suggest(JOURNEY, incident((c, score))) == [ALWAYS]


def test_a_deploy_without_a_known_previous_version_never_names_one() -> None:
    (rollback, _) = suggest(JOURNEY, incident((change(2, version=None, previous=None), 90.0)))
    assert rollback["title"] == f"Roll back payment-service to {PREVIOUS_UNKNOWN} in eu"
    assert rollback["because"] == (
        "deploy of payment-service 2 min before the first alert; the version before it is "
        "unknown (the change does not say which version it brought)"
    )
    (rollback, _) = suggest(JOURNEY, incident((change(2, previous=None), 90.0)))
    assert rollback["title"] == f"Roll back payment-service to {PREVIOUS_UNKNOWN} in eu"
    assert rollback["because"].endswith(
        "(no earlier deploy of payment-service with a version on record in this scope)"
    )


def test_templates_fill_plain_names_only() -> None:
    assert render("{a} {b} {a.__class__} {0}", {"a": "x"}) == "x {b} {a.__class__} {0}"


def test_conditions_on_services_stages_priority_and_a_kpi_all_must_hold() -> None:
    narrow = Action(
        id="restart",
        title="Restart {region}",
        when=ActionCondition(
            single_service=True,
            stages=["payment"],
            priorities=["P1", "P2"],
            kpi=KpiCondition(name="conversion", deviation_pct_below=-30.0),
        ),
    )
    journey = JOURNEY.model_copy(update={"actions": [narrow]})
    base = IncidentState(
        id="i", key="k", digest="d", journey="checkout", group_labels={"region": "eu"},
        status="open", created_at=0, updated_at=0, first_firing_at=0,
        services={"payment-service": 2}, stages={"payment": 2},
        kpis=[KpiRecord(name="conversion", deviation_pct=-60.0, bad=True)],
    )  # fmt: skip

    def titles(state: IncidentState, priority: str = "P1") -> list[str]:
        return [a["title"] for a in suggest(journey, state, priority)]

    assert titles(base) == ["Restart eu"]
    assert titles(base, "P3") == []
    assert titles(base.model_copy(update={"services": {"a": 1, "b": 1}})) == []
    assert titles(base.model_copy(update={"stages": {"cart": 1}})) == []
    mild = [KpiRecord(name="conversion", deviation_pct=-10.0)]
    assert titles(base.model_copy(update={"kpis": mild})) == []
    assert titles(base.model_copy(update={"kpis": []})) == []  # not measured: no


def test_a_kpi_condition_reads_a_zero_baseline_as_infinitely_off() -> None:
    # Payment errors a minute: none last week. Gone up to 30, it is past any "above".
    spike = Action(
        title="Page the payments provider",
        when=ActionCondition(kpi=KpiCondition(name="errors", deviation_pct_above=50.0)),
    )
    journey = JOURNEY.model_copy(update={"actions": [spike]})

    def titles(now: float) -> list[str]:
        errors = KpiRecord(name="errors", value=now, baseline=0.0, bad_when="up", bad=now > 0)
        state = incident().model_copy(update={"kpis": [errors]})
        return [a["title"] for a in suggest(journey, state, "P1")]

    assert titles(30.0) == ["Page the payments provider"]
    assert titles(0.0) == []
    # Why not, in words: how far it went, as no percentage exists.
    drop = Action(
        title="Warm the cache",
        when=ActionCondition(kpi=KpiCondition(name="errors", deviation_pct_below=-30.0)),
    )
    errors = KpiRecord(name="errors", value=30.0, baseline=0.0, bad_when="up", bad=True)
    assert match(drop, incident().model_copy(update={"kpis": [errors]}), "P1") == (
        "the KPI errors is at 0 → 30 from a zero baseline, not below -30%"
    )


def test_change_type_is_read_as_events_are_whatever_its_case() -> None:
    # Events' types are trimmed and lower-cased as they come in; so is the condition's.
    when = ActionCondition.model_validate({"change_type": " Deploy ", "within": 900})
    assert when.change_type == "deploy"
    journey = JOURNEY.model_copy(update={"actions": [ROLLBACK.model_copy(update={"when": when})]})
    (rollback,) = suggest(journey, incident((change(2), 90.0)))
    assert rollback["title"] == "Roll back payment-service to 2026.04.17-9 in eu"


def test_a_deploy_replaced_before_the_start_is_not_rolled_back() -> None:
    # v2 went out 10 min before the first alert and was rolled back 3 min later: rolling
    # v2 back would put back what runs already. A deploy after the start replaces nothing.
    deploy = change(10, version="v2", previous="v1").model_copy(update={"at": 0})
    rollback = change(7, type="rollback", version="v1").model_copy(update={"at": 180_000})
    ranked = incident((rollback, 60.0), (deploy, 50.0))
    assert suggest(JOURNEY, ranked) == [ALWAYS]
    assert match(ROLLBACK, ranked) == (
        "the deploy v2 of payment-service no longer runs: rollback v1 of payment-service "
        "replaced it 3 min later, before the incident started"
    )
    late = change(-2, version="v3").model_copy(update={"at": 720_000})
    (rollback_v2, _) = suggest(JOURNEY, incident((deploy, 50.0), (late, 10.0)))
    assert rollback_v2["title"] == "Roll back payment-service to v1 in eu"


def test_what_a_run_button_showed_tells_which_values_moved_since() -> None:
    then = {"env": "prod", "region": "eu", "service": "payment-service", "version": "v42",
            "previous_version": "v41"}  # fmt: skip
    assert len(shown(then)) == 35
    assert len(shown(then | {f"label{i}": "x" * 100 for i in range(50)})) == 35
    assert changed(shown(then), dict(reversed(then.items()))) == []
    later = then | {"version": "v42.1", "previous_version": "v42"}
    assert changed(shown(then), later) == ["version", "previous_version"]
    unknown = {k: v for k, v in then.items() if k != "previous_version"}
    assert changed(shown(unknown), then) == ["previous_version"]
    assert changed(shown(then), then | {"region": "us"}) == ["group labels"]
    assert changed("", then) == ["service", "version", "previous_version", "group labels"]
