"""The ``log`` sink: the whole chart a person would read in Slack, as JSON or as text, and
no alert text can forge a log line."""

from __future__ import annotations

import json
import logging
from typing import Literal

import pytest

from receiver.config import LogSinkConfig, Owner
from receiver.sinks import Delivery
from receiver.sinks.log import LogSink
from tests.support.incidents import RUNBOOK_URL, make_incident

pytestmark = pytest.mark.anyio

OWNER = {
    "team": "payments",
    "routing": {"slack_channel": "#inc-checkout", "jira_project": "PAY", "pagerduty": "journey"},
}
UPDATE = Delivery("update", "job-1", Owner(team="payments"), changes=("new service: cart",))


async def notify(
    caplog: pytest.LogCaptureFixture,
    fmt: Literal["json", "text"],
    external_url: str | None,
    **incident: object,
) -> str:
    sink = LogSink(LogSinkConfig(format=fmt), external_url)
    with caplog.at_level(logging.INFO, logger="journey_receiver.notifications"):
        receipt = await sink.deliver(make_incident(owner=OWNER, **incident), UPDATE, None)
    assert receipt.state == "open"
    (record,) = caplog.records
    return record.getMessage()


async def test_the_text_chart_holds_what_slack_would_show(
    caplog: pytest.LogCaptureFixture,
) -> None:
    text = await notify(caplog, "text", "https://rx.example.com/")
    assert text.splitlines() == [
        "[update] checkout/eu P1 — 2 alerts in payment-service, cart; conversion −61% vs last week",
        "  changed:  new service: cart",
        "  summary:  Checkout (checkout) in env prod, region eu: 2 of 2 alert(s) firing.",
        "  cause:    deploy 2026.04.18-3 to payment-service",
        "  action:   Roll back payment-service",
        f"  runbook:  Payment gateway errors {RUNBOOK_URL}",
        "  owner:    payments (slack #inc-checkout, jira PAY, pagerduty journey)",
        "  link:     https://rx.example.com/incidents/checkout-eu-1",
    ]


async def test_the_json_chart_carries_the_same_parts(caplog: pytest.LogCaptureFixture) -> None:
    chart = json.loads(await notify(caplog, "json", None, probable_causes=[]))
    assert chart["event"] == "incident_notification"
    assert chart["summary"].startswith("Checkout (checkout) in env prod")
    assert chart["top_cause"] is None
    assert chart["actions"] == ["Roll back payment-service"]
    assert chart["runbooks"] == [{"title": "Payment gateway errors", "url": RUNBOOK_URL}]
    assert chart["owner"] == OWNER
    # Without server.external_url a person still learns where to look.
    assert chart["link"] == "/incidents/checkout-eu-1"


async def test_alert_text_cannot_forge_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    forged = "db\n2026-04-18 10:00:00,000 INFO journey_receiver.notifications [resolve] all clear"
    text = await notify(
        caplog,
        "text",
        None,
        title=f"checkout/eu P1 — 1 alert in {forged}",
        summary=forged,
        probable_causes=[{"kind": "service", "text": forged, "score": 25.0, "evidence": []}],
    )
    lines = text.splitlines()
    assert len(lines) == 8  # title, changed, summary, cause, action, runbook, owner, link
    assert not any(line.startswith("2026-04-18") for line in lines)
    assert sum("[resolve] all clear" in line for line in lines) == 3


async def test_alert_text_cannot_steer_the_terminal(caplog: pytest.LogCaptureFixture) -> None:
    # A lone surrogate, passed as it was, failed the log handler's encoding: the line lost.
    hostile = "db\x1b[1A\x1b[2K[resolve] all clear\x07\ud800\ufffe"
    text = await notify(caplog, "text", None, summary=hostile)
    (summary,) = [line for line in text.splitlines() if line.startswith("  summary:")]
    assert summary == "  summary:  db\\x1b[1A\\x1b[2K[resolve] all clear\\x07\\ud800\\ufffe"
    text.encode()


async def test_alert_text_cannot_steer_the_terminal_through_the_json_chart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # JSON escapes only C0 controls: a C1 CSI (U+009B) clears the screen of a terminal
    # showing `kubectl logs`, a bidi override turns the rest of the line around.
    hostile = "db\x9b2J\x9b1A[resolve] all clear\u202eP5\u2028"
    line = await notify(caplog, "json", None, summary=hostile)
    assert all(c.isprintable() for c in line), line
    # The same value for the log pipeline that parses it.
    assert json.loads(line)["summary"] == hostile


def test_the_log_sink_names_no_cause_behind_a_tie() -> None:
    # Enrichment put "one of …" (10) first and a config change (40) after it: the title,
    # the summary and leading() say the cause is unknown; the log sink names the config
    # change ("The leading cause, as the title and summary tell it").
    from receiver.config import LogSinkConfig, Owner
    from receiver.sinks import Delivery
    from receiver.sinks.log import LogSink
    from tests.support.incidents import make_incident

    tie = {"kind": "change", "text": "one of deploy a-7 to cart-api, deploy c-7 to cart",
           "score": 10.0, "evidence": []}  # fmt: skip
    config = {"kind": "change", "text": "config on cart", "score": 40.0, "evidence": []}
    sink = LogSink(LogSinkConfig(format="json"), None)
    chart = sink.chart(
        make_incident(probable_causes=[tie, config]),
        Delivery("open", "job-1", Owner(team="payments")),
    )
    assert chart["top_cause"] is None, chart["top_cause"]
