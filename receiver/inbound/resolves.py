"""A person's resolve made in PagerDuty or Jira, and taking it back when they reopen it
there: the rules both sources keep.

- A reopen takes back only a resolve made where it was (``taken_back``).
- Vendors deliver at least once and retry out of order, so a resolve or reopen older than
  the one last applied (``superseded``, by ``PERSON_AT`` in the incident's
  ``sinks.<source>``) is a late delivery, and applying it would undo the newer one. Two
  delivered at once are each decided against the last one as read (``as_read``): the
  store refuses the second to land if the first changed it, and it is decided again.
- The first acknowledgement is the incident's (MTTA); when the one standing times out in
  PagerDuty (``lapse``) nobody is on it any more, until someone acknowledges it again
  (``acknowledgement``). A timeout older than the acknowledgement standing (delivered late)
  lapses nothing, and an acknowledgement older than the lapse takes nothing up again.
- An acknowledgement or a reopen made after the incident resolved here (``after_the_end``)
  is follow-up work, not an answer to the incident: it is recorded on the timeline only, as
  Slack's Acknowledge pressed after the resolve is, so that MTTA, MTTR and ``/stats`` do not
  move after the fact.
"""

from __future__ import annotations

from collections.abc import Mapping

from receiver.store.records import IncidentState

TAKEN_BACK: dict[str, object] = {"resolved_at": None, "resolved_by": None, "resolved_via": None}
"""The ``response`` keys a reopen clears (an annotation's ``merge``)."""
PERSON_AT = "person_changed_at"
"""``sinks.<source>`` key: when (ms, the vendor's clock) the person's resolve or reopen last
applied from there happened."""


def taken_back(state: IncidentState, source: str, at_ms: int) -> bool:
    """Whether a reopen in ``source`` at ``at_ms`` takes back the person's resolve the
    incident holds: only one made there, and only one made before the reopen (a reopen
    delivered late takes back nothing). A Jira issue reopened says nothing of a PagerDuty
    incident a person resolved, and the other way. A resolve recorded before where it was
    made was kept is judged by where the first word came from (``source``)."""
    response = state.response
    if response is None or response.resolved_at is None:
        return False
    made = response.resolved_via or response.source
    # A reopen after the incident resolved here is follow-up work: the incident's time to
    # resolve is settled, and must not move after the fact.
    return made == source and at_ms > response.resolved_at and not after_the_end(state, at_ms)


def superseded(recorded: Mapping[str, str], at_ms: int) -> bool:
    """Whether a resolve or reopen made at ``at_ms`` is older than the one last applied from
    the same source (``recorded``: the incident's ``sinks.<source>``, whose ``PERSON_AT``
    the applied one set)."""
    last = recorded.get(PERSON_AT)
    if not last:
        return False
    return at_ms < int(last)


def as_read(source: str, recorded: Mapping[str, str]) -> tuple[str, str, str | None]:
    """An annotation's ``expect`` for a resolve or reopen from ``source``: the last one
    applied, as ``recorded`` (the incident's ``sinks.<source>``) read it. Whether it is
    superseded, or takes a resolve back, was decided against that: two deliveries read at
    once (two replicas) must not both land as decided."""
    last = recorded.get(PERSON_AT)
    return (f"sinks.{source}", PERSON_AT, None if last is None else str(last))


def after_the_end(state: IncidentState, at_ms: int) -> bool:
    """Whether what a person did at ``at_ms`` (an acknowledgement, a reopen) came after the
    incident resolved here. One made before the resolve and delivered late still counts."""
    if state.status != "resolved":
        return False
    return state.resolved_at is None or at_ms >= state.resolved_at


def before_this_episode(recorded: Mapping[str, str], state: IncidentState) -> bool:
    """Whether the person's resolve or reopen last applied from a source (``recorded``: the
    incident's ``sinks.<source>``) came before its current episode began: that episode's
    reopen opens anew there, so the resolve was of the last one."""
    last = recorded.get(PERSON_AT)
    return last is not None and last != "" and int(last) < state.first_firing_at


def acknowledgement(
    state: IncidentState, at_ms: int, who: str, source: str, *, after_lapse: bool = False
) -> tuple[dict[str, object], dict[str, object]]:
    """The ``response`` keys an acknowledgement by ``who`` at ``at_ms`` (made before the
    incident resolved here) sets, as an annotation's (``fill``, ``merge``): the first one
    fills them; one made after the last lapsed takes the incident up again.
    ``after_lapse``: it came after the lapse ``state`` holds, whatever the clocks say (a
    press on the message that showed the lapse; PagerDuty's clock is not ours)."""
    response = state.response
    lapsed = response.lapsed_at if response else None
    if lapsed is not None and (after_lapse or at_ms > lapsed):
        return {}, {"lapsed_at": None, "reacknowledged_at": at_ms, "reacknowledged_by": who}
    return {"acknowledged_at": at_ms, "acknowledged_by": who, "source": source}, {}


def lapse(state: IncidentState, at_ms: int) -> tuple[str, dict[str, object]] | None:
    """Who acknowledged, and the ``response`` keys (a ``merge``) the acknowledgement
    standing timing out at ``at_ms`` sets; None when none stands then (none yet, lapsed
    already, one made since and delivered first, or the incident had resolved)."""
    standing = state.response.standing if state.response else None
    if standing is None or at_ms <= standing[0] or after_the_end(state, at_ms):
        return None
    return standing[1], {"lapsed_at": at_ms}


def lapse_as_read(state: IncidentState) -> tuple[str, str, str | None]:
    """An annotation's ``expect`` for a lapse or an acknowledgement decided on whether the
    acknowledgement stood: another replica may have lapsed it, or taken it up, since."""
    lapsed = state.response.lapsed_at if state.response else None
    return ("response", "lapsed_at", None if lapsed is None else str(lapsed))
