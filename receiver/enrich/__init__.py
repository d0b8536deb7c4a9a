"""Context for an incident once group_wait is over: journey KPIs and recent changes.

Every source here degrades instead of failing: a Prometheus or a feed that is down, slow
or answering nonsense becomes a "context unavailable: <reason>" note on the incident, and
the incident goes out on time without that context. ``EnrichmentError`` never leaves this
package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from receiver.errors import ReceiverError


class EnrichmentError(ReceiverError):
    """A context source failed; it is turned into a note, never raised further."""


@dataclass(frozen=True, slots=True)
class KpiValue:
    """One journey KPI now and at its baseline (the same time ``baseline_offset`` ago).

    ``deviation_pct`` is signed percent (-60.0 = sixty percent below the baseline); ``bad``
    is true when it moved in the ``bad_when`` direction. ``value``/``baseline`` are None
    when Prometheus returned no sample; then deviation_pct and bad are None/False too.
    """

    name: str
    value: float | None
    baseline: float | None
    deviation_pct: float | None
    unit: str
    bad_when: Literal["down", "up"]
    bad: bool
    revenue_at_risk_per_min: float | None = None
    query: str = ""
    at_start: float | None = None  # when the incident started (None: not asked, no sample)


@dataclass(frozen=True, slots=True)
class KpiReport:
    kpis: tuple[KpiValue, ...] = ()
    notes: tuple[str, ...] = ()
    unavailable: tuple[str, ...] = ()
    """KPIs Prometheus did not answer for (an error, no answer in time): unknown now,
    which is not the same as no data."""


@dataclass(frozen=True, slots=True)
class ChangeMatch:
    """A change event near the incident: ``minutes_before`` is negative when it came after
    the incident started; ``overlap`` names the incident's services it touched."""

    id: str
    type: str
    service: str
    at_ms: int
    minutes_before: float
    overlap: bool
    summary: str
    version: str | None = None
    url: str | None = None
    source: str = "api"


@dataclass(frozen=True, slots=True)
class Cause:
    """A ranked probable cause with the evidence for it, highest ``score`` first."""

    kind: Literal["change", "service"]
    text: str
    score: float
    evidence: tuple[str, ...] = field(default_factory=tuple)
    change_id: str | None = None  # the change a "change" cause is (its ChangeMatch.id)
    change_source: str | None = None  # and its source: ids are unique within one source only


@dataclass(frozen=True, slots=True)
class ChangeReport:
    changes: tuple[ChangeMatch, ...] = ()
    causes: tuple[Cause, ...] = ()
    notes: tuple[str, ...] = ()
