"""The receiver's exception tree.

::

    ReceiverError
    ├── ConfigError          file, line, dotted path, reason: a YAML file that cannot be used
    ├── PayloadError         bad webhook/API body -> 400 (syntax) or 422 (schema); never retried
    ├── StoreUnavailable     store down on the request path -> 503, which Alertmanager retries
    └── DeliveryError        .sink .incident_id .reason (auth|rate_limited|client|server|timeout)
        ├── RetryableDeliveryError (.retry_after, .ambiguous)
        └── PermanentDeliveryError
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


class ReceiverError(Exception):
    """Base of every error the receiver raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a config file, located as precisely as the file allows."""

    file: str
    line: int | None
    path: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.path}: {self.reason}" if self.path else f"{where}: {self.reason}"


class ConfigError(ReceiverError):
    """A config file is unusable; ``problems`` lists every reason, each with file and line."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class PayloadError(ReceiverError):
    """A request body the receiver refuses; ``status`` is 400 (syntax) or 422 (schema)."""

    def __init__(self, status: int, message: str, errors: list[dict[str, str]] | None = None):
        self.status = status
        self.message = message
        self.errors = errors or []
        super().__init__(message)


class StoreUnavailable(ReceiverError):
    """The store cannot be reached; on the request path this is a 503 so senders retry."""


DeliveryReason = Literal["auth", "rate_limited", "client", "server", "timeout"]


class DeliveryError(ReceiverError):
    """A sink could not deliver a notification."""

    def __init__(self, sink: str, incident_id: str, reason: DeliveryReason, detail: str) -> None:
        self.sink = sink
        self.incident_id = incident_id
        self.reason = reason
        super().__init__(f"{sink}: incident {incident_id}: {reason}: {detail}")


class RetryableDeliveryError(DeliveryError):
    """Worth another attempt, no sooner than ``retry_after`` seconds when the sink said so.

    ``ambiguous``: the attempt may have written without hearing so (a timeout, a dropped
    connection, no HTTP answer), so the next one should look for that write before making
    it again; also a write answered by a 5xx or Slack's ``internal_error``, which the
    vendor says may have been applied. A 429 or a refusal proves nothing was written.
    """

    def __init__(
        self,
        sink: str,
        incident_id: str,
        reason: DeliveryReason,
        detail: str,
        retry_after: float | None = None,
        *,
        ambiguous: bool = False,
    ) -> None:
        super().__init__(sink, incident_id, reason, detail)
        self.retry_after = retry_after
        self.ambiguous = ambiguous


class PermanentDeliveryError(DeliveryError):
    """Another attempt would fail the same way (bad credentials, rejected payload)."""
