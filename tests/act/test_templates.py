"""The ready-made action templates of docs/actions.md: each loads with the real config
loader and models, and renders to the request its vendor documents."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import pytest

from receiver.act.template import MissingValues, fields, strings
from receiver.act.webhook import render_body, render_headers, render_url, sign
from receiver.config.actions import WebhookRun
from receiver.config.journeys_yaml import Action
from receiver.config.source import read_document

DOC = Path(__file__).parents[2] / "docs" / "actions.md"

ENV = {
    "ACTIONS_WEBHOOK_SECRET": "whsec-test-5151",
    "DEPLOY_TOKEN": "deploy-token-1111",
    "GITHUB_DISPATCH_TOKEN": "github_pat_test_2222",
    "ARGOCD_TOKEN": "argocd-token-3333",
    "UNLEASH_ADMIN_TOKEN": "*:*.unleash-token-4444",
    "LAUNCHDARKLY_API_TOKEN": "api-launchdarkly-5555",
}
VALUES = {
    "service": "payment-service",
    "version": "v42",
    "previous_version": "v41",
    "incident_id": "inc-42",
    "incident_url": "https://receiver.example.com/incidents/inc-42",
    "journey": "checkout",
    "priority": "P1",
    "region": "eu-west-1",
}
# What every run has, and what only an action about a change has.
ALWAYS = {"incident_id", "journey", "action", "priority"}
OF_A_CHANGE = {"service", "version", "previous_version"}
# One section per template, by the start of its heading, and the action ids it holds.
SECTIONS = {
    "GitHub Actions": {"rollback-workflow"},
    "Argo CD: sync": {"argocd-sync-previous"},
    "Argo Rollouts": {"rollout-abort", "rollout-abort-argocd-3-0"},
    "Unleash": {"unleash-new-checkout-off"},
    "LaunchDarkly": {"launchdarkly-new-checkout-off"},
}

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


def sections() -> dict[str, str]:
    """The doc's level-2 sections, by heading."""
    parts = re.split(r"^## (.+)$", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def action_blocks(text: str) -> list[str]:
    """The ```yaml blocks of ``text`` that are journeys.yaml ``actions:`` lists."""
    return [
        body
        for lang, body in _FENCE.findall(text)
        if lang == "yaml" and re.search(r"^actions:", body, re.MULTILINE)
    ]


def all_blocks() -> list[str]:
    return action_blocks(DOC.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Sent:
    """A run's request as the executor would build it, before its own two headers."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def path(self) -> str:
        return urlsplit(self.url).path


def load(block: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Action]:
    """The block's actions, read as the config loader reads journeys.yaml (``${ENV}``
    expanded) and validated by the config models."""
    unknown = set(_ENV_REF.findall(block)) - set(ENV)
    assert not unknown, f"add {unknown} to ENV, or fix the template"
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "journeys.yaml"
    path.write_text(block, encoding="utf-8")
    doc = read_document(path)
    assert doc.problems == []
    return [Action.model_validate(item) for item in doc.data["actions"]]


def webhook(action: Action) -> WebhookRun:
    assert action.run is not None, f"{action.id} has no run"
    return action.run.webhook


def send(action: Action, values: Mapping[str, str] = VALUES) -> Sent:
    """Fill the action's templates the way WebhookExecutor.run does."""
    run = webhook(action)
    values = {"action": action.id or action.title, **values}
    body, content_type = render_body(run.body, values)
    url = render_url(run.url, values)
    headers = render_headers(
        {name: value.get_secret_value() for name, value in run.headers.items()}, values
    )
    if content_type is not None and not any(h.lower() == "content-type" for h in headers):
        headers["Content-Type"] = content_type
    return Sent(run.method, url, headers, body)


@pytest.fixture
def templates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Action]:
    found: dict[str, Action] = {}
    for block in all_blocks():
        for action in load(block, tmp_path, monkeypatch):
            assert action.id is not None, f"give {action.title!r} an id"
            assert action.id not in found, f"two templates named {action.id}"
            found[action.id] = action
    return found


def test_one_section_per_template() -> None:
    by_heading = sections()
    for start, ids in SECTIONS.items():
        headings = [heading for heading in by_heading if heading.startswith(start)]
        assert len(headings) == 1, f"one section starting {start!r}, found {headings}"
        text = by_heading[headings[0]]
        named = set(re.findall(r"^  - id: (\S+)$", "".join(action_blocks(text)), re.MULTILINE))
        assert named == ids, headings[0]


@pytest.mark.parametrize("index", range(len(all_blocks())))
def test_every_block_loads_and_renders(
    index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for action in load(all_blocks()[index], tmp_path, monkeypatch):
        run = webhook(action)
        # Secrets come from the environment, never from the file.
        assert run.secret.get_secret_value() == ENV["ACTIONS_WEBHOOK_SECRET"]
        auth = run.headers.get("Authorization")
        assert auth is None or any(token in auth.get_secret_value() for token in ENV.values())
        sent = send(action)
        assert urlsplit(sent.url).scheme == "https"
        assert urlsplit(sent.url).netloc == urlsplit(run.url).netloc
        assert "{" not in sent.url
        assert all("{" not in value for value in sent.headers.values())
        if sent.body and sent.headers.get("Content-Type", "").startswith("application/json"):
            sent.json()  # valid JSON


def test_github_workflow_dispatch(templates: dict[str, Action]) -> None:
    sent = send(templates["rollback-workflow"])
    assert sent.method == "POST"
    assert urlsplit(sent.url).netloc == "api.github.com"
    assert re.fullmatch(r"/repos/[^/]+/[^/]+/actions/workflows/[^/]+\.ya?ml/dispatches", sent.path)
    assert sent.headers["Authorization"] == f"Bearer {ENV['GITHUB_DISPATCH_TOKEN']}"
    assert sent.headers["Accept"] == "application/vnd.github+json"
    assert sent.headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert sent.headers["Content-Type"] == "application/json"
    body = sent.json()
    assert set(body) == {"ref", "inputs"}
    assert body["ref"] == "main"
    inputs = body["inputs"]
    assert all(isinstance(value, str) for value in inputs.values())
    assert inputs["service"] == "payment-service"
    assert inputs["to_version"] == "v41"
    # The dedupe input is the same on every attempt: one incident, one action.
    assert inputs["dedupe_key"] == "inc-42:rollback-workflow"


def test_rollbacks_are_refused_without_a_previous_version(
    templates: dict[str, Action],
) -> None:
    unknown = {name: value for name, value in VALUES.items() if name != "previous_version"}
    for action_id in ("rollback-workflow", "argocd-sync-previous"):
        with pytest.raises(MissingValues) as caught:
            send(templates[action_id], unknown)
        assert caught.value.names == ["previous_version"]
        assert templates[action_id].when.change_type is not None


def test_argocd_sync_names_the_app_and_the_revision(templates: dict[str, Action]) -> None:
    sent = send(templates["argocd-sync-previous"])
    assert sent.method == "POST"
    assert sent.path == "/api/v1/applications/payment-service/sync"
    assert sent.headers["Authorization"] == f"Bearer {ENV['ARGOCD_TOKEN']}"
    body = sent.json()
    assert body["revision"] == "v41"
    assert body["prune"] is False
    assert body["dryRun"] is False
    # A label cannot leave its path segment.
    odd = send(templates["argocd-sync-previous"], {**VALUES, "service": "a/../b?x=1"})
    assert odd.path == "/api/v1/applications/a%2F..%2Fb%3Fx%3D1/sync"
    assert urlsplit(odd.url).query == ""


def test_rollout_abort_v2(templates: dict[str, Action]) -> None:
    sent = send(templates["rollout-abort"])
    assert sent.method == "POST"
    assert sent.path == "/api/v1/applications/payment-service/resource/actions/v2"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.json() == {
        "name": "payment-service",
        "namespace": "shop",
        "resourceName": "payment-service",
        "group": "argoproj.io",
        "version": "v1alpha1",
        "kind": "Rollout",
        "action": "abort",
    }


def test_rollout_abort_before_argocd_3_1(templates: dict[str, Action]) -> None:
    sent = send(templates["rollout-abort-argocd-3-0"])
    assert sent.method == "POST"
    assert sent.path == "/api/v1/applications/payment-service/resource/actions"
    query = {name: values for name, values in parse_qs(urlsplit(sent.url).query).items()}
    assert query == {
        "namespace": ["shop"],
        "resourceName": ["payment-service"],
        "group": ["argoproj.io"],
        "version": ["v1alpha1"],
        "kind": ["Rollout"],
    }
    assert sent.body == b'"abort"'
    assert sent.json() == "abort"
    assert sent.headers["Content-Type"] == "application/json"


def test_unleash_turns_the_flag_off(templates: dict[str, Action]) -> None:
    sent = send(templates["unleash-new-checkout-off"])
    assert sent.method == "POST"
    assert re.fullmatch(
        r"/api/admin/projects/[^/]+/features/[^/]+/environments/[^/]+/off", sent.path
    )
    assert sent.headers["Authorization"] == ENV["UNLEASH_ADMIN_TOKEN"]  # no Bearer prefix
    assert sent.body == b""
    assert templates["unleash-new-checkout-off"].when.change_type == "feature_flag"


def test_launchdarkly_semantic_patch(templates: dict[str, Action]) -> None:
    sent = send(templates["launchdarkly-new-checkout-off"])
    assert sent.method == "PATCH"
    assert urlsplit(sent.url).netloc == "app.launchdarkly.com"
    assert re.fullmatch(r"/api/v2/flags/[^/]+/[^/]+", sent.path)
    assert sent.headers["Authorization"] == ENV["LAUNCHDARKLY_API_TOKEN"]  # no Bearer prefix
    assert (
        sent.headers["Content-Type"] == "application/json; domain-model=launchdarkly.semanticpatch"
    )
    body = sent.json()
    assert isinstance(body["environmentKey"], str)
    assert body["environmentKey"]
    assert body["instructions"] == [{"kind": "turnFlagOff"}]
    assert "inc-42" in body["comment"]


def test_labels_stay_data_in_json_bodies(templates: dict[str, Action]) -> None:
    hostile = '", "instructions": [{"kind": "turnFlagOn"}], "x": "'
    sent = send(templates["launchdarkly-new-checkout-off"], {**VALUES, "incident_id": hostile})
    body = sent.json()
    assert body["instructions"] == [{"kind": "turnFlagOff"}]
    assert hostile in body["comment"]
    sent = send(templates["rollback-workflow"], {**VALUES, "service": 'x"}, "ref": "evil'})
    assert sent.json()["ref"] == "main"


def test_the_documented_signature_check_accepts_the_receivers_signature(
    templates: dict[str, Action],
) -> None:
    snippets = [body for lang, body in _FENCE.findall(DOC.read_text()) if lang == "python"]
    assert len(snippets) == 1
    scope: dict[str, Any] = {}
    exec(snippets[0], scope)
    verified = cast(Callable[[bytes, bytes, str], bool], scope["verified"])
    secret = ENV["ACTIONS_WEBHOOK_SECRET"].encode()
    body = send(templates["launchdarkly-new-checkout-off"]).body
    signature = sign(secret, body)
    assert signature == "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    assert verified(secret, body, signature)
    assert not verified(secret, body + b" ", signature)
    assert not verified(b"another secret", body, signature)


def test_templates_name_only_values_a_run_has(templates: dict[str, Action]) -> None:
    """{incident_url} exists only with server.external_url, so no template relies on it;
    the change's fields only with when.change_type."""
    for action in templates.values():
        run = webhook(action)
        texts = [run.url, *(value.get_secret_value() for value in run.headers.values())]
        texts += list(strings(run.body)) if run.body is not None else []
        named = {name for text in texts for name in fields(text)}
        assert named <= ALWAYS | OF_A_CHANGE, action.id
        if named & OF_A_CHANGE:
            assert action.when.change_type is not None, action.id


@pytest.mark.parametrize("step", [".", ".."])
def test_a_value_that_is_a_path_step_is_refused_not_sent_elsewhere(step: str) -> None:
    # Percent-encoding leaves dots as they are, and a URL's path reads "/x/../y" as "/y".
    url = "https://deploy.example/api/services/{service}/rollback?by={who}"
    with pytest.raises(ValueError, match="path step"):
        render_url(url, {"service": step, "who": "auto"})
    # Dots within a value stay, as in any name.
    assert render_url(url, {"service": "a..b", "who": "auto"}) == (
        "https://deploy.example/api/services/a..b/rollback?by=auto"
    )
