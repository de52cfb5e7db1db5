"""One outbound-target guard for every fetch (apps' and external issuers' JWKS URLs, webhook targets): refusals
tested by address classification and a faked resolver; nothing here connects to any non-loopback address."""

from __future__ import annotations

import time

import httpx
import pytest

from service import outbound
from service.auth.apps import create_app_record
from service.db import make_engine
from service.settings import ExternalIssuer
from service.webhooks import targets
from tests.support.harness import Api
from tests.support.oauth import assertion_form, jwks_server, public_jwks, register, rsa_key

NAMES = {"hooks.example": ["93.184.216.34"], "metadata.example": ["169.254.169.254"],
         "mixed.example": ["93.184.216.34", "10.0.0.5"], "rebind.example": ["127.0.0.1"],
         "keys.example": ["10.20.30.40"], "v6.example": ["fd00:ec2::254"]}


@pytest.fixture
def resolver(monkeypatch):
    """Name resolution faked at the one resolver function: what was asked is recorded, nothing is looked up."""
    asked: list[str] = []

    async def fake(host: str, port: int) -> list[str]:
        asked.append(host)
        if host not in NAMES:
            raise OSError("no such host")
        return NAMES[host]

    monkeypatch.setattr(outbound, "resolve", fake)
    return asked


@pytest.mark.parametrize(("address", "reason"), [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"), ("10.1.2.3", "private"),
    ("172.16.0.1", "private"), ("192.168.1.1", "private"), ("169.254.169.254", "link-local"),
    ("fe80::1", "link-local"), ("fd00::1", "unique-local"), ("fd00:ec2::254", "unique-local"),
    ("100.64.0.1", "not global"), ("0.0.0.0", "unspecified"), ("::", "unspecified"), ("224.0.0.1", "multicast"),
    ("::ffff:10.0.0.1", "private"), ("::ffff:169.254.169.254", "link-local"), ("64:ff9b::a00:1", "private"),
    ("2002:a00:1::", "private"), ("240.0.0.1", "reserved"),
    ("93.184.216.34", None), ("2606:2800:220:1:248:1893:25c8:1946", None), ("8.8.8.8", None),
])
def test_addresses_are_classified_without_connecting(address, reason):
    assert outbound.classify(address) == reason


@pytest.mark.parametrize(("url", "code"), [
    ("https://hooks.example/hook", None), ("https://hooks.example:8443/hook", None),
    ("https://hooks.example:8080/hook", "port_not_allowed"), ("https://hooks.example:80/hook", "port_not_allowed"),
    ("https://metadata.example/latest", "private_target"), ("https://mixed.example/hook", "private_target"),
    ("https://v6.example/hook", "private_target"), ("https://nowhere.example/hook", "unresolvable_host"),
    ("http://hooks.example/hook", "insecure_url"),
])
async def test_webhook_targets_at_registration(api, resolver, url, code):
    org = await api.org()
    c = api.client(await api.token(org, "system/Webhook.cruds"))
    resp = await c.post("/v1/webhook-subscriptions", json={"url": url, "events": ["strength.created"]})
    if code is None:
        assert resp.status_code == 201, resp.text
    else:
        assert resp.status_code == 422, resp.text
        assert resp.json()["errors"][0] == {**resp.json()["errors"][0], "field": "url", "code": code}


async def test_private_targets_and_any_port_when_explicitly_allowed(db, resolver):
    async with Api.start(db, webhooks_allow_private_targets=True) as api:
        org = await api.org()
        c = api.client(await api.token(org, "system/Webhook.cruds"))
        for url in ("http://127.0.0.1:8080/hook", "https://metadata.example:9000/x"):
            resp = await c.post("/v1/webhook-subscriptions", json={"url": url, "events": ["strength.created"]})
            assert resp.status_code == 201, resp.text
    assert resolver == []  # allowed targets are not even resolved at registration


@pytest.mark.parametrize(("url", "resolved"), [
    ("https://rebind.example/hook", ["rebind.example"]),  # accepted once, now resolves to loopback
    ("https://hooks.example:8080/hook", ["hooks.example"]),  # a public address, on a port refused
    ("https://[::ffff:7f00:1]/hook", []),  # a literal address: judged as it is
])
async def test_every_fetch_is_checked_again_before_connecting(resolver, url, resolved):
    async with httpx.AsyncClient(transport=targets.transport(False)) as http:
        with pytest.raises(httpx.ConnectError, match="refused"):
            await http.post(url, content=b"{}")
    assert resolver == resolved


async def test_a_jwks_url_is_refused_at_registration_unless_private_targets_are_allowed(api, resolver):
    org = await api.org()
    engine = make_engine(api.db.owner_url, api.db.settings(), pool=False)
    try:
        for url in ("https://keys.example/jwks", "http://127.0.0.1:9/jwks", "https://metadata.example/jwks"):
            async with engine.begin() as conn:
                with pytest.raises(ValueError, match="JWKS URL is refused"):
                    await create_app_record(conn, org_id=org.id, name="x", scopes="system/Client.rs", jwks_url=url)
        async with engine.begin() as conn:
            await create_app_record(conn, org_id=org.id, name="x", scopes="system/Client.rs",
                                    jwks_url="https://hooks.example/jwks")
            await create_app_record(conn, org_id=org.id, name="y", scopes="system/Client.rs",
                                    jwks_url="http://127.0.0.1:9/jwks", jwks_allow_private=True)
    finally:
        await engine.dispose()
    assert await api.db.fetchval("SELECT count(*) FROM apps WHERE name IN ('x', 'y')") == 2


async def test_a_jwks_url_is_checked_again_when_fetched(api):
    org = await api.org()
    key = rsa_key()
    with jwks_server(public_jwks(key)) as (url, state):
        creds = await register(api, org, "system/Client.rs", jwks_url=url)  # registered while allowed
        async with Api.start(api.db, jwks_allow_private_targets=False) as strict:
            resp = await strict.http.post("/oauth/token", data=assertion_form(key, creds["client_id"]))
            assert resp.status_code == 401, resp.text
            assert resp.json()["error"] == "invalid_client"
        assert state["hits"] == 0  # never contacted
        resp = await api.http.post("/oauth/token", data=assertion_form(key, creds["client_id"]))
        assert resp.status_code == 200, resp.text  # allowed: the same app works
        assert state["hits"] == 1


async def test_an_external_issuers_jwks_url_goes_through_the_guard(api):
    from joserfc import jwt

    org = await api.org()
    key = rsa_key()
    with jwks_server(public_jwks(key)) as (url, state):
        conf = ExternalIssuer(issuer="https://ehr.example/oauth2", jwks_url=url, audience="aud", org_claim="tenant")
        now = int(time.time())
        token = jwt.encode({"alg": "RS384", "kid": key.kid}, {
            "iss": conf.issuer, "aud": "aud", "exp": now + 300, "iat": now, "tenant": str(org.id),
            "scope": "system/Client.rs", "sub": "ehr"}, key, algorithms=["RS384"])
        async with Api.start(api.db, external_issuers=[conf], jwks_allow_private_targets=False) as rs:
            assert (await rs.client(token).get("/v1/clients")).status_code == 401
        assert state["hits"] == 0
        async with Api.start(api.db, external_issuers=[conf]) as rs:
            assert (await rs.client(token).get("/v1/clients")).status_code == 200
