"""A change out of the incident's scope changes nothing about it: not its changes, causes,
title, summary, actions or timeline (``../shared/SPEC.md``, "Change scope and topology")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.actions import suggest
from receiver.config import load
from receiver.enrich.enricher import Enricher, Enrichment, apply
from receiver.events import ChangeEvent
from receiver.explain import incident_of
from receiver.incident import summary, title
from receiver.normalize import normalize
from receiver.placement import place
from receiver.settings import Settings
from receiver.store import StoreSettings, open_store
from receiver.webhook import parse_webhook
from tests.conftest import EXAMPLE_CONFIG, body, make_alert

SETTINGS = Settings.build(*load(EXAMPLE_CONFIG))
START = datetime(2026, 4, 18, 8, 13, 20, tzinfo=UTC)
START_MS = round(START.timestamp() * 1000)
NOW_MS = START_MS + 60_000
# The incident: checkout in prod/eu, payment-service and cart-api firing.
(GROUP,) = place(
    normalize(
        parse_webhook(
            body(
                [
                    make_alert(s, starts_at=START.isoformat())
                    for s in ("payment-service", "cart-api")
                ]
            )
        )
    ),
    SETTINGS,
)
STATE = incident_of(GROUP, START_MS)[0]
JOURNEY = SETTINGS.catalog.find("checkout")
IN_SCOPE = [
    ChangeEvent(type="deploy", service="payment-service", version="2026.04.18-3",
                environment="prod", region="eu", at=START - timedelta(minutes=2), id="here"),
    ChangeEvent(type="deploy", service="payment-service", version="2026.04.17-9",
                at=START - timedelta(hours=20), id="yesterday"),
    ChangeEvent(type="config", service="cart-api", at=START - timedelta(minutes=9), id="cfg"),
]  # fmt: skip


async def enriched(events: list[ChangeEvent]) -> Enrichment:
    """The incident's context with ``events`` posted to a store (memory://, the very store
    scripts and indexes of Redis)."""
    store = open_store("memory://", StoreSettings(key_prefix="scope"))
    try:
        await store.add_events(
            [(round(e.at.timestamp() * 1000), e.to_json()) for e in events], NOW_MS
        )
        enricher = Enricher(
            store, None, [], lookback_s=1800, baseline_offset_s=7 * 86400,
            scope_labels=SETTINGS.config.events.scope_labels,
        )  # fmt: skip
        return await enricher.enrich(STATE, JOURNEY, NOW_MS)
    finally:
        await store.aclose()


def story(events: list[ChangeEvent]) -> dict[str, Any]:
    """Everything the incident says once its context is in."""
    state = apply(STATE, anyio.run(enriched, events), NOW_MS)
    state.pending = None  # as notified: the title tells the whole story
    impact = SETTINGS.impact(state)
    return {
        "changes": state.changes,
        "causes": state.probable_causes,
        "title": title(state, impact),
        "summary": summary(state, JOURNEY, impact),
        "actions": suggest(JOURNEY, state),
        "timeline": [e.text for e in state.timeline],
    }


BASE = story(IN_SCOPE)

elsewhere = st.one_of(
    st.fixed_dictionaries({"environment": st.sampled_from(["staging", "dev", "production"])}),
    st.fixed_dictionaries({"region": st.sampled_from(["us", "sa", "eu-west-1"])}),
    st.fixed_dictionaries(
        {"labels": st.fixed_dictionaries({"region": st.sampled_from(["us", "ap"])})}
    ),
    st.fixed_dictionaries(
        {"environment": st.sampled_from(["staging", "prod"]), "region": st.just("us")}
    ),
    # A label of the same name as a field's agreeing with the incident hides nothing.
    st.fixed_dictionaries(
        {
            "environment": st.just("staging"),
            "labels": st.sampled_from([{"env": "prod"}, {"env": "prod", "region": "eu"}]),
        }
    ),
    st.fixed_dictionaries({"region": st.just("us"), "labels": st.just({"region": "eu"})}),
)
out_of_scope = st.builds(
    lambda scope, service, kind, minutes, version, n: ChangeEvent(
        type=kind,
        service=service,
        version=version,
        at=START - timedelta(minutes=minutes),
        id=f"elsewhere-{n}",
        **scope,
    ),
    elsewhere,
    st.sampled_from(["payment-service", "cart-api", "checkout-service", "auth-service"]),
    st.sampled_from(["deploy", "config", "feature_flag", "rollback"]),
    st.floats(min_value=-1, max_value=25),
    st.one_of(st.none(), st.sampled_from(["9.9.9-staging", "2026.04.18-3", "v1"])),
    st.integers(min_value=0, max_value=10**6),
)


def test_the_in_scope_story_has_a_cause() -> None:
    """Without it the property below could hold of an incident that says nothing."""
    assert BASE["causes"][0].text == "deploy 2026.04.18-3 to payment-service"
    assert "deploy 2026.04.18-3 to payment-service" in BASE["title"]
    assert BASE["actions"][0]["title"] == "Roll back payment-service to 2026.04.17-9"


@settings(max_examples=60, deadline=None)
@given(st.lists(out_of_scope, min_size=1, max_size=6))
def test_an_out_of_scope_change_never_changes_the_story(extra: list[ChangeEvent]) -> None:
    assert story([*IN_SCOPE, *extra]) == BASE
