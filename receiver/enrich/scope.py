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

from collections.abc import Mapping

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


def named_scope(event: ChangeEvent, scope_labels: Mapping[ScopeField, str]) -> dict[str, str]:
    """The labels ``event``'s own scope names (its fields under their incident labels, then
    its labels), to hold another event against as ``contradiction`` holds an incident."""
    named = {
        label: value for field, label in scope_labels.items() if (value := getattr(event, field))
    }
    for label, value in event.labels.items():
        named.setdefault(label, value)
    return named
