"""The two config files: ``receiver.yaml`` (operators) and ``journeys.yaml`` (team leads).

Load them with :func:`load`; every problem is reported as a :class:`~receiver.errors.ConfigProblem`
naming file, line and field, all of them at once in one :class:`~receiver.errors.ConfigError`.
"""

from __future__ import annotations

from receiver.config.fields import (
    PRIORITIES,
    BasicAuth,
    Duration,
    PositiveDuration,
    Priority,
    parse_duration,
)
from receiver.config.journeys_yaml import (
    UNMAPPED,
    Action,
    ActionCondition,
    Automation,
    Journey,
    JourneysConfig,
    Kpi,
    Owner,
    Runbook,
    Slo,
    Stage,
    Unmapped,
)
from receiver.config.loader import (
    check,
    load,
    load_auth,
    load_journeys,
    load_receiver_config,
    review,
    written_lease,
)
from receiver.config.receiver_yaml import (
    AuthConfig,
    AutomationConfig,
    EventsConfig,
    GroupingConfig,
    OutboxConfig,
    PrometheusConfig,
    ReceiverConfig,
    SchedulerConfig,
    ScoringConfig,
    ServerConfig,
    StoreConfig,
    Thresholds,
    TierConfig,
    TrustedProxyConfig,
)
from receiver.config.sinks import (
    JiraSinkConfig,
    LogSinkConfig,
    PagerDutySinkConfig,
    SinksConfig,
    SlackSinkConfig,
)

__all__ = [
    "PRIORITIES",
    "UNMAPPED",
    "Action",
    "ActionCondition",
    "AuthConfig",
    "Automation",
    "AutomationConfig",
    "BasicAuth",
    "Duration",
    "EventsConfig",
    "GroupingConfig",
    "JiraSinkConfig",
    "Journey",
    "JourneysConfig",
    "Kpi",
    "LogSinkConfig",
    "OutboxConfig",
    "Owner",
    "PagerDutySinkConfig",
    "PositiveDuration",
    "Priority",
    "PrometheusConfig",
    "ReceiverConfig",
    "Runbook",
    "SchedulerConfig",
    "ScoringConfig",
    "ServerConfig",
    "SinksConfig",
    "SlackSinkConfig",
    "Slo",
    "Stage",
    "StoreConfig",
    "Thresholds",
    "TierConfig",
    "TrustedProxyConfig",
    "Unmapped",
    "check",
    "load",
    "load_auth",
    "load_journeys",
    "load_receiver_config",
    "parse_duration",
    "review",
    "written_lease",
]
