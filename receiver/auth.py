"""Who may write (webhook, events, feedback, reload) and who may read (incidents).

Credentials are compared in constant time, and every configured credential is compared on
every request, so neither the time taken nor an early exit reveals which one matched or
how much of a guess was right.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Sequence

_BEARER = "bearer"
_BASIC = "basic"


def _utf8(text: str) -> bytes:
    # surrogatepass: compare_digest needs bytes, and encoding must never raise on odd input.
    return text.encode("utf-8", "surrogatepass")


class Authenticator:
    """Checks an ``Authorization`` header against the configured credentials.

    Writes need one of ``bearer_tokens`` or the ``basic`` (username, password) pair, and
    are open when neither is configured. Reads need one of ``read_bearer_tokens`` or any
    write credential, and are open when no read token is configured.

    An empty token or username is refused with ``ValueError``: it is almost always an
    unset ``${ENV}`` and would otherwise let ``Bearer`` with no token in, or open the door.
    """

    def __init__(
        self,
        bearer_tokens: Sequence[str],
        basic: tuple[str, str] | None,
        read_bearer_tokens: Sequence[str],
    ) -> None:
        for token in (*bearer_tokens, *read_bearer_tokens):
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
        self._basic = None if basic is None else _utf8(f"{basic[0]}:{basic[1]}")

    @property
    def write_open(self) -> bool:
        """True when no write credential is configured."""
        return not self._write_tokens and self._basic is None

    @property
    def read_open(self) -> bool:
        """True when no read token is configured."""
        return not self._read_tokens

    def allows_write(self, authorization_header: str | None) -> bool:
        if self.write_open:
            return True
        scheme, credentials = _split(authorization_header)
        return self._matches_write(scheme, credentials)

    def allows_read(self, authorization_header: str | None) -> bool:
        if self.read_open:
            return True
        scheme, credentials = _split(authorization_header)
        # Both checks always run: `or` would skip the second and time the first.
        read = scheme == _BEARER and _any_equal(self._read_tokens, credentials)
        return read | self._matches_write(scheme, credentials)

    def _matches_write(self, scheme: str, credentials: bytes) -> bool:
        if scheme == _BEARER:
            return _any_equal(self._write_tokens, credentials)
        if scheme == _BASIC and self._basic is not None:
            decoded = _decode_basic(credentials)
            return decoded is not None and hmac.compare_digest(self._basic, decoded)
        return False


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
