"""Reconcile: keeping open incidents true to what Alertmanager holds.

Every ``alertmanager.reconcile_interval``, one replica (the one holding that interval's
lease, taken by ``peer.Peer``) compares each open incident's alerts, and those of the
incidents resolved within ``reopen_window``, with every alert Alertmanager holds: a firing
one it no longer holds (silenced away and expired, deleted, Alertmanager's state lost) is
resolved, one it holds silenced or inhibited is marked so, and a resolved one it holds
again since (fired again with the startsAt of before, which a webhook alone cannot tell
from a late copy of an old notification) fires again. Each is said on the incident's
timeline, silences with who made them, until when and why (``GET /silences``, asked only
when an incident needs it). A silence made here (``silences.py``) that Alertmanager ended
before its end (a person expired or deleted it there, or Alertmanager lost it) is marked
ended on the incident, whose page and Slack message would show it in force otherwise.
The same comparison (``compare``), scoped to a group's labels, decides what a back-fill
changes; a back-fill leaves silences to reconcile.

An Alertmanager that started within ``alertmanager.restart_grace`` may not hold its
alerts again yet: the round is skipped rather than resolving what it has not heard of
(``held_unless_restarted``, which a back-fill asks too).

Resolving and firing again go through ``Pipeline.ingest`` with a copy of the alert, so
counts, blips, reopening and the lifecycle behave exactly as if Alertmanager had sent it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Literal

from receiver.alertmanager.client import (
    AlertmanagerClient,
    AlertmanagerError,
    AmAlert,
    AmSilence,
    Matcher,
)
from receiver.incident import rfc3339
from receiver.logtext import clip
from receiver.metrics import Metrics
from receiver.models import Alert, Batch
from receiver.pipeline import Pipeline
from receiver.settings import ms
from receiver.sinks.slack import edit_job
from receiver.store import GroupStore, IngestOutcome
from receiver.store.base import Annotation
from receiver.store.records import IncidentState, SilenceRecord, StoredAlert, TimelineEntry

logger = logging.getLogger("journey_receiver.peer")

ALERTS_COMPARED = 10_000
"""An incident's alerts compared per round (firing ones come first)."""
RESOLVED_COMPARED = 1_000
"""Incidents resolved within ``reopen_window`` looked at per round, however long ago they
opened: those resolved last."""
RECEIVERS = "alertmanager-receiver"
"""The store cache's namespace of the names of the receivers webhooks came from
(``peer.Peer.heard``): an alert fires again here only if Alertmanager routes it to one."""
CLOCKS_MS = 60_000
"""How far Alertmanager's clock may be from ours: a resolved alert fires again only when
Alertmanager updated it this long after we resolved it. Prometheus sends a firing alert
again every minute (``resend_delay``), so one that fires again passes it at the next round
or the one after; a peer that has not yet heard of the resolution does not."""
_NAMES_SHOWN = 3
_TEXT_SHOWN = 100
"""Characters of a silence's ``createdBy`` and ``comment`` (free text) on the timeline."""
_EXPIRED = "expired in Alertmanager before their end"
_LOST = "no longer kept by Alertmanager (deleted from its data, or lost in a restart without it)"


class Silences:
    """The silences Alertmanager keeps, asked at most once a round and only when an
    incident needs them: to say who silenced its alerts and until when, or whether the
    silences made here still hold."""

    def __init__(self, client: AlertmanagerClient) -> None:
        self._client = client
        self._asked = False
        self._by_id: dict[str, AmSilence] | None = None

    async def by_id(self) -> Mapping[str, AmSilence] | None:
        """Every silence by id, or None when no peer answered (said in the log once)."""
        if not self._asked:
            self._asked = True
            try:
                self._by_id = {s.id: s for s in await self._client.silences()}
            except AlertmanagerError as exc:
                logger.warning("alertmanager: reconcile: silences not compared: %s", exc)
        return self._by_id


async def reconcile(
    client: AlertmanagerClient,
    pipeline: Pipeline,
    store: GroupStore,
    metrics: Metrics,
    restart_grace_s: float,
) -> None:
    """Compare every open incident with firing alerts to what Alertmanager holds."""
    since = pipeline.now_ms()
    alerts = await held_unless_restarted(client, [], restart_grace_s, "reconcile skipped")
    if alerts is None:
        metrics.peer_reconciles_skipped.inc()
        return
    held = {a.fingerprint: a for a in alerts}
    metrics.peer_reconciles.inc()
    names = {name for alert in alerts for name in alert.receivers}
    ours = frozenset([name for name in names if await store.cache.get(RECEIVERS, name)])
    silences = Silences(client)
    window = ms(pipeline.settings.config.grouping.reopen_window)
    for state in [
        *await store.list_incidents("open", None, ALERTS_COMPARED),
        *await store.resolved_since(since - window, RESOLVED_COMPARED),
    ]:
        await compare(
            pipeline, store, metrics, state.id, held, {}, "reconcile", since, ours, silences
        )


async def held_unless_restarted(
    client: AlertmanagerClient, matchers: Sequence[Matcher], restart_grace_s: float, what: str
) -> list[AmAlert] | None:
    """The alerts Alertmanager holds matching every matcher, or None (logged with ``what``,
    the conclusion left out) when the peer that answered started within ``restart_grace``
    (by the wall clock, as Alertmanager's own ``uptime`` is): it may not hold its alerts
    again yet, so its answer cannot tell that an alert is gone."""
    if restart_grace_s <= 0:
        return await client.alerts(matchers)
    alerts, status = await client.held_with_status(matchers)
    started = _started(status)
    if started is None or (up := time.time() - started) >= restart_grace_s:
        return alerts
    logger.info(
        "alertmanager: %s: it started %.0f s ago, within the restart grace of %.0f s (it may "
        "not hold its alerts again yet)",
        what,
        up,
        restart_grace_s,
    )
    return None


async def compare(
    pipeline: Pipeline,
    store: GroupStore,
    metrics: Metrics,
    incident_id: str,
    held: Mapping[str, AmAlert],
    scope: Mapping[str, str],
    why: str,
    asked_ms: int,
    ours: frozenset[str],
    silences: Silences | None = None,
) -> None:
    """Resolve the incident's firing alerts within ``scope`` (labels they carry) that
    Alertmanager does not hold, mark the silenced or inhibited ones, and fire again the
    resolved ones it has held again since, active (not silenced or inhibited) and routed
    to a receiver of ``ours`` (those that send here). ``held`` was asked at ``asked_ms``:
    an alert that changed since (a webhook newer than the answer) is left for the next
    round. With ``silences``, the silences made here that Alertmanager ended before
    their end are marked so, and the timeline says who silenced an alert and until when."""
    stored = await store.load(incident_id)
    if stored is None:
        return
    page = await store.load_alerts(incident_id, ALERTS_COMPARED)
    compared = [
        a
        for a in page.alerts
        if a.changed_at < asked_ms and all(a.labels.get(k) == v for k, v in scope.items())
    ]
    firing = [a for a in compared if a.status == "firing"]
    now = pipeline.now_ms()
    gone = [a for a in firing if a.fp not in held]
    again = [
        a
        for a in compared
        if a.status == "resolved"
        and a.fp in held
        and _fires_here(held[a.fp], ours)
        and ms(held[a.fp].updated_at.timestamp()) > a.changed_at + CLOCKS_MS
    ]
    entries = []
    if gone:
        # Counted and said by what changed: a back-fill or another replica comparing at the
        # same moment may have resolved them first.
        outcomes = await _ingest(pipeline, [_resolved(a, now) for a in gone])
        changed = sum(o.changed for o in outcomes)
        if changed:
            metrics.peer_alerts.labels("resolved").inc(changed)
            done = "" if changed == len(gone) else f" ({changed}; the others already were)"
            entries.append(
                f"{why}: Alertmanager no longer holds {alert_names(gone)}: resolved here{done}"
            )
    if again:
        outcomes = await _ingest(pipeline, [_firing_again(a, held[a.fp]) for a in again])
        changed = sum(o.changed for o in outcomes)
        if changed:
            metrics.peer_alerts.labels("fired_again").inc(changed)
            entries.append(
                f"{why}: Alertmanager holds {alert_names(again)} firing again: firing here"
            )
    known = stored.state.suppressed
    marks: dict[str, str] = {}
    for alert in compared:
        am = held.get(alert.fp)
        # A resolved alert is not held quiet: its mark (from while it fired) goes.
        reason = _suppression(am) if am is not None and alert.status == "firing" else ""
        if reason != known.get(alert.fp, ""):
            marks[alert.fp] = reason
    newly = [a for a in firing if marks.get(a.fp)]
    kept = None
    if silences is not None and (
        any(held[a.fp].silenced_by for a in newly) or in_force(stored.state, asked_ms)
    ):
        kept = await silences.by_id()
    if newly:
        metrics.peer_alerts.labels("suppressed").inc(len(newly))
        entries += _suppressed_lines(why, newly, held, kept or {})
    # Firing, held and no longer quiet: a silence expired or deleted, an inhibition ended.
    active = [a for a in firing if a.fp in marks and not marks[a.fp] and a.fp in held]
    if active:
        entries.append(
            f"{why}: {alert_names(active)} no longer silenced or inhibited in Alertmanager"
        )
    ended = _ended_early(stored.state, kept, asked_ms) if kept is not None else {}
    jobs = []
    if ended:
        entries += _ended_lines(why, stored.state, ended)
        # The Slack message shows the silences made here: not as in force any more.
        change = f"{len(ended)} silence(s) made here ended early in Alertmanager"
        jobs = edit_job(stored.state, pipeline.sinks, change, now)
    merge: dict[str, Mapping[str, object]] = {"suppressed": marks} if marks else {}
    if ended:
        merge["silences_ended"] = {sid: at for sid, (at, _) in ended.items()}
    if merge or entries:
        await store.annotate(
            incident_id,
            Annotation(
                merge=merge,
                timeline=[TimelineEntry(at=now, kind="alertmanager", text=t) for t in entries],
                jobs=jobs,
            ),
            now,
        )


def _started(status: Mapping[str, object]) -> float | None:
    """When Alertmanager started, from ``/status``'s ``uptime`` (an RFC 3339 time)."""
    uptime = status.get("uptime")
    if not isinstance(uptime, str):
        return None
    try:
        return datetime.fromisoformat(uptime.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _ended_early(
    state: IncidentState, kept: Mapping[str, AmSilence], asked_ms: int
) -> dict[str, tuple[int, str]]:
    """The silences made here, in force by their ``ends_at``, that Alertmanager ended
    before it: silence id -> (when, how). One it no longer keeps at all (deleted from its
    data, or lost in a restart without it) counts once it is older than the gossip
    between HA peers takes (``CLOCKS_MS``): a peer may not have heard of it yet."""
    ended: dict[str, tuple[int, str]] = {}
    for record in in_force(state, asked_ms):
        silence = kept.get(record.id)
        if silence is None:
            if record.at < asked_ms - CLOCKS_MS:
                ended[record.id] = (asked_ms, _LOST)
        # Alertmanager keeps the end asked to the millisecond, cut rather than rounded:
        # one that ended on time may read a millisecond early.
        elif silence.state == "expired" and ms(silence.ends_at.timestamp()) < record.ends_at - 1:
            ended[record.id] = (ms(silence.ends_at.timestamp()), _EXPIRED)
    return ended


def in_force(state: IncidentState, at_ms: int) -> list[SilenceRecord]:
    """The silences made here that hold at ``at_ms`` as far as the incident knows."""
    return [
        record
        for record in state.silences
        if record.ends_at > at_ms and record.id not in state.silences_ended
    ]


def _ended_lines(why: str, state: IncidentState, ended: Mapping[str, tuple[int, str]]) -> list[str]:
    """A line per request (who, until when) and way its silences ended, naming them."""
    requests: dict[tuple[str, int, str], list[SilenceRecord]] = {}
    for record in state.silences:
        if record.id in ended:
            requests.setdefault((record.by, record.ends_at, ended[record.id][1]), []).append(record)
    lines = []
    for (by, ends_at, how), records in requests.items():
        ids = [r.id for r in records]
        more = f" +{len(ids) - _NAMES_SHOWN} more" if len(ids) > _NAMES_SHOWN else ""
        lines.append(
            f"{why}: {len(ids)} silence(s) made here by {by} until {rfc3339(ends_at)} "
            f"{how} ({', '.join(ids[:_NAMES_SHOWN])}{more})"
        )
    return lines


def _suppressed_lines(
    why: str,
    alerts: Sequence[StoredAlert],
    held: Mapping[str, AmAlert],
    kept: Mapping[str, AmSilence],
) -> list[str]:
    """A line per way the alerts are held quiet (silenced, inhibited), naming every
    silence or inhibiting alert of theirs, not the first alert's alone, and who made
    those silences, until when and why."""
    kinds: dict[str, tuple[list[StoredAlert], dict[str, None]]] = {}
    for alert in alerts:
        am = held[alert.fp]
        kind = "silenced" if am.silenced_by else "inhibited" if am.inhibited_by else "suppressed"
        quiet, ids = kinds.setdefault(kind, ([], {}))
        quiet.append(alert)
        ids.update(dict.fromkeys(am.silenced_by or am.inhibited_by))
    lines = []
    for kind, (quiet, ids) in kinds.items():
        shown = list(ids)[:_NAMES_SHOWN]
        more = f" +{len(ids) - _NAMES_SHOWN} more" if len(ids) > _NAMES_SHOWN else ""
        names = shown if kind == "silenced" else [_inhibiting(i, held.get(i)) for i in shown]
        by = f" by {', '.join(names)}{more}" if shown else ""
        made = dict.fromkeys(_made(kept[i]) for i in shown if kind == "silenced" and i in kept)
        lines.append(
            f"{why}: {alert_names(quiet)} {kind}{by} in Alertmanager"
            + "".join(f", {m}" for m in made)
        )
    return lines


def _made(silence: AmSilence) -> str:
    """``made by <who> until <end>: "<comment>"``: what Alertmanager keeps of a silence."""
    until = rfc3339(ms(silence.ends_at.timestamp()))
    comment = f': "{clip(silence.comment, _TEXT_SHOWN)}"' if silence.comment.strip() else ""
    return f"made by {clip(silence.created_by, _TEXT_SHOWN)} until {until}{comment}"


def _inhibiting(fingerprint: str, alert: AmAlert | None) -> str:
    """The inhibiting alert's name beside its fingerprint, when Alertmanager holds it."""
    name = alert.labels.get("alertname") if alert is not None else None
    return f"{clip(name, _TEXT_SHOWN)} ({fingerprint})" if name else fingerprint


def _suppression(alert: AmAlert) -> str:
    if alert.state != "suppressed":
        return ""
    if alert.silenced_by:
        return "silenced by " + ", ".join(alert.silenced_by)
    return "inhibited by " + ", ".join(alert.inhibited_by) if alert.inhibited_by else "suppressed"


def alert_names(alerts: Sequence[StoredAlert]) -> str:
    """``2 alert(s) (Errors, Latency)``, for the timeline: the first few alertnames."""
    names = [a.labels.get("alertname") or a.fp for a in alerts[:_NAMES_SHOWN]]
    more = f" +{len(alerts) - _NAMES_SHOWN} more" if len(alerts) > _NAMES_SHOWN else ""
    return f"{len(alerts)} alert(s) ({', '.join(names)}{more})"


async def _ingest(pipeline: Pipeline, alerts: list[Alert]) -> list[IngestOutcome]:
    batch = Batch(alerts=alerts, truncated_alerts=0, group_key="", receiver="", external_url="")
    return await pipeline.ingest(batch)


def _fires_here(alert: AmAlert, ours: frozenset[str]) -> bool:
    """Active in Alertmanager, and routed to a receiver that sends here."""
    return alert.state == "active" and not ours.isdisjoint(alert.receivers)


def _firing_again(alert: StoredAlert, held: AmAlert) -> Alert:
    return _unstarted(alert, "firing", held.annotations, None, held.generator_url)


def _resolved(alert: StoredAlert, now_ms: int) -> Alert:
    # The receiver's inference: the alert firing again (Alertmanager had it after all) with
    # the startsAt it had must count, so this copy has none (``_unstarted``).
    return _unstarted(alert, "resolved", alert.annotations, _at(now_ms), alert.generator_url)


def _unstarted(
    alert: StoredAlert,
    status: Literal["firing", "resolved"],
    annotations: Mapping[str, str],
    ends_at: datetime | None,
    generator_url: str,
) -> Alert:
    """The stored alert as ``status``, without a startsAt: ingest takes a firing copy
    whose startsAt is that of a resolved one for a late copy of the notification of an
    episode that ended, and ignores it."""
    return Alert(
        fingerprint=alert.fp,
        status=status,
        labels=dict(alert.labels),
        annotations=dict(annotations),
        starts_at=None,
        ends_at=ends_at,
        generator_url=generator_url,
    )


def _at(ms_: int) -> datetime:
    return datetime.fromtimestamp(ms_ / 1000, UTC)
