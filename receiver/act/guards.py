"""The guard rails every run passes, whoever asked (``automation`` in receiver.yaml).

An action never runs while automation is switched off, on a resolved incident, with a
template naming a value the incident lacks, or with ``{previous_version}`` when the version
before the change is unknown (rolling "back" to a guess could re-deploy the bad version).
``max_runs_per_hour`` holds over every replica: each run takes one of that many slots in
the store for an hour from when it was asked for (a sliding hour, on the receiver's clock).
"""

from __future__ import annotations

from collections.abc import Mapping

from receiver.act.template import fields, strings
from receiver.actions import Match
from receiver.config import AutomationConfig
from receiver.config.actions import WebhookRun
from receiver.store import GroupStore
from receiver.store.records import IncidentState

_HOUR_MS = 3_600_000
PREVIOUS = "previous_version"


def needed(run: WebhookRun) -> set[str]:
    """Every value the run's templates name."""
    texts = [run.url, *(v.get_secret_value() for v in run.headers.values())]
    if run.body is not None:
        texts.extend(strings(run.body))
    return {name for text in texts for name in fields(text)}


def blocked(
    config: AutomationConfig, state: IncidentState, found: Match, values: Mapping[str, str]
) -> str | None:
    """Why ``found`` must not run on the incident now; None when nothing stands in the way."""
    run = found.action.run
    if not config.enabled:
        return "automation is switched off (automation.enabled: false)"
    if state.status == "resolved":
        return "the incident is resolved"
    if run is None:
        return "the action says nothing to run (no run:); it is a suggestion only"
    wanted = needed(run.webhook)
    if PREVIOUS in wanted and not found.previous_known:
        return "the version before the change is unknown, so there is nothing known to roll back to"
    # An empty value is one the incident lacks: a group label its alerts do not carry
    # reads as "" (as in Alertmanager's grouping), and a run must not act on "".
    missing = sorted(name for name in wanted if not values.get(name))
    if missing:
        names = ", ".join("{" + name + "}" for name in missing)
        return f"the run names {names}, which the incident has no value for"
    return None


async def take_slot(store: GroupStore, config: AutomationConfig, holder: str, now_ms: int) -> bool:
    """One of the hour's ``max_runs_per_hour`` run slots for ``holder`` (the run: asking
    again takes no second one); False when all are taken."""
    limit = config.max_runs_per_hour
    return limit > 0 and await store.take_slot("action-runs", holder, limit, _HOUR_MS, now_ms)
