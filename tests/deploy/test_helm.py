"""The Helm chart in helm/journey-receiver: lint, render, validate, and hold its invariants.

No helm binary is needed: helm-python-sdk embeds Helm's Go SDK (v4) and renders offline.
Rendered manifests are checked against the Kubernetes 1.30 OpenAPI schemas
(kubernetes-validate, strict) and yamllint (see YAMLLINT); the Prometheus Operator CRDs
(ServiceMonitor, PrometheusRule) are not in those schemas and are checked by shape.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from yamllint import linter
from yamllint.config import YamlLintConfig

from tests.conftest import EXAMPLE_JOURNEYS, ROOT

CHART = ROOT / "helm" / "journey-receiver"
FULL_VALUES = CHART / "ci" / "full-values.yaml"
ALERTING_RULES = ROOT / "deploy" / "alerting-rules.yaml"
KUBE_VERSION = "1.30.0"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
# yamllint's `relaxed` preset without line-length (long PromQL and comments are fine) and
# with either sequence indentation (toYaml never indents them, hand-written templates do);
# every remaining problem, warnings included, fails the test.
YAMLLINT = """
extends: relaxed
rules:
  line-length: disable
  indentation: {spaces: consistent, indent-sequences: whatever}
"""
SECRET_ENV = (
    "WEBHOOK_TOKEN",
    "REDIS_URL",
    "PD_ROUTING_KEY",
    "SLACK_TOKEN",
    "JIRA_TOKEN",
    "READ_TOKEN",  # full-values.yaml's, through extraEnv
)

Manifest = dict[str, Any]


def full_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(FULL_VALUES.read_text())
    return values


def render_files(values: dict[str, Any] | None = None) -> dict[str, str]:
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values or {}, name="jr", namespace="monitoring")
    return {name: text for name, text in files.items() if not name.endswith("NOTES.txt")}


def render(values: dict[str, Any] | None = None) -> list[Manifest]:
    return [
        doc for text in render_files(values).values() for doc in yaml.safe_load_all(text) if doc
    ]


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def one(manifests: list[Manifest], kind: str) -> Manifest:
    (found,) = of_kind(manifests, kind)
    return found


def pod_specs(manifests: list[Manifest]) -> Iterator[tuple[str, dict[str, Any]]]:
    for m in manifests:
        if m["kind"] in {"Deployment", "StatefulSet"}:
            yield m["metadata"]["name"], m["spec"]["template"]["spec"]


def configmap(manifests: list[Manifest], suffix: str) -> dict[str, str]:
    (found,) = [
        m for m in of_kind(manifests, "ConfigMap") if m["metadata"]["name"].endswith(suffix)
    ]
    data: dict[str, str] = found["data"]
    return data


def checksums(values: dict[str, Any]) -> dict[str, str]:
    annotations: dict[str, str] = one(render(values), "Deployment")["spec"]["template"]["metadata"][
        "annotations"
    ]
    return {k: v for k, v in annotations.items() if k.startswith("checksum/")}


# --- lint and schema ---------------------------------------------------------------------


def test_helm_lint_finds_no_errors_with_default_and_full_values() -> None:
    for values in ({}, full_values()):
        report = helm.lint(CHART, values, strict=True, kube_version=f"v{KUBE_VERSION}")
        assert report["errors"] == []
        assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_values_yaml_and_the_full_values_validate_against_the_schema() -> None:
    with helm.Chart.load(CHART) as chart:
        assert chart.schema  # without one, validate_schema accepts anything
        chart.validate_schema(yaml.safe_load((CHART / "values.yaml").read_text()))
        chart.validate_schema(chart.merge_values(full_values()))


@pytest.mark.parametrize(
    "bad",
    [
        {"replicaCount": "two"},
        {"image": {"pullPolicy": "Sometimes"}},
        {"service": {"type": "ExternalName"}},
        {"routing": {"email": ["P1"]}},
        {"secrets": {"password": "inline"}},
        {"unknownKey": True},
    ],
)
def test_the_schema_rejects_bad_values(bad: dict[str, Any]) -> None:
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema(chart.merge_values(bad))
        with pytest.raises(helm.HelmError):
            chart.render(bad, name="jr", namespace="monitoring")


def test_every_values_key_is_documented() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = [
        f"values.yaml:{n}: {line.strip()}"
        for n, line in enumerate(lines, 1)
        if line.strip()
        and not line.lstrip().startswith("#")
        and ":" in line
        and "#" not in line
        and not lines[n - 2].lstrip().startswith("#")
    ]
    assert undocumented == []


# --- rendered manifests are valid Kubernetes and valid YAML --------------------------------


@pytest.mark.parametrize("values", [{}, full_values()], ids=["default", "full"])
def test_rendered_manifests_validate_against_kubernetes_schemas(values: dict[str, Any]) -> None:
    manifests = render(values)
    core = [m for m in manifests if m["kind"] not in CRD_KINDS]
    for manifest in core:
        kubernetes_validate.validate(manifest, KUBE_VERSION, strict=True)
    expected = {"Deployment", "Service", "ConfigMap", "ServiceAccount", "PodDisruptionBudget"}
    assert expected <= {m["kind"] for m in core}


def test_full_values_render_every_optional_object() -> None:
    kinds = {m["kind"] for m in render(full_values())}
    assert {
        "Secret",
        "StatefulSet",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "ServiceMonitor",
        "PrometheusRule",
        "Ingress",
    } <= kinds
    assert not {"Secret", "StatefulSet", "HorizontalPodAutoscaler", "NetworkPolicy", "Ingress"} & {
        m["kind"] for m in render()
    }


def test_the_crds_have_the_prometheus_operator_shape() -> None:
    manifests = render(full_values())
    (service,) = [
        s for s in of_kind(manifests, "Service") if s["metadata"]["name"] == "jr-journey-receiver"
    ]
    monitor = one(manifests, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert service["spec"]["selector"] == monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rule = one(manifests, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule["spec"]) == {"groups"}
    for group in rule["spec"]["groups"]:
        assert set(group) == {"name", "rules"}
        for r in group["rules"]:
            assert {"alert", "expr"} <= set(r) <= {"alert", "expr", "for", "labels", "annotations"}


@pytest.mark.parametrize("values", [{}, full_values()], ids=["default", "full"])
def test_rendered_manifests_pass_yamllint(values: dict[str, Any]) -> None:
    # YAMLLINT, on each template's output with Helm's blank leading lines stripped.
    config = YamlLintConfig(YAMLLINT)
    problems = [
        f"{name}:{p.line}: {p.message}"
        for name, text in render_files(values).items()
        if text.strip()
        for p in linter.run(text.strip() + "\n", config)
    ]
    assert problems == []


def test_the_chart_sources_pass_yamllint() -> None:
    config = YamlLintConfig(YAMLLINT)
    files = [CHART / "Chart.yaml", CHART / "values.yaml", FULL_VALUES]
    problems = [
        f"{f.name}:{p.line}: {p.message}" for f in files for p in linter.run(f.read_text(), config)
    ]
    assert problems == []


# --- invariants ----------------------------------------------------------------------------


@pytest.mark.parametrize("values", [{}, full_values()], ids=["default", "full"])
def test_every_container_is_non_root_read_only_and_has_resources(values: dict[str, Any]) -> None:
    specs = list(pod_specs(render(values)))
    assert specs
    for name, spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, c["name"]
            assert sc["runAsUser"] != 0, c["name"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], c["name"]


def test_the_receiver_pod_matches_the_operating_guide() -> None:
    deployment = one(render(), "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2
    assert spec["terminationGracePeriodSeconds"] == 30
    (container,) = spec["containers"]
    assert container["securityContext"]["runAsUser"] == 10001
    assert container["args"] == ["serve", "--config", "/etc/journey-receiver/receiver.yaml"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["ports"] == [{"name": "http", "containerPort": 9095, "protocol": "TCP"}]
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"memory": "512Mi"},
    }
    assert container["image"] == "journey-receiver:0.1.0"
    anti = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/etc/journey-receiver" in mounts
    service = one(render(), "Service")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"][0]["name"] == "http"
    assert service["spec"]["ports"][0]["port"] == 9095


def test_the_init_container_checks_the_config_with_the_same_image() -> None:
    spec = one(render(), "Deployment")["spec"]["template"]["spec"]
    (init,) = spec["initContainers"]
    (container,) = spec["containers"]
    assert init["args"] == ["check", "--config", "/etc/journey-receiver/receiver.yaml"]
    assert init["image"] == container["image"]
    assert init["env"] == container["env"]
    assert init["volumeMounts"] == container["volumeMounts"]


def test_drain_is_set_from_values_and_must_stay_below_the_grace_period() -> None:
    receiver = yaml.safe_load(configmap(render(), "-receiver")["receiver.yaml"])
    assert receiver["scheduler"]["drain"] == "20s"
    receiver = yaml.safe_load(
        configmap(render({"shutdown": {"drainSeconds": 12}}), "-receiver")["receiver.yaml"]
    )
    assert receiver["scheduler"]["drain"] == "12s"
    with pytest.raises(helm.HelmRenderError, match="drainSeconds"):
        render({"shutdown": {"drainSeconds": 30}})


def test_receiver_and_journeys_come_from_two_configmaps_in_one_directory() -> None:
    manifests = render()
    names = {m["metadata"]["name"] for m in of_kind(manifests, "ConfigMap")}
    assert names == {"jr-journey-receiver-receiver", "jr-journey-receiver-journeys"}
    assert set(configmap(manifests, "-receiver")) == {"receiver.yaml"}
    assert set(configmap(manifests, "-journeys")) == {"journeys.yaml"}
    volumes = one(manifests, "Deployment")["spec"]["template"]["spec"]["volumes"]
    (config,) = [v for v in volumes if v["name"] == "config"]
    assert [s["configMap"]["name"] for s in config["projected"]["sources"]] == sorted(
        names, reverse=True
    )


def test_checksums_roll_the_pods_when_either_configmap_changes() -> None:
    base = checksums({})
    assert set(base) == {"checksum/receiver-config", "checksum/journeys-config"}
    journeys = yaml.safe_load(EXAMPLE_JOURNEYS.read_text())
    changed = checksums({"journeys": journeys})
    assert changed["checksum/journeys-config"] != base["checksum/journeys-config"]
    assert changed["checksum/receiver-config"] == base["checksum/receiver-config"]
    changed = checksums({"config": {"grouping": {"group_wait": "45s"}}})
    assert changed["checksum/receiver-config"] != base["checksum/receiver-config"]
    assert changed["checksum/journeys-config"] == base["checksum/journeys-config"]


def test_secret_values_appear_only_in_the_secret() -> None:
    values = full_values()
    values["redis"] = {"enabled": False}
    sentinels = {key: f"SENTINEL-{key}-7f3a" for key in values["secrets"]["values"]}
    sentinels["redisUrl"] = "redis://:SENTINEL-redisUrl-7f3a@redis:6379/0"
    values["secrets"]["values"] = sentinels
    manifests = render(values)
    secret = one(manifests, "Secret")
    assert sorted(secret["stringData"].values()) == sorted(sentinels.values())
    for m in manifests:
        if m["kind"] != "Secret":
            text = json.dumps(m)
            assert "SENTINEL" not in text, m["kind"]
    receiver = yaml.safe_load(configmap(manifests, "-receiver")["receiver.yaml"])
    assert receiver["store"]["url"] == "${REDIS_URL}"
    assert receiver["server"]["auth"]["bearer_tokens"] == ["${WEBHOOK_TOKEN}"]
    assert receiver["sinks"]["pagerduty"]["routing_key"] == "${PD_ROUTING_KEY}"
    assert receiver["sinks"]["slack"]["token"] == "${SLACK_TOKEN}"
    assert receiver["sinks"]["jira"]["token"] == "${JIRA_TOKEN}"


def test_secrets_are_injected_from_the_existing_secret_by_default() -> None:
    manifests = render({"sinks": {"slack": {"enabled": True}}})
    assert of_kind(manifests, "Secret") == []
    (container,) = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert set(refs) == {"WEBHOOK_TOKEN", "REDIS_URL", "SLACK_TOKEN"}
    assert {r["name"] for r in refs.values()} == {"journey-receiver-secrets"}
    assert refs["SLACK_TOKEN"]["key"] == "slack-token"
    receiver = yaml.safe_load(configmap(manifests, "-receiver")["receiver.yaml"])
    assert "pagerduty" not in receiver["sinks"]
    assert "jira" not in receiver["sinks"]


def test_in_cluster_redis_keeps_an_aof_on_a_volume_and_the_store_points_at_it() -> None:
    manifests = render(full_values())
    redis = one(manifests, "StatefulSet")
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "redis:7"
    args = " ".join(container["args"])
    assert "--appendonly yes" in args
    assert "--appendfsync everysec" in args
    # Full, it refuses writes (a 503 Alertmanager retries) rather than being OOM-killed.
    assert "--maxmemory 600mb --maxmemory-policy noeviction" in args
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    assert claim["metadata"]["name"] == "data"
    receiver = yaml.safe_load(configmap(manifests, "-receiver")["receiver.yaml"])
    services = {s["metadata"]["name"] for s in of_kind(manifests, "Service")}
    host = receiver["store"]["url"].removeprefix("redis://").split(":")[0]
    assert host in services
    (receiver_container,) = one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert "REDIS_URL" not in {e["name"] for e in receiver_container["env"]}


def test_pdb_only_with_more_than_one_replica_and_no_fixed_replicas_under_an_hpa() -> None:
    assert one(render(), "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert of_kind(render({"replicaCount": 1}), "PodDisruptionBudget") == []
    manifests = render(full_values())
    assert "replicas" not in one(manifests, "Deployment")["spec"]
    hpa = one(manifests, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == one(manifests, "Deployment")["metadata"]["name"]


def test_network_policy_admits_alertmanager_prometheus_and_the_ingress_on_9095_only() -> None:
    policies = {m["metadata"]["name"]: m for m in of_kind(render(full_values()), "NetworkPolicy")}
    receiver = policies["jr-journey-receiver"]
    assert receiver["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = receiver["spec"]["ingress"]
    assert rule["ports"] == [{"port": 9095, "protocol": "TCP"}]
    pods = [peer["podSelector"]["matchLabels"] for peer in rule["from"] if "podSelector" in peer]
    assert {p["app.kubernetes.io/name"] for p in pods} == {
        "alertmanager",
        "prometheus",
        "ingress-nginx",
    }
    assert {} not in rule["from"]
    assert "jr-journey-receiver-redis" in policies


def test_prometheus_rule_is_deploy_alerting_rules() -> None:
    assert (CHART / "files" / "alerting-rules.yaml").read_bytes() == ALERTING_RULES.read_bytes()
    rule = one(render({"prometheusRule": {"enabled": True}}), "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTING_RULES.read_text())["groups"]


# --- the rendered config passes the receiver's own check --------------------------------


def run_check(
    files: dict[str, str], tmp_path: Path, env_names: Iterable[str] = SECRET_ENV
) -> subprocess.CompletedProcess[str]:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    env = {**os.environ, **{var: f"test-{var.lower()}" for var in env_names}}
    env["REDIS_URL"] = "redis://127.0.0.1:6379/0"
    exe = Path(sys.executable).with_name("journey-receiver")
    return subprocess.run(
        [str(exe), "check", "--config", str(tmp_path / "receiver.yaml")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize(
    "values",
    [{}, full_values(), {"journeys": yaml.safe_load(EXAMPLE_JOURNEYS.read_text())}],
    ids=["default", "full", "example-journeys"],
)
def test_the_rendered_config_passes_journey_receiver_check(
    values: dict[str, Any], tmp_path: Path
) -> None:
    manifests = render(values)
    files = {**configmap(manifests, "-receiver"), **configmap(manifests, "-journeys")}
    done = run_check(files, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def readme_values() -> list[dict[str, Any]]:
    """The values examples of the chart's README (its yaml blocks), as a reader pastes them."""
    blocks = re.finditer(
        r"^( *)```yaml\n(.*?)^\1```$", (CHART / "README.md").read_text(), re.M | re.S
    )
    return [yaml.safe_load(textwrap.dedent(block[2])) for block in blocks]


@pytest.mark.parametrize("values", readme_values(), ids=lambda values: "+".join(values))
def test_the_values_examples_of_the_readme_pass_the_config_check_of_their_pods(
    values: dict[str, Any], tmp_path: Path
) -> None:
    # The init container's check reads each ${VAR} from the environment the chart gives it
    # (its Secret's keys and extraEnv), and nothing else: a ${VAR} an example names without
    # giving it would keep the pods from starting.
    manifests = render(values)
    (check,) = one(manifests, "Deployment")["spec"]["template"]["spec"]["initContainers"]
    files = {**configmap(manifests, "-receiver"), **configmap(manifests, "-journeys")}
    done = run_check(files, tmp_path, [env["name"] for env in check["env"]])
    assert done.returncode == 0, done.stdout + done.stderr


def test_journey_receiver_check_rejects_a_rendered_config_routing_to_a_disabled_sink(
    tmp_path: Path,
) -> None:
    manifests = render({"routing": {"slack": ["P1"]}})
    files = {**configmap(manifests, "-receiver"), **configmap(manifests, "-journeys")}
    done = run_check(files, tmp_path)
    assert done.returncode == 1
    assert "slack" in done.stdout + done.stderr


# --- the journeys' KPI rules (journey-receiver rules) as a second PrometheusRule ------------


def kpi_rules() -> str:
    from receiver.config import load_journeys
    from receiver.rules import rules_document, to_yaml

    return to_yaml(rules_document(load_journeys(EXAMPLE_JOURNEYS)))


def journey_rule(values: dict[str, Any]) -> Manifest:
    (rule,) = [
        m
        for m in of_kind(render(values), "PrometheusRule")
        if m["metadata"]["name"] == "jr-journey-receiver-journeys"
    ]
    return rule


def test_kpi_rules_are_off_by_default_and_without_prometheus_rule_enabled() -> None:
    for values in ({}, {"prometheusRule": {"journeyRules": kpi_rules()}}):
        assert of_kind(render(values), "PrometheusRule") == []


def test_kpi_rules_from_set_file_render_as_printed_labels_and_templates_untouched(
    tmp_path: Path,
) -> None:
    text = kpi_rules()
    values = {
        "prometheusRule": {"enabled": True, "labels": {"release": "kps"}, "journeyRules": text}
    }
    rule = journey_rule(values)
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert rule["spec"]["groups"] == yaml.safe_load(text)["groups"]
    summaries = [
        r["annotations"]["summary"]
        for g in rule["spec"]["groups"]
        for r in g["rules"]
        if "alert" in r
    ]
    assert "{{ $labels.region }}" in summaries[0]
    # What the Prometheus Operator hands to Prometheus passes promtool.
    rendered = tmp_path / "rules.yaml"
    rendered.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    checked = subprocess.run(
        ["promtool", "check", "rules", str(rendered)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The receiver's own alerts stay in their PrometheusRule beside it.
    assert len(of_kind(render(values), "PrometheusRule")) == 2


def test_kpi_rules_as_a_mapping_lint_and_pass_yamllint() -> None:
    values = {"prometheusRule": {"enabled": True, "journeyRules": yaml.safe_load(kpi_rules())}}
    assert journey_rule(values)["spec"]["groups"] == yaml.safe_load(kpi_rules())["groups"]
    report = helm.lint(CHART, values, strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    (text,) = [
        t for n, t in render_files(values).items() if n.endswith("prometheusrule-journeys.yaml")
    ]
    problems = list(linter.run(text.lstrip("\n"), YamlLintConfig(YAMLLINT)))
    assert problems == []


@pytest.mark.parametrize(
    ("rules", "reason"),
    [
        ("groups: [unclosed", "prometheusRule.journeyRules is not YAML"),
        ("rules: []", "needs the groups list that `journey-receiver rules"),
    ],
)
def test_kpi_rules_that_are_not_a_rules_document_fail_the_render(rules: str, reason: str) -> None:
    with pytest.raises(helm.HelmError, match=reason):
        render({"prometheusRule": {"enabled": True, "journeyRules": rules}})


# --- the memory:// store is one pod's --------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {"config": {"store": {"url": "memory://"}}},
        {
            "config": {"store": {"url": "memory://"}},
            "replicaCount": 1,
            "autoscaling": {"enabled": True},
        },
    ],
    ids=["two-replicas", "autoscaling"],
)
def test_the_memory_store_is_refused_with_more_than_one_pod(values: dict[str, Any]) -> None:
    # Each pod would hold its own incidents: Alertmanager's sends split between them, and
    # each pages on its own for the same outage.
    with pytest.raises(helm.HelmRenderError, match=r"memory://.*replicaCount: 1"):
        render(values)


def test_the_memory_store_renders_for_one_pod_and_passes_check(tmp_path: Path) -> None:
    manifests = render({"config": {"store": {"url": "memory://"}}, "replicaCount": 1})
    receiver = yaml.safe_load(configmap(manifests, "-receiver")["receiver.yaml"])
    assert receiver["store"]["url"] == "memory://"
    files = {**configmap(manifests, "-receiver"), **configmap(manifests, "-journeys")}
    done = run_check(files, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_memory_store_is_replaced_not_rolled() -> None:
    # A rolling update would run the new pod beside the old one, each with incidents of its
    # own: the overlap the replica check forbids, at every upgrade.
    manifests = render({"config": {"store": {"url": "memory://"}}, "replicaCount": 1})
    deployment = one(manifests, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)
    assert one(render(), "Deployment")["spec"]["strategy"]["type"] == "RollingUpdate"


# --- secrets and files beyond the chart's five: extraEnv, extraVolumes ----------------------


def test_more_secrets_and_a_redis_ca_reach_the_receiver_and_its_config_check() -> None:
    # A Redis with a private CA (rediss://...?ssl_ca_certs=), tokens for the admin and read
    # roles, a journey's own PagerDuty key: each from a Secret, none in a ConfigMap.
    values = {
        "config": {
            "server": {
                "auth": {
                    "admin_bearer_tokens": ["${ADMIN_TOKEN}"],
                    "read_bearer_tokens": ["${READ_TOKEN}"],
                }
            }
        },
        "extraEnv": [
            {
                "name": name,
                "valueFrom": {"secretKeyRef": {"name": "jr-more", "key": name.lower()}},
            }
            for name in ("ADMIN_TOKEN", "READ_TOKEN", "PD_KEY_PAYMENTS")
        ],
        "extraVolumes": [{"name": "redis-tls", "secret": {"secretName": "redis-tls"}}],
        "extraVolumeMounts": [
            {"name": "redis-tls", "mountPath": "/etc/redis-tls", "readOnly": True}
        ],
    }
    manifests = render(values)
    spec = one(manifests, "Deployment")["spec"]["template"]["spec"]
    for container in spec["initContainers"] + spec["containers"]:
        refs = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in container["env"]}
        assert refs["ADMIN_TOKEN"] == {"name": "jr-more", "key": "admin_token"}, container["name"]
        assert refs["PD_KEY_PAYMENTS"] == {"name": "jr-more", "key": "pd_key_payments"}
        assert "WEBHOOK_TOKEN" in refs and "REDIS_URL" in refs
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts["/etc/redis-tls"] == "redis-tls", container["name"]
        assert mounts["/etc/journey-receiver"] == "config"
    assert {"name": "redis-tls", "secret": {"secretName": "redis-tls"}} in spec["volumes"]
    for manifest in manifests:
        kubernetes_validate.validate(manifest, KUBE_VERSION, strict=True)
    receiver = configmap(manifests, "-receiver")["receiver.yaml"]
    assert "${ADMIN_TOKEN}" in receiver and "jr-more" not in receiver


def test_extra_env_entries_are_typed_by_the_schema() -> None:
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(
            chart.merge_values({"extraEnv": [{"name": "JIRA_USER", "value": "a"}]})
        )
        for bad in ({"extraEnv": [{"value": "no name"}]}, {"extraVolumeMounts": [{"name": "x"}]}):
            with pytest.raises(helm.HelmValuesError):
                chart.validate_schema(chart.merge_values(bad))


# --- /metrics behind a read token ------------------------------------------------------------


def test_the_service_monitor_sends_a_read_token_when_metrics_need_one() -> None:
    credentials = {"name": "journey-receiver-secrets", "key": "read-token"}
    values = {
        "config": {
            "server": {
                "auth": {"read_bearer_tokens": ["${READ_TOKEN}"], "metrics_need_read_token": True}
            }
        },
        "serviceMonitor": {
            "enabled": True,
            "authorization": {"type": "Bearer", "credentials": credentials},
        },
    }
    (endpoint,) = one(render(values), "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["authorization"] == {"type": "Bearer", "credentials": credentials}
    # Without one, every scrape would be a 401 and the receiver unmonitored.
    del values["serviceMonitor"]["authorization"]
    with pytest.raises(helm.HelmRenderError, match=r"metrics_need_read_token.*authorization"):
        render(values)
    assert (
        "authorization"
        not in one(render({"serviceMonitor": {"enabled": True}}), "ServiceMonitor")["spec"][
            "endpoints"
        ][0]
    )


# --- from outside: the Ingress -----------------------------------------------------------------


INGRESS = {
    "enabled": True,
    "className": "nginx",
    "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
    "hosts": ["journeys.example.com"],
    "tls": [{"secretName": "journeys-tls", "hosts": ["journeys.example.com"]}],
}
READ_TOKENS = {"server": {"auth": {"read_bearer_tokens": ["${READ_TOKEN}"]}}}


def receiver_paths() -> dict[str, str]:
    """One concrete request path per route of the receiver, and whose route it is: the
    API's (``api``), an inbound webhook's (``inbound``) or a page's (``page``)."""
    from starlette.routing import Mount

    from receiver import api
    from receiver.web import routes as web

    def sample(route: Any) -> str:
        path = str(route.path).replace("{incident_id}", "x").replace("{action_id}", "y")
        return f"{path}/style.css" if isinstance(route, Mount) else path

    paths = {
        sample(r): "inbound" if str(r.path).startswith("/inbound/") else "api" for r in api.routes
    }
    paths.update({sample(r): "page" for r in web.routes})
    return paths


def routed(ingress: Manifest, path: str) -> bool:
    """Whether the Ingress sends ``path`` to the receiver (Exact, or Prefix by path element)."""
    for rule in ingress["spec"]["rules"]:
        for p in rule["http"]["paths"]:
            prefix = p["path"].rstrip("/")
            if p["pathType"] == "Exact" and path == p["path"]:
                return True
            if p["pathType"] == "Prefix" and (path == prefix or path.startswith(prefix + "/")):
                return True
    return False


def test_the_ingress_is_off_by_default() -> None:
    assert of_kind(render(), "Ingress") == []


def test_the_ingress_routes_the_inbound_webhooks_and_the_pages_only() -> None:
    manifests = render({"ingress": INGRESS, "config": READ_TOKENS})
    ingress = one(manifests, "Ingress")
    kubernetes_validate.validate(ingress, KUBE_VERSION, strict=True)
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["metadata"]["annotations"] == INGRESS["annotations"]
    assert ingress["spec"]["tls"] == INGRESS["tls"]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "journeys.example.com"
    service = one(manifests, "Service")["metadata"]["name"]
    for p in rule["http"]["paths"]:
        assert p["backend"] == {"service": {"name": service, "port": {"name": "http"}}}
    # Everything is served on one port: the paths alone keep Alertmanager's webhook, the
    # API, /-/reload and /metrics inside the cluster.
    paths = receiver_paths()
    assert {"/webhook/alertmanager", "/metrics", "/-/reload", "/inbound/slack/interactions"} <= set(
        paths
    )
    assert {p: w for p, w in paths.items() if routed(ingress, p)} == {
        p: w for p, w in paths.items() if w != "api"
    }


def test_the_ingress_takes_its_own_paths_and_any_host() -> None:
    values = {
        "ingress": {"enabled": True, "paths": [{"path": "/", "pathType": "Prefix"}]},
        "config": READ_TOKENS,
    }
    ingress = one(render(values), "Ingress")
    kubernetes_validate.validate(ingress, KUBE_VERSION, strict=True)
    (rule,) = ingress["spec"]["rules"]
    assert "host" not in rule
    assert "ingressClassName" not in ingress["spec"]
    assert all(routed(ingress, p) for p in receiver_paths())
    with helm.Chart.load(CHART) as chart:
        for bad in (
            {"ingress": {"paths": []}},
            {"ingress": {"paths": [{"path": "inbound", "pathType": "Prefix"}]}},
            {"ingress": {"paths": [{"path": "/inbound", "pathType": "Glob"}]}},
            {"ingress": {"hosts": ["Not A Host"]}},
        ):
            with pytest.raises(helm.HelmValuesError):
                chart.validate_schema(chart.merge_values(bad))


def test_the_network_policy_admits_the_ingress_controller_when_there_is_an_ingress() -> None:
    def peers(values: dict[str, Any]) -> list[str]:
        policy = one(render(values), "NetworkPolicy")  # no in-cluster Redis: no second one
        (rule,) = policy["spec"]["ingress"]
        return [p["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for p in rule["from"]]

    assert "ingress-nginx" not in peers({"networkPolicy": {"enabled": True}})
    assert "ingress-nginx" in peers(
        {"networkPolicy": {"enabled": True}, "ingress": INGRESS, "config": READ_TOKENS}
    )


def test_an_ingress_to_the_pages_needs_read_tokens() -> None:
    # Without read tokens reads are open, and the pages would show every incident (alert
    # text, owners, revenue at risk) to whoever finds the host.
    with pytest.raises(
        helm.HelmRenderError,
        match=r"ingress.paths .* route the pages or the API.s reads.*read_bearer_tokens",
    ):
        render({"ingress": INGRESS})
    inbound_only = {**INGRESS, "paths": [{"path": "/inbound", "pathType": "Prefix"}]}
    assert of_kind(render({"ingress": inbound_only}), "Ingress")
    from_a_file = {"server": {"auth": {"read_bearer_tokens_file": "/etc/jr/read-tokens"}}}
    assert of_kind(render({"ingress": INGRESS, "config": from_a_file}), "Ingress")


def test_an_ingress_routing_only_what_reads_nothing_needs_no_read_tokens() -> None:
    # The README's CI outside the cluster posts events with a write token, and an uptime
    # check asks /healthz: neither shows an incident, so open reads stay unrouted.
    paths = [
        {"path": "/inbound", "pathType": "Prefix"},
        {"path": "/api/v1/events", "pathType": "Exact"},
        {"path": "/healthz", "pathType": "Exact"},
        {"path": "/readyz", "pathType": "Exact"},
    ]
    ingress = one(render({"ingress": {**INGRESS, "paths": paths}}), "Ingress")
    (rule,) = ingress["spec"]["rules"]
    assert [p["path"] for p in rule["http"]["paths"]] == [p["path"] for p in paths]
    # A path that reaches a read is still refused, and said by itself.
    api = [*paths, {"path": "/api/v1/incidents", "pathType": "Prefix"}]
    with pytest.raises(helm.HelmRenderError, match=r"ingress.paths \[/api/v1/incidents\] "):
        render({"ingress": {**INGRESS, "paths": api}})


# --- rolling updates: no request in flight refused -----------------------------------------------


def test_a_prestop_sleep_keeps_the_pod_serving_until_the_endpoints_drop_it() -> None:
    spec = one(render(), "Deployment")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["lifecycle"] == {"preStop": {"exec": {"command": ["sleep", "5"]}}}
    # The grace period covers the sleep, then the drain after SIGTERM.
    assert spec["terminationGracePeriodSeconds"] > 5 + 20
    spec = one(render({"shutdown": {"preStopSleepSeconds": 0}}), "Deployment")["spec"]
    assert "lifecycle" not in spec["template"]["spec"]["containers"][0]
    with pytest.raises(helm.HelmRenderError, match=r"preStopSleepSeconds.*drainSeconds"):
        render({"shutdown": {"preStopSleepSeconds": 10}})


# --- secrets: a rotation reaches the pods -------------------------------------------------------


def test_a_changed_chart_made_secret_rolls_the_pods() -> None:
    trial = {"secrets": {"create": True, "values": {"webhookToken": "one"}}}
    base = checksums(trial)
    assert "checksum/secret" in base
    trial["secrets"]["values"] = {"webhookToken": "two"}
    assert checksums(trial)["checksum/secret"] != base["checksum/secret"]
    # An existing Secret is not the chart's to read: the README says how it rolls.
    assert "checksum/secret" not in checksums({})


def test_deployment_annotations_are_on_the_deployment_for_a_reloader() -> None:
    reload = {"secret.reloader.stakater.com/reload": "journey-receiver-secrets"}
    deployment = one(render({"deploymentAnnotations": reload}), "Deployment")
    assert deployment["metadata"]["annotations"] == reload
    assert "annotations" not in one(render(), "Deployment")["metadata"]


# --- no values that contradict each other ---------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"podDisruptionBudget": {"minAvailable": 2}}, r"minAvailable \(2\).*replicas \(2\)"),
        (
            {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 2}},
            r"minReplicas \(3\).*maxReplicas \(2\)",
        ),
    ],
    ids=["pdb-blocks-every-drain", "hpa-min-above-max"],
)
def test_replica_counts_that_contradict_each_other_fail_the_render(
    values: dict[str, Any], reason: str
) -> None:
    with pytest.raises(helm.HelmRenderError, match=reason):
        render(values)
