"""Tracing (the `otel` extra, authz/tracing.py): with a tracer, a check is a
request span with a decision child and database spans, and log lines carry
the trace id; without configuration nothing is traced and logs are unchanged.
The SDK's in-memory exporter stands for a collector."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from authz import logs, tracing
from authz.runtime import close_runtime
from tests.support.live import authz_command, serve_env, serving
from tests.support.logs import closed, json_app, json_lines
from tests.support.rows import client_key

QUESTION = {"user_id": 1, "structure_id": 1, "space": "my_account", "action": "consult"}


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """A tracer whose spans are kept in memory, installed for the test."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing.install(provider)
    try:
        yield memory
    finally:
        tracing.uninstall()
        provider.shutdown()


def make_app(database_url, tmp_path):
    return json_app(database_url, tmp_path / "var")


@pytest.fixture
def traced_app(exporter, database_url, tmp_path) -> Iterator:
    """The service built while tracing is on (its engines are instrumented)."""
    app = make_app(database_url, tmp_path)
    yield app
    closed(app)


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    with json_lines(logging.INFO) as out:
        yield out


def check(app, key: str):
    return app.test_client().post(
        "/v1/checks", json=QUESTION, headers={"Authorization": f"Bearer {key}"}
    )


def test_a_check_is_a_request_span_with_a_decision_child_and_database_spans(traced_app, exporter):
    key = client_key(traced_app.extensions["authz"])
    exporter.clear()
    r = check(traced_app, key)
    assert r.status_code == 200
    spans = exporter.get_finished_spans()
    [request] = [s for s in spans if s.kind == SpanKind.SERVER]
    assert request.name == "POST /v1/checks"
    assert request.attributes["http.route"] == "/v1/checks"
    assert request.attributes["http.response.status_code"] == 200
    assert request.parent is None
    trace_id = request.context.trace_id
    assert {s.context.trace_id for s in spans} == {trace_id}, [
        (s.name, s.parent, s.context.trace_id == trace_id) for s in spans
    ]

    [decide] = [s for s in spans if s.name == "authz.decide check"]
    assert decide.parent.span_id == request.context.span_id
    assert decide.attributes["authz.api"] == "check"
    counted = [decide.attributes[f"authz.{n}"] for n in ("allowed", "denied", "errors")]
    assert sum(counted) == 1
    [event] = decide.events
    assert event.name == "authz.decision"
    assert event.attributes["authz.result"] == ("allowed" if r.json["allowed"] else "denied")
    assert event.attributes["authz.revision"] == r.json["revision"]
    # Who asked about whom is the decision log's, never the trace's.
    assert "user_id" not in json.dumps(dict(event.attributes))

    database = [s for s in spans if s.name.startswith("db ")]
    assert database, [s.name for s in spans]
    assert all(s.kind == SpanKind.CLIENT for s in database)
    assert all(s.attributes["db.system.name"] in ("sqlite", "postgresql") for s in database)
    # Every database span hangs under the request (the API key's look-up, ...).
    ids = {s.context.span_id for s in spans}
    assert all(s.parent is not None and s.parent.span_id in ids for s in database)
    # The statement's text, never the values bound to it (the key, a hash).
    assert not any(key in str(s.attributes) for s in spans)


def test_a_batch_is_one_decision_span_with_an_event_per_decision(traced_app, exporter):
    key = client_key(traced_app.extensions["authz"])
    exporter.clear()
    r = traced_app.test_client().post(
        "/v1/checks/batch",
        json={"checks": [QUESTION, {**QUESTION, "user_id": 2}, {**QUESTION, "action": "modify"}]},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 200
    [decide] = [s for s in exporter.get_finished_spans() if s.name == "authz.decide batch"]
    assert len(decide.events) == 3
    results = [e.attributes["authz.result"] for e in decide.events]
    assert results == ["allowed" if d["allowed"] else "denied" for d in r.json["decisions"]]


def test_a_caller_s_traceparent_makes_the_request_its_child(traced_app, exporter):
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    r = traced_app.test_client().get(
        "/v1/me", headers={"traceparent": f"00-{trace_id}-{parent_id}-01"}
    )
    assert r.status_code == 401
    [request] = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert request.name == "GET /v1/me"
    assert request.attributes["http.response.status_code"] == 401
    assert format(request.context.trace_id, "032x") == trace_id
    assert format(request.parent.span_id, "016x") == parent_id


def test_json_log_lines_of_a_traced_request_carry_its_trace_id(traced_app, exporter, captured):
    key = client_key(traced_app.extensions["authz"])
    exporter.clear()
    assert check(traced_app, key).status_code == 200
    [request] = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    [access] = [line for line in lines if line["logger"] == "authz.access"]
    assert access["trace_id"] == format(request.context.trace_id, "032x")
    assert len(access["span_id"]) == 16


def test_text_log_lines_in_a_span_carry_its_ids(exporter):
    record = logging.LogRecord("authz.test", logging.INFO, __file__, 1, "inside", None, None)
    outside = logs.TextFormatter().format(record)
    assert "trace_id" not in outside
    span = tracing.Active("test")
    try:
        inside = logs.TextFormatter().format(record)
        as_json = json.loads(logs.JsonFormatter().format(record))
    finally:
        span.end()
    [finished] = exporter.get_finished_spans()
    trace_id = format(finished.context.trace_id, "032x")
    assert inside.endswith(
        f" trace_id={trace_id} span_id={format(finished.context.span_id, '016x')}"
    )
    assert as_json["trace_id"] == trace_id


def test_without_configuration_nothing_is_traced_and_logs_are_unchanged(
    database_url, tmp_path, captured
):
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    assert tracing.TRACER is None
    app = make_app(database_url, tmp_path)
    try:
        assert tracing.TRACER is None  # the test environment names no OTEL_* exporter
        assert check(app, client_key(app.extensions["authz"])).status_code == 200
    finally:
        close_runtime(app.extensions["authz"])
        logs.configure("text", "INFO")
    assert memory.get_finished_spans() == ()
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert lines
    assert not [line for line in lines if "trace_id" in line or "span_id" in line]


@pytest.mark.parametrize(
    "environ, wanted",
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "authz"}, False),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": ""}, False),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none,otlp"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
                "OTEL_TRACES_EXPORTER": "none",
            },
            False,
        ),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_the_standard_environment_turns_tracing_on(environ, wanted):
    assert tracing.wanted(environ) is wanted


def test_configure_reads_the_environment_once_per_process():
    try:
        assert tracing.configure({}) is False
        assert tracing.TRACER is None
        assert tracing.configure({"OTEL_TRACES_EXPORTER": "unknown"}) is False
        assert tracing.TRACER is None
        tracing.uninstall()
        assert tracing.configure({"OTEL_TRACES_EXPORTER": "console"}) is True
        tracer = tracing.TRACER
        assert tracer is not None
        # The same process again (create_app after post_fork): the same tracer.
        assert tracing.configure({"OTEL_TRACES_EXPORTER": "console"}) is True
        assert tracing.TRACER is tracer
    finally:
        tracing.uninstall()


def test_authz_serve_traces_in_each_worker(tmp_path):
    """Configured by the environment, set up in the workers after the fork: the
    console exporter of a worker prints the request's span, whose trace id the
    worker's JSON access line carries."""
    url = f"sqlite:///{tmp_path / 'authz.db'}"
    env = serve_env(url, tmp_path / "var", log_format="json")
    env.update({"OTEL_TRACES_EXPORTER": "console", "OTEL_BSP_SCHEDULE_DELAY": "50"})
    subprocess.run([authz_command(), "db", "upgrade"], env=env, check=True, timeout=120)
    log = tmp_path / "serve.log"
    with serving(env, log) as server:
        for _ in range(4):
            assert server.call("GET", "/v1/me")[0] == 401
        deadline = time.monotonic() + 10
        while '"name": "GET /v1/me"' not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    text = log.read_text()
    assert '"name": "GET /v1/me"' in text
    access = [
        json.loads(line)
        for line in text.splitlines()
        if line.startswith("{") and '"authz.access"' in line
    ]
    me = [line for line in access if line.get("route") == "/v1/me"]
    assert len(me) == 4
    for line in me:
        assert f'"trace_id": "0x{line["trace_id"]}"' in text


def test_asked_for_but_not_installed_runs_untraced_with_a_warning(monkeypatch, caplog):
    """Without the extra (its modules unimportable), the OTEL_* variables only
    bring a warning."""
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    try:
        with caplog.at_level(logging.WARNING, logger="authz.tracing"):
            assert tracing.configure({"OTEL_TRACES_EXPORTER": "otlp"}) is False
        assert tracing.TRACER is None
        assert "not installed" in caplog.text
    finally:
        tracing.uninstall()
