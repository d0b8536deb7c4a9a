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
