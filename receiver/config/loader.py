"""Load and check both config files; every problem comes back as ``file:line: path: reason``."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from receiver.config.action_templates import check_action_templates
from receiver.config.fields import FieldIssues, Loc, parse_duration, show
from receiver.config.journeys_yaml import JourneysConfig
from receiver.config.mistakes import mistakes
from receiver.config.receiver_yaml import (
    ATTEMPT_SHARE,
    DEFAULT_JOURNEYS_FILE,
    RUN_TIMEOUTS_PER_LEASE,
    AuthConfig,
    ReceiverConfig,
)
from receiver.config.secret_files import models_in, read_secret_files, secret_field_names
from receiver.config.source import Document, read_document
from receiver.config.units import unitless_durations
from receiver.enrich import EnrichmentError
from receiver.enrich.promql import placeholders
from receiver.errors import ConfigError, ConfigProblem

M = TypeVar("M", bound=BaseModel)


def load_receiver_config(path: Path | str) -> ReceiverConfig:
    """Read ``receiver.yaml``; ``ConfigError`` lists every problem in it."""
    config, doc = _read_receiver(Path(path))
    return _valid(config, doc.problems)


def load_journeys(
    path: Path | str, served_with: ReceiverConfig | None = None, *, offline: bool = False
) -> JourneysConfig:
    """Read ``journeys.yaml``; ``ConfigError`` lists every problem in it. ``served_with``:
    the receiver config it runs under (its defaults, without a receiver.yaml), whose
    group_by its KPI queries are checked against, as ``check`` does. ``offline``: for a
    command that sends nothing, an unset ``${PD_KEY}`` (a routing key) reads as empty."""
    journeys, doc = _read(Path(path), JourneysConfig, offline)
    if journeys is not None and served_with is not None:
        _check_served(served_with, journeys, doc)
    return _valid(journeys, doc.problems)


def load(
    config_path: Path | str, journeys_path: Path | str | None = None, *, offline: bool = False
) -> tuple[ReceiverConfig, JourneysConfig]:
    """Read both files (journeys from ``journeys_file`` unless given); problems of both.
    ``offline``: for a command that neither listens nor sends (``explain``), an unset
    ``${VAR}`` reads as empty and a receiver.yaml with no write credential is no problem."""
    config, journeys, doc, journeys_doc = _read_both(
        Path(config_path), _path(journeys_path), offline
    )
    problems = doc.problems + journeys_doc.problems
    if problems:
        raise ConfigError(problems)
    assert config is not None
    assert journeys is not None
    return config, journeys


def load_auth(path: Path | str, fields: Sequence[str]) -> AuthConfig:
    """``fields`` of ``server.auth`` in receiver.yaml (token lists), ``${VAR}`` and
    ``*_file`` resolved, the rest of ``AuthConfig`` at its defaults: the credentials a
    client of the receiver may use, whatever the rest of the file needs (the sinks'
    secrets, the other roles' tokens). ``ConfigError`` for problems in those fields."""
    doc = read_document(Path(path))
    if doc.problems and doc.data is None:
        raise ConfigError(doc.problems)
    server = doc.data.get("server") if isinstance(doc.data, dict) else None
    auth = server.get("auth") if isinstance(server, dict) else None
    wanted = {*fields, *(f"{name}_file" for name in fields)}
    taken = {k: v for k, v in auth.items() if k in wanted} if isinstance(auth, dict) else {}
    doc.data = {"server": {"auth": taken}}
    read_secret_files(doc, ReceiverConfig)
    paths = tuple(f"server.auth.{name}" for name in fields)
    found: AuthConfig | None = None
    try:
        found = AuthConfig.model_validate(doc.data["server"]["auth"])
    except ValidationError as exc:
        _add_validation_problems(
            doc,
            exc.errors(),
            ReceiverConfig,
            secret_field_names(ReceiverConfig),
            ("server", "auth"),
        )
    problems = [p for p in doc.problems if p.path.startswith(paths)]
    if problems or found is None:
        raise ConfigError(problems or doc.problems)
    return found


def check(
    config_path: Path | str | None,
    journeys_path: Path | str | None = None,
    group_by: list[str] | None = None,
    lease: float | None = None,
) -> list[ConfigProblem]:
    """Problems of both files, none when they are valid; without ``config_path`` the
    defaults of receiver.yaml (``group_by`` and ``outbox.lease`` when given) are checked
    with ``journeys_path`` (or ./journeys.yaml)."""
    return review(config_path, journeys_path, group_by, lease)[0]


def written_lease(outbox: object) -> float | None:
    """``outbox.lease`` as a receiver.yaml's ``outbox`` section (``outbox``) writes it, for
    checking journeys without the rest of that file; None without one, or when it is no
    lease at all (the operators' own check says so)."""
    try:
        lease = parse_duration(outbox.get("lease") if isinstance(outbox, dict) else None)
    except ValueError:
        return None
    return lease if lease > 0 else None


def review(
    config_path: Path | str | None,
    journeys_path: Path | str | None = None,
    group_by: list[str] | None = None,
    lease: float | None = None,
) -> tuple[list[ConfigProblem], list[ConfigProblem]]:
    """``check``'s problems, and its warnings: what the files may hold but almost surely
    do not mean (``receiver/config/mistakes.py``). Said by ``check``, never refused: a
    file that loaded before still loads."""
    if config_path is None:
        # Checked alone, as a team lead does (the secrets it names are the operators').
        path = _path(journeys_path) or DEFAULT_JOURNEYS_FILE
        journeys, doc = _read(path, JourneysConfig, offline=True)
        if journeys is not None:
            served = ReceiverConfig()
            if group_by is not None:
                grouping = served.grouping.model_copy(update={"group_by": group_by})
                served = served.model_copy(update={"grouping": grouping})
            if lease is not None:
                outbox = served.outbox.model_copy(update={"lease": lease})
                served = served.model_copy(update={"outbox": outbox})
            _check_served(served, journeys, doc)
        docs = [doc]
    else:
        config, journeys, receiver_doc, doc = _read_both(Path(config_path), _path(journeys_path))
        if config is not None:
            unitless_durations(config, receiver_doc)
        docs = [receiver_doc, doc]
    if journeys is not None and not doc.problems:
        unitless_durations(journeys, doc)
        mistakes(journeys, doc)
    problems = [p for d in docs for p in d.problems]
    refused = {(p.file, p.path) for p in problems}
    # A value that is also refused is said once, with the error.
    warnings = [w for d in docs for w in d.warnings if (w.file, w.path) not in refused]
    return problems, sorted(warnings, key=lambda w: (w.file, w.line or 0))


def _path(path: Path | str | None) -> Path | None:
    return None if path is None else Path(path)


def _read_both(
    config_path: Path, journeys_path: Path | None, offline: bool = False
) -> tuple[ReceiverConfig | None, JourneysConfig | None, Document, Document]:
    config, doc = _read_receiver(config_path, offline)
    if journeys_path is None and config is not None:
        journeys_path = config.journeys_file
    elif journeys_path is None:
        # receiver.yaml is invalid, but the journeys file it names is still worth checking.
        named = doc.data.get("journeys_file") if isinstance(doc.data, dict) else None
        journeys_path = Path(named) if isinstance(named, str) and named else _next_to(config_path)
    journeys, journeys_doc = _read(journeys_path, JourneysConfig, offline)
    if config is not None and journeys is not None:
        _check_served(config, journeys, journeys_doc)
        if journeys_doc.problems:
            journeys = None
    return config, journeys, doc, journeys_doc


def _check_served(config: ReceiverConfig, journeys: JourneysConfig, doc: Document) -> None:
    """What ``journeys`` may hold under the receiver.yaml that serves it; its problems
    go on ``doc``, the journeys file, at the line to change."""
    _check_kpi_queries(config, journeys, doc)
    _check_run_timeouts(config, journeys, doc)
    check_action_templates(config, journeys, doc)
    doc.problems.sort(key=lambda problem: problem.line or 0)


def _check_run_timeouts(config: ReceiverConfig, journeys: JourneysConfig, doc: Document) -> None:
    """A run is an outbox job, each attempt cut at ATTEMPT_SHARE of ``outbox.lease``: with
    a ``run.webhook.timeout`` past that, a run answered within its own timeout could be cut
    short, recorded as one that may have happened, and sent again."""
    lease = config.outbox.lease
    for i, journey in enumerate(journeys.journeys):
        for j, action in enumerate(journey.actions):
            if action.run is None:
                continue
            timeout = action.run.webhook.timeout
            if lease >= RUN_TIMEOUTS_PER_LEASE * timeout:
                continue
            doc.add(
                ("journeys", i, "actions", j, "run", "webhook", "timeout"),
                f"{show(timeout)}s needs outbox.lease (receiver.yaml, {show(lease)}s) to be at "
                f"least {show(RUN_TIMEOUTS_PER_LEASE)} times it, "
                f"{show(RUN_TIMEOUTS_PER_LEASE * timeout)}s: the outbox cuts each attempt "
                f"at {show(ATTEMPT_SHARE)} of the lease, which must hold the call and room "
                "to read the incident and record the run; a run cut short is sent again as "
                "one that may have happened. Raise outbox.lease, or shorten the timeout",
            )


def _check_kpi_queries(config: ReceiverConfig, journeys: JourneysConfig, doc: Document) -> None:
    """A KPI query may only use labels every incident of its journey has (its group_by):
    said here, at load time, rather than as a note on an incident in the middle of one."""
    for i, journey in enumerate(journeys.journeys):
        group_by = journey.group_by if journey.group_by is not None else config.grouping.group_by
        for j, kpi in enumerate(journey.kpis):
            for field in ("query", "revenue_query"):
                query = getattr(kpi, field)
                if query is None:
                    continue
                loc = ("journeys", i, "kpis", j, field)
                try:
                    used = placeholders(query)
                except EnrichmentError as exc:
                    doc.add(loc, str(exc))
                    continue
                missing = sorted(used - set(group_by))
                if missing:
                    names = ", ".join(f"${name}" for name in missing)
                    doc.add(
                        loc,
                        f"uses {names}, which is not among the journey's group_by labels "
                        f"({', '.join(group_by) or 'none'}): an incident would not have it",
                    )


def _read_receiver(path: Path, offline: bool = False) -> tuple[ReceiverConfig | None, Document]:
    config, doc = _read(path, ReceiverConfig, offline)
    if config is not None and not offline and _open_by_mistake(config):
        doc.add(
            ("server", "auth", "bearer_tokens"),
            "no write credential is configured (an unset ${WEBHOOK_TOKEN:-}?): anyone who "
            "can reach the port could post alerts and events. Set a token (or basic), or "
            "server.auth.allow_open: true to run open on purpose (the example config reads "
            "it from ${ALLOW_OPEN})",
        )
        return None, doc
    if config is not None and "journeys_file" not in config.model_fields_set:
        # A journeys_file given in the file is already relative to it (see source.py).
        config = config.model_copy(update={"journeys_file": _next_to(path)})
    return config, doc


def _open_by_mistake(config: ReceiverConfig) -> bool:
    auth = config.server.auth
    return not (auth.bearer_tokens or auth.basic or auth.allow_open)


def _next_to(config_path: Path) -> Path:
    return config_path.parent / DEFAULT_JOURNEYS_FILE


def _kpi_query(loc: Loc) -> bool:
    """A KPI's PromQL, whose ``${name}`` is a group label of the incident (README
    "Context"), filled in per incident: never an environment variable."""
    return (
        len(loc) == 5
        and loc[0] == "journeys"
        and loc[2] == "kpis"
        and loc[4] in ("query", "revenue_query")
    )


def _read(path: Path, model: type[M], offline: bool = False) -> tuple[M | None, Document]:
    verbatim = _kpi_query if model is JourneysConfig else None
    doc = read_document(path, unset_is_empty=offline, verbatim=verbatim)
    if doc.problems and doc.data is None:  # unreadable or not YAML
        return None, doc
    if doc.data is None:  # a file holding only `null` or comments
        doc.data = {}
    read_secret_files(doc, model, offline=offline and model is ReceiverConfig)
    result: M | None = None
    try:
        result = model.model_validate(doc.data)
    except ValidationError as exc:
        _add_validation_problems(doc, exc.errors(), model, secret_field_names(model))
    doc.problems.sort(key=lambda problem: problem.line or 0)
    return (None if doc.problems else result), doc


def _valid(config: M | None, problems: list[ConfigProblem]) -> M:
    if problems or config is None:
        raise ConfigError(problems)
    return config


def _add_validation_problems(
    doc: Document,
    errors: list[ErrorDetails],
    model: type[BaseModel],
    secrets: frozenset[str],
    prefix: Loc = (),
) -> None:
    for error in errors:
        loc: Loc = (*prefix, *error["loc"])
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, FieldIssues):
            if cause.field_errors is not None:
                _add_validation_problems(doc, cause.field_errors.errors(), model, secrets, loc)
            for issue in cause.issues:
                reason = issue.reason
                if issue.first is not None:
                    reason += f" (first at line {doc.line((*loc, *issue.first))})"
                doc.add((*loc, *issue.loc), reason)
            continue
        if loc and loc[-1] == "[key]":
            loc = loc[:-1]
        if doc.covers(loc):  # already reported, e.g. as an unset environment variable
            continue
        kind = error["type"]
        if kind == "missing":
            doc.add(loc, "is required", line=doc.line(loc[:-1]))
        else:
            secret = any(part in secrets for part in loc)
            reason = _reason(error, secret)
            written = doc.written.get(loc)
            if not secret and written is not None and kind in _WANTS_TEXT:
                reason += _as_written(written, error["input"])
            if kind == "extra_forbidden" and isinstance(loc[-1], str):
                reason += _did_you_mean(loc[-1], _fields_at(model, loc[:-1]))
            if model is JourneysConfig and not loc and isinstance(error["input"], list):
                reason += " (the list of journeys goes under journeys:)"
            doc.add(loc, reason, key=kind == "extra_forbidden")


def _fields_at(model: type[BaseModel], loc: Loc) -> set[str]:
    """The field names the models at ``loc`` under ``model`` have (list indexes and
    mapping keys pass through to their items' models)."""
    models = [model]
    for part in loc:
        annotations = [m.model_fields[part].annotation for m in models if part in m.model_fields]
        if annotations:
            models = [found for a in annotations for found in models_in(a)]
    return {name for m in models for name in m.model_fields}


def _did_you_mean(given: str, known: set[str]) -> str:
    """`` (did you mean weight?)`` for a misspelt field name, else nothing."""
    close = difflib.get_close_matches(given, sorted(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


# What a value YAML did not read as text fails with when the field wants text: a string,
# one of some words, or a matcher string.
_WANTS_TEXT = frozenset({"string_type", "literal_error", "value_error"})


def _as_written(text: str, value: object) -> str:
    """`` (YAML reads NO as false; write "NO" for the text)``: the error names the value
    YAML made, which is not what the file shows."""
    if value is None:
        return f" (YAML reads {text} after a space as a comment; write {show(text)} for the text)"
    if isinstance(value, date):
        made = "a date"
    elif text == show(value):
        return ""  # written as shown: nothing YAML did behind the author's back
    elif isinstance(value, bool):
        made = show(value)
    else:
        made = f"the number {show(value)}"
    return f" (YAML reads {text} as {made}; write {show(text)} for the text)"


_EXPECTED = {
    "int_parsing": "an integer",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_parsing": "a number",
    "float_type": "a number",
    "finite_number": "a finite number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
_BOUNDS = {
    "greater_than_equal": ("is below the minimum", "ge"),
    "less_than_equal": ("is above the maximum", "le"),
    "greater_than": ("must be greater than", "gt"),
    "less_than": ("must be less than", "lt"),
}


def _reason(error: ErrorDetails, secret: bool) -> str:
    """pydantic's message as a short sentence; secret values are never repeated."""
    kind = error["type"]
    ctx: dict[str, Any] = error.get("ctx", {})
    shown = "the value" if secret else show(error["input"])
    got = "" if secret else f", got {shown}"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}{got}"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "value_error":
        return str(ctx["error"])
    if kind == "literal_error":
        expected = str(ctx["expected"]).replace("'", '"')
        return f"expected {expected}{got}"
    if kind in ("string_too_short", "too_short"):
        return "must not be empty"
    if kind == "string_pattern_mismatch":
        return f"{shown} does not match {ctx['pattern']}"
    if kind in ("path_not_file", "path_type"):
        return f"{shown} is not a file"
    if kind in _BOUNDS:
        words, key = _BOUNDS[kind]
        return f"{shown} {words} {show(ctx[key])}"
    return error["msg"]
