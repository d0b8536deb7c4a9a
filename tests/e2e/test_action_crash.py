"""A receiver SIGKILLed after an action's run reached the deploy system and before the
run was recorded: the next receiver sends the same Idempotency-Key, the deploy system
acts once, and the run is recorded once (real Redis, real receiver processes)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import body, make_alert
from tests.support import receiver_process as rp
from tests.support.fake_deploy import FakeDeploy, journeys, serve_deploy

TOKEN = "action-crash-token"
# The deploy system acts at once and answers this late: the receiver is killed meanwhile.
HOLD = 1.5


@pytest.fixture
def deploy() -> Iterator[FakeDeploy]:
    with serve_deploy() as fake:
        yield fake


def config(tmp: Path, redis_port: int, deploy: FakeDeploy) -> Path:
    return rp.write_config(
        tmp / "receiver.yaml",
        store_url=f"redis://127.0.0.1:{redis_port}/0",
        key_prefix=f"act-{uuid.uuid4().hex[:8]}",
        token=TOKEN,
        journeys_file=journeys(tmp, deploy.url, "auto"),
        grouping={"group_wait": "0s", "group_interval": "1s", "resolve_after": "1m"},
        scheduler={"tick": "100ms", "lease": "2s"},
        # A dead receiver's run job is taken over after the lease; the run's own timeout
        # (2 s) outlasts HOLD, so the first attempt is still waiting when it is killed.
        outbox={"lease": "4s", "backoff_initial": "200ms", "backoff_max": "1s"},
    )


@contextlib.contextmanager
def receiver(cfg: Path, workdir: Path) -> Iterator[rp.ReceiverProcess]:
    workdir.mkdir()
    with rp.receiver_process(cfg, workdir, TOKEN) as process:
        yield process


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def incident(process: rp.ReceiverProcess, incident_id: str) -> dict[str, Any]:
    with process.client() as client:
        data: dict[str, Any] = client.get(f"/api/v1/incidents/{incident_id}").json()
    return data


def test_killed_between_the_run_and_its_record_runs_once(
    tmp_path: Path, redis_port: int, deploy: FakeDeploy
) -> None:
    cfg = config(tmp_path, redis_port, deploy)
    now = datetime.now(UTC)
    deploys = [
        {"type": "deploy", "service": "payment-service", "version": "v41",
         "at": stamp(now - timedelta(minutes=40)), "environment": "prod", "region": "eu"},
        {"type": "deploy", "service": "payment-service", "version": "v42",
         "at": stamp(now - timedelta(minutes=2)), "environment": "prod", "region": "eu"},
    ]  # fmt: skip
    deploy.slow(HOLD, applied=True)
    with receiver(cfg, tmp_path / "first") as first:
        with first.client() as client:
            assert client.post("/api/v1/events", content=json.dumps(deploys)).is_success
            alert = make_alert(starts_at=stamp(now))
            r = client.post(
                "/webhook/alertmanager",
                content=body([alert]),
                headers={"content-type": "application/json"},
            )
        assert r.status_code == 200, r.text
        (incident_id,) = r.json()["incidents"]
        rp.poll(lambda: list(deploy.effects), bool, what="the rollback applied", context=first.tail)
        assert incident(first, incident_id)["actions_run"] == []
        os.kill(first.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(first.pid, 0)
    with receiver(cfg, tmp_path / "second") as second:
        runs = rp.poll(
            lambda: incident(second, incident_id)["actions_run"],
            bool,
            what="the run recorded",
            timeout=30.0,
            context=second.tail,
        )
    [run] = runs
    assert (run["action"], run["status"], run["by"]) == ("rollback", "ran", "auto")
    # Two requests under one key; one rollback.
    assert [c.headers["idempotency-key"] for c in deploy.calls] == [f"{incident_id}/rollback"] * 2
    [effect] = deploy.effects
    assert effect.body == {"service": "payment-service", "to": "v41", "incident": incident_id}
