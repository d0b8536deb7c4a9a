"""Who may do what, by role: write (webhook, events, feedback), admin (reload, redrive,
silences) and read (incidents, deliveries, stats).

Credentials are compared in constant time, and every configured credential is compared on
every request, so neither the time taken nor an early exit reveals which one matched or
how much of a guess was right.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Sequence
from typing import Literal

_BEARER = "bearer"
_BASIC = "basic"

Role = Literal["read", "write", "admin"]
Verdict = Literal["allowed", "unauthorized", "forbidden"]
"""``forbidden``: a credential we know, of a role that may not do this."""


def _utf8(text: str) -> bytes:
    # surrogatepass: compare_digest needs bytes, and encoding must never raise on odd input.
    return text.encode("utf-8", "surrogatepass")


class Authenticator:
    """Checks an ``Authorization`` header against the configured credentials.

    Writes need one of ``bearer_tokens`` or the ``basic`` (username, password) pair, and
    are open when neither is configured (the config loader refuses that unless
    ``allow_open``). Admin needs one of ``admin_bearer_tokens``; with none configured it is
    open when writes are, and closed otherwise (SIGHUP still reloads): the token
    Alertmanager holds must not be able to reconfigure the receiver. Reads need any
    credential of any role, and are open when no read token is configured.

    An empty token or username is refused with ``ValueError``: it is almost always an
    unset ``${ENV}`` and would otherwise let ``Bearer`` with no token in, or open the door.
    """

    def __init__(
        self,
        bearer_tokens: Sequence[str],
        basic: tuple[str, str] | None,
        read_bearer_tokens: Sequence[str],
        admin_bearer_tokens: Sequence[str] = (),
    ) -> None:
        for token in (*bearer_tokens, *read_bearer_tokens, *admin_bearer_tokens):
            if not token:
                raise ValueError("an empty bearer token is configured (unset ${ENV}?)")
        if basic is not None:
            username, password = basic
            if not username or not password:
                raise ValueError("basic auth needs a non-empty username and password")
            if ":" in username:
                raise ValueError("a basic auth username cannot contain ':' (RFC 7617)")
        self._write_tokens = tuple(_utf8(t) for t in bearer_tokens)
        self._read_tokens = tuple(_utf8(t) for t in read_bearer_tokens)
        self._admin_tokens = tuple(_utf8(t) for t in admin_bearer_tokens)
        self._basic = None if basic is None else _utf8(f"{basic[0]}:{basic[1]}")

    @property
    def write_open(self) -> bool:
        """True when no write credential is configured."""
        return not self._write_tokens and self._basic is None

    @property
    def read_open(self) -> bool:
        """True when no read token is configured."""
        return not self._read_tokens

    @property
    def admin_open(self) -> bool:
        """True when anyone may reload and redrive: no admin token, and writes open."""
        return not self._admin_tokens and self.write_open

    def check(self, role: Role, authorization_header: str | None) -> Verdict:
        """May the bearer of this header act in ``role``?"""
        if role == "read" and self.read_open:
            return "allowed"
        if role == "write" and self.write_open:
            return "allowed"
        if role == "admin" and self.admin_open:
            return "allowed"
        held = self._roles(authorization_header)
        if role in held or (role == "read" and held):
            return "allowed"
        return "forbidden" if held else "unauthorized"

    def allows_write(self, authorization_header: str | None) -> bool:
        return self.check("write", authorization_header) == "allowed"

    def allows_read(self, authorization_header: str | None) -> bool:
        return self.check("read", authorization_header) == "allowed"

    def _roles(self, header: str | None) -> set[Role]:
        """Every role one of whose credentials the header carries; all are compared."""
        scheme, credentials = _split(header)
        roles: set[Role] = set()
        bearer = scheme == _BEARER
        # Every comparison always runs: `or` would skip some and time the others.
        if bearer & _any_equal(self._write_tokens, credentials):
            roles.add("write")
        if bearer & _any_equal(self._read_tokens, credentials):
            roles.add("read")
        if bearer & _any_equal(self._admin_tokens, credentials):
            roles.add("admin")
        if scheme == _BASIC and self._basic is not None:
            decoded = _decode_basic(credentials)
            if decoded is not None and hmac.compare_digest(self._basic, decoded):
                roles.add("write")
        return roles


def _split(header: str | None) -> tuple[str, bytes]:
    """(lowercased scheme, credentials); RFC 7235 schemes are case-insensitive."""
    if not header:
        return "", b""
    parts = header.strip().split(None, 1)
    if len(parts) != 2:
        return "", b""
    return parts[0].lower(), _utf8(parts[1].strip())


def _any_equal(candidates: tuple[bytes, ...], given: bytes) -> bool:
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(candidate, given)
    return matched


def _decode_basic(credentials: bytes) -> bytes | None:
    try:
        return base64.b64decode(credentials, validate=True)
    except binascii.Error:
        return None
