"""Where a change event applies, and whether that includes an incident.

An event's scope is its ``environment`` and ``region`` and its ``labels`` (``cluster``,
``namespace``...). ``events.scope_labels`` says which incident label each event field is
compared with (by default ``environment`` with ``env`` and ``region`` with ``region``); an
event label is compared with the incident's label of the same name. The event is out of
the incident's scope when any of them names a value that contradicts the incident's group
labels. What the event leaves unsaid, or the incident does not group by, contradicts
nothing: an event with no scope applies everywhere. Values are compared as given
(``prod`` and ``production`` are different environments).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from receiver.config.receiver_yaml import ScopeField
from receiver.events import ChangeEvent


def contradiction(
    event: ChangeEvent,
    group_labels: Mapping[str, str],
    scope_labels: Mapping[ScopeField, str],
) -> str | None:
    """Why ``event`` is out of the incident's scope (``environment staging, not prod``), or
    None when it is in scope."""
    # Each field and each label is checked on its own: a label of the same name as a
    # field's (``labels: {env: prod}`` beside ``environment: staging``) must not hide it.
    said = [(label, getattr(event, field)) for field, label in scope_labels.items()]
    for label, value in [*said, *event.labels.items()]:
        theirs = group_labels.get(label)
        if value and theirs and value != theirs:
            return f"{label} {value}, not {theirs}"
    return None


# Event labels that say where a change ran, beside the incident's own group labels: a
# deploy's other labels (its commit, its pipeline run) differ from one deploy to the next
# and say nothing of place.
PLACE_LABELS = frozenset({"cluster", "namespace"})


def named_scope(
    event: ChangeEvent, scope_labels: Mapping[ScopeField, str], places: Collection[str]
) -> dict[str, str]:
    """Where ``event``'s own scope says it ran (its fields under their incident labels, then
    those of its labels named in ``places``), to hold another event against as
    ``contradiction`` holds an incident."""
    named = {
        label: value for field, label in scope_labels.items() if (value := getattr(event, field))
    }
    for label, value in event.labels.items():
        if label in places:
            named.setdefault(label, value)
    return named
