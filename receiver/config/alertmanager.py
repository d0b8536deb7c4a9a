"""``alertmanager`` in ``receiver.yaml``: the HA Alertmanagers the receiver asks as a peer.

::

    alertmanager:
      urls: [http://alertmanager-0:9093, http://alertmanager-1:9093]   # /api/v2 is added
      timeout: 5s                 # longest wait for one peer; the next peer is asked then
      reconcile_interval: 1m      # how often open incidents are compared with what AM holds
      bearer_token: ${AM_TOKEN}   # or basic_auth: {username, password}; not both
      headers: {X-Scope-OrgID: tenant-1}
      ca_file: /etc/ssl/private-ca.pem

Without the section the receiver never calls Alertmanager (no back-fill of truncated
batches, no reconciliation, no silences).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from receiver.config.fields import (
    BasicAuth,
    CaFile,
    ConfigModel,
    Duration,
    FieldIssue,
    HttpUrl,
    OptionalSecret,
    PositiveDuration,
    SecretHeaders,
    raise_issues,
)


class AlertmanagerConfig(ConfigModel):
    """The HA Alertmanagers, asked in order; see ``receiver.alertmanager.client``."""

    urls: list[HttpUrl] = Field(min_length=1, repr=False)
    """Base URLs of the peers (``http://alertmanager-0:9093``); the client adds ``/api/v2``.
    Not shown in reprs: a URL may carry a password."""
    timeout: PositiveDuration = 5.0
    """Longest wait for one peer's answer; then the next peer is asked."""
    reconcile_interval: PositiveDuration = 60.0
    restart_grace: Duration = 120.0
    """After an Alertmanager (re)started, how long reconcile and back-fill wait before
    resolving what it does not hold: a restarted Alertmanager has lost its alerts until
    Prometheus sends them again (within an evaluation interval or two)."""
    headers: SecretHeaders = Field(default_factory=dict)
    basic_auth: BasicAuth | None = None
    bearer_token: OptionalSecret = None
    ca_file: CaFile | None = None

    @model_validator(mode="after")
    def _one_credential(self) -> AlertmanagerConfig:
        issues: list[FieldIssue] = []
        if self.bearer_token is not None and self.basic_auth is not None:
            issues.append(
                FieldIssue(
                    ("bearer_token",),
                    "set bearer_token or basic_auth, not both (both would be one "
                    "Authorization header)",
                )
            )
        if self.bearer_token is not None or self.basic_auth is not None:
            credential = "bearer_token" if self.bearer_token is not None else "basic_auth"
            issues.extend(
                FieldIssue(
                    ("headers", name),
                    f"set the Authorization header through {credential} only, not in headers",
                )
                for name in self.headers
                if name.lower() == "authorization"
            )
        seen: dict[str, int] = {}
        for i, url in enumerate(self.urls):
            first = seen.setdefault(url.rstrip("/"), i)
            if first != i:
                issues.append(FieldIssue(("urls", i), "the same peer twice", first=("urls", first)))
        raise_issues(issues)
        return self
