"""Lifecycle timing rules, pure: group_wait, group_interval, priority raise, resolve, blips."""

from __future__ import annotations

from receiver.lifecycle import Assessment, Decision, Timers, advance, decide, guard
from receiver.store.records import CauseRecord, IncidentState, KpiRecord, Notified

T = 1_776_500_000_000
TIMERS = Timers(group_wait_ms=30_000, group_interval_ms=120_000, resolve_after_ms=300_000)
P2 = Assessment("P2", 65.0)


def incident(
    firing: int = 1, resolved: int = 0, services: tuple[str, ...] = ("pay",), **fields: object
) -> IncidentState:
    base: dict[str, object] = {
        "id": "checkout-abc-1",
        "key": 'checkout{region="eu"}',
        "digest": "abc",
        "journey": "checkout",
        "group_labels": {"region": "eu"},
        "status": "open",
        "created_at": T,
        "updated_at": T,
        "first_firing_at": T,
        "last_change_at": T,
        "alert_count": firing + resolved,
        "firing_count": firing,
        "services": dict.fromkeys(services, T),
        "stages": {"payment": T},
        "pending": "open",
    }
    base.update(fields)
    return IncidentState.model_validate(base)


def notified(
    at: int, priority: str = "P2", services: tuple[str, ...] = ("pay",)
) -> dict[str, object]:
    return {
        "pending": None,
        "notified_at": at,
        "last_notified": Notified(
            at=at,
            kind="open",
            priority=priority,
            score=65.0,
            services=list(services),
            stages=["payment"],
            firing_count=1,
        ),
    }


def test_first_notification_waits_for_group_wait() -> None:
    inc = incident()
    assert decide(inc, P2, T + 29_999, TIMERS) == Decision(None, T + 30_000, False, 0, ())
    assert decide(inc, P2, T + 30_000, TIMERS).notify == "open"


def test_storm_that_came_and_went_within_group_wait_is_a_blip() -> None:
    inc = incident(firing=0, resolved=2, pending_resolved=2, last_change_at=T + 9_000)
    d = decide(inc, P2, T + 30_000, TIMERS)
    assert (d.notify, d.resolve, d.blips) == (None, True, 2)
    st = advance(inc, d, P2, T + 30_000, [])
    assert (st.status, st.blips, st.notified_at) == ("resolved", 2, None)
    assert [e.kind for e in st.timeline] == ["blip", "resolved"]
    # It may only be committed if nothing fired or changed since it was read.
    assert guard(inc, d) == {
        "status": "open",
        "pending": "open",
        "firing_count": 0,
        "last_change_at": T + 9_000,
    }


def test_blips_beside_firing_alerts_are_recorded_and_the_rest_notified() -> None:
    inc = incident(firing=1, resolved=1, pending_resolved=1)
    d = decide(inc, P2, T + 30_000, TIMERS)
    assert (d.notify, d.blips) == ("open", 1)
    st = advance(inc, d, P2, T + 30_000, ["log"])
    assert st.last_notified and st.last_notified.kind == "open"
    assert st.timeline[-1].text == "open P2 sent to log"
    assert guard(inc, d) == {"status": "open", "pending": "open"}


def test_alerts_resolved_before_a_reopen_are_not_blips_of_it() -> None:
    # Ingest counts only what resolved since the reopening (pending_resolved).
    inc = incident(firing=1, resolved=3, pending_resolved=0, pending="reopen")
    assert decide(inc, P2, T + 30_000, TIMERS).blips == 0


def test_material_change_waits_for_group_interval() -> None:
    inc = incident(services=("pay", "cart"), **notified(T + 30_000))
    d = decide(inc, P2, T + 60_000, TIMERS)
    assert d == Decision(None, T + 150_000, False, 0, ())
    d = decide(inc, P2, T + 150_000, TIMERS)
    assert (d.notify, d.reasons) == ("update", ("new services: cart",))


def test_priority_raise_goes_out_at_once_and_a_drop_waits() -> None:
    inc = incident(**notified(T + 30_000))
    raised = decide(inc, Assessment("P1", 85.0), T + 31_000, TIMERS)
    assert (raised.notify, raised.reasons) == ("update", ("priority P2 → P1",))
    lowered = decide(inc, Assessment("P3", 45.0), T + 31_000, TIMERS)
    assert (lowered.notify, lowered.next_due_ms) == (None, T + 150_000)


def test_nothing_new_means_nothing_sent() -> None:
    inc = incident(**notified(T + 30_000))
    assert decide(inc, P2, T + 10**7, TIMERS) == Decision(None, None, False, 0, ())


def test_resolves_only_after_a_quiet_resolve_after() -> None:
    inc = incident(firing=0, resolved=1, last_change_at=T + 100_000, **notified(T + 30_000))
    assert decide(inc, P2, T + 399_999, TIMERS) == Decision(None, T + 400_000, False, 0, ())
    d = decide(inc, P2, T + 400_000, TIMERS)
    assert (d.notify, d.resolve) == ("resolve", True)
    st = advance(inc, d, P2, T + 400_000, ["log"])
    assert (st.status, st.resolved_at) == ("resolved", T + 400_000)


def test_reopen_is_announced_as_reopen_after_group_wait() -> None:
    reopened = {**notified(T - 10**6), "pending": "reopen", "reopened_count": 1}
    inc = incident(**reopened)
    assert decide(inc, P2, T + 1, TIMERS).next_due_ms == T + 30_000
    assert decide(inc, P2, T + 30_000, TIMERS).notify == "reopen"


def test_reopen_of_a_never_notified_blip_is_a_first_open() -> None:
    inc = incident(pending="reopen", reopened_count=1)
    assert decide(inc, P2, T + 30_000, TIMERS).notify == "open"


def test_resolved_incidents_are_left_alone() -> None:
    inc = incident(firing=0, resolved=1, status="resolved", resolved_at=T, pending=None)
    assert decide(inc, P2, T + 10**9, TIMERS) == Decision(None, None, False, 0, ())


def test_a_notification_from_before_the_story_was_kept_is_not_news_again() -> None:
    """An upgrade must not page every open incident: a last notification without a recorded
    cause and KPIs (bad_kpis None) is compared on services, stages and priority only."""
    cause = CauseRecord(kind="change", text="deploy v2 to pay", score=80.0, change_id="c")
    kpi = KpiRecord(name="conversion", deviation_pct=-40.0, bad=True)
    old = incident(probable_causes=[cause], kpis=[kpi], **notified(T + 30_000))
    assert old.last_notified is not None and old.last_notified.bad_kpis is None
    assert decide(old, P2, T + 600_000, TIMERS).notify is None
    recorded = old.model_copy(
        update={"last_notified": old.last_notified.model_copy(update={"bad_kpis": []})}
    )
    d = decide(recorded, P2, T + 600_000, TIMERS)
    assert d.reasons == ("probable cause: deploy v2 to pay", "KPIs degraded: conversion")


def test_a_kpi_back_in_band_is_told_within_group_interval() -> None:
    """People were told "conversion -40%"; the KPI read again is back in band. The title
    and summary they have still say it is down until something else changes."""
    told = notified(T + 30_000)
    last = told["last_notified"]
    assert isinstance(last, Notified)
    told["last_notified"] = last.model_copy(update={"bad_kpis": ["conversion", "orders"]})
    back = KpiRecord(name="conversion", value=0.031, deviation_pct=-2.0, bad=False)
    unread = KpiRecord(name="orders", value=None, bad=False)  # Prometheus did not answer
    inc = incident(kpis=[back, unread], **told)
    assert decide(inc, P2, T + 60_000, TIMERS).next_due_ms == T + 150_000
    d = decide(inc, P2, T + 150_000, TIMERS)
    assert (d.notify, d.reasons) == ("update", ("KPIs back in band: conversion",))
    quiet = incident(kpis=[unread], **told)
    assert decide(quiet, P2, T + 150_000, TIMERS).notify is None


def test_a_kpi_flapping_around_its_baseline_is_not_an_update_at_every_look() -> None:
    """Told "conversion -40%", the KPI then reads +0.3%, -0.2%, +0.1%, ... vs last week at
    every look (a KPI the outage barely touched, or one recovering): its coming back is told
    once, not each flip as another update (a Slack reply, a Jira comment) every
    group_interval for as long as the incident lasts."""
    told = notified(T + 30_000)
    last = told["last_notified"]
    assert isinstance(last, Notified)
    told["last_notified"] = last.model_copy(update={"bad_kpis": ["conversion"]})
    state = incident(**told)
    sent: list[tuple[str, ...]] = []
    for look in range(1, 11):
        now = T + 30_000 + look * TIMERS.group_interval_ms
        deviation = -0.2 if look % 2 == 0 else 0.3
        kpi = KpiRecord(name="conversion", value=0.03, deviation_pct=deviation, bad=deviation < 0)
        state = state.model_copy(update={"kpis": [kpi]})
        decision = decide(state, P2, now, TIMERS)
        if decision.notify is not None:
            sent.append(decision.reasons)
        state = advance(state, decision, P2, now, ["log"])
    assert sent == [("KPIs back in band: conversion",)]
