"""Links the service hands out, and the AuthZEN discovery document, when
AUTHZ_PUBLIC_BASE_URL is unset (docs/decisions.md, "Links in mails").

A mailed link built from a forged Host header is the classic password-reset
poisoning: links follow the request's host only when it is a trusted host.
"""

from __future__ import annotations

import pytest

from api import create_app
from authz.runtime import DEFAULT_BASE_URL, close_runtime, trusted_host
from tests.support.api import Api, outbox


@pytest.fixture
def unset_base(settings_overrides):
    """An app whose AUTHZ_PUBLIC_BASE_URL is unset (other settings as in the suite)."""

    def make(**overrides) -> Api:
        app = create_app({**settings_overrides, "public_base_url": "", **overrides})
        apps.append(app)
        return Api(app.test_client(), app.extensions["authz"])

    apps: list = []
    yield make
    for app in apps:
        close_runtime(app.extensions["authz"])


def activation_link(api: Api, email: str, **headers) -> str:
    created = api.client.post(
        "/v1/accounts",
        json={"login_email": email, "first_name": "Ada", "last_name": "Lovelace"},
        headers=headers,
    )
    assert created.status_code == 201, created.json
    [mail] = outbox(api.rt, email)
    return mail.body


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "evil.example"},
        {"Host": "evil.example:443"},
        {"Host": "localhost.evil.example"},
        {"Host": "127.0.0.1.evil.example"},
        {"Host": "localhost@evil.example"},
        {"Host": "evil.example", "X-Forwarded-Host": "localhost"},
    ],
)
def test_a_forged_host_never_ends_up_in_a_mailed_link(unset_base, headers):
    api = unset_base()
    body = activation_link(api, "victim@example.org", **headers)
    assert "evil.example" not in body
    assert f"{DEFAULT_BASE_URL}/console/activation?token=" in body


def test_a_forwarded_host_header_is_ignored(unset_base):
    body = activation_link(
        unset_base(), "victim@example.org", Host="localhost", **{"X-Forwarded-Host": "evil.example"}
    )
    assert "evil.example" not in body
    assert "  http://localhost/console/activation?token=" in body


def test_a_forged_host_is_refused_behind_trusted_proxies_too(unset_base):
    api = unset_base(proxy_hops=1)
    body = activation_link(
        api, "victim@example.org", Host="evil.example", **{"X-Forwarded-Host": "evil.example"}
    )
    assert "evil.example" not in body


@pytest.mark.parametrize(
    "host, base",
    [
        ("localhost:5000", "http://localhost:5000"),
        ("127.0.0.1:18123", "http://127.0.0.1:18123"),
        ("[::1]:8080", "http://[::1]:8080"),
        ("LOCALHOST", "http://localhost"),
    ],
)
def test_links_follow_a_trusted_host(unset_base, host, base):
    body = activation_link(unset_base(), "ada@example.org", Host=host)
    assert f"  {base}/console/activation?token=" in body


def test_the_trusted_hosts_setting_replaces_the_loopback_names(unset_base):
    api = unset_base(trusted_hosts="authz.internal, pdp.internal")
    assert "http://authz.internal:8443/v1/" in activation_link(
        api, "a@example.org", Host="authz.internal:8443"
    )
    assert f"{DEFAULT_BASE_URL}/v1/" in activation_link(api, "b@example.org", Host="localhost")


def test_the_public_base_url_wins_over_any_host(unset_base):
    api = unset_base(public_base_url="https://authz.example.org/")
    body = activation_link(api, "ada@example.org", Host="localhost:5000")
    assert "  https://authz.example.org/console/activation?token=" in body
    assert "localhost" not in body


def test_a_link_built_outside_a_request_uses_the_default(unset_base):
    api = unset_base()
    activation_link(api, "first@example.org", Host="localhost:5000")
    assert api.rt.link_base() == DEFAULT_BASE_URL


def test_the_technical_connection_file_ignores_a_forged_host(unset_base, structure_of):
    api = unset_base()
    owner = api.person("owner@example.org")
    structure = structure_of(owner)
    created = owner.post(
        f"/v1/structures/{structure['id']}/technical-users",
        json={"label": "Cash register"},
        headers={"Host": "evil.example"},
    )
    assert created.status_code == 201, created.json
    content = created.json["connection_file"]
    assert f"AUTHZ_API_URL={DEFAULT_BASE_URL}\n" in content
    assert "evil.example" not in content


@pytest.mark.parametrize(
    "host, trusted, expected",
    [
        ("localhost", "127.0.0.1,localhost,[::1]", True),
        ("localhost:1", "localhost", True),
        ("[::1]:8000", "[::1]", True),
        ("[::1]", "localhost", False),
        ("", "localhost", False),
        ("localhost:80:80", "localhost", False),
        ("local host", "local host", False),
        ("evil.example/localhost", "localhost", False),
    ],
)
def test_trusted_host_matches_names_with_any_port(host, trusted, expected):
    assert trusted_host(host, trusted) is expected


# --- the AuthZEN discovery document -----------------------------------------------


def test_discovery_names_the_url_it_was_fetched_from(unset_base):
    api = unset_base()
    reply = api.client.get(
        "/.well-known/authzen-configuration", headers={"Host": "pdp.example:9000"}
    )
    assert reply.status_code == 200
    assert reply.json["policy_decision_point"] == "http://pdp.example:9000"
    assert (
        reply.json["access_evaluation_endpoint"] == "http://pdp.example:9000/access/v1/evaluation"
    )
    assert reply.headers["Vary"] == "Host"


def test_discovery_follows_the_scheme_a_trusted_proxy_reports(unset_base):
    api = unset_base(proxy_hops=1)
    reply = api.client.get(
        "/.well-known/authzen-configuration",
        headers={"Host": "pdp.example", "X-Forwarded-Proto": "https"},
    )
    assert reply.json["policy_decision_point"] == "https://pdp.example"


def test_discovery_uses_the_public_base_url_when_set(unset_base):
    api = unset_base(public_base_url="https://authz.example.org")
    reply = api.client.get("/.well-known/authzen-configuration", headers={"Host": "other:1"})
    assert reply.json["policy_decision_point"] == "https://authz.example.org"
    assert "Vary" not in reply.headers
