"""What ``journeys.yaml`` may hold but almost surely does not mean: ``check``'s warnings.

Each is valid, so a file that loaded before still loads, and serve runs it as written;
but as written it misbehaves without a word: a stage no alert can reach (an earlier stage
takes all its alerts, or its own matchers contradict each other), a matcher value that
keeps its quotes (``service='payment'`` compares the label with ``'payment'``), a label
name in another case than the label's (``Service``), a regex matcher with no regex in it
(anchored, ``=~"payment"`` matches ``payment`` only), an SLO objective written as a ratio
(``0.999``, where the field is in percent), an ``assist`` journey whose runnable actions
nobody may run (no ``owner.responders``), a weight of 0 (the score is a product: every
incident scores 0), a ``revenue_per_unit`` of 0, a ``when.change_type`` a letter off a
documented type (``deploi``), a ``{field}`` in a value that is no template (runbooks, the
Slack channel).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from receiver.act.template import TITLE_FIELD
from receiver.config.fields import Loc, show
from receiver.config.journeys_yaml import Journey, JourneysConfig, Slo
from receiver.config.source import Document
from receiver.events import DOCUMENTED_TYPES
from receiver.matchers import Matcher

_QUOTES = ("'", '"')
# What a regex has that a plain value has not (RE2 syntax).
_REGEX_SYNTAX = re.compile(r"[.^$*+?()\[\]{}|\\]")
# Labels an alert carries under these names (the receiver reads them: service, app, job,
# severity, tier, the default group_by), whatever else the file names.
_COMMON_LABELS = frozenset(
    {"alertname", "service", "app", "job", "severity", "tier", "env", "region"}
)
# An action's {region}; a KPI query's ${region} is not one.
_ACTION_FIELD = re.compile(r"(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)\}")
_WEIGHTED = "a weight says how much it matters, 1 the most, and the score is a product of weights"


def mistakes(journeys: JourneysConfig, doc: Document) -> None:
    """Warn on ``doc`` of every likely mistake in ``journeys`` (read from ``doc``)."""
    taken: list[tuple[Loc, str, Sequence[Matcher]]] = []
    labels = _labels_named(journeys)
    for i, journey in enumerate(journeys.journeys):
        if journey.weight == 0:
            doc.warn(
                ("journeys", i, "weight"),
                "0 scores every incident of the journey 0, the lowest priority, however "
                f"bad: {_WEIGHTED}",
            )
        for k, label in enumerate(journey.group_by or []):
            _label_case(
                label, labels, ("journeys", i, "group_by", k), doc, f"{label} never groups by"
            )
        for j, stage in enumerate(journey.stages):
            at: Loc = ("journeys", i, "stages", j, "match")
            if stage.weight == 0:
                doc.warn(
                    ("journeys", i, "stages", j, "weight"),
                    "0 scores the stage's alerts 0: an incident of them alone gets the lowest "
                    f"priority, however bad: {_WEIGHTED}",
                )
            for k, matcher in enumerate(stage.match):
                _matcher(matcher, (*at, k), labels, doc)
            unreachable = _contradiction(stage.match) or _shadowed(stage.match, taken, doc)
            if unreachable:
                doc.warn(at, f"no alert can reach this stage: {unreachable}")
            taken.append((at[:-1], f"{journey.id}/{stage.id}", stage.match))
        for j, runbook in enumerate(journey.runbooks):
            for k, matcher in enumerate(runbook.match):
                _matcher(matcher, ("journeys", i, "runbooks", j, "match", k), labels, doc)
        _not_templates(journey, ("journeys", i), doc)
        _journey_values(journey, ("journeys", i), doc)
        _objective(journey.slo, ("journeys", i, "slo", "objective"), doc)
        runnable = any(action.run is not None for action in journey.actions)
        if journey.automation == "assist" and runnable and not journey.owner.responders:
            doc.warn(
                ("journeys", i, "automation"),
                "assist offers Run to owner.responders only, and it names no one: every "
                "press is refused (name the Slack user ids or e-mails of who may run them)",
            )
    _objective(journeys.unmapped.slo, ("unmapped", "slo", "objective"), doc)


def _labels_named(journeys: JourneysConfig) -> frozenset[str]:
    """The label names the file uses, as written, and those every alert may carry."""
    named = {*_COMMON_LABELS, *(journeys.unmapped.group_by or [])}
    for journey in journeys.journeys:
        named.update(journey.group_by or [])
        matchers = [m for stage in journey.stages for m in stage.match]
        matchers += [m for runbook in journey.runbooks for m in runbook.match]
        named.update(m.name for m in matchers)
    return frozenset(named)


def _matcher(matcher: Matcher, loc: Loc, labels: frozenset[str], doc: Document) -> None:
    _label_case(matcher.name, labels, loc, doc, f"{matcher} never matches")
    if not _quoted(matcher, loc, doc):  # its quotes are the mistake to say first
        _unanchored(matcher, loc, doc)


def _label_case(name: str, labels: frozenset[str], loc: Loc, doc: Document, said: str) -> None:
    """``Service`` where the file (or every alert) has ``service``: label names are
    case-sensitive, as in Prometheus."""
    meant = name.lower()
    if meant != name and meant in labels:
        doc.warn(
            loc,
            f"label names are case-sensitive: {said} an alert's {meant} label "
            f"(did you mean {meant}?)",
        )


def _unanchored(matcher: Matcher, loc: Loc, doc: Document) -> None:
    """``service=~"payment"``: anchored at both ends, as in Alertmanager, a regex with no
    regex in it is the value alone, which reads as if it matched every value holding it."""
    value = matcher.value
    if matcher.op not in ("=~", "!~") or not value or _REGEX_SYNTAX.search(value):
        return
    verb = "matches" if matcher.op == "=~" else "excludes"
    wider = Matcher(matcher.name, matcher.op, value + ".*")
    doc.warn(
        loc,
        f"{matcher} {verb} the value {value} only: regexes are anchored, as in Alertmanager "
        f"({wider} for every value that starts with it)",
    )


def _not_templates(journey: Journey, at: Loc, doc: Document) -> None:
    """A ``{field}`` in a value that is sent or shown as written (only an action's title
    and run are templates)."""
    values: list[tuple[Loc, str | None, str, str]] = [
        ((*at, "owner", "slack_channel"), journey.owner.slack_channel, "sent", "slack_channel")
    ]
    for j, runbook in enumerate(journey.runbooks):
        where: Loc = (*at, "runbooks", j)
        values.append(((*where, "title"), runbook.title, "shown", "a runbook's title"))
        values.append(((*where, "url"), runbook.url, "sent", "a runbook's url"))
    for loc, value, verb, what in values:
        found = TITLE_FIELD.search(value or "")
        if found is not None:
            doc.warn(loc, f"{found.group(0)} is {verb} as written: {what} is not a template")


def _journey_values(journey: Journey, at: Loc, doc: Document) -> None:
    """A KPI query naming a label the way an action does, KPI revenue that is none, and
    a ``change_type`` a letter off a documented type."""
    for j, kpi in enumerate(journey.kpis):
        for field in ("query", "revenue_query"):
            # Outside a string, {region} is no PromQL at all; inside one, it is the text.
            found = _ACTION_FIELD.search(getattr(kpi, field) or "")
            if found is not None:
                name = found.group(1)
                doc.warn(
                    (*at, "kpis", j, field),
                    f"{found.group(0)} is sent to Prometheus as written: a KPI query names a "
                    f'label of the incident as ${name} ({name}="${name}")',
                )
        if kpi.revenue_per_unit == 0:
            doc.warn(
                (*at, "kpis", j, "revenue_per_unit"),
                "0 puts no revenue at risk, however far the KPI falls (leave it out if the "
                "KPI earns nothing)",
            )
    for j, action in enumerate(journey.actions):
        kind = action.when.change_type
        if kind is None or kind in DOCUMENTED_TYPES:
            continue
        # A letter off only: a word holding a documented one (redeploy, deployment,
        # upscale) is a tool's own, not a typo.
        close = next((t for t in DOCUMENTED_TYPES if _a_letter_off(kind, t)), None)
        if close:
            doc.warn(
                (*at, "actions", j, "when", "change_type"),
                f"no change event is of type {show(kind)} unless a tool sends that word: "
                f"the action waits for one (did you mean {close}?)",
            )


def _a_letter_off(written: str, meant: str) -> bool:
    """Whether ``written`` is ``meant`` with one letter added, dropped or changed, or two
    neighbours swapped."""
    if abs(len(written) - len(meant)) > 1:
        return False
    start = next(
        (i for i, (a, b) in enumerate(zip(written, meant, strict=False)) if a != b),
        min(len(written), len(meant)),
    )
    w, m = written[start:], meant[start:]
    return (
        w[1:] == m[1:]  # changed (or both ended: the same word)
        or w[1:] == m  # added
        or w == m[1:]  # dropped
        or (len(w) > 1 and w[0] == m[1] and w[1] == m[0] and w[2:] == m[2:])  # swapped
    )


def _quoted(matcher: Matcher, loc: Loc, doc: Document) -> bool:
    """Warn of a matcher value that keeps its quotes; whether it did."""
    value = matcher.value
    if not (len(value) >= 2 and value[0] == value[-1] and value[0] in _QUOTES):
        return False
    try:
        meant = f" (did you mean {Matcher(matcher.name, matcher.op, value[1:-1])}?)"
    except ValueError:  # a regex whose closing quote is escaped ('error\'): none left
        meant = ""
    doc.warn(loc, f"{matcher} compares the label with {value}, quotes included{meant}")
    return True


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
