"""The pull-request check of ``deploy/ci/``: the workflow's replay step, run as GitHub runs it
in a checkout whose journeys.yaml moves the cart stage to another journey, reports the same
difference as ``journey-receiver replay --against`` and writes it to the job summary."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from receiver.cli import main
from tests.replay.storm import WINDOW, replay_argv
from tests.support.github_actions import run_step

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
SCRIPT = ROOT / "deploy" / "ci" / "journeys-diff.sh"
WORKFLOW = ROOT / "deploy" / "ci" / "github-actions-journeys.yml"
# journey-receiver, and the redis-server it replays on: no stderr note about running slower.
# (The step's own --since 7d is long gone from the storm: WINDOW follows it.)
PATH = ":".join(
    dict.fromkeys(
        [
            str(Path(sys.executable).parent),
            str(Path(shutil.which("redis-server") or "/usr/bin").parent),
            "/usr/bin",
            "/bin",
        ]
    )
)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=ci", "-c", "user.email=ci@example.com", *args],
        cwd=repo, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def commit(repo: Path, message: str, ref: str) -> None:
    git(repo, "add", ".")
    git(repo, "commit", "-qm", message)
    git(repo, "update-ref", ref, "HEAD")


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A pull request's checkout as GitHub makes it: HEAD is the merge commit of the change
    (the new journeys.yaml), HEAD^1 the base branch (the old one); refs/first is where the
    repository had no journeys.yaml yet."""
    repo = tmp_path / "shop config"
    (repo / "config").mkdir(parents=True)
    git(repo, "init", "-q")
    shutil.copy(DATA / "receiver.yaml", repo / "config" / "receiver.yaml")
    commit(repo, "receiver.yaml", "refs/first")
    shutil.copy(DATA / "journeys-old.yaml", repo / "config" / "journeys.yaml")
    commit(repo, "journeys.yaml", "refs/base")
    shutil.copy(DATA / "journeys-new.yaml", repo / "config" / "journeys.yaml")
    commit(repo, "cart moves to browse", "refs/change")
    return repo


def replay_step() -> dict[str, Any]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    steps = workflow["jobs"]["replay"]["steps"]
    (step,) = [s for s in steps if "journeys-diff.sh" in s.get("run", "")]
    return dict(step)


def run_script(checkout: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *argv], cwd=checkout, capture_output=True, text=True, check=False,
        env={"PATH": PATH, **env},
    )  # fmt: skip


def test_the_workflow_step_reports_the_change_against_its_base_in_the_summary(
    checkout: Path, prometheus: str, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = checkout.parent / "runner"
    runner.mkdir()
    # Where the workflow's install step put journey-receiver: this repository.
    (runner / "journey-receiver").symlink_to(ROOT)
    summary = checkout.parent / "summary.md"
    github = {"github.base_ref": "main", "secrets.PROMETHEUS_URL": prometheus}
    done = run_step(
        replay_step(), github, checkout, checkout.parent / "step.sh",
        {"RUNNER_TEMP": str(runner), "GITHUB_STEP_SUMMARY": str(summary), "PATH": PATH},
        *WINDOW,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")

    against = checkout.parent / "old.yaml"
    shutil.copy(DATA / "journeys-old.yaml", against)
    new = checkout / "config" / "journeys.yaml"
    assert main([*replay_argv(prometheus, "--journeys", str(new), "--against", str(against)),
                 "--am-group-by", "env,region"]) == 0  # fmt: skip
    # The same report, the file compared with named as git would.
    expected = capsys.readouterr().out.replace(str(against), "main:config/journeys.yaml")
    assert done.stdout == expected
    assert "against main:config/journeys.yaml:\n" in expected
    assert "2 alert(s) moved from checkout to browse" in expected
    assert summary.read_text() == (
        f"### journeys.yaml: this change against main\n\n```\n{expected}```\n"
    )


def test_a_journeys_file_new_in_the_change_is_replayed_alone(
    checkout: Path, prometheus: str, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run_script(checkout, "refs/first", *WINDOW, PROMETHEUS_URL=prometheus)
    assert (done.returncode, done.stderr) == (0, "")
    new = checkout / "config" / "journeys.yaml"
    assert main([*replay_argv(prometheus, "--journeys", str(new))]) == 0
    assert done.stdout == capsys.readouterr().out


def test_a_report_is_fenced_past_any_backticks_it_holds(checkout: Path, tmp_path: Path) -> None:
    # A stand-in journey-receiver whose report holds label values with backticks.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "journey-receiver"
    fake.write_text("#!/bin/sh\necho 'checkout  1  region=\"`eu`\" ````'\n")
    fake.chmod(0o755)
    summary = tmp_path / "summary.md"
    done = subprocess.run(
        [str(SCRIPT), "refs/base"], cwd=checkout, capture_output=True, text=True, check=False,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "PROMETHEUS_URL": "http://p:9090",
             "GITHUB_STEP_SUMMARY": str(summary)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = 'checkout  1  region="`eu`" ````\n'
    assert summary.read_text() == (
        f"### journeys.yaml: this change against refs/base\n\n`````\n{report}`````\n"
    )


@pytest.mark.parametrize(
    ("argv", "env", "why"),
    [
        (["refs/base"], {}, "PROMETHEUS_URL is not set"),
        (["origin/nope"], {"PROMETHEUS_URL": "http://127.0.0.1:9"},
         "origin/nope: no such commit in this checkout (fetch it: actions/checkout fetch-depth)"),
        (["refs/base", "--against", "x.yaml"], {"PROMETHEUS_URL": "http://127.0.0.1:9"},
         "--against: the files compared are JOURNEYS_FILE and its version at BASE"),
        (["refs/base"], {"PROMETHEUS_URL": "http://127.0.0.1:9", "RECEIVER_CONFIG": "none.yaml"},
         "RECEIVER_CONFIG none.yaml: no such file"),
        (["refs/base"], {"PROMETHEUS_URL": "http://127.0.0.1:9", "JOURNEYS_FILE": "/etc/j.yaml"},
         "JOURNEYS_FILE /etc/j.yaml: give it relative to the checkout, as git names it"),
        (["refs/base"], {"PROMETHEUS_URL": "http://127.0.0.1:9", "PATH": "/usr/bin:/bin"},
         "journey-receiver is not on PATH (in a checkout: source .venv/bin/activate)"),
        # Prometheus does not answer: the replay says why, the script that it failed.
        (["refs/base"], {"PROMETHEUS_URL": "http://127.0.0.1:9"}, "the replay failed"),
    ],
    ids=["no-prometheus", "no-base", "files-given", "no-config", "absolute", "no-command",
         "replay-failed"],
)  # fmt: skip
def test_what_keeps_it_from_running_is_said_and_fails_the_step(
    checkout: Path, tmp_path: Path, argv: list[str], env: dict[str, str], why: str
) -> None:
    summary = tmp_path / "summary.md"
    done = run_script(checkout, *argv, GITHUB_STEP_SUMMARY=str(summary), **env)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.endswith(f"journeys-diff.sh: {why}\n")
    assert summary.read_text() == f"### journeys.yaml: no report\n\n{why} (see the job log)\n"
