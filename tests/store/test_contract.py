"""The store contract, run against memory:// and a real redis-server alike."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import orjson
import pytest

from receiver.errors import StoreUnavailable
from receiver.store import StoreSettings, open_store
from receiver.store import redis as redis_store
from receiver.store.base import Annotation, Claim
from receiver.store.deliveries import Job
from receiver.store.records import IncidentState, Notified, TimelineEntry
from receiver.store.redis import RedisStore
from receiver.topology import rank, rank_state
from tests.store.builders import STARTS, group, placed

WAIT = 30_000
DAY_MS = 86_400_000
pytestmark = pytest.mark.anyio

T = 1_776_500_000_000


async def test_one_incident_per_key_and_dedup_by_fingerprint(store: RedisStore) -> None:
    first = await store.ingest(
        [
            group(placed("a"), placed("b", service="cart", stage="cart")),
            group(placed("c"), region="us"),
        ],
        0,
        T,
    )
    assert [o.opened for o in first] == [True, True]
    eu, us = first[0].incident_id, first[1].incident_id
    assert eu and us and eu != us
    # Numbered from when the key's first incident opened, in seconds.
    assert eu.startswith("checkout-") and eu.endswith(f"-{T // 1000}")

    again = await store.ingest(
        [group(placed("a"), placed("b", service="cart", stage="cart"))], 0, T + 5
    )
    assert again[0].incident_id == eu
    assert (again[0].opened, again[0].changed, again[0].duplicates) == (False, 0, 2)

    stored = await store.load(eu)
    assert stored is not None
    st = stored.state
    assert (st.alert_count, st.firing_count) == (2, 2)
    assert sorted(st.services) == ["cart", "payment-service"]
    assert sorted(st.stages) == ["cart", "payment"]
    assert st.group_labels == {"env": "prod", "region": "eu"}
    assert st.key == 'checkout{env="prod",region="eu"}'
    assert (st.firing_classes, st.firing_services) == (
        {'["payment", "critical", ""]': 1, '["cart", "critical", ""]': 1},
        {"payment-service": 1, "cart": 1},
    )
    page = await store.load_alerts(eu, 10)
    assert (page.total, sorted(a.fp for a in page.alerts)) == (2, ["a", "b"])
    assert page.alerts[0].labels["service"] in ("payment-service", "cart")


async def _ranked_whole(store: RedisStore, incident_id: str) -> list[str]:
    """The incident's alerts as ranking every one of them orders them (the test's own)."""
    metas = await store._r.hgetall(f"{store._p}am:{incident_id}")
    fields = {fp: meta.split("|") for fp, meta in metas.items()}
    return sorted(fields, key=lambda fp: (fields[fp][0] != "firing", -int(fields[fp][4]), fp))


def _small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 10 and a list of the 40 latest firings: a few hundred alerts make an
    incident 'large'."""
    monkeypatch.setattr(redis_store, "_ALERTS_SCANNED", 10)
    monkeypatch.setattr(redis_store, "_RECENT_KEPT", 40)


async def test_a_page_of_a_big_incident_is_chosen_from_its_latest_firings(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the alerts did (fired, resolved, fired again; calls sharing a millisecond
    or stamped by replicas whose clocks disagree), each page is the one ranking all of
    them gives; the list answers whenever it proves the page, and stays trimmed."""
    _small_pages(monkeypatch)
    rng = random.Random(15)
    fps = [f"fp{i:03d}" for i in range(300)]
    (o,) = await store.ingest([group(*(placed(fp) for fp in fps[:200]))], 0, T)
    assert o.incident_id
    answered = []
    from_list = store._recent_alerts

    async def spied(*args: Any) -> Any:
        chosen = await from_list(*args)
        answered.append(chosen is not None)
        return chosen

    monkeypatch.setattr(store, "_recent_alerts", spied)
    now = T
    for step in range(80):
        # Some calls share a millisecond; some come from a replica whose clock is behind.
        now += rng.choice((0, 1, 7, -3))
        firing = rng.random() < 0.6
        changes = [
            placed(
                fp,
                status="firing" if firing == (rng.random() < 0.8) else "resolved",
                # A new startsAt: firing again, not a late copy of an old notification.
                starts_at=STARTS + timedelta(seconds=step),
            )
            for fp in rng.sample(fps, rng.randint(1, 25))
        ]
        await store.ingest([group(*changes)], 0, now)
        ranked = await _ranked_whole(store, o.incident_id)
        for limit in (5, 15):
            page = await store.load_alerts(o.incident_id, limit)
            assert [a.fp for a in page.alerts] == ranked[:limit]
        assert await store._r.llen(f"{store._p}rc:{o.incident_id}") <= 40 + 40 // 5
    # Both ways were taken: the list proved pages, and pages it could not prove were ranked
    # from all the alerts.
    assert any(answered) and not all(answered)


async def test_an_alert_firing_again_or_stamped_by_a_clock_behind_keeps_its_rank(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _small_pages(monkeypatch)
    (o,) = await store.ingest([group(*(placed(f"a{i:03d}") for i in range(200)))], 0, T)
    assert o.incident_id
    # a000 resolves, newer alerts come, and it fires again: it leads the page.
    await store.ingest([group(placed("a000", status="resolved"))], 0, T + 1)
    await store.ingest([group(*(placed(f"b{i:03d}") for i in range(20)))], 0, T + 50)
    again = STARTS + timedelta(minutes=5)
    await store.ingest([group(placed("a000", starts_at=again))], 0, T + 100)
    ranked = await _ranked_whole(store, o.incident_id)
    assert ranked[0] == "a000"
    assert [a.fp for a in (await store.load_alerts(o.incident_id, 5)).alerts] == ranked[:5]
    # z comes through a replica 3 ms ahead; the 65 that follow through one whose clock is
    # behind push it off the list: they are stamped after it all the same.
    await store.ingest([group(placed("z"))], 0, T + 103)
    await store.ingest([group(*(placed(f"c{i:03d}") for i in range(45)))], 0, T + 101)
    await store.ingest([group(*(placed(f"d{i:03d}") for i in range(20)))], 0, T + 102)
    ranked = await _ranked_whole(store, o.incident_id)
    assert ranked.index("z") > ranked.index("d019")
    assert [a.fp for a in (await store.load_alerts(o.incident_id, 5)).alerts] == ranked[:5]
    # a001 fires with a new startsAt, its resolution never having come (the receiver was
    # down): a new episode, news now, and it leads the page as one that fired again.
    await store.ingest([group(placed("a001", starts_at=again))], 0, T + 200)
    (first,) = (await store.load_alerts(o.incident_id, 1)).alerts
    assert (first.fp, first.changed_at) == ("a001", T + 200)


async def test_an_incident_from_before_its_list_gets_one_with_a_lifetime(
    store: RedisStore,
) -> None:
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    recent = f"{store._p}rc:{o.incident_id}"
    await store._r.delete(recent)  # stored by a version without the list
    await store.ingest([group(placed("b"))], 0, T + 1)  # a call that renews nothing
    assert await store._r.lrange(recent, 0, -1) == ["b"]
    assert 0 < await store._r.pttl(recent) <= store.settings.retention_ms


async def test_a_page_of_a_big_incident_is_chosen_chunk_by_chunk(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_store, "_ALERTS_SCANNED", 25)
    fps = [f"fp{i:03d}" for i in range(300)]
    (o,) = await store.ingest([group(*(placed(fp) for fp in fps[:150]))], 0, T)
    assert o.incident_id
    await store.ingest([group(*(placed(fp) for fp in fps[150:]))], 0, T + 5)
    await store.ingest([group(*(placed(fp, status="resolved") for fp in fps[:40]))], 0, T + 9)
    await store.ingest([group(*(placed(fp, status="resolved") for fp in fps[290:]))], 0, T + 12)
    client, scans = store._r, []
    hscan = client.hscan

    async def counted(*args: Any, **kwargs: Any) -> Any:
        scans.append(args)
        return await hscan(*args, **kwargs)

    monkeypatch.setattr(client, "hscan", counted)
    # Without its list of latest firings (an incident stored before there was one), it is
    # ranked whole.
    await client.delete(f"{store._p}rc:{o.incident_id}")
    page = await store.load_alerts(o.incident_id, 120)
    # Firing first, the latest to change first (then by fingerprint), read 25 at a time.
    assert [a.fp for a in page.alerts] == fps[150:270]
    assert page.total == 300
    assert len(scans) >= 5
    # A page smaller than the chunks: trimmed to it as it goes, the same page.
    assert [a.fp for a in (await store.load_alerts(o.incident_id, 30)).alerts] == fps[150:180]
    whole = await store.load_alerts(o.incident_id, 1000)
    assert [a.fp for a in whole.alerts] == fps[150:290] + fps[40:150] + fps[290:] + fps[:40]

    # The scan went on where the hash was laid out otherwise (a failover, the slot moved)
    # and a chunk of fields never came: seen to be short, the hash is read whole.
    scans.clear()

    async def skipping(*args: Any, **kwargs: Any) -> Any:
        cursor, found = await hscan(*args, **kwargs)
        scans.append(args)
        return cursor, ({} if len(scans) == 2 else found)

    monkeypatch.setattr(client, "hscan", skipping)
    assert [a.fp for a in (await store.load_alerts(o.incident_id, 1000)).alerts] == [
        a.fp for a in whole.alerts
    ]

    # An alert dropped while its page was chosen (its body gone) is left out of it.
    async def dropping(*args: Any, **kwargs: Any) -> Any:
        await client.hdel(f"{store._p}ab:{o.incident_id}", "fp150")
        return await hscan(*args, **kwargs)

    monkeypatch.setattr(client, "hscan", dropping)
    page = await store.load_alerts(o.incident_id, 120)
    assert [a.fp for a in page.alerts] == fps[151:270]


async def test_duplicate_batch_does_not_change_the_version(store: RedisStore) -> None:
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    assert o.incident_id
    before = await store.load(o.incident_id)
    await store.ingest([group(placed("a"))], 0, T + 1)
    after = await store.load(o.incident_id)
    assert before and after and before.version == after.version


async def test_resolutions_nobody_knows_open_nothing(store: RedisStore) -> None:
    (o,) = await store.ingest([group(placed("x", status="resolved"))], 0, T)
    assert (o.incident_id, o.ignored) == (None, 1)
    assert await store.list_incidents("all", None, 10) == []


async def test_status_changes_count_and_stale_firing_copies_are_ignored(store: RedisStore) -> None:
    (o,) = await store.ingest([group(placed("a"), placed("b"))], 0, T)
    assert o.incident_id
    await store.ingest([group(placed("a", status="resolved"))], 0, T + 10)
    # A retry of the old firing notification arriving after the resolution changes nothing.
    (late,) = await store.ingest([group(placed("a"))], 0, T + 20)
    assert late.duplicates == 1
    stored = await store.load(o.incident_id)
    assert stored and stored.state.firing_count == 1
    assert (stored.state.last_change_at, stored.state.firing_services) == (
        T + 10,
        {"payment-service": 1},
    )
    page = await store.load_alerts(o.incident_id, 10)
    # Firing first, then the latest to change.
    assert [(a.fp, a.status, a.changed_at) for a in page.alerts] == [
        ("b", "firing", T),
        ("a", "resolved", T + 10),
    ]
    assert (await store.load_alerts(o.incident_id, 1)).total == 2


async def test_claims_are_exclusive_and_leased(store: RedisStore) -> None:
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    assert await store.claim_due(T + WAIT - 1, 10_000, 10) == []
    (claim,) = await store.claim_due(T + WAIT, 10_000, 10)
    assert (claim.incident_id, claim.due_ms) == (o.incident_id, T + WAIT)
    assert await store.claim_due(T + WAIT + 9_999, 10_000, 10) == []
    (again,) = await store.claim_due(T + WAIT + 10_000, 10_000, 10)
    assert again.token != claim.token
    stored = await store.load(claim.incident_id)
    assert stored is not None
    # The first holder's lease ran out: its commit is refused, the new holder's is taken.
    assert await commit(store, claim, stored.state, stored.version) == "lost"
    assert await commit(store, again, stored.state, stored.version) == "ok"
    assert await store.claim_due(T + 10**9, 10_000, 10) == []


async def test_a_round_claims_more_incidents_than_one_lua_call_can_spread(
    store: RedisStore,
) -> None:
    # 2,500 due (incidents that are gone by now are claimed and let go all the same): more
    # than the script passes to one Redis command.
    await store._r.zadd(store._due, {f"gone-{i}": T + i for i in range(2_500)})
    await store._r.hset(store._claims, "gone-7", "other|" + str(T + 10**6))
    claims = await store.claim_due(T + 10_000, 10_000, 5_000)
    assert sorted(c.incident_id for c in claims) == sorted(
        f"gone-{i}" for i in range(2_500) if i != 7
    )
    assert {c.due_ms for c in claims if c.incident_id == "gone-2499"} == {T + 2_499}
    # Every one is held until its lease ends, and the one held elsewhere until that ends.
    assert await store.claim_due(T + 19_999, 10_000, 5_000) == []
    assert await store._r.zscore(store._due, "gone-7") == T + 10**6
    assert len(await store.claim_due(T + 20_000, 10_000, 5_000)) == 2_499


async def test_hasten_brings_every_later_due_time_forward_and_none_back(
    store: RedisStore,
) -> None:
    # More than one round trip moves (1,000 each); one is due earlier already.
    await store._r.zadd(store._due, {f"i-{i}": T + 1_000 + i for i in range(2_500)})
    await store._r.zadd(store._due, {"early": T - 5})
    assert await store.hasten(T) == 2_500
    assert await store._r.zscore(store._due, "early") == T - 5
    assert {s for _, s in await store._r.zrange(store._due, 0, -1, withscores=True)} == {
        T - 5,
        T,
    }
    assert await store.hasten(T) == 0
    # Claimed incidents made due now stay with their holder until their lease ends.
    assert len(await store.claim_due(T, 10_000, 5_000)) == 2_501
    assert await store.hasten(T + 1) == 2_501
    assert await store.claim_due(T + 1, 10_000, 5_000) == []
    assert len(await store.claim_due(T + 10_000, 10_000, 5_000)) == 2_501


async def commit(
    store: RedisStore,
    claim: Claim,
    state: IncidentState,
    version: int,
    guard: dict[str, str | int | None] | None = None,
    next_due: int | None = None,
    now: int = T + WAIT,
) -> str:
    return await store.commit(claim, version, state, guard or {}, next_due, [], now)


async def test_a_batch_that_breaks_the_guard_makes_the_commit_stale(store: RedisStore) -> None:
    await store.ingest([group(placed("a"))], 0, T)
    await store.ingest([group(placed("a", status="resolved"))], 0, T + 1)
    (claim,) = await store.claim_due(T + WAIT, 10_000, 10)
    stored = await store.load(claim.incident_id)
    assert stored is not None
    assert (stored.state.firing_count, stored.state.last_change_at) == (0, T + 1)
    resolved = stored.state.model_copy(update={"status": "resolved", "resolved_at": T + WAIT})
    guard: dict[str, str | int | None] = {"firing_count": 0, "last_change_at": T + 1}
    await store.ingest([group(placed("b", service="cart"))], 0, T + WAIT + 1)
    assert await commit(store, claim, resolved, stored.version, guard) == "stale"
    fresh = await store.load(claim.incident_id)
    assert fresh and (fresh.state.status, fresh.state.firing_count) == ("open", 1)


async def test_batches_that_leave_the_guard_alone_are_merged_and_looked_at_again(
    store: RedisStore,
) -> None:
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    (claim,) = await store.claim_due(T + WAIT, 10_000, 10)
    stored = await store.load(claim.incident_id)
    assert stored is not None
    notified = stored.state.model_copy(update={"pending": None, "notified_at": T + WAIT})
    await store.ingest([group(placed("b", service="cart"))], 0, T + WAIT + 1)
    guard: dict[str, str | int | None] = {"status": "open", "pending": "open"}
    assert await commit(store, claim, notified, stored.version, guard, None, T + WAIT + 2) == "ok"
    merged = await store.load(claim.incident_id)
    assert merged is not None
    # The scheduler's fields from the commit, the batch's counts from the ingest...
    assert (merged.state.notified_at, merged.state.pending) == (T + WAIT, None)
    assert (merged.state.alert_count, sorted(merged.state.firing_services)) == (
        2,
        ["cart", "payment-service"],
    )
    # ...and since the decision did not see that batch, it is due again at once.
    assert [c.incident_id for c in await store.claim_due(T + WAIT + 2, 1, 10)] == [o.incident_id]


async def test_a_commit_over_an_unchanged_incident_keeps_its_next_due(store: RedisStore) -> None:
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    (claim,) = await store.claim_due(T + WAIT, 10_000, 10)
    stored = await store.load(claim.incident_id)
    assert stored is not None
    assert await commit(store, claim, stored.state, stored.version, None, T + 99_000) == "ok"
    assert await store.claim_due(T + 98_999, 10_000, 10) == []
    assert [c.incident_id for c in await store.claim_due(T + 99_000, 10_000, 10)] == [o.incident_id]


async def test_a_held_claim_is_not_taken_when_a_batch_makes_it_due_again(
    store: RedisStore,
) -> None:
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    (first,) = await store.claim_due(T + WAIT, 10_000, 10)
    stored = await store.load(first.incident_id)
    assert stored is not None
    notified = stored.state.model_copy(update={"pending": None, "notified_at": T + WAIT})
    assert await commit(store, first, notified, stored.version) == "ok"

    await store.ingest([group(placed("b", service="cart"))], 0, T + WAIT + 1)
    (a,) = await store.claim_due(T + WAIT + 1, 30_000, 10)  # replica A, deciding slowly
    held = await store.load(a.incident_id)
    assert held is not None
    await store.ingest([group(placed("c", service="db"))], 0, T + WAIT + 2)  # due again now
    assert await store.claim_due(T + WAIT + 3, 30_000, 10) == []  # replica B leaves it to A
    assert await commit(store, a, held.state, held.version, now=T + WAIT + 4) == "ok"
    # A's decision did not see c: it is due again at once, for whoever comes next.
    assert [c.incident_id for c in await store.claim_due(T + WAIT + 5, 1, 10)] == [o.incident_id]


async def test_release_gives_the_claim_back(store: RedisStore) -> None:
    await store.ingest([group(placed("a"))], 0, T)
    (claim,) = await store.claim_due(T + WAIT, 60_000, 10)
    await store.release(claim, T + WAIT + 1)
    (again,) = await store.claim_due(T + WAIT + 1, 60_000, 10)
    assert again.incident_id == claim.incident_id


async def test_a_claim_whose_reply_was_lost_is_the_next_claims_answer(store: RedisStore) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    (o,) = await store.ingest([group(placed("a"))], 0, T)
    run = store._claim

    async def ran_then_lost(**kwargs: Any) -> Any:
        await run(**kwargs)
        raise RedisConnectionError("connection reset by peer")

    store._claim = ran_then_lost  # type: ignore[method-assign]
    with pytest.raises(StoreUnavailable):
        await store.claim_due(T + WAIT, 60_000, 10)
    store._claim = run  # type: ignore[method-assign]
    (claim,) = await store.claim_due(T + WAIT + 1_000, 60_000, 10)
    assert (claim.incident_id, claim.due_ms) == (o.incident_id, T + WAIT)
    stored = await store.load(claim.incident_id)
    assert stored is not None
    assert await commit(store, claim, stored.state, stored.version) == "ok"
    # Answered: the next claim asks afresh, and the lost one's lease gives nothing twice.
    assert await store.claim_due(T + WAIT + 2_000, 60_000, 10) == []
    assert await store.claim_due(T + WAIT + 60_000, 60_000, 10) == []


async def test_a_delivery_claim_sent_again_gets_its_first_answer(store: RedisStore) -> None:
    """The same token again (a lost reply asked again, or a cluster client's resend):
    the same jobs, the attempt counted once; after its lease, a claim of its own."""
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    assert o.incident_id
    job = Job(incident=o.incident_id, sink="slack", kind="open", due=T + 1)
    assert await store.annotate(o.incident_id, Annotation(jobs=[job]), T + 1) == "ok"
    (first,) = await store.deliveries.claim(T + 10, 60_000, 10, "tok")
    assert first.attempt == 1
    assert await store.deliveries.claim(T + 20, 60_000, 10, "tok") == [first]
    assert await store.deliveries.claim(T + 30, 60_000, 10, "other") == []
    (later,) = await store.deliveries.claim(T + 10 + 60_000, 60_000, 10, "tok")
    assert (later.job.id, later.attempt) == (first.job.id, 2)


async def test_a_delivery_claim_made_afresh_never_gets_heads_kept_from_before(
    store: RedisStore,
) -> None:
    """Its queues' answer gone before its heads' (Redis's expiry clock ahead of the
    replica's, an eviction): a new claim with the token takes its own queues' heads."""
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    assert o.incident_id
    slack = Job(incident=o.incident_id, sink="slack", kind="open", due=T + 1)
    assert await store.annotate(o.incident_id, Annotation(jobs=[slack]), T + 1) == "ok"
    (first,) = await store.deliveries.claim(T + 10, 60_000, 10, "tok")
    pagerduty = Job(incident=o.incident_id, sink="pagerduty", kind="open", due=T + 11)
    assert await store.annotate(o.incident_id, Annotation(jobs=[pagerduty]), T + 11) == "ok"
    await store._r.delete(store._p + "ob:claimed:tok")
    (second,) = await store.deliveries.claim(T + 20, 60_000, 10, "tok")
    assert (first.job.sink, second.job.sink) == ("slack", "pagerduty")


async def _resolve(store: RedisStore, incident_id: str, at: int) -> None:
    (claim,) = [c for c in await store.claim_due(at, 10_000, 100) if c.incident_id == incident_id]
    stored = await store.load(incident_id)
    assert stored is not None
    state = stored.state.model_copy(
        update={"status": "resolved", "resolved_at": at, "pending": None}
    )
    assert await commit(store, claim, state, stored.version, now=at) == "ok"


async def test_incidents_resolved_since_are_found_however_long_ago_they_opened(
    store: RedisStore,
) -> None:
    day = 86_400_000
    # Opened two days ago, quiet since, resolved now (its alerts were repeated meanwhile).
    (old,) = await store.ingest([group(placed("a"))], 0, T)
    assert old.incident_id
    # Opened and resolved an hour ago; and one opened later, still open.
    us = group(placed("b", region="us"), region="us")
    (hour,) = await store.ingest([us], 0, T + 2 * day - 3_600_000)
    assert hour.incident_id
    await _resolve(store, hour.incident_id, T + 2 * day - 3_600_000 + WAIT)
    await store.ingest([group(placed("c", region="ap"), region="ap")], 0, T + 2 * day - 60_000)
    now = T + 2 * day
    await _resolve(store, old.incident_id, now)
    recent = await store.resolved_since(now - 30 * 60_000, 10)
    assert [s.id for s in recent] == [old.incident_id]
    hours = await store.resolved_since(now - 2 * 3_600_000, 10)
    assert [s.id for s in hours] == [old.incident_id, hour.incident_id]  # latest first
    assert [s.id for s in await store.resolved_since(now - 2 * 3_600_000, 1)] == [old.incident_id]
    assert await store.resolved_since(now + 1, 10) == []
    # A reload that shortens the retention, or incidents touched since, change nothing.
    store.configure(replace(store.settings, retention_ms=day))
    many = [group(placed(f"s{i}", region=f"r{i}"), region=f"r{i}") for i in range(50)]
    await store.ingest(many, 0, now + 60_000)
    assert [s.id for s in await store.resolved_since(now - 30 * 60_000, 10)] == [old.incident_id]
    # One that reopened since is no longer resolved.
    later = placed("a", starts_at=STARTS + timedelta(days=2))
    (again,) = await store.ingest([group(later)], 0, now + 120_000)
    assert (again.incident_id, again.reopened) == (old.incident_id, True)
    hours = await store.resolved_since(now - 2 * 3_600_000, 10)
    assert [s.id for s in hours] == [hour.incident_id]


async def test_reopen_within_window_keeps_the_id_and_after_it_a_new_one(store: RedisStore) -> None:
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    assert o.incident_id
    await store.ingest([group(placed("a", status="resolved"))], 0, T + 1_000)
    await _resolve(store, o.incident_id, T + WAIT)

    new_start = placed("a", starts_at=placed("a").alert.starts_at.replace(hour=9))
    (re,) = await store.ingest([group(new_start)], 0, T + WAIT + 60_000)
    assert (re.incident_id, re.reopened, re.opened) == (o.incident_id, True, False)
    stored = await store.load(o.incident_id)
    assert stored and stored.state.status == "open" and stored.state.reopened_count == 1
    assert stored.state.pending == "reopen"
    assert any(
        c.incident_id == o.incident_id for c in await store.claim_due(T + WAIT + 90_000, 1, 10)
    )

    await _resolve(store, o.incident_id, T + 200_000)
    later = placed("a", starts_at=placed("a").alert.starts_at.replace(hour=11))
    (fresh,) = await store.ingest([group(later)], 0, T + 200_000 + 1_800_001)
    assert fresh.opened and fresh.incident_id != o.incident_id
    assert fresh.incident_id and fresh.incident_id.endswith(f"-{T // 1000 + 1}")


async def test_a_reopen_keeps_the_told_episode_for_its_figures(store: RedisStore) -> None:
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    assert o.incident_id
    (claim,) = await store.claim_due(T + WAIT, 10_000, 10)
    stored = await store.load(o.incident_id)
    assert stored is not None
    told = {"pending": None, "notified_at": T + WAIT, "change_to_detection_s": 120.5}
    assert await commit(store, claim, stored.state.model_copy(update=told), stored.version) == "ok"
    await store.ingest([group(placed("a", status="resolved"))], 0, T + WAIT + 1_000)
    await _resolve(store, o.incident_id, T + 400_000)
    again = placed("a", starts_at=placed("a").alert.starts_at.replace(hour=9))
    await store.ingest([group(again)], 0, T + 500_000)
    reopened = await store.load(o.incident_id)
    assert reopened is not None and reopened.state.told is not None
    kept = reopened.state.told
    assert (kept.notified_at, kept.resolved_at, kept.change_to_detection_s) == (
        T + WAIT,
        T + 400_000,
        120.5,
    )


async def test_empty_lists_survive_the_scripts_json_round_trip(store: RedisStore) -> None:
    # Lua's cjson writes an empty array back as {}: every list field must read it again.
    (o,) = await store.ingest([group(placed("a", stage=None), journey="unmapped")], 0, T)
    (claim,) = await store.claim_due(T + WAIT, 10_000, 10)
    stored = await store.load(claim.incident_id)
    assert stored is not None
    empty = Notified(
        at=T, kind="open", priority="P5", score=1.0, services=[], stages=[], firing_count=1
    )
    state = stored.state.model_copy(
        update={"pending": None, "notified_at": T, "last_notified": empty}
    )
    assert await commit(store, claim, state, stored.version) == "ok"
    await store.ingest([group(placed("b", stage=None), journey="unmapped")], 0, T + WAIT + 1)
    assert o.incident_id
    assert await feedback(store, o.incident_id, {"at": 1, "useful": False}) == "ok"
    reread = await store.load(o.incident_id)
    assert reread is not None
    assert reread.state.last_notified == empty
    assert (reread.state.stages, reread.state.score_breakdown) == ({}, [])


async def test_a_late_firing_copy_does_not_reopen_a_resolved_incident(store: RedisStore) -> None:
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    assert o.incident_id
    await store.ingest([group(placed("a", status="resolved"))], 0, T + 1_000)
    await _resolve(store, o.incident_id, T + WAIT)
    # An HA peer lagging behind delivers the old firing notification (same startsAt).
    (late,) = await store.ingest([group(placed("a"))], 0, T + WAIT + 5_000)
    assert (late.reopened, late.duplicates) == (False, 1)
    stored = await store.load(o.incident_id)
    assert stored is not None
    assert (stored.state.status, stored.state.reopened_count) == ("resolved", 0)
    assert stored.state.resolved_at == T + WAIT


async def test_a_late_firing_copy_of_an_earlier_episode_does_not_fire_again(
    store: RedisStore,
) -> None:
    first, second = STARTS, STARTS + timedelta(minutes=5)
    (o,) = await store.ingest([group(placed("a"), placed("b"))], 0, T)
    assert o.incident_id
    await store.ingest(
        [group(placed("a", status="resolved", ends_at=first + timedelta(minutes=1)))], 0, T + 1_000
    )
    await store.ingest([group(placed("a", starts_at=second))], 0, T + 2_000)
    ended = placed("a", status="resolved", starts_at=second, ends_at=second + timedelta(minutes=3))
    await store.ingest([group(ended)], 0, T + 3_000)
    # The first episode's firing notification again, late (an HA peer lagging behind, a
    # retry): it began before the episode already seen resolved. Taken as firing, it
    # would hold the incident open for good: its resolution was sent long ago.
    (late,) = await store.ingest([group(placed("a", starts_at=first))], 0, T + 4_000)
    assert (late.changed, late.duplicates) == (0, 1)
    stored = await store.load(o.incident_id)
    assert stored is not None
    assert stored.state.firing_count == 1  # b
    await store.ingest([group(placed("b", status="resolved"))], 0, T + 5_000)
    await _resolve(store, o.incident_id, T + WAIT + 5_000)
    # Nor does it reopen the incident once resolved.
    (again,) = await store.ingest([group(placed("a", starts_at=first))], 0, T + WAIT + 6_000)
    assert (again.reopened, again.duplicates) == (False, 1)
    # A new episode (a later startsAt) still fires again.
    (new,) = await store.ingest(
        [group(placed("a", starts_at=second + timedelta(minutes=10)))], 0, T + WAIT + 7_000
    )
    assert (new.reopened, new.changed) == (True, 1)


async def test_a_late_resolution_of_an_earlier_episode_does_not_resolve_this_one(
    store: RedisStore,
) -> None:
    ended = STARTS + timedelta(minutes=1)
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    assert o.incident_id
    await store.ingest([group(placed("a", status="resolved", ends_at=ended))], 0, T + 1_000)
    again = STARTS + timedelta(minutes=5)
    await store.ingest([group(placed("a", starts_at=again))], 0, T + 2_000)
    # The first episode's resolution again, late (an HA peer, a retry): it ended before
    # the one firing now started.
    late = placed("a", status="resolved", ends_at=ended)
    (outcome,) = await store.ingest([group(late)], 0, T + 3_000)
    assert (outcome.changed, outcome.duplicates) == (0, 1)
    stored = await store.load(o.incident_id)
    assert stored is not None
    assert stored.state.firing_count == 1
    page = await store.load_alerts(o.incident_id, 10)
    assert [(a.fp, a.status) for a in page.alerts] == [("a", "firing")]
    # This episode's resolution resolves it, even with the earlier startsAt Alertmanager
    # keeps of two copies of one alert (an HA Prometheus pair).
    now = placed("a", status="resolved", ends_at=again + timedelta(minutes=3))
    (own,) = await store.ingest([group(now)], 0, T + 4_000)
    assert own.changed == 1


async def test_what_resolves_before_the_first_notification_is_counted_as_blips(
    store: RedisStore,
) -> None:
    (o,) = await store.ingest([group(placed("a"), placed("b"))], 0, T)
    assert o.incident_id
    await store.ingest([group(placed("a", status="resolved"))], 0, T + 1_000)
    stored = await store.load(o.incident_id)
    assert stored and stored.state.pending_resolved == 1
    await _resolve(store, o.incident_id, T + WAIT)
    # A known alert fires again (new startsAt), reopening; it resolves within group_wait.
    again = placed("b", starts_at=placed("b").alert.starts_at.replace(hour=9))
    await store.ingest([group(again)], 0, T + 60_000)
    reopened = await store.load(o.incident_id)
    assert reopened and (reopened.state.pending, reopened.state.pending_resolved) == ("reopen", 0)
    await store.ingest(
        [group(placed("b", status="resolved", starts_at=again.alert.starts_at))], 0, T + 70_000
    )
    blipped = await store.load(o.incident_id)
    assert blipped and blipped.state.pending_resolved == 1


async def _moved_resolution(
    store: RedisStore, fp: str, at: int, region: str = "eu"
) -> tuple[str | None, int]:
    """Where the resolution of ``fp`` lands once a reload moved its service to the payments
    journey: the incident it reached and how many alerts changed there."""
    moved = group(placed(fp, status="resolved"), region=region, journey="payments")
    (outcome,) = await store.ingest([moved], 0, at)
    return outcome.incident_id, outcome.changed


async def test_an_alert_stays_with_the_live_incident_that_took_it(store: RedisStore) -> None:
    (o,) = await store.ingest([group(placed("a"), placed("b"))], 0, T)
    # A reload moved these alerts' service to another journey: same fingerprints, new key.
    moved = [
        group(placed("a", status="resolved"), journey="payments"),
        group(placed("c"), journey="payments"),
    ]
    outcomes = await store.ingest(moved, 0, T + 1_000)
    # a's resolution reaches the incident holding it; c is new, so it follows the new config.
    assert [(x.changed, x.opened) for x in outcomes if x.incident_id == o.incident_id] == [
        (1, False)
    ]
    assert [(x.opened, x.journey) for x in outcomes if x.incident_id != o.incident_id] == [
        (True, "payments")
    ]
    assert o.incident_id
    old = await store.load(o.incident_id)
    assert old is not None
    assert (old.state.alert_count, old.state.firing_count) == (2, 1)


async def test_an_alert_whose_key_expired_is_claimed_again_by_the_incident_holding_it(
    store: RedisStore,
) -> None:
    (o,) = await store.ingest([group(placed("a"), placed("b"))], 0, T)
    # The incident outlived the owner index's entries for its alerts.
    retention = store.settings.retention_ms
    bucket = f"{store._p}owners:{retention}:{T // retention}"
    assert await store._r.hdel(bucket, "a") == 1
    await store.ingest([group(placed("a"))], 0, T + 1_000)  # Alertmanager repeats it
    assert await store._r.hget(bucket, "a")
    # A reload moved a's service to another journey: its resolution still reaches o.
    assert await _moved_resolution(store, "a", T + 2_000) == (o.incident_id, 1)


async def test_the_owner_index_keeps_an_alert_a_retention_after_it_was_last_seen(
    store: RedisStore,
) -> None:
    retention = store.settings.retention_ms
    start = (T // retention + 1) * retention  # the first instant of an index bucket
    (o,) = await store.ingest([group(placed("a"), placed("b"))], 0, start)
    # a comes again at the end of the next retention; b does not.
    await store.ingest([group(placed("a"))], 0, start + 2 * retention - 1)
    # A reload moved their service to another journey, a retention later still.
    moved = [
        group(placed("a", status="resolved"), placed("b", status="resolved"), journey="payments")
    ]
    outcomes = await store.ingest(moved, 0, start + 3 * retention - 2)
    # a's resolution reaches the incident that took it; b, unseen for two retentions, is
    # forgotten with the bucket that held it (its resolution is one nobody knew).
    assert sorted((x.incident_id or "", x.changed, x.ignored) for x in outcomes) == sorted(
        [("", 0, 1), (o.incident_id or "", 1, 0)]
    )
    assert not await store._r.exists(f"{store._p}owners:{retention}:{start // retention}")


async def test_a_replica_whose_clock_is_behind_still_finds_the_bucket_before(
    store: RedisStore,
) -> None:
    width = store.settings.retention_ms
    start = (T // width + 1) * width
    (o,) = await store.ingest([group(placed("a"))], 0, start + width - 5)  # the end of n
    # Its bucket is needed until the end of the next one (and a little longer, for the
    # replicas whose clocks are behind), not a retention from now.
    ttl = await store._r.pttl(f"{store._p}owners:{width}:{start // width}")
    assert width < ttl <= width + 2 * (width // 64) + 5
    # A replica whose clock is 20 ms ahead is already two buckets on (it unlinks the
    # one two before its own only once a 64th of its own has passed) ...
    await store.ingest([group(placed("b"), journey="signup")], 0, start + 2 * width + 15)
    # ... while one on time, a retention after a came, finds a's entry.
    assert await _moved_resolution(store, "a", start + 2 * width - 5) == (o.incident_id, 1)


async def test_a_lowered_retention_keeps_the_owners(store: RedisStore) -> None:
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    # This replica restarts with a shorter retention.
    store.configure(replace(store.settings, retention_ms=DAY_MS))
    store._widths = None
    assert await _moved_resolution(store, "a", T + 3 * DAY_MS) == (o.incident_id, 1)


async def test_a_raised_retention_keeps_the_owners_of_alerts_that_come_again(
    store: RedisStore,
) -> None:
    store.configure(replace(store.settings, retention_ms=DAY_MS))
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    store.configure(replace(store.settings, retention_ms=7 * DAY_MS))
    # Alertmanager repeats the firing alert under the longer retention, then nothing for
    # longer than the old one kept entries.
    await store.ingest([group(placed("a"))], 0, T + DAY_MS // 2)
    assert await _moved_resolution(store, "a", T + 5 * DAY_MS) == (o.incident_id, 1)


async def test_replicas_with_different_retentions_find_each_others_owners(
    store: RedisStore,
) -> None:
    week, day = store.settings, replace(store.settings, retention_ms=DAY_MS)
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    # A reload reached one replica (a day's retention) and not yet the other (a week's):
    # they take turns with the same store, each with what it last read of the index.
    store.configure(day)
    (c,) = await store.ingest([group(placed("c"), region="us")], 0, T + 1_000)
    store.configure(week)
    assert await _moved_resolution(store, "c", T + 2_000, region="us") == (c.incident_id, 1)
    store.configure(day)
    assert await _moved_resolution(store, "a", T + 3_000) == (o.incident_id, 1)
    in_use = await store._r.zrange(f"{store._p}owners:widths", 0, -1)
    assert sorted(int(w) for w in in_use) == [DAY_MS, 7 * DAY_MS]
    # Every replica on a day's retention: two weeks on, the week's width is out of use.
    later = [group(placed("d"), region="ap")]
    await store.ingest(later, 0, T + 15 * DAY_MS)
    in_use = await store._r.zrange(f"{store._p}owners:widths", 0, -1)
    assert [int(w) for w in in_use] == [DAY_MS]


async def test_an_id_is_never_given_twice_even_once_its_incident_expired(
    store: RedisStore,
) -> None:
    """PagerDuty's dedup_key, the Jira label and an action's Idempotency-Key outlive the
    store's retention: the next incident of a key whose keys all expired gets a new id."""
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    raw = store._r
    # A retention of quiet later: every key of the incident, its key's index and counter
    # included, expired.
    await raw.delete(*[k async for k in raw.scan_iter(match=f"{store._p}*")])
    (again,) = await store.ingest([group(placed("a"))], 0, T + 8 * 86_400_000)
    assert again.opened and again.incident_id and again.incident_id != o.incident_id
    (third,) = await store.ingest([group(placed("b"), region="us")], 0, T + 8 * 86_400_000)
    stored = await store.load(again.incident_id)
    assert stored is not None and stored.state.alert_count == 1  # nothing of the first
    assert third.opened and third.incident_id not in (o.incident_id, again.incident_id)


async def test_an_index_gone_idle_begins_again(store: RedisStore) -> None:
    await store.ingest([group(placed("a"))], 0, T)
    # Three widths without a batch: the index expired; this replica read it before.
    raw = store._r
    await raw.delete(*[k async for k in raw.scan_iter(match=f"{store._p}owners:*")])
    (o,) = await store.ingest([group(placed("b"))], 0, T + 1_000)
    assert o.changed == 1
    retention = store.settings.retention_ms
    assert await raw.hget(f"{store._p}owners:{retention}:{(T + 1_000) // retention}", "b")
    assert await raw.zscore(f"{store._p}owners:widths", str(retention)) == T + 1_000


async def test_owners_kept_a_key_each_by_an_earlier_version_are_taken_over(
    store: RedisStore,
) -> None:
    (o,) = await store.ingest([group(placed("a"), placed("b"))], 0, T)
    # What a version before the owner index left: a key per alert, no index.
    raw = store._r
    await raw.delete(*[k async for k in raw.scan_iter(match=f"{store._p}owners:*")])
    digest = group(placed("a")).key.digest
    await raw.set(f"{store._p}fp:a", digest, px=store.settings.retention_ms)
    await raw.delete(f"{store._p}owners:adopted")
    store._widths = None  # this process starts on the new version
    assert await _moved_resolution(store, "a", T + 1_000) == (o.incident_id, 1)
    # Taken over once: an index that begins again within two retentions does not look.
    await raw.delete(*[k async for k in raw.scan_iter(match=f"{store._p}owners:*:*")])
    await raw.delete(f"{store._p}owners:widths")
    store._widths = None
    again = [group(placed("a"), journey="payments")]
    (fresh,) = await store.ingest(again, 0, T + 2_000)
    assert fresh.incident_id != o.incident_id


async def test_a_resolved_incident_past_its_window_lets_its_alerts_go(store: RedisStore) -> None:
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    assert o.incident_id
    await store.ingest([group(placed("a", status="resolved"))], 0, T + 1_000)
    await _resolve(store, o.incident_id, T + WAIT)
    later = placed("a", starts_at=placed("a").alert.starts_at.replace(hour=12))
    (fresh,) = await store.ingest([group(later, journey="payments")], 0, T + WAIT + 1_800_001)
    assert fresh.opened
    assert fresh.journey == "payments"
    assert fresh.incident_id and fresh.incident_id.startswith("payments-")


async def test_list_is_newest_first_with_filters(store: RedisStore) -> None:
    ids = []
    for i, region in enumerate(["eu", "us", "ap"]):
        (o,) = await store.ingest([group(placed(f"f{i}", region=region), region=region)], 0, T + i)
        ids.append(o.incident_id)
    (o,) = await store.ingest([group(placed("s1"), journey="signup")], 0, T + 10)
    listed = await store.list_incidents("all", None, 10)
    assert [s.id for s in listed] == [o.incident_id, *reversed(ids)]
    assert [s.id for s in await store.list_incidents("open", "checkout", 2)] == ids[:0:-1]
    assert await store.list_incidents("resolved", None, 10) == []


async def test_listing_while_incidents_open_never_repeats_one(store: RedisStore) -> None:
    for i in range(250):  # more than one page of the index
        await store.ingest([group(placed(f"f{i}", region=f"r{i}"), region=f"r{i}")], 0, T + i)

    async def open_more() -> None:
        for i in range(250, 300):
            await store.ingest([group(placed(f"f{i}", region=f"r{i}"), region=f"r{i}")], 0, T + i)

    listed, _ = await asyncio.gather(store.list_incidents("all", None, 1000), open_more())
    ids = [s.id for s in listed]
    assert len(ids) == len(set(ids)) >= 250
    assert [s.created_at for s in listed] == sorted((s.created_at for s in listed), reverse=True)


async def test_events_are_kept_by_time(store: RedisStore) -> None:
    await store.add_events([(T, '{"id":"1"}'), (T + 60_000, '{"id":"2"}')], T + 60_000)
    assert await store.events_between(T - 1, T + 1) == ['{"id":"1"}']
    assert await store.events_between(T, T + 60_000) == ['{"id":"1"}', '{"id":"2"}']
    # Older than the events retention (1 day here): trimmed on the next write.
    await store.add_events([(T + 86_400_001, '{"id":"3"}')], T + 86_400_001)
    assert await store.events_between(0, T + 10**9) == ['{"id":"2"}', '{"id":"3"}']


async def feedback(store: RedisStore, incident_id: str, record: dict[str, Any]) -> str:
    return await store.annotate(incident_id, Annotation(append={"feedback": [record]}), T)


async def test_feedback_is_appended(store: RedisStore) -> None:
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    assert o.incident_id
    record = {"at": 5, "useful": True, "action": "rollback"}
    assert await feedback(store, o.incident_id, record) == "ok"
    assert await feedback(store, "nope", {"at": 5, "useful": True}) == "unknown"
    stored = await store.load(o.incident_id)
    assert stored and [f.action for f in stored.state.feedback] == ["rollback"]


async def test_an_annotation_the_client_sends_again_lands_once(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    assert o.incident_id
    script = store._annotate

    async def answer_lost_then_retried(**kwargs: Any) -> Any:
        await script(**kwargs)  # ran, but its answer never came back
        return await script(**kwargs)  # what a cluster client's retry does

    monkeypatch.setattr(store, "_annotate", answer_lost_then_retried)
    assert await feedback(store, o.incident_id, {"at": 5, "useful": True}) == "ok"
    stored = await store.load(o.incident_id)
    assert stored and [f.at for f in stored.state.feedback] == [5]


async def test_feedback_keeps_the_latest_fifty(store: RedisStore) -> None:
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    assert o.incident_id
    for i in range(55):
        assert await feedback(store, o.incident_id, {"at": i, "useful": True}) == "ok"
    stored = await store.load(o.incident_id)
    assert stored is not None
    assert [f.at for f in stored.state.feedback] == list(range(5, 55))


async def test_an_annotation_merges_fills_queues_and_lands_once(store: RedisStore) -> None:
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    assert o.incident_id
    first = Annotation(
        merge={"sinks.pagerduty": {"resolved_by_person": "alice"}},
        fill={"response": {"acknowledged_at": T + 1, "acknowledged_by": "alice"}},
        timeline=[TimelineEntry(at=T + 1, kind="response", text="acknowledged by alice")],
        jobs=[Job(incident=o.incident_id, sink="slack", kind="update", due=T + 1)],
        once="pd:delivery-1",
    )
    assert await store.annotate(o.incident_id, first, T + 1) == "ok"
    # The vendor retries the same delivery: nothing lands twice.
    assert await store.annotate(o.incident_id, first, T + 2) == "repeat"
    later = Annotation(fill={"response": {"acknowledged_at": T + 9, "acknowledged_by": "bob"}})
    assert await store.annotate(o.incident_id, later, T + 9) == "ok"
    stored = await store.load(o.incident_id)
    assert stored is not None
    st = stored.state
    assert st.response is not None
    # The first acknowledgement is the one that counts.
    assert (st.response.acknowledged_at, st.response.acknowledged_by) == (T + 1, "alice")
    assert st.sinks["pagerduty"] == {"resolved_by_person": "alice"}
    assert [e.text for e in st.timeline if e.kind == "response"] == ["acknowledged by alice"]
    (claimed,) = await store.deliveries.claim(T + 10, 60_000, 10, "tok")
    assert (claimed.job.sink, claimed.job.kind) == ("slack", "update")


async def test_an_annotation_can_make_an_open_incident_due_earlier_only(store: RedisStore) -> None:
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    assert o.incident_id
    (claim,) = await store.claim_due(T + WAIT, 60_000, 10)
    stored = await store.load(o.incident_id)
    assert stored is not None
    assert await commit(store, claim, stored.state, stored.version, next_due=T + 500_000) == "ok"
    # A later wish never delays a look already due sooner; an earlier one brings it forward.
    assert await store.annotate(o.incident_id, Annotation(due=T + 900_000), T + 31_000) == "ok"
    assert await store.claim_due(T + 400_000, 60_000, 10) == []
    assert await store.annotate(o.incident_id, Annotation(due=T + 300_000), T + 32_000) == "ok"
    (claim,) = await store.claim_due(T + 300_000, 60_000, 10)
    assert claim.incident_id == o.incident_id


async def test_truncated_batches_are_recorded_once(store: RedisStore) -> None:
    (o,) = await store.ingest([group(placed("a"))], 7, T)
    await store.ingest([group(placed("a"))], 7, T + 1)  # an HA peer's identical copy
    assert o.incident_id
    stored = await store.load(o.incident_id)
    assert stored and stored.state.truncated_alerts == 7
    assert [e.kind for e in stored.state.timeline].count("truncated") == 1


async def test_timeline_is_capped_keeping_its_beginning(store: RedisStore) -> None:
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    for i in range(260):
        await store.ingest([group(placed(f"s{i}", service=f"svc-{i}"))], 0, T + i + 1)
    assert o.incident_id
    stored = await store.load(o.incident_id)
    assert stored is not None
    st = stored.state
    assert len(st.timeline) == 200 and st.timeline_dropped == 61
    assert st.timeline[0].kind == "opened"
    assert st.timeline[-1].text == "service svc-259 joined"
    # What a decision loads: the same state and version, the story left in the store.
    bare = await store.load(o.incident_id, timeline=False)
    assert bare is not None
    assert (bare.version, bare.state.timeline, bare.state.timeline_dropped) == (
        stored.version,
        [],
        61,
    )
    assert bare.state.model_dump(exclude={"timeline"}) == st.model_dump(exclude={"timeline"})


async def test_load_many_reads_what_load_reads_in_order_none_for_the_gone(
    store: RedisStore,
) -> None:
    a, b = (
        o.incident_id
        for (o,) in [
            await store.ingest([group(placed("a"))], 0, T),
            await store.ingest([group(placed("b"), region="us")], 0, T),
        ]
    )
    assert a and b and a != b
    many = await store.load_many([b, "checkout-gone-1", a])
    singles = [await store.load(i, timeline=False) for i in (b, "checkout-gone-1", a)]
    assert [m.model_dump() if m else None for m in many] == [
        s.model_dump() if s else None for s in singles
    ]
    assert many[1] is None and many[0] is not None and many[0].state.id == b


async def test_concurrent_copies_of_a_batch_make_one_incident(store: RedisStore) -> None:
    batch = [group(*(placed(f"a{i}", service=f"svc-{i % 4}") for i in range(40)))]
    outcomes = await asyncio.gather(*(store.ingest(batch, 0, T) for _ in range(8)))
    ids = {o[0].incident_id for o in outcomes}
    assert len(ids) == 1
    assert sum(o[0].opened for o in outcomes) == 1
    assert sum(o[0].changed for o in outcomes) == 40
    listed = await store.list_incidents("all", None, 10)
    assert [(s.alert_count, s.firing_count) for s in listed] == [(40, 40)]


async def test_unreachable_store_raises_store_unavailable() -> None:
    from tests.support.processes import free_port

    s = open_store(
        f"redis://127.0.0.1:{free_port()}/0",
        StoreSettings(
            key_prefix="x",
            retention_ms=1000,
            events_retention_ms=1000,
            group_wait_ms=1000,
            reopen_window_ms=1000,
        ),
    )
    with pytest.raises(StoreUnavailable):
        await s.ingest([group(placed("a"))], 0, T)
    with pytest.raises(StoreUnavailable):
        await s.ping()
    await s.aclose()


async def test_a_claim_on_an_incident_gone_is_let_go_for_good(store: RedisStore) -> None:
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    (claim,) = await store.claim_due(T + WAIT, 1_000, 10)
    assert claim.incident_id == o.incident_id
    await store.release(Claim(claim.incident_id, "another-token", claim.due_ms), None)
    (again,) = await store.claim_due(T + WAIT + 1_000, 1_000, 10)  # a stranger's word: kept
    await store.release(again, None)
    assert await store.claim_due(T + 100 * WAIT, 1_000, 10) == []


async def test_a_batch_planned_on_moved_indexes_is_planned_again(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    (first,) = await store.ingest([group(placed("a"))], 0, T)
    real = store._plan
    plans: list[object] = []

    async def counted(*args: Any) -> Any:
        plans.append(await real(*args))
        return plans[-1]

    monkeypatch.setattr(store, "_plan", counted)
    # The replica remembers the key's incident: the next batch needs no read.
    (again,) = await store.ingest([group(placed("b"))], 0, T + 1)
    assert (again.incident_id, again.opened, plans) == (first.incident_id, False, [])
    # What it remembers went stale (another replica moved the index): read, then write.
    for digest in list(store._indexes):
        store._indexes[digest] = (False, False)
    (third,) = await store.ingest([group(placed("c"))], 0, T + 2)
    assert (third.incident_id, len(plans)) == (first.incident_id, 1)

    async def always_stale(*args: Any) -> Any:
        return {d: (False, False) for d in await real(*args)}

    monkeypatch.setattr(store, "_plan", always_stale)
    store._indexes.clear()
    with pytest.raises(StoreUnavailable, match="indexes kept moving"):
        await store.ingest([group(placed("d"))], 0, T + 3)
    stored = await store.load(first.incident_id or "")
    assert stored is not None and stored.state.alert_count == 3  # nothing half-written


async def test_each_services_versions_are_found_without_the_history(store: RedisStore) -> None:
    def deploy(n: int, service: str = "pay", version: str | None = None) -> tuple[int, str]:
        doc = {"id": f"{service}-{n}", "service": service, "version": version or f"v{n}"}
        if version == "":
            del doc["version"]
        return T + n * 60_000, json.dumps(doc)

    events = [deploy(1), deploy(2), deploy(3, "cart"), deploy(4, version=""), deploy(5)]
    await store.add_events(events, T + 5 * 60_000)
    found = await store.versions_before(["pay", "cart", "pay"], [T + 5 * 60_000, T + 10**9, T], 1)
    assert [[json.loads(d)["id"] for d in docs] for docs in found] == [["pay-2"], ["cart-3"], []]
    (everything,) = await store.versions_before(["pay"], [T + 10**9], 10)
    assert [json.loads(d)["id"] for d in everything] == ["pay-5", "pay-2", "pay-1"]
    # A rollback sets the version even when it names none (what ran is then not known).
    undo = json.dumps({"id": "pay-6", "service": "pay", "type": "rollback"})
    await store.add_events([(T + 6 * 60_000, undo)], T + 6 * 60_000)
    (latest,) = await store.versions_before(["pay"], [T + 10**9], 1)
    assert [json.loads(d)["id"] for d in latest] == ["pay-6"]
    # Trimmed with the events' retention (a day in these tests), like the events.
    await store.add_events([deploy(24 * 60 + 3)], T + (24 * 60 + 3) * 60_000)
    (kept,) = await store.versions_before(["pay"], [T + 10**10], 10)
    assert [json.loads(d)["id"] for d in kept] == ["pay-1443", "pay-6", "pay-5"]


async def test_rollbacks_naming_no_version_stored_by_a_version_before_are_found(
    store: RedisStore,
) -> None:
    # A version before kept a rollback that names no version in the events alone, not in
    # its service's index: after the upgrade it must still make what ran before unknown,
    # or v2, the version it undid, would read as the one v3 replaced.
    deploys = [
        (T + n * 60_000, json.dumps({"id": f"pay-{n}", "service": "pay", "version": f"v{n}"}))
        for n in (1, 2)
    ]
    await store.add_events(deploys, T + 2 * 60_000)
    undo = json.dumps({"id": "pay-3", "service": "pay", "type": "rollback"})
    await store._r.zadd(f"{store._p}events", {undo: T + 3 * 60_000})
    (latest,) = await store.versions_before(["pay"], [T + 10**9], 1)
    assert [json.loads(d)["id"] for d in latest] == ["pay-3"]


async def test_rollbacks_of_a_version_before_are_indexed_even_when_the_first_look_is_given_up(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first look reads a retention of events within an incident's context budget; a
    # deadline reached halfway (a slow feed took most of the budget, a week of events) must
    # not leave the index to be begun again, and given up again, at every later look.
    undo = json.dumps({"id": "pay-3", "service": "pay", "type": "rollback"})
    noise = {
        json.dumps({"id": f"e{n}", "service": "cart", "type": "scale"}): T + n for n in range(500)
    }
    await store._r.zadd(f"{store._p}events", {**noise, undo: T + 3 * 60_000})
    scan = store._r.zscan_iter

    def given_up(*args: Any, **kwargs: Any) -> Any:
        async def read() -> Any:
            async for found in scan(*args, **kwargs):
                scope.cancel()  # the incident's deadline, reached during the read
                yield found

        return read()

    monkeypatch.setattr(store._r, "zscan_iter", given_up)
    for _ in range(3):
        with anyio.CancelScope() as scope:
            await store.versions_before(["pay"], [T + 10**9], 1)
    # Every look given up the same way: the first one's read still went to its end.
    indexed = await store._r.zrange(f"{store._p}ver:pay", 0, -1)
    assert [json.loads(d)["id"] for d in indexed] == ["pay-3"]


async def test_an_incident_starts_when_alertmanager_says_its_alerts_started(
    store: RedisStore,
) -> None:
    at = STARTS.timestamp() * 1000
    later = STARTS + timedelta(minutes=3)
    (o,) = await store.ingest([group(placed("a", starts_at=later))], 0, T)
    assert o.incident_id

    async def started() -> int:
        stored = await store.load(o.incident_id or "")
        assert stored is not None
        return stored.state.started

    assert await started() == at + 3 * 60_000 != T  # Alertmanager's time, not receipt
    await store.ingest([group(placed("b", starts_at=STARTS))], 0, T + 1)
    assert await started() == at  # an alert that started earlier joined
    await store.ingest([group(placed("c", starts_at=STARTS - timedelta(days=999)))], 0, T + 2)
    # Long ago is a real time (nobody was told of the incident yet: it is how it began).
    assert await started() == at - 999 * 86_400_000
    # A zero or future startsAt says nothing: the receipt time stands in for it.
    (zero,) = await store.ingest(
        [group(placed("z", starts_at=datetime(1, 1, 1, tzinfo=UTC)), region="us")], 0, T
    )
    (ahead,) = await store.ingest(
        [group(placed("f", starts_at=STARTS + timedelta(days=9)), region="ap")], 0, T
    )
    for incident in (zero, ahead):
        stored = await store.load(incident.incident_id or "")
        assert stored is not None and stored.state.started == T


async def test_an_alert_that_comes_late_to_a_told_episode_counts_from_when_it_came(
    store: RedisStore,
) -> None:
    """Once people were told, an alert that arrives more than LATE_MS after its startsAt
    (a silence expired) moves neither the start nor its service's place in the ranking;
    one that started earlier and came soon after (Alertmanager's group_interval) does."""
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    (claim,) = await store.claim_due(T + WAIT, 10_000, 10)
    stored = await store.load(claim.incident_id)
    assert stored is not None
    told = stored.state.model_copy(update={"pending": None, "notified_at": T + WAIT})
    assert await commit(store, claim, told, stored.version) == "ok"

    async def state() -> IncidentState:
        loaded = await store.load(o.incident_id or "")
        assert loaded is not None
        return loaded.state

    came = T + WAIT + 60_000
    held = placed("held", service="cart", starts_at=STARTS - timedelta(days=3))
    await store.ingest([group(held)], 0, came)
    assert (await state()).started == STARTS.timestamp() * 1000
    assert (await state()).service_starts["cart"] == came
    early = STARTS - timedelta(minutes=5)
    await store.ingest([group(placed("early", service="cart-api", starts_at=early))], 0, came + 1)
    now = await state()
    assert now.started == early.timestamp() * 1000
    ranked = rank_state(now, {}, {"critical": 1.0}, 0.5)
    assert [s.service for s in ranked.services] == ["cart-api", "payment-service", "cart"]


async def _told_two_services(store: RedisStore, at: int) -> str:
    """An incident of payment-service and cart, told at ``at``."""
    (o,) = await store.ingest(
        [
            group(
                placed("a", service="payment-service", starts_at=STARTS - timedelta(hours=1)),
                placed("b", service="cart", starts_at=STARTS - timedelta(minutes=30)),
            )
        ],
        0,
        T,
    )
    (claim,) = await store.claim_due(at, 10_000, 10)
    stored = await store.load(claim.incident_id)
    assert stored is not None
    told = stored.state.model_copy(update={"pending": None, "notified_at": at})
    assert await commit(store, claim, told, stored.version, now=at) == "ok"
    assert o.incident_id
    return o.incident_id


async def _state_of(store: RedisStore, incident_id: str) -> IncidentState:
    loaded = await store.load(incident_id)
    assert loaded is not None
    return loaded.state


async def test_an_ha_peers_copy_with_another_starts_at_does_not_move_the_upstream(
    store: RedisStore,
) -> None:
    """Two Alertmanager peers may hold one firing alert under startsAt's a few seconds
    apart (one restarted, or heard the other Prometheus of an HA pair first). Their copies
    alternate; neither says the alert began now. payment-service fired first (1 h ago),
    cart 30 min ago: payment-service is the probable upstream before and after the copy."""
    incident_id = await _told_two_services(store, T + WAIT)
    weights = {"critical": 1.0}
    before = rank_state(await _state_of(store, incident_id), {}, weights, 0.5)
    assert before.services[0].service == "payment-service"
    # The other peer's copy of the same firing alert: its startsAt 20 s later.
    flipped = placed(
        "a",
        service="payment-service",
        starts_at=STARTS - timedelta(hours=1) + timedelta(seconds=20),
    )
    await store.ingest([group(flipped)], 0, T + WAIT + 60_000)
    state = await _state_of(store, incident_id)
    after = rank_state(state, {}, weights, 0.5)
    assert after.services[0].service == "payment-service", f"service_starts={state.service_starts}"


async def test_a_late_alert_taken_by_a_replica_whose_clock_is_behind_still_counts_as_late(
    store: RedisStore,
) -> None:
    """Replica A notified the incident at T+WAIT by its clock; replica B, whose clock is
    20 s behind A's (within the minute the store allows elsewhere: ingest.lua's CLOCKS),
    takes the batch that brings an alert a silence held back for three days, 10 s after
    the notification. It came after people were told, and long after its startsAt: it must
    not date the incident three days back (README "since when")."""
    incident_id = await _told_two_services(store, T + WAIT)
    started = (await _state_of(store, incident_id)).started
    held = placed("held", service="cart", starts_at=STARTS - timedelta(days=3))
    await store.ingest([group(held)], 0, T + WAIT + 10_000 - 20_000)
    state = await _state_of(store, incident_id)
    assert state.started == started, (
        f"started moved {(started - state.started) / 86_400_000:.1f} days back"
    )


async def test_the_upstream_ranking_from_the_incidents_counts_matches_its_alerts(
    store: RedisStore,
) -> None:
    early = STARTS - timedelta(minutes=4)
    batch = [
        placed("db-1", service="payments-db", severity="warning", starts_at=STARTS),
        placed("api-1", service="payment-service", starts_at=STARTS),
        placed("api-2", service="payment-service", severity="warning", starts_at=early),
        placed("cart-1", service="cart", stage="cart", starts_at=STARTS),
        placed("cart-2", service="cart", stage="cart", starts_at=STARTS),
    ]
    (o,) = await store.ingest([group(*batch)], 0, T)
    await store.ingest([group(placed("api-1", "resolved", service="payment-service"))], 0, T + 1)
    stored = await store.load(o.incident_id or "")
    page = await store.load_alerts(o.incident_id or "", 100)
    assert stored is not None
    weights = {"critical": 1.0, "warning": 0.5}
    for calls in ({}, {"payment-service": ["payments-db"], "cart": ["payment-service"]}):
        from_counts = rank_state(stored.state, calls, weights, 0.5)
        from_alerts = rank(page.alerts, calls, weights, 0.5, T + 1)
        assert from_counts == from_alerts
    # api-2 started first; api-1, the critical one, resolved: payment-service is warning.
    assert [s.service for s in from_counts.services][:1] == ["payments-db"]
    assert rank_state(stored.state, {}, weights, 0.5).services[0].service == "payment-service"


async def test_a_service_that_stopped_firing_starts_afresh_in_the_ranking(
    store: RedisStore,
) -> None:
    long_ago = STARTS - timedelta(minutes=30)
    (o,) = await store.ingest([group(placed("cart-old", service="cart", starts_at=long_ago))], 0, T)
    await store.ingest([group(placed("cart-old", "resolved", service="cart"))], 0, T + 1)
    later = STARTS + timedelta(minutes=2)
    await store.ingest(
        [group(placed("api", service="api", starts_at=STARTS),
               placed("cart-new", service="cart", starts_at=later))],
        0,
        T + 2,
    )  # fmt: skip
    stored = await store.load(o.incident_id or "")
    page = await store.load_alerts(o.incident_id or "", 100)
    assert stored is not None
    from_counts = rank_state(stored.state, {}, {"critical": 1.0}, 0.5)
    assert from_counts == rank(page.alerts, {}, {"critical": 1.0}, 0.5, T + 2)
    assert [s.service for s in from_counts.services] == ["api", "cart"]


async def test_slots_limit_holders_in_a_sliding_window(store: RedisStore) -> None:
    assert await store.take_slot("runs", "a", 2, 60_000, T)
    assert await store.take_slot("runs", "a", 2, 60_000, T + 1)  # still a's: no second slot
    assert await store.take_slot("runs", "b", 2, 60_000, T + 10_000)
    assert not await store.take_slot("runs", "c", 2, 60_000, T + 20_000)
    assert not await store.take_slot("runs", "c", 0, 60_000, T + 20_000)
    # a's slot was taken a window ago: it is free for c; b's is not yet.
    assert await store.take_slot("runs", "c", 2, 60_000, T + 60_000)
    assert not await store.take_slot("runs", "d", 2, 60_000, T + 60_000)
    assert await store.take_slot("other", "d", 1, 60_000, T + 60_000)


async def test_a_lease_is_held_by_one_holder_until_it_expires(store: RedisStore) -> None:
    assert await store.take_lease("reconcile:1", "replica-a", 60_000)
    assert not await store.take_lease("reconcile:1", "replica-b", 60_000)
    assert not await store.take_lease("reconcile:1", "replica-a", 60_000)
    assert await store.take_lease("reconcile:2", "replica-b", 60_000)
    assert await store.take_lease("short", "replica-a", 1)
    await asyncio.sleep(0.01)  # a real Redis expiry: 1 ms, waited out
    assert await store.take_lease("short", "replica-b", 60_000)


async def test_an_incident_kept_alive_past_the_retention_still_lists(store: RedisStore) -> None:
    """The index is trimmed by when an incident was last kept alive, not by when it opened:
    a storm longer than ``store.retention`` stays listed (and reconciled, and on the board)."""
    day = 86_400_000
    store.configure(replace(store.settings, retention_ms=2 * day))
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    for n in range(1, 6):  # one alert a day for five days: never two days without a change
        await store.ingest([group(placed(f"a{n}"))], 0, T + n * day)
    (other,) = await store.ingest([group(placed("b", region="us"), region="us")], 0, T + 5 * day)
    assert {s.id for s in await store.list_incidents("open", None, 10)} == {
        o.incident_id,
        other.incident_id,
    }
    # Left alone for longer than the retention, an incident leaves the index with its keys.
    await store.ingest([group(placed("b2", region="us"), region="us")], 0, T + 8 * day)
    assert [s.id for s in await store.list_incidents("all", None, 10)] == [other.incident_id]


async def test_batches_that_wait_for_a_call_go_together_each_with_its_outcomes(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    script = store._ingest

    async def counted(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return await script(**kwargs)

    monkeypatch.setattr(store, "_ingest", counted)
    batches = [
        [group(placed("a"))],
        [group(placed("b"))],
        [group(placed("a"))],  # a copy of the first: a duplicate by the time it is applied
        [group(placed("u", region="us"), region="us")],
        [group(placed("a", status="resolved"))],
    ]
    first, second, copy, other, resolving = await asyncio.gather(
        *(store.ingest(b, 0, T) for b in batches)
    )
    assert len(calls) == 1  # all five waited for the writer: one script call
    assert [(o.opened, o.changed, o.duplicates, o.alert_count) for o in first] == [(True, 1, 0, 1)]
    assert [(o.opened, o.changed, o.alert_count) for o in second] == [(False, 1, 2)]
    assert [(o.changed, o.duplicates) for o in copy] == [(0, 1)]
    assert other[0].opened and other[0].incident_id != first[0].incident_id
    assert [o.incident_id for o in (*second, *copy, *resolving)] == [first[0].incident_id] * 3
    loaded = await store.load(first[0].incident_id)
    assert loaded is not None
    assert (loaded.state.alert_count, loaded.state.firing_count) == (2, 1)
    # Each batch's changes are counted once: the state was written once, at the call's end.
    assert loaded.version == 1
    assert [(e.kind, e.text) for e in loaded.state.timeline] == [("opened", "incident opened")]


async def test_under_load_a_batch_arriving_a_few_loop_turns_later_shares_the_call(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    script = store._ingest

    async def counted(**kwargs: Any) -> Any:
        calls.append(len(orjson.loads(kwargs["args"][6])))  # the batches the call carries
        return await script(**kwargs)

    monkeypatch.setattr(store, "_ingest", counted)

    async def later(turns: int, name: str) -> None:
        for _ in range(turns):
            await asyncio.sleep(0)
        await store.ingest([group(placed(name))], 0, T)

    # Quiet (each call carried one batch): a batch goes at once, the next one makes its own.
    await store.ingest([group(placed("q0"))], 0, T)
    await asyncio.gather(store.ingest([group(placed("q1"))], 0, T), later(3, "q2"))
    assert calls == [1, 1, 1]
    # Busy (two batches waited for one call): the writer waits a few turns for more.
    await asyncio.gather(*(store.ingest([group(placed(f"b{i}"))], 0, T) for i in range(2)))
    await asyncio.gather(store.ingest([group(placed("b2"))], 0, T), later(3, "b3"))
    assert calls[3:] == [2, 2]


@pytest.mark.parametrize("turns", [1, 2], ids=["before-its-first-step", "while-it-gathers"])
async def test_a_writer_cancelled_fails_the_batches_waiting_for_it(
    store: RedisStore, turns: int
) -> None:
    # Busy first (two batches in one call), so the next writer waits for more.
    await asyncio.gather(*(store.ingest([group(placed(f"b{i}"))], 0, T) for i in range(2)))
    waiting = asyncio.ensure_future(store.ingest([group(placed("c"))], 0, T))
    for _ in range(turns):
        await asyncio.sleep(0)
    assert store._writer is not None
    store._writer.cancel()
    with pytest.raises(StoreUnavailable, match="ingest cancelled"):
        await asyncio.wait_for(waiting, 10)  # not left waiting for ever
    (o,) = await store.ingest([group(placed("c"))], 0, T)  # the next batch goes as usual
    assert o.changed == 1


async def test_a_call_that_fails_fails_every_batch_in_it(
    store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    async def down(**kwargs: Any) -> Any:
        raise RedisConnectionError("connection refused")

    monkeypatch.setattr(store, "_ingest", down)
    answers = await asyncio.gather(
        *(store.ingest([group(placed(f"f{i}"))], 0, T) for i in range(3)),
        return_exceptions=True,
    )
    assert [type(a) for a in answers] == [StoreUnavailable] * 3
    monkeypatch.undo()
    (o,) = await store.ingest([group(placed("f0"))], 0, T)  # the next call goes as usual
    assert o.opened


async def test_lifetimes_are_renewed_once_a_64th_of_the_retention(store: RedisStore) -> None:
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    raw = store._r
    keys = [f"{store._p}{kind}:{o.incident_id}" for kind in ("inc", "am", "ab", "tl", "rc")]
    for k in keys:
        await raw.pexpire(k, 60_000)  # as if most of the lifetime had gone by
    every = store.settings.retention_ms // 64
    await store.ingest([group(placed("b"))], 0, T + every - 1)
    assert all(0 < ttl <= 60_000 for ttl in [await raw.pttl(k) for k in keys])
    await store.ingest([group(placed("c"))], 0, T + every)
    renewed = [await raw.pttl(k) for k in keys]
    assert all(ttl > store.settings.retention_ms - 60_000 for ttl in renewed)


async def test_a_commit_on_an_incident_that_expired_meanwhile_lets_it_go(
    store: RedisStore,
) -> None:
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    (claim,) = await store.claim_due(T + WAIT, 30_000, 10)
    stored = await store.load(claim.incident_id)
    assert stored is not None
    for kind in ("inc", "am", "ab", "tl"):  # its retention ran out between load and commit
        await store._r.delete(f"{store._p}{kind}:{o.incident_id}")
    outcome = await store.commit(claim, stored.version, stored.state, {}, None, [], T + WAIT)
    assert outcome == "lost"
    assert await store.claim_due(T + 100 * WAIT, 30_000, 10) == []


async def test_a_commit_keeps_the_alerts_alive_with_their_incident(store: RedisStore) -> None:
    (o,) = await store.ingest([group(placed("a"))], 0, T)
    kept = [f"{store._p}{kind}:{o.incident_id}" for kind in ("am", "ab", "rc")]
    every = store.settings.retention_ms // 64

    async def decide_at(now_ms: int) -> list[int]:
        for k in kept:
            await store._r.pexpire(k, 60_000)  # its last batch was long ago
        (claim,) = await store.claim_due(now_ms, 30_000, 10)
        stored = await store.load(claim.incident_id)
        assert stored is not None
        assert await store.commit(claim, stored.version, stored.state, {}, 0, [], now_ms) == "ok"
        return [await store._r.pttl(k) for k in kept]

    # Renewed as ingest renews them: not right after a batch, once a 64th of the retention
    # has gone by since.
    assert all(0 < ttl <= 60_000 for ttl in await decide_at(T + every - 1))
    renewed = await decide_at(T + every)
    assert all(ttl > store.settings.retention_ms - 60_000 for ttl in renewed)


async def test_an_incident_keeps_at_most_its_cap_of_alerts_dropping_old_resolved_ones(
    store: RedisStore,
) -> None:
    store.configure(replace(store.settings, max_alerts_per_incident=3))
    (o,) = await store.ingest([group(placed("a"), placed("b"), placed("c"))], 0, T)
    await store.ingest([group(placed("a", status="resolved"))], 0, T + 1)
    await store.ingest([group(placed("b", status="resolved"))], 0, T + 2)
    await store.ingest([group(placed("c", status="resolved"))], 0, T + 3)
    # c fires again (a new startsAt: not a late copy): no longer one to drop.
    await store.ingest([group(placed("c", starts_at=STARTS + timedelta(minutes=5)))], 0, T + 4)
    await store.ingest([group(placed("d"), placed("e"))], 0, T + 5)
    page = await store.load_alerts(o.incident_id, 10)
    # a and b resolved first and go; c (firing again), d and e stay.
    assert sorted(a.fp for a in page.alerts) == ["c", "d", "e"]
    loaded = await store.load(o.incident_id)
    assert loaded is not None
    assert (loaded.state.alerts_dropped, loaded.state.firing_count) == (2, 3)
    assert [e.kind for e in loaded.state.timeline].count("alerts_dropped") == 1
    # Firing alerts are never dropped, whatever the cap.
    await store.ingest([group(placed("f"), placed("g"))], 0, T + 6)
    assert (await store.load_alerts(o.incident_id, 10)).total == 5


async def test_a_repeated_resolution_of_an_alert_let_go_is_a_duplicate(
    store: RedisStore,
) -> None:
    """Over its cap, an incident lets its oldest resolved alerts go. Alertmanager's HA peer
    or next flush sending those resolutions again does not take one in as a new alert: it
    would count twice in alert_count and alerts_dropped and move last_change_at, putting
    the resolve off by resolve_after at every repeat."""
    store.configure(replace(store.settings, max_alerts_per_incident=2))
    (o,) = await store.ingest([group(placed("a"), placed("b"), placed("c"))], 0, T)
    done = [group(*(placed(f, status="resolved") for f in "abc"))]
    await store.ingest(done, 0, T + 1_000)
    before = await store.load(o.incident_id)
    assert before is not None
    assert (before.state.alert_count, before.state.alerts_dropped) == (3, 1)
    (copy,) = await store.ingest(done, 0, T + 2_000)  # the HA peer's copy
    (again,) = await store.ingest(done, 0, T + 3_000)  # and Alertmanager's next flush
    after = await store.load(o.incident_id)
    assert after is not None
    assert (copy.duplicates, again.duplicates) == (3, 3)
    assert (after.state.alert_count, after.state.alerts_dropped) == (3, 1)
    assert after.state.last_change_at == before.state.last_change_at == T + 1_000
    assert after.version == before.version


async def test_actions_run_keeps_what_ran_or_failed_when_capped(store: RedisStore) -> None:
    """Refusals (anyone may press Run) and skips go first: the record of a run that ran is
    what the incident, its outcome and its page are about."""
    (o,) = await store.ingest([group(placed("a"))], 0, T)

    def record(n: int, status: str) -> Annotation:
        run = {"action": "rollback", "by": "x", "at": n, "status": status, "result": ""}
        return Annotation(append={"actions_run": [run]})

    assert await store.annotate(o.incident_id, record(0, "ran"), T) == "ok"
    for n in range(1, 60):
        assert await store.annotate(o.incident_id, record(n, "refused"), T) == "ok"
    stored = await store.load(o.incident_id)
    assert stored is not None
    kept = stored.state.actions_run
    assert [(r.at, r.status) for r in kept[:2]] == [(0, "ran"), (11, "refused")]
    assert [r.at for r in kept] == [0, *range(11, 60)]


async def test_silences_alertmanager_ended_early_go_first_when_capped(store: RedisStore) -> None:
    """Beyond 50, the silences still in force stay (their ids are how they are found and
    expired): not those Alertmanager ended before their end, which hold no more."""
    (o,) = await store.ingest([group(placed("a"))], 0, T)

    def silence(n: int) -> dict[str, object]:
        return {"id": f"s-{n}", "at": T, "by": "x", "ends_at": T + 7_200_000}

    first = Annotation(append={"silences": [silence(n) for n in range(50)]})
    assert await store.annotate(o.incident_id, first, T) == "ok"
    ended = Annotation(merge={"silences_ended": {"s-0": T + 60_000, "s-1": T + 60_000}})
    assert await store.annotate(o.incident_id, ended, T + 60_000) == "ok"
    more = Annotation(append={"silences": [silence(50), silence(51)]})
    assert await store.annotate(o.incident_id, more, T + 120_000) == "ok"
    stored = await store.load(o.incident_id)
    assert stored is not None
    assert [s.id for s in stored.state.silences] == [f"s-{n}" for n in range(2, 52)]
