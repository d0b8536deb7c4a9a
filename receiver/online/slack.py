"""Slack: ``auth.test``, the token's scopes, and each configured channel."""

from __future__ import annotations

import http.client
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web import SlackResponse

from receiver import config as cfg
from receiver.online import Finding, Findings, owner_values, shown_url, transport_reason
from receiver.sinks.slack import is_channel_id, web_client

# As the Slack sink tells a channel ID from a name.
_SLACK_PAGE = 200
_SLACK_AUTH_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"}
)


def check_slack(config: cfg.SlackSinkConfig, journeys: cfg.JourneysConfig) -> list[Finding]:
    """``auth.test``, the token's scopes and the configured channels."""
    found = Findings("slack")
    client = web_client(config)
    try:
        answer = client.auth_test()
    except SlackApiError as exc:
        code = _slack_code(exc)
        if code in _SLACK_AUTH_ERRORS:
            found.problem(
                f"auth.test refused the token ({code}): sinks.slack.token is not a valid "
                "bot token — issue a new one"
            )
        else:
            status = exc.response.status_code
            found.problem(
                f"auth.test failed (HTTP {status}, {code or 'no error code'}) — check "
                "sinks.slack.base_url and sinks.slack.token"
            )
        return found
    except (OSError, http.client.HTTPException, SlackRequestError) as exc:
        found.problem(
            f"cannot reach sinks.slack.base_url {shown_url(config.base_url)}: "
            f"{transport_reason(exc, config.timeout, 'sinks.slack.ca_file')}"
        )
        return found
    user, team, team_id = answer.get("user"), answer.get("team"), answer.get("team_id")
    found.ok(f"auth.test as @{user} in team {team_id}" + (f" ({team})" if team else ""))
    targets = _slack_targets(config, journeys)
    scopes = _scopes(answer)
    if scopes is None:
        found.warning(
            "the answer has no x-oauth-scopes header: cannot tell the token's scopes "
            "(is sinks.slack.base_url Slack's Web API?)"
        )
    else:
        _slack_scopes(found, scopes, any(not is_channel_id(t) for t in targets))
    if scopes is None or "channels:read" in scopes:
        _slack_channels(found, client, targets, scopes, str(user))
    return found


def _scopes(answer: SlackResponse) -> frozenset[str] | None:
    headers = {str(k).lower(): v for k, v in answer.headers.items()}
    value = headers.get("x-oauth-scopes")
    if isinstance(value, list):  # some transports keep every value of a header
        value = ",".join(value)
    if value is None:
        return None
    return frozenset(s.strip() for s in str(value).split(",") if s.strip())


def _slack_scopes(found: Findings, scopes: frozenset[str], by_name: bool) -> None:
    if "chat:write" not in scopes:
        found.problem(
            "the token lacks chat:write: nothing can be posted — add it to the Slack app's "
            "bot token scopes and reinstall the app"
        )
    else:
        found.ok("the token has chat:write")
    optional = [
        ("channels:history", "messages cannot be found again after a crash"),
        ("groups:history", "messages in private channels cannot be found again after a crash"),
    ]
    if by_name:
        optional = [
            ("channels:read", "channels configured by name cannot be resolved to their IDs"),
            ("groups:read", "private channels configured by name cannot be resolved"),
            *optional,
        ]
    for scope, effect in optional:
        if scope not in scopes:
            found.warning(f"the token lacks {scope}: {effect} (optional)")


def _slack_targets(
    config: cfg.SlackSinkConfig, journeys: cfg.JourneysConfig
) -> dict[str, list[str]]:
    """Each channel messages go to -> the config fields naming it."""
    targets: dict[str, list[str]] = {config.channel: ["sinks.slack.channel"]}
    for field, channel in owner_values(journeys, "slack_channel"):
        targets.setdefault(channel, []).append(field)
    return targets


def _slack_channels(
    found: Findings,
    client: WebClient,
    targets: dict[str, list[str]],
    scopes: frozenset[str] | None,
    user: str,
) -> None:
    private = scopes is None or "groups:read" in scopes
    types = "public_channel,private_channel" if private else "public_channel"
    wanted = {t if is_channel_id(t) else t.removeprefix("#") for t in targets}
    seen: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    try:
        while True:
            page = client.conversations_list(
                types=types, exclude_archived=True, limit=_SLACK_PAGE, cursor=cursor
            )
            channels: list[dict[str, Any]] = page.get("channels", [])
            for channel in channels:
                for key in (str(channel.get("id")), str(channel.get("name"))):
                    if key in wanted:
                        seen[key] = channel
            data = page.data if isinstance(page.data, dict) else {}
            cursor = (data.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor or wanted <= seen.keys():
                break
    except SlackApiError as exc:
        found.warning(f"conversations.list failed ({_slack_code(exc)}): channels not checked")
        return
    except (OSError, http.client.HTTPException, SlackRequestError) as exc:
        found.warning(f"conversations.list failed ({type(exc).__name__}): channels not checked")
        return
    for target, fields in targets.items():
        where = ", ".join(fields)
        known = seen.get(target if is_channel_id(target) else target.removeprefix("#"))
        if known is None:
            hidden = (
                "" if private else " (private channels not listed: the token lacks groups:read)"
            )
            found.warning(
                f"channel {target} ({where}) is not among the channels the bot can see"
                f"{hidden} — fix the name, or invite the bot if the channel is private"
            )
        elif not known.get("is_member"):
            found.warning(
                f"channel {target} ({where}): the bot is not a member — invite it (/invite @{user})"
            )
        else:
            found.ok(f"channel {target} ({where}) is {known.get('id')}; the bot is a member")


def _slack_code(exc: SlackApiError) -> str:
    data = exc.response.data
    return str(data.get("error") or "") if isinstance(data, dict) else ""
