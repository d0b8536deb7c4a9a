"""What each of a journey's automation levels lets happen (SPEC, "Acting").

- ``observe``: suggestions stay on the incident (API, page) and reach no sink; nothing runs;
- ``recommend``: suggestions reach the sinks; nothing runs;
- ``assist``: a Run button (Slack, the incident page) for the journey's
  ``owner.responders``, confirmed before it acts; anyone else is refused;
- ``auto``: a runnable action runs by itself once every condition holds and the guards
  allow (``receiver/act/guards.py``); its responders may also press Run.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from receiver.config import Automation


@dataclass(frozen=True, slots=True)
class Person:
    """Someone who pressed Run: ``who`` as the incident records it, ``ids`` every name a
    journey's ``owner.responders`` may know them by (a Slack user id, ``@handle``, e-mail)."""

    who: str
    ids: frozenset[str]

    @classmethod
    def of(cls, who: str, ids: Iterable[str]) -> Person:
        return cls(who, frozenset(i.strip().lower() for i in ids if i.strip()))


def shows_suggestions(level: Automation) -> bool:
    """Whether the sinks are told the suggested actions."""
    return level != "observe"


def shows_run_button(level: Automation) -> bool:
    return level in ("assist", "auto")


def refusal(level: Automation, person: Person | None, responders: Collection[str]) -> str | None:
    """Why the level does not let ``person`` (None: the receiver itself) run an action of
    the journey; None when it does."""
    if person is None:
        return None if level == "auto" else f"the journey is at {level}: nothing runs by itself"
    if not shows_run_button(level):
        return f"the journey is at {level}: its actions are not run from here"
    if not responders:
        return "the journey names no owner.responders, so nobody may run its actions"
    if not person.ids & {r.strip().lower() for r in responders}:
        return f"{person.who} is not one of the journey's owner.responders"
    return None
