"""Slack sink: one Block Kit message per incident in the journey owner's channel (or the
default), edited in place with ``chat.update``; each later notification also as a reply in
the message's thread.

The client is slack_sdk's sync ``WebClient`` (urllib), each call run on a worker thread:
its ``AsyncWebClient`` needs aiohttp, a second HTTP stack for one sink. The client is built
with no retry handlers: the SDK's default one re-sends a request whose connection broke,
which for ``chat.postMessage`` is a second visible message; retries belong to the outbox.

Crash safety: every message carries metadata naming the incident, every thread reply the
job id. The channel's history (or the thread) is searched for them before writing only
when an earlier write may have landed unheard: the previous attempt's write went
unanswered (timeout, dropped connection, a replica that died: the outbox says so in
``previous_error_ambiguous``), or the receipt of an earlier delivery does not name the
message. No receipt, or a pending one, means Slack has not heard of the incident (an
update is its first notification when its priority rose into Slack's routing): it is
posted without looking. A refusal (429, ``ratelimited``, any other ``ok: false``) proves
nothing was posted, so it costs no lookup: the history methods are Tier 3 (and
``conversations.list`` Tier 2), scarce in a storm. A write answered by ``internal_error``
or ``fatal_error`` ("it's possible some aspect of the operation succeeded", Slack's docs)
or by an HTTP 5xx (a proxy's 502/504 says nothing of what Slack did) is as ambiguous as
no answer. An error raised while such a doubt is still open, or once a lookup found the
message that no receipt names yet, is ``ambiguous`` again, so the next attempt looks too.

Scopes: posting needs ``chat:write`` only. The lookups need ``channels:history``
(``groups:history`` in private channels) and, for a channel configured by name,
``channels:read`` (``groups:read``) to resolve the name to the ID that
``conversations.history`` takes. A lookup Slack refuses for a scope or the bot's
membership degrades to posting, with a warning naming what is missing and
``journey_receiver_slack_lookup_degraded_total{reason}``. A name's ID is kept in the
store's cache, shared by every replica: learnt from each post's answer or from
``conversations.list`` (200 a page), and a name not found is not listed again for
10 minutes.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import math
import re
import time
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web import SlackResponse

from receiver.config import SlackSinkConfig
from receiver.errors import (
    DeliveryError,
    PermanentDeliveryError,
    RetryableDeliveryError,
    StoreUnavailable,
)
from receiver.incident import Incident
from receiver.logtext import clip, redact
from receiver.sinks import Delivery, Receipt, Shared
from receiver.sinks._http import error_for_status, incident_url, off_loop, retry_after
from receiver.sinks.slack_blocks import Message, render, reply_text
from receiver.store.cache import LocalCache
from receiver.store.deliveries import Job
from receiver.store.records import IncidentState
from receiver.tls import ssl_context

EVENT_TYPE = "journey_receiver_incident"
logger = logging.getLogger("journey_receiver.sinks.slack")
_SDK_LOGGER = logging.getLogger("journey_receiver.slack_sdk")
# Every failure the SDK logs it also raises, and the sink (with the job) and `check
# --online` (with the field) report each: at ERROR the SDK said each again, without either
# (or, in `check --online`, as a stray line after the summary).
_SDK_LOGGER.setLevel(logging.CRITICAL)
REPLY_EVENT_TYPE = "journey_receiver_update"
# Slack's clocks and ours differ; the message was posted after the incident was created.
_LOOKBACK_SLACK_S = 300
# Slack's advice for paginated methods ("no more than 200"); conversations.list refuses
# 1000 and above.
_PAGE = 200
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{6,}")


def web_client(config: SlackSinkConfig, timeout: float | None = None) -> WebClient:
    """The Slack client as the sink uses it (``check --online`` and the interactivity
    endpoint too): the config's token, URL and TLS, and no retry handlers, since the SDK's
    default one re-sends a request whose connection broke (a second visible message)."""
    return WebClient(
        token=config.token.get_secret_value(),
        base_url=config.base_url,
        # The SDK types the timeout as whole seconds; rounding up never shortens it.
        timeout=math.ceil(config.timeout if timeout is None else timeout),
        ssl=ssl_context(config.ca_file),
        retry_handlers=[],
        # The SDK logs every answer's body at DEBUG, and an answer may quote what it was
        # sent: its logger stays quiet whatever the root level.
        logger=_SDK_LOGGER,
    )


def is_channel_id(target: str) -> bool:
    """``C0123ABCD`` rather than ``#name``."""
    return _CHANNEL_ID.fullmatch(target) is not None


# The store's cache: channel name (no "#") -> ID, or "" for a name no listing found.
CHANNELS = "slack:channel-id"
CHANNEL_TTL_MS = 86_400_000
# The store's cache: incident id -> the channel its message was last posted to (written
# before the post), where a lookup after a post that got no answer looks first: the owner's
# channel may have changed since (a reload, or a replica of a rolling change).
POSTED_IN = "slack:posted-in"
NOT_FOUND_TTL_MS = 600_000
_AUTH_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"}
)
_SERVER_ERRORS = frozenset({"internal_error", "fatal_error", "service_unavailable"})
# Slack's answer when part of the call may have been carried out all the same.
_MAYBE_APPLIED = frozenset({"internal_error", "fatal_error"})
# The methods that write: failing with a doubt, they may have written.
_WRITES = frozenset({"chat.postMessage", "chat.update"})
_RATE_LIMITED = frozenset({"ratelimited", "rate_limited"})
# chat.update's refusals for a message that cannot be edited any more where it is: gone,
# its channel out of reach, or posted by another app's bot (the token changed to a new
# Slack app: ``cant_update_message``) or past the workspace's edit window.
_OUT_OF_REACH = frozenset(
    {
        "message_not_found",
        "is_archived",
        "channel_not_found",
        "not_in_channel",
        "cant_update_message",
        "edit_window_closed",
    }
)
# A lookup refused for these is skipped, not failed: the sink posts without it.
_LOOKUP_REFUSALS = frozenset({"missing_scope", "not_in_channel", "channel_not_found"})
_BOTH_TYPES = "public_channel,private_channel"


def edit_job(state: IncidentState, sinks: Collection[str], change: str, now_ms: int) -> list[Job]:
    """The job that edits the incident's Slack message and says ``change`` in its thread,
    when this replica has the sink (``sinks``) and the incident a message; else none.
    What people did anywhere (a click, a vendor's webhook, the API, a page) shows there."""
    name = SlackSink.name
    if name not in sinks or name not in state.sinks:
        return []
    return [Job(incident=state.id, sink=name, kind="update", changes=[change], due=now_ms)]


class SlackSink:
    name = "slack"
    coalesces_updates = False

    def __init__(
        self, config: SlackSinkConfig, external_url: str | None, shared: Shared | None = None
    ) -> None:
        self.config = config
        self.external_url = external_url
        self._token = config.token.get_secret_value()
        self._client = web_client(config)
        shared = shared or Shared()
        self._cache = shared.cache or LocalCache()
        self._metrics = shared.metrics
        self._keep_ms = shared.retention_ms

    async def aclose(self) -> None:
        """Nothing to release: urllib opens a connection per request."""

    async def deliver(
        self, incident: Incident, delivery: Delivery, previous: Receipt | None
    ) -> Receipt:
        target = delivery.owner.slack_channel or self.config.channel
        refs = previous.refs if previous else {}
        channel, ts = refs.get("channel"), refs.get("ts")
        message = render(
            incident,
            incident_url(self.external_url, incident.id),
            buttons=bool(self.config.buttons),
        )
        # True while an earlier attempt may have made the write this one is about to make;
        # an error before a lookup settles it leaves the next attempt just as unsure.
        unsure = delivery.previous_error_ambiguous
        # True once a lookup found the message: no receipt names it until this attempt's
        # is recorded, so an error before that sends the next attempt looking again.
        found = False
        looked = False
        try:
            if not (channel and ts) and (unsure or _lost(previous)):
                looked = True
                channel, ts = await self._find(incident, target) or (None, None)
                found = ts is not None
                # Not there: no earlier attempt posted it, nor replied in its thread.
                unsure = unsure and found
            if channel and ts and not await self._update(channel, ts, message):
                # Out of reach where it was: any error from here on is the target's. An
                # earlier attempt may have posted its replacement unheard: look first.
                channel = ts = None
                if unsure and not looked:
                    channel, ts = await self._find(incident, target) or (None, None)
                    found = ts is not None
                    unsure = found
                    if channel and ts and not await self._update(channel, ts, message):
                        channel = ts = None
            if not (channel and ts):
                channel, ts = await self._post(incident, target, message)
            elif delivery.kind != "open" and self.config.thread_updates:
                replied = unsure and await self._replied(channel, ts, delivery.job_id)
                unsure = False
                if not replied:
                    await self._reply(incident, delivery, channel, ts)
        except SlackApiError as exc:
            raise self._api_error(incident.id, exc, channel or target, unsure or found) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise self._transport_error(incident.id, exc) from exc
        except SlackRequestError as exc:
            raise PermanentDeliveryError(
                self.name, incident.id, "client", self._detail(str(exc))
            ) from exc
        return Receipt(sink=self.name, state=incident.status, refs={"channel": channel, "ts": ts})

    async def _call(self, method: Callable[..., SlackResponse], **params: Any) -> SlackResponse:
        """One Web API call, on a worker thread."""
        return await off_loop(method, **params)

    async def _post(self, incident: Incident, target: str, message: Message) -> tuple[str, str]:
        await self._cache.set(POSTED_IN, incident.id, target, self._keep_ms)
        response = await self._call(
            self._client.chat_postMessage,
            channel=target,
            text=message.text,
            blocks=message.blocks,
            metadata={"event_type": EVENT_TYPE, "event_payload": {"incident_id": incident.id}},
            parse="none",
            link_names=False,
            unfurl_links=False,
            unfurl_media=False,
        )
        channel_id, ts = str(response["channel"]), str(response["ts"])
        if not _CHANNEL_ID.fullmatch(target):
            # The answer names the channel's ID: a later lookup needs no listing. Only a
            # hint, so a store that is down must not cost the receipt of a posted message.
            with contextlib.suppress(StoreUnavailable):
                await self._cache.set(CHANNELS, _name(target), channel_id, CHANNEL_TTL_MS)
        return channel_id, ts

    async def _update(self, channel: str, ts: str, message: Message) -> bool:
        """Edit the message; False when it is gone (deleted by someone) or out of reach
        (its channel archived, deleted, or left by the bot), so a new one is posted in the
        owner's channel now rather than the incident going dark there for good."""
        try:
            await self._call(
                self._client.chat_update,
                channel=channel,
                ts=ts,
                text=message.text,
                blocks=message.blocks,
                parse="none",
                link_names=False,
            )
        except SlackApiError as exc:
            if _error_code(exc) in _OUT_OF_REACH:
                return False
            raise
        return True

    async def _reply(self, incident: Incident, delivery: Delivery, channel: str, ts: str) -> None:
        await self._call(
            self._client.chat_postMessage,
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

    async def _find(self, incident: Incident, target: str) -> tuple[str, str] | None:
        """The channel ID and ts of the incident's message, posted by an attempt whose
        answer was lost; None when there is none, or Slack would not let the sink look.
        Looked for first where the last post went, then in ``target``."""
        with contextlib.suppress(StoreUnavailable):
            posted = await self._cache.get(POSTED_IN, incident.id)
            if posted and posted != target:
                found = await self._find_in(incident, posted)
                if found is not None:
                    return found
        return await self._find_in(incident, target)

    async def _find_in(self, incident: Incident, target: str) -> tuple[str, str] | None:
        channel = await self._channel_id(target)
        if channel is None:
            return None
        created = datetime.fromisoformat(incident.created_at).timestamp()
        cursor: str | None = None
        try:
            while True:
                page = await self._call(
                    self._client.conversations_history,
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
        except SlackApiError as exc:
            if self._lookup_refused(exc, target):
                return None
            raise

    async def _replied(self, channel: str, ts: str, job_id: str) -> bool:
        """Whether the thread holds this job's reply (False when Slack would not let the
        sink look)."""
        cursor: str | None = None
        try:
            while True:
                page = await self._call(
                    self._client.conversations_replies,
                    channel=channel,
                    ts=ts,
                    include_all_metadata=True,
                    limit=_PAGE,
                    cursor=cursor,
                )
                messages: list[dict[str, Any]] = page.get("messages", [])
                if any(_carries(m, REPLY_EVENT_TYPE, "job_id", job_id) for m in messages):
                    return True
                cursor = _next_cursor(page.data)
                if not cursor:
                    return False
        except SlackApiError as exc:
            if self._lookup_refused(exc, channel):
                return False
            raise

    async def _channel_id(self, target: str) -> str | None:
        """``conversations.history`` takes IDs only: a configured ``#name`` is looked up in
        the shared cache, else listed and remembered (a name not found too, for a while).
        None when no channel the bot can list has that name."""
        if _CHANNEL_ID.fullmatch(target):
            return target
        name = _name(target)
        known = await self._cache.get(CHANNELS, name)
        if known is not None:
            return known or None
        found = await self._list_channel(name)
        ttl = CHANNEL_TTL_MS if found else NOT_FOUND_TTL_MS
        await self._cache.set(CHANNELS, name, found or "", ttl)
        return found

    async def _list_channel(self, name: str) -> str | None:
        types = _BOTH_TYPES
        # Slack's refusal of private channels, when the public ones were listed instead.
        narrowed: SlackApiError | None = None
        cursor: str | None = None
        while True:
            try:
                page = await self._call(
                    self._client.conversations_list,
                    types=types,
                    exclude_archived=True,
                    limit=_PAGE,
                    cursor=cursor,
                )
            except SlackApiError as exc:
                if narrowed is None and _error_code(exc) in ("missing_scope", "invalid_types"):
                    # channels:read without groups:read: the public channels still count.
                    narrowed, types, cursor = exc, "public_channel", None
                    continue
                if self._lookup_refused(exc, f"#{name}"):
                    return None
                raise
            channels: list[dict[str, Any]] = page.get("channels", [])
            for found in channels:
                if found.get("name") == name:
                    return str(found["id"])
            cursor = _next_cursor(page.data)
            if not cursor:
                if narrowed is not None:
                    # Perhaps a private channel: say what would have found it.
                    self._lookup_refused(narrowed, f"#{name}")
                return None

    def _lookup_refused(self, exc: SlackApiError, channel: str) -> bool:
        """True, once said and counted, when Slack refused a lookup for a scope or the
        bot's membership: the sink then writes without looking, rather than never."""
        code = _error_code(exc)
        if code not in _LOOKUP_REFUSALS:
            return False
        if code == "missing_scope":
            needed = _response_field(exc, "needed") or "a read scope"
            fix = f"the Slack app lacks {needed}: add it and reinstall the app"
        elif code == "not_in_channel":
            fix = f"the bot is not a member of {channel}: invite it (/invite @bot)"
        else:
            fix = f"the bot cannot see {channel}: invite it, or configure the channel's ID"
        logger.warning(
            "slack: %s refused (%s), so a message an earlier attempt may have posted was not "
            "looked for; posting anyway, which may show it twice. %s",
            _method(exc), code, fix,
        )  # fmt: skip
        if self._metrics is not None:
            self._metrics.slack_lookup_degraded.labels(code).inc()
        return True

    def _api_error(
        self, incident_id: str, exc: SlackApiError, channel: str, unsure: bool
    ) -> DeliveryError:
        """The error for Slack's answer. A refusal proves this request wrote nothing, so a
        retryable one is ambiguous only when an earlier attempt's doubt is still open; a
        write that failed on Slack's side (``internal_error``, ``fatal_error``) or behind
        an HTTP 5xx may have landed, so it is ambiguous itself."""
        status = exc.response.status_code
        code = _error_code(exc)
        said = self._detail(f"{_method(exc)}: HTTP {status}, {code or 'no error code'}")
        if status == 429 or code in _RATE_LIMITED:
            header = {k.lower(): v for k, v in exc.response.headers.items()}.get("retry-after")
            wait = retry_after(header, time.time())
            return RetryableDeliveryError(
                self.name, incident_id, "rate_limited", said, wait, ambiguous=unsure
            )
        if code == "request_timeout":
            return RetryableDeliveryError(self.name, incident_id, "timeout", said, ambiguous=unsure)
        if status >= 500 or code in _SERVER_ERRORS:
            landed = _method(exc) in _WRITES and (status >= 500 or code in _MAYBE_APPLIED)
            return RetryableDeliveryError(
                self.name, incident_id, "server", said, ambiguous=unsure or landed
            )
        if code in _AUTH_ERRORS:
            fix = "the bot token (sinks.slack.token) is not valid: issue a new one"
            return PermanentDeliveryError(self.name, incident_id, "auth", f"{said}: {fix}")
        if code == "missing_scope":
            needed = _response_field(exc, "needed") or "a scope"
            fix = f"the Slack app lacks {needed}: add it and reinstall the app"
            return PermanentDeliveryError(self.name, incident_id, "auth", f"{said}: {fix}")
        if code in ("channel_not_found", "not_in_channel", "is_archived"):
            fix = (
                f"cannot post in {channel}: the channel is archived; set the journey's "
                "owner.slack_channel or sinks.slack.channel to one in use"
                if code == "is_archived"
                else f"cannot post in {channel}: check the journey's owner.slack_channel or "
                "sinks.slack.channel, and invite the bot to the channel (/invite @bot)"
            )
            return PermanentDeliveryError(self.name, incident_id, "client", f"{said}: {fix}")
        if status != 200:
            error = error_for_status(self.name, incident_id, status, said)
            if isinstance(error, RetryableDeliveryError):
                error.ambiguous = unsure
            return error
        return PermanentDeliveryError(self.name, incident_id, "client", said)

    def _transport_error(self, incident_id: str, exc: Exception) -> RetryableDeliveryError:
        timed_out = isinstance(exc, TimeoutError) or isinstance(
            getattr(exc, "reason", None), TimeoutError
        )
        detail = self._detail(f"{type(exc).__name__}: {exc}")
        # No answer: the request may have been applied all the same.
        return RetryableDeliveryError(
            self.name, incident_id, "timeout" if timed_out else "server", detail, ambiguous=True
        )

    def _detail(self, text: str) -> str:
        return clip(redact(text, [self._token]))


def _lost(previous: Receipt | None) -> bool:
    """Whether ``previous`` tells of an earlier delivery but not of its message (a
    ``failed`` one: a buried job's post may have landed). None, or a pending receipt
    naming nothing, tells of none: Slack has not heard of the incident yet."""
    if previous is None or (previous.refs.get("channel") and previous.refs.get("ts")):
        return False
    return previous.state != "pending" or bool(previous.refs)


def _name(target: str) -> str:
    return target.removeprefix("#")


def _method(exc: SlackApiError) -> str:
    return str(exc.response.api_url).rsplit("/", 1)[-1].split("?", 1)[0]


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
