"""Alertmanager's API v2, asked of the HA peers in turn.

One ``httpx.AsyncClient`` serves every peer. A call goes to the peer that answered last
(the first URL at start), then to the next ones in the configured order, and moves on
when a peer cannot be reached, takes longer than ``timeout`` (a deadline on the whole
exchange, not per read), answers 5xx, 408 or 429, or answers something that is not the
API's shape. When no peer gave a usable answer the call raises ``AlertmanagerUnavailable``
naming each peer's reason; a 3xx or another 4xx raises ``AlertmanagerRefused`` at once,
since the peers of one cluster share their config and would refuse alike. Messages name
the peer without any password in its URL and never carry a header.

``POST /silences`` moves on too: a peer that timed out may still have made the silence,
so the worst case is two identical silences, which mute the same alerts until the same
time (the API has no idempotency key: a silence ``id`` may only name an existing one).

``filter`` matchers are written as Alertmanager's parsers read them (the classic
``labels.ParseMatcher`` and the newer ``matcher/parse``, whose quoted values are Go
strings): the value in double quotes with ``\\``, ``"`` and a newline escaped as ``\\\\``,
``\\"`` and ``\\n``. So ``msg="a \\"b\\", c"`` matches the value ``a "b", c``.

A webhook's ``groupKey`` is ``<route key>:<group labels>`` (``dispatch.aggrGroup.GroupKey``):
the route key is each route's matchers from the root down, ``{}/{severity="page"}``
(``Route.Key``: matchers sorted, ``,`` between them, values escaped as in a filter), and
the group labels are ``model.LabelSet.String()``: names sorted, ``", "`` between pairs,
values Go-quoted (``strconv.Quote``: ``\\"``, ``\\\\``, ``\\n``, ``\\xNN``...), as in
``{}/{severity="page"}:{alertname="X", region="eu"}``. ``parse_group_key`` reads the
latter back.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Literal, NamedTuple, TypeVar
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from receiver.config.alertmanager import AlertmanagerConfig
from receiver.errors import ReceiverError
from receiver.fieldpath import field_path
from receiver.matchers import Matcher as LabelMatcher
from receiver.tls import ssl_context

T = TypeVar("T")
AlertState = Literal["active", "suppressed", "unprocessed"]
SilenceState = Literal["active", "pending", "expired"]
_RETRY_STATUSES = frozenset({408, 429})
_MESSAGE_MAX = 200


class AlertmanagerError(ReceiverError):
    """Base of the errors of ``AlertmanagerClient``."""


class AlertmanagerUnavailable(AlertmanagerError):
    """No peer gave a usable answer; the message has each peer's reason."""


class AlertmanagerRefused(AlertmanagerError):
    """A peer refused the request (3xx, or a 4xx but 408/429); ``status`` is its status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class Matcher(NamedTuple):
    """One matcher as the API has it: ``name``, ``value``, regex or not, equal or not."""

    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    @classmethod
    def of(cls, matcher: LabelMatcher) -> Matcher:
        """The same condition as a matcher of ``receiver.matchers`` (journeys, config)."""
        return cls(matcher.name, matcher.value, "~" in matcher.op, not matcher.op.startswith("!"))

    def filter(self) -> str:
        """This matcher as one ``filter`` query value: ``name=~"value"``."""
        op = _OPS[self.is_equal, self.is_regex]
        name = self.name if _PLAIN_NAME.fullmatch(self.name) else _quote(self.name)
        return f"{name}{op}{_quote(self.value)}"

    def wire(self) -> dict[str, object]:
        return {
            "name": self.name,
            "value": self.value,
            "isRegex": self.is_regex,
            "isEqual": self.is_equal,
        }


@dataclass(frozen=True, slots=True)
class AmAlert:
    """An alert as Alertmanager holds it (``gettableAlert``); labels are untrusted text."""

    fingerprint: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime
    updated_at: datetime
    generator_url: str
    state: AlertState
    silenced_by: tuple[str, ...]
    inhibited_by: tuple[str, ...]
    receivers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AmSilence:
    """A silence as Alertmanager keeps it (``gettableSilence``); its text is untrusted."""

    id: str
    state: SilenceState
    created_by: str
    comment: str
    ends_at: datetime


class AlertmanagerClient:
    """The API v2 of the peers in ``config.urls``; build once, ``aclose()`` at shutdown."""

    def __init__(
        self, config: AlertmanagerConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._bases = tuple(url.rstrip("/") + "/api/v2" for url in config.urls)
        self._names = tuple(_shown(url) for url in config.urls)
        self._next = 0
        self._timeout = config.timeout
        headers = {name: value.get_secret_value() for name, value in config.headers.items()}
        if config.bearer_token is not None:
            headers["Authorization"] = f"Bearer {config.bearer_token.get_secret_value()}"
        basic = config.basic_auth
        self._client = httpx.AsyncClient(
            headers=headers,
            auth=httpx.BasicAuth(basic.username, basic.password.get_secret_value())
            if basic is not None
            else None,
            timeout=httpx.Timeout(config.timeout),
            verify=ssl_context(config.ca_file),
            transport=transport,
        )

    async def __aenter__(self) -> AlertmanagerClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def alerts(
        self,
        matchers: Sequence[Matcher],
        *,
        silenced: bool = True,
        inhibited: bool = True,
        active: bool = True,
        receiver: str | None = None,
    ) -> list[AmAlert]:
        """``GET /alerts``: the alerts matching every matcher that have not ended, with the
        states asked for (``receiver``: only those routed to the receiver of that name)."""
        params = _filters(matchers, receiver)
        params += [("silenced", _bool(silenced)), ("inhibited", _bool(inhibited))]
        params.append(("active", _bool(active)))
        return await self._call("GET", "/alerts", _read_alerts, params=params)

    async def group_alerts(
        self, group_labels: Mapping[str, str], receiver: str | None = None
    ) -> list[AmAlert]:
        """The alerts of the aggregation group(s) whose labels are exactly ``group_labels``
        (of ``receiver`` when given), by fingerprint.

        Without such a group (gone since, or a route that changed), or on an Alertmanager
        without ``/alerts/groups``, the alerts carrying ``group_labels``, whatever their
        group: a superset, as the group's matchers alone cannot tell groups apart.
        """
        matchers = [Matcher(name, value) for name, value in sorted(group_labels.items())]
        try:
            groups = await self._call(
                "GET", "/alerts/groups", _read_groups, params=_filters(matchers, receiver)
            )
        except AlertmanagerRefused as exc:
            if exc.status != 404:
                raise
            groups = []
        wanted = dict(group_labels)
        exact = [group for group in groups if group.labels == wanted]
        if not exact:
            return await self.alerts(matchers, receiver=receiver)
        found = {alert.fingerprint: alert for group in exact for alert in group.alerts}
        return [found[fingerprint] for fingerprint in sorted(found)]

    async def create_silence(
        self,
        matchers: Sequence[Matcher],
        starts_at: datetime,
        ends_at: datetime,
        created_by: str,
        comment: str,
    ) -> str:
        """``POST /silences``: a new silence; returns its id. Times without a zone are UTC."""
        if not matchers:
            raise ValueError("a silence needs at least one matcher")
        body = {
            "matchers": [matcher.wire() for matcher in matchers],
            "startsAt": _rfc3339(starts_at),
            "endsAt": _rfc3339(ends_at),
            "createdBy": created_by,
            "comment": comment,
        }
        return await self._call("POST", "/silences", _read_silence_id, body=body)

    async def silences(self) -> list[AmSilence]:
        """``GET /silences``: every silence Alertmanager keeps, the expired ones included
        (for its ``--data.retention``, 120h by default)."""
        return await self._call("GET", "/silences", _read_silences)

    async def status(self) -> dict[str, Any]:
        """``GET /status``: ``cluster``, ``versionInfo``, ``config`` and ``uptime``."""
        return await self._call("GET", "/status", _read_status)

    async def held_with_status(
        self, matchers: Sequence[Matcher] = ()
    ) -> tuple[list[AmAlert], dict[str, Any]]:
        """The alerts one peer holds matching every matcher (``alerts(matchers)``; all of
        them without) and that same peer's ``status()``. What a peer holds says something
        only beside when it started (one that restarted a moment ago holds nothing yet):
        asked of two peers, a failing one's uptime could vouch for a fresh one's empty list.
        AlertmanagerUnavailable if the peer that answered the first does not answer the
        second."""
        alerts = await self.alerts(matchers)
        peer = self._next  # the one that answered
        answer = await self._ask(peer, "GET", "/status", _read_status, (), None)
        if isinstance(answer, str):
            raise AlertmanagerUnavailable(
                f"{self._names[peer]} answered GET /api/v2/alerts, not /status: {answer}"
            )
        return alerts, answer.value

    async def _call(
        self,
        method: str,
        path: str,
        read: Callable[[Any], T],
        *,
        params: Sequence[tuple[str, str]] = (),
        body: object = None,
    ) -> T:
        failures: list[str] = []
        count = len(self._bases)
        for i in range(count):
            peer = (self._next + i) % count
            reason = await self._ask(peer, method, path, read, params, body)
            if not isinstance(reason, str):
                self._next = peer
                return reason.value
            failures.append(f"{self._names[peer]}: {reason}")
        raise AlertmanagerUnavailable(
            f"no Alertmanager answered {method} /api/v2{path}: {'; '.join(failures)}"
        )

    async def _ask(
        self,
        peer: int,
        method: str,
        path: str,
        read: Callable[[Any], T],
        params: Sequence[tuple[str, str]],
        body: object,
    ) -> _Answer[T] | str:
        """The peer's answer read by ``read``, or why the next peer should be asked."""
        try:
            with anyio.fail_after(self._timeout):
                response = await self._client.request(
                    method, self._bases[peer] + path, params=list(params), json=body
                )
        except (TimeoutError, httpx.TimeoutException):
            return f"timed out after {self._timeout:g}s"
        except httpx.ConnectError:
            return "cannot connect"
        except httpx.HTTPError as exc:
            return f"request failed ({type(exc).__name__})"
        status = response.status_code
        if status >= 500 or status in _RETRY_STATUSES:
            return f"HTTP {status}"
        if status >= 300:
            raise AlertmanagerRefused(
                f"{self._names[peer]} refused {method} /api/v2{path}: {_refusal(response)}",
                status,
            )
        try:
            return _Answer(read(response.json()))
        except ValueError as exc:  # JSON syntax or encoding, ValidationError, _BadAnswer
            return _bad_answer(exc)


@dataclass(frozen=True, slots=True)
class _Answer(Generic[T]):
    value: T


# --- the API's answers: camelCase stops here --------------------------------------------


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class _Status(_Wire):
    state: AlertState
    silenced_by: list[str] = Field(alias="silencedBy")
    inhibited_by: list[str] = Field(alias="inhibitedBy")


class _Receiver(_Wire):
    name: str


class _Alert(_Wire):
    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime = Field(alias="endsAt")
    updated_at: datetime = Field(alias="updatedAt")
    generator_url: str = Field(default="", alias="generatorURL")
    status: _Status
    receivers: list[_Receiver]

    def alert(self) -> AmAlert:
        return AmAlert(
            fingerprint=self.fingerprint,
            labels=self.labels,
            annotations=self.annotations,
            starts_at=_utc(self.starts_at),
            ends_at=_utc(self.ends_at),
            updated_at=_utc(self.updated_at),
            generator_url=self.generator_url,
            state=self.status.state,
            silenced_by=tuple(self.status.silenced_by),
            inhibited_by=tuple(self.status.inhibited_by),
            receivers=tuple(receiver.name for receiver in self.receivers),
        )


class _Group(_Wire):
    labels: dict[str, str]
    receiver: _Receiver
    alerts: list[_Alert]


@dataclass(frozen=True, slots=True)
class _AlertGroup:
    labels: dict[str, str]
    alerts: tuple[AmAlert, ...]


class _SilenceStatus(_Wire):
    state: SilenceState


class _Silence(_Wire):
    id: str = Field(min_length=1)
    status: _SilenceStatus
    created_by: str = Field(alias="createdBy")
    comment: str = ""
    ends_at: datetime = Field(alias="endsAt")

    def silence(self) -> AmSilence:
        return AmSilence(
            id=self.id,
            state=self.status.state,
            created_by=self.created_by,
            comment=self.comment,
            ends_at=_utc(self.ends_at),
        )


class _SilenceId(_Wire):
    silence_id: str = Field(alias="silenceID", min_length=1)


_ALERTS = TypeAdapter(list[_Alert])
_GROUPS = TypeAdapter(list[_Group])
_SILENCES = TypeAdapter(list[_Silence])
_OBJECT = TypeAdapter(dict[str, Any])


def _read_alerts(data: Any) -> list[AmAlert]:
    return [alert.alert() for alert in _ALERTS.validate_python(data)]


def _read_groups(data: Any) -> list[_AlertGroup]:
    return [
        _AlertGroup(group.labels, tuple(alert.alert() for alert in group.alerts))
        for group in _GROUPS.validate_python(data)
    ]


def _read_silences(data: Any) -> list[AmSilence]:
    return [silence.silence() for silence in _SILENCES.validate_python(data)]


def _read_silence_id(data: Any) -> str:
    return _SilenceId.model_validate(data).silence_id


def _read_status(data: Any) -> dict[str, Any]:
    status = _OBJECT.validate_python(data)
    if "versionInfo" not in status:
        raise _BadAnswer("unexpected answer: not an Alertmanager status (no versionInfo)")
    return status


class _BadAnswer(ValueError):
    """An answer of the right syntax but not the API's shape; the text is the reason."""


def _bad_answer(exc: ValueError) -> str:
    if isinstance(exc, _BadAnswer):
        return str(exc)
    if not isinstance(exc, ValidationError):
        return "answer is not JSON"
    error = exc.errors(include_url=False, include_context=False, include_input=False)[0]
    where = field_path(error["loc"]) or "(body)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    reason = "missing" if error["type"] == "missing" else error["msg"]
    return f"unexpected answer: {where}: {reason}{more}"


# --- requests --------------------------------------------------------------------------

_OPS = {(True, False): "=", (False, False): "!=", (True, True): "=~", (False, True): "!~"}
_PLAIN_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})
# Go's regexp.QuoteMeta: the receiver parameter is a regex, anchored by Alertmanager.
_GO_META = str.maketrans({c: "\\" + c for c in "\\.+*?()|[]{}^$"})
_HINTS = {401: "check the credentials", 403: "check the credentials' permissions"}
_HINTS[404] = "check the url (the receiver adds /api/v2)"


def _quote(text: str) -> str:
    return f'"{text.translate(_ESCAPES)}"'


def _filters(matchers: Sequence[Matcher], receiver: str | None) -> list[tuple[str, str]]:
    params = [("filter", matcher.filter()) for matcher in matchers]
    if receiver is not None:
        params.append(("receiver", receiver.translate(_GO_META)))
    return params


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _utc(at: datetime) -> datetime:
    return at.astimezone(UTC) if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _rfc3339(at: datetime) -> str:
    return _utc(at).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _shown(url: str) -> str:
    """``url`` without its user and password, for messages."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", "")).rstrip("/")


def _refusal(response: httpx.Response) -> str:
    status = response.status_code
    hint = "check the url" if status < 400 else _HINTS.get(status, "")
    text = response.text
    try:
        said = response.json()
        text = said if isinstance(said, str) else text
    except ValueError:
        pass
    text = " ".join(text.split())
    text = text if len(text) <= _MESSAGE_MAX else text[:_MESSAGE_MAX] + "…"
    parts = [f"HTTP {status}", hint, text]
    return ": ".join(part for part in parts if part)


# --- groupKey ---------------------------------------------------------------------------

_GO_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11}
_GO_ESCAPES |= {"\\": 92, '"': 34, "'": 39}
_HEX = {"x": 2, "u": 4, "U": 8}
_HEX_DIGITS = re.compile(r"[0-9a-fA-F]+")
_OCTAL = re.compile(r"[0-3][0-7][0-7]")


def parse_group_key(group_key: str) -> dict[str, str]:
    """The group labels in a webhook's ``groupKey``: ``{}/{severity="page"}:{a="1", b="2"}``
    gives ``{"a": "1", "b": "2"}``. Untrusted input: anything else gives ``{}``."""
    start = _label_set_start(group_key)
    if start is None:
        return {}
    try:
        return _label_set(group_key, start)
    except (ValueError, IndexError):
        return {}


def _label_set_start(key: str) -> int | None:
    """Where the group labels begin: after the first ``:`` outside the route key's braces
    and quotes (a route matcher's name or value may hold a ``:``)."""
    depth = 0
    quoted = escaped = False
    for i, char in enumerate(key):
        if escaped:
            escaped = False
        elif quoted:
            escaped = char == "\\"
            quoted = char != '"'
        elif char == '"':
            quoted = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif char == ":" and depth == 0:
            return i + 1
    return None


def _label_set(key: str, i: int) -> dict[str, str]:
    if key[i] != "{":
        raise ValueError("no label set")
    i += 1
    labels: dict[str, str] = {}
    while key[i] != "}":
        if labels:
            if not key.startswith(", ", i):
                raise ValueError("no separator")
            i += 2
        equals = key.index("=", i)
        name = key[i:equals]
        if not name or '"' in name or name in labels:
            raise ValueError("bad name")
        labels[name], i = _go_string(key, equals + 1)
    if i + 1 != len(key):
        raise ValueError("text after the label set")
    return labels


def _go_string(key: str, i: int) -> tuple[str, int]:
    """The Go-quoted string at ``key[i]`` and the index after it (``strconv.Unquote``)."""
    if key[i] != '"':
        raise ValueError("no quote")
    out = bytearray()
    i += 1
    while key[i] != '"':
        char = key[i]
        if char != "\\":
            out += char.encode("utf-8", "surrogatepass")
            i += 1
            continue
        code = key[i + 1]
        if code in _GO_ESCAPES:
            out.append(_GO_ESCAPES[code])
            i += 2
        elif code in _HEX:
            digits = key[i + 2 : i + 2 + _HEX[code]]
            if len(digits) != _HEX[code] or not _HEX_DIGITS.fullmatch(digits):
                raise ValueError("bad hex escape")
            value = int(digits, 16)
            out += bytes([value]) if code == "x" else chr(value).encode("utf-8", "surrogatepass")
            i += 2 + _HEX[code]
        elif _OCTAL.fullmatch(key, i + 1, i + 4):
            out.append(int(key[i + 1 : i + 4], 8))
            i += 4
        else:
            raise ValueError("unknown escape")
    return out.decode("utf-8", "replace"), i + 1
