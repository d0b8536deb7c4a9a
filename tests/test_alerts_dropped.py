"""``alerts_dropped`` in the API's incident: the resolved alerts an incident let go past
``store.max_alerts_per_incident`` (the store keeps the count, ``tests/store/test_contract.py``
how it drops them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.incident import build
from receiver.store.records import AlertPage
from tests.conftest import EXAMPLE_JOURNEYS, FakeClock, make_alert, resolved
from tests.support.harness import harness
from tests.test_incident import CHECKOUT, P1, chart

pytestmark = pytest.mark.anyio


def capped_config(tmp_path: Path, cap: int) -> Path:
    path = tmp_path / "receiver.yaml"
    path.write_text(
        f"journeys_file: {EXAMPLE_JOURNEYS}\n"
        f"store: {{url: 'memory://', max_alerts_per_incident: {cap}}}\n"
        "grouping: {group_wait: 30s, group_interval: 2m, resolve_after: 5m, reopen_window: 30m}\n"
        "server: {auth: {allow_open: true}}\n"
    )
    return path


async def test_the_api_incident_says_how_many_resolved_alerts_went_past_the_cap(
    tmp_path: Path, clock: FakeClock
) -> None:
    cap = 500  # the smallest the config allows
    async with harness(capped_config(tmp_path, cap), clock) as rx:
        fired = [make_alert("payment-service", alertname=f"A{n:03d}") for n in range(cap)]
        (incident_id,) = (await rx.post(fired)).json()["incidents"]
        await rx.tick(31)
        assert (await rx.incident(incident_id))["alerts_dropped"] == 0
        await rx.post([resolved(fired[0]), resolved(fired[1])])
        clock.advance(1)
        # Two more firing alerts: 502 would be held, two over the cap.
        await rx.post([make_alert("payment-service", alertname=n) for n in ("B1", "B2")])
        detail = await rx.incident(incident_id)
        assert detail["alerts_dropped"] == 2
        # alert_count counts every alert the incident took; it holds all but the dropped.
        assert (detail["alert_count"], detail["firing_count"]) == (cap + 2, cap)
        assert len(detail["alerts"]) + detail["alerts_omitted"] == cap
        names = {x["labels"]["alertname"] for x in detail["alerts"]}
        assert {"B1", "B2"} <= names and not {"A000", "A001"} & names
        assert "alerts_dropped" in [e["kind"] for e in detail["timeline"]]
        # The cap is the page's business, not the API's.
        assert "alerts_cap" not in detail


def test_build_carries_the_count_and_the_cap_for_the_page() -> None:
    state = chart(alerts_dropped=7)
    incident = build(state, AlertPage(alerts=[], total=0), CHECKOUT, P1, alerts_cap=10_000)
    assert (incident.alerts_dropped, incident.alerts_cap) == (7, 10_000)
    dumped = incident.model_dump(mode="json")
    assert dumped["alerts_dropped"] == 7
    assert "alerts_cap" not in dumped
    assert build(chart(), AlertPage(alerts=[], total=0), CHECKOUT, P1).alerts_dropped == 0
