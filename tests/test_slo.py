"""Journey SLOs (receiver/outcomes/slo.py): degraded time from each incident's timeline,
merged and clipped to the window, with known answers worked out by hand; then the SLO
figures, the roll-up with incidents carried in from before the window, and the config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from receiver.config import load_journeys
from receiver.enrich.enricher import Enrichment, apply
from receiver.errors import ConfigError
from receiver.lifecycle import Assessment, Decision, advance
from receiver.outcomes.health import journey_health
from receiver.outcomes.slo import degraded_spans, journey_slo, union_ms
from receiver.outcomes.stats import Outcome, SloPolicy, compute
from receiver.store.records import IncidentState, KpiRecord, TimelineEntry
from tests.support.incidents import incident_state

MIN = 60_000
NOW = 600 * MIN


def entry(minute: float, kind: str, text: str = "") -> TimelineEntry:
    return TimelineEntry(at=round(minute * MIN), kind=kind, text=text)


def told(minute: float, priority: str, kind: str = "open") -> TimelineEntry:
    # As receiver/lifecycle.py words it.
    return entry(minute, "notified", f"{kind} {priority} sent to pagerduty, slack")


def incident(*timeline: TimelineEntry, start: float = 0, **fields: Any) -> IncidentState:
    """A notified incident that started at minute ``start``, with ``timeline``."""
    base: dict[str, Any] = {
        "started_at": round(start * MIN),
        "notified_at": 1,
        "timeline": list(timeline),
    }
    return incident_state(**(base | fields))


def degraded_ms(states: list[IncidentState], degraded_at: str, since: int, until: int) -> int:
    """What the figures count for a journey: the union of its incidents' degraded spans."""
    spans = [s for state in states for s in degraded_spans(state, degraded_at, until)]
    return union_ms(spans, since, until)


def minutes(spans: list[tuple[int, int]]) -> list[tuple[float, float]]:
    return [(s / MIN, e / MIN) for s, e in spans]


# union_ms: overlaps once, clipped to the window.


@pytest.mark.parametrize(
    ("spans", "expected"),
    [
        ([], 0),
        ([(20, 30)], 10),
        ([(20, 30), (25, 40)], 20),  # overlap counted once
        ([(20, 60), (30, 40)], 40),  # nested
        ([(30, 40), (20, 25)], 15),  # out of order, disjoint
        ([(20, 30), (30, 40)], 20),  # touching
        ([(0, 15)], 5),  # starts before the window (at 10)
        ([(95, 200)], 5),  # ends after it (at 100)
        ([(0, 5), (150, 160)], 0),  # wholly outside
        ([(0, 200), (40, 50)], 90),  # the whole window
        ([(30, 30)], 0),  # empty
    ],
)  # fmt: skip
def test_union_counts_overlaps_once_within_the_window(
    spans: list[tuple[int, int]], expected: int
) -> None:
    assert union_ms(spans, 10, 100) == expected


# degraded_spans: what the timeline says.


def test_a_raise_above_the_threshold_counts_from_when_it_was_sent() -> None:
    state = incident(
        told(1, "P3"),
        entry(10, "priority", "priority P3 → P1"),
        told(10, "P1", "update"),
        entry(40, "resolved", "resolved: every alert resolved"),
        status="resolved",
        resolved_at=40 * MIN,
    )
    assert minutes(degraded_spans(state, "P2", NOW)) == [(10, 40)]
    # At P3 the whole incident counts, from its start: P3 was what the first page said.
    assert degraded_ms([state], "P3", 0, NOW) == 40 * MIN


def test_a_lowering_below_the_threshold_ends_the_degraded_time() -> None:
    state = incident(
        told(0.5, "P1"),
        told(20, "P4", "update"),
        entry(50, "resolved", "resolved: every alert resolved"),
        start=-2,
        status="resolved",
        resolved_at=50 * MIN,
    )
    # From Alertmanager's start (2 min before the receiver stored it) to the lowering.
    assert minutes(degraded_spans(state, "P2", NOW)) == [(-2, 20)]
    assert degraded_ms([state], "P2", 0, NOW) == 20 * MIN  # clipped at the window's start


def test_an_open_incident_counts_until_now() -> None:
    state = incident(told(1, "P2"), start=500)
    assert minutes(degraded_spans(state, "P2", NOW)) == [(500, 600)]
    assert degraded_ms([state], "P1", 0, NOW) == 0


def test_a_reopened_incident_counts_each_episode_but_not_the_gap_nor_a_blip() -> None:
    state = incident(
        told(0.5, "P2"),
        entry(10, "resolved", "resolved: every alert resolved"),
        entry(30, "reopened", "incident reopened: alerts firing again"),
        entry(30.5, "resolved", "resolved without notification: every alert resolved within"),
        entry(60, "reopened", "incident reopened: alerts firing again"),
        told(60.5, "P1", "reopen"),
        entry(75, "notified", "resolve P1 sent to slack"),
        entry(75, "resolved", "resolved: every alert resolved"),
        status="resolved",
        resolved_at=75 * MIN,
        reopened_count=2,
    )
    assert minutes(degraded_spans(state, "P3", NOW)) == [(0, 10), (60, 75)]


def test_a_reopened_incident_keeps_its_first_episode_as_ingest_stores_it() -> None:
    # Ingest sets started_at anew at each reopen: the first episode starts at the opening.
    state = incident(
        entry(0, "opened", "incident opened"),
        told(0.5, "P2"),
        entry(10, "resolved", "resolved: every alert resolved"),
        entry(60, "reopened", "incident reopened: alerts firing again"),
        told(60.5, "P1", "reopen"),
        start=60,
        created_at=0,
        status="open",
        reopened_count=1,
    )
    assert minutes(degraded_spans(state, "P3", NOW)) == [(0, 10), (60, 600)]


def test_a_kpi_out_of_band_degrades_whatever_the_priority() -> None:
    bad = incident(
        told(1, "P4"),
        entry(5, "kpi", "KPI conversion -41.0% vs last week"),
        entry(30, "resolved", "resolved: every alert resolved"),
        status="resolved",
        resolved_at=30 * MIN,
    )
    assert minutes(degraded_spans(bad, "P2", NOW)) == [(5, 30)]
    # Still open, but the latest look found every KPI back in band: it returned by then.
    back = incident(
        told(1, "P4"),
        entry(5, "kpi", "KPI conversion -41.0% vs last week"),
        enriched_at=12 * MIN,
        kpis=[KpiRecord(name="conversion", bad=False)],
    )
    assert minutes(degraded_spans(back, "P2", NOW)) == [(5, 12)]
    still = back.model_copy(update={"kpis": [KpiRecord(name="conversion", bad=True)]})
    assert minutes(degraded_spans(still, "P2", NOW)) == [(5, 600)]


def test_kpi_time_ends_when_no_kpi_is_out_any_more() -> None:
    state = incident(
        told(1, "P4"),
        entry(5, "kpi", "KPI conversion -41.0% vs last week"),
        entry(8, "kpi", "KPI orders per min -30.5% vs last week"),
        entry(10, "kpi_ok", "KPI conversion back in its band, -2.0% vs last week"),
        entry(15, "kpi_ok", "KPI orders per min back in its band, +1.0% vs last week"),
        entry(40, "kpi", "KPI conversion -50.0% vs last week"),
        entry(45, "kpi_ok", "KPI conversion back in its band, -1.0% vs last week"),
        # The latest look is much later: KPI time is not stretched to it.
        enriched_at=300 * MIN,
        kpis=[KpiRecord(name="conversion", bad=False)],
    )
    assert minutes(degraded_spans(state, "P2", NOW)) == [(5, 15), (40, 45)]


def test_the_enricher_notes_a_kpi_leaving_and_coming_back() -> None:
    def looked(state: IncidentState, at: float, deviation: float) -> IncidentState:
        kpi = KpiRecord(name="conversion", deviation_pct=deviation, bad=deviation < -20,
                        vs="last week")  # fmt: skip
        return apply(state, Enrichment(kpis=[kpi], changes=[], causes=[], notes=[]), at * MIN)

    state = incident(told(1, "P4"))
    for at, deviation in [(3, -5.0), (5, -41.0), (7, -45.0), (12, -2.0), (20, -1.0)]:
        state = looked(state, at, deviation)
    assert [(e.at / MIN, e.kind) for e in state.timeline[1:]] == [(5, "kpi"), (12, "kpi_ok")]
    assert minutes(degraded_spans(state, "P2", NOW)) == [(5, 12)]


def test_a_kpi_still_out_of_its_band_through_a_reopen_counts_in_the_reopened_episode() -> None:
    # The enricher notes a KPI leaving only when the incident had it in its band: the
    # reopened episode's looks, finding it out still, write nothing new.
    def looked(state: IncidentState, at: float) -> IncidentState:
        kpi = KpiRecord(name="conversion", deviation_pct=-41.0, bad=True, vs="last week")
        return apply(state, Enrichment(kpis=[kpi], changes=[], causes=[], notes=[]), at * MIN)

    state = looked(incident(told(1, "P4")), 5)
    state = state.model_copy(
        update={
            "timeline": [
                *state.timeline,
                entry(10, "resolved", "resolved: every alert resolved"),
                entry(30, "reopened", "incident reopened: alerts firing again"),
                told(30.5, "P4", "reopen"),
            ],
            "reopened_count": 1,
        }
    )
    state = looked(state, 32)
    assert [e.kind for e in state.timeline].count("kpi") == 1
    assert minutes(degraded_spans(state, "P2", NOW)) == [(5, 10), (30, 600)]


def test_a_kpi_gone_bad_from_a_zero_baseline_is_noted_and_counts_as_kpi_time() -> None:
    def looked(state: IncidentState, at: float, now: float) -> IncidentState:
        # Payment errors a minute: none last week, so no percentage exists.
        kpi = KpiRecord(name="payment errors", value=now, baseline=0.0, bad_when="up",
                        bad=now > 0, vs="last week")  # fmt: skip
        return apply(state, Enrichment(kpis=[kpi], changes=[], causes=[], notes=[]), at * MIN)

    state = incident(told(1, "P4"))
    for at, now in [(3, 0.0), (5, 30.0), (7, 45.0), (12, 0.0)]:
        state = looked(state, at, now)
    assert [(e.at / MIN, e.text) for e in state.timeline[1:]] == [
        (5, "KPI payment errors 0 → 30 vs last week"),
        (12, "KPI payment errors back in its band, 0 → 0 vs last week"),
    ]
    assert minutes(degraded_spans(state, "P2", NOW)) == [(5, 12)]


def test_priority_and_kpi_time_of_many_incidents_merge() -> None:
    states = [
        incident(told(0.5, "P2"), entry(10, "resolved"), status="resolved", resolved_at=10 * MIN),
        incident(told(5.5, "P4"), entry(8, "kpi", "KPI orders -60% vs last week"),
                 entry(20, "resolved"), start=5, status="resolved", resolved_at=20 * MIN),
        incident(told(30.5, "P1"), start=30),
    ]  # fmt: skip
    # 0-10 and 8-20 merge into 0-20; 30 to the window's end at 40: 30 minutes.
    assert degraded_ms(states, "P2", 0, 40 * MIN) == 30 * MIN


def test_blips_and_undecided_incidents_never_count() -> None:
    blip = incident_state(
        priority="P1", status="resolved", resolved_at=MIN,
        timeline=[entry(1, "resolved", "resolved without notification: …")],
    )  # fmt: skip
    waiting = incident_state(priority=None)
    assert degraded_ms([blip, waiting], "P5", 0, NOW) == 0


def test_without_a_timeline_the_state_stands_in() -> None:
    # Read from the index only, or its timeline lost its notifications.
    old = incident_state(priority="P2", started_at=10 * MIN, notified_at=1,
                         status="resolved", resolved_at=25 * MIN)  # fmt: skip
    assert minutes(degraded_spans(old, "P3", NOW)) == [(10, 25)]
    assert degraded_spans(old, "P1", NOW) == []
    kpi = incident_state(priority="P5", started_at=10 * MIN, notified_at=1,
                         kpis=[KpiRecord(name="conversion", bad=True)])  # fmt: skip
    assert minutes(degraded_spans(kpi, "P1", NOW)) == [(10, 600)]


def test_the_timeline_the_lifecycle_writes_is_read() -> None:
    """The notifications' wording is receiver/lifecycle.py's: a change to it must show here."""
    state = incident_state(status="open", pending="open", started_at=0, first_firing_at=0)
    steps = [
        (Decision("open", None, False, 0, ()), Assessment("P3", 45.0), 1),
        (Decision("update", None, False, 0, ("priority P3 → P1",)), Assessment("P1", 90.0), 10),
        (Decision("update", None, False, 0, ("priority P1 → P3",)), Assessment("P3", 45.0), 25),
        (Decision("resolve", None, True, 0, ("every alert resolved",)), Assessment("P3", 45.0), 40),
    ]  # fmt: skip
    for decision, assessment, minute in steps:
        state = advance(state, decision, assessment, minute * MIN, ["slack"])
    assert minutes(degraded_spans(state, "P2", NOW)) == [(10, 25)]
    assert minutes(degraded_spans(state, "P3", NOW)) == [(0, 10), (10, 25), (25, 40)]
    assert degraded_ms([state], "P3", 0, NOW) == 40 * MIN


# The SLO figures and the roll-up.


def test_attainment_and_error_budget() -> None:
    week = 7 * 24 * 60 * MIN
    # 99.9% of a week allows 10.08 minutes; 5.04 spent leaves half.
    half = journey_slo(round(5.04 * MIN), 0, week, "P2", 99.9)
    assert half.model_dump() == {
        "degraded_at": "P2", "objective_pct": 99.9, "attainment_pct": 99.95,
        "budget_remaining_pct": 50.0,
    }  # fmt: skip
    over = journey_slo(round(20.16 * MIN), 0, week, "P2", 99.9)
    assert (over.attainment_pct, over.budget_remaining_pct) == (99.8, -100.0)
    # 99.8998%, rounded down: an overspent budget never reads as the objective met.
    just = journey_slo(606_000, 0, week, "P2", 99.9)
    assert (just.attainment_pct, just.budget_remaining_pct) == (99.899, -0.2)
    none = journey_slo(0, 0, week, "P3", None)
    assert (none.attainment_pct, none.objective_pct, none.budget_remaining_pct) == (
        100.0,
        None,
        None,
    )


def test_compute_uses_each_journeys_slo_and_incidents_carried_in() -> None:
    # Created before the window (at 10), still open at P2: counts from 10 to 60.
    carried = incident(told(1, "P2"))
    inside = incident(told(31, "P3"), entry(40, "resolved"), start=30,
                      status="resolved", resolved_at=40 * MIN, created_at=30 * MIN)  # fmt: skip
    stats = compute(
        [Outcome(inside, frozenset())],
        10 * MIN,
        60 * MIN,
        ["checkout"],
        slos={"checkout": SloPolicy("P2", 90.0)},
        carried=[carried],
    )
    checkout = stats.journeys["checkout"]
    assert checkout.signal.incidents == 1  # the carried one is in the minutes only
    assert checkout.minutes_degraded == 50.0  # P3 is below P2: the carried one alone
    assert checkout.slo.model_dump() == {
        "degraded_at": "P2", "objective_pct": 90.0, "attainment_pct": 0.0,
        "budget_remaining_pct": -900.0,
    }  # fmt: skip
    default = compute([Outcome(inside, frozenset())], 10 * MIN, 60 * MIN, ["checkout"])
    assert default.journeys["checkout"].minutes_degraded == 10.0
    assert default.journeys["checkout"].slo.degraded_at == "P3"


def test_the_journey_health_gauge_uses_the_same_threshold() -> None:
    open_at = [
        incident_state(1, priority="P3", started_at=MIN),
        incident_state(2, journey="browse", priority="P3", started_at=2 * MIN),
    ]
    stages = {"checkout": ["payment"], "browse": ["search"]}
    health = journey_health(open_at, 10 * MIN, stages, {"checkout": "P2"})
    # P3 is below checkout's P2; browse has the default, P3.
    assert health.degraded_seconds == {"checkout": 0.0, "browse": 8 * 60.0}


def test_the_journey_health_gauge_counts_the_stages_people_were_told_of() -> None:
    # cart's one alert fired and resolved within group_wait (a blip): the board leaves it
    # out, and so does the gauge, or Grafana shows cart down while the board shows it OK.
    told = incident_state(
        1, priority="P2", stages={"payment": 1, "cart": 1}, blipped_stages=["cart"],
        notified_at=5, first_firing_at=1, firing_classes={'["payment", "critical", ""]': 1},
    )  # fmt: skip
    health = journey_health([told], 10 * MIN, {"checkout": ["payment", "cart"]})
    assert health.open_incidents[("checkout", "payment", "P2")] == 1
    assert health.open_incidents[("checkout", "cart", "P2")] == 0


# The config.

JOURNEY = """journeys:
  - id: checkout
    name: Checkout
    weight: 1.0
    owner: {team: payments}
    stages:
      - {id: payment, weight: 1.0, match: ['service="payment-service"']}
"""


def test_the_slo_is_read_from_journeys_yaml(tmp_path: Path) -> None:
    path = tmp_path / "journeys.yaml"
    path.write_text(JOURNEY + "    slo: {degraded_at: P2, objective: 99.9}\n")
    journey = load_journeys(path).journeys[0]
    assert (journey.slo.degraded_at, journey.slo.objective) == ("P2", 99.9)
    path.write_text(JOURNEY)
    assert load_journeys(path).journeys[0].slo.degraded_at == "P3"


@pytest.mark.parametrize(
    ("slo", "expected"),
    [
        (
            "{degraded_at: P7}",
            'journeys[0].slo.degraded_at: expected "P1", "P2", "P3", "P4" or "P5", got "P7"',
        ),
        ("{objective: 100}", "journeys[0].slo.objective: 100 must be less than 100"),
        ("{objective: 0}", "journeys[0].slo.objective: 0 must be greater than 0"),
        ("{degraded_at: P2, budget: 3}", "journeys[0].slo.budget: unknown field"),
    ],
)
def test_a_bad_slo_is_refused_naming_the_field(tmp_path: Path, slo: str, expected: str) -> None:
    path = tmp_path / "journeys.yaml"
    path.write_text(JOURNEY + f"    slo: {slo}\n")
    with pytest.raises(ConfigError) as info:
        load_journeys(path)
    assert str(info.value) == f"{path}:8: {expected}"
