"""Whether a run helped: the verdict rules, and the incident watched end to end."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
import pytest

from receiver.act.outcome import judge, judged, kpi_off, next_look
from receiver.outcomes.similar import history
from receiver.store.records import ActionRunRecord, KpiRecord, SimilarRecord
from tests.conftest import FakeClock, make_alert, resolved
from tests.support.fake_deploy import FIRST_ALERT, FakeDeploy, deploys, journeys, serve_deploy
from tests.support.harness import Harness, harness, write_config
from tests.support.incidents import incident_state as state

WINDOW = 900_000
RUN_AT = 1_000_000


def ran(firing: int | None = 4, off: float | None = None) -> ActionRunRecord:
    return ActionRunRecord(
        action="rollback", by="auto", at=RUN_AT, status="ran", firing=firing, kpi_off=off
    )


def conversion(deviation: float) -> KpiRecord:
    return KpiRecord(name="conversion", deviation_pct=deviation, bad_when="down")


def errors(now: float) -> KpiRecord:
    """An errors-a-minute KPI whose baseline last week was none."""
    return KpiRecord(name="errors", value=now, baseline=0.0, bad_when="up", bad=now > 0)


def test_a_run_under_a_kpi_gone_bad_from_a_zero_baseline_keeps_that_through_json() -> None:
    st = state(firing_count=4, kpis=[errors(30.0)])
    record = ran(off=kpi_off(st.kpis))
    assert record.kpi_off == math.inf
    assert ActionRunRecord.model_validate_json(record.model_dump_json()).kpi_off == math.inf
    as_json = orjson.dumps(record.model_dump(mode="json"))  # as an annotation is written
    assert ActionRunRecord.model_validate_json(as_json).kpi_off == math.inf
    assert ran(off=12.5).model_dump(mode="json")["kpi_off"] == 12.5


def test_resolved_within_the_window_helped_at_once() -> None:
    st = state(status="resolved", resolved_at=RUN_AT + 120_000, actions_run=[ran()])
    told = judge(st, ran(), RUN_AT + 130_000, WINDOW)
    assert told is not None
    assert (told.verdict, told.because) == ("helped", "resolved 2 min after the run")


def test_nothing_is_told_while_the_window_is_open() -> None:
    assert judge(state(firing_count=4), ran(), RUN_AT + WINDOW - 1, WINDOW) is None


@pytest.mark.parametrize(
    ("firing", "kpis", "then_off", "verdict", "because"),
    [
        (2, [], None, "helped", "firing alerts 4 → 2"),
        (0, [], None, "helped", "firing alerts 4 → 0"),
        (3, [], None, "no_change", "firing alerts 4 → 3"),
        (5, [], None, "worse", "firing alerts 4 → 5"),
        (4, [conversion(-20.0)], 60.0, "helped", "worst KPI off 60% → 20%"),
        (4, [conversion(-45.0)], 40.0, "no_change", "worst KPI off 40% → 45%"),
        (4, [conversion(-55.0)], 40.0, "worse", "worst KPI off 40% → 55%"),
        # A KPI that went up while it is bad when down is not off at all.
        (4, [conversion(+10.0)], 40.0, "helped", "worst KPI off 40% → 0%"),
        # Gone bad from a zero baseline (errors from none to 30 a minute): no percentage,
        # so only leaving it (back to none) helped and only entering it made it worse.
        (4, [errors(0.0)], math.inf, "helped", "off bad from a zero baseline → 0%"),
        (4, [errors(30.0)], math.inf, "no_change", "zero baseline → bad from a zero baseline"),
        (4, [errors(30.0)], 20.0, "worse", "worst KPI off 20% → bad from a zero baseline"),
    ],
)  # fmt: skip
def test_at_the_windows_end_alerts_and_kpis_decide(
    firing: int, kpis: list[KpiRecord], then_off: float | None, verdict: str, because: str
) -> None:
    told = judge(state(firing_count=firing, kpis=kpis), ran(off=then_off), RUN_AT + WINDOW, WINDOW)
    assert told is not None
    assert told.verdict == verdict
    assert because in told.because and told.because.startswith("15 min after the run: ")


def test_only_the_latest_run_of_each_action_is_watched_once() -> None:
    runs = [ran(), ran().model_copy(update={"at": RUN_AT + 10})]
    st = state(firing_count=0, actions_run=runs)
    assert next_look(st, WINDOW) == RUN_AT + 10 + WINDOW
    verdicts = judged(st, RUN_AT + 10 + WINDOW, WINDOW)
    assert list(verdicts) == ["rollback"]
    done = state(firing_count=0, actions_run=runs, action_outcomes=verdicts)
    assert next_look(done, WINDOW) is None and judged(done, RUN_AT + 10**9, WINDOW) == {}
    assert kpi_off([]) is None


def test_history_says_how_the_action_went_where_it_ran() -> None:
    def past(i: int, fixed: str | None, outcomes: dict[str, str]) -> SimilarRecord:
        return SimilarRecord(
            id=str(i), title="t", created_at=i, similarity=0.9, fixed_by=fixed, outcomes=outcomes
        )

    similar = [
        past(1, "rollback", {"rollback": "helped"}),
        past(2, None, {"rollback": "no_change"}),
        past(3, "rollback", {}),
    ]
    assert history("rollback", similar) == (
        "fixed 2 of 3 similar incidents; ran on 2: helped 1, no change 1"
    )
    assert history("restart", similar) == "fixed 0 of 3 similar incidents"


@pytest.fixture
def deploy() -> Iterator[FakeDeploy]:
    with serve_deploy() as fake:
        yield fake


@contextlib.asynccontextmanager
async def watched_auto(tmp: Path, deploy: FakeDeploy) -> AsyncIterator[Harness]:
    """A receiver at ``auto`` with a 10 min outcome window, the deploys posted, its clock
    at ``FIRST_ALERT``."""
    cfg = write_config(
        tmp, "automation: {outcome_window: 10m}\n", journeys=journeys(tmp, deploy.url, "auto")
    )
    async with harness(cfg, FakeClock(FIRST_ALERT - 60)) as rx:
        assert (await rx.client.post("/api/v1/events", content=json.dumps(deploys()))).is_success
        rx.clock.now = FIRST_ALERT
        yield rx


@pytest.mark.anyio
async def test_a_rollback_that_ends_the_storm_helped_and_the_next_incident_knows(
    tmp_path: Path, deploy: FakeDeploy
) -> None:
    async with watched_auto(tmp_path, deploy) as rx:
        clock = rx.clock
        storm = [make_alert(alertname=f"Errors{i}") for i in range(3)]
        (first,) = (await rx.post(storm)).json()["incidents"]
        await rx.tick(30)
        assert len(deploy.effects) == 1
        # The rollback worked: the alerts resolve 3 minutes later, the incident after
        # resolve_after (5m), inside the 10 min window.
        clock.advance(180)
        await rx.post([resolved(a) for a in storm])
        await rx.tick(0)
        await rx.tick(300)
        detail = await rx.incident(first)
        assert detail["status"] == "resolved"
        [run] = detail["actions_run"]
        assert run["outcome"]["verdict"] == "helped"
        assert run["outcome"]["because"] == "resolved 8 min after the run"

        # The same storm again two hours on (a new incident): its suggestion remembers.
        clock.advance(7200)
        again = [make_alert(alertname=f"Errors{i}", fingerprint=f"again-{i}") for i in range(3)]
        (second,) = (await rx.post(again)).json()["incidents"]
        await rx.tick(30)
        assert second != first
        [action] = (await rx.incident(second))["suggested_actions"]
        assert action["history"] == "fixed 0 of 1 similar incidents; ran on 1: helped 1"


@pytest.mark.anyio
async def test_a_rollback_that_changes_nothing_is_told_at_the_windows_end(
    tmp_path: Path, deploy: FakeDeploy
) -> None:
    async with watched_auto(tmp_path, deploy) as rx:
        (inc,) = (await rx.post([make_alert()])).json()["incidents"]
        await rx.tick(30)
        await rx.tick(599)
        [run] = (await rx.incident(inc))["actions_run"]
        assert "outcome" not in run
        # No alert changes and the journey has no KPI: only the window's end looks again.
        await rx.tick(1)
        [run] = (await rx.incident(inc))["actions_run"]
        assert run["outcome"]["verdict"] == "no_change"
        assert run["outcome"]["because"] == "10 min after the run: firing alerts 1 → 1"
