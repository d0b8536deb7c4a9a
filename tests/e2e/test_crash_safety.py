"""A receiver killed with SIGKILL loses no delivery and makes no duplicate (real Redis,
real receiver processes, the sink fakes).

The dangerous moments are after a sink took a job and before its receipt is recorded
(the retry must find what the first attempt made), and after a job is claimed and before
the sink applied it (the retry must send it). Both are pinned here with faults that hold
the request at the fake; a last test kills at random moments of a storm's life.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE_JOURNEYS, make_alert
from tests.support import receiver_process as rp
from tests.support.fake_server import Fault
from tests.support.sink_world import Fakes, fakes

TOKEN = "crash-test-token"
ALL = ["P1", "P2", "P3", "P4", "P5"]
# A request held this long at a fake outlives the receiver that sent it (killed as soon
# as every fake has the request), and not the sinks' 2 s timeout.
HOLD = 1.5
# The sink's first write: the one a retry must not repeat.
CREATE_PATHS = {
    "pagerduty": "/v2/enqueue",
    "slack": "/api/chat.postMessage",
    "jira": "/rest/api/2/issue",
}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Fakes]:
    with fakes(tmp_path) as f:
        yield f


@pytest.fixture
def config(tmp_path: Path, redis_port: int, world: Fakes) -> Path:
    return receiver_config(
        tmp_path / "receiver.yaml",
        store_url=f"redis://127.0.0.1:{redis_port}/0",
        key_prefix=f"crash-{uuid.uuid4().hex[:8]}",
        world=world,
    )


def receiver_config(path: Path, *, store_url: str, key_prefix: str, world: Fakes) -> Path:
    """Short timers, every priority to every sink fake."""
    return rp.write_config(
        path,
        store_url=store_url,
        key_prefix=key_prefix,
        token=TOKEN,
        journeys_file=EXAMPLE_JOURNEYS,
        grouping={"group_wait": "0s", "group_interval": "1s", "resolve_after": "1s"},
        scheduler={"tick": "100ms", "lease": "2s"},
        routing={"pagerduty": ALL, "slack": ALL, "jira": ALL},
        sinks=world.sinks("2s"),
        # As short as the sink timeouts allow (6 of them), so that a dead receiver's claims
        # lapse soon; the timeouts outlast HOLD's kill, so no attempt ends before it.
        outbox={"lease": "12s", "backoff_initial": "200ms", "backoff_max": "1s"},
    )


@contextlib.contextmanager
def receiver(config: Path, workdir: Path) -> Iterator[rp.ReceiverProcess]:
    workdir.mkdir()
    with rp.receiver_process(config, workdir, TOKEN) as process:
        yield process


def kill(process: rp.ReceiverProcess) -> None:
    os.kill(process.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(process.pid, 0)


def incident(process: rp.ReceiverProcess, incident_id: str) -> dict[str, Any]:
    with process.client() as client:
        data: dict[str, Any] = client.get(f"/api/v1/incidents/{incident_id}").json()
    return data


def wait_delivered(process: rp.ReceiverProcess, ids: list[str], states: dict[str, str]) -> None:
    """Until every incident's receipt of every sink reads as ``states`` says."""

    def recorded() -> dict[str, dict[str, str]]:
        return {
            i: {name: s.get("state", "") for name, s in incident(process, i)["sinks"].items()}
            for i in ids
        }

    rp.poll(
        recorded,
        lambda seen: all(seen[i] == states for i in ids),
        what="every delivery recorded",
        timeout=45.0,
        context=process.tail,
    )


def assert_exactly_once(world: Fakes, incident_id: str) -> None:
    """One PagerDuty incident, one Slack message, one Jira issue for the incident."""
    assert len(world.pagerduty.incidents(incident_id)) == 1
    assert len(world.slack.messages("#inc-checkout")) == 1
    (issue,) = world.jira.with_label(f"journey-receiver-{incident_id}")
    assert issue.status == "Open"


def until(what: str, check: Callable[[], bool]) -> None:
    rp.poll(check, bool, what=what, timeout=20.0)


OPEN = {"pagerduty": "triggered", "slack": "open", "jira": "open"}


def test_killed_after_the_sinks_took_the_open_and_before_the_receipts_were_recorded(
    tmp_path: Path, config: Path, world: Fakes
) -> None:
    for sink, path in CREATE_PATHS.items():
        fake = getattr(world, sink).server if sink != "slack" else world.slack_server
        fake.inject(Fault(path, applied=True, delay=HOLD))
    with receiver(config, tmp_path / "first") as first:
        (incident_id,) = first.post_alerts([make_alert("payment-service")])
        # Every sink has made its object; none of the answers has reached the receiver.
        until("the PagerDuty alert", lambda: bool(world.pagerduty.incidents(incident_id)))
        until("the Slack message", lambda: bool(world.slack.messages("#inc-checkout")))
        until(
            "the Jira issue",
            lambda: bool(world.jira.with_label(f"journey-receiver-{incident_id}")),
        )
        sinks = incident(first, incident_id)["sinks"]
        kill(first)
        assert {name: s["state"] for name, s in sinks.items()} == dict.fromkeys(OPEN, "pending")
    with receiver(config, tmp_path / "second") as second:
        wait_delivered(second, [incident_id], OPEN)
    assert_exactly_once(world, incident_id)
    # The retry found the first attempt's objects instead of making new ones.
    assert len([r for r in world.slack_server.requests("/api/chat.postMessage")]) == 1
    assert (
        len([r for r in world.jira.server.requests("/rest/api/2/issue") if r.method == "POST"]) == 1
    )


def test_killed_while_its_requests_were_in_flight_and_not_yet_applied(
    tmp_path: Path, config: Path, world: Fakes
) -> None:
    for sink, path in CREATE_PATHS.items():
        fake = getattr(world, sink).server if sink != "slack" else world.slack_server
        fake.inject(Fault(path, delay=HOLD, status=503))
    with receiver(config, tmp_path / "first") as first:
        (incident_id,) = first.post_alerts([make_alert("payment-service")])
        until(
            "every sink's first request in flight",
            lambda: all(
                (getattr(world, s).server if s != "slack" else world.slack_server).requests(p)
                for s, p in CREATE_PATHS.items()
            ),
        )
        kill(first)
    with receiver(config, tmp_path / "second") as second:
        wait_delivered(second, [incident_id], OPEN)
    assert_exactly_once(world, incident_id)


def test_killed_at_random_moments_of_a_storm_nothing_is_lost_or_doubled(
    tmp_path: Path, config: Path, world: Fakes
) -> None:
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    regions = ["eu", "us", "ap"]
    ids: set[str] = set()
    for round_ in range(4):
        with receiver(config, tmp_path / f"round-{round_}") as process:
            alerts = [
                make_alert(service, alertname=f"A{round_}", region=region)
                for region in regions
                for service in ("payment-service", "cart-api")
            ]
            ids.update(process.post_alerts(alerts))
            # A real process dies at a moment of its own; this picks the moment.
            time.sleep(rng.uniform(0.0, 1.5))
            kill(process)
    with receiver(config, tmp_path / "last") as last:
        wait_delivered(last, sorted(ids), OPEN)
    note = f"(random seed {seed})"
    assert len(ids) == len(regions), note
    for incident_id in ids:
        assert len(world.pagerduty.incidents(incident_id)) == 1, note
        assert len(world.jira.with_label(f"journey-receiver-{incident_id}")) == 1, note
    # One Slack message per incident, all in the journey's channel.
    assert len(world.slack.messages("#inc-checkout")) == len(ids), note
