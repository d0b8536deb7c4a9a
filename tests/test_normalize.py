from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from receiver.models import Alert, Batch
from receiver.normalize import labels_fingerprint, normalize
from receiver.webhook import parse_webhook

DATA = Path(__file__).parent / "data" / "webhook"


def batch_of(name: str) -> Batch:
    return normalize(parse_webhook((DATA / name).read_bytes()))


def test_batch_carries_the_message_fields() -> None:
    batch = batch_of("truncated.json")

    assert batch.truncated_alerts == 3
    assert batch.group_key == '{}/{env="prod"}:{env="prod", region="eu-west-1"}'
    assert batch.receiver == "journey-receiver"
    assert batch.external_url == "http://alertmanager-0.monitoring:9093"
    assert len(batch.alerts) == 2


def test_alert_is_carried_over_field_by_field() -> None:
    batch = batch_of("resolved.json")

    assert batch.alerts == [
        Alert(
            fingerprint="23886ccb7fb428bf",
            status="resolved",
            labels={
                "alertname": "HighErrorRate",
                "env": "prod",
                "region": "eu-west-1",
                "severity": "critical",
                "team": "payments",
                "service": "payment-service",
                "instance": "10.2.3.4:8080",
                "job": "payment-service",
            },
            annotations={
                "summary": "5xx ratio above 5% on payment-service",
                "description": "payment-service is answering 7.2% of requests with 5xx",
                "runbook_url": "https://runbooks.example.com/rb-17",
            },
            starts_at=datetime(2026, 4, 18, 10, 0, 0, 123456, tzinfo=UTC),
            ends_at=datetime(2026, 4, 18, 10, 12, 0, 987654, tzinfo=UTC),
            generator_url=json.loads((DATA / "resolved.json").read_bytes())["alerts"][0][
                "generatorURL"
            ],
        )
    ]


def test_firing_alert_has_no_end() -> None:
    assert [a.ends_at for a in batch_of("firing.json").alerts] == [None, None]


def test_alertmanager_fingerprint_is_kept_even_when_it_differs_from_the_labels() -> None:
    body = {
        "status": "firing",
        "alerts": [{"status": "firing", "labels": {"a": "b"}, "fingerprint": "0123456789abcdef"}],
    }

    batch = normalize(parse_webhook(json.dumps(body).encode()))

    assert batch.alerts[0].fingerprint == "0123456789abcdef"


@pytest.mark.parametrize("fingerprint", [None, ""])
def test_missing_fingerprint_is_computed_from_the_labels(fingerprint: str | None) -> None:
    alert: dict[str, object] = {"status": "firing", "labels": {"a": "b"}}
    if fingerprint is not None:
        alert["fingerprint"] = fingerprint

    batch = normalize(parse_webhook(json.dumps({"status": "firing", "alerts": [alert]}).encode()))

    assert batch.alerts[0].fingerprint == "d2b371819297f98a"


def test_missing_fingerprint_in_sample_body_is_computed() -> None:
    assert batch_of("no_fingerprint.json").alerts[0].fingerprint == "bafaf1f2a64a6f67"


def test_fingerprint_by_hand() -> None:
    # FNV-1a 64 over the bytes 61 ff 62 ff ("a", separator, "b", separator):
    #   offset basis                     cbf29ce484222325
    #   ^0x61, *0x100000001b3 mod 2^64 -> af63dc4c8601ec8c  (the published FNV-1a 64 of "a")
    #   ^0xff, *prime                  -> 089bc907b544c769
    #   ^0x62, *prime                  -> e57da31903de37b1
    #   ^0xff, *prime                  -> d2b371819297f98a
    assert labels_fingerprint({"a": "b"}) == "d2b371819297f98a"


def test_empty_label_set_hashes_to_the_offset_basis() -> None:
    assert labels_fingerprint({}) == "cbf29ce484222325"


# From prometheus/common model/signature_test.go (TestMetricToFingerprint and the
# BenchmarkMetricToFingerprint* expectations), decimal there, hex here.
@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"name": "garland, briggs", "fear": "love is not enough"}, f"{5799056148416392346:016x}"),
        ({"first-label": "first-label-value"}, f"{5146282821936882169:016x}"),
        (
            {
                "first-label": "first-label-value",
                "second-label": "second-label-value",
                "third-label": "third-label-value",
            },
            f"{13843036195897128121:016x}",
        ),
    ],
)
def test_fingerprint_matches_prometheus_common(labels: dict[str, str], expected: str) -> None:
    assert labels_fingerprint(labels) == expected


def test_fingerprint_matches_one_alertmanager_actually_sent() -> None:
    # Labels and fingerprint of a resolved alert as an Alertmanager delivered it, kept in a
    # public test script (liamkelly15-maker/pythonwebhook, testsuites/testcurl7.sh).
    labels = {
        "alertname": "Deployment",
        "app_kubernetes_io_instance": "eric-oss-common-base",
        "app_kubernetes_io_managed_by": "Helm",
        "app_kubernetes_io_name": "eric-pm-kube-state-metrics",
        "app_kubernetes_io_version": "2.1.0_10",
        "chart": "eric-pm-kube-state-metrics-2.1.0_10",
        "deployment": "eric-log-transformer",
        "instance": "192.168.69.53:8080",
        "job": "eric-pm-kube-state-metrics",
        "kubernetes_name": "eric-pm-kube-state-metrics",
        "kubernetes_namespace": "eric-eo-cm-ci406",
        "namespace": "eric-eo-cm-ci406",
        "severity": "Warning",
    }

    assert labels_fingerprint(labels) == "fbab788ec4c1018b"


def test_fingerprint_ignores_label_order_but_not_values() -> None:
    forward = labels_fingerprint({"a": "1", "b": "2"})

    assert labels_fingerprint({"b": "2", "a": "1"}) == forward
    assert labels_fingerprint({"a": "2", "b": "1"}) != forward
    # The separator keeps a name from running into its value.
    assert labels_fingerprint({"ab": "c"}) != labels_fingerprint({"a": "bc"})


def test_untrusted_text_is_passed_through_unchanged() -> None:
    labels = {"service": "<!channel> *bold* `x`", "empty": "", "unicode": "zahlung-überfällig"}
    annotations = {"summary": "  leading and trailing spaces  ", "html": "<script>x</script>"}
    body = {
        "status": "firing",
        "alerts": [{"status": "firing", "labels": labels, "annotations": annotations}],
    }

    alert = normalize(parse_webhook(json.dumps(body).encode())).alerts[0]

    assert alert.labels == labels
    assert alert.annotations == annotations
    assert alert.generator_url == ""
    assert alert.starts_at is None
