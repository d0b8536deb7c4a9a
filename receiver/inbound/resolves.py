"""A person's resolve made in PagerDuty or Jira, and taking it back when they reopen it
there: the one rule both sources keep."""

from __future__ import annotations

from receiver.store.records import IncidentState

TAKEN_BACK: dict[str, object] = {"resolved_at": None, "resolved_by": None, "resolved_via": None}
"""The ``response`` keys a reopen clears (an annotation's ``merge``)."""


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
    return made == source and at_ms > response.resolved_at
