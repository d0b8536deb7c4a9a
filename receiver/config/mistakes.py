"""What ``journeys.yaml`` may hold but almost surely does not mean: ``check``'s warnings.

Each is valid, so a file that loaded before still loads, and serve runs it as written;
but as written it misbehaves without a word: a stage no alert can reach (an earlier stage
takes all its alerts, or its own matchers contradict each other), a matcher value that
keeps its quotes (``service='payment'`` compares the label with ``'payment'``), an SLO
objective written as a ratio (``0.999``, where the field is in percent), an ``assist``
journey whose runnable actions nobody may run (no ``owner.responders``).
"""

from __future__ import annotations

from collections.abc import Sequence

from receiver.config.fields import Loc, show
from receiver.config.journeys_yaml import JourneysConfig, Slo
from receiver.config.source import Document
from receiver.matchers import Matcher

_QUOTES = ("'", '"')


def mistakes(journeys: JourneysConfig, doc: Document) -> None:
    """Warn on ``doc`` of every likely mistake in ``journeys`` (read from ``doc``)."""
    taken: list[tuple[Loc, str, Sequence[Matcher]]] = []
    for i, journey in enumerate(journeys.journeys):
        for j, stage in enumerate(journey.stages):
            at: Loc = ("journeys", i, "stages", j, "match")
            for k, matcher in enumerate(stage.match):
                _quoted(matcher, (*at, k), doc)
            unreachable = _contradiction(stage.match) or _shadowed(stage.match, taken, doc)
            if unreachable:
                doc.warn(at, f"no alert can reach this stage: {unreachable}")
            taken.append((at[:-1], f"{journey.id}/{stage.id}", stage.match))
        for j, runbook in enumerate(journey.runbooks):
            for k, matcher in enumerate(runbook.match):
                _quoted(matcher, ("journeys", i, "runbooks", j, "match", k), doc)
        _objective(journey.slo, ("journeys", i, "slo", "objective"), doc)
        runnable = any(action.run is not None for action in journey.actions)
        if journey.automation == "assist" and runnable and not journey.owner.responders:
            doc.warn(
                ("journeys", i, "automation"),
                "assist offers Run to owner.responders only, and it names no one: every "
                "press is refused (name the Slack user ids or e-mails of who may run them)",
            )
    _objective(journeys.unmapped.slo, ("unmapped", "slo", "objective"), doc)


def _quoted(matcher: Matcher, loc: Loc, doc: Document) -> None:
    value = matcher.value
    if len(value) >= 2 and value[0] == value[-1] and value[0] in _QUOTES:
        try:
            meant = f" (did you mean {Matcher(matcher.name, matcher.op, value[1:-1])}?)"
        except ValueError:  # a regex whose closing quote is escaped ('error\'): none left
            meant = ""
        doc.warn(loc, f"{matcher} compares the label with {value}, quotes included{meant}")


def _contradiction(matchers: Sequence[Matcher]) -> str | None:
    """Why no label set can match all of ``matchers``, when a pair of them says so."""
    for fixed in matchers:
        if fixed.op != "=":
            continue
        for other in matchers:
            if (
                other is not fixed
                and other.name == fixed.name
                and not other.matches({fixed.name: fixed.value})
            ):
                return f"{fixed} and {other} cannot both hold"
    return None


def _shadowed(
    matchers: Sequence[Matcher], taken: list[tuple[Loc, str, Sequence[Matcher]]], doc: Document
) -> str | None:
    """Which earlier stage matches every alert ``matchers`` match: the first stage in file
    order to match wins, so this one never does."""
    for loc, name, earlier in taken:
        if all(_implied(m, matchers) for m in earlier):
            return (
                f"every alert it matches is taken first by {name} (line {doc.line(loc)}), "
                "as an alert belongs to the first stage in file order whose matchers all match"
            )
    return None


def _implied(matcher: Matcher, by: Sequence[Matcher]) -> bool:
    """Whether every label set matching all of ``by`` matches ``matcher``."""
    for other in by:
        if other.name != matcher.name:
            continue
        if (other.op, other.value) == (matcher.op, matcher.value):
            return True
        # other pins the label to one value: matcher holds for it or never does.
        if other.op == "=" and matcher.matches({other.name: other.value}):
            return True
    return False


def _objective(slo: Slo, loc: Loc, doc: Document) -> None:
    objective = slo.objective
    if objective is not None and objective < 1:
        meant = round(objective * 100, 9)
        doc.warn(
            loc,
            f"is in percent: {show(objective)} lets the journey be degraded "
            f"{show(round(100 - objective, 9))}% of the window and still meet it "
            f"(did you mean {show(meant)}?)",
        )
