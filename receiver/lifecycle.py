"""When an incident is due and why: open, update, resolve, reopen, or stay quiet. Pure.

The rules (SPEC "Grouping semantics"):
- The first notification waits ``group_wait`` from the first firing alert the receiver stored.
- An incident whose alerts all resolved within that wait is a blip: it is resolved without
  any notification, and its alerts are recorded as blips.
- After that, a material change (new service, new stage, priority change, a new trusted
  probable cause, a KPI newly degraded or, once an episode, back in band, found when the
  context is looked at again) is sent at most every ``group_interval``, except a priority
  raise, which goes out at once.
- The incident resolves once every alert is resolved and ``resolve_after`` passed with no
  alert changing state; firing again within ``reopen_window`` reopens it (the store does
  that on ingest and sets ``pending = "reopen"``).
"""

from __future__ import annotations

from dataclasses import astuple, dataclass

from receiver.causes import leading
from receiver.models import NotificationKind
from receiver.outcomes import revenue
from receiver.sinks.pagerduty import resolved_by_person
from receiver.store.records import IncidentState, Notified, TimelineEntry

PRIORITIES = ("P1", "P2", "P3", "P4", "P5")


@dataclass(frozen=True, slots=True)
class Timers:
    group_wait_ms: int
    group_interval_ms: int
    resolve_after_ms: int

    def any_shorter_than(self, other: Timers) -> bool:
        return any(
            mine < theirs for mine, theirs in zip(astuple(self), astuple(other), strict=True)
        )


@dataclass(frozen=True, slots=True)
class Assessment:
    """The incident's current impact, as scoring sees it now."""

    priority: str
    score: float


@dataclass(frozen=True, slots=True)
class Decision:
    """``notify`` is what to send now (None: nothing); ``next_due_ms`` when to look again
    (None: only when a batch changes the incident); ``blips`` how many alerts came and went
    within group_wait and are recorded now."""

    notify: NotificationKind | None
    next_due_ms: int | None
    resolve: bool
    blips: int
    reasons: tuple[str, ...]


def is_raise(new: str, old: str) -> bool:
    return PRIORITIES.index(new) < PRIORITIES.index(old)


def guard(loaded: IncidentState, decision: Decision) -> dict[str, str | int | None]:
    """What ``decision`` relied on, to be still true when it is committed.

    Batches landing meanwhile may add alerts and services (the next decision sees those),
    but a resolution holds only if nothing fires and nothing changed, and the first
    notification only if the incident is still the one waiting for it.
    """
    relied: dict[str, str | int | None] = {"status": loaded.status, "pending": loaded.pending}
    if decision.resolve:
        relied["firing_count"] = 0
        relied["last_change_at"] = loaded.last_change_at
    return relied


def material_changes(state: IncidentState, now: Assessment) -> list[str]:
    """What differs, for the people paged, from what they were last told."""
    last = state.last_notified
    if last is None:
        return []
    reasons = []
    if now.priority != last.priority:
        reasons.append(f"priority {last.priority} → {now.priority}")
    new_services = sorted(set(state.shown_services) - set(last.services))
    if new_services:
        reasons.append("new services: " + ", ".join(new_services))
    new_stages = sorted(set(state.shown_stages) - set(last.stages))
    if new_stages:
        reasons.append("new stages: " + ", ".join(new_stages))
    # What a later look at the context found: a change it now trusts as the cause, a KPI
    # gone bad. Not the upstream service shifting with the alert counts: that is churn.
    if last.bad_kpis is None:
        return reasons
    cause = _change_cause(state)
    if cause is not None and cause != last.cause:
        reasons.append(f"probable cause: {cause}")
    # One told back in band that dips again flaps around its baseline: told each flip, it
    # would be an update every group_interval for as long as the incident lasts (how bad
    # it gets still moves the score, and a priority change is told).
    newly_bad = sorted(_bad_kpis(state) - set(last.bad_kpis) - set(last.kpis_back or ()))
    if newly_bad:
        reasons.append("KPIs degraded: " + ", ".join(newly_bad))
    recovered = sorted(_recovered(state, last))
    if recovered:
        reasons.append("KPIs back in band: " + ", ".join(recovered))
    return reasons


def _recovered(state: IncidentState, last: Notified) -> set[str]:
    """The KPIs ``last`` called bad, read again and back in band: the title and summary
    people were told still say they are down, and recovery is what they wait for. One no
    longer read (Prometheus away, the KPI removed from journeys.yaml) did not recover."""
    read = {k.name for k in state.kpis if k.value is not None}
    return (set(last.bad_kpis or ()) - _bad_kpis(state)) & read


def _change_cause(state: IncidentState) -> str | None:
    cause = leading(state)
    return cause.text if cause is not None and cause.kind == "change" else None


def _bad_kpis(state: IncidentState) -> set[str]:
    return {k.name for k in state.kpis if k.bad}


def decide(state: IncidentState, now: Assessment, now_ms: int, timers: Timers) -> Decision:
    """What to do now; reads the state's counts only, never the alerts."""
    if state.status == "resolved":
        return Decision(None, None, False, 0, ())

    if state.pending is not None:
        wait_end = state.first_firing_at + timers.group_wait_ms
        if now_ms < wait_end:
            return Decision(None, wait_end, False, 0, ())
        # Every alert that resolved since the incident (re)opened came and went within
        # group_wait (ingest counts them).
        blips = max(state.pending_resolved, 0)
        if state.firing_count == 0:
            return Decision(None, None, True, blips, ("every alert resolved within group_wait",))
        kind: NotificationKind = (
            "reopen" if state.pending == "reopen" and state.notified_at is not None else "open"
        )
        return Decision(kind, None, False, blips, ())

    if state.firing_count == 0:
        quiet_end = state.last_change_at + timers.resolve_after_ms
        if now_ms >= quiet_end:
            return Decision("resolve", None, True, 0, ("every alert resolved",))
        return Decision(None, quiet_end, False, 0, ())

    reasons = material_changes(state, now)
    if not reasons:
        return Decision(None, None, False, 0, ())
    last = state.last_notified
    assert last is not None  # a notified incident always has its last notification
    interval_end = last.at + timers.group_interval_ms
    if is_raise(now.priority, last.priority) or now_ms >= interval_end:
        return Decision("update", None, False, 0, tuple(reasons))
    return Decision(None, interval_end, False, 0, ())


def advance(
    loaded: IncidentState,
    decision: Decision,
    now: Assessment,
    now_ms: int,
    sinks: list[str],
) -> IncidentState:
    """The incident state after ``decision``, ready to commit; new timeline entries are
    appended after the ones loaded."""
    # A shallow copy with its own timeline and outcomes: the only containers the decision
    # changes in place (everything else is assigned anew). A deep copy of the whole state
    # cost more than the rest of the decision.
    state = loaded.model_copy(
        update={"timeline": list(loaded.timeline), "action_outcomes": dict(loaded.action_outcomes)}
    )
    state.priority = now.priority
    state.score = now.score

    def note(kind: str, text: str) -> None:
        state.timeline.append(TimelineEntry(at=now_ms, kind=kind, text=text))

    if decision.blips:
        state.blips += decision.blips
        note("blip", f"{decision.blips} alert(s) fired and resolved within group_wait (blip)")
    if decision.resolve:
        # The episode's revenue at risk is counted to here; a reopen counts from its start.
        state.revenue_at_risk, state.revenue_counted_to = revenue.closed(state, now_ms)
        state.status = "resolved"
        state.resolved_at = now_ms
        state.pending = None
        if decision.notify is None:
            note("resolved", "resolved without notification: " + "; ".join(decision.reasons))
    if decision.notify is not None:
        last = state.last_notified
        kpis_back = (
            set(last.kpis_back or ()) | _recovered(state, last)
            if last is not None
            and last.bad_kpis is not None
            and decision.notify not in ("open", "reopen")
            else set()
        )
        if last is not None and last.priority != now.priority and decision.notify != "resolve":
            note("priority", f"priority {last.priority} → {now.priority}")
        state.pending = None
        if decision.notify in ("open", "reopen"):
            # What fired and resolved within group_wait is a blip, never told: its services
            # and stages are left out of what people are told (and scored) from now on,
            # unless they fire again. Worked out while the episode is not yet told.
            state.blipped_services = sorted(set(state.services) - set(state.shown_services))
            state.blipped_stages = sorted(set(state.stages) - set(state.shown_stages))
        if state.notified_at is None or decision.notify == "reopen":
            # When this episode's people were told (MTTA counts from it), as started_at
            # is when it started.
            state.notified_at = now_ms
        if decision.notify in ("open", "reopen"):
            # The revenue at risk is counted from the episode's start once it is told.
            state.revenue_at_risk, state.revenue_counted_to = revenue.count(
                state, state.kpis, now_ms
            )
        state.last_notified = Notified(
            at=now_ms,
            kind=decision.notify,
            priority=now.priority,
            score=now.score,
            services=state.services_busiest_first(),
            stages=state.shown_stages,
            firing_count=state.firing_count,
            cause=_change_cause(state),
            bad_kpis=sorted(_bad_kpis(state)),
            kpis_back=sorted(kpis_back),
        )
        # Told now: no longer a blip, whatever comes after (it resolving included).
        state.blipped_services = sorted(
            set(state.blipped_services) - set(state.last_notified.services)
        )
        state.blipped_stages = sorted(set(state.blipped_stages) - set(state.last_notified.stages))
        why = f" ({'; '.join(decision.reasons)})" if decision.reasons else ""
        target = ", ".join(sinks) if sinks else "no sink (routing matched none)"
        note("notified", f"{decision.notify} {now.priority} sent to {target}{why}")
        closed_by = resolved_by_person(loaded)
        if decision.notify == "reopen" and closed_by and "pagerduty" in sinks:
            note(
                "pagerduty",
                f"a new PagerDuty incident: {closed_by} resolved the last one in PagerDuty, "
                "and the alerts fired again after the incident resolved",
            )
        if decision.notify == "resolve":
            note("resolved", "resolved: every alert resolved")
    return state
