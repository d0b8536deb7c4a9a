"""How every error names a field: ``journeys[3].stages[0].weight``, ``alerts[0].labels.x``."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

_PLAIN = re.compile(r"[A-Za-z0-9_-]+")
_MAX_PART = 100


def field_path(loc: Sequence[int | str]) -> str:
    """Dotted path of a location; keys that are not plain words are quoted, so a dot or a
    bracket in an (untrusted) label name cannot pass for structure, and cut to 100 chars
    so one cannot inflate the message."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif len(part) <= _MAX_PART and _PLAIN.fullmatch(part):
            path += f".{part}" if path else part
        else:
            shown = part if len(part) <= _MAX_PART else part[:_MAX_PART] + "…"
            path += f"[{json.dumps(shown, ensure_ascii=False)}]"
    return path
