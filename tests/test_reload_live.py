"""Reload while incidents are live: what a team lead's edit of journeys.yaml does to them."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_JOURNEYS, FakeClock, make_alert
from tests.support.harness import Harness, harness, write_config

pytestmark = pytest.mark.anyio

_prefixes = itertools.count(1)
Config = Callable[[Path], Path]


@pytest.fixture(params=["memory", "redis"])
def config_for(request: pytest.FixtureRequest, tmp_path: Path) -> Config:
    """receiver.yaml (short timers, one recording sink) with ``journeys`` on the embedded
    store or on a real redis-server, each test under its own key prefix."""

    def make(journeys: Path) -> Path:
        cfg = write_config(tmp_path, journeys=journeys)
        if request.param == "redis":
            port = request.getfixturevalue("redis_port")
            store = (
                f"store: {{url: 'redis://127.0.0.1:{port}/0', key_prefix: rl{next(_prefixes)}}}\n"
            )
            cfg.write_text(cfg.read_text().replace("store: {url: 'memory://'}\n", store))
        return cfg

    return make


async def _reload(rx: Harness) -> None:
    r = await rx.client.post("/-/reload")
    assert r.status_code == 200, r.text


def _journeys(tmp_path: Path) -> Path:
    path = tmp_path / "journeys.yaml"
    path.write_text(EXAMPLE_JOURNEYS.read_text())
    return path


async def cart_told(rx: Harness) -> tuple[str, dict[str, object]]:
    """A critical cart alert, told: checkout 1.0 x cart 0.6 x critical 1 x 0.8 x KPIs
    unknown 0.85 = 40.8, P3. Its incident's id, and the alert (to repeat it)."""
    alert = make_alert("cart-api", alertname="CartSlow")
    (inc,) = (await rx.post([alert])).json()["incidents"]
    await rx.tick(30)
    assert [(k, i.priority) for k, _, i in rx.sink.sent] == [("open", "P3")]
    return str(inc), alert


async def test_renaming_a_stage_does_not_raise_the_priority_of_its_live_incident(
    tmp_path: Path, clock: FakeClock, config_for: Config
) -> None:
    journeys = _journeys(tmp_path)
    async with harness(config_for(journeys), clock) as rx:
        inc, _ = await cart_told(rx)

        # The team lead renames the stage, nothing else: same services, same weight.
        journeys.write_text(journeys.read_text().replace("- id: cart\n", "- id: basket\n"))
        await _reload(rx)

        # Nothing about the outage changed; the incident is looked at again (its KPIs are
        # read every group_interval).
        await rx.tick(120)
        detail = await rx.incident(inc)
        stage = next(f for f in detail["score_breakdown"] if f["name"] == "stage")
        # No page for a rename: no "update" raising it to P2 (PagerDuty's routing).
        assert [(k, i.priority) for k, _, i in rx.sink.sent] == [("open", "P3")], stage
        assert (detail["priority"], stage["value"]) == ("P3", 0.6), stage


async def test_an_alert_a_reload_moved_to_another_journey_is_not_rescored_in_its_old_incident(
    tmp_path: Path, clock: FakeClock, config_for: Config
) -> None:
    journeys = _journeys(tmp_path)
    async with harness(config_for(journeys), clock) as rx:
        inc, alert = await cart_told(rx)

        # The team lead gives the cart its own journey: cart-api now matches its "items"
        # stage (weight 0.5) instead of checkout's "cart" stage.
        text = journeys.read_text().replace(
            "journeys:\n",
            "journeys:\n"
            "  - id: basket\n"
            "    name: Basket\n"
            "    weight: 0.5\n"
            "    owner: {team: basket}\n"
            "    stages:\n"
            "      - {id: items, weight: 0.5, match: ['service=\"cart-api\"']}\n",
            1,
        )
        journeys.write_text(text)
        await _reload(rx)

        # Alertmanager repeats the alert, unchanged (repeat_interval, or another alert of
        # its group). It stays with the checkout incident that paged for it...
        assert (await rx.post([alert])).json()["incidents"] == [inc]
        await rx.tick(1)
        detail = await rx.incident(inc)
        # ...but is now counted there under the other journey's stage, which checkout does
        # not have: weighed 1.0, so the same outage is raised P3 -> P2 and paged again,
        # and "items" is announced as a new stage of checkout.
        assert [(k, i.priority) for k, _, i in rx.sink.sent] == [("open", "P3")], [
            e["text"] for e in detail["timeline"][-2:]
        ]
        assert detail["stages"] == ["cart"]
        assert detail["priority"] == "P3"


async def test_renaming_a_journey_id_does_not_demote_its_live_incident(
    tmp_path: Path, clock: FakeClock, config_for: Config
) -> None:
    journeys = _journeys(tmp_path)
    async with harness(config_for(journeys), clock) as rx:
        # Payments failing at checkout: 1.0 x 1.0 x 1 x 1 x 0.8 x KPIs unknown 0.85 = 68, P2.
        alert = make_alert("payment-service", alertname="PaymentsFailing")
        (inc,) = (await rx.post([alert])).json()["incidents"]
        await rx.tick(30)
        assert [(k, i.priority) for k, _, i in rx.sink.sent] == [("open", "P2")]

        # The team lead renames the journey's id (say, to match a new dashboard): same
        # stages, same weights, same owner.
        journeys.write_text(journeys.read_text().replace("- id: checkout\n", "- id: purchase\n"))
        await _reload(rx)

        # Payments are still failing; Alertmanager repeats the alert a while later.
        clock.advance(300)
        assert (await rx.post([alert])).json()["incidents"] == [inc]
        await rx.tick(1)
        detail = await rx.incident(inc)
        journey = next(f for f in detail["score_breakdown"] if f["name"] == "journey")
        assert [(k, i.priority) for k, _, i in rx.sink.sent] == [("open", "P2")], [
            e["text"] for e in detail["timeline"][-2:]
        ]
        assert (detail["priority"], journey["value"]) == ("P2", 1.0), journey


async def test_a_weight_raised_by_a_reload_raises_a_live_incident_at_once(
    tmp_path: Path, clock: FakeClock, config_for: Config
) -> None:
    journeys = _journeys(tmp_path)
    async with harness(config_for(journeys), clock) as rx:
        inc, _ = await cart_told(rx)
        clock.advance(10)
        # The team lead weighs the cart stage as much as the payment: no alert changes, and
        # this journey has no KPI to look at again, yet the raise goes out at once.
        journeys.write_text(
            journeys.read_text().replace(
                "      - id: cart\n        weight: 0.6", "      - id: cart\n        weight: 1.0"
            )
        )
        await _reload(rx)
        await rx.tick(1)
        assert [(k, i.priority) for k, _, i in rx.sink.sent] == [("open", "P3"), ("update", "P2")]
        assert (await rx.incident(inc))["priority"] == "P2"


async def test_a_rescore_the_store_could_not_start_is_done_at_the_next_round(
    tmp_path: Path, clock: FakeClock
) -> None:
    # README: "A changed weight ... re-score[s] every open incident at the scheduler's next
    # round: a raise is sent at once". The round right after the reload meets a store blip
    # (the scheduler logs it and retries next tick); the rescore must not be forgotten.
    from receiver.errors import StoreUnavailable

    journeys = _journeys(tmp_path)
    async with harness(write_config(tmp_path, journeys=journeys), clock) as rx:
        await cart_told(rx)
        clock.advance(10)
        journeys.write_text(
            journeys.read_text().replace(
                "      - id: cart\n        weight: 0.6", "      - id: cart\n        weight: 1.0"
            )
        )
        await _reload(rx)
        store = rx.receiver.pipeline.store
        real = store.iter_incidents

        def blip(*args: object, **kwargs: object) -> object:
            store.iter_incidents = real  # type: ignore[method-assign]
            raise StoreUnavailable("connection reset")

        store.iter_incidents = blip  # type: ignore[method-assign]
        await rx.tick(1)  # the store blips: retried next tick
        await rx.tick(1)
        assert [(k, i.priority) for k, _, i in rx.sink.sent] == [("open", "P3"), ("update", "P2")]


async def test_what_check_warns_of_is_logged_when_a_file_brings_it(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # Valid, so served as written: operators who never run check see it in the log.
    journeys = _journeys(tmp_path)
    caplog.set_level(logging.WARNING, logger="journey_receiver")
    async with harness(write_config(tmp_path, journeys=journeys), clock) as rx:
        assert not [r for r in caplog.records if r.getMessage().startswith("config: ")]
        quoted = journeys.read_text().replace("""'env="prod"'""", """"env='prod'\"""", 1)
        assert quoted != journeys.read_text()
        journeys.write_text(quoted)
        await _reload(rx)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("config: ")]
    assert len(said) == 1 and "compares the label with 'prod', quotes included" in said[0]
