"""Webhook message -> ``Batch`` of ``Alert``: the last step that sees the wire schema.

Labels and annotations pass through untouched: they are untrusted text that later steps
match and escape, never interpret here.
"""

from __future__ import annotations

from collections.abc import Mapping

from receiver.models import Alert, Batch
from receiver.webhook import WebhookMessage

_FNV64_OFFSET = 0xCBF29CE484222325
_FNV64_PRIME = 0x100000001B3
_MASK64 = 0xFFFFFFFFFFFFFFFF
_SEPARATOR = b"\xff"  # cannot occur in UTF-8, so no name or value can run into the next


def normalize(msg: WebhookMessage) -> Batch:
    """The batch as the rest of the flow sees it.

    An alert keeps Alertmanager's fingerprint; one sent without (another sender, or an
    older one) gets the fingerprint Alertmanager would have given it, so retries and HA
    peers still deduplicate. The label and annotation dicts are handed over, not copied.
    """
    return Batch(
        alerts=[
            Alert(
                fingerprint=a.fingerprint or labels_fingerprint(a.labels),
                status=a.status,
                labels=a.labels,
                annotations=a.annotations,
                starts_at=a.starts_at,
                ends_at=a.ends_at,
                generator_url=a.generator_url,
            )
            for a in msg.alerts
        ],
        truncated_alerts=msg.truncated_alerts,
        group_key=msg.group_key,
        receiver=msg.receiver,
        external_url=msg.external_url,
    )


def labels_fingerprint(labels: Mapping[str, str]) -> str:
    """Prometheus' ``model.LabelSet.Fingerprint()``, as 16 lowercase hex digits.

    FNV-1a 64 over ``name 0xff value 0xff`` for each label in name order (Go sorts the
    UTF-8 bytes; code point order is the same order). The empty set hashes to the FNV
    offset basis, as in Go.
    """
    h = _FNV64_OFFSET
    for name in sorted(labels):
        # surrogatepass: a lone surrogate cannot come from JSON, but must not raise here.
        data = (
            name.encode("utf-8", "surrogatepass")
            + _SEPARATOR
            + labels[name].encode("utf-8", "surrogatepass")
            + _SEPARATOR
        )
        for byte in data:
            h = ((h ^ byte) * _FNV64_PRIME) & _MASK64
    return f"{h:016x}"
