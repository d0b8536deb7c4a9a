"""Similar incidents at scale: a scheduler round reads the past incidents once per journey
for all its openings (``Recall``), and ranks them as ``rank`` always did."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from receiver.outcomes import similar
from receiver.outcomes.similar import MIN_SIMILARITY, SHOWN, Recall, find, rank, similarity
from receiver.store.records import FeedbackRecord, IncidentState, SimilarRecord
from tests.support.incidents import incident_state

pytestmark = pytest.mark.anyio
SERVICES = ("payment-service", "payments-db", "cart-api", "checkout-service")
NAMES = ("Errors", "Latency", "Saturation")
STAGES = ("payment", "cart", "checkout")
TOLD = {"log": {"state": "pending"}}
"""``sinks`` of an incident people were told of (through the log sink)."""


SAME = {"services": {"payment-service": 1}, "stages": {"payment": 1}}
"""What every incident of the storm tests has, so that each is as alike as the others."""


def over(n: int, **fields: object) -> IncidentState:
    """A past incident ``h<n>`` created at ``n``: resolved, and people were told of it."""
    return incident_state(
        n, id=f"h{n}", created_at=n, status="resolved", notified_at=n, sinks=TOLD,
        **SAME, **fields,
    )  # fmt: skip


def past(n: int, rng: random.Random, journey: str = "checkout") -> IncidentState:
    blip = n % 7 == 0  # every 7th a blip, every 9th routed to no sink: never similar
    return incident_state(
        n,
        id=f"{journey}-{n}",
        journey=journey,
        created_at=1_000 * n,
        first_firing_at=1_000 * n,
        status="open" if n % 5 == 0 else "resolved",  # every 5th still open: not past yet
        notified_at=None if blip else 1_000 * n,
        sinks={} if blip or n % 9 == 0 else TOLD,
        services=dict.fromkeys(rng.sample(SERVICES, rng.randint(1, 3)), 1),
        stages=dict.fromkeys(rng.sample(STAGES, rng.randint(1, 2)), 1),
        alertnames=sorted(rng.sample(NAMES, rng.randint(0, 2))),
        title=f"incident {n}",
        feedback=[FeedbackRecord(at=1, fixed_by="restart")] if n % 4 == 0 else [],
    )


def reference(new: IncidentState, candidates: Sequence[IncidentState]) -> list[SimilarRecord]:
    """``rank`` as it was before candidates were grouped: every pair scored."""
    scored = [
        (similarity(new, p), p)
        for p in candidates
        if p.id != new.id
        and p.journey == new.journey
        and p.created_at < new.first_firing_at
        and p.status == "resolved"
        and p.sinks
    ]
    kept = sorted(
        ((s, p) for s, p in scored if s >= MIN_SIMILARITY),
        key=lambda item: (-item[0], -item[1].created_at),
    )
    return [
        SimilarRecord(
            id=p.id,
            title=p.title or p.key,
            created_at=p.created_at,
            similarity=s,
            fixed_by=similar.fixed_by(p),
            outcomes={},
        )
        for s, p in kept[:SHOWN]
    ]


def test_grouped_ranking_is_the_pairwise_ranking() -> None:
    rng = random.Random(15)
    for _ in range(30):
        candidates = [past(n, rng) for n in range(rng.randint(0, 80), 0, -1)]
        # Equal creation times too: the order among equals is the candidates' order.
        candidates += [past(0, rng) for _ in range(3)]
        new = past(100, rng)
        assert rank(new, candidates) == reference(new, candidates)


class CountingStore:
    def __init__(self, states: list[IncidentState]) -> None:
        self.states = sorted(states, key=lambda s: -s.created_at)
        self.reads: list[tuple[str | None, int]] = []

    async def incidents_since(
        self, since_ms: int, journey: str | None, limit: int
    ) -> list[IncidentState]:
        self.reads.append((journey, limit))
        found = [s for s in self.states if s.created_at >= since_ms]
        return [s for s in found if journey in (None, s.journey)][:limit]


async def test_a_round_reads_each_journey_once_and_finds_what_each_opening_would() -> None:
    rng = random.Random(5)
    history = [past(n, rng) for n in range(1, 60)] + [past(n, rng, "browse") for n in range(60)]
    storm = [past(n, rng) for n in range(200, 220)] + [past(300, rng, "browse")]
    store = CountingStore(history + storm)
    recall = Recall(store, 10_000_000, 10_000_000, openings=len(storm))  # type: ignore[arg-type]
    found = [await recall.find(s) for s in storm]
    assert sorted(store.reads) == [("browse", 500 + 21), ("checkout", 500 + 21)]
    for new, got in zip(storm, found, strict=True):
        assert got == await find(store, new, 10_000_000, 10_000_000)  # type: ignore[arg-type]
        assert got  # the seeded history always has a look-alike


async def test_a_storm_bigger_than_the_candidates_still_finds_the_history(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(similar, "CANDIDATES", 5)
    history = [over(n, alertnames=["Errors"]) for n in range(1, 6)]
    # The round's openings, the newest of the journey: open, so never each other's past.
    storm = [
        incident_state(n, id=f"s{n}", created_at=100 + n, first_firing_at=100 + n, **SAME)
        for n in range(10)
    ]
    store = CountingStore(history + storm)
    first = storm[0]  # the oldest of the storm: the 5 newest are all its siblings
    alone = await find(store, first, 1_000, 1_000)  # type: ignore[arg-type]
    assert alone == []
    recall = Recall(store, 1_000, 1_000, openings=len(storm))  # type: ignore[arg-type]
    for opening in (first, storm[9]):
        assert [s.id for s in await recall.find(opening)] == ["h5", "h4", "h3", "h2", "h1"]


async def test_an_opening_compares_only_the_newest_past_incidents(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(similar, "CANDIDATES", 5)
    history = [over(n) for n in range(1, 9)]
    new = incident_state(0, id="new", created_at=100, first_firing_at=100, **SAME)
    store = CountingStore([*history, new])
    recall = Recall(store, 1_000, 1_000, openings=4)  # type: ignore[arg-type]
    # All 8 are read (5 + 4 openings); the 3 oldest are as alike, but not compared.
    assert [s.id for s in await recall.find(new)] == ["h8", "h7", "h6", "h5", "h4"]
    assert store.reads == [("checkout", 9)]
