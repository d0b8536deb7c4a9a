"""Which labels a KPI alert carries so that the receiver's ordinary matching puts it in its
journey: the first stage, in file order, whose matchers the alert can satisfy.

A stage matcher on a label the KPI keeps apart (``env`` when the query uses ``$env``) is
written into the query's selectors instead (``receiver/rules/promql.py``): the series, and so
the alert, only ever carry values the stage accepts. Every other matcher is met by a fixed
label: the value of an ``=`` matcher, or for ``=~`` the first plain value its regex spells
(``payment-service|payments-db`` → ``payment-service``, ``cart(-.*)?`` → ``cart``). The
answer is then checked with the receiver's own ``JourneyCatalog.match``, so a stage of an
earlier journey that would catch the alert first is found here, not in an incident.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from receiver.config import Journey, JourneysConfig, Stage
from receiver.journeys import JourneyCatalog
from receiver.matchers import Matcher


@dataclass(frozen=True, slots=True)
class Route:
    """The stage a KPI alert lands in, its fixed labels, and the matchers pushed into the
    query for the labels the query keeps apart."""

    stage: Stage
    labels: dict[str, str]
    pinned: dict[str, list[Matcher]]


class UnroutableError(ValueError):
    """No stage of the journey can take the alert; the text says what to add."""


def route(
    journeys: JourneysConfig,
    journey: Journey,
    own: Mapping[str, str],
    kept_apart: Sequence[str],
    default_group_by: Sequence[str],
) -> Route:
    """The first stage of ``journey`` that an alert with labels ``own`` (alertname,
    journey, kpi, severity) plus the ``kept_apart`` labels of its series can match."""
    catalog = JourneyCatalog(journeys, default_group_by)
    reasons: list[str] = []
    for stage in journey.stages:
        fixed, pinned, why = _satisfy(stage, own, kept_apart)
        if why is not None:
            reasons.append(f"stage {stage.id}: {why}")
            continue
        sample = {**fixed, **_sample_values(pinned)}
        found, found_stage = catalog.match(sample)
        if found.id != journey.id or found_stage is None or found_stage.id != stage.id:
            where = f"{found.id}/{found_stage.id}" if found_stage else found.id
            reasons.append(f"stage {stage.id}: an alert with its labels lands in {where} first")
            continue
        return Route(stage, fixed, pinned)
    raise UnroutableError(
        "no stage can take the KPI alert ("
        + "; ".join(reasons)
        + "); add a stage for it, e.g. match: ['journey=\""
        + journey.id
        + "\"']"
    )


def _satisfy(
    stage: Stage, own: Mapping[str, str], kept_apart: Sequence[str]
) -> tuple[dict[str, str], dict[str, list[Matcher]], str | None]:
    fixed = dict(own)
    pinned: dict[str, list[Matcher]] = {}
    for matcher in stage.match:
        if matcher.name in kept_apart:
            pinned.setdefault(matcher.name, []).append(matcher)
            continue
        if matcher.name in fixed:
            if not matcher.matches(fixed):
                return {}, {}, f"{matcher} does not match {matcher.name}={fixed[matcher.name]!r}"
            continue
        value = _value_for(matcher)
        if value is None:
            return {}, {}, f"no fixed value satisfies {matcher}"
        if value:
            fixed[matcher.name] = value
    # Two matchers on one fixed label (service=~"pay.*", service!="payments-db"): the value
    # chosen for the first must pass them all.
    for matcher in stage.match:
        if matcher.name not in kept_apart and not matcher.matches(fixed):
            return {}, {}, f"no fixed value satisfies {matcher} together with the others"
    return fixed, pinned, None


def _value_for(matcher: Matcher) -> str | None:
    """A value the matcher accepts; "" means leave the label off (a missing label is "")."""
    if matcher.op == "=":
        return matcher.value
    if matcher.matches({}):
        return ""
    if matcher.op == "=~":
        spelled = spell(matcher.value)
        if spelled is not None and matcher.matches({matcher.name: spelled}):
            return spelled
    return None


def _sample_values(pinned: Mapping[str, Sequence[Matcher]]) -> dict[str, str]:
    sample: dict[str, str] = {}
    for name, matchers in pinned.items():
        value = _value_for(matchers[0])
        if value:
            sample[name] = value
    return sample


_SPECIAL = set("\\.+*?()|[]{}^$")


def spell(pattern: str) -> str | None:
    """The shortest plain string that a simple regex spells, taking the first alternative
    and leaving out optional parts; None for anything this does not read (the caller
    checks the result against the real regex anyway)."""
    text, rest = _sequence(pattern, 0)
    return text if rest == len(pattern) else None


def _sequence(pattern: str, at: int) -> tuple[str | None, int]:
    """Spell from ``at`` to the end of the first alternative; return where it stopped (at
    the ``)`` closing the group, or the end) after skipping the other alternatives."""
    out: list[str] = []
    while at < len(pattern):
        ch = pattern[at]
        if ch == "|":
            return "".join(out), _skip_alternatives(pattern, at)
        if ch == ")":
            return "".join(out), at
        atom: str | None
        if ch == "(":
            if pattern.startswith("(?:", at):
                at += 2
            inner, end = _sequence(pattern, at + 1)
            if inner is None or end >= len(pattern):
                return None, at
            atom, at = inner, end + 1
        elif ch == "\\" and at + 1 < len(pattern) and not pattern[at + 1].isalnum():
            atom, at = pattern[at + 1], at + 2
        elif ch == ".":
            atom, at = "x", at + 1
        elif ch in _SPECIAL:
            return None, at
        else:
            atom, at = ch, at + 1
        if at < len(pattern) and pattern[at] in "?*":
            atom, at = "", at + 1
        elif at < len(pattern) and pattern[at] == "+":
            at += 1
        out.append(atom)
    return "".join(out), at


def _skip_alternatives(pattern: str, at: int) -> int:
    depth = 0
    while at < len(pattern):
        ch = pattern[at]
        if ch == "\\":
            at += 2
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                return at
            depth -= 1
        at += 1
    return at
