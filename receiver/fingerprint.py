"""The incident key of an alert: its journey plus the values of the journey's group_by labels.

Built from labels only, never annotations, so that re-worded annotations of the same alert
cannot split an incident.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GroupKey:
    """Journey id plus ordered (label, value) pairs; ``text`` is the human form."""

    journey: str
    labels: tuple[tuple[str, str], ...]

    @property
    def text(self) -> str:
        # json.dumps quotes and escapes untrusted label values, so no value can forge
        # the shape of another key.
        inner = ",".join(
            f"{name}={json.dumps(value, ensure_ascii=False)}" for name, value in self.labels
        )
        return f"{self.journey}{{{inner}}}"

    @property
    def digest(self) -> str:
        """Short, stable, URL-safe hash of the key; part of the incident id."""
        return hashlib.sha256(self.text.encode()).hexdigest()[:12]

    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


def group_values(group_by: Sequence[str], labels: Mapping[str, str]) -> tuple[str, ...]:
    """A missing group_by label counts as the empty value, as in Alertmanager's grouping."""
    return tuple([labels.get(name, "") for name in group_by])


def group_key(journey_id: str, group_by: Sequence[str], labels: Mapping[str, str]) -> GroupKey:
    return key_of(journey_id, group_by, group_values(group_by, labels))


def key_of(journey_id: str, group_by: Sequence[str], values: tuple[str, ...]) -> GroupKey:
    return GroupKey(journey_id, tuple(zip(group_by, values, strict=True)))
