"""``journey-receiver rules``: YAML on stdout, exit 1 with the reason on a bad file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from receiver import config
from receiver.cli import main

DATA = Path(__file__).resolve().parent / "data"
CONFIG_DATA = Path(__file__).resolve().parent.parent / "data" / "config"


def test_rules_prints_a_rules_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "--journeys", str(DATA / "journeys.yaml")]) == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    assert [group["name"] for group in doc["groups"]] == ["journey-receiver:checkout"]


def test_the_journeys_file_and_group_by_come_from_receiver_yaml_without_its_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # ${WEBHOOK_TOKEN} is unset where rules are built (CI): only journeys.yaml is validated.
    (tmp_path / "team.yaml").write_text((DATA / "journeys.yaml").read_text())
    (tmp_path / "receiver.yaml").write_text(
        "server: {auth: {bearer_tokens: ['${WEBHOOK_TOKEN:-}']}}\n"
        "grouping: {group_by: [region]}\njourneys_file: team.yaml\n"
    )
    journeys = tmp_path / "team.yaml"
    journeys.write_text(journeys.read_text().replace("    group_by: [env, region]\n", ""))
    assert main(["rules", "--config", str(tmp_path / "receiver.yaml")]) == 1
    assert capsys.readouterr().err == (
        f"{journeys}: journeys[0] checkout, kpis[0] conversion: uses $env, which is not "
        "among the journey's group_by labels (region)\n"
    )


def test_an_invalid_journeys_file_exits_1_with_the_problems_check_reports(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = CONFIG_DATA / "journeys_bad_weight.yaml"
    assert main(["rules", "--journeys", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [str(p) for p in config.check(None, path)]


def test_a_kpi_query_that_cannot_be_kept_apart_exits_1_naming_journey_and_kpi(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "journeys.yaml"
    path.write_text(
        (DATA / "journeys.yaml").read_text().replace('region="$region"', 'zone="$region"')
    )
    assert main(["rules", "--journeys", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f'{path}: journeys[0] checkout, kpis[0] conversion: zone="$region": ')
    assert "can become by (zone)" in err


# Prometheus' durations name each unit once, largest first (model.ParseDuration).
@pytest.mark.parametrize("duration", ["10", "30m1h", "1m1m", "5s10m", "1h 30m"])
def test_bad_options_exit_1(duration: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "--journeys", str(DATA / "journeys.yaml"), "--for", duration]) == 1
    assert capsys.readouterr().err == (
        f"journey-receiver rules: {duration!r} is not a Prometheus duration like 10m or 1h30m\n"
    )


@pytest.mark.parametrize("named", ["journeys_file: team.yaml\n", ""])
def test_a_relative_config_path_finds_its_journeys_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    named: str,
) -> None:
    # As the README runs it, from the repository root: `rules --config config/receiver.yaml`.
    conf = tmp_path / "config"
    conf.mkdir()
    (conf / ("team.yaml" if named else "journeys.yaml")).write_text(
        (DATA / "journeys.yaml").read_text()
    )
    (conf / "receiver.yaml").write_text(named or "grouping: {group_by: [env, region]}\n")
    monkeypatch.chdir(tmp_path)
    assert main(["rules", "--config", "config/receiver.yaml"]) == 0, capsys.readouterr().err
    doc = yaml.safe_load(capsys.readouterr().out)
    assert [group["name"] for group in doc["groups"]] == ["journey-receiver:checkout"]
