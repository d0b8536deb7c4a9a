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

The candidates are the journey's ``CANDIDATES`` newest past incidents: created before the
new one (re)opened, resolved, and told to someone (``_past``); the other incidents of an
outage still under way are the same failure, not a past one that was fixed.
A scheduler round reads them once per journey for all the incidents it opens (``Recall``):
a storm of openings would otherwise read and parse that many incidents per opening (on two
cores the scheduler then opened about ten incidents a second; benchmarks/scheduler.py).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from contextlib import aclosing
from dataclasses import dataclass

import anyio

from receiver.act.outcome import VERDICT_WORDS
from receiver.store.base import GroupStore, capped
from receiver.store.records import IncidentState, SimilarRecord

WEIGHTS = {"services": 0.4, "alertnames": 0.4, "stages": 0.2}
MIN_SIMILARITY = 0.3
SHOWN = 5
CANDIDATES = 500
"""The newest past incidents of the journey compared."""
READ_AT_MOST = 20_000
"""Incidents of a journey read, at most, to find its ``CANDIDATES`` newest when blips and
incidents sent nowhere are among them (a flapping alert's blips)."""
_PAGE = 500


def jaccard(a: Collection[str], b: Collection[str]) -> float:
    union = set(a) | set(b)
    return len(set(a) & set(b)) / len(union) if union else 0.0


def similarity(new: IncidentState, past: IncidentState) -> float:
    return _Sets.of(new).similarity(_Sets.of(past))


@dataclass(frozen=True, slots=True)
class _Sets:
    """What an incident is compared on, as sets: taken once per incident, not per pair."""

    services: frozenset[str]
    stages: frozenset[str]
    alertnames: frozenset[str]

    @classmethod
    def of(cls, state: IncidentState) -> _Sets:
        return cls(frozenset(state.services), frozenset(state.stages), frozenset(state.alertnames))

    def similarity(self, past: _Sets) -> float:
        """Of the new incident (``self``) to ``past``: ``similarity``, in the same order of
        operations (the same float)."""
        parts = {
            "services": _jaccard(self.services, past.services),
            "stages": _jaccard(self.stages, past.stages),
        }
        if past.alertnames:
            parts["alertnames"] = _jaccard(self.alertnames, past.alertnames)
        total = sum(WEIGHTS[name] for name in parts)
        return round(sum(WEIGHTS[name] * value for name, value in parts.items()) / total, 3)


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def _past(past: IncidentState, new: IncidentState) -> bool:
    """Whether ``past`` is a past incident to learn from for ``new``: another one, over
    (resolved: one still open is this same outage seen elsewhere, not yet fixed), and one
    somebody was told of. Nobody fixed an incident nobody heard of, whether a blip or one
    routing sent to no sink; and a blip has no alertnames on record (they are taken at a
    notification), so it would look alike on services and stages alone, as alike as the
    same failure."""
    return (
        past.id != new.id
        and past.status == "resolved"
        and past.journey == new.journey
        and past.sent_anywhere
    )


def fixed_by(past: IncidentState) -> str | None:
    """What its people said fixed it, the latest word first."""
    for record in reversed(past.feedback):
        said = (record.fixed_by or "").strip() or (record.action or "").strip()
        if said:
            return said
    return None


def rank(new: IncidentState, candidates: Sequence[IncidentState]) -> list[SimilarRecord]:
    """The past incidents of ``candidates`` most like ``new``."""
    pool = _Pool(candidates)
    return pool.rank(new, pool.past_of(new))


class _Pool:
    """Candidates prepared once to be ranked against many new incidents: each one's sets
    taken once, and those that look alike (a journey's incidents often do) grouped, so that
    a new incident is scored once per distinct look, not once per candidate."""

    def __init__(self, candidates: Sequence[IncidentState]) -> None:
        self.candidates = candidates
        self.created = [past.created_at for past in candidates]
        looks: dict[_Sets, int] = {}
        self.look = [looks.setdefault(_Sets.of(past), len(looks)) for past in candidates]
        self.looks = list(looks)

    def past_of(self, new: IncidentState) -> list[int]:
        """The positions of the candidates ``new`` learns from (``_past``) that were
        created before it (re)opened, in the candidates' order: a reopened incident also
        learns from those since its first opening."""
        opened = new.first_firing_at
        return [
            k
            for k, past in enumerate(self.candidates)
            if self.created[k] < opened and _past(past, new)
        ]

    def rank(self, new: IncidentState, positions: Iterable[int]) -> list[SimilarRecord]:
        """The most similar of the candidates at ``positions`` (in that order among
        equals), as ``rank`` says."""
        mine = _Sets.of(new)
        scores: list[float | None] = [None] * len(self.looks)
        kept: list[tuple[float, int, int, IncidentState]] = []
        for k in positions:
            past = self.candidates[k]
            look = self.look[k]
            score = scores[look]
            if score is None:
                score = scores[look] = mine.similarity(self.looks[look])
            if score >= MIN_SIMILARITY:
                kept.append((-score, -self.created[k], len(kept), past))
        return [
            SimilarRecord(
                id=past.id,
                title=past.title or past.key,
                created_at=past.created_at,
                similarity=-negated,
                fixed_by=fixed_by(past),
                outcomes={key: told.verdict for key, told in past.action_outcomes.items()},
            )
            for negated, _, _, past in heapq.nsmallest(SHOWN, kept)
        ]


async def find(
    store: GroupStore, new: IncidentState, now_ms: int, retention_ms: int
) -> list[SimilarRecord]:
    return await Recall(store, now_ms, retention_ms).find(new)


class Recall:
    """The past incidents one scheduler round compares its openings with: per journey, read
    from the store once, at the first opening that needs them, and shared by the round's
    other openings (they wait for that one read rather than each making their own).

    ``openings``: how many incidents the round may open; that many more are read, so that
    each of them still finds ``CANDIDATES`` past incidents when the newest of the journey
    are the round's own (open, so not compared). Other incidents still open among those
    read (an outage's earlier openings) leave that many fewer to compare."""

    def __init__(
        self, store: GroupStore, now_ms: int, retention_ms: int, openings: int = 0
    ) -> None:
        self._store = store
        self._since = now_ms - retention_ms
        self._limit = CANDIDATES + max(0, openings)
        self._pools: dict[str, _Pool] = {}
        self._locks: dict[str, anyio.Lock] = {}

    async def find(self, new: IncidentState) -> list[SimilarRecord]:
        """The past incidents most like ``new``."""
        journey = new.journey
        async with self._locks.setdefault(journey, anyio.Lock()):
            if journey not in self._pools:
                read = await self._store.incidents_since(self._since, journey, self._limit)
                if len(read) >= self._limit and any(map(_never_past, read)):
                    # Blips and incidents sent nowhere are never anyone's past: they take
                    # no candidate's room (a flapping alert leaves hundreds of blips).
                    read = await self._without_the_never_past(journey)
                self._pools[journey] = _Pool(read)
        pool = self._pools[journey]
        # The store's answer is newest first: the newest CANDIDATES past incidents.
        return pool.rank(new, pool.past_of(new)[:CANDIDATES])

    async def _without_the_never_past(self, journey: str) -> list[IncidentState]:
        """The journey's newest incidents but blips and those sent nowhere, up to the
        limit, among the ``READ_AT_MOST`` newest."""
        found: list[IncidentState] = []
        pages = self._store.iter_incidents_since(self._since, journey, _PAGE)
        async with aclosing(capped(pages, READ_AT_MOST)) as walk:
            async for page in walk:
                found += [state for state in page if not _never_past(state)]
                if len(found) >= self._limit:
                    break
        return found[: self._limit]


def _never_past(state: IncidentState) -> bool:
    """Over, and nobody was told of it (a blip, or routing sent it to no sink): never a
    past incident to learn from (``_past``)."""
    return state.status == "resolved" and not state.sent_anywhere


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
