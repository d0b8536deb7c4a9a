"""Whether a run helped. Pure.

After an action ran, its incident is watched for ``automation.outcome_window``: it
*helped* when the incident resolved within the window, or when at the window's end its
firing alerts or its worst KPI's deviation (in the KPI's bad direction) are at most half
what they were at the run; it made things *worse* when there are more firing alerts, or
the KPI is 10 points further off; else *no change*. A resolve within the window is told
at once, and taken back should the incident reopen within the window (``standing``). The
verdict is the scheduler's, kept once per action in ``action_outcomes``, and feeds the
action's history and ``/stats``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from receiver.causes import span
from receiver.scoring import badness, measured
from receiver.store.records import (
    ActionOutcome,
    ActionRunRecord,
    IncidentState,
    KpiRecord,
    Verdict,
)

WORSE_POINTS = 10.0
VERDICT_WORDS: dict[str, str] = {
    "helped": "helped",
    "no_change": "no change",
    "worse": "made it worse",
}


def kpi_off(kpis: Iterable[KpiRecord]) -> float | None:
    """How far the worst KPI is off in its bad direction (percent, 0 when none is; infinite
    for one gone bad from a zero baseline, which has no percentage)."""
    offs = [badness(k) for k in kpis if measured(k)]
    return max(offs) if offs else None


def _off_words(off: float) -> str:
    return "bad from a zero baseline" if math.isinf(off) else f"{off:.0f}%"


def watched(state: IncidentState) -> list[ActionRunRecord]:
    """The runs of the incident whose outcome is not told yet (the latest per action)."""
    latest = {r.action: r for r in state.actions_run if r.status == "ran"}
    return [r for key, r in latest.items() if key not in state.action_outcomes]


def next_look(state: IncidentState, window_ms: int) -> int | None:
    """When the first watched run's window ends, if any."""
    ends = [r.at + window_ms for r in watched(state)]
    return min(ends) if ends else None


def judge(
    state: IncidentState, run: ActionRunRecord, now_ms: int, window_ms: int
) -> ActionOutcome | None:
    """The verdict on ``run``; None while its window is open and the incident is not resolved.
    A run made when nothing fired any more (a retry, or Run pressed while ``resolve_after``
    was waited out) is not credited with the resolve that was coming anyway."""
    resolved = state.resolved_at
    after_the_alerts = run.firing == 0
    if (
        not after_the_alerts
        and state.status == "resolved"
        and resolved is not None
        and run.at <= resolved <= run.at + window_ms
    ):
        return ActionOutcome(
            verdict="helped", at=now_ms, because=f"resolved {span(resolved - run.at)} after the run"
        )
    if now_ms < run.at + window_ms:
        return None
    said: list[str] = []
    helped = worse = False
    if after_the_alerts:
        said.append("nothing was firing at the run")
    if run.firing is not None:
        then, firing = run.firing, state.firing_count
        said.append(f"firing alerts {then} → {firing}")
        helped = then > 0 and (firing == 0 or firing * 2 <= then)
        worse = firing > then
    off = kpi_off(state.kpis)
    if run.kpi_off is not None and off is not None:
        said.append(f"worst KPI off {_off_words(run.kpi_off)} → {_off_words(off)}")
        if math.isinf(run.kpi_off) or math.isinf(off):
            # No percentage to halve: only leaving a zero baseline's badness (back to at or
            # better than baseline) helped, and only entering it made things worse.
            helped = helped or (math.isinf(run.kpi_off) and off == 0)
            worse = worse or not math.isinf(run.kpi_off)
        else:
            helped = helped or (run.kpi_off > 0 and off * 2 <= run.kpi_off)
            worse = worse or off >= run.kpi_off + WORSE_POINTS
    verdict: Verdict = "worse" if worse else "helped" if helped else "no_change"
    window = span(window_ms)
    because = f"{window} after the run: " + ("; ".join(said) or "nothing measured")
    return ActionOutcome(verdict=verdict, at=now_ms, because=because)


def standing(state: IncidentState, window_ms: int) -> dict[str, ActionOutcome]:
    """The verdicts told that still stand. "Helped" is told at once when the incident
    resolved within the window; should it fire again (reopen) before the window's end,
    the fix did not hold: that verdict is taken back, and the run is watched to the
    window's end like any other."""
    runs = {r.action: r for r in state.actions_run if r.status == "ran"}
    kept: dict[str, ActionOutcome] = {}
    for key, told in state.action_outcomes.items():
        run = runs.get(key)
        if (
            run is not None
            and told.verdict == "helped"
            and told.at < run.at + window_ms
            and state.status == "open"
            and run.at < state.first_firing_at <= run.at + window_ms
        ):
            continue
        kept[key] = told
    return kept


def judged(state: IncidentState, now_ms: int, window_ms: int) -> dict[str, ActionOutcome]:
    """The verdicts due now, by action."""
    found = {r.action: judge(state, r, now_ms, window_ms) for r in watched(state)}
    return {key: verdict for key, verdict in found.items() if verdict is not None}
