"""Which changes are kept around an incident and how they rank as probable causes."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from receiver.causes import CAUSE_CONFIDENCE, leading
from receiver.config.receiver_yaml import ScopeField
from receiver.enrich import Cause, ChangeReport
from receiver.enrich.changes import MAX_CAUSES, MAX_CHANGES, correlate, describe
from receiver.enrich.feeds import FeedEvent
from receiver.events import ChangeEvent
from receiver.store.records import IncidentState, StoredAlert
from receiver.topology import Ranking, rank

START = datetime(2026, 4, 18, 8, 13, 20, tzinfo=UTC)
START_MS = 1_776_500_000_000
MINUTE = 60_000
LOOKBACK_MS = 30 * MINUTE
# payment-service fired first, cart 3 minutes later.
SERVICES = {"payment-service": START_MS, "cart": START_MS + 3 * MINUTE}


def change(
    minutes_before: float,
    service: str = "payment-service",
    type: str = "deploy",
    *,
    id: str | None = None,
    source: str | None = None,
    **fields: Any,
) -> ChangeEvent:
    at = START - timedelta(minutes=minutes_before)
    ident = id or f"{type}-{service}-{minutes_before:g}"
    if source is not None:
        return FeedEvent(type=type, service=service, at=at, id=ident, source=source, **fields)
    return ChangeEvent(type=type, service=service, at=at, id=ident, **fields)


# The incident's group labels, and the default events.scope_labels.
GROUP = {"env": "prod", "region": "eu", "cluster": "k1"}
SCOPE: dict[ScopeField, str] = {"environment": "env", "region": "region"}


def ranking_of(services: dict[str, int]) -> Ranking:
    """The services ranked as the receiver would rank one critical alert of each, firing
    since the given time (no topology)."""
    alerts = [
        StoredAlert(
            fp=name,
            status="firing",
            labels={},
            annotations={},
            starts_at=at,
            service=name,
            severity="critical",
            first_seen=at,
            changed_at=at,
        )
        for name, at in services.items()
    ]
    return rank(alerts, {}, {"critical": 1.0}, 0.5, START_MS + 60 * MINUTE)


def report(
    events: list[ChangeEvent],
    services: dict[str, int] | None = None,
    now_minutes: float = 10,
    group_labels: dict[str, str] | None = None,
) -> ChangeReport:
    services = SERVICES if services is None else services
    return correlate(
        events,
        services=services,
        ranking=ranking_of(services),
        journey_id="checkout",
        group_labels=GROUP if group_labels is None else group_labels,
        scope_labels=SCOPE,
        started_ms=START_MS,
        lookback_ms=LOOKBACK_MS,
        now_ms=START_MS + int(now_minutes * MINUTE),
    )


def test_start_constant_matches_its_datetime() -> None:
    assert int(START.timestamp() * 1000) == START_MS


def test_window_is_lookback_before_the_start_until_now() -> None:
    edge_before = ChangeEvent(
        type="deploy", service="cart", id="edge", at=START - timedelta(minutes=30)
    )
    too_early = ChangeEvent(
        type="deploy", service="cart", id="early", at=START - timedelta(minutes=30, milliseconds=1)
    )
    edge_now = ChangeEvent(
        type="deploy", service="cart", id="now", at=START + timedelta(minutes=10)
    )
    too_late = ChangeEvent(
        type="deploy", service="cart", id="late", at=START + timedelta(minutes=10, milliseconds=1)
    )

    kept = report([too_early, edge_before, edge_now, too_late]).changes

    assert sorted(match.id for match in kept) == ["edge", "now"]


def test_minutes_before_is_negative_after_the_start() -> None:
    before = change(2, version="2026.04.18-3")
    after = change(-5, type="config")
    halfway = change(1.5, "cart")

    by_id = {match.id: match for match in report([before, after, halfway]).changes}

    assert by_id[before.id].minutes_before == 2.0
    assert by_id[after.id].minutes_before == -5.0
    assert by_id[halfway.id].minutes_before == 1.5
    assert by_id[before.id].at_ms == START_MS - 2 * MINUTE


def test_change_match_carries_the_event() -> None:
    event = change(
        2,
        version="2026.04.18-3",
        summary="canary 10%",
        url="https://ci.example.com/run/77",
        source="deploys",
    )

    [match] = report([event]).changes

    assert match.id == event.id
    assert (match.type, match.service, match.version) == (
        "deploy",
        "payment-service",
        "2026.04.18-3",
    )
    assert (match.summary, match.url, match.source, match.overlap) == (
        "canary 10%",
        "https://ci.example.com/run/77",
        "deploys",
        True,
    )
    [unrelated] = report([change(2, "search")]).changes
    assert (unrelated.overlap, unrelated.summary, unrelated.source) == (False, "", "api")


def test_ranking_and_exact_evidence() -> None:
    events = [
        change(1, "search", version="7.1"),  # unrelated service
        change(-5, type="config"),  # after the start
        change(1, "cart", version="3.2.0"),
        change(
            4, "checkout-web", "feature_flag", version="new-wallet", labels={"journey": "checkout"}
        ),
        change(2, version="2026.04.18-3"),
    ]

    causes = report(events).causes

    assert causes == (
        Cause(
            kind="change",
            text="deploy 2026.04.18-3 to payment-service",
            score=87.5,
            evidence=(
                "deploy 2026.04.18-3 to payment-service 2 min before the first alert",
                "payment-service is the probable upstream service of the incident",
            ),
            change_id="deploy-payment-service-2",
            change_source="api",
        ),
        Cause(
            kind="change",
            text="deploy 3.2.0 to cart",
            score=65.5,
            evidence=(
                "deploy 3.2.0 to cart 1 min before the first alert",
                "cart is one of the incident's services",
            ),
            change_id="deploy-cart-1",
            change_source="api",
        ),
        Cause(
            kind="change",
            text="feature_flag new-wallet on checkout-web",
            score=23.0,
            evidence=(
                "feature_flag new-wallet on checkout-web 4 min before the first alert",
                "labelled journey=checkout, not on the incident's services",
            ),
            change_id="feature_flag-checkout-web-4",
            change_source="api",
        ),
        Cause(
            kind="change",
            text="config on payment-service",
            score=3.6,
            evidence=(
                "config on payment-service 5 min after the first alert",
                "payment-service is the probable upstream service of the incident",
            ),
            change_id="config-payment-service--5",
            change_source="api",
        ),
        Cause(
            kind="change",
            text="deploy 7.1 to search",
            score=2.8,
            evidence=(
                "deploy 7.1 to search 1 min before the first alert",
                "search is not one of the incident's services",
            ),
            change_id="deploy-search-1",
            change_source="api",
        ),
    )
    assert [match.service for match in report(events).changes] == [
        "payment-service",
        "cart",
        "checkout-web",
        "payment-service",
        "search",
    ]


def test_the_closest_overlapping_deploy_ranks_first() -> None:
    causes = report([change(20, version="old"), change(2, version="new")]).causes

    assert [cause.text for cause in causes] == [
        "deploy new to payment-service",
        "deploy old to payment-service",
    ]
    assert causes[0].score > causes[1].score


def test_any_overlapping_change_before_the_start_outranks_unrelated_and_later_ones() -> None:
    oldest_overlap = change(30, "cart", version="1")
    unrelated_at_start = change(0, "search", version="2")
    right_after = change(-0.1, version="3")

    causes = report([unrelated_at_start, right_after, oldest_overlap]).causes

    # The overlapping change is a guess (30 min before, not upstream): the services'
    # ranking still names the upstream one, and says why no change is trusted.
    assert [cause.text for cause in causes] == [
        "payment-service",
        "deploy 1 to cart",
        "deploy 3 to payment-service",
        "deploy 2 to search",
    ]
    assert causes[0].evidence[-1] == (
        "no change to the incident's services in the 30 min before the first alert close "
        "enough to it to be trusted"
    )
    assert causes[1].evidence[0] == "deploy 1 to cart 30 min before the first alert"
    assert causes[1].score < CAUSE_CONFIDENCE <= causes[0].score
    assert (
        causes[2].evidence[0] == "deploy 3 to payment-service less than 1 min after the first alert"
    )
    # A trusted overlapping change needs no such help.
    assert report([change(2, "cart", version="1")]).causes[0].text == "deploy 1 to cart"
    # A lone service is no news: its weak change stays the best candidate, a guess.
    [guess] = report([change(30, version="1")], {"payment-service": START_MS}).causes
    assert (guess.text, guess.score < CAUSE_CONFIDENCE) == ("deploy 1 to payment-service", True)


def test_the_earliest_firing_service_is_the_cause_when_no_change_overlaps() -> None:
    causes = report([change(1, "search", version="7.1")]).causes

    assert causes[0] == Cause(
        kind="service",
        text="payment-service",
        score=25.0,
        evidence=(
            "payment-service's alerts started first, 3 min before cart's",
            "no change to the incident's services in the 30 min before the first alert",
        ),
    )
    assert [cause.text for cause in causes[1:]] == ["deploy 7.1 to search"]
    assert report([]).causes == causes[:1]


def test_a_lone_service_is_said_to_be_alone() -> None:
    alone = {"payment-service": START_MS}

    [service] = report([], alone).causes
    [deploy] = report([change(3, version="9")], alone).causes

    assert service.evidence[0] == "payment-service is the only service firing in the incident"
    assert deploy.evidence == (
        "deploy 9 to payment-service 3 min before the first alert",
        "payment-service is the only service in the incident",
    )


def test_no_services_and_no_changes_is_an_empty_report() -> None:
    assert report([], {}) == ChangeReport()


def test_order_is_deterministic_score_then_time_then_id() -> None:
    events = [
        change(5, "search", id="b"),
        change(5, "search", id="a"),
        change(5, "payments-db", id="c"),
        change(6, "search", id="d"),
    ]

    forward = report(events)
    backward = report(events[::-1])

    assert forward == backward
    assert [match.id for match in forward.changes] == ["a", "b", "c", "d"]


def test_one_change_reported_by_two_sources_is_one_cause() -> None:
    from_api = change(2, version="2026.04.18-3", id="42")
    from_grafana = change(2, version="2026.04.18-3", id="42", source="grafana")

    result = report([from_api, from_grafana, from_api])

    assert [(match.source, match.id) for match in result.changes] == [
        ("api", "42"),
        ("grafana", "42"),
    ]
    assert [cause.text for cause in result.causes] == ["deploy 2026.04.18-3 to payment-service"]


def test_changes_and_causes_are_capped_keeping_the_strongest() -> None:
    events = [
        change(minutes, "cart", id=f"c{minutes}", version=str(minutes)) for minutes in range(30)
    ]

    result = report(events)

    assert len(result.changes) == MAX_CHANGES
    assert len(result.causes) == MAX_CAUSES
    assert [match.id for match in result.changes[:3]] == ["c0", "c1", "c2"]


def test_describe_wording() -> None:
    assert describe(change(1, version="2026.04.18-3")) == "deploy 2026.04.18-3 to payment-service"
    assert describe(change(1, type="rollback", version="2026.04.18-2")) == (
        "rollback 2026.04.18-2 to payment-service"
    )
    assert describe(change(1, "cart", "feature_flag", version="new-wallet")) == (
        "feature_flag new-wallet on cart"
    )
    assert describe(change(1, "cart", "scale")) == "scale on cart"


def test_changes_out_of_the_incidents_scope_are_never_seen() -> None:
    staging = change(1, environment="staging")
    other_region = change(1, "cart", region="us", id="us")
    other_cluster = change(1, labels={"cluster": "k2"}, id="k2")
    here = change(5, environment="prod", region="eu", labels={"cluster": "k1"}, id="here")
    unscoped = change(8, "cart", id="anywhere")
    # A label the incident does not group by contradicts nothing.
    namespaced = change(9, "cart", labels={"namespace": "shop"}, id="namespaced")

    found = report([staging, other_region, other_cluster, here, unscoped, namespaced])

    assert [m.id for m in found.changes] == ["here", "anywhere", "namespaced"]
    assert all("staging" not in c.text and c.score > 0 for c in found.causes)


def test_scope_follows_the_configured_labels() -> None:
    event = change(1, environment="production", region="eu-west-1", id="renamed")
    incident = {"environment": "production", "zone": "eu-west-1"}
    found = correlate(
        [event],
        services=SERVICES,
        ranking=ranking_of(SERVICES),
        journey_id="checkout",
        group_labels=incident,
        scope_labels={"environment": "environment", "region": "zone"},
        started_ms=START_MS,
        lookback_ms=LOOKBACK_MS,
        now_ms=START_MS,
    )
    assert [m.id for m in found.changes] == ["renamed"]
    assert report([event], group_labels=incident).changes != ()  # by default: no such labels
    assert report([event], group_labels={"env": "prod"}).changes == ()


def test_services_that_cannot_be_told_apart_are_no_answer() -> None:
    together = {"payment-service": START_MS, "cart": START_MS}

    (cause,) = report([], together).causes

    assert (cause.kind, cause.text) == ("service", "one of cart, payment-service")
    assert cause.score == 10.0
    assert cause.score < CAUSE_CONFIDENCE


def test_trusted_changes_to_two_services_that_score_alike_are_one_unknown_cause() -> None:
    # cart and cart-api, released together 2 min before the start, both firing since it;
    # a config change to cart 5 min before scores less, yet enough to be trusted alone.
    services = {"cart": START_MS, "cart-api": START_MS}
    events = [
        change(2, "cart", version="c-7", id="b"),
        change(2, "cart-api", version="a-7", id="a"),
        change(5, "cart", type="config"),
    ]
    found = report(events, services)
    top = found.causes[0]
    assert (top.kind, top.text, top.change_id) == (
        "change",
        "one of deploy a-7 to cart-api, deploy c-7 to cart",
        None,
    )
    assert top.score < CAUSE_CONFIDENCE
    assert top.evidence[0].endswith("score alike (61.3): which one is the cause is not known")
    # Nothing after it leads in their place: the config change is no cause on its own.
    state = IncidentState.model_validate(
        {"id": "i", "key": "k", "digest": "d", "journey": "checkout", "group_labels": {},
         "status": "open", "created_at": 0, "updated_at": 0, "first_firing_at": 0,
         "probable_causes": [asdict(c) for c in found.causes]}
    )  # fmt: skip
    assert found.causes[1].score >= CAUSE_CONFIDENCE
    assert leading(state) is None
    # The same ids swapped: the same story.
    swapped = [
        change(2, "cart", version="c-7", id="a"),
        change(2, "cart-api", version="a-7", id="b"),
    ]
    assert report(swapped + events[2:], services).causes[0].text == top.text


def test_tied_changes_to_quiet_callees_are_not_outranked_by_a_lesser_cause() -> None:
    # cart alone fires; it calls cart-db and cart-cache (journeys.yaml topology), which a
    # release train migrated in the same second 2 min before. A deploy labelled with the
    # journey, to a service outside the incident, came 3 min before: trusted, but less.
    alert = StoredAlert(
        fp="a", status="firing", labels={}, annotations={}, starts_at=START_MS,
        service="cart", severity="critical", first_seen=START_MS, changed_at=START_MS,
    )  # fmt: skip
    ranking = rank([alert], {"cart": ["cart-db", "cart-cache"]}, {"critical": 1.0}, 0.5, START_MS)
    found = correlate(
        [
            change(2, "cart-db", version="m-1", id="m"),
            change(2, "cart-cache", version="c-1", id="c"),
            change(3, "search", version="s-9", labels={"journey": "checkout"}),
        ],
        services={"cart": START_MS},
        ranking=ranking,
        journey_id="checkout",
        group_labels={},
        scope_labels={},
        started_ms=START_MS,
        lookback_ms=30 * MINUTE,
        now_ms=START_MS + 10 * MINUTE,
    )
    scores = {c.text: c.score for c in found.causes}
    assert scores["deploy s-9 to search"] >= CAUSE_CONFIDENCE  # trusted on its own
    # The README: trusted changes to different services that score alike leave the cause
    # unknown ("one of …"), and nothing after it is trusted in their place.
    assert found.causes[0].text == "one of deploy c-1 to cart-cache, deploy m-1 to cart-db", [
        (c.text, c.score) for c in found.causes
    ]
