"""A fake Slack Web API: the methods the Slack sink calls, with Slack's rules enforced.

Serve ``FakeSlack().app`` with :func:`tests.support.fake_server.serve` and point the SDK at
``<url>/api/``. Like Slack, it answers HTTP 200 with ``{"ok": false, "error": …}`` for
refusals (rate limits and server errors come from the fault queue). It keeps every
channel's messages, their earlier versions and their thread replies.

Rules, from Slack's documentation (docs.slack.dev):
- authentication: ``Authorization: Bearer`` (or a ``token`` parameter); none is
  ``not_authed``, a wrong one ``invalid_auth`` (Web API basics).
- scopes (reference/scopes; the token has ``scopes``, by default every one the sink may
  use but ``chat:write.public``): a method called without the scope it needs is
  ``missing_scope`` with ``needed`` and ``provided``: ``chat:write`` for ``chat.*``;
  ``channels:history`` (``groups:history`` in a private channel) for
  ``conversations.history``/``.replies``; ``channels:read`` to list public channels and
  ``groups:read`` private ones with ``conversations.list``. Every answer to a valid token
  carries the token's scopes in ``x-oauth-scopes`` (comma-separated), as Slack's do.
- ``auth.test`` (reference/methods/auth.test): needs no scope; answers the bot's ``user``,
  ``user_id``, ``bot_id``, ``team``, ``team_id`` and workspace ``url``.
- ``chat.postMessage`` (reference/methods/chat.postMessage): channel by ID or name,
  else ``channel_not_found``; ``not_in_channel`` (a public channel is open to a bot with
  ``chat:write.public``), ``is_archived``; ``text`` or ``blocks``
  required (``no_text``); ``thread_ts`` must name a top-level message of the channel
  (``thread_not_found``); ``metadata`` needs ``event_type`` and an ``event_payload`` object
  (messaging/message-metadata; ``invalid_metadata_format``); text over 40,000 characters is
  cut, with the ``message_truncated`` warning (changelog/2018-04-truncating-really-long-messages).
- ``chat.update`` (reference/methods/chat.update): channel by ID only; unknown ``ts`` is
  ``message_not_found``; blocks left out keep the previous ones; edits are kept here.
- ``conversations.history`` / ``.replies`` / ``.list`` (reference/methods/…): IDs only,
  ``oldest``/``latest``, ``limit`` and cursor pagination (``response_metadata.next_cursor``),
  metadata only with ``include_all_metadata``; private channels listed only to members;
  ``conversations.list`` takes a ``limit`` under 1000, else ``invalid_limit``.
- Block Kit (reference/block-kit/blocks, composition-objects/text-object, block-elements/
  button-element): at most 50 blocks; header: plain_text, 1-150; text objects 1-3000,
  ``verbatim`` only on mrkdwn, ``emoji`` only on plain_text; section fields at most 10 of
  2000; context 1-10 elements; actions 1-25 elements; button text plain_text 1-75, url
  1-3000, unique ``action_id`` up to 255; ``block_id`` up to 255. Refusals are
  ``invalid_blocks`` with the pointer in ``errors``. All text in the blocks together above
  12,000 characters is ``msg_blocks_too_long`` (undocumented; Slack's answer in
  slackapi/bolt-js#2509). Lengths count UTF-16 units, the stricter reading.
- ``views.open`` (reference/methods/views.open, reference/views/modals): a ``trigger_id``
  is required (``invalid_arguments``), must be one :meth:`FakeSlack.trigger` issued
  (``invalid_trigger_id``), unused (``exchanged_trigger_id``) and at most 3 s old
  (``expired_trigger_id``). The view: ``type: modal``; ``title`` plain_text 1-24;
  ``submit`` and ``close`` plain_text 1-24, ``submit`` required with input blocks; at
  most 100 blocks; ``callback_id`` up to 255, ``private_metadata`` up to 3000; input
  blocks with a plain_text ``label`` 1-2000 and one element: ``radio_buttons`` or
  ``checkboxes`` with 1-10 options (text 1-75, value 1-150, unique), ``static_select``
  with 1-100, or ``plain_text_input`` (``max_length`` up to 3000); unique ``block_id``s.
  Refusals are ``invalid_arguments`` with the pointers in ``response_metadata.messages``.
- ``response_url`` (interactivity/handling#message_responses): :meth:`FakeSlack.response_url`
  hands one out, under ``/actions/``; what is posted to it is kept (:meth:`responses`), at
  most 5 times per URL (then 404 ``used_url``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

TOKEN = "xoxb-fake-0123456789-secret"
SCOPES = frozenset(
    {
        "chat:write",
        "channels:read",
        "groups:read",
        "channels:history",
        "groups:history",
    }
)
LIST_LIMIT = 1000
TEXT_MAX = 40_000
BLOCKS_MAX = 50
BLOCKS_TEXT_MAX = 12_000
HEADER_MAX = 150
TEXT_OBJECT_MAX = 3000
FIELD_MAX = 2000
FIELDS_MAX = 10
CONTEXT_MAX = 10
ACTIONS_MAX = 25
BUTTON_TEXT_MAX = 75
URL_MAX = 3000
ID_MAX = 255
VIEW_TITLE_MAX = 24
VIEW_BLOCKS_MAX = 100
PRIVATE_METADATA_MAX = 3000
LABEL_MAX = 2000
OPTIONS_MAX = 10
SELECT_OPTIONS_MAX = 100
OPTION_TEXT_MAX = 75
OPTION_VALUE_MAX = 150
INPUT_MAX = 3000
TRIGGER_TTL_S = 3.0
RESPONSE_URL_USES = 5


@dataclass(frozen=True)
class Channel:
    id: str
    name: str
    is_member: bool = True
    is_private: bool = False
    is_archived: bool = False


@dataclass(frozen=True)
class Version:
    text: str
    blocks: list[dict[str, Any]]


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    metadata: dict[str, Any] | None = None
    thread_ts: str | None = None
    edits: list[Version] = field(default_factory=list)
    """Earlier versions, oldest first."""

    def wire(self, with_metadata: bool) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "type": "message",
            "bot_id": "B0FAKEBOT",
            "ts": self.ts,
            "text": self.text,
            "blocks": self.blocks,
        }
        if self.thread_ts:
            shown["thread_ts"] = self.thread_ts
        if self.metadata and with_metadata:
            shown["metadata"] = self.metadata
        return shown


DEFAULT_CHANNELS = (
    Channel("C0INCIDENTS", "incidents"),
    Channel("C0CHECKOUT", "inc-checkout"),
    Channel("C0OUTSIDE", "not-invited", is_member=False),
)


class Refused(Exception):
    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


class FakeSlack:
    """The fake workspace; ``app`` serves it, the other methods let tests look inside."""

    def __init__(
        self,
        token: str = TOKEN,
        channels: Iterable[Channel] = DEFAULT_CHANNELS,
        clock: Callable[[], float] = time.time,
        scopes: Iterable[str] = SCOPES,
    ) -> None:
        self.token = token
        self.scopes = frozenset(scopes)
        self.channels = {c.id: c for c in channels}
        self.clock = clock
        self._messages: list[Message] = []
        self._calls: list[tuple[str, dict[str, Any]]] = []
        self._last_ts = 0.0
        self._lock = threading.Lock()
        self._triggers: dict[str, float] = {}
        self._used_triggers: set[str] = set()
        self._views: list[dict[str, Any]] = []
        self._responses: dict[str, list[dict[str, Any]]] = {}
        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "chat.postMessage": self._post,
            "chat.update": self._update,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
            "conversations.list": self._list,
            "auth.test": self._auth_test,
            "views.open": self._views_open,
        }
        self.app = Starlette(
            routes=[
                Route("/api/{method}", self._call, methods=["GET", "POST"]),
                Route("/actions/{hook}", self._respond, methods=["POST"]),
            ]
        )

    # -- for tests -------------------------------------------------------------------

    def channel_id(self, name_or_id: str) -> str:
        return self._channel(name_or_id).id

    def messages(self, channel: str) -> list[Message]:
        """Top-level messages of ``channel`` (name or ID), oldest first."""
        channel_id = self.channel_id(channel)
        with self._lock:
            return [m for m in self._messages if m.channel == channel_id and not m.thread_ts]

    def replies(self, ts: str) -> list[Message]:
        """The thread replies to the message ``ts``, oldest first."""
        with self._lock:
            return [m for m in self._messages if m.thread_ts == ts]

    def edits(self, ts: str) -> list[Version]:
        with self._lock:
            return list(self._find(ts).edits)

    def trigger(self) -> str:
        """A ``trigger_id``, as Slack puts one in an interaction: good for one
        ``views.open`` within 3 s."""
        with self._lock:
            trigger_id = f"{len(self._triggers) + 1}.1337.fake{len(self._triggers):08x}"
            self._triggers[trigger_id] = self.clock()
            return trigger_id

    def views(self) -> list[dict[str, Any]]:
        """The views opened, oldest first."""
        with self._lock:
            return list(self._views)

    def response_url(self) -> str:
        """The path of a new ``response_url`` (append it to the server's URL)."""
        with self._lock:
            hook = f"T0FAKE-{len(self._responses) + 1}"
            self._responses[hook] = []
            return f"/actions/{hook}"

    def responses(self, path: str) -> list[dict[str, Any]]:
        """What was posted to the ``response_url`` at ``path``."""
        with self._lock:
            return list(self._responses[path.rsplit("/", 1)[-1]])

    def calls(self, method: str) -> list[dict[str, Any]]:
        """The parameters of every authenticated call to ``method``, refused ones too."""
        with self._lock:
            return [params for name, params in self._calls if name == method]

    # -- the API ---------------------------------------------------------------------

    async def _call(self, request: Request) -> JSONResponse:
        params: dict[str, Any] = dict(request.query_params)
        body = await request.body()
        if request.headers.get("content-type", "").startswith("application/json"):
            params.update(json.loads(body or b"{}"))
        elif body:
            params.update(parse_qsl(body.decode()))
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else params.get("token")
        method = self._methods.get(request.path_params["method"])
        try:
            if method is None:
                raise Refused("unknown_method")
            if not token:
                raise Refused("not_authed")
            if token != self.token:
                raise Refused("invalid_auth")
            with self._lock:
                self._calls.append((request.path_params["method"], params))
                answer = method(params)
        except Refused as refused:
            answer = {"ok": False, "error": refused.error, **refused.extra}
        granted = {"x-oauth-scopes": ",".join(sorted(self.scopes))}
        return JSONResponse(answer, headers=granted if token == self.token else None)

    async def _respond(self, request: Request) -> JSONResponse:
        hook = request.path_params["hook"]
        body = await request.body()
        with self._lock:
            kept = self._responses.get(hook)
            if kept is None or len(kept) >= RESPONSE_URL_USES:
                return JSONResponse({"ok": False, "error": "used_url"}, status_code=404)
            try:
                message = json.loads(body)
            except ValueError:
                return JSONResponse({"ok": False, "error": "invalid_payload"}, status_code=400)
            if not isinstance(message, dict) or not (message.get("text") or message.get("blocks")):
                return JSONResponse({"ok": False, "error": "no_text"}, status_code=400)
            kept.append(message)
        return JSONResponse({"ok": True})

    def _views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        trigger_id = params.get("trigger_id")
        if not trigger_id:
            raise Refused(
                "invalid_arguments",
                response_metadata={"messages": ["[ERROR] missing required field: trigger_id"]},
            )
        issued = self._triggers.get(str(trigger_id))
        if issued is None:
            raise Refused("invalid_trigger_id")
        if trigger_id in self._used_triggers:
            raise Refused("exchanged_trigger_id")
        if self.clock() - issued > TRIGGER_TTL_S:
            raise Refused("expired_trigger_id")
        view = _json(params.get("view"))
        problems = list(_view_problems(view))
        if problems:
            raise Refused("invalid_arguments", response_metadata={"messages": problems})
        self._used_triggers.add(str(trigger_id))
        opened = {**view, "id": f"V0FAKE{len(self._views) + 1:05d}"}
        self._views.append(opened)
        return {"ok": True, "view": opened}

    def _post(self, params: dict[str, Any]) -> dict[str, Any]:
        self._scope("chat:write")
        channel = self._channel(params.get("channel", ""))
        self._writable(channel, public_ok="chat:write.public" in self.scopes)
        text, blocks = self._content(params)
        metadata = _metadata(params.get("metadata"))
        thread_ts = params.get("thread_ts")
        if thread_ts and not any(
            m.ts == thread_ts and m.channel == channel.id and not m.thread_ts
            for m in self._messages
        ):
            raise Refused("thread_not_found")
        answer: dict[str, Any] = {"ok": True, "channel": channel.id}
        if _units(text) > TEXT_MAX:
            text = text[:TEXT_MAX]
            answer["response_metadata"] = {"warnings": ["message_truncated"]}
        message = Message(channel.id, self._next_ts(), text, blocks or [], metadata, thread_ts)
        self._messages.append(message)
        return {**answer, "ts": message.ts, "message": message.wire(with_metadata=True)}

    def _update(self, params: dict[str, Any]) -> dict[str, Any]:
        self._scope("chat:write")
        channel = self._channel_by_id(params.get("channel", ""))
        self._writable(channel)
        message = next(
            (m for m in self._messages if m.ts == params.get("ts") and m.channel == channel.id),
            None,
        )
        if message is None:
            raise Refused("message_not_found")
        text, blocks = self._content(params)
        message.edits.append(Version(message.text, message.blocks))
        message.text = text
        if blocks is not None:
            message.blocks = blocks
        if "metadata" in params:
            message.metadata = _metadata(params["metadata"])
        return {"ok": True, "channel": channel.id, "ts": message.ts, "text": message.text}

    def _history(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._readable(params.get("channel", ""))
        inclusive = _flag(params.get("inclusive"))
        oldest = float(params.get("oldest") or 0)
        latest = float(params.get("latest") or "inf")
        found = [
            m
            for m in reversed(self._messages)
            if m.channel == channel.id
            and not m.thread_ts
            and (oldest <= float(m.ts) if inclusive else oldest < float(m.ts))
            and (float(m.ts) <= latest if inclusive else float(m.ts) < latest)
        ]
        return _page(params, found, "messages", default_limit=100, max_limit=999)

    def _replies(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._readable(params.get("channel", ""))
        parent = next(
            (m for m in self._messages if m.ts == params.get("ts") and m.channel == channel.id),
            None,
        )
        if parent is None or parent.thread_ts:
            raise Refused("thread_not_found")
        thread = [parent, *(m for m in self._messages if m.thread_ts == parent.ts)]
        return _page(params, thread, "messages", default_limit=100, max_limit=1000)

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://fake-workspace.slack.com/",
            "team": "Fake Workspace",
            "user": "journey-bot",
            "team_id": "T0FAKE",
            "user_id": "U0FAKEBOT",
            "bot_id": "B0FAKEBOT",
        }

    def _list(self, params: dict[str, Any]) -> dict[str, Any]:
        types = str(params.get("types") or "public_channel").split(",")
        for kind, scope in (
            ("public_channel", "channels:read"),
            ("private_channel", "groups:read"),
        ):
            if kind in types:
                self._scope(scope)
        if int(params.get("limit") or 0) >= LIST_LIMIT:
            raise Refused("invalid_limit")
        listed = [
            c
            for c in self.channels.values()
            if ("private_channel" in types if c.is_private else "public_channel" in types)
            and (c.is_member or not c.is_private)
            and not (c.is_archived and _flag(params.get("exclude_archived")))
        ]
        return _page(params, listed, "channels", default_limit=100, max_limit=LIST_LIMIT - 1)

    # -- rules -----------------------------------------------------------------------

    def _content(self, params: dict[str, Any]) -> tuple[str, list[dict[str, Any]] | None]:
        text = str(params.get("text") or "")
        blocks = _json(params.get("blocks"))
        if blocks is not None:
            _check_blocks(blocks)
        if not text.strip() and not blocks:
            raise Refused("no_text")
        return text, blocks

    def _channel(self, name_or_id: str) -> Channel:
        if name_or_id in self.channels:
            return self.channels[name_or_id]
        name = name_or_id.removeprefix("#")
        for channel in self.channels.values():
            if channel.name == name:
                return channel
        raise Refused("channel_not_found")

    def _channel_by_id(self, channel_id: str) -> Channel:
        if channel_id not in self.channels:
            raise Refused("channel_not_found")
        return self.channels[channel_id]

    def _scope(self, needed: str) -> None:
        if needed not in self.scopes:
            raise Refused("missing_scope", needed=needed, provided=",".join(sorted(self.scopes)))

    def _writable(self, channel: Channel, public_ok: bool = False) -> None:
        if channel.is_archived:
            raise Refused("is_archived")
        if not channel.is_member and not (public_ok and not channel.is_private):
            raise Refused("not_in_channel")

    def _readable(self, channel_id: str) -> Channel:
        channel = self._channel_by_id(channel_id)
        self._scope("groups:history" if channel.is_private else "channels:history")
        if not channel.is_member:
            raise Refused("not_in_channel")
        return channel

    def _find(self, ts: str) -> Message:
        return next(m for m in self._messages if m.ts == ts)

    def _next_ts(self) -> str:
        # Slack's ts is unique per channel and grows with time.
        self._last_ts = max(self.clock(), self._last_ts + 0.000001)
        return f"{self._last_ts:.6f}"


def _page(
    params: dict[str, Any], items: list[Any], key: str, *, default_limit: int, max_limit: int
) -> dict[str, Any]:
    start = int(params.get("cursor") or 0)
    limit = min(int(params.get("limit") or default_limit), max_limit)
    shown = items[start : start + limit]
    more = start + limit < len(items)
    with_metadata = _flag(params.get("include_all_metadata"))
    return {
        "ok": True,
        key: [i.wire(with_metadata) if isinstance(i, Message) else _channel_json(i) for i in shown],
        "has_more": more,
        "response_metadata": {"next_cursor": str(start + limit) if more else ""},
    }


def _channel_json(channel: Channel) -> dict[str, Any]:
    return {
        "id": channel.id,
        "name": channel.name,
        "is_channel": True,
        "is_private": channel.is_private,
        "is_archived": channel.is_archived,
        "is_member": channel.is_member,
    }


def _flag(value: Any) -> bool:
    return value in (True, 1, "1", "true")


def _json(value: Any) -> Any:
    """Form-encoded calls carry objects as JSON strings; JSON calls as objects."""
    return json.loads(value) if isinstance(value, str) else value


def _metadata(value: Any) -> dict[str, Any] | None:
    metadata = _json(value)
    if metadata is None:
        return None
    if (
        not isinstance(metadata, dict)
        or not isinstance(metadata.get("event_type"), str)
        or not metadata["event_type"]
        or not isinstance(metadata.get("event_payload"), dict)
    ):
        raise Refused("invalid_metadata_format")
    return metadata


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _check_blocks(blocks: Any) -> None:
    problems = list(_block_problems(blocks))
    if problems:
        raise Refused("invalid_blocks", errors=problems)
    if sum(_units(t) for t in _texts(blocks)) > BLOCKS_TEXT_MAX:
        raise Refused("msg_blocks_too_long")


def _block_problems(blocks: Any) -> Iterator[str]:
    if not isinstance(blocks, list):
        yield "must be an array [json-pointer:/blocks]"
        return
    if len(blocks) > BLOCKS_MAX:
        yield f"no more than {BLOCKS_MAX} items allowed [json-pointer:/blocks]"
    action_ids: set[str] = set()
    for i, block in enumerate(blocks):
        at = f"/blocks/{i}"
        kind = block.get("type") if isinstance(block, dict) else None
        if len(str(block.get("block_id", "")) if isinstance(block, dict) else "") > ID_MAX:
            yield f"must be less than {ID_MAX + 1} characters [json-pointer:{at}/block_id]"
        if kind == "header":
            yield from _text_problems(block.get("text"), f"{at}/text", HEADER_MAX, plain=True)
        elif kind == "section":
            if "text" not in block and "fields" not in block:
                yield f"must provide text or fields [json-pointer:{at}]"
            if "text" in block:
                yield from _text_problems(block["text"], f"{at}/text", TEXT_OBJECT_MAX)
            fields = block.get("fields", [])
            if len(fields) > FIELDS_MAX:
                yield f"no more than {FIELDS_MAX} items allowed [json-pointer:{at}/fields]"
            for j, item in enumerate(fields):
                yield from _text_problems(item, f"{at}/fields/{j}", FIELD_MAX)
        elif kind == "context":
            elements = block.get("elements") or []
            if not 1 <= len(elements) <= CONTEXT_MAX:
                yield f"must have 1 to {CONTEXT_MAX} items [json-pointer:{at}/elements]"
            for j, element in enumerate(elements):
                yield from _text_problems(element, f"{at}/elements/{j}", TEXT_OBJECT_MAX)
        elif kind == "actions":
            elements = block.get("elements") or []
            if not 1 <= len(elements) <= ACTIONS_MAX:
                yield f"must have 1 to {ACTIONS_MAX} items [json-pointer:{at}/elements]"
            for j, element in enumerate(elements):
                yield from _button_problems(element, f"{at}/elements/{j}", action_ids)
        elif kind != "divider":
            yield f"unsupported block type {kind!r} [json-pointer:{at}/type]"


def _text_problems(obj: Any, at: str, limit: int, plain: bool = False) -> Iterator[str]:
    if not isinstance(obj, dict) or obj.get("type") not in ("plain_text", "mrkdwn"):
        yield f"must be a text object [json-pointer:{at}]"
        return
    if plain and obj["type"] != "plain_text":
        yield f"must be plain_text [json-pointer:{at}/type]"
    if "verbatim" in obj and obj["type"] != "mrkdwn":
        yield f"verbatim is only for mrkdwn [json-pointer:{at}/verbatim]"
    if "emoji" in obj and obj["type"] != "plain_text":
        yield f"emoji is only for plain_text [json-pointer:{at}/emoji]"
    text = obj.get("text")
    if not isinstance(text, str) or not 1 <= _units(text) <= limit:
        yield f"must be 1 to {limit} characters [json-pointer:{at}/text]"


def _button_problems(element: Any, at: str, action_ids: set[str]) -> Iterator[str]:
    if not isinstance(element, dict) or element.get("type") != "button":
        yield f"unsupported element [json-pointer:{at}]"
        return
    yield from _text_problems(element.get("text"), f"{at}/text", BUTTON_TEXT_MAX, plain=True)
    url = element.get("url")
    if url is not None and (not isinstance(url, str) or not 1 <= _units(url) <= URL_MAX):
        yield f"must be 1 to {URL_MAX} characters [json-pointer:{at}/url]"
    action_id = str(element.get("action_id", ""))
    if len(action_id) > ID_MAX:
        yield f"must be less than {ID_MAX + 1} characters [json-pointer:{at}/action_id]"
    if action_id and action_id in action_ids:
        yield f"action_id must be unique [json-pointer:{at}/action_id]"
    action_ids.add(action_id)


def _view_problems(view: Any) -> Iterator[str]:
    if not isinstance(view, dict):
        yield "[ERROR] must be an object [json-pointer:/view]"
        return
    if view.get("type") != "modal":
        yield "[ERROR] must be modal [json-pointer:/view/type]"
    yield from _errors(_text_problems(view.get("title"), "/view/title", VIEW_TITLE_MAX, True))
    blocks = view.get("blocks")
    if not isinstance(blocks, list):
        yield "[ERROR] must be an array [json-pointer:/view/blocks]"
        blocks = []
    for key in ("submit", "close"):
        if key in view:
            yield from _errors(_text_problems(view[key], f"/view/{key}", VIEW_TITLE_MAX, True))
    has_inputs = any(isinstance(b, dict) and b.get("type") == "input" for b in blocks)
    if has_inputs and "submit" not in view:
        yield "[ERROR] submit is required with input blocks [json-pointer:/view/submit]"
    if len(str(view.get("callback_id", ""))) > ID_MAX:
        yield f"[ERROR] must be at most {ID_MAX} characters [json-pointer:/view/callback_id]"
    if _units(str(view.get("private_metadata", ""))) > PRIVATE_METADATA_MAX:
        yield (
            f"[ERROR] must be at most {PRIVATE_METADATA_MAX} characters "
            "[json-pointer:/view/private_metadata]"
        )
    if len(blocks) > VIEW_BLOCKS_MAX:
        yield f"[ERROR] no more than {VIEW_BLOCKS_MAX} items allowed [json-pointer:/view/blocks]"
    block_ids: set[str] = set()
    for i, block in enumerate(blocks):
        at = f"/view/blocks/{i}"
        if not isinstance(block, dict):
            yield f"[ERROR] must be an object [json-pointer:{at}]"
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            if block_id in block_ids:
                yield f"[ERROR] block_id must be unique [json-pointer:{at}/block_id]"
            block_ids.add(block_id)
        if block.get("type") == "input":
            yield from _errors(_input_problems(block, at))
        else:
            yield from _errors(
                p.replace("[json-pointer:/blocks/0", f"[json-pointer:{at}")
                for p in _block_problems([block])
            )


def _input_problems(block: dict[str, Any], at: str) -> Iterator[str]:
    yield from _text_problems(block.get("label"), f"{at}/label", LABEL_MAX, plain=True)
    element = block.get("element")
    kind = element.get("type") if isinstance(element, dict) else None
    if not isinstance(element, dict) or not element.get("action_id"):
        yield f"must have an element with an action_id [json-pointer:{at}/element]"
        return
    if kind == "plain_text_input":
        length = element.get("max_length", INPUT_MAX)
        if not isinstance(length, int) or not 1 <= length <= INPUT_MAX:
            yield f"must be 1 to {INPUT_MAX} [json-pointer:{at}/element/max_length]"
    elif kind in ("radio_buttons", "checkboxes", "static_select"):
        most = SELECT_OPTIONS_MAX if kind == "static_select" else OPTIONS_MAX
        options = element.get("options")
        if not isinstance(options, list) or not 1 <= len(options) <= most:
            yield f"must have 1 to {most} items [json-pointer:{at}/element/options]"
            return
        values: set[str] = set()
        for j, option in enumerate(options):
            where = f"{at}/element/options/{j}"
            plain = kind == "static_select"
            text = option.get("text") if isinstance(option, dict) else None
            yield from _text_problems(text, f"{where}/text", OPTION_TEXT_MAX, plain=plain)
            value = option.get("value") if isinstance(option, dict) else None
            if not isinstance(value, str) or not 1 <= _units(value) <= OPTION_VALUE_MAX:
                yield f"must be 1 to {OPTION_VALUE_MAX} characters [json-pointer:{where}/value]"
            elif value in values:
                yield f"option values must be unique [json-pointer:{where}/value]"
            else:
                values.add(value)
    else:
        yield f"unsupported element {kind!r} [json-pointer:{at}/element/type]"


def _errors(problems: Iterable[str]) -> Iterator[str]:
    """views.* say what is wrong as ``[ERROR] …`` lines."""
    for problem in problems:
        yield problem if problem.startswith("[ERROR]") else f"[ERROR] {problem}"


def _texts(node: Any) -> Iterator[str]:
    """Every ``text`` string of a block tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "text" and isinstance(value, str):
                yield value
            else:
                yield from _texts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _texts(item)
