"""The probable upstream service: topology first, then Alertmanager's startsAt, severity and
alert count; never the services' names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from receiver.explain import explain_batch
from receiver.store.records import StoredAlert
from receiver.topology import callers, cycle, rank
from tests.conftest import EXAMPLE_CONFIG, T0, FakeClock, body, make_alert
from tests.support.harness import harness, write_config

NOW = 1_776_500_000_000
MINUTE = 60_000
WEIGHTS = {"critical": 1.0, "warning": 0.5}
CLI = str(Path(sys.executable).parent / "journey-receiver")


def alert(
    service: str,
    started: int | None = NOW - 5 * MINUTE,
    severity: str = "critical",
    seen: int = NOW - MINUTE,
    n: int = 0,
) -> StoredAlert:
    return StoredAlert(
        fp=f"{service}-{n}", status="firing", labels={}, annotations={}, starts_at=started,
        service=service, severity=severity, first_seen=seen, changed_at=seen,
    )  # fmt: skip


def order(alerts: list[StoredAlert], calls: dict[str, list[str]] | None = None) -> list[str]:
    return [s.service for s in rank(alerts, calls or {}, WEIGHTS, 0.5, NOW).services]


def test_the_service_the_others_depend_on_leads_even_when_it_started_last() -> None:
    calls = {"checkout-service": ["payment-service"], "payment-service": ["payments-db"]}
    alerts = [
        alert("checkout-service", NOW - 9 * MINUTE),
        alert("payment-service", NOW - 8 * MINUTE),
        alert("payments-db", NOW - 2 * MINUTE),
    ]
    ranking = rank(alerts, calls, WEIGHTS, 0.5, NOW)
    assert [s.service for s in ranking.services] == [
        "payments-db", "payment-service", "checkout-service",
    ]  # fmt: skip
    assert ranking.evidence() == [
        "checkout-service, payment-service depend on payments-db (journeys.yaml topology)"
    ]


def test_alerts_that_blame_another_service_follow_the_topology_not_the_alphabet() -> None:
    # The case: every alert said "upstream timeouts calling payment-service", all
    # with the same startsAt; cart-api comes first by name and must not win by it.
    alerts = [alert("cart-api", n=i) for i in range(3)] + [alert("payment-service")]
    assert order(alerts)[0] == "cart-api"  # without topology: it fires the most alerts
    assert order(alerts, {"cart-api": ["payment-service"]})[0] == "payment-service"


EARLY = alert("zeta", NOW - 9 * MINUTE)
WORSE = alert("alpha", severity="warning")
TIE = (
    "alpha, zeta depend on no other firing service, started together and fire as badly: "
    "which one is upstream is not known"
)


@pytest.mark.parametrize(
    ("first", "second", "winner", "why"),
    [
        (EARLY, alert("alpha"), "zeta", "zeta's alerts started first, 4 min before alpha's"),
        (alert("zeta"), WORSE, "zeta", "zeta fires with the worst severity"),
        (alert("zeta"), alert("alpha"), None, TIE),
    ],
)
def test_ties_are_broken_by_start_then_severity_never_by_name(
    first: StoredAlert, second: StoredAlert, winner: str | None, why: str
) -> None:
    for alerts in ([first, second], [second, first]):  # the order given changes nothing
        ranking = rank(alerts, {}, WEIGHTS, 0.5, NOW)
        assert (ranking.upstream.service if ranking.upstream else None) == winner
        assert ranking.evidence() == [why]
        assert ranking.tied is (winner is None)


def test_more_alerts_break_a_tie_of_start_and_severity() -> None:
    ranking = rank([alert("a"), alert("b", n=1), alert("b", n=2)], {}, WEIGHTS, 0.5, NOW)
    assert ranking.upstream is not None and ranking.upstream.service == "b"
    assert ranking.evidence() == ["b fires the most alerts (2)"]


def test_a_missing_zero_or_future_start_counts_as_first_seen() -> None:
    for bad in (None, -62135596800000, NOW + MINUTE):
        # Seen 3 minutes ago, against a proper start 5 minutes ago: the proper one leads.
        assert order([alert("x", bad, seen=NOW - 3 * MINUTE), alert("y")])[0] == "y"
    assert order([alert("x", None, seen=NOW - 9 * MINUTE), alert("y")])[0] == "x"


def test_resolved_alerts_do_not_rank() -> None:
    gone = alert("db", NOW - 30 * MINUTE).model_copy(update={"status": "resolved"})
    assert order([gone, alert("api")]) == ["api"]


def test_callers_are_found_through_others_and_cycles_are_named() -> None:
    calls = {"web": ["api"], "api": ["db", "cache"], "batch": ["db"]}
    assert callers("db", calls) == {"web", "api", "batch"}
    assert cycle(calls) is None
    assert cycle({**calls, "db": ["web"]}) == ["web", "api", "db", "web"]
    assert cycle({"a": ["a"]}) == ["a", "a"]


def test_check_reports_self_calls_and_cycles_with_file_and_line(tmp_path: Path) -> None:
    journeys = tmp_path / "journeys.yaml"
    journeys.write_text("journeys: []\ntopology:\n  web: [api]\n  api: [db, api]\n  db: [web]\n")
    done = subprocess.run(
        [CLI, "check", "--journeys", str(journeys)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[:2] == [
        f"{journeys}:3: topology.web[0]: calls go round in a cycle: web → api → db → web",
        f"{journeys}:4: topology.api[1]: api cannot call itself",
    ]


def test_explain_shows_the_upstream_service(tmp_path: Path) -> None:
    batch = tmp_path / "batch.json"
    services = ["checkout-service", "payment-service", "payments-db"]
    batch.write_bytes(body([make_alert(s) for s in services]))
    done = subprocess.run(
        [CLI, "explain", "--alerts", str(batch), "--json"],
        capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent,
    )  # fmt: skip
    (incident,) = json.loads(done.stdout)["incidents"]
    assert incident["upstream"] == {
        "service": "payments-db",
        "ranking": ["payments-db", "payment-service", "checkout-service"],
        "evidence": [
            "checkout-service, payment-service depend on payments-db (journeys.yaml topology)"
        ],
    }


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("services", "told"),
    [
        # No topology between them, the same start: a tie, so the cause is unknown.
        (("cart-api", "fraud-check"), "; cause unknown"),
        # payment-service calls payments-db: that is the cause.
        (("payment-service", "payments-db"), "Probable cause: payments-db"),
    ],
)
async def test_explain_tells_the_cause_as_the_live_incident_does(
    tmp_path: Path, services: tuple[str, str], told: str
) -> None:
    # No change event anywhere: the cause comes from the ranking of the services alone,
    # which the dry run knows as well as the live receiver.
    alerts = [make_alert(s, starts_at="2026-04-18T08:13:00Z") for s in services]
    clock = FakeClock(T0)
    async with harness(write_config(tmp_path), clock) as rx:
        (inc,) = (await rx.post(alerts)).json()["incidents"]
        await rx.tick(31)
        live = await rx.incident(inc)
    # The dry run runs its own event loop, as the CLI does: a thread of its own here.
    report = await anyio.to_thread.run_sync(
        lambda: explain_batch(body(alerts), EXAMPLE_CONFIG, None, now_ms=clock.ms)
    )
    (dry,) = report.incidents
    assert (dry["title"], dry["summary"]) == (live["title"], live["summary"])
    assert told in live["title"] + live["summary"]


def test_alerts_without_a_service_are_no_candidate() -> None:
    assert order([alert("unknown", NOW - 30 * MINUTE), alert("api")]) == ["api"]
    assert rank([alert("unknown")], {}, WEIGHTS, 0.5, NOW).services == ()
