"""The replay decides exactly as the running receiver does: the same Alertmanager batches
posted to ``POST /webhook/alertmanager`` with the scheduler ticking every second (the
test harness) give the same notifications, at the same moments, as ``drive`` jumping its
virtual clock from one due time to the next."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from receiver.incident import Incident
from receiver.normalize import labels_fingerprint
from receiver.replay import replay_settings
from receiver.replay.batches import Route, plan
from receiver.replay.drive import drive
from receiver.replay.history import Firing
from receiver.sinks import Delivery, Receipt
from tests.conftest import T0, FakeClock
from tests.support.harness import harness, write_config

pytestmark = pytest.mark.anyio

DATA = Path(__file__).resolve().parent / "data"
START_MS = int(T0) // 60 * 60 * 1000
END_S = 900
# Alertmanager's timers shorter than the receiver's group_wait (30s): a blip can be seen.
ROUTE = Route(("alertname",), group_wait_ms=5000, group_interval_ms=10_000,
              repeat_interval_ms=4 * 3600 * 1000)  # fmt: skip


def firing(alertname: str, service: str, region: str, severity: str, start_s: int,
           end_s: int) -> Firing:  # fmt: skip
    labels = {"alertname": alertname, "service": service, "env": "prod", "region": region,
              "severity": severity}  # fmt: skip
    return Firing(labels_fingerprint(labels), labels, START_MS + start_s * 1000,
                  START_MS + end_s * 1000)  # fmt: skip


FIRINGS = [
    firing("PaymentErrors", "payment-service", "ap", "critical", 0, 12),  # a blip
    firing("CartLatency", "cart-api", "eu", "warning", 20, 200),
    firing("SearchSlow", "search-api", "eu", "warning", 30, 400),
    firing("PaymentErrors", "payments-db", "eu", "critical", 90, 250),  # a raise, at once
    firing("CartLatency", "cart-api", "eu", "warning", 600, 700),  # reopens checkout/eu
]


@dataclass
class TimedSink:
    clock: FakeClock
    name: str = "log"
    coalesces_updates: bool = False
    sent: list[tuple[int, str, str, str]] = field(default_factory=list)

    async def deliver(
        self, incident: Incident, delivery: Delivery, previous: Receipt | None
    ) -> Receipt:
        self.sent.append((self.clock.ms, delivery.kind, incident.key, incident.priority))
        return Receipt(sink=self.name, state=incident.status)

    async def aclose(self) -> None:
        return None


async def test_the_replay_notifies_as_the_receiver_ticking_every_second_does(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, journeys=DATA / "journeys-old.yaml")
    settings = replay_settings(config, None)
    sent = plan(FIRINGS, ROUTE, START_MS + END_S * 1000)
    end_ms = START_MS + END_S * 1000 + settings.timers.group_wait_ms

    replayed = await drive(settings, sent.notifications, end_ms)
    by_id = {st.id: st.key for st in replayed.incidents}
    replay_told = [(s.at_ms, s.kind, by_id[s.incident], s.priority) for s in replayed.sent]

    clock = FakeClock(START_MS / 1000)
    sink = TimedSink(clock)
    batches = {n.at_ms: [] for n in sent.notifications}
    for n in sent.notifications:
        batches[n.at_ms].append(n.message)
    async with harness(config, clock, sinks={"log": sink}) as h:
        for now_ms in range(START_MS, end_ms + 1, 1000):
            clock.now = now_ms / 1000
            for message in batches.get(now_ms, []):
                body = message.model_dump_json(by_alias=True, exclude_none=True)
                r = await h.client.post(
                    "/webhook/alertmanager",
                    content=body,
                    headers={"content-type": "application/json"},
                )
                assert r.status_code == 200, r.text
            await h.tick()
        served = await h.incidents()

    assert replay_told == sink.sent
    kinds = [kind for _, kind, _, _ in replay_told]
    assert kinds.count("open") == 2 and "update" in kinds and "reopen" in kinds
    assert sum(st.blips for st in replayed.incidents) == 1
    assert sorted(i["key"] for i in served) == sorted(by_id.values())


async def test_a_window_longer_than_the_retention_keeps_its_first_incidents(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, journeys=DATA / "journeys-old.yaml")
    settings = replay_settings(config, None)
    day = 86_400
    assert settings.config.store.retention < 14 * day
    # A blip on the first day, an unrelated incident twelve days later: both stay counted.
    firings = [FIRINGS[0], firing("SearchSlow", "search-api", "eu", "warning", 12 * day,
                                  12 * day + 300)]  # fmt: skip
    end_ms = START_MS + 14 * day * 1000
    replayed = await drive(settings, plan(firings, ROUTE, end_ms).notifications, end_ms)
    assert sorted(st.journey for st in replayed.incidents) == ["checkout", "search"]
    assert sum(st.blips for st in replayed.incidents) == 1
