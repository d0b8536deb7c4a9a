"""Slack sink: one Block Kit message per incident in the journey owner's channel (or the
default), edited in place with ``chat.update``; each later notification also as a reply in
the message's thread.

The client is slack_sdk's sync ``WebClient`` (urllib), run on a worker thread: its
``AsyncWebClient`` needs aiohttp, a second HTTP stack for one sink. The client is built
with no retry handlers: the SDK's default one re-sends a request whose connection broke,
which for ``chat.postMessage`` is a second visible message; retries belong to the outbox.

Crash safety: every message carries metadata naming the incident. When a delivery may
follow an attempt that landed without its receipt being recorded (attempt > 1, or no
receipt for a later notification), the channel's history is searched for that metadata
before posting, and a found message is edited instead. Thread replies carry the job id and
are looked up the same way. Both need the ``channels:history`` scope (``groups:history``
in private channels) and, when the channel is configured by name, ``channels:read``
(``groups:read``) to resolve the name to the ID that ``conversations.history`` takes.
"""

from __future__ import annotations

import http.client
import logging
import math
import re
import time
from datetime import datetime
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from receiver.config import SlackSinkConfig
from receiver.errors import DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from receiver.incident import Incident
from receiver.sinks import Delivery, Receipt
from receiver.sinks._http import (
    clip,
    error_for_status,
    incident_url,
    off_loop,
    redact,
    retry_after,
)
from receiver.sinks.slack_blocks import Message, render, reply_text
from receiver.tls import ssl_context

EVENT_TYPE = "journey_receiver_incident"
_SDK_LOGGER = logging.getLogger("journey_receiver.slack_sdk")
_SDK_LOGGER.setLevel(logging.INFO)
REPLY_EVENT_TYPE = "journey_receiver_update"
# Slack's clocks and ours differ; the message was posted after the incident was created.
_LOOKBACK_SLACK_S = 300
_PAGE = 200
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{6,}")
_AUTH_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"}
)
_SERVER_ERRORS = frozenset({"internal_error", "fatal_error", "service_unavailable"})
_RATE_LIMITED = frozenset({"ratelimited", "rate_limited"})


class SlackSink:
    name = "slack"
    coalesces_updates = False

    def __init__(self, config: SlackSinkConfig, external_url: str | None) -> None:
        self.config = config
        self.external_url = external_url
        self._token = config.token.get_secret_value()
        self._client = WebClient(
            token=self._token,
            base_url=config.base_url,
            # The SDK types the timeout as whole seconds; rounding up never shortens it.
            timeout=math.ceil(config.timeout),
            ssl=ssl_context(config.ca_file),
            retry_handlers=[],
            # The SDK logs every answer's body at DEBUG, and an answer may quote what it
            # was sent: its logger stays at INFO whatever the root level.
            logger=_SDK_LOGGER,
        )
        self._channel_ids: dict[str, str] = {}

    async def deliver(
        self, incident: Incident, delivery: Delivery, previous: Receipt | None
    ) -> Receipt:
        return await off_loop(self._deliver, incident, delivery, previous)

    async def aclose(self) -> None:
        """Nothing to release: urllib opens a connection per request."""

    def _deliver(self, incident: Incident, delivery: Delivery, previous: Receipt | None) -> Receipt:
        target = delivery.owner.slack_channel or self.config.channel
        refs = previous.refs if previous else {}
        channel, ts = refs.get("channel"), refs.get("ts")
        message = render(incident, incident_url(self.external_url, incident.id))
        try:
            if not (channel and ts) and (delivery.attempt > 1 or delivery.kind != "open"):
                channel, ts = self._find(incident, target) or (None, None)
            if not (channel and ts) or not self._update(channel, ts, message):
                channel, ts = self._post(incident, target, message)
            elif delivery.kind != "open" and self.config.thread_updates:
                self._reply(incident, delivery, channel, ts)
        except SlackApiError as exc:
            raise self._api_error(incident.id, exc, channel or target) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise self._transport_error(incident.id, exc) from exc
        except SlackRequestError as exc:
            raise PermanentDeliveryError(
                self.name, incident.id, "client", self._detail(str(exc))
            ) from exc
        return Receipt(sink=self.name, state=incident.status, refs={"channel": channel, "ts": ts})

    def _post(self, incident: Incident, channel: str, message: Message) -> tuple[str, str]:
        response = self._client.chat_postMessage(
            channel=channel,
            text=message.text,
            blocks=message.blocks,
            metadata={"event_type": EVENT_TYPE, "event_payload": {"incident_id": incident.id}},
            parse="none",
            link_names=False,
            unfurl_links=False,
            unfurl_media=False,
        )
        channel_id, ts = str(response["channel"]), str(response["ts"])
        self._channel_ids[channel] = channel_id
        return channel_id, ts

    def _update(self, channel: str, ts: str, message: Message) -> bool:
        """Edit the message; False when it is gone (deleted by someone), so a new one is
        posted rather than the incident going dark."""
        try:
            self._client.chat_update(
                channel=channel,
                ts=ts,
                text=message.text,
                blocks=message.blocks,
                parse="none",
                link_names=False,
            )
        except SlackApiError as exc:
            if _error_code(exc) == "message_not_found":
                return False
            raise
        return True

    def _reply(self, incident: Incident, delivery: Delivery, channel: str, ts: str) -> None:
        if delivery.attempt > 1 and self._replied(channel, ts, delivery.job_id):
            return
        self._client.chat_postMessage(
            channel=channel,
            thread_ts=ts,
            text=reply_text(delivery.kind, incident.priority, delivery.changes),
            metadata={
                "event_type": REPLY_EVENT_TYPE,
                "event_payload": {"incident_id": incident.id, "job_id": delivery.job_id},
            },
            parse="none",
            link_names=False,
            unfurl_links=False,
            unfurl_media=False,
        )

    def _find(self, incident: Incident, target: str) -> tuple[str, str] | None:
        """The channel ID and ts of the incident's message, posted by an attempt whose
        answer was lost."""
        channel = self._channel_id(target)
        if channel is None:
            return None
        created = datetime.fromisoformat(incident.created_at).timestamp()
        cursor: str | None = None
        while True:
            page = self._client.conversations_history(
                channel=channel,
                oldest=f"{created - _LOOKBACK_SLACK_S:.6f}",
                include_all_metadata=True,
                limit=_PAGE,
                cursor=cursor,
            )
            messages: list[dict[str, Any]] = page.get("messages", [])
            for found in messages:
                if _carries(found, EVENT_TYPE, "incident_id", incident.id):
                    return channel, str(found["ts"])
            cursor = _next_cursor(page.data)
            if not cursor:
                return None

    def _replied(self, channel: str, ts: str, job_id: str) -> bool:
        cursor: str | None = None
        while True:
            page = self._client.conversations_replies(
                channel=channel, ts=ts, include_all_metadata=True, limit=_PAGE, cursor=cursor
            )
            if any(_carries(m, REPLY_EVENT_TYPE, "job_id", job_id) for m in page["messages"]):
                return True
            cursor = _next_cursor(page.data)
            if not cursor:
                return False

    def _channel_id(self, channel: str) -> str | None:
        """``conversations.history`` takes IDs only; a configured ``#name`` is looked up
        once and remembered. None when no channel the bot can see has that name."""
        if _CHANNEL_ID.fullmatch(channel):
            return channel
        if channel in self._channel_ids:
            return self._channel_ids[channel]
        name = channel.removeprefix("#")
        cursor: str | None = None
        while True:
            page = self._client.conversations_list(
                types="public_channel,private_channel",
                exclude_archived=True,
                limit=1000,
                cursor=cursor,
            )
            channels: list[dict[str, Any]] = page.get("channels", [])
            for found in channels:
                if found.get("name") == name:
                    self._channel_ids[channel] = str(found["id"])
                    return self._channel_ids[channel]
            cursor = _next_cursor(page.data)
            if not cursor:
                return None

    def _api_error(self, incident_id: str, exc: SlackApiError, channel: str) -> DeliveryError:
        status = exc.response.status_code
        code = _error_code(exc)
        method = exc.response.api_url.rsplit("/", 1)[-1].split("?", 1)[0]
        said = self._detail(f"{method}: HTTP {status}, {code or 'no error code'}")
        if status == 429 or code in _RATE_LIMITED:
            header = {k.lower(): v for k, v in exc.response.headers.items()}.get("retry-after")
            wait = retry_after(header, time.time())
            return RetryableDeliveryError(self.name, incident_id, "rate_limited", said, wait)
        if code == "request_timeout":
            return RetryableDeliveryError(self.name, incident_id, "timeout", said)
        if status >= 500 or code in _SERVER_ERRORS:
            return RetryableDeliveryError(self.name, incident_id, "server", said)
        if code in _AUTH_ERRORS:
            fix = "the bot token (sinks.slack.token) is not valid: issue a new one"
            return PermanentDeliveryError(self.name, incident_id, "auth", f"{said}: {fix}")
        if code == "missing_scope":
            needed = _response_field(exc, "needed") or "a scope"
            fix = f"the Slack app lacks {needed}: add it and reinstall the app"
            return PermanentDeliveryError(self.name, incident_id, "auth", f"{said}: {fix}")
        if code in ("channel_not_found", "not_in_channel", "is_archived"):
            fix = (
                f"cannot post in {channel}: check the journey's owner.slack_channel or "
                "sinks.slack.channel, and invite the bot to the channel (/invite @bot)"
            )
            return PermanentDeliveryError(self.name, incident_id, "client", f"{said}: {fix}")
        if status != 200:
            return error_for_status(self.name, incident_id, status, said)
        return PermanentDeliveryError(self.name, incident_id, "client", said)

    def _transport_error(self, incident_id: str, exc: Exception) -> RetryableDeliveryError:
        timed_out = isinstance(exc, TimeoutError) or isinstance(
            getattr(exc, "reason", None), TimeoutError
        )
        detail = self._detail(f"{type(exc).__name__}: {exc}")
        return RetryableDeliveryError(
            self.name, incident_id, "timeout" if timed_out else "server", detail
        )

    def _detail(self, text: str) -> str:
        return clip(redact(text, [self._token]))


def _error_code(exc: SlackApiError) -> str:
    return _response_field(exc, "error") or ""


def _response_field(exc: SlackApiError, field: str) -> str | None:
    data = exc.response.data
    value = data.get(field) if isinstance(data, dict) else None
    return str(value) if value is not None else None


def _carries(message: dict[str, Any], event_type: str, key: str, value: str) -> bool:
    metadata = message.get("metadata") or {}
    payload = metadata.get("event_payload") or {}
    return bool(metadata.get("event_type") == event_type and payload.get(key) == value)


def _next_cursor(data: dict[str, Any] | bytes) -> str | None:
    if not isinstance(data, dict):
        return None
    cursor = (data.get("response_metadata") or {}).get("next_cursor")
    return str(cursor) if cursor else None
