"""Field types shared by both config files: durations, weights, names, secrets, matchers."""

from __future__ import annotations

import json
import math
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    FilePath,
    ModelWrapValidatorHandler,
    PlainSerializer,
    PlainValidator,
    SecretStr,
    ValidationError,
    field_validator,
)

from receiver.matchers import Matcher, parse_matcher
from receiver.tls import ssl_context

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)
Priority = Literal["P1", "P2", "P3", "P4", "P5"]
PRIORITIES: tuple[Priority, ...] = ("P1", "P2", "P3", "P4", "P5")


class ConfigModel(BaseModel):
    """Base of every config section: unknown keys are errors, loaded config is immutable,
    and no number is infinite or NaN (``.inf`` revenue per unit would make every figure
    infinite; a NaN bound would make a condition always hold)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


@dataclass(frozen=True, slots=True)
class FieldIssue:
    """A problem found by a cross-field check, at ``loc`` relative to the checked model.

    ``first`` points at an earlier occurrence (duplicates); the loader shows it as a line.
    """

    loc: Loc
    reason: str
    first: Loc | None = None


class FieldIssues(ValueError):
    """Raised by model validators so that each issue keeps its own location.

    ``field_errors`` holds the model's own validation errors when the cross-field check
    ran on input that also failed validation, so that both are reported at once.
    """

    def __init__(
        self, issues: Sequence[FieldIssue], field_errors: ValidationError | None = None
    ) -> None:
        self.issues = tuple(issues)
        self.field_errors = field_errors
        text = "; ".join(_describe(issue) for issue in self.issues)
        super().__init__(f"{text}\n{field_errors}" if field_errors else text)


def _describe(issue: FieldIssue) -> str:
    path = ".".join(str(part) for part in issue.loc)
    first = f" (first at {'.'.join(str(p) for p in issue.first)})" if issue.first else ""
    return f"{path}: {issue.reason}{first}" if path else issue.reason + first


def raise_issues(issues: Sequence[FieldIssue]) -> None:
    if issues:
        raise FieldIssues(issues)


def check_alongside(
    data: Any, handler: ModelWrapValidatorHandler[M], issues: Sequence[FieldIssue]
) -> M:
    """Validate ``data`` and fail with ``issues``, found in the raw ``data``, and with the
    field errors together; a plain after-validator would only run once fields are valid."""
    try:
        model = handler(data)
    except ValidationError as exc:
        if issues:
            raise FieldIssues(issues, exc) from exc
        raise
    raise_issues(issues)
    return model


def column(data: Any, items: str, key: str) -> list[object]:
    """``data[items][i][key]`` of raw or validated input, None where it is missing."""
    rows = _get(data, items)
    return [_get(row, key) for row in rows] if isinstance(rows, list) else []


def value_at(data: Any, *names: str) -> object:
    """``data[names[0]][names[1]]…`` of raw or validated input, None where it is missing."""
    for name in names:
        data = _get(data, name)
    return data


def _get(data: Any, name: str) -> object:
    if isinstance(data, BaseModel):
        return getattr(data, name, None)
    return data.get(name) if isinstance(data, dict) else None


def show(value: object) -> str:
    """A value as it would be written in YAML, for messages: ``"abc"``, ``-1``, ``true``."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)


# Prometheus duration syntax (model.ParseDuration): units largest first, each at most once.
_UNITS = {"y": 365 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
# ASCII digits only, as Prometheus reads them (\d would read Arabic-Indic digits as numbers).
_DURATION = re.compile("".join(rf"(?:([0-9]+){unit})?" for unit in _UNITS))
_SECONDS = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_DURATION_HELP = "expected seconds or a duration like 500ms, 30s, 2m, 1h30m, 7d, 1w"
MAX_DURATION = "100y"
"""Longer than any timer means; past it a lifetime would overflow what Redis expires by."""


def parse_duration(value: object, maximum: str = MAX_DURATION) -> float:
    """Seconds from a Prometheus-style duration (``1h30m``) or a plain number of seconds,
    at most ``maximum`` (a duration: what the message names)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_duration_text(value.strip())
    else:
        raise ValueError(f"{_DURATION_HELP}, got {show(value)}")
    if not math.isfinite(seconds):
        raise ValueError(f"{_DURATION_HELP}, got {show(value)}")
    if seconds < 0:
        raise ValueError(f"{show(value)} is below the minimum 0")
    if seconds > _parse_duration_text(maximum):
        raise ValueError(f"{show(value)} is longer than the maximum {maximum}")
    return seconds


def _parse_duration_text(text: str) -> float:
    if _SECONDS.fullmatch(text):
        return float(text)
    found = _DURATION.fullmatch(text)
    if not text or found is None:
        raise ValueError(f"{_DURATION_HELP}, got {show(text)}")
    return sum(int(n) * unit for n, unit in zip(found.groups(), _UNITS.values(), strict=True) if n)


def _positive(seconds: float) -> float:
    if seconds <= 0:
        raise ValueError("must be longer than 0s")
    return seconds


def _http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an http:// or https:// URL")  # not echoed: may hold a password
    return url


def _https_url(url: str) -> str:
    if urlsplit(url).scheme != "https" or not urlsplit(url).netloc:
        raise ValueError("expected an https:// URL (this client refuses plain http)")
    return url


HttpUrl = Annotated[str, AfterValidator(_http_url)]
HttpsUrl = Annotated[str, AfterValidator(_https_url)]
"""An https:// URL: for clients that refuse plain HTTP (the pagerduty package)."""
Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, written as ``30s``/``1h30m``/``7d`` or a plain number; 0 allowed."""
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive)]


def _ca_bundle(path: Path) -> Path:
    """A CA bundle the TLS clients can load: a file that holds no certificate would pass
    the check and fail every client as it is built (serve would not start)."""
    try:
        ssl_context(path)  # as every client builds it
    except (ssl.SSLError, ValueError, OSError):
        raise ValueError("holds no CA certificate this machine can load (PEM)") from None
    return path


CaFile = Annotated[FilePath, AfterValidator(_ca_bundle)]
Weight = Annotated[float, Field(ge=0, le=1)]
LabelName = Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]


def _trimmed_or_none(value: object) -> object:
    # Trimmed as Tokens are: a secret put in ${VAR} from a file made with `echo s > file`
    # ends in a newline no vendor signed with nor any header carries.
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, str):
        value = value.strip()
    return value or None


def _drop_empty(tokens: list[SecretStr]) -> list[SecretStr]:
    # Trimmed: a token is never blank-edged (RFC 6750's token68), a request's header is
    # read trimmed, and a secret made with `echo tok > file` into ${VAR} ends in a newline
    # that no request could ever present.
    trimmed = (token.get_secret_value().strip() for token in tokens)
    return [SecretStr(token) for token in trimmed if token]


def _trimmed_headers(headers: dict[str, SecretStr]) -> dict[str, SecretStr]:
    # Trimmed as the secrets are: "Bearer ${TOKEN}" from `echo tok > file` ends in a
    # newline, and no HTTP client sends such a header (every call failed, misreported).
    trimmed: dict[str, SecretStr] = {}
    for name, value in headers.items():
        text = value.get_secret_value().strip()
        if "\r" in text or "\n" in text:
            raise ValueError(f"{name}: a header value cannot hold a line break")
        trimmed[name] = SecretStr(text)
    return trimmed


SecretHeaders = Annotated[dict[str, SecretStr], AfterValidator(_trimmed_headers)]
"""HTTP headers whose values may be credentials: trimmed, never quoted in an error."""


def _required(value: SecretStr) -> SecretStr:
    trimmed = value.get_secret_value().strip()
    if not trimmed:
        raise ValueError("is empty (an unset ${ENV}?)")
    return SecretStr(trimmed)


RequiredSecret = Annotated[SecretStr, AfterValidator(_required)]
"""A secret that must be set, trimmed as the others are."""
OptionalSecret = Annotated[SecretStr | None, BeforeValidator(_trimmed_or_none)]
"""A secret that may be absent, trimmed; ``"${VAR:-}"`` with VAR unset means absent."""
Tokens = Annotated[list[SecretStr], AfterValidator(_drop_empty)]
"""Bearer tokens, trimmed; empty entries (``"${VAR:-}"`` with VAR unset) are dropped."""


def _to_matcher(value: Any) -> Matcher:
    if isinstance(value, Matcher):
        return value
    if not isinstance(value, str):
        raise ValueError('expected a matcher string like service=~"payment.*"')
    return parse_matcher(value)


MatcherField = Annotated[Matcher, PlainValidator(_to_matcher), PlainSerializer(str)]


class BasicAuth(ConfigModel):
    username: str = Field(min_length=1)
    password: SecretStr

    @field_validator("username")
    @classmethod
    def _no_colon(cls, value: str) -> str:
        if ":" in value:
            raise ValueError("cannot contain ':' (RFC 7617: the username ends at the first ':')")
        return value

    @field_validator("password")
    @classmethod
    def _password_set(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("is empty (an unset ${ENV}?)")
        return value
