"""Ask every configured system at once, print one line per finding and a summary."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import TextIO

from receiver import config as cfg
from receiver.config.receiver_yaml import DEFAULT_JOURNEYS_FILE
from receiver.logtext import redact
from receiver.online import Finding, secrets_of
from receiver.online.alertmanager import check_alertmanager
from receiver.online.jira import check_jira
from receiver.online.pagerduty import check_pagerduty
from receiver.online.prometheus import check_prometheus
from receiver.online.slack import check_slack

SYSTEMS = ("slack", "jira", "pagerduty", "prometheus", "alertmanager")
"""Every system asked, in the order of the report."""


def run(config_path: Path | None, journeys_path: Path | None, out: TextIO | None = None) -> int:
    """Load the (already checked) files, call every configured system, print one line per
    finding and a summary; 1 when any finding is a problem, else 0."""
    out = out or sys.stdout
    if config_path is None:
        receiver, journeys = (
            cfg.ReceiverConfig(),
            cfg.load_journeys(journeys_path or DEFAULT_JOURNEYS_FILE),
        )
    else:
        receiver, journeys = cfg.load(config_path, journeys_path)
    findings = asyncio.run(check_all(receiver, journeys))
    for finding in findings:
        print(finding.line(), file=out)
    checked = sorted({f.system for f in findings}, key=SYSTEMS.index)
    problems = sum(f.level == "problem" for f in findings)
    warnings = sum(f.level == "warning" for f in findings)
    if not checked:
        print(
            "online check: nothing to call (no Slack, Jira or PagerDuty sink, no "
            "prometheus.url, no alertmanager section)",
            file=out,
        )
        return 0
    print(
        f"online check of {', '.join(checked)}: {problems} problem(s), {warnings} warning(s)",
        file=out,
    )
    return 1 if problems else 0


async def check_all(receiver: cfg.ReceiverConfig, journeys: cfg.JourneysConfig) -> list[Finding]:
    """The findings of every configured (and enabled) system, asked all at once, in the
    order of ``SYSTEMS``; secrets of the config are blanked out of every text."""
    enabled = receiver.sinks.enabled()
    sinks = receiver.sinks
    calls: list[Awaitable[list[Finding]]] = []
    if sinks.slack is not None and "slack" in enabled:
        calls.append(asyncio.to_thread(check_slack, sinks.slack, journeys))
    if sinks.jira is not None and "jira" in enabled:
        calls.append(asyncio.to_thread(check_jira, sinks.jira, journeys))
    if sinks.pagerduty is not None and "pagerduty" in enabled:
        calls.append(asyncio.to_thread(check_pagerduty, sinks.pagerduty, journeys))
    if receiver.prometheus.url is not None:
        calls.append(asyncio.to_thread(check_prometheus, receiver.prometheus, journeys))
    if receiver.alertmanager is not None:
        calls.append(check_alertmanager(receiver.alertmanager))
    results: list[list[Finding]] = await asyncio.gather(*calls)
    secrets = sorted(secrets_of(receiver, journeys), key=len, reverse=True)
    return [Finding(f.level, f.system, redact(f.text, secrets)) for found in results for f in found]
