"""Suggested actions: the journey's ``actions`` whose conditions the incident meets. Pure.

An action with ``when.change_type`` is suggested when one of the incident's trusted probable
causes (``receiver/causes.py``, best first) is a change of that type to one of its services
at most ``when.within`` before the incident started (any time before, without
``within``); its title may name that change's ``{service}``, ``{version}``,
``{previous_version}`` (only when the version history in the incident's scope names it)
and the incident's group labels (``{region}``...).
An action without conditions is always suggested. Nothing is executed: the journey's
``automation`` level is recorded with each suggestion for what comes later.

What a Run button and the incident page's confirmation showed of an action travels with
the press (``shown``), so that the press runs what the person confirmed or nothing: the
probable cause may have moved between the two (``changed``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from receiver.act.template import TITLE_FIELD
from receiver.causes import change_of, span, trusted
from receiver.config import Action, ActionCondition, Journey
from receiver.events import SETS_VERSION
from receiver.outcomes.similar import history
from receiver.scoring import deviation
from receiver.store.records import ChangeRecord, IncidentState

# What {previous_version} says when no version history in the incident's scope names it:
# never a guess, which could be the bad version itself.
PREVIOUS_UNKNOWN = "its previous version (unknown)"


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill ``{name}`` fields; unknown names stay as written. Only plain names are read,
    so a template cannot reach attributes the way ``str.format`` can."""
    return TITLE_FIELD.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def _fits(change: ChangeRecord, change_type: str, within_min: float | None) -> bool:
    if change.type != change_type or not change.overlap or change.minutes_before < 0:
        return False
    return within_min is None or change.minutes_before <= within_min


def _replaced_by(change: ChangeRecord, state: IncidentState) -> ChangeRecord | None:
    """The first later deploy or rollback of the same service before the incident started,
    when ``change`` set a version: what it brought runs no more."""
    if change.type not in SETS_VERSION:
        return None
    later = [
        c
        for c in state.changes
        if c.service == change.service
        and c.type in SETS_VERSION
        and c.at > change.at
        and c.minutes_before >= 0
    ]
    return min(later, key=lambda c: c.at, default=None)


def _what(change: ChangeRecord) -> str:
    return (
        f"{change.type} {change.version} of {change.service}"
        if change.version
        else (f"{change.type} of {change.service}")
    )


def _unmet(when: ActionCondition, state: IncidentState, priority: str | None) -> str | None:
    """Why the conditions besides the change do not hold (one service, the stages, the
    priority, a KPI); None when they do."""
    services = state.shown_services  # as told: a blip's service is none of them
    if when.single_service is not None and (len(services) == 1) != when.single_service:
        wanted = "one service" if when.single_service else "several services"
        return f"it needs {wanted}; the incident has {len(services)}"
    if when.stages is not None and not set(when.stages) & set(state.shown_stages):
        return f"only for the stages {', '.join(when.stages)}"
    if when.priorities is not None and priority not in when.priorities:
        return f"only at {', '.join(when.priorities)}; the incident is {priority or 'unscored'}"
    if when.kpi is not None:
        kpi = next((k for k in state.kpis if k.name == when.kpi.name), None)
        value = deviation(kpi) if kpi else None
        below, above = when.kpi.deviation_pct_below, when.kpi.deviation_pct_above
        if kpi is None or value is None:
            return f"the KPI {when.kpi.name} has no deviation now"
        # From a baseline of zero there is no percentage: say how far it went instead.
        off = (
            f"off {value:+.0f}%"
            if kpi.deviation_pct is not None
            else f"at {kpi.baseline:g} → {kpi.value:g} from a zero baseline"
        )
        if below is not None and value > below:
            return f"the KPI {when.kpi.name} is {off}, not below {below:+.0f}%"
        if above is not None and value < above:
            return f"the KPI {when.kpi.name} is {off}, not above {above:+.0f}%"
    return None


@dataclass(frozen=True, slots=True)
class Match:
    """An action whose conditions hold: the values its title and run are filled with (the
    change's ``service``, ``version``, ``previous_version`` and the group labels), why,
    and whether the version before the change is known."""

    action: Action
    values: dict[str, str]
    because: str
    previous_known: bool

    @property
    def key(self) -> str:
        return action_key(self.action)


def action_key(action: Action) -> str:
    """How feedback, history and runs name an action: its id, else its title."""
    return action.id or action.title


def _change(when: ActionCondition, state: IncidentState) -> ChangeRecord | str:
    """The best trusted cause that is a change the condition accepts (the ranking decides,
    not time), or why there is none."""
    assert when.change_type is not None
    within = None if when.within is None else when.within / 60
    kind = when.change_type
    replaced: ChangeRecord | None = None
    for cause in trusted(state):
        change = change_of(state, cause)
        if change is None or not _fits(change, kind, within):
            continue
        later = _replaced_by(change, state)
        if later is None:
            return change
        replaced = replaced or change
    if replaced is not None:
        # Rolling back what no longer runs would put back what runs already.
        later = _replaced_by(replaced, state)
        assert later is not None
        return (
            f"the {_what(replaced)} no longer runs: {_what(later)} replaced it "
            f"{span(later.at - replaced.at)} later, before the incident started"
        )
    seen = [c for c in state.changes if c.type == kind and c.overlap and c.minutes_before >= 0]
    if not seen:
        # Changes scoped to another env or region never reach the incident (events.scope_labels).
        return f"no {kind} in the incident's scope before it started"
    if within is not None and all(c.minutes_before > within for c in seen):
        nearest = min(seen, key=lambda c: c.minutes_before)
        return (
            f"the {kind} of {nearest.service} was {span(nearest.minutes_before * 60_000)} before "
            f"the first alert, more than {span(within * 60_000)}"
        )
    return f"no {kind} is a trusted probable cause of the incident"


def incident_values(state: IncidentState) -> dict[str, str]:
    """What an action's templates may name of the incident itself, whatever the change:
    its group labels, and its service when it has one alone."""
    values = dict(state.group_labels)
    if len(shown := state.shown_services) == 1:
        values["service"] = shown[0]
    return values


def match(action: Action, state: IncidentState, priority: str | None = None) -> Match | str:
    """``action`` matched against the incident now, or why its conditions do not hold."""
    when = action.when
    unmet = _unmet(when, state, priority or state.priority)
    if unmet is not None:
        return unmet
    values = incident_values(state)
    if when.change_type is None:
        return Match(action, values, "", previous_known=True)
    change = _change(when, state)
    if isinstance(change, str):
        return change
    values["service"] = change.service
    if change.version:
        values["version"] = change.version
    if change.previous_version:
        values["previous_version"] = change.previous_version
    what = f"{change.type} {change.version} to" if change.version else f"{change.type} of"
    because = (
        f"{what} {change.service} {span(change.minutes_before * 60_000)} before the first alert"
    )
    if change.previous_version is None:
        because += "; the version before it is unknown (" + (
            f"no earlier {change.type} of {change.service} with a version on record in this scope)"
            if change.version
            else "the change does not say which version it brought)"
        )
    return Match(action, values, because, previous_known=change.previous_version is not None)


def matches(journey: Journey, state: IncidentState, priority: str | None = None) -> list[Match]:
    """The journey's actions whose conditions hold, in the file's order."""
    return [m for a in journey.actions if isinstance(m := match(a, state, priority), Match)]


def suggest(
    journey: Journey, state: IncidentState, priority: str | None = None
) -> list[dict[str, Any]]:
    """The journey's actions whose conditions hold; ``priority`` is the incident's now
    (its last decided one when not given)."""
    suggested: list[dict[str, Any]] = []
    for found in matches(journey, state, priority):
        shown = {
            "version": "the version deployed",
            "previous_version": PREVIOUS_UNKNOWN,
        } | found.values
        suggested.append(
            {
                "id": found.key,
                "title": render(found.action.title, shown),
                "because": found.because,
                "automation": journey.automation,
                "runnable": found.action.run is not None,
                "history": history(found.key, state.similar),
            }
        )
    return suggested


def shown_by_id(
    journey: Journey, state: IncidentState, priority: str | None = None
) -> dict[str, str]:
    """``shown`` of each suggested action, by its id (``action_key``)."""
    return {found.key: shown(found.values) for found in matches(journey, state, priority)}


# Each compared on its own, so that a refused press can say which moved; the rest of the
# values (the group labels, fixed for an incident) as one.
_CHANGE_VALUES = ("service", "version", "previous_version")
_Part = str | None | list[tuple[str, str]]


def shown(values: Mapping[str, str]) -> str:
    """What a Run button or a confirmation carries of the action it shows, made of the
    action's values (``Match.values``: the change's service and versions, the group
    labels): a short digest of each value of the change and one of the group labels,
    35 characters however many labels there are."""
    return ".".join(_digest(part) for _, part in _parts(values))


def changed(then: str, values: Mapping[str, str]) -> list[str]:
    """The names of the values that differ from those ``then`` (a ``shown``) was made of."""
    pieces = then.split(".")
    return [
        name
        for at, (name, part) in enumerate(_parts(values))
        if at >= len(pieces) or pieces[at] != _digest(part)
    ]


def _parts(values: Mapping[str, str]) -> list[tuple[str, _Part]]:
    labels = sorted((k, v) for k, v in values.items() if k not in _CHANGE_VALUES)
    return [*((name, values.get(name)) for name in _CHANGE_VALUES), ("group labels", labels)]


def _digest(part: _Part) -> str:
    return hashlib.sha256(json.dumps(part).encode()).hexdigest()[:8]
