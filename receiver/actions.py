"""Suggested actions: the journey's ``actions`` whose conditions the incident meets. Pure.

An action with ``when.change_type`` is suggested when a change of that type touched one of
the incident's services at most ``when.within`` before the incident started (any time
before, without ``within``); its title may name that change's ``{service}``,
``{version}``, ``{previous_version}`` and the incident's group labels (``{region}``...).
An action without conditions is always suggested. Nothing is executed: the journey's
``automation`` level is recorded with each suggestion for what comes later.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from receiver.config import Journey
from receiver.store.records import ChangeRecord

_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill ``{name}`` fields; unknown names stay as written. Only plain names are read,
    so a template cannot reach attributes the way ``str.format`` can."""
    return _FIELD.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def _fits(change: ChangeRecord, change_type: str, within_min: float | None) -> bool:
    if change.type != change_type or not change.overlap or change.minutes_before < 0:
        return False
    return within_min is None or change.minutes_before <= within_min


def suggest(
    journey: Journey, changes: Sequence[ChangeRecord], group_labels: Mapping[str, str]
) -> list[dict[str, Any]]:
    suggested: list[dict[str, Any]] = []
    for action in journey.actions:
        when = action.when
        values = dict(group_labels)
        because = ""
        if when.change_type is not None:
            within = None if when.within is None else when.within / 60
            fitting = [c for c in changes if _fits(c, when.change_type, within)]
            if not fitting:
                continue
            change = min(fitting, key=lambda c: (c.minutes_before, c.id))
            values |= {
                "service": change.service,
                "version": change.version or "the version deployed",
                "previous_version": change.previous_version or "the previous version",
            }
            what = f"{change.type} {change.version} to" if change.version else f"{change.type} of"
            because = (
                f"{what} {change.service} {change.minutes_before:.0f} min before the first alert"
            )
        suggested.append(
            {
                "title": render(action.title, values),
                "because": because,
                "automation": journey.automation,
            }
        )
    return suggested
