"""The scheduler's view of an incident (its score, title, similar incidents, …) is kept
beside the state document that every batch decodes, and reads as one incident."""

from __future__ import annotations

import json

import pytest

from receiver.store.records import VIEW_FIELDS, ScoreFactor
from receiver.store.redis import RedisStore
from tests.store.builders import group, placed
from tests.store.test_contract import WAIT, T, commit

pytestmark = pytest.mark.anyio


async def _raw(store: RedisStore, incident_id: str) -> tuple[dict[str, object], str | None]:
    state, view = await store._r.hmget(store._p + "inc:" + incident_id, "state", "view")
    return json.loads(state), view


async def _decided(store: RedisStore) -> str:
    """An incident the scheduler has decided on once, with a title and a score breakdown."""
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    (claim,) = await store.claim_due(T + WAIT, 10_000, 10)
    stored = await store.load(claim.incident_id)
    assert stored is not None and o.incident_id == claim.incident_id
    state = stored.state.model_copy(
        update={
            "title": "checkout/eu P2 — 1 alert in payment-service",
            "priority": "P2",
            "score": 61.5,
            "score_breakdown": [ScoreFactor(name="severity", value=1.0, reason="critical")],
            "pending": None,
            "notified_at": T + WAIT,
        }
    )
    assert await commit(store, claim, state, stored.version) == "ok"
    return claim.incident_id


async def test_a_batch_reads_and_writes_the_state_without_the_view(store: RedisStore) -> None:
    incident = await _decided(store)
    state, view = await _raw(store, incident)
    assert view is not None
    assert VIEW_FIELDS.isdisjoint(state)
    assert json.loads(view)["title"] == "checkout/eu P2 — 1 alert in payment-service"
    assert state["pending"] is None and state["notified_at"] == T + WAIT

    # A batch changes the counts; the view it never read is still there, whole.
    await store.ingest([group(placed("a"), placed("b"))], 0, T + WAIT + 1)
    loaded = await store.load(incident)
    assert loaded is not None
    st = loaded.state
    assert (st.alert_count, st.title, st.priority, st.score) == (
        2,
        "checkout/eu P2 — 1 alert in payment-service",
        "P2",
        61.5,
    )
    assert [f.name for f in st.score_breakdown] == ["severity"]
    (listed,) = await store.list_incidents("all", None, 10)
    assert (listed.title, listed.alert_count) == (st.title, 2)
    (since,) = await store.incidents_since(0, "checkout", 10)
    assert since.priority == "P2"


async def test_an_incident_stored_before_the_view_reads_and_moves_its_fields(
    store: RedisStore,
) -> None:
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    assert o.incident_id
    key = store._p + "inc:" + o.incident_id
    # As an older receiver wrote it: the scheduler's fields inside the state document.
    state, _ = await _raw(store, o.incident_id)
    await store._r.hset(key, "state", json.dumps({**state, "title": "old", "priority": "P4"}))
    loaded = await store.load(o.incident_id)
    assert loaded is not None and (loaded.state.title, loaded.state.priority) == ("old", "P4")

    (claim,) = await store.claim_due(T + WAIT, 10_000, 10)
    stored = await store.load(claim.incident_id)
    assert stored is not None
    renamed = stored.state.model_copy(update={"title": "new", "priority": "P3"})
    assert await commit(store, claim, renamed, stored.version) == "ok"
    state, view = await _raw(store, o.incident_id)
    assert VIEW_FIELDS.isdisjoint(state) and view is not None
    after = await store.load(o.incident_id)
    assert after is not None and (after.state.title, after.state.priority) == ("new", "P3")
