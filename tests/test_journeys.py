from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from receiver.config import JourneysConfig, load_journeys
from receiver.journeys import JourneyCatalog

EXAMPLE = Path(__file__).parents[1] / "config" / "journeys.yaml"


def make_journeys(
    *journeys: dict[str, Any], unmapped: dict[str, Any] | None = None
) -> JourneysConfig:
    data: dict[str, Any] = {"journeys": list(journeys)}
    if unmapped is not None:
        data["unmapped"] = unmapped
    return JourneysConfig.model_validate(data)


def make_journey(journey_id: str, *stages: tuple[str, list[str]], **extra: Any) -> dict[str, Any]:
    return {
        "id": journey_id,
        "name": journey_id.title(),
        "weight": 0.5,
        "owner": {"team": "team-" + journey_id},
        "stages": [{"id": s, "weight": 1.0, "match": match} for s, match in stages],
        **extra,
    }


def test_first_matching_stage_in_file_order_wins() -> None:
    catalog = JourneyCatalog(
        make_journeys(
            make_journey(
                "checkout",
                ("payment", ['service=~"payment.*"', 'env="prod"']),
                ("any-prod", ['env="prod"']),
            ),
            make_journey("platform", ("payment-staging", ['service=~"payment.*"'])),
        ),
        default_group_by=["env", "region"],
    )

    journey, stage = catalog.match({"service": "payment-service", "env": "prod"})
    assert (journey.id, stage and stage.id) == ("checkout", "payment")
    journey, stage = catalog.match({"service": "cart", "env": "prod"})
    assert (journey.id, stage and stage.id) == ("checkout", "any-prod")
    journey, stage = catalog.match({"service": "payment-service", "env": "staging"})
    assert (journey.id, stage and stage.id) == ("platform", "payment-staging")


def test_all_matchers_of_a_stage_must_match() -> None:
    catalog = JourneyCatalog(
        make_journeys(make_journey("checkout", ("cart", ['service=~"cart(-.*)?"', 'env="prod"']))),
        default_group_by=["env"],
    )
    assert catalog.match({"service": "cart-api", "env": "prod"})[0].id == "checkout"
    assert catalog.match({"service": "cart-api", "env": "dev"})[0].id == "unmapped"
    assert catalog.match({"service": "cart-api"})[0].id == "unmapped"


def test_unmatched_alerts_go_to_the_unmapped_journey() -> None:
    catalog = JourneyCatalog(
        make_journeys(
            make_journey("checkout", ("payment", ['service="payment-service"'])),
            unmapped={"weight": 0.2, "owner": {"team": "sre"}, "group_by": ["cluster"]},
        ),
        default_group_by=["env", "region"],
    )

    journey, stage = catalog.match({"service": "something-else"})

    assert stage is None
    assert journey.id == "unmapped"
    assert journey.name == "Unmapped alerts"
    assert journey.weight == 0.2
    assert journey.owner.team == "sre"
    assert journey.stages == []
    assert catalog.group_by(journey) == ("cluster",)
    assert catalog.match({})[0] is journey


def test_unmapped_defaults() -> None:
    catalog = JourneyCatalog(JourneysConfig(), default_group_by=["env", "region"])
    journey, stage = catalog.match({"service": "x"})
    assert stage is None
    assert (journey.id, journey.weight, journey.owner.team) == ("unmapped", 0.1, "unowned")
    assert catalog.group_by(journey) == ("env", "region")


def test_group_by_override_else_default() -> None:
    catalog = JourneyCatalog(
        make_journeys(
            make_journey("checkout", ("payment", ['service="pay"']), group_by=["env", "region"]),
            make_journey("fulfilment", ("shipping", ['service="ship"']), group_by=["env"]),
            make_journey("browse", ("search", ['service="search"'])),
            make_journey("global", ("dns", ['service="dns"']), group_by=[]),
        ),
        default_group_by=["env", "region", "cluster"],
    )

    def group_by(service: str) -> tuple[str, ...]:
        journey, _ = catalog.match({"service": service})
        return catalog.group_by(journey)

    assert group_by("pay") == ("env", "region")
    assert group_by("ship") == ("env",)
    assert group_by("search") == ("env", "region", "cluster")
    assert group_by("dns") == ()


def test_find_and_journeys() -> None:
    catalog = JourneyCatalog(
        make_journeys(
            make_journey("checkout", ("payment", ['service="pay"'])),
            make_journey("browse", ("search", ['service="search"'])),
        ),
        default_group_by=["env"],
    )
    assert [j.id for j in catalog.journeys] == ["checkout", "browse", "unmapped"]
    assert catalog.find("browse").name == "Browse"
    assert catalog.find("unmapped") is catalog.journeys[-1]
    # A journey a reload removed: its incidents fall back to ``unmapped``.
    assert catalog.find("nope") is catalog.journeys[-1]


@pytest.mark.parametrize(
    ("labels", "journey_id", "stage_id"),
    [
        ({"service": "payment-service", "env": "prod", "region": "eu"}, "checkout", "payment"),
        ({"service": "payments-db", "env": "prod"}, "checkout", "payment"),
        ({"service": "cart-api", "env": "prod"}, "checkout", "cart"),
        ({"service": "cart", "env": "prod"}, "checkout", "cart"),
        ({"service": "cart-api", "env": "staging"}, "unmapped", None),
        ({"service": "search-api", "env": "prod"}, "browse", "search"),
        ({"service": "auth-service", "env": "prod"}, "signup", "login"),
        ({"service": "warehouse-sync", "env": "prod"}, "fulfilment", "warehouse-sync"),
        ({"alertname": "Watchdog"}, "unmapped", None),
    ],
)
def test_example_journeys(labels: dict[str, str], journey_id: str, stage_id: str | None) -> None:
    catalog = JourneyCatalog(load_journeys(EXAMPLE), default_group_by=["env", "region"])
    journey, stage = catalog.match(labels)
    assert journey.id == journey_id
    assert (stage.id if stage else None) == stage_id
