"""What on-call is told as an incident lives: HA peers' copies of one alert with startsAt
seconds apart change nothing, a severity a reload weighs now is weighed at the alert's next
repeat, and a reopen starts at its own first alert, not at a stale copy of a resolved one nor
at one held back for hours."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from receiver.store.redis import RedisStore
from receiver.topology import rank_state
from tests.conftest import FakeClock, make_alert
from tests.store.builders import STARTS, group, placed
from tests.store.test_contract import WAIT, T, _resolve, _state_of, commit
from tests.support.harness import harness, write_config

pytestmark = pytest.mark.anyio


async def _tell(store: RedisStore, incident_id: str, at: int) -> None:
    """The scheduler's first notification of the incident, at ``at``."""
    (claim,) = [c for c in await store.claim_due(at, 10_000, 100) if c.incident_id == incident_id]
    stored = await store.load(incident_id)
    assert stored is not None
    told = stored.state.model_copy(update={"pending": None, "notified_at": at})
    assert await commit(store, claim, told, stored.version, now=at) == "ok"


async def test_ha_peers_copies_alternating_twice_do_not_move_the_upstream(
    store: RedisStore,
) -> None:
    """README "Since when" / ingest.lua: a firing alert's HA-peer copy with another startsAt
    "is judged by its arrival then" (its first arrival). payment-service fired 1 h before,
    cart 30 min before; both told at T+WAIT. The two Alertmanager peers hold the payment
    alert under startsAt's 20 s apart, and their notifications alternate (as the contract
    test with one flip says they do). After the SECOND flip, the stored changed_at is the
    first flip's (fresh since (c)), which is after the notification and more than 15 min
    after the startsAt: the payment alert is taken for a late one, its service's start
    jumps to the first flip's time, and cart becomes the probable upstream service."""
    s_a = STARTS - timedelta(hours=1)
    (o,) = await store.ingest(
        [
            group(
                placed("a", service="payment-service", starts_at=s_a),
                placed("b", service="cart", starts_at=STARTS - timedelta(minutes=30)),
            )
        ],
        0,
        T,
    )
    assert o.incident_id
    await _tell(store, o.incident_id, T + WAIT)
    weights = {"critical": 1.0}
    before = rank_state(await _state_of(store, o.incident_id), {}, weights, 0.5)
    assert before.services[0].service == "payment-service"

    other_peer = placed("a", service="payment-service", starts_at=s_a + timedelta(seconds=20))
    first_peer = placed("a", service="payment-service", starts_at=s_a)
    await store.ingest([group(other_peer)], 0, T + WAIT + 60_000)  # flip (the existing test)
    await store.ingest([group(first_peer)], 0, T + WAIT + 5 * 60_000)  # and back
    state = await _state_of(store, o.incident_id)
    after = rank_state(state, {}, weights, 0.5)
    assert after.services[0].service == "payment-service", (
        f"upstream flipped to {after.services[0].service}; service_starts={state.service_starts}"
    )


SCORING_BEFORE = "scoring: {severity_weights: {critical: 1.0, warning: 0.5}}\n"
SCORING_AFTER = "scoring: {severity_weights: {critical: 1.0, warning: 0.5, page: 1.0}}\n"


async def test_a_severity_newly_weighed_by_a_reload_rescores_the_live_incident(
    tmp_path: Path, clock: FakeClock
) -> None:
    """README: "changed `scoring` rules re-score every open incident at the scheduler's
    next round: a raise is sent at once". The team pages on ``severity=page``, which the
    rules did not weigh: folded into "other" (default 0.5): 1.0 x 1.0 x 0.5 x 0.8 x 0.85
    = 34, P4. The lead adds ``page: 1.0`` and reloads: 68, P2 (PagerDuty). The alert the
    incident holds keeps only its stage: at its next repeat its severity is weighed, and
    the raise goes out (the class as counted says "other", not which severity it was)."""
    cfg = write_config(tmp_path, SCORING_BEFORE)
    async with harness(cfg, clock) as rx:
        alert = make_alert("payment-service", alertname="PaymentsFailing", severity="page")
        (inc,) = (await rx.post([alert])).json()["incidents"]
        await rx.tick(30)
        assert [(k, i.priority) for k, _, i in rx.sink.sent] == [("open", "P4")]

        cfg.write_text(cfg.read_text().replace(SCORING_BEFORE, SCORING_AFTER))
        r = await rx.client.post("/-/reload")
        assert r.status_code == 200, r.text
        await rx.tick(1)
        # Alertmanager repeats the alert (repeat_interval): its severity is weighed now.
        clock.advance(300)
        assert (await rx.post([alert])).json()["incidents"] == [inc]
        await rx.tick(1)
        detail = await rx.incident(inc)
        severity = next(f for f in detail["score_breakdown"] if f["name"] == "severity")
        assert [(k, i.priority) for k, _, i in rx.sink.sent] == [
            ("open", "P4"),
            ("update", "P2"),
        ], severity


async def test_a_reopen_does_not_start_at_a_stale_copy_of_an_alert_that_resolved(
    store: RedisStore,
) -> None:
    """The incident (alert a, started 2 h before) was told, a resolved, the incident
    resolved. Ten minutes later a new alert c fires; the Alertmanager peer that missed a's
    resolution sends c together with its stale firing copy of a (same startsAt: a late
    copy, which ingest itself counts as a duplicate and which reopens nothing alone). The
    reopened episode must start with c, not two hours back with a: "a reopen is told
    against its own start" (README), and its causes are searched before that start."""
    s_a = STARTS - timedelta(hours=2)
    (o,) = await store.ingest([group(placed("a", starts_at=s_a))], 0, T)
    assert o.incident_id
    await _tell(store, o.incident_id, T + WAIT)
    await store.ingest([group(placed("a", status="resolved", starts_at=s_a))], 0, T + 60_000)
    await _resolve(store, o.incident_id, T + 60_000 + 300_000)

    now = T + 15 * 60_000
    s_c = STARTS + timedelta(minutes=14)  # a minute before it came
    (re,) = await store.ingest(
        [group(placed("a", starts_at=s_a), placed("c", service="cart", starts_at=s_c))], 0, now
    )
    assert (re.incident_id, re.reopened, re.duplicates) == (o.incident_id, True, 1)
    state = await _state_of(store, o.incident_id)
    assert state.started_at == s_c.timestamp() * 1000, (
        f"the reopen starts {(s_c.timestamp() * 1000 - state.started_at) / 60_000:.0f} min "
        "before its first alert"
    )


async def test_a_reopen_by_an_alert_held_back_for_hours_starts_when_it_came(
    store: RedisStore,
) -> None:
    """The incident (alert a) was told and resolved. Ten minutes later an inhibition ends
    and Alertmanager sends cart's alert c, firing under it for three hours: it reopens the
    incident, and it came late as it would have to the episode told ("Since when"): the
    reopen starts when it came, not three hours back, before the episode told had even
    ended (its causes searched there, its time to resolve hours long). So does another
    such alert joining the reopen before it is told; one that started a minute before it
    came moves the start back to it."""
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    assert o.incident_id
    await _tell(store, o.incident_id, T + WAIT)
    await store.ingest([group(placed("a", status="resolved"))], 0, T + 60_000)
    await _resolve(store, o.incident_id, T + 60_000 + 300_000)

    now = T + 15 * 60_000
    held = placed("c", service="cart", starts_at=STARTS - timedelta(hours=3))
    (re,) = await store.ingest([group(held)], 0, now)
    assert (re.incident_id, re.reopened) == (o.incident_id, True)
    state = await _state_of(store, o.incident_id)
    assert state.started_at == now, (
        f"the reopen starts {(now - (state.started_at or now)) / 60_000:.0f} min before it came"
    )
    assert state.service_starts == {"cart": now}

    later = placed("d", service="cart-api", starts_at=STARTS - timedelta(hours=2))
    await store.ingest([group(later)], 0, now + 10_000)
    state = await _state_of(store, o.incident_id)
    assert (state.started_at, state.service_starts["cart-api"]) == (now, now + 10_000)

    fresh = now + 20_000 - 60_000
    recent = placed("e", service="cart-api", starts_at=datetime.fromtimestamp(fresh / 1000, UTC))
    await store.ingest([group(recent)], 0, now + 20_000)
    assert (await _state_of(store, o.incident_id)).started_at == fresh
