"""Institutional memory: the past incidents most like a new one, and what fixed them.

When an incident opens (or reopens), the store's incidents of the same journey from the
last ``store.retention`` are compared with it on three sets, each by Jaccard overlap
(shared items over all items of the two) and weighted:

- services (0.4): what is breaking;
- alertnames (0.4): how it shows — kept on each incident from its first notification;
- stages (0.2): where in the journey.

A past incident without alertnames on record (one from before they were kept) is compared
on services and stages alone, their weights scaled up to 1. The most similar ones, at
least ``MIN_SIMILARITY`` and at most ``SHOWN``, newest first among equals, are kept on the
incident's ``similar`` with what their people said fixed them (the latest ``fixed_by``,
else ``action`` of their feedback) and how the actions that ran there went (the verdicts
of ``receiver/act/outcome.py``). Suggested actions then carry ``history``: "fixed 3 of 4
similar incidents; ran on 2: helped 2".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence

from receiver.act.outcome import VERDICT_WORDS
from receiver.store.base import GroupStore
from receiver.store.records import IncidentState, SimilarRecord

WEIGHTS = {"services": 0.4, "alertnames": 0.4, "stages": 0.2}
MIN_SIMILARITY = 0.3
SHOWN = 5
CANDIDATES = 500
"""The newest past incidents of the journey compared."""


def jaccard(a: Collection[str], b: Collection[str]) -> float:
    union = set(a) | set(b)
    return len(set(a) & set(b)) / len(union) if union else 0.0


def similarity(new: IncidentState, past: IncidentState) -> float:
    parts = {
        "services": jaccard(new.services, past.services),
        "stages": jaccard(new.stages, past.stages),
    }
    if past.alertnames:
        parts["alertnames"] = jaccard(new.alertnames, past.alertnames)
    total = sum(WEIGHTS[name] for name in parts)
    return round(sum(WEIGHTS[name] * value for name, value in parts.items()) / total, 3)


def fixed_by(past: IncidentState) -> str | None:
    """What its people said fixed it, the latest word first."""
    for record in reversed(past.feedback):
        if record.fixed_by or record.action:
            return record.fixed_by or record.action
    return None


def rank(new: IncidentState, candidates: Sequence[IncidentState]) -> list[SimilarRecord]:
    scored = [
        (similarity(new, past), past)
        for past in candidates
        if past.id != new.id and past.journey == new.journey and past.created_at < new.created_at
    ]
    kept = sorted(
        ((score, past) for score, past in scored if score >= MIN_SIMILARITY),
        key=lambda item: (-item[0], -item[1].created_at),
    )
    return [
        SimilarRecord(
            id=past.id,
            title=past.title or past.key,
            created_at=past.created_at,
            similarity=score,
            fixed_by=fixed_by(past),
            outcomes={key: told.verdict for key, told in past.action_outcomes.items()},
        )
        for score, past in kept[:SHOWN]
    ]


async def find(
    store: GroupStore, new: IncidentState, now_ms: int, retention_ms: int
) -> list[SimilarRecord]:
    candidates = await store.incidents_since(now_ms - retention_ms, new.journey, CANDIDATES)
    return rank(new, candidates)


def history(action_id: str, similar: Sequence[SimilarRecord]) -> str | None:
    """ "fixed 3 of 4 similar incidents" for the action ``action_id`` (as their people
    said), and where it ran, how that went: "; ran on 2: helped 2"; None without any."""
    if not similar:
        return None
    fixed = sum(s.fixed_by == action_id for s in similar)
    said = f"fixed {fixed} of {len(similar)} similar incidents"
    verdicts = [s.outcomes[action_id] for s in similar if action_id in s.outcomes]
    if verdicts:
        told = Counter(verdicts)
        parts = [f"{words} {told[v]}" for v, words in VERDICT_WORDS.items() if told[v]]
        said += f"; ran on {len(verdicts)}: " + ", ".join(parts)
    return said
