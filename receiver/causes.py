"""The incident's one ranked list of probable causes, and how far it is trusted. Pure.

Enrichment ranks the causes (``receiver/enrich/changes.py``); the title, the summary, every
sink and the suggested actions read them here and nowhere else, so they tell one story.
A cause scoring below ``CAUSE_CONFIDENCE`` is a guess: the title then says the cause is
unknown, the summary names the best candidate as such, and no action is based on it. 20
is what a deploy scores about 24 minutes before the incident's first alert when it went to
its upstream service, or 19 minutes when it went to another of its services (with the
default 30 m lookback); an earlier one, a change after the start or one to an unrelated
service scores less.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from receiver.store.records import CauseRecord, ChangeRecord, IncidentState

CAUSE_CONFIDENCE = 20.0


def trusted(state: IncidentState) -> Iterator[CauseRecord]:
    """The causes at or above the confidence, best first (enrichment ranks them so), up to
    the first that is not: one that says the best are tied ("one of …") leads, and nothing
    after it is trusted in their place."""
    return itertools.takewhile(lambda c: c.score >= CAUSE_CONFIDENCE, state.probable_causes)


def leading(state: IncidentState) -> CauseRecord | None:
    """The top cause when it is trusted; None when there is none or it is a guess."""
    return next(trusted(state), None)


def change_of(state: IncidentState, cause: CauseRecord) -> ChangeRecord | None:
    """The change a "change" cause stands for."""
    if cause.kind != "change" or cause.change_id is None:
        return None
    return next(
        (
            c
            for c in state.changes
            if c.id == cause.change_id and cause.change_source in (None, c.source)
        ),
        None,
    )


def change_to_detection(state: IncidentState) -> float | None:
    """Seconds from the change the incident names as its probable cause (the leading,
    trusted cause, when it is a change) to the incident's start; None without one, or
    when that change came after the start."""
    cause = leading(state)
    change = change_of(state, cause) if cause is not None else None
    if change is None or change.at > state.started:
        return None
    return (state.started - change.at) / 1000


def span(ms: int | float) -> str:
    """Whole minutes, rounded half up: ``2 min``; under 30 s is ``less than 1 min``. Every
    text that says how long before or after uses it, so no two say it differently."""
    minutes = int(ms / 60_000 + 0.5)
    return f"{minutes} min" if minutes else "less than 1 min"
