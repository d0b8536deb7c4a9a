"""Schema of an action's ``run`` in ``journeys.yaml``: what carrying the action out does.

```yaml
run:
  webhook:
    url: https://deploy.example.com/api/rollback
    method: POST                       # default
    headers: {Authorization: "Bearer ${DEPLOY_TOKEN}"}
    body:                              # a mapping or list: sent as JSON
      service: "{service}"
      to_version: "{previous_version}"
      reason: "journey-receiver incident {incident_id} in {region}"
    secret: ${DEPLOY_WEBHOOK_SECRET}   # HMAC-SHA256 of the body, in a header
    timeout: 10s
    ca_file: /etc/ssl/private-ca.pem
```

``url``, the ``headers``' values and ``body`` are templates (``receiver/act/template.py``).
In the URL, fields may stand in the path and the query only (never in the scheme or host,
which a label must not choose) and each value is percent-encoded whole, so a ``/`` or ``?``
in a label stays inside its segment. A header's value is filled as written; one that would
carry a line break, another control character (tab aside) or a character that is not ASCII
fails the run. In the body, a string is sent as written once its fields are filled; a
mapping or list is sent as JSON, built *after* each string in it is filled, so a value (a
label an alert chose) is always data inside a JSON string and never JSON syntax. Keys are
not templated.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, JsonValue, SecretStr, field_validator

from receiver.act.template import fields, strings
from receiver.config.fields import (
    CaFile,
    ConfigModel,
    HttpUrl,
    PositiveDuration,
    RequiredSecret,
    SecretHeaders,
)

SIGNATURE_HEADER = "X-Journey-Receiver-Signature"
"""Carries ``sha256=<hex HMAC-SHA256 of the exact body bytes with run.webhook.secret>``."""
IDEMPOTENCY_HEADER = "Idempotency-Key"
_RESERVED = {
    name.lower()
    for name in (
        SIGNATURE_HEADER,
        IDEMPOTENCY_HEADER,
        "Content-Length",
        "Host",
        "Transfer-Encoding",
    )
}

Body = str | dict[str, JsonValue] | list[JsonValue]


class WebhookRun(ConfigModel):
    """An HTTP request to a system that acts (deploy, feature flags, ...), signed and
    sent with the run's ``Idempotency-Key``; redirects are not followed."""

    url: HttpUrl = Field(repr=False)
    method: Literal["POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: SecretHeaders = Field(default_factory=dict)
    body: Body | None = None
    secret: RequiredSecret
    timeout: PositiveDuration = 10.0
    """For the whole request, connecting included."""
    ca_file: CaFile | None = None

    @field_validator("headers")
    @classmethod
    def _not_reserved(cls, headers: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name in headers:
            if name.lower() in _RESERVED:
                raise ValueError(f"{name} is set by the receiver and cannot be configured")
        return headers

    @field_validator("url")
    @classmethod
    def _url_template(cls, url: str) -> str:
        fields(url)
        if fields(urlsplit(url).netloc):
            raise ValueError("fields may stand in the path and query, not in the host")
        return url

    @field_validator("headers")
    @classmethod
    def _header_templates(cls, headers: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, value in headers.items():
            try:
                fields(value.get_secret_value())
            except ValueError as exc:
                # The value may be a token: say where, never what.
                raise ValueError(f"{name}: {str(exc).split(':')[0]}") from None
        return headers

    @field_validator("body")
    @classmethod
    def _templates(cls, body: Body | None) -> Body | None:
        for text in strings(body) if body is not None else ():
            fields(text)
        return body


class ActionRun(ConfigModel):
    """What running the action does; one kind per action."""

    webhook: WebhookRun
