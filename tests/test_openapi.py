"""The published API document (``receiver/openapi.json``, served at ``GET /openapi.json``):
valid OpenAPI 3.1, the same paths, methods and path parameters as the app's routes, and
request schemas that are the pydantic models' own.

The models' schemas are generated, never written by hand: after changing a model, run
``.venv/bin/python -m tests.test_openapi`` to rewrite them in the document, then review the
diff. Everything else in the document (paths, answers, the forms) is written by hand.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from schemathesis.specs.openapi.definitions import OPENAPI_31
from starlette.routing import Mount, Route

from receiver.alertmanager.silences import SilenceRequest
from receiver.app import create_app
from receiver.events import MAX_EVENTS_PER_REQUEST, ChangeEvent
from receiver.feedback import Feedback
from receiver.inbound import jira, pagerduty, slack
from receiver.incident import Incident
from receiver.outcomes.stats import Stats
from receiver.redrive import Redrive
from receiver.webhook import WebhookMessage
from tests.conftest import FakeClock
from tests.support.harness import harness, write_config

DOCUMENT = Path(str(resources.files("receiver").joinpath("openapi.json")))
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# (prefix, models): each group's schemas named "<prefix><Model>", so that the vendors'
# ``User`` and ``Event`` do not collide with each other or with ours.
MODELS: tuple[tuple[str, tuple[tuple[type[BaseModel], JsonSchemaMode], ...]], ...] = (
    (
        "",
        (
            (WebhookMessage, "validation"),
            (ChangeEvent, "validation"),
            (Feedback, "validation"),
            (SilenceRequest, "validation"),
            (Redrive, "validation"),
            (Incident, "serialization"),
            (Stats, "serialization"),
        ),
    ),
    ("PagerDuty", ((pagerduty.Envelope, "validation"),)),
    ("Jira", ((jira.Event, "validation"),)),
    ("Slack", ((slack.Interaction, "validation"),)),
)

# Which model each JSON request body is, by operationId.
REQUEST_MODELS = {
    "postAlertmanagerWebhook": "WebhookMessage",
    "postFeedback": "Feedback",
    "silenceIncident": "SilenceRequest",
    "redriveDeliveries": "Redrive",
    "inboundPagerDuty": "PagerDutyEnvelope",
    "inboundJira": "JiraEvent",
}
RESPONSE_MODELS = {"getIncident": "Incident", "getStats": "Stats"}


def model_schemas() -> dict[str, Any]:
    """The component schemas the pydantic models make, as the document must hold them."""
    schemas: dict[str, Any] = {}
    for prefix, models in MODELS:
        _, top = models_json_schema(models, ref_template=f"#/components/schemas/{prefix}{{model}}")
        schemas.update({prefix + name: schema for name, schema in top["$defs"].items()})
    return schemas


def json_of(model: str) -> dict[str, Any]:
    return {"application/json": {"$ref": f"#/components/schemas/{model}"}}


def load() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DOCUMENT.read_text())
    return document


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def app_routes() -> dict[tuple[str, str], set[str]]:
    """(path, method) -> path parameters, of every route the app serves. Starlette answers
    HEAD on every GET route by itself; the document leaves that implicit."""
    app = create_app(run_scheduler=False)
    served: dict[tuple[str, str], set[str]] = {}
    for route in app.routes:
        if isinstance(route, Route):
            for method in route.methods or ():
                if method != "HEAD":
                    served[route.path, method.lower()] = set(route.param_convertors)
        elif isinstance(route, Mount):
            # StaticFiles: any file below the mount, named by what follows it.
            served[route.path + "/{path}", "get"] = {"path"}
        else:
            raise AssertionError(f"a route of a kind this test does not know: {route!r}")
    return served


def test_the_document_is_valid_openapi_3_1() -> None:
    document = load()
    assert document["openapi"].startswith("3.1.")
    jsonschema.Draft202012Validator(OPENAPI_31).validate(document)
    for name, schema in document["components"]["schemas"].items():
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise AssertionError(f"components.schemas.{name}: {exc.message}") from exc
    ids = [op["operationId"] for _, _, op in operations(document)]
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def test_every_reference_resolves() -> None:
    document = load()
    text = json.dumps(document)
    for target in sorted(set(re.findall(r'"\$ref": "([^"]+)"', text))):
        node: Any = document
        assert target.startswith("#/"), target
        for part in target[2:].split("/"):
            assert part in node, f"{target} does not resolve"
            node = node[part]
    schemes = document["components"]["securitySchemes"]
    for path, method, operation in operations(document):
        for requirement in operation["security"]:
            assert set(requirement) <= set(schemes), f"{method} {path}: {requirement}"


def test_the_document_and_the_routes_match() -> None:
    documented = {
        (path, method): {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        for path, method, op in operations(load())
    }
    served = app_routes()
    assert sorted(set(served) - set(documented)) == [], "served but not in receiver/openapi.json"
    assert sorted(set(documented) - set(served)) == [], "documented but not served"
    for key, parameters in served.items():
        assert documented[key] == parameters, f"path parameters of {key}"
        assert set(re.findall(r"{(\w+)}", key[0])) == parameters


def test_request_and_response_schemas_are_the_models_own() -> None:
    document = load()
    schemas = document["components"]["schemas"]
    for name, schema in model_schemas().items():
        assert schemas.get(name) == schema, (
            f"components.schemas.{name} differs from its pydantic model: "
            "run .venv/bin/python -m tests.test_openapi and review the diff"
        )
    by_id = {op["operationId"]: op for _, _, op in operations(document)}
    for operation_id, model in REQUEST_MODELS.items():
        content = by_id[operation_id]["requestBody"]["content"]
        assert {media: c["schema"] for media, c in content.items()} == json_of(model)
    for operation_id, model in RESPONSE_MODELS.items():
        content = by_id[operation_id]["responses"]["200"]["content"]
        assert {media: c["schema"] for media, c in content.items()} == json_of(model)
    events = by_id["postChangeEvents"]["requestBody"]["content"]["application/json"]["schema"]
    one = {"$ref": "#/components/schemas/ChangeEvent"}
    assert events == {
        "oneOf": [
            one,
            {"type": "array", "items": one, "minItems": 1, "maxItems": MAX_EVENTS_PER_REQUEST},
        ]
    }
    slack_form = schemas["SlackForm"]["properties"]["payload"]
    assert slack_form["contentSchema"] == {"$ref": "#/components/schemas/SlackInteraction"}


def test_the_examples_fit_their_schemas() -> None:
    document = load()

    def check(where: str, schema: dict[str, Any], example: Any) -> None:
        # The components beside the schema, so that its "#/components/..." refs resolve.
        rooted = {**schema, "components": document["components"]}
        try:
            jsonschema.Draft202012Validator(rooted).validate(example)
        except jsonschema.ValidationError as exc:
            raise AssertionError(f"{where}: {exc.message}") from exc

    for path, method, operation in operations(document):
        for parameter in operation.get("parameters", []):
            if "example" in parameter:
                check(
                    f"{method} {path} {parameter['name']}",
                    parameter["schema"],
                    parameter["example"],
                )
        for media, content in operation.get("requestBody", {}).get("content", {}).items():
            if "example" in content:
                check(f"{method} {path} {media}", content["schema"], content["example"])
    slack = document["components"]["schemas"]["SlackForm"]["properties"]["payload"]
    for example in slack["examples"]:
        check("SlackForm.payload", slack["contentSchema"], json.loads(example))


def test_json_errors_have_one_shape_and_pages_answer_html() -> None:
    error = {"$ref": "#/components/schemas/Error"}
    for path, method, operation in operations(load()):
        for status, answer in operation["responses"].items():
            content = answer.get("content", {})
            if operation["tags"] == ["pages"] and path != "/static/{path}":
                assert set(content) <= {"text/html"}, f"{method} {path} {status}"
            elif status.startswith(("4", "5")):
                assert content == {"application/json": {"schema": error}}, (
                    f"{method} {path} {status}"
                )


def test_auth_in_the_document_is_what_the_routes_enforce() -> None:
    # The role each JSON operation needs, read from its security requirements.
    roles = {
        "readToken": "read",
        "writeToken": "write",
        "writeBasic": "write",
        "adminToken": "admin",
    }
    needed = {}
    for path, method, operation in operations(load()):
        if path.startswith("/api/") or path in ("/webhook/alertmanager", "/-/reload"):
            named = {roles[name] for req in operation["security"] for name in req}
            # Reads take any role's credential; writes and admin only their own.
            needed[method, path] = "read" if "read" in named else named.pop()
    assert needed == {
        ("post", "/webhook/alertmanager"): "write",
        ("post", "/api/v1/events"): "write",
        ("get", "/api/v1/incidents"): "read",
        ("get", "/api/v1/stats"): "read",
        ("get", "/api/v1/incidents/{incident_id}"): "read",
        ("post", "/api/v1/incidents/{incident_id}/feedback"): "write",
        ("post", "/api/v1/incidents/{incident_id}/silence"): "admin",
        ("get", "/api/v1/deliveries"): "read",
        ("post", "/api/v1/deliveries/redrive"): "admin",
        ("post", "/-/reload"): "admin",
    }


AUTH = """
server:
  auth:
    bearer_tokens: ["writer"]
    read_bearer_tokens: ["reader"]
"""


@pytest.mark.anyio
async def test_the_document_is_served_to_readers(tmp_path: Path, clock: FakeClock) -> None:
    async with harness(write_config(tmp_path, AUTH), clock) as rx:
        refused = await rx.client.get("/openapi.json")
        assert refused.status_code == 401
        assert refused.json() == {"error": "unauthorized: missing or wrong credentials"}
        for token in ("reader", "writer"):
            served = await rx.client.get(
                "/openapi.json", headers={"authorization": f"Bearer {token}"}
            )
            assert served.status_code == 200
            assert served.headers["content-type"] == "application/json"
            assert served.json() == load()


def rewrite_model_schemas() -> None:
    """Put the models' current schemas into the document, keeping everything else."""
    document = load()
    schemas = document["components"]["schemas"]
    schemas.update(model_schemas())
    document["components"]["schemas"] = dict(sorted(schemas.items()))
    DOCUMENT.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    rewrite_model_schemas()
    sys.stdout.write(f"rewrote the model schemas in {DOCUMENT}\n")
