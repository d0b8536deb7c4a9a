"""PagerDuty: the Events API host answers over TLS; the routing keys are well formed."""

from __future__ import annotations

import httpx

from receiver import config as cfg
from receiver.online import Finding, Findings, owner_values, owners, shown_url, transport_reason
from receiver.tls import ssl_context

PAGERDUTY_KEY_LENGTH = 32


def check_pagerduty(config: cfg.PagerDutySinkConfig, journeys: cfg.JourneysConfig) -> list[Finding]:
    """The Events API host answers over TLS; the routing keys are there and well formed."""
    found = Findings("pagerduty")
    base = config.base_url()
    try:
        with httpx.Client(verify=ssl_context(config.ca_file), timeout=config.timeout) as client:
            answer = client.head(base + "/")
        found.ok(f"{shown_url(base)} answers over TLS (HTTP {answer.status_code})")
    except httpx.HTTPError as exc:
        found.problem(
            f"cannot reach sinks.pagerduty.events_url {shown_url(base)}: "
            f"{transport_reason(exc, config.timeout, 'sinks.pagerduty.ca_file')}"
        )
    keys = [("sinks.pagerduty.routing_key", config.routing_key)]
    keys += list(owner_values(journeys, "pagerduty_routing_key"))
    present = [(field, key.get_secret_value()) for field, key in keys if key is not None]
    for field, key in present:
        if len(key) != PAGERDUTY_KEY_LENGTH:
            found.warning(
                f"{field} is {len(key)} characters, not the {PAGERDUTY_KEY_LENGTH} of a "
                "PagerDuty integration key — copy it again from the service's Events API "
                "v2 integration"
            )
    if present and all(len(key) == PAGERDUTY_KEY_LENGTH for _, key in present):
        found.ok(f"{len(present)} routing key(s), each {PAGERDUTY_KEY_LENGTH} characters")
    if config.routing_key is None:
        keyless = [
            journey for journey, owner in owners(journeys) if owner.pagerduty_routing_key is None
        ]
        if keyless:
            found.warning(
                f"no sinks.pagerduty.routing_key, and {', '.join(keyless)} "
                "set no owner.pagerduty_routing_key: their incidents cannot page — set one"
            )
    return found
