"""The incident key of an alert: its journey plus the values of the journey's group_by labels.

Built from labels only, never annotations, so that re-worded annotations of the same alert
cannot split an incident.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class GroupKey:
    """Journey id plus ordered (label, value) pairs; ``text`` is the human form and
    ``digest`` a short hash of it, both worked out once (``key_of`` hands out the same
    key for the same values, and every batch asks for them)."""

    journey: str
    labels: tuple[tuple[str, str], ...]
    text: str = field(init=False, compare=False, repr=False)
    digest: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # json.dumps quotes and escapes untrusted label values, so no value can forge
        # the shape of another key.
        inner = ",".join(
            f"{name}={json.dumps(value, ensure_ascii=False)}" for name, value in self.labels
        )
        text = f"{self.journey}{{{inner}}}"
        object.__setattr__(self, "text", text)
        # Short, stable, URL-safe: part of the incident id.
        object.__setattr__(self, "digest", hashlib.sha256(text.encode()).hexdigest()[:12])

    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


_VALUE = json.JSONDecoder()


def key_label_names(text: str) -> list[str]:
    """The label names of a key's ``text`` (``checkout{env="prod",region="eu"}``) in the
    order of the group_by it was made under; [] for a text that does not read so."""
    names: list[str] = []
    at = text.find("{") + 1
    try:
        while 0 < at < len(text) and text[at] != "}":
            eq = text.index("=", at)
            names.append(text[at:eq])
            _, at = _VALUE.raw_decode(text, eq + 1)
            if text[at] == ",":
                at += 1
    except (ValueError, IndexError):
        return []
    return names


def group_values(group_by: Sequence[str], labels: Mapping[str, str]) -> tuple[str, ...]:
    """A missing group_by label counts as the empty value, as in Alertmanager's grouping."""
    return tuple([labels.get(name, "") for name in group_by])


def group_key(journey_id: str, group_by: Sequence[str], labels: Mapping[str, str]) -> GroupKey:
    return key_of(journey_id, group_by, group_values(group_by, labels))


def key_of(journey_id: str, group_by: Sequence[str], values: tuple[str, ...]) -> GroupKey:
    return _key(journey_id, tuple(group_by), values)


# Bounded: label values are untrusted and may be unique per alert.
@functools.lru_cache(maxsize=4096)
def _key(journey_id: str, group_by: tuple[str, ...], values: tuple[str, ...]) -> GroupKey:
    return GroupKey(journey_id, tuple(zip(group_by, values, strict=True)))
