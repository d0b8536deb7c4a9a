"""An incident remembers the ones before it: similar past incidents ranked on a seeded
history, what fixed them, and the history of each suggested action."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

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


def state(i: str, services: list[str], alertnames: list[str], stages: list[str]) -> IncidentState:
    return IncidentState(
        id=i,
        key=i,
        digest="d",
        journey="checkout",
        group_labels={},
        status="resolved",
        created_at=int(i),
        updated_at=int(i),
        first_firing_at=int(i),
        notified_at=int(i),
        services=dict.fromkeys(services, 1),
        stages=dict.fromkeys(stages, 1),
        alertnames=alertnames,
    )


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
