"""The decision log: every decision API's decisions recorded with every field
when AUTHZ_DECISION_LOG asks for it, sampled or not, denials always if asked;
written off the request by a background writer; pruned by maintenance; read by
security reviewers only (GET /v1/decision-log, `authz decisions`)."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
import time_machine
from alembic import command
from sqlalchemy import create_engine, func, inspect, select
from sqlalchemy.dialects import postgresql

from authz import decision_log, logs
from authz.config import load_settings
from authz.db import alembic_config, make_engine, upgrade
from authz.engine.checks import Caller
from authz.engine.decisions import Decision, Question
from authz.workflows import maintenance
from models import DecisionRecord, utcnow
from tests.support.api import create_structure, make_reviewer
from tests.support.backend import app_settings
from tests.support.cli import authz
from tests.support.rows import client_key

FIELDS = set(decision_log.COLUMNS) | {"id"}


@pytest.fixture
def settings_overrides(database_url, tmp_path):
    return {**app_settings(database_url, tmp_path / "var"), "decision_log": "all"}


def recorded(rt, **where) -> list[decision_log.Record]:
    """The decisions recorded (packed or not), oldest first."""
    rt.recorder.flush()
    with rt.read_sessions() as s:
        records = decision_log.iter_records(s, decision_log.Filters())
        return sorted(
            (r for r in records if all(getattr(r, k) == v for k, v in where.items())),
            key=lambda r: r.id,
        )


@pytest.fixture
def world(api, rt):
    owner = api.person("owner@example.org")
    structure = create_structure(owner, "73282932000074")
    key = client_key(rt)
    return owner, structure["id"], key


def test_each_decision_api_is_recorded_with_every_field(api, client, rt, world):
    owner, sid, key = world
    uid = owner.user["id"]
    keyed = {"Authorization": f"Bearer {key}", "X-Request-ID": "req-check"}
    question = {"user_id": uid, "structure_id": sid, "space": "my_account", "action": "modify"}
    assert client.post("/v1/checks", json=question, headers=keyed).status_code == 200
    keyed["X-Request-ID"] = "req-batch"
    denied = {**question, "space": "issued_invoices"}
    r = client.post("/v1/checks/batch", json={"checks": [question, denied]}, headers=keyed)
    assert r.status_code == 200
    keyed["X-Request-ID"] = "req-authzen"
    evaluation = {
        "subject": {"type": "user", "id": str(uid)},
        "resource": {"type": "space", "id": f"{sid}/my_account"},
        "action": {"name": "consult"},
    }
    assert client.post("/access/v1/evaluation", json=evaluation, headers=keyed).status_code == 200
    r = client.post(
        "/access/v1/evaluations",
        json={**evaluation, "evaluations": [{"action": {"name": "create"}}]},
        headers=keyed,
    )
    assert r.status_code == 200, r.json
    assert owner.get(f"/v1/users/{uid}/permissions").status_code == 200
    assert owner.get(f"/v1/structures/{sid}/access").status_code == 200

    [check] = recorded(rt, api="check")
    assert check.request_id == "req-check" and check.client_id is not None
    assert (check.user_id, check.structure_id, check.space, check.action) == (
        uid,
        sid,
        "my_account",
        "modify",
    )
    assert check.allowed and check.rule and check.reason is None
    assert check.revision >= 1  # policy_version: None while no version is stored
    assert check.decided_at <= utcnow()
    batch = recorded(rt, api="batch")
    assert [(b.space, b.allowed) for b in batch] == [
        ("my_account", True),
        ("issued_invoices", False),
    ]
    assert batch[1].reason and batch[1].rule is None
    assert {b.request_id for b in batch} == {"req-batch"}
    authzen = recorded(rt, api="authzen")
    assert [(a.action, a.allowed) for a in authzen] == [("consult", True), ("create", True)]
    permissions = recorded(rt, api="permissions")
    assert permissions and {p.caller_user_id for p in permissions} == {uid}
    assert all(p.allowed and p.rule for p in permissions)
    assert ("my_account", "modify") in {(p.space, p.action) for p in permissions}
    assert recorded(rt, api="access")
    for record in recorded(rt):
        assert set(decision_log.as_dict(record)) == FIELDS


class Settings:
    def __init__(self, **values):
        defaults = {
            "decision_log": "off",
            "decision_log_sample_rate": 0.5,
            "decision_log_denials": False,
            "decision_log_buffer": 100,
            "decision_log_flush_seconds": 60.0,
            "decision_log_stream": False,
        }
        self.__dict__.update(defaults, **values)


ALLOW = Decision(True, 7, rule="role:principal", policy_version=1)
DENY = Decision(False, 7, reason="no validated attachment", policy_version=1)
Q = Question(1, 2, "my_account", "consult")


@pytest.mark.parametrize(
    "settings, draw, expected",
    [
        ({"decision_log": "off"}, 0.0, []),
        ({"decision_log": "all"}, 0.99, [True, False]),
        ({"decision_log": "sampled"}, 0.49, [True, False]),
        ({"decision_log": "sampled"}, 0.51, []),
        ({"decision_log": "sampled", "decision_log_denials": True}, 0.51, [False]),
        ({"decision_log": "off", "decision_log_denials": True}, 0.0, [False]),
    ],
)
def test_what_is_recorded_follows_the_mode_the_rate_and_denials(rt, settings, draw, expected):
    recorder = decision_log.Recorder(rt.engine, Settings(**settings), draw=lambda: draw)
    recorder.record("check", Caller(client_id=1), [(Q, ALLOW), (Q, DENY)])
    assert recorder.started == bool(expected)
    recorder.close()
    assert [r.allowed for r in recorded(rt)] == expected


def test_a_full_buffer_drops_and_the_rest_is_written_at_close(rt):
    recorder = decision_log.Recorder(
        rt.engine, Settings(decision_log="all", decision_log_buffer=100)
    )
    for _ in range(2):  # the second request's records do not fit: dropped
        recorder.record("check", Caller(client_id=1), [(Q, ALLOW)] * 60)
    assert recorder.pending == 60
    recorder.close()  # the writer stops and writes what remains
    assert recorder.pending == 0
    assert len(recorded(rt, api="check")) == 60
    recorder.record("check", Caller(client_id=1), [(Q, ALLOW)] * 100)
    recorder.flush()
    assert len(recorded(rt, api="check")) == 160  # room again once written


def test_the_background_writer_writes_without_being_asked(rt):
    recorder = decision_log.Recorder(
        rt.engine, Settings(decision_log="all", decision_log_flush_seconds=0.05)
    )
    recorder.record("batch", Caller(user_id=1), [(Q, DENY)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with rt.read_sessions() as s:
            if s.scalar(select(func.count()).select_from(DecisionRecord)):
                break
    else:
        pytest.fail("nothing written")
    recorder.close()


def test_a_half_full_buffer_wakes_the_writer_before_its_period(rt):
    """A busy worker fills its buffer well within a period: at half of it the
    writer writes at once instead of waiting out AUTHZ_DECISION_LOG_FLUSH_SECONDS
    (and dropping what no longer fits)."""
    recorder = decision_log.Recorder(
        rt.engine,
        Settings(decision_log="all", decision_log_buffer=100, decision_log_flush_seconds=60.0),
    )
    try:
        recorder.record("batch", Caller(client_id=1), [(Q, ALLOW)] * 10)
        time.sleep(0.3)
        assert recorder.pending == 10  # under half: it waits for its period
        recorder.record("batch", Caller(client_id=1), [(Q, ALLOW)] * 45)  # 55 of 100
        deadline = time.monotonic() + 10
        while recorder.pending and time.monotonic() < deadline:
            time.sleep(0.02)
        assert recorder.pending == 0
        assert len(recorded(rt, api="batch")) == 55
    finally:
        recorder.close()


def put(rt, **fields) -> None:
    with rt.sessions() as s:
        base = {
            "decided_at": utcnow(),
            "api": "check",
            "action": "modify",
            "allowed": True,
            "revision": 1,
            "user_id": 5,
            "structure_id": 12,
            "space": "issued_invoices",
        }
        s.add(DecisionRecord(**{**base, **fields}))
        s.commit()


def test_a_reviewer_finds_who_was_allowed_to_modify_invoices_last_week(api, rt):
    now = utcnow()
    last_week = now - dt.timedelta(days=5)
    put(rt, decided_at=last_week, user_id=43, rule="subscription:812 modify issued_invoices")
    put(rt, decided_at=last_week, user_id=44, allowed=False, reason="no subscription")
    put(rt, decided_at=last_week, user_id=45, action="consult", rule="subscription:9")
    put(rt, decided_at=now - dt.timedelta(days=30), user_id=46, rule="old")
    put(rt, decided_at=last_week, user_id=47, structure_id=13, rule="elsewhere")
    reviewer = make_reviewer(api, rt)
    since = (now - dt.timedelta(days=7)).isoformat()
    query = {
        "structure_id": 12,
        "space": "issued_invoices",
        "action": "modify",
        "result": "allowed",
        "since": since,
        "until": now.isoformat(),
    }
    r = reviewer.get("/v1/decision-log", query_string=query)
    assert r.status_code == 200, r.json
    assert r.json["total"] == 1
    [found] = r.json["items"]
    assert (found["user_id"], found["rule"]) == (43, "subscription:812 modify issued_invoices")
    assert set(found) == FIELDS
    r = reviewer.get("/v1/decision-log", query_string={**query, "format": "csv"})
    assert r.status_code == 200 and r.mimetype == "text/csv"
    lines = r.get_data(as_text=True).splitlines()
    assert lines[0].startswith("id,decided_at,api") and len(lines) == 2
    paged = reviewer.get("/v1/decision-log", query_string={"page_size": 2, "page": 3}).json
    assert (paged["total"], len(paged["items"])) == (5, 1)


def test_only_a_security_reviewer_reads_the_decision_log(api, client, rt, world):
    owner, _, key = world
    assert owner.get("/v1/decision-log").json["code"] == "reviewer_only"
    r = client.get("/v1/decision-log", headers={"Authorization": f"Bearer {key}"})
    assert (r.status_code, r.json["code"]) == (403, "client_not_allowed")
    assert client.get("/v1/decision-log").status_code == 401


def test_maintenance_deletes_records_past_their_retention(rt, session):
    now = utcnow()
    put(rt, decided_at=now - dt.timedelta(days=91))
    put(rt, decided_at=now - dt.timedelta(days=89))
    counts = maintenance.run_maintenance(session, rt, now)
    assert counts["decision_records"] == 1
    assert len(recorded(rt)) == 1


def test_authz_decisions_prints_json_lines_and_csv(cli_env, cli_rt):
    put(cli_rt, user_id=43, rule="subscription:812")
    put(cli_rt, user_id=44, allowed=False, reason="no subscription")
    result = authz("decisions", "--structure", "12", "--result", "denied", env=cli_env)
    [line] = result.stdout.splitlines()
    assert json.loads(line)["user_id"] == 44
    result = authz("decisions", "--format", "csv", env=cli_env)
    assert len(result.stdout.splitlines()) == 3
    assert "2 record(s)." in result.stderr


def test_the_stream_writes_each_record_as_one_json_log_line(rt, caplog):
    recorder = decision_log.Recorder(
        rt.engine, Settings(decision_log="all", decision_log_stream=True)
    )
    recorder.record("check", Caller(client_id=3), [(Q, DENY)])
    with caplog.at_level("INFO", logger="authz.decision_log.records"):
        assert recorder.flush() == 1
    [record] = [r for r in caplog.records if r.name == "authz.decision_log.records"]
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["decision"]["client_id"] == 3 and line["decision"]["allowed"] is False
    assert line["decision"]["reason"] == "no validated attachment"
    recorder.close()


def test_the_postgresql_copy_sends_each_column_as_its_type():
    """The writer's binary COPY names a type per column (decision_log.COPY_TYPES):
    they are the table's, as PostgreSQL creates it from the model."""
    names = {
        "TIMESTAMP WITH TIME ZONE": "timestamptz",
        "VARCHAR": "varchar",
        "INTEGER": "int4",
        "BIGINT": "int8",
        "BOOLEAN": "bool",
    }
    table = DecisionRecord.__table__
    compiled = [
        table.c[name].type.compile(dialect=postgresql.dialect()).split("(")[0]
        for name in decision_log.COLUMNS
    ]
    assert [names[c] for c in compiled] == list(decision_log.COPY_TYPES)


def test_a_batch_s_records_are_written_with_every_value(rt):
    """One buffered entry of many decisions becomes one row each, values kept
    (on PostgreSQL through the binary COPY), a long rule cut to its column."""
    recorder = decision_log.Recorder(rt.engine, rt.settings)
    long_rule = "r" * 400
    pairs = [
        (
            Question(7, 12, "issued_invoices", "modify", "invoices"),
            Decision(True, 41, rule=long_rule, policy_version=3),
        ),
        (Question(8, None, None, "access.read"), Decision(False, 41, reason="no_role")),
    ]
    before = len(recorded(rt))
    recorder.record("batch", Caller(client_id=5), pairs)
    assert recorder.flush() == 2
    first, second = recorded(rt)[before:]
    assert (first.user_id, first.structure_id, first.space, first.action, first.service) == (
        7,
        12,
        "issued_invoices",
        "modify",
        "invoices",
    )
    assert first.allowed is True and first.revision == 41 and first.policy_version == 3
    assert len(first.rule) == 300 and first.rule.endswith("…")
    assert (second.user_id, second.structure_id, second.space, second.service) == (
        8,
        None,
        None,
        None,
    )
    assert second.allowed is False and second.reason == "no_role" and second.rule is None
    assert first.api == second.api == "batch" and first.client_id == 5
    assert first.caller_user_id is None
    assert abs((utcnow() - first.decided_at).total_seconds()) < 60


def test_requests_of_every_size_are_written_row_for_row(rt):
    """Whatever the writer's layout (on SQLite a packed row per request of
    several decisions, the requests of one decision 62 rows a statement, the
    last few one by one; on PostgreSQL a row per decision), each decision reads
    back once, with its own request's head and its own id: the same records as
    one row per decision would give."""
    recorder = decision_log.Recorder(rt.engine, rt.settings)
    sizes = [250, 96, 1, 7, *([1] * 70), 130]
    expected = []
    user = 0
    for client_id, size in enumerate(sizes, start=1):
        pairs = []
        for i in range(size):
            user += 1
            allowed = i % 3 == 0
            pairs.append(
                (
                    Question(user, client_id, "issued_invoices" if i % 2 else None, "modify"),
                    Decision(
                        allowed,
                        client_id * 10,
                        rule=f"subscription:{user}" if allowed else None,
                        reason=None if allowed else f"no grant {user}",
                        policy_version=i % 4 or None,
                    ),
                )
            )
            expected.append((client_id, user, client_id, pairs[-1][0].space, allowed))
        api = "batch" if size > 1 else "check"
        token = logs.serving(request_id=f"req-{client_id}")
        try:
            recorder.record(api, Caller(client_id=client_id), pairs)
        finally:
            logs.done(token)
    before = len(recorded(rt))
    assert recorder.flush() == sum(sizes)
    rows = recorded(rt)[before:]
    assert sorted((r.client_id, r.user_id, r.structure_id, r.space, r.allowed) for r in rows) == (
        sorted(expected)
    )
    for r in rows:  # every column from its own request and decision
        assert r.request_id == f"req-{r.client_id}" and r.revision == r.client_id * 10
        assert r.api == ("check" if sizes[r.client_id - 1] == 1 else "batch")
        assert r.rule == (f"subscription:{r.user_id}" if r.allowed else None)
        assert r.reason == (None if r.allowed else f"no grant {r.user_id}")
        assert r.action == "modify" and r.service is None and r.caller_user_id is None
    assert {r.policy_version for r in rows} == {None, 1, 2, 3}
    ids = [r.id for r in rows]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # unique, in the order written
    with rt.read_sessions() as s:
        stored = s.scalar(select(func.count()).select_from(DecisionRecord))
    one_row_each = len(sizes) if rt.engine.dialect.name == "sqlite" else sum(sizes)
    assert stored - before == one_row_each


def test_on_sqlite_the_decision_log_has_only_its_time_indexes(rt):
    """Migration 0012: on SQLite the (subject, time) and (structure, time)
    indexes are gone (what recording cost batches), PostgreSQL keeps them; the
    model declares the same, so that a schema made from it matches. Both keep
    the time index and, from 0014, the packed rows' own time index."""
    with rt.engine.connect() as conn:
        names = {ix["name"] for ix in inspect(conn).get_indexes("decision_log")}
    time_index = {"ix_decision_log_decided_at", "ix_decision_log_packed_decided_at"}
    if rt.engine.dialect.name == "sqlite":
        assert names == time_index
    else:
        assert names == time_index | {
            "ix_decision_log_structure_id_decided_at",
            "ix_decision_log_user_id_decided_at",
        }
    memory = create_engine("sqlite://")
    DecisionRecord.__table__.create(memory)
    with memory.connect() as conn:
        assert {ix["name"] for ix in inspect(conn).get_indexes("decision_log")} == time_index


def test_0012_drops_the_two_indexes_on_sqlite_and_its_downgrade_restores_them(tmp_path):
    engine = make_engine(load_settings({"database_url": f"sqlite:///{tmp_path / 'a.db'}"}))

    def indexes() -> set[str]:
        with engine.connect() as conn:
            return {ix["name"] for ix in inspect(conn).get_indexes("decision_log")}

    try:
        upgrade(engine, "0011")
        assert len(indexes()) == 3
        upgrade(engine, "0012")
        assert indexes() == {"ix_decision_log_decided_at"}  # before 0014's
        cfg = alembic_config(engine)
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0011")
        assert len(indexes()) == 3
    finally:
        engine.dispose()


def test_every_filter_finds_its_records_among_many_in_the_window(api, rt):
    """Without the subject and structure indexes (SQLite) a filter scans the
    time window: each filter, alone and with a window, finds exactly its
    records, newest first, across pages."""
    now = utcnow()
    for i in range(60):
        put(
            rt,
            decided_at=now - dt.timedelta(hours=i),
            user_id=100 + i % 6,
            structure_id=20 + i % 5,
            space=("issued_invoices", "received_invoices", None)[i % 3],
            action=("modify", "consult")[i % 2],
            allowed=i % 4 == 0,
            client_id=(7, None)[i % 2],
        )
    reviewer = make_reviewer(api, rt)
    window = {"since": (now - dt.timedelta(hours=30)).isoformat(), "until": now.isoformat()}
    cases = [
        ({"user_id": 103}, lambda i: 100 + i % 6 == 103),
        ({"structure_id": 22}, lambda i: 20 + i % 5 == 22),
        ({"space": "received_invoices"}, lambda i: i % 3 == 1),
        ({"action": "consult"}, lambda i: i % 2 == 1),
        ({"result": "allowed"}, lambda i: i % 4 == 0),
        ({"result": "denied"}, lambda i: i % 4 != 0),
        ({"client_id": 7}, lambda i: i % 2 == 0),
        ({"user_id": 101, "structure_id": 21}, lambda i: i % 6 == 1 and i % 5 == 1),
    ]
    for query, wanted in cases:
        for extra, hours in (({}, range(60)), (window, range(1, 31))):
            expected = [i for i in hours if wanted(i)]
            found = []
            page = 1
            while True:
                r = reviewer.get(
                    "/v1/decision-log",
                    query_string={**query, **extra, "page": page, "page_size": 4},
                )
                assert r.status_code == 200, r.json
                assert r.json["total"] == len(expected), (query, extra)
                found += r.json["items"]
                if not r.json["items"] or len(found) >= r.json["total"]:
                    break
                page += 1
            assert [
                round((now - _aware(f["decided_at"])).total_seconds() / 3600) for f in found
            ] == (expected), (query, extra)


def _aware(text: str) -> dt.datetime:
    at = dt.datetime.fromisoformat(text)
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def test_packed_and_single_records_answer_every_filter_and_page_alike(api, rt):
    """Requests of one decision and of several (packed in one row on SQLite),
    recorded an hour apart: each filter, alone and with a window, finds exactly
    its decisions, newest first (a request's decisions in reverse), with the
    total, across pages that cut through a request; the CSV export and
    `iter_records` give the same; retention counts each decision it deletes."""
    now = utcnow()
    recorder = decision_log.Recorder(rt.engine, rt.settings)
    expected = []  # (hours ago, user, structure, space, action, allowed, client), newest first
    for hours in range(40):
        size = 1 if hours % 3 == 0 else 2 + hours % 4
        pairs = []
        for i in range(size):
            n = hours * 7 + i
            question = Question(
                100 + (hours if hours % 5 == 0 else n) % 6,  # one user for the whole request
                20 + (hours if hours % 2 else n) % 5,
                ("issued_invoices", "received_invoices", None)[n % 3],
                ("modify", "consult")[n % 2],
                "north" if n % 7 == 0 else None,
            )
            allowed = n % 4 == 0
            decision = Decision(
                allowed,
                hours,
                rule=f"rule {n}" if allowed else None,
                reason=None if allowed else f"reason {n}",
            )
            pairs.append((question, decision))
        client_id = (7, None)[hours % 2]
        with time_machine.travel(now - dt.timedelta(hours=hours), tick=False):
            recorder.record("batch", Caller(client_id=client_id), pairs)
        expected += [
            (hours, q.user_id, q.structure_id, q.space, q.action, d.allowed, client_id, q.service)
            for q, d in reversed(pairs)
        ]
    assert recorder.flush() == len(expected)
    reviewer = make_reviewer(api, rt)
    window = {
        "since": (now - dt.timedelta(hours=25)).isoformat(),
        "until": (now - dt.timedelta(hours=3)).isoformat(),
    }
    cases = [
        ({}, lambda _e: True),
        ({"user_id": 103}, lambda e: e[1] == 103),
        ({"structure_id": 22}, lambda e: e[2] == 22),
        ({"space": "received_invoices"}, lambda e: e[3] == "received_invoices"),
        ({"action": "consult"}, lambda e: e[4] == "consult"),
        ({"result": "allowed"}, lambda e: e[5]),
        ({"result": "denied"}, lambda e: not e[5]),
        ({"client_id": 7}, lambda e: e[6] == 7),
        ({"service": "north"}, lambda e: e[7] == "north"),
        ({"user_id": 101, "structure_id": 21}, lambda e: e[1] == 101 and e[2] == 21),
    ]
    for query, wanted in cases:
        for extra, within in (({}, range(40)), (window, range(4, 26))):
            want = [e for e in expected if e[0] in within and wanted(e)]
            assert want, query
            found = []
            for page in range(1, 1000):
                r = reviewer.get(
                    "/v1/decision-log",
                    query_string={**query, **extra, "page": page, "page_size": 4},
                )
                assert r.status_code == 200, r.json
                assert r.json["total"] == len(want), (query, extra)
                found += r.json["items"]
                if len(r.json["items"]) < 4:
                    break
            got = [
                (
                    round((now - _aware(f["decided_at"])).total_seconds() / 3600),
                    f["user_id"],
                    f["structure_id"],
                    f["space"],
                    f["action"],
                    f["allowed"],
                    f["client_id"],
                    f["service"],
                )
                for f in found
            ]
            assert got == want, (query, extra)
            ids = [f["id"] for f in found]
            assert len(set(ids)) == len(ids)  # and in one request, descending:
            hours = [g[0] for g in got]
            assert all(
                a > b for a, b, h, k in zip(ids, ids[1:], hours, hours[1:], strict=False) if h == k
            )
            assert all(set(f) == FIELDS for f in found)
    with rt.read_sessions() as s:
        every = list(decision_log.iter_records(s, decision_log.Filters()))
        assert len(every) == decision_log.count(s, decision_log.Filters()) == len(expected)
    csv_lines = reviewer.get("/v1/decision-log", query_string={"format": "csv"}).get_data(
        as_text=True
    )
    assert len(csv_lines.splitlines()) == len(expected) + 1
    with rt.sessions() as s:
        # Retention: what is older than 20 hours goes, counted decision by decision.
        deleted = decision_log.prune(
            s, 0, now=now - dt.timedelta(hours=20) + dt.timedelta(minutes=1)
        )
        s.commit()
    assert deleted == sum(1 for e in expected if e[0] >= 20)
    assert len(recorded(rt)) == sum(1 for e in expected if e[0] < 20)


def test_0014_downgrade_gives_each_packed_decision_its_row_back(tmp_path):
    """Downgrading 0014 expands packed rows into a row per decision, with the
    ids they had, before the column goes."""
    engine = make_engine(load_settings({"database_url": f"sqlite:///{tmp_path / 'a.db'}"}))
    packed = {
        "user_id": [5, 6, 7],
        "structure_id": 12,  # the one value of the three
        "service": [None, "north", None],
        "space": ["issued_invoices", None, "my_account"],
        "action": ["modify", "users.read", "consult"],
        "decision": [0, 1, 0],
        "decisions": [[True, "rule a", None, 9, 2], [False, None, "no role", 9, None]],
    }
    try:
        upgrade(engine, "0014")
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO decision_log (id, decided_at, api, client_id, structure_id, "
                "request_id, packed) VALUES (11, '2026-11-30 10:00:00', 'batch', 3, 12, 'r', ?)",
                (json.dumps(packed),),
            )
        cfg = alembic_config(engine)
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0013")
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT id, api, client_id, request_id, user_id, structure_id, service, "
                "space, action, allowed, rule, reason, revision, policy_version "
                "FROM decision_log ORDER BY id"
            ).all()
        expected = [
            (9, "batch", 3, "r", 5, 12, None, "issued_invoices", "modify", 1, "rule a", None, 9, 2),
            (10, "batch", 3, "r", 6, 12, "north", None, "users.read", 0, None, "no role", 9, None),
            (11, "batch", 3, "r", 7, 12, None, "my_account", "consult", 1, "rule a", None, 9, 2),
        ]
        assert [tuple(r) for r in rows] == expected
        upgrade(engine, "head")
    finally:
        engine.dispose()
