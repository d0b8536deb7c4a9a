"""Suggested actions: the journey's ``actions`` whose conditions the incident meets. Pure.

An action with ``when.change_type`` is suggested when one of the incident's trusted probable
causes (``receiver/causes.py``, best first) is a change of that type to one of its services
at most ``when.within`` before the incident started (any time before, without
``within``); its title may name that change's ``{service}``, ``{version}``,
``{previous_version}`` (only when the version history in the incident's scope names it)
and the incident's group labels (``{region}``...).
An action without conditions is always suggested. Nothing is executed: the journey's
``automation`` level is recorded with each suggestion for what comes later.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from receiver.causes import change_of, span, trusted
from receiver.config import ActionCondition, Journey
from receiver.outcomes.similar import history
from receiver.store.records import ChangeRecord, IncidentState

_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# What {previous_version} says when no version history in the incident's scope names it:
# never a guess, which could be the bad version itself.
PREVIOUS_UNKNOWN = "its previous version (unknown)"


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill ``{name}`` fields; unknown names stay as written. Only plain names are read,
    so a template cannot reach attributes the way ``str.format`` can."""
    return _FIELD.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def _fits(change: ChangeRecord, change_type: str, within_min: float | None) -> bool:
    if change.type != change_type or not change.overlap or change.minutes_before < 0:
        return False
    return within_min is None or change.minutes_before <= within_min


def _holds(when: ActionCondition, state: IncidentState, priority: str | None) -> bool:
    """The conditions besides the change: one service, the stages, the priority, a KPI."""
    if when.single_service is not None and (len(state.services) == 1) != when.single_service:
        return False
    if when.stages is not None and not set(when.stages) & set(state.stages):
        return False
    if when.priorities is not None and priority not in when.priorities:
        return False
    if when.kpi is not None:
        kpi = next((k for k in state.kpis if k.name == when.kpi.name), None)
        value = kpi.deviation_pct if kpi else None
        below, above = when.kpi.deviation_pct_below, when.kpi.deviation_pct_above
        if value is None or (below is not None and value > below):
            return False
        if above is not None and value < above:
            return False
    return True


def suggest(
    journey: Journey, state: IncidentState, priority: str | None = None
) -> list[dict[str, Any]]:
    """The journey's actions whose conditions hold; ``priority`` is the incident's now
    (its last decided one when not given)."""
    suggested: list[dict[str, Any]] = []
    for action in journey.actions:
        when = action.when
        if not _holds(when, state, priority or state.priority):
            continue
        values = dict(state.group_labels)
        because = ""
        if when.change_type is not None:
            within = None if when.within is None else when.within / 60
            # The best trusted cause that is such a change: the ranking decides, not time.
            change = next(
                (
                    c
                    for cause in trusted(state)
                    if (c := change_of(state, cause)) and _fits(c, when.change_type, within)
                ),
                None,
            )
            if change is None:
                continue
            values |= {
                "service": change.service,
                "version": change.version or "the version deployed",
                "previous_version": change.previous_version or PREVIOUS_UNKNOWN,
            }
            what = f"{change.type} {change.version} to" if change.version else f"{change.type} of"
            because = (
                f"{what} {change.service} {span(change.minutes_before * 60_000)} before the "
                "first alert"
            )
            if change.previous_version is None:
                because += "; the version before it is unknown (" + (
                    f"no earlier {change.type} of {change.service} with a version on "
                    "record in this scope)"
                    if change.version
                    else "the change does not say which version it brought)"
                )
        key = action.id or action.title
        suggested.append(
            {
                "id": key,
                "title": render(action.title, values),
                "because": because,
                "automation": journey.automation,
                "history": history(key, state.similar),
            }
        )
    return suggested
