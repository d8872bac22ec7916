"""No input gives a 500 (issue 10, point 3): strings holding NUL, lone
surrogates or, where a value is a single line, control characters are refused
with a 422 naming the field, on every operation of the OpenAPI document; ids
beyond the id columns' range are a 404 in a path and a 422 in a body or a query;
deeply nested JSON is a 400; and gunicorn's own refusals are problems."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from marshmallow import ValidationError

from api.inputs import JSON_DEPTH_MAX, IdConverter, nests_deeper, text_nests_at_most
from api.schemas import QuestionItem, QuestionSchema
from models import ID_MAX
from tests.support.api import VALID_SIRETS, Api
from tests.support.live import free_port

METHODS = ("get", "post", "put", "patch", "delete")
NUL, SURROGATE = "a\u0000b", "a\ud800b"
REFUSED = re.compile(r"NUL|surrogate|control character")
OUT_OF_RANGE = (ID_MAX + 1, 2**63, 2**64)


def problem(response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.get_data(True))
    assert response.mimetype == "application/problem+json"
    if code is not None:
        assert response.json["code"] == code, response.json
    return response.json


@pytest.fixture
def spec(api) -> dict[str, Any]:
    return api.get("/openapi.json").json


@pytest.fixture
def ada(api) -> Api:
    return api.person("ada@example.org")


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def schema_of(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def is_a(schema: dict[str, Any], kind: str) -> bool:
    kinds = schema.get("type")
    return kind == kinds or (isinstance(kinds, list) and kind in kinds)


def filled(
    spec: dict[str, Any], schema: dict[str, Any], leaf: Any, wanted, path: tuple = ()
) -> tuple[Any, list[tuple]]:
    """A value of `schema` where every leaf `wanted(schema)` accepts is `leaf`,
    other scalars left out; and the paths of those leaves (as marshmallow's
    errors name them)."""
    schema = schema_of(spec, schema)
    if wanted(schema):
        return leaf, [path]
    if is_a(schema, "array") and "items" in schema:
        item, paths = filled(spec, schema["items"], leaf, wanted, (*path, "0"))
        return ([item], paths) if paths else (None, [])
    if is_a(schema, "object"):
        if "properties" not in schema:  # a free object: AuthZEN properties, context
            if wanted({"type": "string"}) and not schema.get("readOnly"):
                return {"key": leaf}, [path]
            return None, []
        body, paths = {}, []
        for name, prop in schema["properties"].items():
            if schema_of(spec, prop).get("readOnly"):
                continue
            value, inner = filled(spec, prop, leaf, wanted, (*path, name))
            if inner:
                body[name], paths = value, paths + inner
        return (body, paths) if paths else (None, [])
    return None, []


def dig(errors: Any, path: tuple) -> Any:
    for part in path:
        errors = errors[part]
    return errors


def invalid_status(path: str) -> int:
    return 400 if path.startswith("/access/") else 422  # AuthZEN answers 400


def is_string(schema: dict[str, Any]) -> bool:
    return is_a(schema, "string") and "format" not in schema  # dates are parsed


def is_id(schema: dict[str, Any]) -> bool:
    return is_a(schema, "integer") and schema.get("format") == "int32"


def path_of(path: str) -> str:
    return re.sub(r"{[^}]+}", "1", path)


# --- strings ----------------------------------------------------------------------


@pytest.mark.parametrize("bad", [NUL, SURROGATE], ids=["nul", "lone-surrogate"])
def test_every_string_of_every_body_refuses_nul_and_lone_surrogates(ada, spec, bad):
    checked = 0
    for path, method, op in operations(spec):
        content = op.get("requestBody", {}).get("content", {}).get("application/json")
        if content is None:
            continue
        body, paths = filled(spec, content["schema"], bad, is_string)
        if not paths:
            continue
        answer = getattr(ada, method)(path_of(path), json=body)
        errors = problem(answer, invalid_status(path))["errors"]
        for where in paths:
            messages = dig(errors, where)
            assert any(REFUSED.search(m) for m in messages), (method, path, where, messages)
            checked += 1
    assert checked > 100


def test_every_string_of_every_query_refuses_nul_and_control_characters(ada, spec):
    checked = 0
    for path, method, op in operations(spec):
        names = [
            p["name"]
            for p in op.get("parameters", [])
            if p["in"] == "query" and is_string(schema_of(spec, p["schema"]))
        ]
        for bad in ("a\x00b", "a\nb", "a\x1bb"):
            if names:
                query = "&".join(f"{n}={quote(bad)}" for n in names)
                answer = getattr(ada, method)(f"{path_of(path)}?{query}")
                errors = problem(answer, 422, "validation_failed")["errors"]
                for name in names:
                    assert any(REFUSED.search(m) for m in errors[name]), (path, name)
                    checked += 1
    assert checked > 20


def test_single_line_fields_refuse_line_breaks_and_mailed_comments_keep_them(ada, structure_of):
    for designation in ("ACME\r\nBcc: eve@example.org", "ACME\tSARL", "ACME\u2028SARL"):
        answer = ada.post(
            "/v1/structures",
            json={
                "identifier_type": "SIRET",
                "identifier_value": VALID_SIRETS[0],
                "designation": designation,
            },
        )
        assert problem(answer, 422, "validation_failed")["errors"]["designation"]
    answer = ada.patch("/v1/me", json={"first_name": "Ada\nLovelace"})
    assert problem(answer, 422)["errors"]["first_name"]
    acme = structure_of(ada)
    answer = ada.post(
        f"/v1/structures/{acme['id']}/services", json={"code": "S1", "label": "Sales\r\n"}
    )
    assert problem(answer, 422)["errors"]["label"]
    bob = Api(ada.client, ada.rt).person("bob@example.org")
    comment = "Hello,\r\nI keep the accounts.\n\tBob"
    asked = bob.post(
        "/v1/attachment-requests", json={"structure_id": acme["id"], "comment": comment}
    )
    assert asked.status_code == 201, asked.json
    assert asked.json["comment"] == comment
    refused = ada.post(
        f"/v1/attachment-requests/{asked.json['id']}/refusal", json={"reason": "No\x07bell"}
    )
    assert problem(refused, 422)["errors"]["reason"]


QUESTIONS = [
    {"user_id": ID_MAX, "structure_id": 2, "action": "consult"},
    {"user_id": ID_MAX + 1, "structure_id": 2, "action": "consult"},
    {"user_id": 1, "structure_id": 2**63, "action": "consult"},
    {"user_id": 1, "structure_id": 2, "action": NUL},
    {"user_id": 1, "structure_id": 2, "action": "consult", "space": SURROGATE},
    {"user_id": 1, "structure_id": 2, "action": "consult", "service": "S\n1"},
]


@pytest.mark.parametrize("item", QUESTIONS, ids=[str(i) for i in range(len(QUESTIONS))])
def test_batch_items_refuse_what_single_checks_refuse(item):
    """The batch's hand-written item check refuses the same fields."""

    def checked(load) -> set[str]:
        try:
            load(item)
            return set()
        except ValidationError as error:
            return set(error.messages)

    assert checked(QuestionItem().deserialize) == checked(QuestionSchema().load)


# --- ids ----------------------------------------------------------------------------


def test_ids_out_of_range_in_a_path_are_a_404_on_every_route(app, ada, spec):
    routes = 0
    for rule in app.url_map.iter_rules():
        # werkzeug has no public map of a rule's arguments to their converters.
        converters = rule._converters.items()  # noqa: SLF001
        ids = [name for name, conv in converters if isinstance(conv, IdConverter)]
        if not ids:
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            for value in OUT_OF_RANGE:
                for name in ids:
                    url = rule.rule
                    for other in ids:
                        url = url.replace(f"<id:{other}>", str(value if other == name else 1))
                    answer = getattr(ada, method.lower())(url, json={})
                    problem(answer, 404, "not_found")
            # The console's pages (not in the OpenAPI document) are held to it too.
            routes += 0 if rule.endpoint.startswith("console.") else 1
    assert routes == sum(1 for path, _, _ in operations(spec) if "{" in path)


def test_ids_out_of_range_in_a_body_or_a_query_are_a_422(ada, spec):
    checked = 0
    for path, method, op in operations(spec):
        if path.startswith("/access/"):
            continue  # AuthZEN ids are strings: see the next test
        for value in OUT_OF_RANGE[:2]:
            content = op.get("requestBody", {}).get("content", {}).get("application/json")
            if content is not None:
                body, paths = filled(spec, content["schema"], value, is_id)
                if paths:
                    answer = getattr(ada, method)(path_of(path), json=body)
                    errors = problem(answer, 422, "validation_failed")["errors"]
                    for where in paths:
                        assert dig(errors, where), (method, path, where)
                        checked += 1
            names = [
                p["name"]
                for p in op.get("parameters", [])
                if p["in"] == "query" and is_id(schema_of(spec, p["schema"]))
            ]
            if names:
                query = "&".join(f"{n}={value}" for n in names)
                answer = getattr(ada, method)(f"{path_of(path)}?{query}")
                errors = problem(answer, 422, "validation_failed")["errors"]
                assert set(names) <= set(errors), (path, errors)
                checked += len(names)
    assert checked > 30


def test_authzen_ids_out_of_range_name_nothing_of_ours(ada):
    me = str(ada.user["id"])
    for value in (str(ID_MAX + 1), str(2**63), "9" * 18):
        answer = ada.post(
            "/access/v1/evaluation",
            json={
                "subject": {"type": "user", "id": me},
                "action": {"name": "consult"},
                "resource": {"type": "space", "id": f"{value}/issued_invoices"},
            },
        )
        assert answer.status_code == 200 and answer.json["decision"] is False, answer.json
        answer = ada.post(
            "/access/v1/search/action",
            json={
                "subject": {"type": "user", "id": me},
                "resource": {"type": "structure", "id": value},
            },
        )
        assert answer.status_code == 200 and answer.json["results"] == [], answer.json


# --- JSON depth ---------------------------------------------------------------------


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [JSON_DEPTH_MAX + 1, 1000, 100_000])
@pytest.mark.parametrize(
    "path", ["/v1/auth/token", "/v1/structures", "/access/v1/evaluation", "/v1/checks/batch"]
)
def test_deeply_nested_json_is_a_400_problem(ada, path, depth):
    answer = ada.client.post(
        path,
        data=nested(depth),
        content_type="application/json",
        headers={"Authorization": f"Bearer {ada.token}"},
    )
    problem(answer, 400, "json_too_deep")


def random_json(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 8 or roll < 0.3:
        return rng.choice([1, -2.5, None, True, "", "a", "[{", "]}", '"', "\\", "é", 'x]\\"['])
    if roll < 0.65:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {
        rng.choice(["k", "[", "}", '"q']) + str(i): random_json(rng, depth + 1) for i in range(3)
    }


def test_the_text_depth_check_agrees_with_the_value_visit():
    """load_json settles most bodies from their brackets (text_nests_at_most):
    it must never accept what nests_deeper refuses, and where it answers at
    all it answers the same, strings holding brackets, quotes and backslashes
    included, and a repeated key dropping a deep member."""
    rng = random.Random(13)
    answered = 0
    samples = [json.dumps(random_json(rng)).encode() for _ in range(3000)]
    samples += [b'{"a": [[[[1]]]], "a": 1}', b"[[],[[]],{}]", b'"x"', b"1", b"{}"]
    for text in samples:
        value = json.loads(text)
        for limit in range(10):
            said = text_nests_at_most(text, limit)
            deeper = nests_deeper(value, limit)
            if said is True:
                assert not deeper, (text, limit)
                answered += 1
            elif said is False and text != b'{"a": [[[[1]]]], "a": 1}':
                assert deeper, (text, limit)
    assert answered > 3000


def test_json_nested_within_the_cap_is_read(ada):
    properties: Any = "deep"
    for _ in range(JSON_DEPTH_MAX - 3):  # body > subject > properties > … levels
        properties = {"p": properties}
    answer = ada.post(
        "/access/v1/evaluation",
        json={
            "subject": {"type": "user", "id": str(ada.user["id"]), "properties": properties},
            "action": {"name": "consult"},
            "resource": {"type": "space", "id": "1/issued_invoices"},
        },
    )
    assert answer.status_code == 200, answer.json
    answer = ada.client.post(
        "/v1/auth/token", data=nested(JSON_DEPTH_MAX), content_type="application/json"
    )
    problem(answer, 422, "validation_failed")  # read, then refused as not an object


# --- gunicorn's own refusals --------------------------------------------------------


def raw(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes; the status, headers and body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        with contextlib.suppress(OSError):  # gunicorn may answer and close before reading it all
            conn.sendall(request)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers, body


@pytest.fixture
def served(database_url: str, rt, tmp_path: Path) -> Iterator[int]:
    """`authz serve` (one worker) on the test's database; yields its port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")}
    env.update(
        {
            "AUTHZ_DATABASE_URL": database_url,
            "AUTHZ_VAR_DIR": str(tmp_path / "served"),
            "AUTHZ_MAIL_BACKGROUND": "false",
        }
    )
    port, log = free_port(), tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("authz")),
                "serve",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if raw(port, b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200:
                    break
            except (OSError, ValueError, IndexError):
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def test_gunicorn_refusals_are_problems(served):
    cases = {
        "request line too long": (
            b"GET /v1/structures?q=" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            414,
            "uri_too_long",
        ),
        "too many header fields": (
            b"GET /health/live HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-H%d: v\r\n" % i for i in range(150))
            + b"\r\n",
            431,
            "headers_too_large",
        ),
        "a header field too large": (
            b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 20_000 + b"\r\n\r\n",
            431,
            "headers_too_large",
        ),
        "not HTTP": (b"NOT HTTP AT ALL\r\n\r\n", 400, "malformed_request"),
    }
    for case, (request, status, code) in cases.items():
        got, headers, body = raw(served, request)
        assert got == status, (case, got, body[:200])
        assert headers["Content-Type"] == "application/problem+json", (case, headers)
        answer = json.loads(body)
        assert (answer["status"], answer["code"]) == (status, code), (case, answer)
        assert answer["type"] == f"urn:authz:problem:{code}"
    # The service still answers as usual afterwards.
    assert raw(served, b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200
