"""docs/scoring.md's worked examples, row by row, against the scoring code and the example
config (config/receiver.yaml, config/journeys.yaml): the doc cannot drift from either."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from receiver.config import ReceiverConfig, load
from receiver.explain import incident_of
from receiver.normalize import normalize
from receiver.placement import place
from receiver.scoring import Impact
from receiver.settings import Settings
from receiver.store.records import KpiRecord
from receiver.webhook import parse_webhook
from tests.conftest import EXAMPLE_CONFIG, ROOT, body, make_alert

DOC = ROOT / "docs" / "scoring.md"
HEADER = (
    "#", "journey", "firing alerts", "tier", "worst KPI vs baseline",
    "journey × stage × severity × tier × blast_radius × kpi", "score", "priority",
)  # fmt: skip
NO_TIER = "–"
NO_KPI = "none measured"
_ALERT = re.compile(r"(?P<severity>\S+) (?P<service>\S+) \((?P<stage>[^)]+)\)")
_KPI = re.compile(r"(?P<name>\S+) (?P<pct>[−+]\d+(?:\.\d+)?) %")


@dataclass(frozen=True)
class Example:
    number: str
    journey: str
    alerts: list[dict[str, str]]
    tier: str
    kpi: str
    factors: list[str]
    score: float
    priority: str


def examples() -> list[Example]:
    """The rows of the table under "## Worked examples"."""
    section = DOC.read_text().split("## Worked examples", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header, _rule, *rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert tuple(header) == HEADER
    found = []
    for number, journey, alerts, tier, kpi, factors, score, priority in rows:
        parsed = [_ALERT.fullmatch(a) for a in alerts.split(", ")]
        assert all(parsed), f"example {number}: firing alerts {alerts!r}"
        found.append(
            Example(
                number=number,
                journey=journey,
                alerts=[m.groupdict() for m in parsed if m],
                tier=tier,
                kpi=kpi,
                factors=factors.split(" × "),
                score=float(score),
                priority=priority,
            )
        )
    assert [e.number for e in found] == [str(n) for n in range(1, len(found) + 1)]
    return found


EXAMPLES = examples()
BY_NUMBER = {e.number: e for e in EXAMPLES}
SETTINGS = Settings.build(*load(EXAMPLE_CONFIG))


def score_of(example: Example) -> Impact:
    """The example as the receiver sees it: its alerts placed by the example journeys,
    an incident of them alone, scored with the example config's rules."""
    scoring = SETTINGS.config.scoring
    tier = {} if example.tier == NO_TIER else {scoring.tier.label: example.tier}
    alerts = [make_alert(a["service"]) for a in example.alerts]
    for alert, wanted in zip(alerts, example.alerts, strict=True):
        alert["labels"] |= {scoring.severity_label: wanted["severity"], **tier}
    (group,) = place(normalize(parse_webhook(body(alerts))), SETTINGS)
    assert group.key.journey == example.journey, f"example {example.number}"
    stages = [placed.stage for placed in group.alerts]
    assert stages == [a["stage"] for a in example.alerts], f"example {example.number}"
    state, _ = incident_of(group, 0)
    return SETTINGS.impact(state.model_copy(update={"kpis": kpis(example)}))


def kpis(example: Example) -> list[KpiRecord]:
    """The example's worst KPI with its direction from the journey's own KPI of that name."""
    if example.kpi == NO_KPI:
        return []
    found = _KPI.fullmatch(example.kpi)
    assert found, f"example {example.number}: KPI {example.kpi!r}"
    (kpi,) = [k for k in SETTINGS.catalog.find(example.journey).kpis if k.name == found["name"]]
    deviation = float(found["pct"].replace("−", "-"))
    return [KpiRecord(name=kpi.name, deviation_pct=deviation, unit=kpi.unit, bad_when=kpi.bad_when)]


def test_the_doc_has_its_worked_examples() -> None:
    # An empty table would leave test_worked_example with nothing to check.
    assert EXAMPLES


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.number for e in EXAMPLES])
def test_worked_example(example: Example) -> None:
    impact = score_of(example)
    names = [f.name for f in impact.factors]
    assert " × ".join(names) == HEADER[5]
    assert example.factors == [f"{f.value:g}" for f in impact.factors]
    assert (example.score, example.priority) == (impact.score, impact.priority)


def test_payment_failure_at_checkout_outranks_a_latency_blip_elsewhere() -> None:
    payment, blip = BY_NUMBER["1"], BY_NUMBER["5"]
    assert (payment.journey, blip.journey) == ("checkout", "browse")
    payment_impact, blip_impact = score_of(payment), score_of(blip)
    assert payment_impact.score > blip_impact.score
    assert (payment_impact.priority, blip_impact.priority) == ("P1", "P4")


def test_the_doc_states_the_default_thresholds_which_the_example_config_keeps() -> None:
    thresholds = SETTINGS.rules.thresholds
    assert dict(ReceiverConfig().scoring.thresholds) == thresholds
    stated = ", ".join(f"{name} ≥ {floor:g}" for name, floor in thresholds.items())
    assert f"(defaults {stated}, else P5)" in DOC.read_text()
