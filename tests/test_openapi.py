"""The OpenAPI document is fit for client generators (issue 14): a valid
document, a stable operationId on every operation, unique component names,
errors declared as problems, security as the views' own marks say, examples
that match their schemas; and a client generated from it covers every
operation."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from api import create_app
from api.identity import PUBLIC, has_mark
from authz.runtime import close_runtime
from tests.support.backend import BACKEND

METHODS = ("get", "post", "put", "patch", "delete")
PROBLEM = "application/problem+json"


@pytest.fixture
def spec(api) -> dict[str, Any]:
    return api.get("/openapi.json").json


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(spec: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = spec
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_the_document_is_valid_openapi(spec):
    validate(spec)


def test_every_operation_has_a_unique_snake_case_operation_id(spec):
    ids = [op.get("operationId") for _, _, op in operations(spec)]
    assert len(ids) >= 67
    assert all(ids), [f"{m} {p}" for p, m, op in operations(spec) if not op.get("operationId")]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)+", i) for i in ids), ids


def test_component_names_are_unique_and_every_ref_resolves(settings_overrides, spec):
    # apispec warns, and renames one of them, when two schemas share a name.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        app = create_app(settings_overrides)
        try:
            app.test_client().get("/openapi.json")
        finally:
            close_runtime(app.extensions["authz"])
    assert not [w for w in caught if "Multiple schemas resolved" in str(w.message)]
    for ref in set(refs(spec)):
        resolve(spec, ref)  # raises KeyError if dangling


def test_no_inline_enum_takes_the_name_of_a_component(spec):
    """Generators name an inline enum after its schema and property (Line.level →
    LineLevel): two schemas once collided that way and a generated client lost
    POST /v1/subscription-requests."""
    schemas = spec["components"]["schemas"]
    for name, schema in schemas.items():
        for prop, definition in schema.get("properties", {}).items():
            if "enum" in definition:
                generated = name + "".join(part.title() for part in prop.split("_"))
                assert generated not in schemas, f"{name}.{prop} → {generated}"


def test_errors_are_declared_as_problems(spec):
    assert set(spec["components"]["schemas"]["Problem"]["properties"]) >= {
        "type",
        "title",
        "status",
        "code",
        "detail",
    }
    for path, method, op in operations(spec):
        for status, declared in op["responses"].items():
            response = resolve(spec, declared["$ref"]) if "$ref" in declared else declared
            if status == "default" or int(status) >= 400:
                assert list(response["content"]) == [PROBLEM], (method, path, status)
                schema = response["content"][PROBLEM]["schema"]
                assert schema == {"$ref": "#/components/schemas/Problem"}


def test_every_operation_declares_the_errors_its_inputs_can_cause(spec):
    for path, method, op in operations(spec):
        statuses = set(op["responses"])
        where = f"{method.upper()} {path}"
        invalid = "400" if path.startswith("/access/") else "422"  # AuthZEN: 400
        if "requestBody" in op:
            assert {"400", "413", invalid} <= statuses, where
        if any(p["in"] == "query" for p in op.get("parameters", [])):
            assert invalid in statuses, where
        if "{" in path:
            assert "404" in statuses, where
        # gunicorn's limits, answered as problems: any URL can be too long
        # (the fuzz run found an undeclared 414), any request too many headers.
        assert {"414", "431"} <= statuses, where


def test_security_follows_the_public_mark(app, spec):
    """`security: []` exactly on the views marked @public, 401 on every other
    operation: both read from the one mark the service enforces."""
    documented = {(method, path): op for path, method, op in operations(spec)}
    seen = 0
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            op = documented.get((method.lower(), path))
            if op is None:
                continue  # the document itself, its docs page and assets
            seen += 1
            if has_mark(view, method, PUBLIC):
                assert op.get("security") is not None, (method, path)
                assert {} in op["security"] or op["security"] == [], (method, path)
            else:
                assert "security" not in op, (method, path)  # the global bearer
                assert "401" in op["responses"], (method, path)
    assert seen == len(documented)
    public = {op["operationId"] for _, _, op in operations(spec) if "security" in op}
    assert public >= {
        "log_in",
        "create_account",
        "activate_account",
        "resend_activation_email",
        "reactivate_own_account",
        "log_in_technical_user",
        "check_liveness",
        "check_readiness",
        "get_authzen_configuration",
    }


def _validator(spec: dict[str, Any]):
    registry = Registry().with_resource("urn:spec", DRAFT202012.create_resource(spec))

    def absolute(node: Any) -> Any:  # the document's "#/…" refs, made absolute
        if isinstance(node, dict):
            return {k: "urn:spec" + v if k == "$ref" else absolute(v) for k, v in node.items()}
        return [absolute(v) for v in node] if isinstance(node, list) else node

    def check(schema: dict[str, Any], example: Any) -> list[str]:
        validator = Draft202012Validator(absolute(schema), registry=registry)
        return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(example)]

    return check


def test_every_body_and_every_json_answer_has_an_example_that_fits(spec):
    check = _validator(spec)
    missing, wrong = [], []
    for path, method, op in operations(spec):
        where = f"{method.upper()} {path}"
        bodies = [("request", op["requestBody"]["content"])] if "requestBody" in op else []
        for status, response in op["responses"].items():
            if status.startswith("2"):
                bodies.append((status, response.get("content", {})))
        for what, content in bodies:
            media = content.get("application/json")
            if media is None or media.get("schema", {}).get("type") == "object":
                continue  # not JSON, or a free-form object (the review report)
            if "example" not in media:
                missing.append(f"{where} {what}")
                continue
            errors = check(media["schema"], media["example"])
            if errors:
                wrong.append(f"{where} {what}: {errors}")
    assert not missing, missing
    assert not wrong, wrong


def test_every_request_example_is_accepted_by_the_schema_it_documents(api, spec):
    """Each body example, sent to its operation (ids in the path: 1), is read
    without a schema error: whatever the domain then answers (404, 409…), no
    400 nor a 422 `validation_failed`. A fresh person sends each, as some
    examples log in, deactivate or change things."""
    sent = 0
    for path, method, op in operations(spec):
        example = op.get("requestBody", {}).get("content", {}).get("application/json", {})
        if "example" not in example:
            continue
        who = api.person(f"sender{sent}@example.org")
        answer = getattr(who, method)(re.sub(r"{[^}]+}", "1", path), json=example["example"])
        assert answer.status_code != 400, (method, path, answer.json)
        assert answer.json is None or answer.json.get("code") != "validation_failed", (
            method,
            path,
            answer.json,
        )
        sent += 1
    assert sent >= 35


def test_the_constraints_the_service_enforces_are_declared(spec):
    schemas = spec["components"]["schemas"]
    login = schemas["Login"]["properties"]
    assert login["login_email"]["maxLength"] == 254
    assert schemas["StructureCreate"]["properties"]["identifier_type"]["enum"]
    assert schemas["LineLevelChange"]["properties"]["level"]["enum"] == ["consult", "modify"]
    structure_id = next(p for p in spec["paths"]["/v1/structures/{structure_id}"]["parameters"])[
        "schema"
    ]
    assert structure_id == {
        "type": "integer",
        "format": "int32",
        "minimum": 1,
        "maximum": 2**31 - 1,
    }


# --- a generated client ----------------------------------------------------------


GENERATED = "generated_client"


def _generator() -> str | None:
    found = shutil.which("openapi-python-client", path=str(Path(sys.executable).parent))
    return found or shutil.which("openapi-python-client")


@pytest.mark.skipif(
    BACKEND == "postgresql", reason="the document is the same on both: runs in the SQLite pass"
)
def test_a_generated_client_covers_every_operation(spec, tmp_path, monkeypatch):
    """openapi-python-client (a test extra) generates a client from the document
    without a warning; it imports, with a function for every operationId."""
    generator = _generator()
    if generator is None:
        pytest.skip("openapi-python-client is not installed: pip install -e '.[test]'")

    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(spec))
    config = tmp_path / "config.yaml"
    config.write_text("post_hooks: []\n")  # no formatter run on the generated code
    # Not `authz_client`: that is the hand-written client (clients/python),
    # installed in the same environment, whose import finder would win.
    package = tmp_path / GENERATED
    run = subprocess.run(
        [
            generator,
            "generate",
            "--path",
            str(document),
            "--meta",
            "none",
            "--output-path",
            str(package),
            "--config",
            str(config),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "warning" not in output.lower(), output

    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module(GENERATED)
    missing = []
    for _, _, op in operations(spec):
        module_name = f"{GENERATED}.api.{op['tags'][0]}.{op['operationId']}"
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            missing.append(module_name)
            continue
        if not callable(getattr(module, "sync_detailed", None)):
            missing.append(f"{module_name}.sync_detailed")
    assert not missing, missing
    for name in list(sys.modules):
        if name == GENERATED or name.startswith(f"{GENERATED}."):
            del sys.modules[name]
