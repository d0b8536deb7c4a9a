"""Pull feeds of change events under ``events.feeds`` in ``receiver.yaml``.

Besides the events pushed to ``POST /api/v1/events``, the receiver can ask other systems
for the changes around an incident when it enriches it. Each feed is one item with a
``type``::

    events:
      feeds:
        - type: json                      # any HTTP endpoint answering a JSON list
          name: deploys
          url: https://deploy-log.internal/api/changes
          headers: {Authorization: "Bearer ${DEPLOY_LOG_TOKEN}"}
          items: data.changes             # where the list is; "" = the body is the list
        - type: grafana                   # Grafana annotations
          name: grafana
          url: https://grafana.internal
          token_file: /run/secrets/grafana-token
          tags: [change]

The ``type`` decides which fields are allowed; errors name the field without any
``grafana``/``json`` in between (``events.feeds[1].url``), as the file is written.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, PlainValidator, ValidationError

from receiver.config.fields import (
    CaFile,
    ConfigModel,
    FieldIssue,
    FieldIssues,
    HttpUrl,
    Loc,
    OptionalSecret,
    PositiveDuration,
    SecretHeaders,
    Slug,
    raise_issues,
    show,
)

RESERVED_FEED_NAME = "api"
"""The source name of events posted to ``/api/v1/events``; no feed may take it."""


MAX_BODY_BYTES = 16 * 1024 * 1024
"""A feed's default ``max_body_bytes``: tens of thousands of events, far more than a
lookback window holds."""

FeedName = Annotated[Slug, Field(max_length=64)]


class JsonFeedConfig(ConfigModel):
    """Any HTTP endpoint that answers a JSON list of change events.

    The receiver sends ``GET <url>?since=<RFC3339>&until=<RFC3339>`` (UTC, e.g.
    ``2026-04-18T07:43:20.000Z``; parameters already in ``url`` are kept) and keeps only
    the events inside that window whatever the endpoint returns. Each item has the fields
    of ``POST /api/v1/events`` (``type``, ``service``, ``at`` with an offset, ``id``,
    ``version``, ``summary``, ``url``, ...); other fields are ignored and an item that
    does not fit is skipped and counted on the incident.
    """

    type: Literal["json"]
    name: FeedName
    url: HttpUrl = Field(repr=False)
    headers: SecretHeaders = Field(default_factory=dict)
    timeout: PositiveDuration = 2.0
    ca_file: CaFile | None = None
    max_body_bytes: int = Field(default=MAX_BODY_BYTES, gt=0)
    """Longest answer read (decompressed); a longer one is a note on the incident."""
    items: str = ""
    """Dotted path of the list in the response body (``data.changes``); "" = the body."""


class GrafanaFeedConfig(ConfigModel):
    """Grafana annotations (``GET /api/annotations``) read as change events.

    An annotation is a change of the service named by its ``service:<name>`` tag (one
    event per such tag; annotations without one are skipped), of type ``type:<type>``
    (else ``annotation``) and version ``version:<v>``, in the environment ``env:<e>`` and
    region ``region:<r>`` (its scope: a staging annotation is no cause of a prod
    incident; without those tags it applies everywhere). Only annotations carrying every
    tag in ``tags`` are asked for. ``token`` is a service-account token (``token_file``
    works too), sent as ``Authorization: Bearer``; without it Grafana must allow
    anonymous reads.
    """

    type: Literal["grafana"]
    name: FeedName
    url: HttpUrl = Field(repr=False)
    """Grafana's base URL, e.g. ``https://grafana.example.com`` or ``.../grafana``."""
    token: OptionalSecret = None
    tags: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    service_tag_prefix: str = Field(default="service:", min_length=1)
    type_tag_prefix: str = Field(default="type:", min_length=1)
    version_tag_prefix: str = Field(default="version:", min_length=1)
    environment_tag_prefix: str = Field(default="env:", min_length=1)
    region_tag_prefix: str = Field(default="region:", min_length=1)
    limit: int = Field(default=500, ge=1, le=10_000)
    """Most annotations asked for at once; Grafana answers the newest first."""
    timeout: PositiveDuration = 2.0
    ca_file: CaFile | None = None
    max_body_bytes: int = Field(default=MAX_BODY_BYTES, gt=0)
    """Longest answer read (decompressed); a longer one is a note on the incident."""


FeedConfig = JsonFeedConfig | GrafanaFeedConfig
_FEED_TYPES: dict[str, type[JsonFeedConfig] | type[GrafanaFeedConfig]] = {
    "json": JsonFeedConfig,
    "grafana": GrafanaFeedConfig,
}


def _feed(data: Any) -> FeedConfig:
    """Pick the model by ``type``; its errors keep locations relative to the list item.

    A pydantic discriminated union would put the tag into every location
    (``feeds[0].grafana.url``), which names no key of the file.
    """
    if isinstance(data, JsonFeedConfig | GrafanaFeedConfig):
        return data
    if not isinstance(data, dict):
        raise FieldIssues([FieldIssue((), f"expected a mapping, got {show(data)}")])
    kind = data.get("type")
    model = _FEED_TYPES.get(kind) if isinstance(kind, str) else None
    if model is None:
        expected = " or ".join(f'"{name}"' for name in _FEED_TYPES)
        reason = f"expected {expected}, got {show(kind)}" if "type" in data else "is required"
        raise FieldIssues([FieldIssue(("type",), reason)])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise FieldIssues([], exc) from exc


def _unique_names(feeds: list[FeedConfig]) -> list[FeedConfig]:
    issues: list[FieldIssue] = []
    first: dict[str, Loc] = {}
    for index, feed in enumerate(feeds):
        loc: Loc = (index, "name")
        if feed.name == RESERVED_FEED_NAME:
            issues.append(FieldIssue(loc, f'"{RESERVED_FEED_NAME}" is reserved for /api/v1/events'))
        elif feed.name in first:
            issues.append(FieldIssue(loc, f'duplicate feed name "{feed.name}"', first[feed.name]))
        else:
            first[feed.name] = loc
    raise_issues(issues)
    return feeds


Feeds = Annotated[list[Annotated[FeedConfig, PlainValidator(_feed)]], AfterValidator(_unique_names)]
"""``events.feeds``: a list of feeds told apart by ``type``, names unique."""
