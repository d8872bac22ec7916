"""Exports and review reports: the findings of authz/review/ proven on a small
world, the rights export checked against the decision API, the reviewer-only
routes and the `authz review` / `authz export` / `authz reviewer` commands."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass

import pytest
import time_machine
from sqlalchemy import select, update

from authz import roles
from authz.review import exports
from authz.workflows import operators
from authz.workflows.records import bump_revision
from authz.workflows.users import neutralize
from models import HistoryEntry, Structure, TechnicalCredential, User, utcnow
from tests.support.api import PASSWORD, Api, attach_directly, create_structure, make_reviewer
from tests.support.cli import authz
from tests.support.rows import subscribe


def new_structure(owner: Api, name: str, designation: str | None = None) -> int:
    """A structure identified as AUTRE `name` (no SIRET needed): its id."""
    return create_structure(owner, name, designation or name, identifier_type="AUTRE")["id"]


@dataclass
class World:
    api: Api
    ada: Api
    acme: int
    users: dict[str, int]
    structures: dict[str, int]

    def report(self, **kw) -> dict:
        r = self.api.get("/v1/reviews/report", query_string=kw)
        assert r.status_code == 200, r.json
        return r.json

    def findings(self, kind: str, **kw) -> list[dict]:
        return [f for f in self.report(**kw)["findings"] if f["kind"] == kind]


@pytest.fixture
def clean(api, rt) -> World:
    """Ada leads ACME; Bob, attached simply, consults issued invoices."""
    ada = api.person("ada@example.org")
    bob = api.person("bob@example.org", "Bob", "Builder")
    acme = new_structure(ada, "ACME", "ACME SARL")
    attach_directly(ada, acme, "bob@example.org")
    subscribe(rt, bob.user["id"], acme, "issued_invoices", "consult", granted_by=ada.user["id"])
    return World(
        make_reviewer(api, rt),
        ada,
        acme,
        {"ada": ada.user["id"], "bob": bob.user["id"]},
        {"acme": acme},
    )


@pytest.fixture
def dirty(api, rt, clean) -> World:
    """The clean world plus one case of every finding."""
    w, ada = clean, clean.ada
    for n in range(5):  # Ada leads six structures
        w.structures[f"extra{n}"] = new_structure(ada, f"EXTRA{n}")
    carl = api.person("carl@example.org", "Carl", "Closed")
    w.structures["orphan"] = new_structure(carl, "ORPHAN")
    with rt.sessions() as s:  # the operator closed Carl's account
        s.execute(
            update(User)
            .where(User.id == carl.user["id"])
            .values(status="closed", closed_at=utcnow())
        )
        bump_revision(s, users=[carl.user["id"]])
        s.commit()
    assert api.signup("dana@example.org", "Dana").status_code == 201  # pending
    attach_directly(ada, w.acme, "dana@example.org", role="secondary")
    tech = ada.post(f"/v1/structures/{w.acme}/technical-users", json={"label": "Till"})
    assert tech.status_code == 201, tech.json
    with rt.sessions() as s:
        s.get(TechnicalCredential, tech.json["user_id"]).secret_expires_at = (
            utcnow() + dt.timedelta(days=10)
        )
        s.commit()
    erin = api.person("erin@example.org", "Erin")
    attach_directly(
        ada,
        w.acme,
        "erin@example.org",
        valid_from=(roles.today() + dt.timedelta(days=10)).isoformat(),
    )
    with time_machine.travel(utcnow() - dt.timedelta(days=31)):
        frank = api.signup("frank@example.org", "Frank").json
    gina = api.person("gina@example.org", "Gina")
    attach_directly(ada, w.acme, "gina@example.org")
    assert (
        gina.post("/v1/me/deactivation", json={"password": PASSWORD, "successors": []}).status_code
        == 200
    )
    hugo = api.person("hugo@example.org", "Hugo")
    attach_directly(ada, w.acme, "hugo@example.org")
    subscribe(rt, hugo.user["id"], w.acme, "issued_invoices", "modify", granted_by=ada.user["id"])
    closed = ada.put(
        f"/v1/structures/{w.acme}/spaces",
        json={"spaces": [{"space": "my_account"}, {"space": "manager_activities"}]},
    )
    assert closed.status_code == 200, closed.json
    with rt.sessions() as s:
        dana = s.scalar(select(User.id).where(User.login_email == "dana@example.org"))
    w.users.update(
        carl=carl.user["id"],
        dana=dana,
        tech=tech.json["user_id"],
        erin=erin.user["id"],
        frank=frank["id"],
        gina=gina.user["id"],
        hugo=hugo.user["id"],
    )
    return w


def subjects(findings: list[dict]) -> set[tuple[int | None, int | None]]:
    return {(f["structure_id"], f["user_id"]) for f in findings}


# --- findings ------------------------------------------------------------------


def test_a_clean_world_has_no_finding(clean):
    report = clean.report()
    assert report["findings"] == [] and set(report["counts"].values()) == {0}


def test_a_structure_whose_principal_is_closed_is_without_principal(dirty):
    [found] = dirty.findings("structure_without_principal")
    assert (found["structure_id"], found["user_id"]) == (
        dirty.structures["orphan"],
        dirty.users["carl"],
    )
    assert found["severity"] == "high" and found["why"]
    assert found["structure"] == "ORPHAN" and "carl@example.org" in found["user"]
    assert found["history_ids"]  # the structure's creation, naming Carl principal


def test_a_pending_secondary_manager_is_listed(dirty):
    assert subjects(dirty.findings("manager_not_active")) == {(dirty.acme, dirty.users["dana"])}


def test_a_technical_secret_expiring_within_30_days_is_listed(dirty, rt):
    [found] = dirty.findings("technical_secret_expiring")
    assert (found["structure_id"], found["user_id"]) == (dirty.acme, dirty.users["tech"])
    with rt.sessions() as s:
        actions = {s.get(HistoryEntry, i).action for i in found["history_ids"]}
    assert actions == {"technical_user.created"}


def test_a_user_modifying_on_six_structures_is_listed(dirty):
    [found] = dirty.findings("many_structures_modify")
    assert found["user_id"] == dirty.users["ada"] and "6 structures" in found["detail"]
    assert len(found["history_ids"]) >= 6  # one creation per structure


def test_an_attachment_starting_in_the_future_is_listed(dirty):
    [found] = dirty.findings("attachment_out_of_dates")
    assert (found["structure_id"], found["user_id"]) == (dirty.acme, dirty.users["erin"])
    assert "starts" in found["detail"]


def test_an_account_pending_for_31_days_is_listed_not_a_recent_one(dirty):
    assert {f["user_id"] for f in dirty.findings("account_pending_too_long")} == {
        dirty.users["frank"]
    }


def test_an_inactive_account_still_attached_is_listed_with_its_deactivation(dirty, rt):
    found = {f["user_id"]: f for f in dirty.findings("inactive_user_attached")}
    assert set(found) == {dirty.users["gina"], dirty.users["carl"]}
    with rt.sessions() as s:
        actions = {s.get(HistoryEntry, i).action for i in found[dirty.users["gina"]]["history_ids"]}
    # An active account joins by accepting an invitation (docs/decisions.md, "Consent").
    assert {"invitation.accepted", "account.deactivated"} <= actions


def test_a_subscription_on_a_space_closed_afterwards_is_listed(dirty, rt):
    found = dirty.findings("subscription_on_closed_space")
    assert subjects(found) == {(dirty.acme, dirty.users["hugo"]), (dirty.acme, dirty.users["bob"])}
    with rt.sessions() as s:
        actions = {s.get(HistoryEntry, i).action for f in found for i in f["history_ids"]}
    assert "spaces.updated" in actions


def test_every_history_id_of_a_finding_is_in_the_report(dirty):
    report = dirty.report()
    linked = {str(i) for f in report["findings"] for i in f["history_ids"]}
    assert linked and linked == set(report["history"])


def test_a_report_on_one_structure_keeps_only_its_findings(dirty):
    report = dirty.report(structure_id=dirty.structures["orphan"])
    assert {f["structure_id"] for f in report["findings"]} == {dirty.structures["orphan"]}


def test_changes_since_a_day_are_grouped_by_structure(dirty):
    report = dirty.report(since=roles.today().isoformat())
    groups = {g["structure_id"]: g for g in report["changes"]}
    actions = {e["action"] for e in groups[dirty.acme]["entries"]}
    assert {"invitation.accepted", "spaces.updated", "technical_user.created"} <= actions
    assert dirty.report(since=(roles.today() + dt.timedelta(days=1)).isoformat())["changes"] == []


def test_the_html_report_escapes_designations(clean):
    evil = new_structure(clean.ada, "EVIL", "<script>alert(1)</script>")
    r = clean.api.get(
        "/v1/reviews/report", query_string={"format": "html", "since": roles.today().isoformat()}
    )
    assert r.status_code == 200 and r.mimetype == "text/html"
    page = r.get_data(as_text=True)
    assert f"<h3>{evil} &lt;script&gt;alert(1)&lt;/script&gt;</h3>" in page
    assert "<script>" not in page and "<table>" in page


# --- the rights export -----------------------------------------------------------


def test_the_rights_export_is_what_the_decision_api_allows(api, rt, clean):
    r = clean.api.get("/v1/reviews/rights", query_string={"format": "json"})
    assert r.status_code == 200, r.json
    rows = r.json["items"]
    by_key = {(row["login_email"], row["space"]): row for row in rows}
    bob = by_key[("bob@example.org", "issued_invoices")]
    assert (bob["level"], bob["role"], bob["granted_by"]) == (
        "consult",
        "simple",
        "ada@example.org",
    )
    assert bob["source"].startswith("subscription:")
    ada = by_key[("ada@example.org", "manager_activities")]
    assert (ada["level"], ada["source"], ada["role"]) == ("modify", "role-default", "principal")
    assert ("bob@example.org", "manager_activities") not in by_key
    login = {
        row["login_email"]: Api(
            api.client,
            rt,
            api.client.post(
                "/v1/auth/token", json={"login_email": row["login_email"], "password": PASSWORD}
            ).json["access_token"],
        )
        for row in rows
    }
    for row in rows:
        for action in ("consult", "modify"):
            decided = (
                login[row["login_email"]]
                .post(
                    "/v1/checks",
                    json={
                        "user_id": row["user_id"],
                        "structure_id": row["structure_id"],
                        "space": row["space"],
                        "action": action,
                    },
                )
                .json["allowed"]
            )
            assert decided == (action == "consult" or row["level"] == "modify"), (row, action)


def test_the_rights_csv_has_a_header_and_one_line_per_right(clean):
    json_rows = clean.api.get("/v1/reviews/rights", query_string={"format": "json"}).json["items"]
    r = clean.api.get("/v1/reviews/rights", query_string={"structure_id": clean.acme})
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert "attachment" in r.headers["Content-Disposition"]
    lines = list(csv.reader(io.StringIO(r.get_data(as_text=True))))
    assert tuple(lines[0]) == exports.RIGHTS_COLUMNS and len(lines) - 1 == len(json_rows)


def test_the_rights_csv_is_the_json_export_with_formulas_neutralised(rt, clean):
    """Each CSV line is the JSON row, cell for cell, text that a spreadsheet
    would run as a formula given a leading quote (a designation here)."""
    with rt.sessions() as s:
        s.execute(
            update(Structure)
            .where(Structure.id == clean.acme)
            .values(designation='=HYPERLINK("http://x")')
        )
        s.commit()
    json_rows = clean.api.get("/v1/reviews/rights", query_string={"format": "json"}).json["items"]
    r = clean.api.get("/v1/reviews/rights")
    lines = list(csv.reader(io.StringIO(r.get_data(as_text=True))))[1:]
    assert lines == [[neutralize(row[c]) for c in exports.RIGHTS_COLUMNS] for row in json_rows]
    assert {line[4] for line in lines} == {'\'=HYPERLINK("http://x")'}


def test_the_rights_of_an_unknown_structure_are_404(clean):
    assert (
        clean.api.get("/v1/reviews/rights", query_string={"structure_id": 999}).status_code == 404
    )


def test_the_casbin_policy_holds_the_p_and_p2_rows(clean):
    r = clean.api.get("/v1/reviews/casbin-policy")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    lines = r.get_data(as_text=True).splitlines()
    assert lines[0].startswith("#")
    assert "p2, modify, create, active" in lines
    assert "p, principal, structure.view, active" in lines


# --- access ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/v1/reviews/report", "/v1/reviews/rights", "/v1/reviews/casbin-policy"]
)
def test_only_a_security_reviewer_reads_reviews(api, rt, clean, path):
    assert clean.api.get(path).status_code == 200
    assert clean.ada.get(path).json["code"] == "reviewer_only"
    operator = api.person("ops@example.org", "Op")
    with rt.sessions() as s:
        operators.create_operator(s, rt, "ops@example.org")
    r = operator.get(path)
    assert (r.status_code, r.json["code"]) == (403, "reviewer_only")
    assert api.get(path).status_code == 401


# --- command line --------------------------------------------------------------------


def test_reviewer_create_gives_the_role_and_refuses_an_operator(cli_env, cli_rt):
    result = authz("reviewer", "create", "Rita@Example.org", env=cli_env)
    assert "security reviewer account rita@example.org" in result.output
    with cli_rt.sessions() as s:
        user = s.scalar(select(User).where(User.login_email == "rita@example.org"))
        assert (user.platform_role, user.status) == ("security_reviewer", "pending")
    assert (
        "already a security reviewer"
        in authz("reviewer", "create", "rita@example.org", env=cli_env).output
    )
    authz("operator", "create", "ops@example.org", env=cli_env)
    refused = authz("reviewer", "create", "ops@example.org", code=1, env=cli_env)
    assert "already a operator" in refused.output


def test_cli_review_and_exports_write_files(api, cli_env, tmp_path):
    ada = api.person("ada@example.org")
    acme = new_structure(ada, "ACME", "ACME <SARL>")
    html_file, json_file = tmp_path / "report.html", tmp_path / "report.json"
    authz("review", "--output", str(html_file), env=cli_env)
    assert html_file.read_text().startswith("<!DOCTYPE html>")
    authz(
        "review",
        "--structure",
        str(acme),
        "--since",
        roles.today().isoformat(),
        "--format",
        "json",
        "--output",
        str(json_file),
        env=cli_env,
    )
    report = json.loads(json_file.read_text())
    assert report["structure_id"] == acme and report["changes"][0]["structure_id"] == acme
    rights = tmp_path / "rights.csv"
    assert "Exporting" in authz("export", "rights", "--output", str(rights), env=cli_env).output
    lines = list(csv.reader(io.StringIO(rights.read_text())))
    assert tuple(lines[0]) == exports.RIGHTS_COLUMNS
    assert ["ada@example.org", "ACME <SARL>", "manager_activities", "modify"] in [
        [line[1], line[4], line[6], line[7]] for line in lines[1:]
    ]
    as_json = tmp_path / "rights.json"
    authz(
        "export",
        "rights",
        "--structure",
        str(acme),
        "--format",
        "json",
        "--output",
        str(as_json),
        env=cli_env,
    )
    assert len(json.loads(as_json.read_text())) == len(lines) - 1
    casbin = tmp_path / "policy.csv"
    authz("export", "casbin", "--output", str(casbin), env=cli_env)
    assert "p2, modify, create, active" in casbin.read_text().splitlines()
    failed = authz("export", "rights", "--structure", "999", code=1, env=cli_env)
    assert "No such structure" in failed.output
