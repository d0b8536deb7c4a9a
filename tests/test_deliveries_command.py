"""``journey-receiver deliveries list | redrive`` against a real ``journey-receiver serve``
whose Slack (the fake, with faults) first refuses its token, then answers 503: one dead
letter, one job retrying and one pending behind it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from receiver.cli import main
from receiver.deliveries_command import TOKEN_ENV
from tests.conftest import EXAMPLE_JOURNEYS, make_alert, resolved
from tests.support import receiver_process as rp
from tests.support.fake_server import FakeServer, Fault, serve
from tests.support.processes import free_port
from tests.support.prometheus import fake_http
from tests.support.sink_world import Fakes, fakes

WRITE, READ, ADMIN = "deliveries-write", "deliveries-read", "deliveries-admin"
ALL = ["P1", "P2", "P3", "P4", "P5"]
ADMIN_VARIABLE = "DELIVERIES_TEST_ADMIN_TOKEN"


class Served:
    def __init__(self, process: rp.ReceiverProcess, world: Fakes, config: Path) -> None:
        self.process, self.world, self.config = process, world, config

    def post(self, alert: dict[str, Any]) -> str:
        (incident,) = self.process.post_alerts([alert])
        return incident

    def api(self, state: str) -> list[dict[str, Any]]:
        r = httpx.get(
            f"{self.process.url}/api/v1/deliveries",
            params={"state": state},
            headers={"Authorization": f"Bearer {READ}"},
        )
        assert r.status_code == 200, r.text
        found: list[dict[str, Any]] = r.json()["deliveries"]
        return found

    def until(self, state: str, count: int) -> list[dict[str, Any]]:
        return rp.poll(
            lambda: self.api(state),
            lambda found: len(found) == count,
            what=f"{count} deliveries {state}",
            context=self.process.tail,
        )

    def cli(self, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
        action, *rest = argv
        code = main(["deliveries", action, "--config", str(self.config),
                     "--url", self.process.url, *rest])  # fmt: skip
        out, err = capsys.readouterr()
        return code, out, err


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    monkeypatch.setenv(ADMIN_VARIABLE, ADMIN)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with fakes(tmp_path) as world:
        config = rp.write_config(
            tmp_path / "receiver.yaml",
            store_url="memory://",
            key_prefix="jr",
            token=WRITE,
            journeys_file=EXAMPLE_JOURNEYS,
            grouping={"group_wait": "0s", "group_interval": "1s", "resolve_after": "1s"},
            scheduler={"tick": "100ms", "lease": "2s"},
            routing={"slack": ALL},
            sinks={"slack": world.sinks("2s")["slack"]},
            # A job that failed waits an hour: it stays retrying while the test looks.
            outbox={"lease": "12s", "backoff_initial": "1h", "backoff_max": "1h"},
            server={
                "host": "127.0.0.1",
                "port": 9095,
                "auth": {
                    "bearer_tokens": [WRITE],
                    "read_bearer_tokens": [READ],
                    "admin_bearer_tokens": ["${" + ADMIN_VARIABLE + "}"],
                },
            },
        )
        (tmp_path / "rx").mkdir()
        with rp.receiver_process(config, tmp_path / "rx", WRITE) as process:
            yield Served(process, world, config)


def test_list_shows_what_is_not_delivered_and_redrive_sends_a_dead_letter_again(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = served.cli(capsys, "list")
    assert (code, out, err) == (0, "no delivery dead, retrying or pending\n", "")

    slack = served.world.slack_server
    slack.inject(Fault("/api/", status=200, body={"ok": False, "error": "invalid_auth"}))
    refused = served.post(make_alert(region="eu"))
    (letter,) = served.until("dead", 1)
    slack.inject(Fault("/api/", status=503, times=1000))
    us = make_alert(region="us")
    failing = served.post(us)
    (head,) = served.until("retrying", 1)
    served.post(resolved(us))
    (behind,) = served.until("pending", 1)

    code, out, err = served.cli(capsys, "list")
    assert (code, err) == (0, "")
    header, *rows = [line.split() for line in out.splitlines()]
    assert header == ["state", "id", "sink", "kind", "incident", "attempts", "when", "error"]
    assert [row[:6] for row in rows] == [
        ["dead", letter["id"], "slack", "open", refused, "1"],
        ["retrying", head["id"], "slack", "open", failing, "1"],
        ["pending", behind["id"], "slack", "resolve", failing, "0"],
    ]
    assert rows[0][6:8] == ["dead", letter["dead_at"]]
    assert "invalid_auth" in " ".join(rows[0][8:])
    assert rows[1][6:8] == ["next", head["next_attempt_at"]]
    assert " ".join(rows[1][8:]).startswith("attempt 1")
    assert rows[2][6:] == ["after", "1", "in", "its", "queue"]

    code, out, _ = served.cli(capsys, "list", "--state", "pending", "--state", "retrying",
                              "--json")  # fmt: skip
    assert code == 0
    assert json.loads(out) == {"deliveries": [head, behind]}

    # A misspelt sink is refused (dry run or not), not taken for "nothing to redrive".
    for dry in ([], ["--dry-run"]):
        code, out, err = served.cli(capsys, "redrive", "--sink", "slak", *dry)
        assert (code, out) == (1, "")
        assert err == (
            "journey-receiver deliveries: --sink slak: no such sink: one of jira, "
            "log, pagerduty, slack, or action:<action id>\n"
        )

    # A dry run lists what it would queue again, and queues nothing.
    code, out, err = served.cli(capsys, "redrive", "--id", letter["id"], "--dry-run")
    assert (code, err) == (0, "")
    *table, last = out.splitlines()
    assert [line.split()[:2] for line in table] == [["state", "id"], ["dead", letter["id"]]]
    assert last.startswith("would redrive 1 dead letter(s) ")
    assert served.api("dead") == [letter]
    code, out, _ = served.cli(capsys, "redrive", "--sink", "jira", "--dry-run")
    assert (code, out.splitlines()[0].split()[:3]) == (0, ["would", "redrive", "0"])

    code, out, err = served.cli(capsys, "redrive", "--id", letter["id"])
    assert (code, err) == (0, "")
    assert out.startswith("redriven 1: new job ")
    assert served.api("dead") == []
    # Gone from the dead letters, it cannot be redriven twice.
    code, out, err = served.cli(capsys, "redrive", "--id", letter["id"])
    assert (code, out) == (1, "no dead letter redriven\n")
    assert err == (
        "journey-receiver deliveries: 1 of the 1 --id not redriven: no such dead letter, "
        "or its incident has expired\n"
    )


def test_credentials_come_from_the_config_or_the_environment_and_refusals_say_which_role(
    served: Served, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without --url: the config's server.host and server.port.
    served.config.write_text(
        served.config.read_text().replace("port: 9095", f"port: {served.process.port}")
    )
    assert main(["deliveries", "list", "--config", str(served.config)]) == 0
    assert capsys.readouterr().out == "no delivery dead, retrying or pending\n"

    monkeypatch.setenv(TOKEN_ENV, READ)
    code, out, err = served.cli(capsys, "redrive")
    assert (code, out) == (1, "")
    assert err == (
        "journey-receiver deliveries: POST /api/v1/deliveries/redrive: HTTP 403: forbidden: "
        "this endpoint needs a credential of the admin role (server.auth.admin_bearer_tokens) "
        f"(redrive takes an admin token; sent {TOKEN_ENV})\n"
    )
    monkeypatch.setenv(TOKEN_ENV, "not-a-token")
    code, _, err = served.cli(capsys, "list")
    assert code == 1
    assert err.startswith("journey-receiver deliveries: GET /api/v1/deliveries: HTTP 401")
    assert err.endswith(f"(list takes a read token (or a write or admin one); sent {TOKEN_ENV})\n")
    # A token pasted with its newline is taken without it; one with a space is refused,
    # and not shown.
    monkeypatch.setenv(TOKEN_ENV, ADMIN + "\n")
    assert served.cli(capsys, "redrive") == (0, "no dead letter redriven\n", "")
    monkeypatch.setenv(TOKEN_ENV, "s3cr3t token")
    assert served.cli(capsys, "list") == (
        1, "", f"journey-receiver deliveries: {TOKEN_ENV}: not a usable bearer token (it holds "
        "spaces, control or non-ASCII characters)\n",
    )  # fmt: skip

    # The admin token of the config comes from an unset variable: list, which reads the
    # read token, does not mind; redrive says so, with the way out.
    monkeypatch.delenv(TOKEN_ENV)
    monkeypatch.delenv(ADMIN_VARIABLE)
    assert served.cli(capsys, "list", "--state", "dead")[:2] == (0, "no delivery dead\n")
    code, out, err = served.cli(capsys, "redrive", "--sink", "jira")
    assert (code, out) == (1, "")
    assert f"server.auth.admin_bearer_tokens[0]: environment variable {ADMIN_VARIABLE}" in err
    assert err.endswith(f"journey-receiver deliveries: or set {TOKEN_ENV} to the token to use\n")


def test_a_receiver_that_does_not_answer_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["deliveries", "list", "--url", url, "--timeout", "2"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"journey-receiver deliveries: {url}: ")
    assert err.endswith("(is the receiver running? --url)\n")
    # A password in --url is not printed; what is no URL is said.
    with_password = url.replace("://", "://ops:s3cret@")
    assert main(["deliveries", "list", "--url", with_password, "--timeout", "2"]) == 1
    assert capsys.readouterr().err.startswith(f"journey-receiver deliveries: {url}: ")
    assert main(["deliveries", "list", "--url", "ftp://h"]) == 1
    assert capsys.readouterr().err == (
        "journey-receiver deliveries: --url: an http:// or https:// URL with a host\n"
    )
    assert main(["deliveries", "list", "--url", "http://[::1"]) == 1
    assert capsys.readouterr().err == (
        "journey-receiver deliveries: --url: not a URL (Invalid port: ':1')\n"
    )
    # A --config that is not there is said, not replaced by the defaults.
    missing = tmp_path / "receiver.yml"
    assert main(["deliveries", "list", "--config", str(missing)]) == 1
    assert (
        capsys.readouterr().err
        == f"journey-receiver deliveries: --config {missing}: no such file\n"
    )
    for limit in ("0", "²"):
        with pytest.raises(SystemExit):
            main(["deliveries", "list", "--limit", limit])
        assert f"--limit: a whole number from 1 to 1000, not {limit!r}" in capsys.readouterr().err


def test_what_a_wrong_or_hostile_server_answers_is_escaped_or_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    hostile = {"id": "7\x1b]0;pwn\x07", "incident": "checkout-1\u202e", "sink": "slack",
               "kind": "open", "state": "dead", "attempts": 1, "dead_at": "\x9b2J",
               "error": "bad\nline\x1b[31m"}  # fmt: skip
    answer = json.dumps({"deliveries": [hostile]}).encode()
    with fake_http(200, answer) as fake:
        assert main(["deliveries", "list", "--url", fake.url, "--state", "dead"]) == 0
        out = capsys.readouterr().out
        assert all(c.isprintable() for line in out.splitlines() for c in line)
        assert "7\\x1b]0;pwn\\x07" in out
        assert "checkout-1\\u202e" in out
        assert "dead \\x9b2J" in out
        fake.body = json.dumps({"redriven": 1, "jobs": "7"}).encode()
        assert main(["deliveries", "redrive", "--url", fake.url]) == 1
        assert capsys.readouterr().err == (
            "journey-receiver deliveries: POST /api/v1/deliveries/redrive: no list of job ids "
            "in the answer\n"
        )
        fake.body = b"<html>sign in</html>"
        assert main(["deliveries", "list", "--url", fake.url]) == 1
        assert capsys.readouterr().err == (
            "journey-receiver deliveries: GET /api/v1/deliveries: not a journey-receiver "
            "answer (a wrong --url?)\n"
        )


def test_a_dead_run_is_said_to_be_cleared_not_redriven(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    letter = {"incident": "checkout-1", "state": "dead", "attempts": 1,
              "dead_at": "2026-12-04T10:00:00.000Z", "error": "HTTP 503"}  # fmt: skip
    run = letter | {"id": "8", "sink": "action:rollback", "kind": "run"}
    update = letter | {"id": "9", "sink": "slack", "kind": "update"}
    with fake_http(200, json.dumps({"deliveries": [run, update]}).encode()) as fake:
        assert main(["deliveries", "redrive", "--url", fake.url, "--dry-run"]) == 0
        *table, last = capsys.readouterr().out.splitlines()
        assert [line.split()[1] for line in table[1:]] == ["8", "9"]
        assert last == (
            "would redrive 1 dead letter(s) (one whose incident has expired by then is dropped) "
            "and clear 1 action run(s), never redriven; nothing was queued"
        )
        fake.body = json.dumps({"redriven": 1, "jobs": ["10"], "cleared": ["8"]}).encode()
        assert main(["deliveries", "redrive", "--url", fake.url, "--id", "8", "--id", "9"]) == 0
        assert capsys.readouterr().out == (
            "redriven 1: new job 10\ncleared 1 action run(s), never redriven: 8\n"
        )
        fake.body = json.dumps({"redriven": 0, "jobs": [], "cleared": ["8"]}).encode()
        assert main(["deliveries", "redrive", "--url", fake.url, "--id", "8"]) == 0
        assert capsys.readouterr().out == "cleared 1 action run(s), never redriven: 8\n"
        fake.body = json.dumps({"redriven": 0, "jobs": [], "cleared": "8"}).encode()
        assert main(["deliveries", "redrive", "--url", fake.url]) == 1
        assert "no list of job ids in the answer" in capsys.readouterr().err


def test_a_receiver_older_than_the_command_still_shows_its_dead_letters(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a receiver before the retrying and pending states answered (receiver/api.py then).
    dead = {"id": "7", "incident": "checkout-1", "sink": "slack", "kind": "open",
            "state": "dead", "attempts": 8, "dead_at": "2026-12-04T10:00:00.000Z",
            "error": "invalid_auth"}  # fmt: skip

    async def deliveries(request: Request) -> Response:
        state = request.query_params.get("state", "dead")
        if state != "dead":
            return JSONResponse(
                {"error": "state must be dead (the dead-letter list)",
                 "errors": [{"field": "state", "reason": state}]},
                status_code=422,
            )  # fmt: skip
        return JSONResponse({"deliveries": [dead]})

    monkeypatch.delenv(TOKEN_ENV, raising=False)
    app = Starlette(routes=[Route("/api/v1/deliveries", deliveries)])
    with serve(app, FakeServer()) as older:
        assert main(["deliveries", "list", "--url", older.url]) == 0
        out, err = capsys.readouterr()
        assert out.splitlines()[1].split()[:3] == ["dead", "7", "slack"]
        assert err == (
            "journey-receiver deliveries: this receiver does not list retrying or pending "
            "deliveries (a version older than this command): not shown\n"
        )
        # Asked for by name, a state it does not know is an error, not an empty list.
        assert main(["deliveries", "list", "--url", older.url, "--state", "pending"]) == 1
        assert capsys.readouterr().err == (
            "journey-receiver deliveries: this receiver does not list pending deliveries "
            "(a version older than this command: it lists dead ones only)\n"
        )
