"""Silencing an incident's alerts in Alertmanager, from the API or a Slack button.

One silence per firing alert, matching that alert alone: a silence on the labels the
alerts share (say ``alertname`` and ``region``) would also mute alerts of other services
and incidents that happen to share them. All of its labels are not enough either, as a
silence matches every alert carrying them: one on an aggregate alert without a ``service``
label would mute each per-service alert with the same labels and more. So before each
silence Alertmanager is asked which alerts its labels match, and each other one is left
out by an absent-label matcher (``name=""``: Alertmanager reads a missing label as the
empty value) for each label it has and this alert lacks. The silence is exact for the
alerts Alertmanager holds at that moment; one that fires later with this alert's labels
and more is muted too.

The silence ids are kept on the incident's ``silences`` with who asked, until when, why
and the alert each silences, and said on its timeline; when Alertmanager fails partway,
those made before are kept and said too (with the alerts left unsilenced, and why), so
that they can be found and expired from the incident, and the error says so.

Slack's Silence 2h asks with ``again=False``: a second press (a double click, a second
person, a press another replica received) makes no second silence of an alert that a
silence made for the incident still holds, and none at all while another such request is
under way.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
)

from receiver.alertmanager.client import AlertmanagerClient, AlertmanagerError, Matcher
from receiver.alertmanager.reconcile import alert_names, in_force
from receiver.config.fields import parse_duration
from receiver.errors import PayloadError
from receiver.incident import rfc3339
from receiver.sinks.slack import edit_job
from receiver.sinks.slack_blocks import silence_length
from receiver.store.base import Annotation
from receiver.store.records import IncidentState, SilenceRecord, StoredAlert, TimelineEntry
from receiver.webhook import parse_body

if TYPE_CHECKING:
    from receiver.app import Receiver

MAX_SILENCED = 100
"""At most this many alerts are silenced in one request (one silence each)."""
MAX_DURATION = "7d"
_ALERTS_READ = MAX_SILENCED + 1
# While one ``again=False`` request silences an incident (a claim in the store's cache; the
# longest a request of at most MAX_SILENCED alerts may take), another makes none.
_UNDER_WAY = "silencing"
_UNDER_WAY_MS = 120_000
_NOT_ALONE = (
    "its labels match another alert Alertmanager holds, which has no label this one lacks: "
    "a silence of it would mute that one too"
)


class NotAllSilenced(AlertmanagerError):
    """Alertmanager failed before every alert was silenced; the message says how many
    were (kept on the incident) and which were not, and why."""


class AlreadySilenced(PayloadError):
    """Every firing alert of the incident is held by a silence made for it (409):
    ``until_ms`` is when the first of them ends, ``by`` who made them."""

    def __init__(self, until_ms: int, by: list[str]) -> None:
        self.until_ms = until_ms
        self.by = by
        message = f"every firing alert is silenced until {rfc3339(until_ms)} by {', '.join(by)}"
        super().__init__(409, message)


class SilenceUnderWay(PayloadError):
    """Another request is silencing the incident's alerts right now (409); ``by`` asked it."""

    def __init__(self, by: str) -> None:
        self.by = by
        super().__init__(409, f"a silence of the incident asked by {by} is being made")


class SilenceRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # A duration ("2h", "1h30m") or a number of seconds, as the config files take them.
    duration: StrictStr | StrictInt | StrictFloat = "2h"
    comment: Annotated[str, StringConstraints(max_length=1000)] = ""
    by: Annotated[str, StringConstraints(max_length=200)] | None = Field(default=None)
    """Who asks (shown in Alertmanager as ``createdBy``); the API caller by default."""

    def seconds(self) -> float:
        try:
            seconds = parse_duration(self.duration, maximum=MAX_DURATION)
        except ValueError as exc:
            reason = str(exc)
            raise PayloadError(
                422, f"duration: {reason}", [{"field": "duration", "reason": reason}]
            ) from exc
        # Alertmanager keeps times in whole milliseconds and refuses a silence that ends
        # as it starts; a second is the least that means anything.
        if seconds < 1:
            reason = "must be at least 1s"
            raise PayloadError(422, f"duration {reason}", [{"field": "duration", "reason": reason}])
        return seconds


def parse_silence(body: bytes) -> SilenceRequest:
    """An empty body silences for 2h; ``PayloadError`` 400/422 for a bad one."""
    return parse_body(SilenceRequest, body, empty=SilenceRequest())


async def silence_incident(
    receiver: Receiver,
    incident_id: str,
    seconds: float,
    by: str,
    comment: str,
    again: bool = True,
) -> list[str] | None:
    """Silence the incident's firing alerts for ``seconds``; the new silence ids, or None
    for an unknown incident. Raises ``PayloadError`` 409/422 when there is nothing (or too
    much) to silence or no Alertmanager configured, 409 when an alert cannot be silenced
    alone, and ``AlertmanagerError`` (``NotAllSilenced``) when Alertmanager failed; the
    silences made before either are kept on the incident, and the message says how many.
    With ``again`` False, the alerts a silence made for the incident still holds are left
    out (``AlreadySilenced`` when that leaves none), and ``SilenceUnderWay`` is raised
    while another such request silences the incident."""
    client = receiver.alertmanager
    if client is None:
        raise PayloadError(409, "no alertmanager configured in receiver.yaml (alertmanager.urls)")
    if again:
        return await _silence(receiver, client, incident_id, seconds, by, comment, again)
    cache = receiver.store.cache
    # The claim names who asked, after a token of this request's own.
    claim = f"{secrets.token_hex(8)} {by}"
    held = await cache.setdefault(_UNDER_WAY, incident_id, claim, _UNDER_WAY_MS)
    if held != claim:
        raise SilenceUnderWay(held.partition(" ")[2])
    try:
        return await _silence(receiver, client, incident_id, seconds, by, comment, again)
    finally:
        # Let go at once (a retry after a failure may come right away); a claim that ran
        # out and was taken by another request meanwhile is theirs to let go.
        if await cache.get(_UNDER_WAY, incident_id) == claim:
            await cache.set(_UNDER_WAY, incident_id, claim, 1)


async def _silence(
    receiver: Receiver,
    client: AlertmanagerClient,
    incident_id: str,
    seconds: float,
    by: str,
    comment: str,
    again: bool,
) -> list[str] | None:
    stored = await receiver.store.load(incident_id, timeline=False)
    if stored is None:
        return None
    page = await receiver.store.load_alerts(incident_id, _ALERTS_READ)
    firing = [a for a in page.alerts if a.status == "firing"]
    if not firing:
        raise PayloadError(409, "the incident has no firing alert to silence")
    now_ms = receiver.pipeline.now_ms()
    if not again:
        held = _held(stored.state, now_ms)
        if all(a.fp in held for a in firing):
            holding = [held[a.fp] for a in firing]
            until = min(s.ends_at for s in holding)
            raise AlreadySilenced(until, list(dict.fromkeys(s.by for s in holding)))
        firing = [a for a in firing if a.fp not in held]
    if len(firing) > MAX_SILENCED:
        raise PayloadError(
            422,
            f"more than {MAX_SILENCED} firing alerts: silence them in Alertmanager itself",
        )
    starts = datetime.fromtimestamp(now_ms / 1000, UTC)
    ends = starts + timedelta(seconds=seconds)
    why = comment or f"journey-receiver incident {incident_id}"
    made: list[tuple[StoredAlert, str]] = []
    refused: list[StoredAlert] = []
    failed: tuple[list[StoredAlert], AlertmanagerError] | None = None
    for done, alert in enumerate(firing):
        try:
            matchers = await _matching_only(client, alert.labels)
            if matchers is None:
                refused.append(alert)
                continue
            made.append((alert, await client.create_silence(matchers, starts, ends, by, why)))
        except AlertmanagerError as exc:
            # Every peer failed (or refused, as all would): the next alerts would only
            # wait for them again.
            failed = (firing[done:], exc)
            break
    left_out = [f"{alert_names(refused)} not silenced: {_NOT_ALONE}"] if refused else []
    if failed is not None:
        left_out.append(f"{alert_names(failed[0])} not silenced: {failed[1]}")
    ids = [silence_id for _, silence_id in made]
    span = silence_length(seconds)
    if ids:
        ends_ms = round(ends.timestamp() * 1000)
        records = [
            {
                "id": silence_id,
                "at": now_ms,
                "by": by,
                "ends_at": ends_ms,
                "comment": why,
                "fingerprint": alert.fp,
            }
            for alert, silence_id in made
        ]
        said = [f"{len(ids)} alert(s) silenced in Alertmanager for {span} by {by}", *left_out]
        # The Slack message lists the silences people made, wherever they made them.
        change = f"silenced{' in part' if left_out else ''} for {span} by {by}"
        await receiver.store.annotate(
            incident_id,
            Annotation(
                append={"silences": records},
                timeline=[TimelineEntry(at=now_ms, kind="alertmanager", text=t) for t in said],
                jobs=edit_job(stored.state, receiver.pipeline.sinks, change, now_ms),
            ),
            now_ms,
        )
    if not left_out:
        return ids
    kept = ", kept on the incident's silences" if ids else ""
    message = "; ".join([f"{len(ids)} of {len(firing)} alert(s) silenced{kept}", *left_out])
    if failed is not None:
        raise NotAllSilenced(message) from failed[1]
    raise PayloadError(409, message)


def _held(state: IncidentState, now_ms: int) -> dict[str, SilenceRecord]:
    """Per alert fingerprint, the silence made for it that holds longest, of those in
    force (made before silences named their alert: none)."""
    held: dict[str, SilenceRecord] = {}
    for silence in in_force(state, now_ms):
        kept = held.get(silence.fingerprint)
        if silence.fingerprint and (kept is None or silence.ends_at > kept.ends_at):
            held[silence.fingerprint] = silence
    return held


async def _matching_only(
    client: AlertmanagerClient, labels: Mapping[str, str]
) -> list[Matcher] | None:
    """Matchers that match the alert of ``labels`` and no other alert Alertmanager holds
    now, or None when another one has no label this one lacks (nothing can leave it out).
    Alertmanager keeps no label with an empty value, so the alert it holds with the
    non-empty ones of ``labels`` is this one."""
    wanted = dict(labels)
    own = {name: value for name, value in labels.items() if value}
    for other in await client.alerts([Matcher(n, v) for n, v in sorted(labels.items())]):
        if other.labels == own:
            continue
        more = [name for name, value in other.labels.items() if value and not labels.get(name)]
        if not more:
            return None
        wanted.update(dict.fromkeys(more, ""))
    return [Matcher(name, value) for name, value in sorted(wanted.items())]
