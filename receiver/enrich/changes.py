"""Recent changes around an incident, ranked as its probable causes.

``gather`` collects the change events of the window from the store (already read by the
caller) and from every pull feed at once; ``correlate`` (pure) keeps those in the
incident's scope from ``lookback`` before the incident started until now and ranks them.

Ranking. For a change at ``at`` and an incident that started at ``started``, with
``d = started - at`` (positive = before the start) and ``tau = max(lookback / 2, 1 min)``::

    proximity = exp(-d / tau)              if d >= 0   (1 at the start, e^-2 ~ 0.14 at
                                                        the far end of the lookback)
              = 0.05 * exp(d / tau)        if d < 0    (after the start: a consequence or a
                                                        responder's action, rarely the cause)
    relevance = 1.0   the change's service is the incident's probable upstream service
                      (receiver/topology.py: the one the others depend on, then the first
                      whose alerts started, by Alertmanager's startsAt)
                0.7   it is one of the incident's other services
                0.5   one of its firing services calls it (journeys.yaml ``topology``)
                      and it raised no alert itself (a database migration, say)
                0.3   it is labelled ``journey=<the incident's journey>``
                0.03  anything else
    score     = round(100 * relevance * proximity, 1)            (0-100)

So any change to one of the incident's services before the start (>= 9.4) outranks every
change to an unrelated service (<= 3) and every change after the start (<= 5); among
them the closer to the start the higher. When no change touched the incident's services
before the start (no ``overlap`` before it), or none of those scores the confidence
(``receiver/causes.py``: a guess), the upstream service itself is a cause of kind
``service`` with score 25; services that cannot be told apart (no topology, the same
start, severity and alert count) give "one of a, b" with score 10, below the confidence:
the cause is unknown. So do trusted changes to different services that score alike (a
release train: "one of deploy … to a, deploy … to b"): which one is not known, and their
ids, which order equals, must not say.
Causes and changes are ordered by score (highest first), then time, then source and id;
causes with the same text (one change reported by two sources) are kept once, at most
``MAX_CAUSES`` causes and ``MAX_CHANGES`` changes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import anyio

from receiver.causes import CAUSE_CONFIDENCE, span
from receiver.config.receiver_yaml import ScopeField
from receiver.enrich import Cause, ChangeMatch, ChangeReport, EnrichmentError
from receiver.enrich.feeds import Feed, FeedEvents, source_of
from receiver.enrich.scope import contradiction
from receiver.events import ChangeEvent
from receiver.topology import Ranking

logger = logging.getLogger("journey_receiver.enrich")

MAX_CHANGES = 20
MAX_CAUSES = 5
AFTER_START = 0.05
UPSTREAM = 1.0
IN_INCIDENT = 0.7
# A service one of the incident's firing services calls (journeys.yaml topology), itself
# quiet: a migration of the database a failing service calls is no less a suspect for
# raising no alert of its own, if less than a change to the failing service itself.
CALLED = 0.5
IN_JOURNEY = 0.3
UNRELATED = 0.03
SERVICE_CAUSE = 25.0
# Below receiver.causes.CAUSE_CONFIDENCE: services, or changes to several services, that
# cannot be told apart are no answer (nor a ground for an action).
TIED_SERVICES = 10.0
_MINUTE = 60_000


async def gather(
    store_events: list[ChangeEvent],
    feeds: Sequence[Feed],
    start: datetime,
    end: datetime,
    within_s: float | None = None,
) -> tuple[list[ChangeEvent], list[str]]:
    """``store_events`` (as given, unfiltered) and the events of every feed in
    ``[start, end]``, the feeds asked all at once, each for ``within_s`` at most.

    A feed that fails, or has not answered by then, becomes the note ``context
    unavailable: <feed>: <reason>`` and never hides the others or the stored events; a
    feed that left items out adds ``context incomplete: <feed>: <what>``. Events are
    unique by (source, id), the stored one first, and ordered by time, source and id.
    Notes follow feed order.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    fetched: list[list[ChangeEvent]] = [[] for _ in feeds]
    notes: list[list[str]] = [[] for _ in feeds]

    async def fetch(index: int, feed: Feed) -> None:
        try:
            # A feed whose own timeout is longer than the incident's context may take
            # must not cost the incident what the others (and Prometheus) answered.
            with anyio.move_on_after(within_s) as scope:
                found = await feed.events(start, end)
            if scope.cancelled_caught:
                raise EnrichmentError(
                    f"no answer within {within_s:g}s (prometheus.budget, which the change "
                    "feeds share)"
                )
        except EnrichmentError as exc:
            notes[index].append(f"context unavailable: {feed.name}: {exc}")
        except Exception as exc:  # a bug in one feed must not cost the incident the others
            # Only the exception's type: its message might quote a header or a token.
            notes[index].append(f"context unavailable: {feed.name}: {type(exc).__name__}")
        else:
            fetched[index] = list(found)
            if isinstance(found, FeedEvents):
                notes[index].extend(f"context incomplete: {feed.name}: {n}" for n in found.notes)
        for note in notes[index]:
            logger.warning("%s", note)

    async with anyio.create_task_group() as group:
        for index, feed in enumerate(feeds):
            group.start_soon(fetch, index, feed)
    events = _unique([*store_events, *(event for found in fetched for event in found)])
    events.sort(key=lambda event: (event.at, source_of(event), event.id))
    return events, [note for feed_notes in notes for note in feed_notes]


def _unique(events: Iterable[ChangeEvent]) -> list[ChangeEvent]:
    seen: set[tuple[str, str]] = set()
    unique = []
    for event in events:
        key = (source_of(event), event.id)
        if key not in seen:
            seen.add(key)
            unique.append(event)
    return unique


@dataclass(frozen=True, slots=True)
class _Ranked:
    match: ChangeMatch
    score: float
    text: str
    evidence: tuple[str, ...]

    @property
    def order(self) -> tuple[float, int, str, str]:
        return (-self.score, self.match.at_ms, self.match.source, self.match.id)


def correlate(
    events: Iterable[ChangeEvent],
    *,
    services: Mapping[str, int],
    ranking: Ranking,
    journey_id: str,
    group_labels: Mapping[str, str],
    scope_labels: Mapping[ScopeField, str],
    started_ms: int,
    lookback_ms: int,
    now_ms: int,
) -> ChangeReport:
    """Rank the changes in the incident's scope (``receiver/enrich/scope.py``) from
    ``lookback_ms`` before ``started_ms`` until ``now_ms``; the others are not seen at all.

    ``services`` are the incident's services; ``ranking`` orders its firing services, the
    probable upstream one first (``receiver/topology.py``). See the module docstring for
    the formula.
    """
    upstream = ranking.upstream.service if ranking.upstream else None
    tau = max(lookback_ms / 2, _MINUTE)
    ranked: list[_Ranked] = []
    for event in _unique(events):
        at_ms = _epoch_ms(event.at)
        if not started_ms - lookback_ms <= at_ms <= now_ms:
            continue
        if contradiction(event, group_labels, scope_labels) is not None:
            continue
        before = started_ms - at_ms
        match = ChangeMatch(
            id=event.id,
            type=event.type,
            service=event.service,
            at_ms=at_ms,
            minutes_before=before / _MINUTE,
            overlap=event.service in services,
            summary=event.summary or "",
            version=event.version,
            url=event.url,
            source=source_of(event),
        )
        proximity = math.exp(-before / tau) if before >= 0 else AFTER_START * math.exp(before / tau)
        relevance, why = _relevance(event, services, upstream, journey_id, ranking)
        text = describe(event)
        timing = (
            f"{text} {span(abs(before))} {'before' if before >= 0 else 'after'} the first alert"
        )
        score = round(100 * relevance * proximity, 1)
        ranked.append(_Ranked(match, score, text, (timing, why)))
    ranked.sort(key=lambda item: item.order)

    causes: list[Cause] = []
    texts: set[str] = set()
    leaders: list[_Ranked] = []
    for item in ranked:
        if item.text not in texts:
            texts.add(item.text)
            leaders.append(item)
            causes.append(
                Cause(
                    kind="change",
                    text=item.text,
                    score=item.score,
                    evidence=item.evidence,
                    change_id=item.match.id,
                    change_source=item.match.source,
                )
            )
    # A responder's change after the start (a scale, a restart) explains nothing, even on
    # one of the incident's services: the upstream service stays the cause. Nor does a
    # change too weak to be trusted, where the ranking tells one of several services: a
    # guess must not erase what it says. (A lone service says nothing more than its
    # alerts: there the guess stays the best candidate, and the cause unknown.)
    touched = [i for i in ranked if i.match.overlap and i.match.minutes_before >= 0]
    informs = not touched or len(ranking.services) > 1
    if ranking.services and informs and not any(i.score >= CAUSE_CONFIDENCE for i in touched):
        causes.append(_service_cause(ranking, lookback_ms, guessed=bool(touched)))
        causes.sort(key=lambda cause: -cause.score)  # stable: ties keep the change order
    tie = _tied_changes(leaders)
    if tie is not None:
        # At the head, whatever scores below the tied changes: nothing is trusted in their
        # place (receiver.causes.trusted stops at it).
        tied = leaders[0].score
        causes = [tie, *(c for c in causes if not (c.kind == "change" and c.score == tied))]
    return ChangeReport(
        changes=tuple(item.match for item in ranked[:MAX_CHANGES]),
        causes=tuple(causes[:MAX_CAUSES]),
    )


def describe(event: ChangeEvent) -> str:
    """``deploy 2026.04.18-3 to payment-service``, ``feature_flag on cart``."""
    preposition = "to" if event.type in ("deploy", "rollback") else "on"
    version = f" {event.version}" if event.version else ""
    return f"{event.type}{version} {preposition} {event.service}"


def _relevance(
    event: ChangeEvent,
    services: Mapping[str, int],
    upstream: str | None,
    journey_id: str,
    ranking: Ranking,
) -> tuple[float, str]:
    service = event.service
    if service == upstream and len(services) == 1:
        return UPSTREAM, f"{service} is the only service in the incident"
    if service == upstream:
        return UPSTREAM, f"{service} is the probable upstream service of the incident"
    if service in services:
        return IN_INCIDENT, f"{service} is one of the incident's services"
    callers = ranking.quiet_callees.get(service)
    if callers:
        return CALLED, (
            f"{', '.join(sorted(callers))} calls {service} (journeys.yaml topology), which "
            "raised no alert"
        )
    if event.labels.get("journey") == journey_id:
        return IN_JOURNEY, f"labelled journey={journey_id}, not on the incident's services"
    return UNRELATED, f"{service} is not one of the incident's services"


def _tied_changes(leaders: Sequence[_Ranked]) -> Cause | None:
    """One cause for the trusted changes at the top that score alike and touch different
    services (a release train: one pipeline deploys two services in the same second):
    which one it is, is not known, and their ids (what orders equals) must not say."""
    if len(leaders) < 2 or leaders[0].score < CAUSE_CONFIDENCE:
        return None
    equal = [i for i in leaders if i.score == leaders[0].score]
    if len({i.match.service for i in equal}) < 2:
        return None
    texts = sorted(i.text for i in equal)
    evidence = (
        f"{' and '.join(texts)} score alike ({leaders[0].score:g}): which one is the cause is "
        "not known",
        *equal[0].evidence,
    )
    return Cause(
        kind="change", text="one of " + ", ".join(texts), score=TIED_SERVICES, evidence=evidence
    )


def _service_cause(ranking: Ranking, lookback_ms: int, guessed: bool = False) -> Cause:
    """``guessed``: changes to the incident's services came before it, none trusted."""
    top = ranking.services[0]
    evidence = ranking.evidence()
    if lookback_ms >= _MINUTE:
        window = span(lookback_ms)
        evidence.append(
            f"no change to the incident's services in the {window} before the first alert"
            + (" close enough to it to be trusted" if guessed else "")
        )
    if ranking.tied:
        tied = sorted(s.service for s in ranking.services if s.key == top.key)
        text = "one of " + ", ".join(tied)
        return Cause(kind="service", text=text, score=TIED_SERVICES, evidence=tuple(evidence))
    return Cause(kind="service", text=top.service, score=SERVICE_CAUSE, evidence=tuple(evidence))


def _epoch_ms(at: datetime) -> int:
    return round(at.timestamp() * 1000)
