"""What back-fill and reconcile may conclude, with Alertmanager's answers scripted: the
cases the real Alertmanager cannot be made to show on cue (two routes, a webhook racing
the answer, an inference proved wrong)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from receiver.alertmanager import peer as peer_module
from receiver.alertmanager import reconcile
from receiver.alertmanager.client import AmAlert, Matcher
from receiver.alertmanager.reconcile import RECEIVERS
from receiver.models import Batch
from tests.conftest import FakeClock, make_alert, resolved
from tests.support.harness import Harness, harness, write_config

pytestmark = pytest.mark.anyio

STARTS = datetime(2026, 4, 18, 8, 10, tzinfo=UTC)
CONFIG = "alertmanager: {urls: ['http://127.0.0.1:9'], restart_grace: 0s}\n"


def held(
    alert: dict[str, Any],
    receivers: tuple[str, ...] = ("journey-receiver",),
    updated_at: datetime = STARTS,
) -> AmAlert:
    return AmAlert(
        fingerprint=alert["fingerprint"],
        labels=alert["labels"],
        annotations={},
        starts_at=STARTS,
        ends_at=STARTS,
        updated_at=updated_at,
        generator_url="",
        state="active",
        silenced_by=(),
        inhibited_by=(),
        receivers=receivers,
    )


class ScriptedAlertmanager:
    """Answers as told; ``during_alerts`` runs while ``alerts`` is being answered."""

    def __init__(self) -> None:
        self.group: list[AmAlert] = []
        self.all: list[AmAlert] = []
        self.during_alerts: Callable[[], Any] | None = None

    async def group_alerts(
        self, group_labels: Mapping[str, str], receiver: str | None = None
    ) -> list[AmAlert]:
        return list(self.group)

    async def alerts(self, matchers: Sequence[Matcher], **_: object) -> list[AmAlert]:
        if self.during_alerts is not None:
            await self.during_alerts()
        wanted = {m.name: m.value for m in matchers}
        return [a for a in self.all if all(a.labels.get(k) == v for k, v in wanted.items())]

    async def status(self) -> dict[str, Any]:
        return {"uptime": "2020-01-01T00:00:00Z"}

    async def aclose(self) -> None:
        return None


async def scripted(rx: Harness) -> ScriptedAlertmanager:
    am = ScriptedAlertmanager()
    real = rx.receiver.peer.client
    assert real is not None
    await real.aclose()
    rx.receiver.peer.client = am  # type: ignore[assignment]
    return am


async def firing_names(rx: Harness, incident_id: str) -> list[str]:
    detail = await rx.incident(incident_id)
    return sorted(a["labels"]["alertname"] for a in detail["alerts"] if a["status"] == "firing")


async def test_an_alert_resolved_by_inference_fires_again_when_alertmanager_sends_it(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with harness(write_config(tmp_path, CONFIG), clock) as rx:
        am = await scripted(rx)
        errors = make_alert("payment-service", alertname="Errors")
        (incident_id,) = (await rx.post([errors])).json()["incidents"]
        await rx.tick(60)  # reconcile: Alertmanager holds nothing (it lost its state)
        assert await firing_names(rx, incident_id) == []
        # Prometheus sends it again, Alertmanager notifies: the same startsAt as before.
        am.all = [held(errors)]
        await rx.post([errors])
        assert await firing_names(rx, incident_id) == ["Errors"]


@pytest.mark.parametrize(
    ("first", "counted", "said"),
    [
        (2, 0, []),
        (1, 1, [": resolved here (1; the others already were)"]),
    ],
    ids=["all", "one"],
)
async def test_resolutions_another_replica_made_first_are_not_counted_or_said_again(
    tmp_path: Path,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    first: int,
    counted: int,
    said: list[str],
) -> None:
    # Two replicas (or a back-fill and a reconcile) compare at the same moment: both find
    # the alerts gone from Alertmanager, and the other resolves ``first`` of them first.
    async with harness(write_config(tmp_path, CONFIG), clock) as rx:
        await scripted(rx)
        errors = make_alert("payment-service", alertname="Errors")
        latency = make_alert("payment-service", alertname="Latency")
        (incident_id,) = (await rx.post([errors, latency])).json()["incidents"]
        ingest = reconcile._ingest

        async def resolved_first(pipeline: Any, alerts: list[Any]) -> Any:
            await ingest(pipeline, alerts[:first])  # the other replica's, a moment before
            return await ingest(pipeline, alerts)

        monkeypatch.setattr(reconcile, "_ingest", resolved_first)
        resolved_here = rx.receiver.metrics.peer_alerts.labels("resolved")
        before = resolved_here._value.get()
        await rx.tick(60)  # reconcile: Alertmanager holds nothing
        assert await firing_names(rx, incident_id) == []
        assert resolved_here._value.get() == before + counted
        timeline = [e["text"] for e in (await rx.incident(incident_id))["timeline"]]
        lines = [t.partition(" (Errors, Latency)")[2] for t in timeline if "resolved here" in t]
        assert lines == said, timeline


def at(clock: FakeClock) -> datetime:
    return datetime.fromtimestamp(clock.now, UTC)


async def resolved_after_a_page(rx: Harness, alert: dict[str, Any]) -> tuple[str, datetime]:
    """An incident of ``alert`` notified, then resolved by Alertmanager's resolution; its
    id, and when the resolution came."""
    (incident_id,) = (await rx.post([alert])).json()["incidents"]
    await rx.tick(10)  # group_wait: notified
    came = at(rx.clock)
    await rx.post([resolved(alert)])
    await rx.tick(121)  # resolve_after
    await rx.tick(1)
    assert (await rx.incident(incident_id))["status"] == "resolved"
    return str(incident_id), came


async def test_an_alert_firing_again_with_its_old_startsat_reopens_at_reconcile(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with harness(write_config(tmp_path, CONFIG), clock) as rx:
        am = await scripted(rx)
        errors = make_alert("payment-service", alertname="Errors")
        incident_id, _ = await resolved_after_a_page(rx, errors)
        # Prometheus was cut off from Alertmanager long enough for it to resolve the
        # alert; back, it sends the alert with the startsAt it had, Alertmanager holds it
        # again and notifies it: to a webhook alone, a late copy of the old notification.
        clock.advance(60)
        am.all = [held(errors, updated_at=at(clock))]
        await rx.post([errors])
        assert (await rx.incident(incident_id))["status"] == "resolved"
        await rx.tick(60)  # reconcile: Alertmanager holds it, updated after we resolved it
        detail = await rx.incident(incident_id)
        assert (detail["status"], detail["reopened_count"]) == ("open", 1)
        assert await firing_names(rx, incident_id) == ["Errors"]
        said = "reconcile: Alertmanager holds 1 alert(s) (Errors) firing again: firing here"
        assert said in [e["text"] for e in detail["timeline"]]


async def test_reconcile_finds_a_resolved_incident_however_many_opened_after_it(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reconcile, "RESOLVED_COMPARED", 1)  # stands for a busy week's many
    async with harness(write_config(tmp_path, CONFIG), clock) as rx:
        am = await scripted(rx)
        errors = make_alert("payment-service", alertname="Errors")
        am.all = [held(errors)]
        (first,) = (await rx.post([errors])).json()["incidents"]
        await rx.tick(10)  # notified
        # Another incident opens after it and resolves; the first resolves last.
        await resolved_after_a_page(rx, make_alert("payment-service", region="us"))
        ended = at(clock).isoformat().replace("+00:00", "Z")
        await rx.post([{**errors, "status": "resolved", "endsAt": ended}])
        am.all = []
        await rx.tick(301)  # resolve_after
        await rx.tick(1)
        assert (await rx.incident(first))["status"] == "resolved"
        clock.advance(60)
        am.all = [held(errors, updated_at=at(clock))]
        await rx.tick(60)  # reconcile: the one resolved last is looked at first
        assert (await rx.incident(first))["status"] == "open"


@pytest.mark.parametrize(
    "case",
    [
        "a peer that has not heard of the resolution",
        "updated within a minute of it (clocks may differ)",
        "silenced",
        "routed to another receiver only",
    ],
)
async def test_what_alertmanager_holds_but_would_not_send_here_fires_nothing_again(
    tmp_path: Path, clock: FakeClock, case: str
) -> None:
    async with harness(write_config(tmp_path, CONFIG), clock) as rx:
        am = await scripted(rx)
        errors = make_alert("payment-service", alertname="Errors")
        before = at(clock)  # its last update from Prometheus, before the resolution
        incident_id, resolved_at = await resolved_after_a_page(rx, errors)
        clock.advance(120)
        alert = held(errors, updated_at=at(clock))
        if case == "a peer that has not heard of the resolution":
            alert = held(errors, updated_at=before)
        elif case == "updated within a minute of it (clocks may differ)":
            alert = held(errors, updated_at=resolved_at + timedelta(seconds=30))
        elif case == "silenced":
            alert = dataclasses.replace(alert, state="suppressed", silenced_by=("s-1",))
        else:
            alert = held(errors, ("team-email",), updated_at=at(clock))
        am.all = [alert]
        await rx.tick(60)
        await rx.tick(60)
        assert (await rx.incident(incident_id))["status"] == "resolved"
        assert await firing_names(rx, incident_id) == []


async def test_an_alert_reconcile_resolved_fires_again_once_alertmanager_holds_it_again(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with harness(write_config(tmp_path, CONFIG), clock) as rx:
        am = await scripted(rx)
        errors = make_alert("payment-service", alertname="Errors")
        (incident_id,) = (await rx.post([errors])).json()["incidents"]
        await rx.tick(10)
        await rx.tick(60)  # reconcile: Alertmanager holds nothing (it lost its state)
        await rx.tick(121)
        await rx.tick(1)
        assert (await rx.incident(incident_id))["status"] == "resolved"
        # Prometheus sends it again; Alertmanager, its notification log kept, does not
        # notify it again before repeat_interval: only reconcile can bring it back.
        am.all = [held(errors, updated_at=at(clock) + timedelta(minutes=2))]
        await rx.tick(60)
        detail = await rx.incident(incident_id)
        assert (detail["status"], detail["reopened_count"]) == ("open", 1)
        assert await firing_names(rx, incident_id) == ["Errors"]


async def test_a_replica_keeps_a_bounded_number_of_receiver_names(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peer_module, "_RECEIVERS_KEPT", 3)
    async with harness(write_config(tmp_path, CONFIG), clock) as rx:
        peer = rx.receiver.peer
        for name in ("a", "b", "c", "d", "x" * 201):
            batch = Batch(
                alerts=[], truncated_alerts=0, group_key="", receiver=name, external_url=""
            )
            await peer.heard(batch)
        cache = rx.receiver.store.cache
        kept = [n for n in ("a", "b", "c", "d") if await cache.get(RECEIVERS, n)]
        assert kept == ["a", "b", "c"]
        assert await cache.get(RECEIVERS, "x" * 201) is None


async def test_a_back_fill_resolves_only_what_no_route_holds(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with harness(write_config(tmp_path, CONFIG), clock) as rx:
        am = await scripted(rx)
        critical = make_alert("payment-service", alertname="Errors", severity="critical")
        warning = make_alert("payment-service", alertname="Latency", severity="warning")
        gone = make_alert("payment-service", alertname="Saturation", severity="critical")
        (incident_id,) = (await rx.post([critical, warning, gone])).json()["incidents"]
        clock.advance(1)
        # A truncated batch of the critical route's group: that group holds only Errors;
        # Latency is still held, under the warning route's receiver; Saturation is gone.
        am.group = [held(critical)]
        am.all = [held(critical), held(warning, ("jr-warning",))]
        body = {
            "version": "4",
            "groupKey": '{}/{severity="critical"}:{env="prod"}',
            "truncatedAlerts": 2,
            "status": "firing",
            "receiver": "jr-critical",
            "groupLabels": {"env": "prod"},
            "commonLabels": {},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093",
            "alerts": [critical],
        }
        r = await rx.client.post("/webhook/alertmanager", json=body)
        assert r.status_code == 200
        await rx.tick(1)
        assert await firing_names(rx, incident_id) == ["Errors", "Latency"]


async def test_an_alert_newer_than_alertmanagers_answer_is_left_for_the_next_round(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with harness(write_config(tmp_path, CONFIG), clock) as rx:
        am = await scripted(rx)
        errors = make_alert("payment-service", alertname="Errors")
        late = make_alert("payment-service", alertname="Latency")
        (incident_id,) = (await rx.post([errors])).json()["incidents"]
        am.all = [held(errors)]

        async def webhook_in_between() -> None:
            # Alertmanager took Latency after it answered, and its webhook is quicker
            # than the rest of the round.
            clock.advance(1)
            await rx.post([late])

        clock.advance(60)
        am.during_alerts = webhook_in_between
        await rx.tick()
        assert await firing_names(rx, incident_id) == ["Errors", "Latency"]
        am.during_alerts = None
        await rx.tick(60)  # the next round asks again: Latency is truly not held
        assert await firing_names(rx, incident_id) == ["Errors"]


async def test_a_new_episode_newer_than_alertmanagers_answer_is_not_resolved(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The receiver was down when Errors resolved: it still holds it firing (the episode
    of 08:10). Errors fires again just after a reconcile round asked Alertmanager, and its
    webhook lands before the round reaches the incident: a firing alert with a new
    startsAt changed then (``changed_at``), so the round's older answer leaves it alone."""
    config = "alertmanager: {urls: ['http://127.0.0.1:9'], restart_grace: 0s}\n"
    async with harness(write_config(tmp_path, config), clock) as rx:
        am = await scripted(rx)
        errors = make_alert("payment-service", alertname="Errors")
        other = make_alert("payment-service", alertname="Latency")
        (incident_id,) = (await rx.post([errors, other])).json()["incidents"]
        am.all = [held(errors), held(other)]
        await rx.tick(10)
        # Errors resolved at 08:20 while the receiver was down; Alertmanager dropped it.
        am.all = [held(other)]

        async def new_episode_in_between() -> None:
            clock.advance(1)
            began = datetime.fromtimestamp(clock.now - 0.5, UTC).isoformat()
            again = {**errors, "startsAt": began.replace("+00:00", "Z")}
            response = await rx.post([again])
            assert response.status_code == 200

        clock.advance(60)
        am.during_alerts = new_episode_in_between
        await rx.tick()
        detail = await rx.incident(incident_id)
        state = {a["labels"]["alertname"]: a["status"] for a in detail["alerts"]}
        assert state == {"Errors": "firing", "Latency": "firing"}, [
            e["text"] for e in detail["timeline"] if e["kind"] == "alertmanager"
        ]
