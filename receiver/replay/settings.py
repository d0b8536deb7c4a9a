"""The receiver's settings for a replay, read without the receiver's secrets.

A replay runs in CI on a pull request that edits ``journeys.yaml``, where
``${WEBHOOK_TOKEN}``, the sinks' credentials and Redis are not there. So only the sections
a decision depends on are taken from ``receiver.yaml`` — ``grouping``, ``scoring``,
``scheduler``, ``routing`` and ``journeys_file`` — and validated with the receiver's own
models; the rest (server, store, sinks, prometheus, alertmanager, ...) is never read, and
an unset variable there is no error. ``routing`` keeps the sink names it gives without
needing those sinks configured: nothing is delivered, the names only say where an incident
would have gone (a page is one that reached ``pagerduty``). ``journeys.yaml`` is loaded
and checked in full, as ``journey-receiver check --journeys`` does: against that
``grouping`` and, as written, ``outbox.lease``.

With ``--context`` the ``prometheus`` and ``events`` sections are read too (their
``${VARIABLES}`` then must be set): the replay reads KPIs and change feeds as the
receiver does (``context.py``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, TypeAdapter, ValidationError

from receiver import config
from receiver.config.fields import Priority
from receiver.config.receiver_yaml import DEFAULT_JOURNEYS_FILE
from receiver.config.source import Document, read_document
from receiver.errors import ConfigError
from receiver.settings import Settings

SECTIONS = ("grouping", "scoring", "scheduler")
CONTEXT_SECTIONS = ("prometheus", "events")


def _sink_name(name: str) -> str:
    # The sinks need not be configured (nothing is delivered), but a name that is no sink
    # at all is a typo, and would route nothing where the author meant it to.
    known = tuple(config.SinksConfig.model_fields)
    if name not in known:
        raise ValueError(f"not a sink: one of {', '.join(known)}")
    return name


_ROUTING: TypeAdapter[dict[str, list[Priority]]] = TypeAdapter(
    dict[Annotated[str, AfterValidator(_sink_name)], list[Priority]]
)


def replay_settings(
    config_path: Path | None, journeys_path: Path | None, *, context: bool = False
) -> Settings:
    """Settings from the used sections of ``config_path`` (defaults without one) and the
    journeys of ``journeys_path`` (else the config's ``journeys_file``); ``ConfigError``
    naming file and line otherwise. ``context``: the ``prometheus`` and ``events``
    sections too."""
    sections = (*SECTIONS, *CONTEXT_SECTIONS) if context else SECTIONS
    data: dict[str, Any] = {}
    doc: Document | None = None
    if config_path is not None:
        doc = read_document(config_path)
        wanted = (*sections, "routing", "journeys_file")
        problems = [p for p in doc.problems if p.path.split(".")[0].split("[")[0] in wanted]
        if doc.data is None or problems:
            raise ConfigError(problems or doc.problems)
        data = doc.data if isinstance(doc.data, dict) else {}
    taken = {name: data[name] for name in sections if name in data}
    # Open on purpose: nothing listens, and the auth section is never read.
    taken["server"] = {"auth": {"allow_open": True}}
    try:
        cfg = config.ReceiverConfig.model_validate(taken)
    except ValidationError as exc:
        raise _problems(exc, (), doc, config_path) from exc
    try:
        routing = _ROUTING.validate_python(data.get("routing", cfg.routing))
    except ValidationError as exc:
        raise _problems(exc, ("routing",), doc, config_path) from exc
    journeys = config.load_journeys(
        _journeys_file(journeys_path, config_path, data), _served(cfg, data), offline=True
    )
    settings = Settings.build(cfg, journeys)
    return dataclasses.replace(
        settings, routing={sink: frozenset(prios) for sink, prios in routing.items()}
    )


def _served(cfg: config.ReceiverConfig, data: dict[str, Any]) -> config.ReceiverConfig:
    """What the journeys are checked against, as ``check --journeys`` does: the group_by
    a KPI query may use, and the ``outbox.lease`` a run's timeout must fit in (read as
    written; an invalid one is the operators' check to refuse)."""
    lease = config.written_lease(data.get("outbox"))
    if lease is None:
        return cfg
    return cfg.model_copy(update={"outbox": cfg.outbox.model_copy(update={"lease": lease})})


def _journeys_file(given: Path | None, config_path: Path | None, data: dict[str, Any]) -> Path:
    if given is not None:
        return given
    # read_document already made a relative journeys_file relative to receiver.yaml.
    named = data.get("journeys_file")
    if isinstance(named, str) and named:
        return Path(named)
    return (config_path.parent if config_path else Path()) / DEFAULT_JOURNEYS_FILE


def _problems(
    exc: ValidationError, prefix: tuple[str, ...], doc: Document | None, path: Path | None
) -> ConfigError:
    where = doc or Document(file=str(path or "receiver.yaml"), base=Path())
    # The document's own problems are of sections a replay never reads.
    known = len(where.problems)
    for error in exc.errors(include_url=False):
        # A mapping's key that is wrong: the key is the place ("[key]" says nothing more).
        loc = tuple(part for part in error["loc"] if part != "[key]")
        where.add((*prefix, *loc), error["msg"].removeprefix("Value error, "))
    return ConfigError(where.problems[known:])
