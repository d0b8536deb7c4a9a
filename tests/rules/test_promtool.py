"""The generated rules pass ``promtool check rules``, and the shipped ``promtool test rules``
file (a drop fires; a seasonal dip, low traffic and another env do not) passes on them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from receiver.cli import main
from tests.conftest import EXAMPLE_JOURNEYS
from tests.rules.seasonal import promtool_test_file
from tests.support.processes import binary

DATA = Path(__file__).resolve().parent / "data"
JOURNEYS = DATA / "journeys.yaml"
RULES = DATA / "kpi-rules.yaml"
TESTS = DATA / "kpi-rules.test.yaml"


def generated(journeys: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["rules", "--journeys", str(journeys)]) == 0
    return capsys.readouterr().out


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args], capture_output=True, text=True, check=False, timeout=60
    )


def test_the_rules_of_the_example_journeys_pass_promtool_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(generated(EXAMPLE_JOURNEYS, capsys))
    checked = promtool("check", "rules", str(rules))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 80 rules found" in checked.stdout


def test_the_shipped_rules_and_promtool_tests_are_those_of_the_generator(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Regenerate with: journey-receiver rules --journeys tests/rules/data/journeys.yaml
    #   > tests/rules/data/kpi-rules.yaml, and promtool_test_file() > kpi-rules.test.yaml
    assert RULES.read_text() == generated(JOURNEYS, capsys)
    assert TESTS.read_text() == promtool_test_file()


def test_promtool_test_rules_drop_fires_seasonal_dip_and_low_traffic_do_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Run on freshly generated rules, next to a copy of the shipped test file.
    (tmp_path / "kpi-rules.yaml").write_text(generated(JOURNEYS, capsys))
    shutil.copy(TESTS, tmp_path / TESTS.name)
    tested = promtool("test", "rules", str(tmp_path / TESTS.name))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


_LATENCY_JOURNEYS = """\
journeys:
  - id: checkout
    name: Checkout
    weight: 1.0
    owner: {team: payments}
    group_by: [region]
    stages:
      - id: payment
        weight: 1.0
        match: ['service="payment-service"']
    kpis:
      - name: latency
        # The mean latency in seconds, from a histogram kept in milliseconds.
        query: >-
          sum(rate(pay_duration_ms_sum{region="$region"}[5m]))
          / sum(rate(pay_duration_ms_count{region="$region"}[5m])) / 1000
        unit: s
        bad_when: up
"""

# Four weeks of 10 payments a minute at 1 s each; the last 100 minutes at 5 s each.
_LATENCY_TEST = """\
rule_files: [kpi-rules.yaml]
evaluation_interval: 30m
tests:
  - interval: 1m
    input_series:
      - series: 'pay_duration_ms_count{region="eu"}'
        values: '0+10x40500'
      - series: 'pay_duration_ms_sum{region="eu"}'
        values: '0+10000x40400 404050000+50000x99'
    promql_expr_test:
      - expr: ALERTS{alertname="JourneyKpiDegraded", alertstate="firing"}
        eval_time: 28d3h
        exp_samples:
          - labels: 'ALERTS{alertname="JourneyKpiDegraded", alertstate="firing", journey="checkout",
              kpi="latency", region="eu", service="payment-service", severity="critical"}'
            value: 1
"""


def test_a_ratio_scaled_by_a_number_gives_rules_prometheus_loads_and_that_fire(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `... / 1000` (milliseconds to seconds) scales the ratio: its traffic is still the
    # ratio's denominator, not the number 1000 (a scalar, which a subquery cannot take:
    # Prometheus would refuse the whole file).
    journeys = tmp_path / "journeys.yaml"
    journeys.write_text(_LATENCY_JOURNEYS)
    (tmp_path / "kpi-rules.yaml").write_text(generated(journeys, capsys))
    checked = promtool("check", "rules", str(tmp_path / "kpi-rules.yaml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    (tmp_path / "kpi-rules.test.yaml").write_text(_LATENCY_TEST)
    tested = promtool("test", "rules", str(tmp_path / "kpi-rules.test.yaml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr


@pytest.mark.parametrize(
    "query",
    [
        # A share of a global total (no placeholders, so allowed): over a scalar.
        "sum(rate(a_total[5m])) / scalar(sum(rate(b_total[5m])))",
        # A scalar KPI, which the enricher reads: a rule records a vector.
        "scalar(sum(rate(orders_total[5m])))",
    ],
)
def test_a_kpi_with_a_scalar_gives_rules_prometheus_loads(
    query: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journeys = tmp_path / "journeys.yaml"
    written = _LATENCY_JOURNEYS.split("        query: >-")[0]
    kpi = f"        query: '{query}'\n        unit: rps\n        bad_when: down\n"
    journeys.write_text(written + kpi)
    (tmp_path / "kpi-rules.yaml").write_text(generated(journeys, capsys))
    checked = promtool("check", "rules", str(tmp_path / "kpi-rules.yaml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
