"""Links from an incident to Alertmanager's own UI.

The address is the ``externalURL`` Alertmanager sends in every webhook (how people reach
it, which the ``alertmanager.urls`` the receiver calls need not be). It is kept in the
store's shared cache, written only when it changes, so every replica links alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from receiver.alertmanager.client import Matcher

CACHE_NAMESPACE = "alertmanager"
CACHE_FIELD = "external_url"


def alerts_link(base: str, labels: Mapping[str, str]) -> str:
    """Alertmanager's alert list filtered to ``labels`` (the incident's group)."""
    matchers = ",".join(Matcher(k, v).filter() for k, v in sorted(labels.items()))
    return f"{base.rstrip('/')}/#/alerts?filter={quote('{' + matchers + '}', safe='')}"


def silence_link(base: str, silence_id: str) -> str:
    return f"{base.rstrip('/')}/#/silences/{quote(silence_id, safe='')}"
