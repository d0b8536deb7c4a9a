"""The incident as people and sinks see it: title, summary, members, timeline. Pure.

Built from the stored state on every read and every notification, so a wording change
applies to old incidents too. Wording is deterministic: tests assert on it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from receiver.actions import shown_by_id, suggest
from receiver.alertmanager.links import alerts_link, silence_link
from receiver.causes import CAUSE_CONFIDENCE, change_of, leading, span
from receiver.config import Automation, Journey
from receiver.scoring import Impact, badness
from receiver.store.records import (
    AlertPage,
    CauseRecord,
    ChangeRecord,
    IncidentState,
    KpiRecord,
    ResponseRecord,
    StoredAlert,
    ToldEpisode,
)

TITLE_MAX = 120
_WHERE_MAX = 40
UNKNOWN_CAUSE = "cause unknown"
_QUIET_ENVS = frozenset({"prod", "production"})


class Incident(BaseModel):
    """The incident object of SPEC ("Incident object"), ready to serialise."""

    model_config = ConfigDict(frozen=True)

    id: str
    key: str
    journey: str
    journey_name: str
    stages: list[str]
    status: str
    priority: str
    score: float
    score_breakdown: list[dict[str, Any]]
    title: str
    summary: str
    group_labels: dict[str, str]
    services: list[str]
    regions: list[str]
    alerts: list[dict[str, Any]]
    alerts_omitted: int
    alert_count: int
    firing_count: int
    kpis: list[dict[str, Any]]
    changes: list[dict[str, Any]]
    probable_causes: list[dict[str, Any]]
    runbooks: list[dict[str, str]]
    suggested_actions: list[dict[str, Any]]
    automation: Automation
    actions_run: list[dict[str, Any]]
    owner: dict[str, Any]
    timeline: list[dict[str, str]]
    timeline_omitted: int
    sinks: dict[str, dict[str, str]]
    context_notes: list[str]
    blips: int
    truncated_alerts: int
    alerts_dropped: int = 0
    """Resolved alerts let go, oldest first, once the incident held more than
    ``store.max_alerts_per_incident``: ``alert_count`` still counts them (every alert the
    incident took), ``alerts`` and ``alerts_omitted`` only those it holds."""
    created_at: str
    started_at: str
    notified_at: str | None
    updated_at: str
    resolved_at: str | None
    reopened_count: int
    feedback: list[dict[str, Any]]
    response: dict[str, Any] | None
    mtta_s: float | None
    mttr_s: float | None
    silences: list[dict[str, Any]]
    links: dict[str, str]
    similar: list[dict[str, Any]]
    alerts_cap: int | None = Field(default=None, exclude=True)
    """``store.max_alerts_per_incident`` when this was built, for the page's words about
    ``alerts_dropped``; not part of the API's incident."""
    shown_values: dict[str, str] = Field(default_factory=dict, exclude=True)
    """What each suggested action's Run button and confirmation carry of it, by id
    (``receiver.actions.shown``); not part of the API's incident."""

    @property
    def sink_actions(self) -> list[dict[str, Any]]:
        """The suggested actions the sinks show: none at ``observe``, where they stay on
        the incident (API, page) for review."""
        return self.suggested_actions if self.automation != "observe" else []


def response_times(state: IncidentState) -> tuple[float | None, float | None]:
    """(MTTA, MTTR) of the incident's latest episode people were told of, in seconds: from
    its notification to the first acknowledgement, and from its start (Alertmanager's
    startsAt) to the first resolve, by a person or by its last alert resolving (not
    counting ``resolve_after``, the quiet time the receiver waits out); None until there
    is one. A later episode nobody was told of (a blip) does not count."""
    told = told_before(state)
    if told is not None:
        ended = told.last_change_at or told.resolved_at or 0
        return _times(told.response, told.notified_at, ended, told.started)
    end = (state.last_change_at or state.resolved_at or 0) if state.status == "resolved" else None
    return _times(state.response, state.notified_at, end, state.started)


def counted_response(state: IncidentState) -> ResponseRecord | None:
    """What people did in the episode ``response_times`` counts."""
    told = told_before(state)
    return told.response if told is not None else state.response


def told_before(state: IncidentState) -> ToldEpisode | None:
    """The last episode people were told of, when the latest one is not (yet) told."""
    told_now = state.notified_at is not None and state.notified_at >= state.first_firing_at
    return None if told_now else state.told


def _times(
    response: ResponseRecord | None, notified_at: int | None, resolved: int | None, started: int
) -> tuple[float | None, float | None]:
    acked = response.acknowledged_at if response else None
    mtta = (
        max(0.0, (acked - notified_at) / 1000)
        if acked is not None and notified_at is not None
        else None
    )
    ends = [response.resolved_at] if response and response.resolved_at else []
    if resolved is not None:
        ends.append(resolved)
    mttr = max(0.0, (min(ends) - started) / 1000) if ends else None
    return mtta, mttr


def rfc3339(ms: int | None) -> str | None:
    if ms is None:
        return None
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def location(group_labels: dict[str, str]) -> str:
    """``eu`` for {env: prod, region: eu}: production is the normal case, so it is not
    spelled out; any other group label value is."""
    parts = [
        v for k, v in group_labels.items() if v and not (k == "env" and v.lower() in _QUIET_ENVS)
    ]
    return "/".join(parts)


def listing(names: list[str], limit: int = 3) -> str:
    """``a, b, c +2 more``: the first ``limit`` names and how many more there are."""
    shown = ", ".join(names[:limit])
    return shown + (f" +{len(names) - limit} more" if len(names) > limit else "")


def _signed(pct: float) -> str:
    text = f"{pct:+.0f}%"
    return text.replace("-", "\u2212")  # a real minus sign reads better in a chart


def worst_kpi(state: IncidentState) -> KpiRecord | None:
    bad = [k for k in state.kpis if k.bad and (k.deviation_pct is not None or k.value is not None)]
    return max(bad, key=lambda k: (badness(k), k.name)) if bad else None


def kpi_moved(kpi: KpiRecord) -> str | None:
    """How far it moved: ``−61%``; ``0 → 30`` from a baseline of zero, where no percentage
    is; None when it was not measured against a baseline."""
    if kpi.deviation_pct is not None:
        return _signed(kpi.deviation_pct)
    if kpi.value is None or kpi.baseline is None:
        return None
    return f"{number(kpi.baseline)} \u2192 {number(kpi.value)}"


def top_change(state: IncidentState) -> ChangeRecord | None:
    """The change behind the leading cause, when that cause is a trusted change."""
    cause = leading(state)
    return None if cause is None else change_of(state, cause)


def _change_phrase(change: ChangeRecord, with_version: bool = True) -> str:
    what = f"{change.type} {change.version}" if change.version and with_version else change.type
    return f"{what} to {change.service} {span(change.minutes_before * 60_000)} before"


def kpi_line(kpi: KpiRecord) -> str | None:
    """``conversion −61% vs last week (now 0.12, at the start 0.2, then 0.31 ratio); 1,200/min
    of revenue at risk``, or None for a KPI without a deviation. "At the start" is there
    when the incident started a minute or more before the KPIs were read."""
    moved = kpi_moved(kpi) if kpi.deviation_pct is not None or kpi.bad else None
    if moved is None:
        return None
    start = f", at the start {number(kpi.at_start)}" if kpi.at_start is not None else ""
    line = (
        f"{kpi.name} {moved} vs {kpi.vs or 'baseline'} "
        f"(now {number(kpi.value)}{start}, then {number(kpi.baseline)} {kpi.unit})".rstrip()
    )
    if kpi.revenue_at_risk_per_min:
        line += f"; {kpi.revenue_at_risk_per_min:,.0f}/min of revenue at risk"
    return line


def alerts_text(n: int) -> str:
    """ "1 alert", "12 alerts"."""
    return f"{n} alert" if n == 1 else f"{n} alerts"


def title(state: IncidentState, impact: Impact) -> str:
    """What, where, how bad, what changed: "checkout/eu P1 — 12 alerts in payment-service,
    cart; conversion −61% vs last week; deploy 2026.04.18-3 to payment-service 2 min
    before". While the incident gathers its alerts (group_wait) it says so instead. When
    that is longer than TITLE_MAX it gives up detail in a fixed order (fewer
    service names, none when the change names one, the change's version, the change)
    rather than cutting words."""
    # Group label values are alert text of any length: never so long that the priority
    # and what fails are cut out of the title.
    where = clip_words(location(state.group_labels), _WHERE_MAX)
    head = f"{state.journey}/{where}" if where else state.journey
    head += f" {impact.priority} — "
    if state.pending is not None and state.status == "open":
        # Nothing was decided or sent yet, and the context comes after group_wait: a title
        # that looked final would be read as the verdict.
        return f"{head}{alerts_text(state.alert_count)}, gathering until group_wait ends"
    if state.status == "resolved":
        services = state.services_busiest_first()
        what = f"resolved: {alerts_text(state.alert_count)} in "
    elif state.firing_count == 0:
        # Everything resolved, waiting out resolve_after: led by what was failing most.
        services = state.services_busiest_first()
        what = f"resolving: {alerts_text(state.alert_count)} in "
    else:
        # The busiest first: what is failing most is what the reader needs first.
        services = sorted(state.firing_services, key=lambda s: (-state.firing_services[s], s))
        what = f"{alerts_text(state.firing_count)} in "
    kpi = worst_kpi(state)
    moved = kpi_moved(kpi) if kpi is not None else None
    kpi_part = [f"{kpi.name} {moved} vs {kpi.vs or 'baseline'}"] if kpi and moved else []
    change = top_change(state)
    if change is not None:
        full = [_change_phrase(change)]
        short = [_change_phrase(change, with_version=False)]
    else:
        # Context is in and its best candidate is a guess: say so rather than guess.
        unknown = state.probable_causes and leading(state) is None
        full = short = [UNKNOWN_CAUSE] if unknown else []
    candidates = []
    for limit, change_parts in (
        (3, full),
        (1, full),
        (0, full),  # the change names its service
        (1, short),
        (1, []),
    ):
        first = head + (what + listing(services, limit) if limit else what[: -len(" in ")])
        candidates.append("; ".join([first, *kpi_part, *change_parts]))
    for text in candidates:
        if len(text) <= TITLE_MAX:
            return text
    return candidates[-1][: TITLE_MAX - 1] + "…"


def number(value: float | None, unit: str = "") -> str:
    """A measured value for people: 4 significant digits and its unit, or "no data"."""
    return "no data" if value is None else f"{value:.4g} {unit}".strip()


# How much of the alerts' own words the chart quotes: the top alertnames with their counts
# and the first distinct firing summaries, each cut short.
_NAMES_SHOWN = 3
_SUMMARIES_SHOWN = 3
_SUMMARY_CHARS = 120
# A cause that names every one of many tied services must not push the owner out of a
# sink's summary (Slack shows 2,000 characters of it).
_CAUSE_CHARS = 300
_TIERS_SHOWN = 6
_TIER_CHARS = 40


def what_broke(alerts: Sequence[StoredAlert]) -> str:
    """``5× PaymentGatewayErrors, 2× CartApiErrors +1 more — "Card declines at 40%"``: the
    firing alerts' names by count (most first, then first seen) and their summaries.
    Alert text is untrusted: folded onto one line here, escaped by every renderer."""
    firing = [a for a in alerts if a.status == "firing"]
    counts = Counter(a.labels.get("alertname") or "unnamed" for a in firing)
    # Counter keeps first-seen order: equal counts read in the order the alerts came.
    names = sorted(counts, key=lambda n: -counts[n])
    text = listing([f"{counts[n]}× {n}" for n in names], _NAMES_SHOWN)
    said: list[str] = []
    for a in firing:
        words = " ".join(a.annotations.get("summary", "").split())
        if words and words not in said:
            said.append(words)
    quoted = [f'"{clip_words(w, _SUMMARY_CHARS)}"' for w in said[:_SUMMARIES_SHOWN]]
    if len(said) > _SUMMARIES_SHOWN:
        quoted.append(f"+{len(said) - _SUMMARIES_SHOWN} more")
    return text + (" — " + "; ".join(quoted) if quoted else "")


def clip_words(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def summary(
    state: IncidentState,
    journey: Journey,
    impact: Impact,
    alerts: Sequence[StoredAlert] = (),
    tier_label: str = "tier",
) -> str:
    """The chart in words, the same in every sink: what broke, for whom, since when, how
    bad, what changed, who owns it (``alerts``: the incident's, firing first)."""
    where = ", ".join(f"{k} {v}" for k, v in state.group_labels.items() if v) or "all locations"
    lines = [
        f"{journey.name} ({state.journey}) in {where}, since {rfc3339(state.started)}: "
        f"{state.firing_count} of {state.alert_count} alert(s) firing across "
        f"{listing(state.shown_services, 6)}."
    ]
    read = sum(a.status == "firing" for a in alerts)
    if state.firing_count and read:
        # A storm larger than the alerts read: the counts are of those read, and say so.
        among = (
            f" (the latest {read} of {state.firing_count} firing)"
            if read < state.firing_count
            else ""
        )
        lines.append(f"What broke{among}: {what_broke(alerts)}.")
    stages = state.shown_stages
    whom = [f"stages {', '.join(stages)}" if stages else "no stage matched"]
    tiers = sorted({t for a in alerts if a.status == "firing" and (t := a.labels.get(tier_label))})
    if tiers:
        # Label values: a tier label that carries customer ids instead of tiers would
        # otherwise list thousands of them ahead of how bad it is and who owns it.
        shown = [clip_words(" ".join(t.split()), _TIER_CHARS) for t in tiers]
        whom.append(f"customer {tier_label} {listing(shown, _TIERS_SHOWN)}")
    lines.append(f"For whom: {'; '.join(whom)}.")
    severity = next((f.reason for f in impact.factors if f.name == "severity"), None)
    bad = [severity] if severity and state.firing_count else []
    bad += [line for kpi in state.kpis if (line := kpi_line(kpi))]
    bad.append(f"impact score {impact.score:g}/100 → {impact.priority}")
    lines.append(f"How bad: {'; '.join(bad)}.")
    cause = leading(state)
    if cause is not None:
        label = "What changed" if cause.kind == "change" else "Probable cause"
        evidence = f" ({clip_words(cause.evidence[0], _CAUSE_CHARS)})." if cause.evidence else "."
        lines.append(f"{label}: {clip_words(cause.text, _CAUSE_CHARS)}{evidence}")
    elif state.probable_causes:
        lines.append(f"{guessed(state.probable_causes[0])}.")
    lines.append(f"Owner: {journey.owner.team}.")
    lines.extend(f"({note})" for note in state.context_notes)
    if state.status == "resolved":
        lines.append(f"Resolved at {rfc3339(state.resolved_at)}.")
    return " ".join(lines)


def guessed(guess: CauseRecord) -> str:
    """The best candidate below the confidence, said to be a guess: the summary's words,
    and the board's."""
    return (
        f"Cause unknown: the best candidate, {clip_words(guess.text, _CAUSE_CHARS)}, "
        f"scores {guess.score:g}, below "
        f"the confidence of {CAUSE_CONFIDENCE:g}"
    )


def _alert_json(a: StoredAlert, suppressed: Mapping[str, str]) -> dict[str, Any]:
    return {
        "suppressed": suppressed.get(a.fp) or None,
        "fingerprint": a.fp,
        "status": a.status,
        "labels": a.labels,
        "annotations": a.annotations,
        "startsAt": rfc3339(a.starts_at),
        "endsAt": rfc3339(a.ends_at),
        "generatorURL": a.generator_url,
        "stage": a.stage,
        "service": a.service,
        "severity": a.severity,
    }


def _runbooks(journey: Journey, alerts: list[StoredAlert]) -> list[dict[str, str]]:
    live = [a for a in alerts if a.status == "firing"] or alerts
    return [
        {"title": rb.title, "url": rb.url}
        for rb in journey.runbooks
        if not rb.match or any(all(m.matches(a.labels) for m in rb.match) for a in live)
    ]


def _without_blips(state: IncidentState, page: AlertPage) -> AlertPage:
    """``page`` without the alerts of the episode that fired and resolved before its first
    notification (blips: never told), once that went out."""
    told = state.notified_at
    if told is None or told < state.first_firing_at:
        return page
    kept = [
        a
        for a in page.alerts
        if not (a.status == "resolved" and state.first_firing_at <= a.changed_at < told)
    ]
    if len(kept) == len(page.alerts):
        return page
    gone = len(page.alerts) - len(kept)
    return page.model_copy(update={"alerts": kept, "total": page.total - gone})


def build(
    state: IncidentState,
    page: AlertPage,
    journey: Journey,
    impact: Impact,
    tier_label: str = "tier",
    alertmanager_url: str | None = None,
    alerts_cap: int | None = None,
) -> Incident:
    owner = journey.owner
    mtta, mttr = response_times(state)
    page = _without_blips(state, page)
    return Incident(
        id=state.id,
        key=state.key,
        journey=state.journey,
        journey_name=journey.name,
        stages=state.shown_stages,
        status=state.status,
        priority=impact.priority,
        score=impact.score,
        score_breakdown=[f.model_dump() for f in impact.factors],
        title=title(state, impact),
        summary=summary(state, journey, impact, page.alerts, tier_label),
        group_labels=state.group_labels,
        services=state.shown_services,
        regions=sorted(state.regions),
        alerts=[_alert_json(a, state.suppressed) for a in page.alerts],
        alerts_omitted=page.total - len(page.alerts),
        alert_count=state.alert_count,
        firing_count=state.firing_count,
        kpis=[k.model_dump() for k in state.kpis],
        changes=[{**c.model_dump(exclude={"at"}), "at": rfc3339(c.at)} for c in state.changes],
        probable_causes=[c.model_dump() for c in state.probable_causes],
        runbooks=_runbooks(journey, page.alerts),
        suggested_actions=suggest(journey, state, impact.priority),
        shown_values=shown_by_id(journey, state, impact.priority),
        automation=journey.automation,
        actions_run=_runs_json(state),
        owner={
            "team": owner.team,
            "routing": {
                "slack_channel": owner.slack_channel,
                "jira_project": owner.jira_project,
                "pagerduty": "journey" if owner.pagerduty_routing_key else "default",
            },
        },
        timeline=[
            {"time": rfc3339(e.at) or "", "kind": e.kind, "text": e.text} for e in state.timeline
        ],
        timeline_omitted=state.timeline_dropped,
        sinks=state.sinks,
        context_notes=list(state.context_notes),
        blips=state.blips,
        truncated_alerts=state.truncated_alerts,
        alerts_dropped=state.alerts_dropped,
        created_at=rfc3339(state.created_at) or "",
        started_at=rfc3339(state.started) or "",
        notified_at=rfc3339(state.notified_at),
        updated_at=rfc3339(state.changed_at) or "",
        resolved_at=rfc3339(state.resolved_at),
        reopened_count=state.reopened_count,
        feedback=[{**f.model_dump(exclude_none=True), "at": rfc3339(f.at)} for f in state.feedback],
        response=_response_json(state),
        mtta_s=mtta,
        mttr_s=mttr,
        silences=[
            {
                **s.model_dump(),
                "at": rfc3339(s.at),
                "ends_at": rfc3339(s.ends_at),
                # Ended in Alertmanager before ``ends_at`` (expired or deleted there, or
                # lost), as a reconcile found: None while it holds, or once it ended on time.
                "expired_at": rfc3339(state.silences_ended.get(s.id)),
                **({"url": silence_link(alertmanager_url, s.id)} if alertmanager_url else {}),
            }
            for s in state.silences
        ],
        similar=[{**s.model_dump(), "created_at": rfc3339(s.created_at)} for s in state.similar],
        links=(
            {"alertmanager": alerts_link(alertmanager_url, state.group_labels)}
            if alertmanager_url
            else {}
        ),
        alerts_cap=alerts_cap,
    )


def _runs_json(state: IncidentState) -> list[dict[str, Any]]:
    """``actions_run``, oldest first; the last run of an action carries its ``outcome``
    once the watch after it ended."""
    last_ran = {r.action: i for i, r in enumerate(state.actions_run) if r.status == "ran"}
    runs = []
    for i, r in enumerate(state.actions_run):
        run: dict[str, Any] = {
            **r.model_dump(exclude={"firing", "kpi_off"}),
            "at": rfc3339(r.at),
        }
        told = state.action_outcomes.get(r.action)
        if told is not None and last_ran.get(r.action) == i:
            run["outcome"] = {**told.model_dump(), "at": rfc3339(told.at)}
        runs.append(run)
    return runs


def _response_json(state: IncidentState) -> dict[str, Any] | None:
    if state.response is None:
        return None
    r = state.response
    return {
        **r.model_dump(),
        "acknowledged_at": rfc3339(r.acknowledged_at),
        "lapsed_at": rfc3339(r.lapsed_at),
        "reacknowledged_at": rfc3339(r.reacknowledged_at),
        "resolved_at": rfc3339(r.resolved_at),
    }


def latest_verdicts(said: Iterable[tuple[str | None, object]]) -> dict[str | None, bool]:
    """Each voice's latest "useful" verdict from ``(by, useful)`` in the order received,
    the voice that changed its mind last coming last.

    The one rule the Slack message, the figures and the store's cap (annotate.lua) share:
    a person's later verdict replaces their earlier one; records with no ``by`` are one
    voice, the API's; a record whose ``useful`` is not a boolean (only a wrong cause, or
    what fixed it, said in Slack) is no verdict. A verdict given beside a wrong cause or a
    fix (the incident page's form) is one.
    """
    latest: dict[str | None, bool] = {}
    for by, useful in said:
        if isinstance(useful, bool):
            latest.pop(by, None)
            latest[by] = useful
    return latest
