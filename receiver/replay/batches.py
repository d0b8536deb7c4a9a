"""Firing intervals → the webhook batches Alertmanager would have sent for them.

A model of Alertmanager's dispatcher (``dispatch/dispatch.go``) and its dedup stage
(``notify/notify.go`` ``DedupStage.needsUpdate``) for one route with a webhook receiver
and ``send_resolved: true``:

- alerts are grouped by the values of ``group_by`` (``...`` = every label); the first
  alert of a group starts an aggregation group, flushed ``group_wait`` later and then every
  ``group_interval``;
- a flush sends every alert of the group (firing and resolved) when a firing alert is new
  since the last notification of the group, a resolved one is new, every alert resolved
  after some were notified firing, or ``repeat_interval`` passed; a group never notified
  sends nothing until it has a firing alert;
- after a flush the resolved alerts leave the group; an empty group ends, and the next
  alert of the same labels starts a new one with a new ``group_wait``. What was last sent
  (the notification log) outlives the group, as in Alertmanager.

Left out: Prometheus' own delays (evaluation, resend), the 30 s garbage collection that
lets an emptied group live a little longer, and an alert whose ``startsAt`` is already
older than ``group_wait`` flushing at once (Prometheus sends an alert when it fires).

Flushes in which nothing can change are skipped: the next flush that matters is the first
one on the group's grid at or after the next alert start, firing alert end or repeat.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from receiver.replay.history import Firing
from receiver.webhook import WebhookMessage

ALL_LABELS = "..."
RECEIVER = "journey-receiver-replay"


@dataclass(frozen=True, slots=True)
class Route:
    """Alertmanager's route for the alerts: its ``group_by`` and timers (ms)."""

    group_by: tuple[str, ...]
    group_wait_ms: int
    group_interval_ms: int
    repeat_interval_ms: int

    def key(self, labels: dict[str, str] | Firing) -> tuple[tuple[str, str], ...]:
        """The group labels, as Alertmanager keys an aggregation group."""
        own = labels.labels if isinstance(labels, Firing) else labels
        if ALL_LABELS in self.group_by:
            return tuple(sorted(own.items()))
        return tuple((name, own[name]) for name in sorted(self.group_by) if own.get(name))


@dataclass(frozen=True, slots=True)
class Notification:
    """One webhook batch and when Alertmanager would have sent it."""

    at_ms: int
    message: WebhookMessage


@dataclass
class Plan:
    """What Alertmanager would have sent: the batches in time order, and the alerts of each
    aggregation group (one lifetime of a group) that sent at least one of them."""

    notifications: list[Notification] = field(default_factory=list)
    groups: list[frozenset[str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Sent:
    firing: frozenset[str]
    resolved: frozenset[str]
    at_ms: int


def plan(firings: Iterable[Firing], route: Route, until_ms: int) -> Plan:
    """Every notification Alertmanager would have sent up to ``until_ms``."""
    by_group: dict[tuple[tuple[str, str], ...], list[Firing]] = defaultdict(list)
    for f in firings:
        by_group[route.key(f)].append(f)
    result = Plan()
    for key, members in by_group.items():
        members.sort(key=lambda f: (f.start_ms, f.fingerprint))
        _simulate(key, members, route, until_ms, result)
    result.notifications.sort(key=lambda n: n.at_ms)
    return result


def needs_update(last: _Sent | None, firing: set[str], resolved: set[str], repeat_ms: int,
                 now_ms: int) -> bool:  # fmt: skip
    """Alertmanager's ``DedupStage.needsUpdate`` with ``send_resolved: true``."""
    if last is None:
        return bool(firing)
    if not firing <= last.firing:
        return True
    if not firing:
        return bool(last.firing)
    if not resolved <= last.resolved:
        return True
    return last.at_ms < now_ms - repeat_ms


def _simulate(
    key: tuple[tuple[str, str], ...],
    members: Sequence[Firing],
    route: Route,
    until_ms: int,
    out: Plan,
) -> None:
    pending = deque(members)
    last: _Sent | None = None
    group: dict[str, Firing] = {}
    told: set[str] = set()
    next_flush: int | None = None
    group_key = "{}:{" + ", ".join(f'{k}="{v}"' for k, v in key) + "}"
    while True:
        if next_flush is None:
            if not pending or pending[0].start_ms > until_ms:
                return
            first = pending.popleft()
            group = {first.fingerprint: first}
            told = set()
            next_flush = first.start_ms + route.group_wait_ms
        # An alert that fires again replaces its resolved predecessor, as Alertmanager
        # merges a new alert over a resolved one of the same fingerprint.
        while pending and pending[0].start_ms <= next_flush:
            f = pending.popleft()
            group[f.fingerprint] = f
        if next_flush > until_ms:
            if told:
                out.groups.append(frozenset(told))
            return
        now = next_flush
        firing = {fp for fp, f in group.items() if f.end_ms is None or f.end_ms > now}
        resolved = set(group) - firing
        if needs_update(last, firing, resolved, route.repeat_interval_ms, now):
            out.notifications.append(Notification(now, _message(group_key, key, group, now)))
            last = _Sent(frozenset(firing), frozenset(resolved), now)
            told |= set(group)
        for fp in resolved:
            del group[fp]
        if not group:
            if told:
                out.groups.append(frozenset(told))
            next_flush = None
            continue
        upcoming = [f.end_ms for f in group.values() if f.end_ms is not None]
        if pending:
            upcoming.append(pending[0].start_ms)
        if last is not None:
            upcoming.append(last.at_ms + route.repeat_interval_ms + 1)
        event = min(upcoming, default=until_ms + 1)
        steps = max(1, -(-(event - now) // route.group_interval_ms))
        next_flush = now + steps * route.group_interval_ms


def _time(at_ms: int) -> datetime:
    return datetime.fromtimestamp(at_ms / 1000, UTC)


def _message(
    group_key: str, key: tuple[tuple[str, str], ...], group: dict[str, Firing], now_ms: int
) -> WebhookMessage:
    alerts = []
    any_firing = False
    for fp in sorted(group):
        f = group[fp]
        firing = f.end_ms is None or f.end_ms > now_ms
        any_firing |= firing
        alerts.append(
            {
                "status": "firing" if firing else "resolved",
                "labels": dict(f.labels),
                "startsAt": _time(f.start_ms),
                "endsAt": None if firing or f.end_ms is None else _time(f.end_ms),
                "fingerprint": fp,
            }
        )
    return WebhookMessage.model_validate(
        {
            "groupKey": group_key,
            "status": "firing" if any_firing else "resolved",
            "receiver": RECEIVER,
            "groupLabels": dict(key),
            "alerts": alerts,
        }
    )
