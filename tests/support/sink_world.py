"""The three vendors' fakes at once, over TLS where the vendor requires it, and the
``receiver.yaml`` lines that send incidents to all of them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.fake_jira import FakeJira, serve_jira
from tests.support.fake_pagerduty import FakePagerDuty, serve_pagerduty
from tests.support.fake_server import FakeServer, serve
from tests.support.fake_slack import TOKEN as SLACK_TOKEN
from tests.support.fake_slack import FakeSlack
from tests.support.prometheus import self_signed_cert

PD_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"
JIRA_TOKEN = "jira-pat-0123456789"
ALL = "[P1, P2, P3, P4, P5]"


@dataclass
class Fakes:
    pagerduty: FakePagerDuty
    slack: FakeSlack
    slack_server: FakeServer
    jira: FakeJira
    ca_file: Path

    def config(self) -> str:
        return (
            f"routing: {{pagerduty: {ALL}, slack: {ALL}, jira: {ALL}}}\n"
            "sinks:\n"
            f"  pagerduty: {{events_url: '{self.pagerduty.server.url}/v2/enqueue',"
            f" routing_key: {PD_KEY}, ca_file: '{self.ca_file}', timeout: 5s}}\n"
            f"  slack: {{token: {SLACK_TOKEN}, base_url: '{self.slack_server.url}/api/',"
            " timeout: 5s}\n"
            f"  jira: {{url: '{self.jira.server.url}', token: {JIRA_TOKEN}, timeout: 5s}}\n"
            "server: {external_url: 'https://rx.example.com', auth: {allow_open: true}}\n"
            "outbox: {max_attempts: 5, backoff_initial: 10s, backoff_max: 1m, lease: 30s}\n"
        )

    def sinks(self, timeout: str) -> dict[str, dict[str, str]]:
        """The ``sinks`` section pointing at these fakes, every call bounded by ``timeout``."""
        return {
            "pagerduty": {
                "events_url": f"{self.pagerduty.server.url}/v2/enqueue",
                "routing_key": PD_KEY,
                "ca_file": str(self.ca_file),
                "timeout": timeout,
            },
            "slack": {
                "token": SLACK_TOKEN,
                "base_url": f"{self.slack_server.url}/api/",
                "timeout": timeout,
            },
            "jira": {"url": self.jira.server.url, "token": JIRA_TOKEN, "timeout": timeout},
        }


@contextlib.contextmanager
def fakes(workdir: Path) -> Iterator[Fakes]:
    cert, key = self_signed_cert(workdir)
    slack = FakeSlack()
    with (
        serve_pagerduty((cert, key)) as pagerduty,
        serve(slack.app, FakeServer()) as slack_server,
        serve_jira(token=JIRA_TOKEN) as jira,
    ):
        yield Fakes(pagerduty, slack, slack_server, jira, cert)
