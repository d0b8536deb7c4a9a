"""Schema of ``receiver.yaml``, the operators' file. Every section has working defaults."""

from __future__ import annotations

import ipaddress
import re
from ipaddress import IPv4Network, IPv6Network
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    PlainSerializer,
    PlainValidator,
    SecretStr,
    field_validator,
    model_validator,
)

from receiver.config.alertmanager import AlertmanagerConfig
from receiver.config.feeds import Feeds
from receiver.config.fields import (
    PRIORITIES,
    BasicAuth,
    CaFile,
    ConfigModel,
    Duration,
    FieldIssue,
    HttpUrl,
    LabelName,
    OptionalSecret,
    PositiveDuration,
    Priority,
    SecretHeaders,
    Tokens,
    Weight,
    raise_issues,
    show,
)
from receiver.config.inbound import InboundConfig
from receiver.config.sinks import SinksConfig
from receiver.store.urls import check_url

DEFAULT_JOURNEYS_FILE = Path("journeys.yaml")
CALLS_PER_DELIVERY = 6
"""The most HTTP calls one delivery makes (Jira: find, read, edit, comments, transitions)."""
ATTEMPT_SHARE = 0.8
"""The share of ``outbox.lease`` one attempt of a job may take: cut there, it ends before
another replica may take the job over."""
RUN_TIMEOUTS_PER_LEASE = 2
"""``outbox.lease`` is at least this many times an action's ``run.webhook.timeout``: a run
is one call, and of twice its timeout, cut at ``ATTEMPT_SHARE``, the call gets all it may
take and the rest is left for reading the incident and recording the run."""


def _store_url(url: str) -> str:
    # One grammar for the store URL, the one open_store reads; its messages name no secret.
    check_url(url)
    return url


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token
SESSION_SECRET_MIN = 32


def _cidr(value: object) -> IPv4Network | IPv6Network:
    if isinstance(value, IPv4Network | IPv6Network):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a CIDR like 10.0.0.0/8 or fd00::/8")
    try:
        return ipaddress.ip_network(value.strip(), strict=True)
    except ValueError:
        pass
    try:
        network = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{show(value)} is not a CIDR like 10.0.0.0/8 or fd00::/8") from None
    raise ValueError(f"{show(value)} has host bits set: did you mean {network}?")


Cidr = Annotated[IPv4Network | IPv6Network, PlainValidator(_cidr), PlainSerializer(str)]


class TrustedProxyConfig(ConfigModel):
    """A reverse proxy that signs people in (oauth2-proxy and the like): the pages believe
    its ``header`` naming the person, but only on a connection whose peer address is in one
    of ``from``; from anywhere else the header is ignored."""

    header: str = "X-Forwarded-User"
    from_: list[Cidr] = Field(alias="from", min_length=1)

    @field_validator("header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        if not _HEADER_NAME.match(value):
            raise ValueError(f"{show(value)} is not an HTTP header name")
        return value


class AuthConfig(ConfigModel):
    """Who may call the endpoints, by role (``receiver/auth.py``): write (what Alertmanager
    and deploy pipelines send), admin (reload, redrive, silences) and read."""

    bearer_tokens: Tokens = Field(default_factory=list)
    basic: BasicAuth | None = None
    read_bearer_tokens: Tokens = Field(default_factory=list)
    """Tokens for the read endpoints; none means they are open."""
    admin_bearer_tokens: Tokens = Field(default_factory=list)
    """Tokens for reload, redrive and silences; none means only SIGHUP reloads, unless the
    receiver runs open (``allow_open``)."""
    allow_open: bool = False
    """Run with no write credential: anyone who reaches the port may post alerts and
    events. Without it such a config is refused, since it is almost always an unset
    ``${WEBHOOK_TOKEN:-}``."""
    metrics_need_read_token: bool = False
    """``/metrics`` asks for a read credential like the read endpoints."""
    trusted_proxy: TrustedProxyConfig | None = None
    """Pages: people signed in by a reverse proxy in front of the receiver."""
    session_ttl: PositiveDuration = 12 * 3600.0
    """Pages: how long a browser's sign-in (with a token) lasts."""
    session_secret: OptionalSecret = None
    """Pages: the key that signs session cookies and CSRF tokens, the same on every replica
    (``${SESSION_SECRET}`` or ``session_secret_file``). Unset: random keys kept in the store,
    shared by every replica, a new one each week (``receiver/web/keys.py``)."""

    @field_validator("session_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None  # "${SESSION_SECRET:-}" unset: random keys in the store
        if len(value.get_secret_value()) < SESSION_SECRET_MIN:
            raise ValueError(
                f"is shorter than {SESSION_SECRET_MIN} characters: use a long random value "
                "(openssl rand -base64 48)"
            )
        return value


class ServerConfig(ConfigModel):
    host: str = "0.0.0.0"  # noqa: S104 - a receiver in a container listens on all interfaces
    port: int = Field(default=9095, ge=0, le=65535)
    keepalive_timeout: PositiveDuration = 120.0
    max_body_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    external_url: HttpUrl | None = None
    """How people reach this receiver (e.g. behind an ingress); sinks link to
    ``<external_url>/incidents/<id>`` (the incident page) when it is set."""
    auth: AuthConfig = AuthConfig()


class StoreConfig(ConfigModel):
    url: Annotated[str, AfterValidator(_store_url)] = Field(default="memory://", repr=False)
    key_prefix: str = Field(default="jr", min_length=1)
    retention: PositiveDuration = 7 * 86400.0
    max_alerts_per_incident: int = Field(default=10_000, ge=500)
    """Alerts an incident keeps: beyond it, its resolved ones go, oldest first, so an
    incident that keeps getting traffic stays bounded (pages and sinks show 500)."""
    replica_acks: int = Field(default=0, ge=0)
    """Replicas that must hold a webhook batch before it is answered 2xx (Redis WAIT);
    fewer within ``replica_ack_timeout`` answer 503, which Alertmanager retries."""
    replica_ack_timeout: Annotated[PositiveDuration, Field(le=1.5)] = 1.0
    """At most 1.5 s: the store's socket timeout (2 s) would cut a longer wait short."""

    @model_validator(mode="after")
    def _acks_need_replicas(self) -> StoreConfig:
        scheme = self.url.partition("://")[0]
        if self.replica_acks and scheme in ("memory", "redis+cluster"):
            raise ValueError(
                f"replica_acks: not available on {scheme}:// ("
                + (
                    "an embedded store has no replicas"
                    if scheme == "memory"
                    else "set min-replicas-to-write on the cluster's nodes instead"
                )
                + ")"
            )
        return self


class PrometheusConfig(ConfigModel):
    """Where KPIs come from; without ``url`` incidents are scored without KPI deviation."""

    url: HttpUrl | None = None
    timeout: PositiveDuration = 2.0
    """Longest wait for one query."""
    budget: PositiveDuration = 2.0
    """Longest wait for all KPI queries of one incident; what has not answered is a note."""
    headers: SecretHeaders = Field(default_factory=dict)
    baseline_offset: PositiveDuration = 7 * 86400.0
    ca_file: CaFile | None = None


ScopeField = Literal["environment", "region"]


def _default_scope_labels() -> dict[ScopeField, str]:
    return {"environment": "env", "region": "region"}


class EventsConfig(ConfigModel):
    retention: PositiveDuration = 7 * 86400.0
    lookback: Duration = 30 * 60.0
    feeds: Feeds = Field(default_factory=list)
    """Systems asked for changes when an incident is enriched (see ``config/feeds.py``)."""
    scope_labels: dict[ScopeField, LabelName] = Field(default_factory=_default_scope_labels)
    """Which incident label each scope field of a change event is compared with; an event
    whose scope contradicts the incident's group labels is never one of its causes
    (``receiver/enrich/scope.py``)."""


class GroupingConfig(ConfigModel):
    group_by: list[LabelName] = Field(default_factory=lambda: ["env", "region"])
    group_wait: Duration = 30.0
    group_interval: PositiveDuration = 120.0
    resolve_after: Duration = 300.0
    reopen_window: Duration = 1800.0


class SchedulerConfig(ConfigModel):
    tick: PositiveDuration = 1.0
    """How often each replica looks for incidents that are due."""
    lease: PositiveDuration = 30.0
    """How long a claimed incident stays with one replica before another may take it."""
    batch: int = Field(default=100, ge=1)
    drain: Duration = 20.0
    """On shutdown, how long the round of decisions and deliveries under way may take to
    finish (keep it below Kubernetes' terminationGracePeriodSeconds)."""


Score = Annotated[float, Field(ge=0, le=100)]


class Thresholds(ConfigModel):
    """Lowest score of each priority; anything below ``P4`` is ``P5``
    (``receiver.scoring.priority_for`` applies them)."""

    P1: Score = 80.0
    P2: Score = 60.0
    P3: Score = 40.0
    P4: Score = 20.0

    @model_validator(mode="after")
    def _strictly_decreasing(self) -> Thresholds:
        floors = self._floors()
        raise_issues(
            [
                FieldIssue((name,), f"{show(low)} must be below {higher} ({show(high)})")
                for (higher, high), (name, low) in pairwise(floors)
                if low >= high
            ]
        )
        return self

    def _floors(self) -> tuple[tuple[Priority, float], ...]:
        return (("P1", self.P1), ("P2", self.P2), ("P3", self.P3), ("P4", self.P4))


class TierConfig(ConfigModel):
    label: LabelName = "tier"
    weights: dict[str, Weight] = Field(default_factory=dict)
    default: Weight = 1.0


class ScoringConfig(ConfigModel):
    thresholds: Thresholds = Thresholds()
    severity_label: LabelName = "severity"
    severity_weights: dict[str, Weight] = Field(
        default_factory=lambda: {"critical": 1.0, "error": 0.8, "warning": 0.5, "info": 0.2}
    )
    default_severity_weight: Weight = 0.5
    tier: TierConfig = TierConfig()


class OutboxConfig(ConfigModel):
    """Durable delivery: every notification is a job in the store until a sink took it."""

    max_attempts: int = Field(default=10, ge=1)
    """Attempts per job before it goes to the dead-letter list."""
    backoff_initial: PositiveDuration = 2.0
    backoff_max: PositiveDuration = 300.0
    """Longest wait between attempts (a sink's Retry-After may ask for longer)."""
    lease: PositiveDuration = 60.0
    """How long one replica may hold a job before another may take it over; longer than
    the slowest delivery (up to 6 sink calls; sink timeouts are 10s by default) and at
    least twice the slowest action's ``run.webhook.timeout`` (``config/loader.py``)."""
    batch: int = Field(default=50, ge=1)
    """Queues (one per incident and sink) claimed per tick by each replica."""
    dead_letters_max: int = Field(default=10_000, ge=1)
    """The dead-letter list keeps this many jobs, newest first."""


class AutomationConfig(ConfigModel):
    """Guard rails over every action run (``receiver/act/``), whatever a journey allows."""

    enabled: bool = True
    """The kill switch: false and nothing runs, by hand or automatically (each decision is
    still recorded, as skipped or refused)."""
    dry_run: bool = False
    """Decide as usual and record ``dry_run`` instead of calling anything."""
    max_runs_per_hour: int = Field(default=10, ge=0)
    """Runs started in any hour, over all replicas and incidents (a sliding hour)."""
    outcome_window: PositiveDuration = 900.0
    """How long after a run the incident is watched to tell whether it helped."""


class ReceiverConfig(ConfigModel):
    """Everything in ``receiver.yaml``; ``ReceiverConfig()`` is a working single-process setup."""

    server: ServerConfig = ServerConfig()
    store: StoreConfig = StoreConfig()
    prometheus: PrometheusConfig = PrometheusConfig()
    events: EventsConfig = EventsConfig()
    grouping: GroupingConfig = GroupingConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    scoring: ScoringConfig = ScoringConfig()
    routing: dict[str, list[Priority]] = Field(default_factory=lambda: {"log": list(PRIORITIES)})
    """Sink name -> the priorities it is sent."""
    sinks: SinksConfig = SinksConfig()
    outbox: OutboxConfig = OutboxConfig()
    alertmanager: AlertmanagerConfig | None = None
    """The HA Alertmanagers, asked to back-fill, reconcile and silence
    (``receiver/alertmanager/``)."""
    automation: AutomationConfig = AutomationConfig()
    inbound: InboundConfig = InboundConfig()
    """Secrets of the webhooks PagerDuty, Slack and Jira send back (``receiver/inbound/``)."""
    journeys_file: Path = DEFAULT_JOURNEYS_FILE
    """Relative to the directory of receiver.yaml when loaded from a file."""

    @model_validator(mode="after")
    def _lease_outlasts_a_delivery(self) -> ReceiverConfig:
        # A sink call on a worker thread cannot be interrupted: if a delivery could outlast
        # the lease, another replica would take the job over while it is still being sent.
        slowest = max(
            ((name, getattr(self.sinks, name).timeout) for name in self.sinks.enabled()
             if hasattr(getattr(self.sinks, name), "timeout")),
            key=lambda item: item[1],
            default=None,
        )  # fmt: skip
        if slowest is not None and self.outbox.lease < CALLS_PER_DELIVERY * slowest[1]:
            name, timeout = slowest
            raise_issues(
                [
                    FieldIssue(
                        ("outbox", "lease"),
                        f"{show(self.outbox.lease)}s is too short for sinks.{name}.timeout "
                        f"{show(timeout)}s: a delivery makes up to {CALLS_PER_DELIVERY} calls; "
                        f"set it to at least {show(CALLS_PER_DELIVERY * timeout)}s",
                    )
                ]
            )
        return self

    @model_validator(mode="after")
    def _routing_targets_exist(self) -> ReceiverConfig:
        enabled = self.sinks.enabled()
        issues = []
        for sink in self.routing:
            if sink not in enabled:
                present = sink in type(self.sinks).model_fields and getattr(self.sinks, sink)
                state = "disabled" if present else "not configured"
                issues.append(
                    FieldIssue(("routing", sink), f'sink "{sink}" is {state} under sinks')
                )
        raise_issues(issues)
        return self
