"""``inbound`` in ``receiver.yaml``: the secrets that prove a webhook came from PagerDuty,
Slack or Jira (``receiver/inbound/``). Each takes a list, so that a secret can be rotated
without a window in which the vendor's requests are refused.

::

    inbound:
      pagerduty: {signing_secrets: ["${PD_WEBHOOK_SECRET}"]}
      slack: {signing_secret: "${SLACK_SIGNING_SECRET}"}
      jira: {secret: "${JIRA_WEBHOOK_SECRET}"}

A vendor without a section (or with no secret) is not listened to: its endpoint answers
404, since a webhook nobody can verify must change nothing.
"""

from __future__ import annotations

from pydantic import Field

from receiver.config.fields import ConfigModel, OptionalSecret, PositiveDuration, Tokens


class PagerDutyInbound(ConfigModel):
    signing_secrets: Tokens = Field(default_factory=list)
    """The secrets of the webhook subscriptions (v3) that point here."""

    def all_secrets(self) -> list[str]:
        return [s.get_secret_value() for s in self.signing_secrets]


class SlackInbound(ConfigModel):
    signing_secret: OptionalSecret = None
    """The Slack app's signing secret (Basic Information → App Credentials)."""
    signing_secrets: Tokens = Field(default_factory=list)
    """More of them, while one is being rotated."""
    max_age: PositiveDuration = 300.0
    """Requests stamped further from now than this are refused (Slack: five minutes)."""

    def all_secrets(self) -> list[str]:
        first = [self.signing_secret.get_secret_value()] if self.signing_secret else []
        return [s for s in first + [t.get_secret_value() for t in self.signing_secrets] if s]


class JiraInbound(ConfigModel):
    secret: OptionalSecret = None
    """The webhook's secret: Jira signs the body with it (``X-Hub-Signature``), or an
    older Jira sends it as ``?secret=`` in the URL."""
    secrets: Tokens = Field(default_factory=list)

    def all_secrets(self) -> list[str]:
        first = [self.secret.get_secret_value()] if self.secret else []
        return [s for s in first + [t.get_secret_value() for t in self.secrets] if s]


class InboundConfig(ConfigModel):
    pagerduty: PagerDutyInbound = PagerDutyInbound()
    slack: SlackInbound = SlackInbound()
    jira: JiraInbound = JiraInbound()
