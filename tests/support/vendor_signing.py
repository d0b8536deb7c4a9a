"""Sign a webhook body the way PagerDuty, Slack and Jira do, for tests and fake servers.

The receiver only verifies (``receiver.inbound.signatures``); these are the senders' side.
``tests/inbound/test_signatures.py`` pins each one to the vendor's published vector.
"""

from __future__ import annotations

import hashlib
import hmac


def _hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign_pagerduty(body: bytes, *secrets: str) -> str:
    """``X-PagerDuty-Signature``: one ``v1=`` per secret, comma-separated (rotation)."""
    return ",".join(f"v1={_hex(secret, body)}" for secret in secrets)


def sign_slack(body: bytes, secret: str, timestamp: int | str) -> str:
    """``X-Slack-Signature`` for the request sent with ``X-Slack-Request-Timestamp: timestamp``."""
    return "v0=" + _hex(secret, f"v0:{timestamp}:".encode() + body)


def sign_jira(body: bytes, secret: str) -> str:
    """``X-Hub-Signature`` of a Jira webhook registered with ``secret``."""
    return "sha256=" + _hex(secret, body)
