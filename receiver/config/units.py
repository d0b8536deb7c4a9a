"""Durations written without a unit: valid (read as seconds), and a warning of ``check``.

``within: 15`` is 15 seconds, ``baseline_offset: 7`` seven seconds, ``reopen_window: 30``
half a minute: nothing says which unit the writer had in mind, and Prometheus and
Alertmanager, whose syntax the files borrow, refuse a duration without one. 0 is 0 in
every unit.
"""

from __future__ import annotations

import math
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, BeforeValidator
from pydantic.fields import FieldInfo

from receiver.config.fields import Loc, parse_duration, show
from receiver.config.source import Document

_UNITS = ((86400, "d"), (3600, "h"), (60, "m"), (1, "s"))


def unitless_durations(config: BaseModel, doc: Document) -> None:
    """Warn on ``doc`` (the file ``config`` was read from) of every duration in it
    written as a bare number."""
    _walk(config, (), doc)


def _walk(model: BaseModel, loc: Loc, doc: Document) -> None:
    for name, info in type(model).model_fields.items():
        key = info.alias or name
        if key not in model.model_fields_set:
            continue  # the default, not written
        here: Loc = (*loc, key)
        if _is_duration(info):
            _bare(_written(doc.data, here), here, doc)
        _nested(getattr(model, name), here, doc)


def _nested(value: object, loc: Loc, doc: Document) -> None:
    if isinstance(value, BaseModel):
        _walk(value, loc, doc)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _nested(item, (*loc, index), doc)
    elif isinstance(value, dict):
        for key, item in value.items():
            _nested(item, (*loc, key), doc)


def _written(data: object, loc: Loc) -> object:
    """The value at ``loc`` of the file's data, as YAML read it."""
    for part in loc:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def _bare(value: object, loc: Loc, doc: Document) -> None:
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return  # has a unit (or is refused already)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        return
    if number == 0 or not math.isfinite(number):
        return
    seconds = show(number)
    if number.is_integer():
        # What it is read as, in the largest unit that says it exactly (120 is 2m).
        size, unit = next((n, u) for n, u in _UNITS if number % n == 0)
        fix = f"write {show(number // size)}{unit}, or the unit meant"
        if number < 60:
            fix += f" ({seconds}m, {seconds}h, {seconds}d)"
    elif math.isclose(number * 1000, millis := round(number * 1000), rel_tol=0, abs_tol=1e-6):
        # Each unit takes a whole number (1.5s is refused): 1.5 is 1500ms (1.1 * 1000 is
        # 1100.0000000000002 in floating point).
        fix = f"write {millis}ms, or the unit meant"
    else:
        fix = "write the unit meant"  # finer than a millisecond: no unit says it
    said = "1 second" if number == 1 else f"{seconds} seconds"
    doc.warn(
        loc,
        f"{show(value)} is read as {said}: {fix}, as Prometheus and Alertmanager ask",
    )


def _is_duration(info: FieldInfo) -> bool:
    return _parses_duration(info.metadata) or _annotated_duration(info.annotation)


def _parses_duration(metadata: list[Any] | tuple[Any, ...]) -> bool:
    return any(isinstance(m, BeforeValidator) and m.func is parse_duration for m in metadata)


def _annotated_duration(annotation: Any) -> bool:
    """``PositiveDuration | None`` keeps its validators inside the union."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _parses_duration(get_args(annotation)[1:]) or _annotated_duration(
            get_args(annotation)[0]
        )
    if origin in (Union, types.UnionType):
        return any(_annotated_duration(arg) for arg in get_args(annotation))
    return False
