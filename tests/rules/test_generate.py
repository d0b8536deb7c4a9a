"""receiver/rules: KPI queries kept apart per label set, routing back to the journey, the
rules document."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from receiver.config import JourneysConfig, load_journeys
from receiver.enrich.promql import substitute
from receiver.journeys import JourneyCatalog
from receiver.matchers import parse_matcher
from receiver.rules import ALERTNAME, RuleOptions, RulesError, rules_document, to_yaml
from receiver.rules.promql import QueryShapeError, per_group, top_level_denominator
from receiver.rules.routing import spell
from tests.conftest import EXAMPLE_JOURNEYS


def make_journeys(*journeys: dict[str, Any]) -> JourneysConfig:
    return JourneysConfig.model_validate({"journeys": list(journeys)})


def make_journey(
    id: str = "checkout",
    query: str = 'sum(rate(orders_total{region="$region"}[5m]))',
    bad_when: str = "down",
    match: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "id": id,
        "name": id.title(),
        "weight": 1.0,
        "owner": {"team": "t"},
        "stages": [{"id": "main", "weight": 1.0, "match": match or ['service="checkout"']}],
        "kpis": [{"name": "kpi", "query": query, "unit": "x", "bad_when": bad_when}],
    }


def rules_of(doc: dict[str, Any], key: str, name: str) -> list[dict[str, Any]]:
    return [rule for group in doc["groups"] for rule in group["rules"] if rule.get(key) == name]


# --- one query for every label set --------------------------------------------------------


def test_a_ratio_keeps_its_placeholder_labels_apart_on_both_sides() -> None:
    grouped = per_group(
        'sum(rate(done_total{env="$env", region="$region"}[5m]))'
        ' / sum(rate(started_total{env="$env", region="$region"}[5m]))',
        {"env": [parse_matcher('env="prod"')]},
    )
    assert grouped.labels == ("env", "region")
    assert grouped.query == (
        'sum by (env, region) (rate(done_total{env="prod"}[5m]))'
        ' / sum by (env, region) (rate(started_total{env="prod"}[5m]))'
    )


def test_an_existing_by_clause_gains_the_labels_and_other_aggregations_are_left_alone() -> None:
    query = (
        'histogram_quantile(0.95, sum by (le) (rate(d_bucket{region="${region}"}[5m])))'
        " / scalar(sum(up))"
    )
    assert per_group(query, {}).query == (
        "histogram_quantile(0.95, sum by (le, region) (rate(d_bucket[5m]))) / scalar(sum(up))"
    )


def test_a_trailing_by_clause_and_a_regex_placeholder_matcher() -> None:
    grouped = per_group('max(x{job="a", region=~"$region"}) by (job)', {})
    assert grouped.query == 'max(x{job="a"}) by (job, region)'


def test_a_query_without_placeholders_is_unchanged() -> None:
    query = 'sum(rate(renewals_total{result="success"}[1h])) / sum(rate(renewals_total[1h]))'
    assert per_group(query, {}).query == query
    assert per_group(query, {}).labels == ()


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ('sum(x{region="$region-1"})', "exactly its own label's placeholder"),
        ('sum(x{zone="$region"})', "exactly its own label's placeholder"),
        ('sum(x{region!="$region"})', "with = or =~"),
        ('sum without (region) (x{region="$region"})', "drops the label region"),
        ('scalar(x{region="$region"})', "scalar() drops every label"),
        ('sum(a{region="$region"}) / on() group_left sum(b)', "vector matching"),
        ('sum({region="$region"})', "left without any matcher"),
        ("sum(rate(x[$window]))", "outside a string literal"),
        # A region's share of the total: one side by (region), the other not, never matching.
        ('sum(a{region="$region"}) / sum(a)', "(label region not on every side)"),
        ('sum(a{region="$region", env="$env"}) / sum(b{region="$region"})', "label env not on"),
    ],
)
def test_shapes_that_cannot_be_kept_apart_are_refused_with_the_reason(
    query: str, reason: str
) -> None:
    with pytest.raises(QueryShapeError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        per_group(query, {})


@pytest.mark.parametrize(
    ("query", "traffic"),
    [
        ("sum(a) / sum(b)", "sum(b)"),
        ("sum(a)\n  / sum(b)  # started", "sum(b)"),
        # Scaled or complemented by a number: the same traffic.
        ("sum(a) / sum(b) * 60", "sum(b)"),
        ("100 * sum(a) / sum(b)", "sum(b)"),
        ("(sum(a) / sum(b)) * 100", "sum(b)"),
        ("1 - sum(e) / sum(r)", "sum(r)"),
        ("1 - (sum(e) / sum(r))", "sum(r)"),
        ("sum(a) / sum(b) / 1000", "sum(b)"),
        ("(sum(a) / sum(b)) / 100", "sum(b)"),
        # Over a scalar: no series, so no traffic to read.
        ("sum(a) / scalar(sum(b))", None),
        ("sum(a) / (scalar(sum(b)))", None),
        ("sum(a) / (scalar(sum(b)) * 100)", None),
        ("sum(a) / 60", None),
        ('sum(rate(a{path="/"}[5m])) / sum(rate(b[5m]))', "sum(rate(b[5m]))"),
        # Not a ratio: no traffic of its own.
        ("sum(rate(a[5m])) * 60", None),
        ("histogram_quantile(0.9, sum by (le) (a / b))", None),
        ("a - b / c", None),
        ("a / b or vector(0)", None),
        ("a / b > bool 0", None),
        ("sum(a) / on(x) sum(b)", None),
    ],
)
def test_the_traffic_of_a_ratio_is_its_denominator(query: str, traffic: str | None) -> None:
    assert top_level_denominator(query) == traffic


@pytest.mark.parametrize(
    ("regex", "value"),
    [
        ("payment-service|payments-db", "payment-service"),
        ("cart(-.*)?", "cart"),
        ("checkout-(service|api)", "checkout-service"),
        ("inventory(-service)?", "inventory"),
        ("payment.*", "payment"),
        (r"web\.gateway", "web.gateway"),
        ("[a-z]+", None),
    ],
)
def test_a_plain_value_is_spelled_from_a_simple_regex(regex: str, value: str | None) -> None:
    assert spell(regex) == value


# --- the document -------------------------------------------------------------------------


def test_every_kpi_of_the_example_journeys_gets_a_baseline_bands_and_an_alert() -> None:
    journeys = load_journeys(EXAMPLE_JOURNEYS)
    doc = rules_document(journeys)
    kpis = {(j.id, k.name) for j in journeys.journeys for k in j.kpis}
    alerts = rules_of(doc, "alert", ALERTNAME)
    assert {(a["labels"]["journey"], a["labels"]["kpi"]) for a in alerts} == kpis
    baselines = rules_of(doc, "record", "journey:kpi:baseline")
    assert {(b["labels"]["journey"], b["labels"]["kpi"]) for b in baselines} == kpis
    assert all(a["for"] == "10m" and a["labels"]["severity"] == "critical" for a in alerts)
    names = [g["name"] for g in doc["groups"]]
    assert names == [f"journey-receiver:{j.id}" for j in journeys.journeys if j.kpis]


def test_each_alert_lands_in_its_own_journey_through_the_ordinary_matching() -> None:
    journeys = load_journeys(EXAMPLE_JOURNEYS)
    catalog = JourneyCatalog(journeys, ["env", "region"])
    for alert in rules_of(rules_document(journeys), "alert", ALERTNAME):
        # The series add the labels kept apart; env is pinned to the stage's "prod".
        labels = {"alertname": ALERTNAME, "region": "eu", "env": "prod", **alert["labels"]}
        journey, stage = catalog.match(labels)
        assert journey.id == alert["labels"]["journey"]
        assert stage is not None
        assert stage.id in alert["annotations"]["description"]


def test_a_stage_matcher_on_a_label_kept_apart_goes_into_the_query() -> None:
    journeys = load_journeys(EXAMPLE_JOURNEYS)
    doc = rules_document(journeys)
    conversion = next(
        r for r in rules_of(doc, "record", "journey:kpi") if r["labels"]["kpi"] == "conversion"
    )
    assert conversion["expr"].count('{env="prod"}') == 2
    alert = next(a for a in rules_of(doc, "alert", ALERTNAME) if a["labels"]["kpi"] == "conversion")
    assert "env" not in alert["labels"]  # it comes from the series
    assert alert["labels"]["service"] == "payment-service"


def test_a_kpi_that_is_bad_when_up_alerts_above_its_upper_band_without_a_traffic_guard() -> None:
    doc = rules_document(
        make_journeys(make_journey(query='max(latency{region="$region"})', bad_when="up"))
    )
    (alert,) = rules_of(doc, "alert", ALERTNAME)
    assert alert["expr"].startswith(
        'journey:kpi{journey="checkout", kpi="kpi"} > journey:kpi:upper_band'
    )
    assert "traffic" not in alert["expr"]
    assert not rules_of(doc, "record", "journey:kpi:traffic_baseline")


def test_a_literal_dollar_asks_prometheus_what_the_receiver_asks() -> None:
    # label_replace's group $1, written $$1 (a $ of its own, not a placeholder): the
    # receiver sends "$1", and so must the rule, or Prometheus writes the text "$1".
    query = (
        'sum(label_replace(rate(orders_total{region="$region"}[5m]), "r", "$$1", "region", "(.*)"))'
    )
    (kpi,) = rules_of(
        rules_document(make_journeys(make_journey(query=query))), "record", "journey:kpi"
    )
    assert kpi["expr"] == (
        'sum by (region) (label_replace(rate(orders_total[5m]), "r", "$1", "region", "(.*)"))'
    )
    assert substitute(query, {"region": "eu"}) == (
        'sum(label_replace(rate(orders_total{region="eu"}[5m]), "r", "$1", "region", "(.*)"))'
    )


def test_a_ratio_bad_when_up_is_guarded_by_its_denominator() -> None:
    query = 'sum(rate(err{region="$region"}[5m])) / sum(rate(req{region="$region"}[5m]))'
    doc = rules_document(make_journeys(make_journey(query=query, bad_when="up")))
    (typical,) = rules_of(doc, "record", "journey:kpi:traffic_typical")
    assert typical["expr"] == "avg_over_time((sum by (region) (rate(req[5m])))[1d:15m])"


def test_options_set_the_band_for_severity_and_interval() -> None:
    options = RuleOptions(deviation_pct=50, for_="30m", severity="warning", interval="1m")
    doc = rules_document(make_journeys(make_journey()), options=options)
    assert doc["groups"][0]["interval"] == "1m"
    (lower,) = rules_of(doc, "record", "journey:kpi:lower_band")
    assert lower["expr"].endswith("* 0.5")
    (alert,) = rules_of(doc, "alert", ALERTNAME)
    assert (alert["for"], alert["labels"]["severity"]) == ("30m", "warning")


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"deviation_pct": 0}, "between 0 and 100"),
        ({"deviation_pct": 100}, "between 0 and 100"),
        ({"for_": "10"}, "not a Prometheus duration"),
        ({"min_traffic_ratio": -1}, "not negative"),
        # Neither fires ever: traffic >= nan * usual, or >= inf * usual.
        ({"min_traffic_ratio": float("nan")}, "a finite number"),
        ({"min_traffic_ratio": float("inf")}, "a finite number"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        RuleOptions(**options)


def test_a_kpi_whose_alert_an_earlier_journey_would_catch_is_refused_by_name() -> None:
    journeys = make_journeys(
        make_journey(id="everything", match=['severity="critical"']),
        make_journey(id="checkout"),
    )
    with pytest.raises(RulesError) as caught:
        rules_document(journeys)
    assert "journeys[1] checkout, kpis[0] kpi:" in str(caught.value)
    assert "lands in everything/main first" in str(caught.value)


def test_a_kpi_of_an_unsupported_shape_is_refused_by_name() -> None:
    journeys = make_journeys(make_journey(query='sum(x{zone="$region"})'))
    with pytest.raises(RulesError, match=r"^journeys\[0\] checkout, kpis\[0\] kpi: zone="):
        rules_document(journeys)


def test_template_braces_in_journey_text_reach_prometheus_as_text(tmp_path: Path) -> None:
    journey = make_journey()
    journey["name"] = "Checkout {{ not a template }}"
    journey["kpis"][0]["name"] = "orders {{x}}"
    doc = rules_document(make_journeys(journey))
    (alert,) = rules_of(doc, "alert", ALERTNAME)
    assert alert["labels"]["kpi"] == 'orders {{ "{{" }}x}}'  # Prometheus prints {{x}}
    assert '{{ "{{" }}x}}' in alert["annotations"]["summary"]
    rules = tmp_path / "rules.yaml"
    rules.write_text(to_yaml(doc))
    checked = subprocess.run(
        ["promtool", "check", "rules", str(rules)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
