"""Is this request really from the vendor? Each check exactly as the vendor documents it.

- PagerDuty v3 webhooks: ``X-PagerDuty-Signature`` holds one or more comma-separated
  ``v1=<hex HMAC-SHA256 of the raw body, keyed by the subscription's secret>``; several
  appear while a secret is rotated, and one match is enough; other versions are ignored
  (developer.pagerduty.com, "Verifying Signatures").
- Slack: ``X-Slack-Signature`` is ``v0=<hex HMAC-SHA256 of "v0:{timestamp}:{raw body}">``,
  keyed by the app's signing secret, with ``{timestamp}`` the ``X-Slack-Request-Timestamp``
  header; a timestamp more than five minutes from now is refused as a possible replay
  (docs.slack.dev, "Verifying requests from Slack").
- Jira: a webhook registered with a secret carries ``X-Hub-Signature: sha256=<hex
  HMAC-SHA256 of the raw body>`` (developer.atlassian.com, "Secure admin webhooks"; the
  same on Data Center, confluence.atlassian.com "Managing webhooks"). Setups without it put
  a shared secret in the URL (or a header), which is compared as it is; the caller offers
  every reading of the URL's text (a '+' as itself and as a space), each compared.

The checks are pure: raw body bytes and header values in, a verdict out; the caller
passes the time. Every configured secret is tried against every offered signature with
:func:`hmac.compare_digest` and no early exit, so neither the time taken nor the answer
tells which secret matched. Several secrets let the receiver rotate its side too.

An empty secret never matches: HMAC with an empty key is something anyone can compute,
and an empty secret is almost always an unset ``${ENV}``. With no usable secret every
request is refused; refusing empty secrets with a message is the config loader's job.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from enum import StrEnum

_PAGERDUTY_VERSION = "v1="
_SLACK_VERSION = "v0"
_JIRA_METHOD = "sha256="
_SLACK_WINDOW_S = 300.0
# Slack sends whole seconds since the epoch; more digits than this is not a timestamp, and
# thousands of them would make int() raise (Python's limit on parsing long integers).
_MAX_TIMESTAMP_DIGITS = 12


class SlackVerdict(StrEnum):
    """What :func:`verify_slack` found. Both refusals are a 401, with different words."""

    OK = "ok"
    STALE = "stale"
    """``X-Slack-Request-Timestamp`` missing, not whole seconds, or too far from now."""
    BAD_SIGNATURE = "bad_signature"
    """``X-Slack-Signature`` missing, malformed, or made with none of our secrets."""


def verify_pagerduty(body: bytes, header: str | None, secrets: Sequence[str]) -> bool:
    """True if any ``v1=`` signature in ``X-PagerDuty-Signature`` matches any secret."""
    keys = _usable(secrets)
    if header is None or not keys:
        return False
    offered = [
        _ascii_lower(part.strip()[len(_PAGERDUTY_VERSION) :])
        for part in header.split(",")
        if part.strip().startswith(_PAGERDUTY_VERSION)
    ]
    expected = [_hmac_hex(key, body) for key in keys]
    return _any_equal(offered, expected)


def verify_slack(
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    secrets: Sequence[str],
    now_s: float,
    window_s: float = _SLACK_WINDOW_S,
) -> SlackVerdict:
    """Check ``X-Slack-Request-Timestamp`` against ``now_s``, then ``X-Slack-Signature``.

    Slack sends exactly one signature; rotating the signing secret is done here by
    configuring the old and the new one for a while.
    """
    if window_s <= 0:
        raise ValueError(f"window_s must be positive, not {window_s}")
    if (
        timestamp is None
        or not (timestamp.isascii() and timestamp.isdigit())
        or len(timestamp) > _MAX_TIMESTAMP_DIGITS
        or abs(now_s - int(timestamp)) > window_s
    ):
        return SlackVerdict.STALE
    keys = _usable(secrets)
    prefix = _SLACK_VERSION + "="
    if signature is None or not signature.startswith(prefix) or not keys:
        return SlackVerdict.BAD_SIGNATURE
    basestring = f"{_SLACK_VERSION}:{timestamp}:".encode("ascii") + body
    expected = [_hmac_hex(key, basestring) for key in keys]
    if _any_equal([_ascii_lower(signature[len(prefix) :])], expected):
        return SlackVerdict.OK
    return SlackVerdict.BAD_SIGNATURE


def verify_jira(
    body: bytes,
    shared_secrets: Sequence[str | None],
    header_signature: str | None,
    secrets: Sequence[str],
) -> bool:
    """True if ``X-Hub-Signature: sha256=<hex>`` or one of ``shared_secrets`` (the secret
    given in the URL, as each reading of it gives it, or in a header) matches.

    Either is enough: whoever knows the URL secret could sign a body with it too.
    Jira sends one signature, so a list of them is not a signature.
    """
    keys = _usable(secrets)
    if not keys:
        return False
    signed = False
    if header_signature is not None and header_signature.startswith(_JIRA_METHOD):
        offered = _ascii_lower(header_signature[len(_JIRA_METHOD) :])
        signed = _any_equal([offered], [_hmac_hex(key, body) for key in keys])
    shared = _any_equal([_utf8(secret) for secret in shared_secrets if secret], keys)
    return signed or shared


def _usable(secrets: Sequence[str]) -> list[bytes]:
    return [_utf8(secret) for secret in secrets if secret]


def _utf8(text: str) -> bytes:
    # surrogatepass: compare_digest needs bytes, and encoding must never raise on odd input.
    return text.encode("utf-8", "surrogatepass")


def _ascii_lower(hex_digest: str) -> bytes:
    # Hex may come in either case; only ASCII letters are folded, so nothing else can match.
    return _utf8(hex_digest).lower()


def _hmac_hex(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).hexdigest().encode("ascii")


def _any_equal(offered: Iterable[bytes], expected: Sequence[bytes]) -> bool:
    # Every pair is compared, with no early exit (see the module docstring).
    matched = False
    for candidate in offered:
        for value in expected:
            matched |= hmac.compare_digest(candidate, value)
    return matched
