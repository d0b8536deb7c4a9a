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


def past(n: int, rng: random.Random, journey: str = "checkout") -> IncidentState:
    return incident_state(
        n,
        id=f"{journey}-{n}",
        journey=journey,
        created_at=1_000 * n,
        status="resolved",
        notified_at=None if n % 7 == 0 else 1_000 * n,  # every 7th a blip: never similar
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
        and p.created_at < new.created_at
        and p.notified_at is not None
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
    same = {"services": {"payment-service": 1}, "stages": {"payment": 1}}
    history = [
        incident_state(n, id=f"h{n}", created_at=n, notified_at=n, alertnames=["Errors"], **same)
        for n in range(1, 6)
    ]
    storm = [incident_state(n, id=f"s{n}", created_at=100 + n, **same) for n in range(10)]
    store = CountingStore(history + storm)
    first = storm[0]  # the oldest of the storm: the 5 newest are all its siblings
    alone = await find(store, first, 1_000, 1_000)  # type: ignore[arg-type]
    assert alone == []
    recall = Recall(store, 1_000, 1_000, openings=len(storm))  # type: ignore[arg-type]
    assert [s.id for s in await recall.find(first)] == ["h5", "h4", "h3", "h2", "h1"]
    # A later one compares with its 5 newest predecessors (alone it would have had the 4
    # of them among the 5 newest of the journey).
    assert [s.id for s in await recall.find(storm[9])] == ["s8", "s7", "s6", "s5", "s4"]
    assert len(await find(store, storm[9], 1_000, 1_000)) == 4  # type: ignore[arg-type]
