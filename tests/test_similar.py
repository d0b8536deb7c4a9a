"""An incident remembers the ones before it: similar past incidents ranked on a seeded
history, what fixed them, and the history of each suggested action."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from receiver.outcomes.similar import jaccard, rank, similarity
from receiver.store.records import IncidentState
from tests.conftest import FakeClock, make_alert, resolved
from tests.support.harness import Harness, harness, write_config

pytestmark = pytest.mark.anyio

JOURNEYS = """\
journeys:
  - id: checkout
    name: Checkout
    weight: 1.0
    owner: {team: payments}
    group_by: [env, region]
    stages:
      - {id: payment, weight: 1.0, match: ['service=~"payment.*"']}
      - {id: cart, weight: 0.6, match: ['service=~"cart.*"']}
    actions:
      - {id: restart-payments, title: "Restart payment-service in {region}"}
      - {id: failover-db, title: "Fail over payments-db"}
"""


def state(
    i: str, services: list[str], alertnames: list[str], stages: list[str], **fields: Any
) -> IncidentState:
    """A resolved incident its people were told of (through the log sink); ``fields`` on
    top."""
    told: dict[str, Any] = {
        "id": i,
        "key": i,
        "digest": "d",
        "journey": "checkout",
        "group_labels": {},
        "status": "resolved",
        "created_at": int(i),
        "updated_at": int(i),
        "first_firing_at": int(i),
        "notified_at": int(i),
        "sinks": {"log": {"state": "pending"}},
        "services": dict.fromkeys(services, 1),
        "stages": dict.fromkeys(stages, 1),
        "alertnames": alertnames,
    }
    return IncidentState.model_validate(told | fields)


def test_similarity_weighs_services_alertnames_and_stages() -> None:
    new = state("100", ["payment-service", "payments-db"], ["Errors", "Latency"], ["payment"])
    same = state("1", ["payment-service", "payments-db"], ["Errors", "Latency"], ["payment"])
    half = state("2", ["payment-service"], ["Errors"], ["payment"])  # 0.4*.5 + 0.4*.5 + 0.2
    other = state("3", ["cart-api"], ["Saturation"], ["cart"])
    unknown_names = state("4", ["payment-service", "payments-db"], [], ["payment"])
    assert jaccard({"a", "b"}, {"b", "c"}) == pytest.approx(1 / 3)
    assert similarity(new, same) == 1.0
    assert similarity(new, half) == pytest.approx(0.6)
    assert similarity(new, other) == 0.0
    # No alertnames on record: services and stages alone, scaled to 1.
    assert similarity(new, unknown_names) == 1.0
    ranked = rank(new, [other, half, same, unknown_names])
    # Equals are newest first; below 0.3 is left out.
    assert [(r.id, r.similarity) for r in ranked] == [("4", 1.0), ("1", 1.0), ("2", 0.6)]


def test_only_incidents_over_and_told_to_someone_are_past_ones() -> None:
    look = (["payment-service"], ["Errors"], ["payment"])
    new = state("100", *look, status="open", notified_at=None, sinks={})
    past = state("1", *look)
    ranked = rank(
        new,
        [
            past,
            # The same outage elsewhere, still open: not a past one, nobody fixed it yet.
            state("99", *look, status="open"),
            # Told of, but routing sent its priority to no sink: nobody heard of it.
            state("2", *look, sinks={}),
            # A blip: nobody was told.
            state("3", *look, notified_at=None, sinks={}),
            new,
            state("101", *look),  # created after it
        ],
    )
    assert [r.id for r in ranked] == ["1"]


async def storm(rx: Harness, clock: FakeClock, services: list[str], fixed: str | None) -> str:
    """One incident of ``services`` that opens, is fixed by ``fixed`` and resolves."""
    alerts = [make_alert(s, alertname=f"{s}-errors") for s in services]
    (incident_id,) = (await rx.post(alerts)).json()["incidents"]
    await rx.tick(30)  # open
    if fixed:
        feedback = {"useful": True, "fixed_by": fixed}
        r = await rx.client.post(
            f"/api/v1/incidents/{incident_id}/feedback", content=json.dumps(feedback)
        )
        assert r.status_code == 201
    await rx.post([resolved(a) for a in alerts])
    await rx.tick(3600)  # resolved, and out of the reopen window
    clock.advance(3600)
    return incident_id


@pytest.fixture
async def rx(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Harness]:
    """A receiver with the journeys above."""
    journeys = tmp_path / "journeys.yaml"
    journeys.write_text(JOURNEYS)
    async with harness(write_config(tmp_path, journeys=journeys), clock) as h:
        yield h


async def test_a_new_incident_lists_the_similar_past_ones_and_what_fixed_them(
    rx: Harness, clock: FakeClock
) -> None:
    a = await storm(rx, clock, ["payment-service", "payments-db"], "restart-payments")
    b = await storm(rx, clock, ["payment-service", "payments-db"], "failover-db")
    c = await storm(rx, clock, ["payment-service"], "restart-payments")
    await storm(rx, clock, ["cart-api"], None)  # another part of the journey
    alerts = [make_alert(s, alertname=f"{s}-errors") for s in ("payment-service", "payments-db")]
    (new,) = (await rx.post(alerts)).json()["incidents"]
    await rx.tick(30)  # open: the memory is taken now
    detail = await rx.incident(new)
    assert [(s["id"], s["similarity"], s["fixed_by"]) for s in detail["similar"]] == [
        (b, 1.0, "failover-db"),
        (a, 1.0, "restart-payments"),
        (c, 0.6, "restart-payments"),
    ]
    histories = {s["id"]: s["history"] for s in detail["suggested_actions"]}
    assert histories == {
        "restart-payments": "fixed 2 of 3 similar incidents",
        "failover-db": "fixed 1 of 3 similar incidents",
    }


async def test_blips_are_never_similar_and_never_crowd_out_the_same_failure(
    rx: Harness, clock: FakeClock
) -> None:
    fixed = await storm(rx, clock, ["payment-service"], "restart-payments")
    for _ in range(5):  # the same service flapping: each alert gone within group_wait
        flaky = make_alert("payment-service", alertname="Probe")
        (blip,) = (await rx.post([flaky])).json()["incidents"]
        assert blip != fixed
        clock.advance(5)
        await rx.post([resolved(flaky)])
        await rx.tick(30)
        clock.advance(3600)
    alerts = [make_alert("payment-service", alertname="payment-service-errors")]
    (new,) = (await rx.post(alerts)).json()["incidents"]
    await rx.tick(30)
    detail = await rx.incident(new)
    assert [(s["id"], s["fixed_by"]) for s in detail["similar"]] == [(fixed, "restart-payments")]


async def test_the_other_regions_of_an_outage_under_way_never_crowd_out_the_past_one(
    rx: Harness, clock: FakeClock
) -> None:
    past = await storm(rx, clock, ["payment-service"], "restart-payments")
    # The same failure in six regions at once (grouped by region: six incidents).
    opened = []
    for region in ("eu", "us", "ap", "sa", "af", "me"):
        alert = make_alert("payment-service", alertname="payment-service-errors", region=region)
        (incident,) = (await rx.post([alert])).json()["incidents"]
        opened.append(incident)
        clock.advance(1)
    await rx.tick(30)  # all six open: their memory is taken now
    for incident in opened:
        detail = await rx.incident(incident)
        # The five others are this outage, still open and unfixed: not past incidents.
        similar = [(s["id"], s["similarity"], s["fixed_by"]) for s in detail["similar"]]
        assert similar == [(past, 1.0, "restart-payments")]
        history = {a["id"]: a["history"] for a in detail["suggested_actions"]}
        assert history["restart-payments"] == "fixed 1 of 1 similar incidents"


def errors(region: str) -> dict[str, object]:
    return make_alert(
        "payment-service",
        alertname="payment-service-errors",
        region=region,
        fingerprint=f"errors-{region}",
    )


async def test_a_reopened_incident_learns_from_the_incidents_since_it_first_opened(
    rx: Harness, clock: FakeClock
) -> None:
    eu = errors("eu")
    (first,) = (await rx.post([eu])).json()["incidents"]
    await rx.tick(30)  # open
    await rx.post([resolved(eu)])
    await rx.tick(300)  # resolved by its alerts
    clock.advance(60)
    # Meanwhile the same failure in us: opened, fixed by restarting payments, resolved.
    us = errors("us")
    (fixed,) = (await rx.post([us])).json()["incidents"]
    await rx.tick(30)
    said = {"useful": True, "fixed_by": "restart-payments"}
    r = await rx.client.post(f"/api/v1/incidents/{fixed}/feedback", content=json.dumps(said))
    assert r.status_code == 201
    await rx.post([resolved(us)])
    await rx.tick(300)
    assert (await rx.incident(fixed))["status"] == "resolved"
    # Within reopen_window eu fires again: the first incident reopens, people are told.
    clock.advance(60)
    (again,) = (await rx.post([{**eu, "startsAt": "2026-04-18T08:40:00Z"}])).json()["incidents"]
    await rx.tick(30)
    detail = await rx.incident(again)
    assert (again, detail["status"], detail["reopened_count"]) == (first, "open", 1)
    similar = [(s["id"], s["similarity"], s["fixed_by"]) for s in detail["similar"]]
    assert similar == [(fixed, 1.0, "restart-payments")]  # never itself
    history = {a["id"]: a["history"] for a in detail["suggested_actions"]}
    assert history["restart-payments"] == "fixed 1 of 1 similar incidents"


async def test_the_page_names_a_similar_incident_no_longer_kept_without_a_link(
    tmp_path: Path, clock: FakeClock, redis_port: int
) -> None:
    # A similar incident is taken at the opening and kept as long as the new one; the
    # past one, older, goes first, its store.retention over: a link to it would lead to
    # "no such incident".
    journeys = tmp_path / "journeys.yaml"
    journeys.write_text(JOURNEYS)
    prefix = f"similar-{tmp_path.name}"
    store = f"{{url: 'redis://127.0.0.1:{redis_port}/0', key_prefix: {prefix}}}"
    cfg = write_config(tmp_path, journeys=journeys)
    cfg.write_text(cfg.read_text().replace("{url: 'memory://'}", store))
    async with harness(cfg, clock) as rx:
        kept = await storm(rx, clock, ["payment-service"], "restart-payments")
        gone = await storm(rx, clock, ["payment-service"], "failover-db")
        (new,) = (await rx.post([make_alert("payment-service")])).json()["incidents"]
        await rx.tick(30)
        assert {s["id"] for s in (await rx.incident(new))["similar"]} == {kept, gone}
        admin = Redis(port=redis_port)
        await admin.delete(f"{{{prefix}}}:inc:{gone}")  # its retention ran out
        await admin.aclose()
        page = await rx.client.get(f"/incidents/{new}")
    assert page.status_code == 200, page.text
    similar = page.text.split('id="similar-h"')[1].split("</section>")[0]
    assert f'href="/incidents/{kept}"' in similar
    assert f'href="/incidents/{gone}"' not in similar
    assert "no longer kept" in similar, similar
