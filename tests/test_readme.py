"""The README tells the truth: it opens with the two set-up commands, and its quick start,
run as written against the example config, prints what the README shows."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from receiver.config.fields import parse_duration
from receiver.inbound.pagerduty import RECORDED
from tests.conftest import EXAMPLE_CONFIG, ROOT
from tests.support.processes import free_port, running
from tests.support.receiver_process import poll

README = (ROOT / "README.md").read_text()
CLI = str(Path(sys.executable).parent / "journey-receiver")
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
# An incident id's number: when its key's first incident opened, in seconds.
_ID_NUMBER = re.compile(r"(?<=-[0-9a-f]{12}-)\d+\b")


def blocks() -> list[str]:
    return [m[2] for m in _FENCE.finditer(README)]


def block_after(words: str) -> list[str]:
    """The lines of the first fenced block after ``words`` in the README (however the
    paragraph is wrapped)."""
    found = re.search(r"\s+".join(map(re.escape, words.split())), README)
    assert found, words
    start = found.end()
    (body,) = [m[2] for m in _FENCE.finditer(README, start)][:1]
    return body.splitlines()


def test_the_readme_opens_with_the_two_commands() -> None:
    assert README.startswith("# journey-receiver\n\n```sh\n")
    commands = [line.split("#")[0].strip() for line in blocks()[0].splitlines()]
    assert commands == ["scripts/serve", "scripts/test"]
    for script in commands:
        assert os.access(ROOT / script, os.X_OK), script
    assert "exec scripts/test" in (ROOT / ".ci" / "run").read_text()
    serve = (ROOT / "scripts" / "serve").read_text()
    assert "serve --config config/receiver.yaml" in serve
    assert yaml.safe_load(EXAMPLE_CONFIG.read_text())["store"]["url"] == "memory://"


def outputs(stdout: str) -> list[Any]:
    """Each JSON document the quick start's commands printed, in order."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (at := _skip_space(stdout, at)) < len(stdout):
        value, at = decoder.raw_decode(stdout, at)
        found.append(value)
    return found


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


def test_the_quick_start_runs_as_written(tmp_path: Path) -> None:
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    quick = "\n".join(block_after("and read the incidents:"))
    *_, pause = re.findall(r"^sleep (\d+)", quick, re.M)  # the wait before reading
    waits = parse_duration(config["grouping"]["group_wait"])
    assert int(pause) >= waits + parse_duration(config["scheduler"]["tick"])

    port = free_port()
    log = tmp_path / "serve.log"
    args = [CLI, "serve", "--config", str(EXAMPLE_CONFIG), "--host", "127.0.0.1"]
    with running([*args, "--port", str(port)], port, log, cwd=ROOT):
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", quick.replace(":9095/", f":{port}/")],
            cwd=ROOT, capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        events, webhook, listing = outputs(done.stdout)
        chart = block_after("after the log line's time, level and logger name):")
        text = poll(
            log.read_text,
            lambda t: chart[-2] in t,
            what="the checkout/eu chart in the log",
            context=log.read_text,
        )
    assert events == {"accepted": 1}
    assert (webhook["alerts"], len(webhook["incidents"])) == (10, 3)
    shown = block_after("The ten alerts become three incidents")
    assert sorted(i["title"] for i in listing["incidents"]) == sorted(shown)
    lines = text.splitlines()
    start = lines.index(next(line for line in lines if line.endswith(chart[0])))
    logged = [lines[start].split(" INFO journey_receiver.notifications ")[1]]
    logged += lines[start + 1 : start + len(chart)]
    assert [_ID_NUMBER.sub("<n>", _TIME.sub("<time>", line)) for line in logged] == [
        _ID_NUMBER.sub("<n>", _TIME.sub("<time>", line)) for line in chart
    ]


def test_the_pagerduty_set_up_names_every_event_type_the_receiver_records() -> None:
    # A v3 subscription is made with the event types picked one by one: one left out of the
    # README's list is one a person does in PagerDuty that never comes back.
    (row,) = [line for line in README.splitlines() if line.startswith("| PagerDuty | a v3 ")]
    set_up = row.split(" | ")[1]
    assert set(re.findall(r"`(incident\.[a-z_]+)`", set_up)) == RECORDED
