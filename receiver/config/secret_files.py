"""``X_file`` siblings of secret fields: the secret is read from a file (Kubernetes secrets).

``password_file: /run/secrets/pw`` stands for ``password: <file content>`` with the
trailing newline stripped; ``bearer_tokens_file`` holds one token per non-empty line.
Which fields are secret is read off the models (``SecretStr``), so a new secret field gets
its ``_file`` sibling without touching this module.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr

from receiver.config.fields import Loc
from receiver.config.source import Document

_Kind = Literal["one", "lines"]


OFFLINE_STAND_IN = "(not read: offline)"
"""A secret's value for a command that neither listens nor sends (``explain``): the config
must load whatever secrets the operators keep, and none is ever used."""


def read_secret_files(doc: Document, model: type[BaseModel], offline: bool = False) -> None:
    """Replace every ``X_file`` key of ``doc.data`` by ``X`` read from that file; ``offline``:
    every secret not set (an unset ``${VAR}``, an unreadable file) by ``OFFLINE_STAND_IN``."""
    _walk(doc, doc.data, model, (), offline)


def secret_field_names(model: type[BaseModel]) -> frozenset[str]:
    """Names of the fields, at any depth, whose values must never appear in a message."""
    names: set[str] = set()
    for name, info in model.model_fields.items():
        if _mentions_secret(info.annotation):
            names.add(name)
        for sub in models_in(info.annotation):
            names |= secret_field_names(sub)
    return frozenset(names)


def _walk(doc: Document, data: Any, model: type[BaseModel], loc: Loc, offline: bool) -> None:
    if not isinstance(data, dict):
        return  # validation reports the wrong shape
    for name, info in model.model_fields.items():
        kind = _secret_kind(info.annotation)
        if kind is not None and f"{name}_file" in data:
            if offline:
                data.pop(f"{name}_file")
                data.setdefault(name, "")
            else:
                _read_into(doc, data, name, kind, loc)
        if offline and kind == "one" and data.get(name) == "":
            data[name] = OFFLINE_STAND_IN
        for sub, item, item_loc in _nested(info.annotation, data.get(name), (*loc, name)):
            _walk(doc, item, sub, item_loc, offline)


def _read_into(doc: Document, data: dict[str, Any], name: str, kind: _Kind, loc: Loc) -> None:
    key = f"{name}_file"
    where = (*loc, key)
    path = data.pop(key)
    if name in data:
        doc.add(where, f"set {name} or {key}, not both")
        return
    # An empty stand-in keeps validation from adding "is required" to the real problem.
    data[name] = [] if kind == "lines" else ""
    if doc.covers(where):  # e.g. an unset variable in the path: nothing sensible to read
        return
    if not isinstance(path, str) or not path:
        doc.add(where, "expected a file path")
        return
    try:
        # utf-8-sig: a file saved "UTF-8 with BOM" (Windows) must not glue it to the secret.
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        doc.add(where, f"cannot read {path}: {reason}")
        return
    if not text.strip():
        # Never "none configured": an empty Secret mounted here is a mistake, and an empty
        # read_bearer_tokens_file would open every read endpoint without a word.
        doc.add(
            where,
            f"{path} is empty: put the {name.removesuffix('s')} in it, one a line"
            if kind == "lines"
            else f"{path} is empty: put the {name} in it",
        )
        return
    if kind == "lines":
        data[name] = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        data[name] = text.rstrip("\r\n")
    doc.lines[(*loc, name)] = doc.lines[where]


def _unwrap(annotation: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` -> ``X``."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            rest = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(rest) != 1:
                return annotation
            annotation = rest[0]
        else:
            return annotation


def _secret_kind(annotation: Any) -> _Kind | None:
    annotation = _unwrap(annotation)
    if annotation is SecretStr:
        return "one"
    if get_origin(annotation) is list and _unwrap(get_args(annotation)[0]) is SecretStr:
        return "lines"
    return None


def _mentions_secret(annotation: Any) -> bool:
    return annotation is SecretStr or any(_mentions_secret(a) for a in get_args(annotation))


def _members(annotation: Any) -> list[Any]:
    """The alternatives of a union of several types (``A | B``), else just the type."""
    annotation = _unwrap(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        return [_unwrap(arg) for arg in get_args(annotation) if arg is not type(None)]
    return [annotation]


def models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    """The models an annotation holds: itself, a union's members, a list's or dict's items."""
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            yield member
        elif get_origin(member) in (list, dict):
            yield from models_in(get_args(member)[-1])


def _pick(annotation: Any, value: Any) -> Any:
    """The member of a union of models that ``value`` is, told by its ``type`` literal."""
    members = _members(annotation)
    if len(members) == 1:
        return members[0]
    kind = value.get("type") if isinstance(value, dict) else None
    for member in members:
        if isinstance(member, type) and issubclass(member, BaseModel):
            field = member.model_fields.get("type")
            if field is not None and kind in get_args(field.annotation):
                return member
    return None


def _nested(annotation: Any, value: Any, loc: Loc) -> Iterator[tuple[type[BaseModel], Any, Loc]]:
    """The sub-models inside ``value``, with their locations, as the annotation lays them out."""
    annotation = _pick(annotation, value)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, value, loc
    elif get_origin(annotation) is list and isinstance(value, list):
        for i, item in enumerate(value):
            yield from _nested(get_args(annotation)[0], item, (*loc, i))
    elif get_origin(annotation) is dict and isinstance(value, dict):
        for key, item in value.items():
            yield from _nested(get_args(annotation)[1], item, (*loc, key))
