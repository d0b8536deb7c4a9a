"""Which of an incident's firing services is the probable upstream cause. Pure.

``journeys.yaml`` may say which services each service calls (``topology``). Among the
services firing in an incident, the one the others depend on, directly or through others,
is the probable upstream cause: its failure explains theirs. The ranking, in order:

1. how many of the other firing services depend on it (more first);
2. when its alerts started, by Alertmanager's ``startsAt`` (earlier first; a missing, zero
   or future ``startsAt`` counts as when the receiver first saw the alert; in the counts
   ingest keeps, so does one that came more than 15 minutes after it once the episode was
   told — held back by a silence, an inhibition or a route, it is old news, not the first
   sign: ``ingest.lua`` LATE; ``rank`` reads alerts of an episode nobody was told of,
   ``explain``'s);
3. its worst firing severity (by ``scoring.severity_weights``), then its firing alert
   count (more first).

Names never decide: services equal on all of these are a tie, and a tie at the top means
the upstream service is not known (the cause ranking then does not name one as such).
Alerts with no service label (placed under "unknown") are not ranked: a placeholder is no
cause. A service's start is the earliest ``startsAt`` of its alerts since it last began
firing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from receiver.causes import span
from receiver.models import UNKNOWN_SERVICE
from receiver.store.records import IncidentState, StoredAlert

Calls = Mapping[str, Sequence[str]]


@dataclass(frozen=True, slots=True)
class ServiceSignal:
    """What the ranking reads of one firing service."""

    service: str
    started_ms: int
    severity: float
    alerts: int
    dependents: frozenset[str] = frozenset()

    @property
    def key(self) -> tuple[int, int, float, int]:
        return (-len(self.dependents), self.started_ms, -self.severity, -self.alerts)


@dataclass(frozen=True, slots=True)
class Ranking:
    """The firing services, most probably upstream first; ``tied`` when the first two
    cannot be told apart."""

    services: tuple[ServiceSignal, ...] = ()
    tied: bool = False
    # Services the firing ones call (journeys.yaml topology) that fire nothing themselves,
    # each with the firing services that call it: a change to one may be the cause though
    # it raised no alert.
    quiet_callees: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @property
    def upstream(self) -> ServiceSignal | None:
        return None if self.tied or not self.services else self.services[0]

    def evidence(self) -> list[str]:
        """Why the first service leads, in the words an on-call engineer reads."""
        if not self.services:
            return []
        top, rest = self.services[0], self.services[1:]
        if not rest:
            return [f"{top.service} is the only service firing in the incident"]
        if self.tied:
            # Sorted to read well; the names decided nothing.
            names = ", ".join(sorted(s.service for s in self.services if s.key == top.key))
            return [f"{names} depend on no other firing service, started together and fire "
                    "as badly: which one is upstream is not known"]  # fmt: skip
        if top.dependents:
            callers_ = ", ".join(sorted(top.dependents))
            return [f"{callers_} depend on {top.service} (journeys.yaml topology)"]
        runner = rest[0]
        if top.started_ms < runner.started_ms:
            gap = span(runner.started_ms - top.started_ms)
            return [f"{top.service}'s alerts started first, {gap} before {runner.service}'s"]
        if top.severity > runner.severity:
            return [f"{top.service} fires with the worst severity"]
        return [f"{top.service} fires the most alerts ({top.alerts})"]


def rank(
    alerts: Iterable[StoredAlert],
    calls: Calls,
    severity_weights: Mapping[str, float],
    default_severity: float,
    now_ms: int,
) -> Ranking:
    """Rank the services of the firing ``alerts`` (see the module docstring)."""
    started: dict[str, int] = {}
    severity: dict[str, float] = {}
    counts: dict[str, int] = {}
    for alert in alerts:
        if alert.status != "firing" or alert.service == UNKNOWN_SERVICE:
            continue
        at = alert.starts_at
        # Alertmanager's time, unless it is missing, zero or ahead of us.
        when = at if at is not None and 0 < at <= now_ms else alert.first_seen
        name = alert.service
        started[name] = min(started.get(name, when), when)
        weight = severity_weights.get(alert.severity, default_severity)
        severity[name] = max(severity.get(name, weight), weight)
        counts[name] = counts.get(name, 0) + 1
    return _order(started, severity, counts, calls)


def rank_state(
    state: IncidentState,
    calls: Calls,
    severity_weights: Mapping[str, float],
    default_severity: float,
) -> Ranking:
    """The same ranking from the counts ingest keeps on the incident: no alert is read, so
    it costs the same for 5 alerts or 50,000."""
    counts = {
        name: n for name, n in state.firing_services.items() if n > 0 and name != UNKNOWN_SERVICE
    }
    severity: dict[str, float] = {}
    for key, n in state.firing_severities.items():
        name, _, level = key.rpartition("|")
        if n > 0 and name in counts:
            weight = severity_weights.get(level, default_severity)
            severity[name] = max(severity.get(name, weight), weight)
    started = {
        name: state.service_starts.get(name, state.services.get(name, state.first_firing_at))
        for name in counts
    }
    return _order(started, severity, counts, calls)


def _order(
    started: Mapping[str, int],
    severity: Mapping[str, float],
    counts: Mapping[str, int],
    calls: Calls,
) -> Ranking:
    firing = set(counts)
    signals = sorted(
        (
            ServiceSignal(
                service=name,
                started_ms=started[name],
                severity=severity.get(name, 0.0),
                alerts=counts[name],
                dependents=frozenset(callers(name, calls) & firing),
            )
            # In name order first only so that equals are listed the same way every time:
            # a tie at the top is reported as one, never settled by this order.
            for name in sorted(firing)
        ),
        key=lambda s: s.key,
    )
    tied = len(signals) > 1 and signals[0].key == signals[1].key
    quiet: dict[str, set[str]] = {}
    for caller in firing:
        for callee in calls.get(caller, ()):
            if callee not in firing:
                quiet.setdefault(callee, set()).add(caller)
    return Ranking(tuple(signals), tied, {k: frozenset(v) for k, v in quiet.items()})


def callers(service: str, calls: Calls) -> set[str]:
    """Every service that calls ``service``, directly or through others."""
    called_by: dict[str, set[str]] = {}
    for caller, callees in calls.items():
        for callee in callees:
            called_by.setdefault(callee, set()).add(caller)
    found: set[str] = set()
    todo = [service]
    while todo:
        for caller in called_by.get(todo.pop(), ()):
            if caller not in found and caller != service:
                found.add(caller)
                todo.append(caller)
    return found


def cycle(calls: Calls) -> list[str] | None:
    """A cycle of calls (``a → b → a`` as [a, b, a]), or None; self-calls included."""
    state: dict[str, int] = {}  # 1 on the path being walked, 2 done

    def walk(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in calls.get(node, ()):
            if state.get(nxt) == 1:  # on the path walked: back to where the cycle starts
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := walk(nxt, [*path, nxt])):
                return found
        state[node] = 2
        return None

    for start in calls:
        if start not in state and (found := walk(start, [start])):
            return found
    return None
