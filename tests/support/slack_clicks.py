"""Slack's side of interactivity: what a person does, signed and sent as Slack would."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from tests.conftest import FakeClock
from tests.support.harness import Harness
from tests.support.sink_world import Fakes
from tests.support.vendor_signing import sign_slack

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
"""The Slack app's signing secret (``inbound.slack.signing_secret``)."""
ALICE = {"id": "U0ALICE", "username": "alice", "name": "alice", "team_id": "T0FAKE"}
BOB = {"id": "U0BOB", "username": "bob", "name": "bob", "team_id": "T0FAKE"}
CAROL = {"id": "U0CAROL", "username": "carol", "name": "carol", "team_id": "T0FAKE"}


_action_ts = itertools.count(1)


@dataclass
class Slack:
    """Slack's side: signs and sends what a person does, as Slack would."""

    rx: Harness
    world: Fakes
    clock: FakeClock
    response_url: str = ""

    def signed(
        self, payload: dict[str, Any], secret: str = SECRET, at: float | None = None
    ) -> tuple[bytes, dict[str, str]]:
        return self.sign(urlencode({"payload": json.dumps(payload)}).encode(), secret, at)

    def sign(
        self, body: bytes, secret: str = SECRET, at: float | None = None
    ) -> tuple[bytes, dict[str, str]]:
        timestamp = str(int(self.clock.now if at is None else at))
        return body, {
            "content-type": "application/x-www-form-urlencoded",
            "x-slack-request-timestamp": timestamp,
            "x-slack-signature": sign_slack(body, secret, timestamp),
        }

    async def send(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return await self.rx.client.post(
            "/inbound/slack/interactions", content=body, headers=headers
        )

    def click_payload(
        self,
        action_id: str,
        incident_id: str,
        user: dict[str, str] = ALICE,
        trigger_id: str = "",
        action_ts: str = "",
        message_ts: str = "",
    ) -> dict[str, Any]:
        self.response_url = self.world.slack_server.url + self.world.slack.response_url()
        return {
            "type": "block_actions",
            "user": user,
            "api_app_id": "A0FAKEAPP",
            "token": "legacy-verification-token",
            "container": {"type": "message", "channel_id": "C0CHECKOUT", "is_ephemeral": False}
            | ({"message_ts": message_ts} if message_ts else {}),
            "trigger_id": trigger_id or self.world.slack.trigger(),
            "team": {"id": "T0FAKE", "domain": "fake"},
            "channel": {"id": "C0CHECKOUT", "name": "inc-checkout"},
            "response_url": self.response_url,
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": "jr_actions",
                    "text": {"type": "plain_text", "text": action_id},
                    "value": incident_id,
                    "type": "button",
                    "action_ts": action_ts or f"{self.clock.now:.0f}.{next(_action_ts):06d}",
                }
            ],
        }

    async def click(
        self, action_id: str, incident_id: str, user: dict[str, str] = ALICE, **more: str
    ) -> httpx.Response:
        return await self.send(
            *self.signed(self.click_payload(action_id, incident_id, user, **more))
        )

    async def submit(
        self, view: dict[str, Any], values: dict[str, Any], user: dict[str, str] = ALICE
    ) -> httpx.Response:
        payload = {
            "type": "view_submission",
            "team": {"id": "T0FAKE", "domain": "fake"},
            "user": user,
            "api_app_id": "A0FAKEAPP",
            "trigger_id": self.world.slack.trigger(),
            "view": {**view, "state": {"values": values}, "hash": "1776500000.abcdef"},
            "response_urls": [],
        }
        return await self.send(*self.signed(payload))

    def responses(self) -> list[dict[str, Any]]:
        return self.world.slack.responses(self.response_url)
