"""The definition a run is decided under: what it names, and what it keeps out."""

from __future__ import annotations

from typing import Any

from receiver.act.definition import definition, moved
from receiver.config import Action, Journey, Owner


def checkout(
    automation: str = "auto", responders: tuple[str, ...] = ("U0ALICE",), **run: Any
) -> Journey:
    webhook = {
        "url": "https://deploy.example.com/rollback/{service}",
        "headers": {"Authorization": "Bearer token-1"},
        "body": {"to": "{previous_version}"},
        "secret": "s3cret-one",
    } | run
    action = Action.model_validate(
        {
            "id": "rollback",
            "title": "Roll back {service}",
            "when": {"change_type": "deploy", "within": "15m"},
            "run": {"webhook": webhook},
        }
    )
    owner = Owner(team="p", responders=list(responders))
    return Journey(
        id="checkout", name="Checkout", weight=1.0, owner=owner, stages=[], actions=[action],
        automation=automation,
    )  # fmt: skip


def defined(journey: Journey) -> str:
    return definition(journey, journey.actions[0])


def test_what_the_run_asks_for_is_named_part_by_part() -> None:
    before = defined(checkout())
    assert moved(before, before) == []
    assert moved(before, defined(checkout(url="https://deploy.example.com/all"))) == ["url"]
    assert moved(before, defined(checkout(method="PUT", body=None))) == ["method", "body"]
    assert moved(before, defined(checkout(headers={"X-Force": "yes"}))) == ["headers"]
    assert moved(before, defined(checkout("assist", ("U0BOB",)))) == [
        "automation",
        "owner.responders",
    ]
    # Gone, or from another version of the receiver with other parts: all of it moved.
    assert moved(before, None) == moved("abc", before) == [
        "automation", "owner.responders", "when", "url", "method", "headers", "body",
    ]  # fmt: skip


def test_how_the_run_is_sent_and_its_secrets_are_no_part_of_it() -> None:
    # Kept in the store with the run's job: a token, even digested, is never in it, and
    # rotating one does not stop the runs already asked for.
    before = defined(checkout())
    rotated = checkout(
        headers={"authorization": "Bearer token-2"}, secret="s3cret-two", timeout="30s"
    )
    assert defined(rotated) == before
    url = "https://deployer:{}@deploy.example.com/rollback/{{service}}"
    assert defined(checkout(url=url.format("pw-1"))) == defined(checkout(url=url.format("pw-2")))
    assert len(before) == 7 * 8 + 6
