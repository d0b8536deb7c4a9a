"""What a replay found, per journey and priority, and how two journey files differ.

- ``incidents``: incident episodes people were told of — an open, or a reopen after a
  resolve (PagerDuty opens a new incident for a trigger after a resolve, so a reopen counts
  again). An incident that only ever held blips is never told, so never counted.
- ``pages``: the episodes a notification of which went to ``pagerduty`` (at the open, or
  later when a raise routed it there); every episode when ``routing`` has no ``pagerduty``.
- ``by_priority``: episodes by the highest priority they were notified at.
- ``alerts``: alert firings (one alert firing twice counts twice), by the journey its
  labels match; ``blips``: alerts that came and went within group_wait (the incidents').
- ``alerts_per_page``: the journey's alerts over its pages (null without a page).
- ``alertmanager_groups``: Alertmanager aggregation groups (one lifetime each) that
  notified: what Alertmanager alone would have sent as separate pages. A journey counts
  each group holding one of its alerts, so the journeys' figures may add up to more.
- ``context`` (``replay --context`` only): the episodes told while a KPI of theirs was off
  its baseline in the bad direction, per KPI (``journey/kpi``), and the context notes
  their notifications carried (``context unavailable: ...``), each with how many episodes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from receiver.incident import rfc3339
from receiver.lifecycle import PRIORITIES
from receiver.replay.batches import Plan
from receiver.replay.drive import Replayed
from receiver.replay.history import Firing
from receiver.settings import Settings
from receiver.terminal import shown

PAGE_SINK = "pagerduty"


@dataclass
class Episode:
    incident: str
    journey: str
    priority: str
    paged: bool
    bad_kpis: set[str] = field(default_factory=set)
    notes: set[str] = field(default_factory=set)


@dataclass
class JourneyFigures:
    incidents: int = 0
    pages: int = 0
    alerts: int = 0
    blips: int = 0
    alertmanager_groups: int = 0
    by_priority: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PRIORITIES, 0))

    def as_json(self) -> dict[str, Any]:
        return {
            "incidents": self.incidents,
            "pages": self.pages,
            "alerts": self.alerts,
            "blips": self.blips,
            "by_priority": dict(self.by_priority),
            "alerts_per_page": round(self.alerts / self.pages, 2) if self.pages else None,
            "alertmanager_groups": self.alertmanager_groups,
        }


@dataclass(frozen=True, slots=True)
class Told:
    """An incident as told, for matching across two replays: same alerts, same start."""

    journey: str
    key: str
    priority: str
    alerts: int


@dataclass
class ContextFigures:
    """What ``--context`` read: episodes told with a KPI gone bad, and notes."""

    told_with_bad_kpi: int = 0
    bad_kpis: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        return {
            "told_with_bad_kpi": self.told_with_bad_kpi,
            "bad_kpis": dict(sorted(self.bad_kpis.items())),
            "notes": dict(self.notes.most_common()),
        }


@dataclass
class Report:
    since_ms: int
    until_ms: int
    alerts: int
    alertmanager_notifications: int
    alertmanager_groups: int
    journeys: dict[str, JourneyFigures]
    alert_journeys: dict[str, str]
    told: dict[tuple[frozenset[str], int], Told]
    flush_errors: int = 0
    context: ContextFigures | None = None

    @property
    def incidents(self) -> int:
        return sum(j.incidents for j in self.journeys.values())

    @property
    def pages(self) -> int:
        return sum(j.pages for j in self.journeys.values())

    @property
    def blips(self) -> int:
        return sum(j.blips for j in self.journeys.values())

    def as_json(self) -> dict[str, Any]:
        """SPEC "More CLI" ``replay --json``; added: ``alertmanager_notifications``, and per
        journey ``alerts_per_page`` and ``alertmanager_groups``."""
        return {
            "window": {"since": rfc3339(self.since_ms), "until": rfc3339(self.until_ms)},
            "alerts": self.alerts,
            "incidents": self.incidents,
            "pages": self.pages,
            "blips": self.blips,
            "alertmanager_groups": self.alertmanager_groups,
            "alertmanager_notifications": self.alertmanager_notifications,
            "journeys": {jid: figures.as_json() for jid, figures in self.journeys.items()},
        } | ({"context": self.context.as_json()} if self.context is not None else {})


def _higher(a: str, b: str) -> str:
    return min(a, b, key=PRIORITIES.index)


def summarize(
    settings: Settings,
    firings: list[Firing],
    plan: Plan,
    replayed: Replayed,
    since_ms: int,
    until_ms: int,
) -> Report:
    journeys = {j.id: JourneyFigures() for j in settings.catalog.journeys}
    alert_journeys: dict[str, str] = {}
    for f in firings:
        jid = settings.catalog.match(f.labels)[0].id
        alert_journeys[f.fingerprint] = jid
        journeys.setdefault(jid, JourneyFigures()).alerts += 1
    for members in plan.groups:
        for jid in {alert_journeys[fp] for fp in members if fp in alert_journeys}:
            journeys[jid].alertmanager_groups += 1

    pages_need_pd = PAGE_SINK in settings.routing
    current: dict[str, Episode] = {}
    episodes: list[Episode] = []
    highest: dict[str, str] = {}
    for sent in replayed.sent:
        paged = PAGE_SINK in sent.sinks if pages_need_pd else True
        episode = current.get(sent.incident)
        if sent.kind in ("open", "reopen") or episode is None:
            episode = Episode(sent.incident, sent.journey, sent.priority, paged)
            current[sent.incident] = episode
            episodes.append(episode)
        elif sent.kind != "resolve":
            episode.priority = _higher(episode.priority, sent.priority)
            episode.paged |= paged
        highest[sent.incident] = _higher(highest.get(sent.incident, "P5"), episode.priority)
        episode.bad_kpis.update(sent.bad_kpis)
        episode.notes.update(sent.notes)
    context = ContextFigures() if replayed.context else None
    for episode in episodes:
        figures = journeys.setdefault(episode.journey, JourneyFigures())
        figures.incidents += 1
        figures.pages += episode.paged
        figures.by_priority[episode.priority] += 1
        if context is not None:
            context.told_with_bad_kpi += bool(episode.bad_kpis)
            context.bad_kpis.update(f"{episode.journey}/{name}" for name in episode.bad_kpis)
            context.notes.update(episode.notes)

    told: dict[tuple[frozenset[str], int], Told] = {}
    for state in replayed.incidents:
        journeys.setdefault(state.journey, JourneyFigures()).blips += state.blips
        if state.id in highest:
            fps = replayed.alerts.get(state.id, frozenset())
            told[(fps, state.started)] = Told(state.journey, state.key, highest[state.id], len(fps))
    return Report(
        since_ms=since_ms,
        until_ms=until_ms,
        alerts=len(firings),
        alertmanager_notifications=len(plan.notifications),
        alertmanager_groups=len(plan.groups),
        journeys=journeys,
        alert_journeys=alert_journeys,
        told=told,
        flush_errors=replayed.flush_errors,
        context=context,
    )


@dataclass
class Diff:
    """NEW minus OLD per journey, alerts that changed journey, and incidents with the same
    alerts and start told at another priority."""

    journeys: dict[str, dict[str, int]]
    moved: list[tuple[str, str, int]]
    reprioritised: list[tuple[Told, str]]

    def as_json(self) -> dict[str, Any]:
        return {
            "diff": self.journeys,
            "moved": [{"from": a, "to": b, "alerts": n} for a, b, n in self.moved],
            "reprioritised": [
                {
                    "journey": new.journey,
                    "key": new.key,
                    "alerts": new.alerts,
                    "from": old_priority,
                    "to": new.priority,
                }
                for new, old_priority in self.reprioritised
            ],
        }


def diff(new: Report, old: Report) -> Diff:
    ids = list(dict.fromkeys([*new.journeys, *old.journeys]))
    empty = JourneyFigures()
    by_journey = {
        jid: {
            "incidents": new.journeys.get(jid, empty).incidents
            - old.journeys.get(jid, empty).incidents,
            "pages": new.journeys.get(jid, empty).pages - old.journeys.get(jid, empty).pages,
        }
        for jid in ids
    }
    moved = Counter(
        (old.alert_journeys[fp], jid)
        for fp, jid in new.alert_journeys.items()
        if old.alert_journeys.get(fp, jid) != jid
    )
    reprioritised = [
        (told, old.told[key].priority)
        for key, told in new.told.items()
        if key in old.told and old.told[key].priority != told.priority
    ]
    reprioritised.sort(key=lambda item: (item[0].journey, item[0].key))
    return Diff(
        by_journey,
        sorted(((a, b, n) for (a, b), n in moved.items()), key=lambda m: (-m[2], m[0], m[1])),
        reprioritised,
    )


def as_text(report: Report, against: Diff | None = None, old_name: str = "") -> str:
    lines = [
        f"replay {rfc3339(report.since_ms)} → {rfc3339(report.until_ms)}: {report.alerts} "
        f"alert firings; Alertmanager would have sent {report.alertmanager_notifications} "
        f"notifications in {report.alertmanager_groups} groups",
        "",
    ]
    header = ["journey", "incidents", "pages", *PRIORITIES, "alerts", "alerts/page", "blips",
              "AM groups"]  # fmt: skip
    rows = [header]
    for jid, f in report.journeys.items():
        if not (f.alerts or f.incidents or f.blips):
            continue
        rows.append([jid, *_figures(f)])
    total = JourneyFigures(
        incidents=report.incidents,
        pages=report.pages,
        alerts=report.alerts,
        blips=report.blips,
        alertmanager_groups=report.alertmanager_groups,
        by_priority={
            p: sum(j.by_priority[p] for j in report.journeys.values()) for p in PRIORITIES
        },
    )
    rows.append(["total", *_figures(total)])
    lines += _table(rows)
    if report.flush_errors:
        lines.append(f"warning: {report.flush_errors} decision(s) failed; see the log above")
    if report.context is not None:
        lines += _context_lines(report.context, report.incidents)
    if against is not None:
        lines += ["", f"against {old_name or 'the old journeys'}:"]
        changed = [(jid, d) for jid, d in against.journeys.items() if any(d.values())]
        if changed:
            rows = [["journey", "incidents", "pages"]]
            rows += [[jid, f"{d['incidents']:+d}", f"{d['pages']:+d}"] for jid, d in changed]
            lines += _table(rows)
        else:
            lines.append("  no journey gains or loses incidents or pages")
        for src, dst, n in against.moved:
            lines.append(f"  {n} alert(s) moved from {src} to {dst}")
        for told, was in against.reprioritised:
            lines.append(
                f"  re-prioritised: {shown(told.key)} ({told.alerts} alerts) {was} → "
                f"{told.priority}"
            )
    return "\n".join(lines) + "\n"


_NOTES_SHOWN = 5


def _context_lines(context: ContextFigures, incidents: int) -> list[str]:
    bad = ", ".join(f"{name} ×{n}" for name, n in sorted(context.bad_kpis.items()))
    lines = [
        "",
        f"context: {context.told_with_bad_kpi} of {incidents} incidents told with a KPI off "
        f"its baseline" + (f" ({bad})" if bad else ""),
    ]
    for note, n in context.notes.most_common(_NOTES_SHOWN):
        lines.append(f"  {n}× {shown(note)}")
    if len(context.notes) > _NOTES_SHOWN:
        lines.append(f"  and {len(context.notes) - _NOTES_SHOWN} more note(s) (see --json)")
    return lines


def _figures(f: JourneyFigures) -> list[str]:
    per_page = f"{f.alerts / f.pages:.1f}" if f.pages else "-"
    return [str(f.incidents), str(f.pages), *(str(f.by_priority[p]) for p in PRIORITIES),
            str(f.alerts), per_page, str(f.blips), str(f.alertmanager_groups)]  # fmt: skip


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


__all__ = [
    "ContextFigures",
    "Diff",
    "Episode",
    "JourneyFigures",
    "Report",
    "Told",
    "as_text",
    "diff",
    "summarize",
]
