"""The ``sinks`` section of ``receiver.yaml``: one model per sink, each optional.

A journey's ``owner`` (routing key, channel, project) overrides the defaults set here.
Every outbound client takes ``ca_file`` (a private CA bundle) and ``timeout``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from receiver.config.fields import (
    CaFile,
    ConfigModel,
    HttpsUrl,
    HttpUrl,
    OptionalSecret,
    PositiveDuration,
    Priority,
    RequiredSecret,
)

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
_EVENTS_PATH = "/v2/enqueue"
PdSeverity = Literal["critical", "error", "warning", "info"]
_PD_SEVERITY: dict[Priority, PdSeverity] = {
    "P1": "critical",
    "P2": "error",
    "P3": "warning",
    "P4": "info",
    "P5": "info",
}
_JIRA_PRIORITIES: dict[Priority, str] = {
    "P1": "Highest",
    "P2": "High",
    "P3": "Medium",
    "P4": "Low",
    "P5": "Lowest",
}


class LogSinkConfig(ConfigModel):
    """The built-in sink: each notification as a chart in the log, one JSON line (``json``)
    or indented lines for a person at a terminal (``text``)."""

    enabled: bool = True
    format: Literal["json", "text"] = "json"


class PagerDutySinkConfig(ConfigModel):
    """PagerDuty Events API v2. ``routing_key`` is the default integration key; a journey's
    ``owner.pagerduty_routing_key`` takes precedence."""

    enabled: bool = True
    events_url: HttpsUrl = PAGERDUTY_EVENTS_URL
    routing_key: OptionalSecret = None
    source: str = Field(default="journey-receiver", min_length=1)
    severity: dict[Priority, PdSeverity] = Field(default_factory=lambda: dict(_PD_SEVERITY))
    ca_file: CaFile | None = None
    timeout: PositiveDuration = 10.0

    @field_validator("events_url")
    @classmethod
    def _enqueue_endpoint(cls, value: str) -> str:
        if not value.rstrip("/").endswith(_EVENTS_PATH):
            raise ValueError(f"must end with {_EVENTS_PATH} (the Events API v2 endpoint)")
        return value.rstrip("/")

    def base_url(self) -> str:
        """The pagerduty client's base URL: ``events_url`` without the endpoint path."""
        return self.events_url.removesuffix(_EVENTS_PATH)


class SlackSinkConfig(ConfigModel):
    """Slack Web API with a bot token: ``chat:write`` is enough; ``channels:read`` and
    ``channels:history`` (``groups:*`` for private channels) let a message be found again
    after a timeout or a crash (README, "Slack scopes"). A journey's
    ``owner.slack_channel`` takes precedence."""

    enabled: bool = True
    token: RequiredSecret
    base_url: HttpUrl = "https://slack.com/api/"
    channel: str = Field(default="#incidents", min_length=1)
    thread_updates: bool = True
    """Post each material change as a reply in the message's thread, besides the edit."""
    buttons: bool | None = None
    """Acknowledge, Useful / Not useful, Wrong cause, What fixed it and Silence 2h on the
    message. By default (None) shown once ``inbound.slack`` has a signing secret, i.e. the
    Slack app's Interactivity request URL points at ``/inbound/slack/interactions``: a
    button nobody answers only shows the person an error."""
    ca_file: CaFile | None = None
    timeout: PositiveDuration = 10.0


class JiraSinkConfig(ConfigModel):
    """Jira Server/Data Center (``flavor: server``, REST v2, wiki markup) or Cloud
    (``flavor: cloud``, REST v3, ADF). With ``username`` the token is sent with basic auth
    (Cloud: account e-mail + API token); without, as a bearer personal access token
    (Server/DC)."""

    enabled: bool = True
    url: HttpUrl
    flavor: Literal["server", "cloud"] = "server"
    username: str | None = None
    token: RequiredSecret
    project: str = Field(default="OPS", min_length=1)
    issue_type: str = Field(default="Incident", min_length=1)
    done_transition: str = Field(default="Resolve Issue", min_length=1)
    reopen_transition: str = Field(default="Reopen Issue", min_length=1)
    wont_fix_resolutions: list[str] = Field(default_factory=lambda: ["Won't Fix", "Won't Do"])
    """An issue closed with one of these resolutions is left closed when the incident
    reopens (a comment says so)."""
    priorities: dict[Priority, str] = Field(default_factory=lambda: dict(_JIRA_PRIORITIES))
    """Incident priority -> Jira priority name; a priority left out sets none (an issue
    whose incident moves to one keeps the priority it had: Jira cannot unset it)."""
    labels: list[str] = Field(default_factory=list)
    """Extra labels on every issue, besides ``journey-receiver-<incident id>``."""
    ca_file: CaFile | None = None
    timeout: PositiveDuration = 10.0

    @field_validator("labels")
    @classmethod
    def _label_rules(cls, labels: list[str]) -> list[str]:
        for label in labels:
            if not label or len(label) > 255 or any(c.isspace() for c in label):
                raise ValueError(f"{label!r}: a Jira label is 1-255 characters without spaces")
        return labels


class SinksConfig(ConfigModel):
    log: LogSinkConfig | None = LogSinkConfig()
    pagerduty: PagerDutySinkConfig | None = None
    slack: SlackSinkConfig | None = None
    jira: JiraSinkConfig | None = None

    def enabled(self) -> tuple[str, ...]:
        """Names of the sinks that are configured and switched on."""
        return tuple(
            name
            for name in type(self).model_fields
            if (sink := getattr(self, name)) is not None and sink.enabled
        )
