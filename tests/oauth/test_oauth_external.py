"""Resource-server mode: JWTs from an operator-configured external issuer (an EHR's own authorization
server) are verified with its JWKS and mapped to an organization by a named claim; refused when the issuer
is not configured."""

from __future__ import annotations

import json

import pytest

from service.settings import ExternalIssuer
from tests.support.harness import Api
from tests.support.oauth import AUD, EHR, ehr_token, jwks_server, public_jwks, rsa_key


@pytest.fixture
def ehr_key():
    return rsa_key()


@pytest.fixture
def issuer_conf(tmp_path, ehr_key):
    path = tmp_path / "ehr-jwks.json"
    path.write_text(json.dumps(public_jwks(ehr_key)))
    return ExternalIssuer(issuer=EHR, jwks_file=path, audience=AUD, org_claim="tenant", patient_claim="patient_id",
                          scope_claim="scp")


async def test_external_token_works_when_configured_and_is_refused_when_not(api, issuer_conf, ehr_key):
    org, other = await api.org("clinic"), await api.org("other")
    staff = api.client(await api.token(org, "system/Client.cruds"))
    ana = (await staff.post("/v1/clients", json={"display_name": "Ana"})).json()
    token = ehr_token(ehr_key, org.id)

    assert (await api.client(token).get("/v1/clients")).status_code == 401  # this instance trusts no one

    async with Api.start(api.db, external_issuers=[issuer_conf]) as rs:
        ehr = rs.client(token)
        resp = await ehr.get("/v1/clients")
        assert resp.status_code == 200, resp.text
        assert [c["id"] for c in resp.json()["data"]] == [ana["id"]]
        # the organization comes from the named claim: another org's EHR token sees only that org
        assert (await rs.client(ehr_token(ehr_key, other.id)).get("/v1/clients")).json()["data"] == []
        assert (await rs.client(ehr_token(ehr_key, other.id)).get(f"/v1/clients/{ana['id']}")).status_code == 404
        # scopes are the token's own: no create
        assert (await ehr.post("/v1/clients", json={"display_name": "X"})).status_code == 403
        # our own tokens still work beside it
        assert (await rs.client(await rs.token(org, "system/Client.s")).get("/v1/clients")).status_code == 200


@pytest.mark.parametrize(
    "bad",
    ["wrong audience", "expired", "unknown key", "no org claim", "unconfigured issuer", "bad org claim"],
)
async def test_external_token_refusals(api, issuer_conf, ehr_key, bad):
    org = await api.org()
    token = {
        "wrong audience": lambda: ehr_token(ehr_key, org.id, aud="https://someone-else"),
        "expired": lambda: ehr_token(ehr_key, org.id, lifetime=-60),
        "unknown key": lambda: ehr_token(rsa_key(), org.id),
        "no org claim": lambda: ehr_token(ehr_key, org.id, tenant=None),
        "unconfigured issuer": lambda: ehr_token(ehr_key, org.id, iss="https://other-ehr.example"),
        "bad org claim": lambda: ehr_token(ehr_key, "not-a-uuid"),
    }[bad]()
    async with Api.start(api.db, external_issuers=[issuer_conf]) as rs:
        resp = await rs.client(token).get("/v1/clients")
        assert resp.status_code == 401, resp.text
        assert resp.headers["www-authenticate"].startswith("Bearer")


async def test_external_patient_claim_limits_to_that_client(api, issuer_conf, ehr_key):
    org = await api.org()
    staff = api.client(await api.token(org, "system/Client.cruds"))
    ana = (await staff.post("/v1/clients", json={"display_name": "Ana"})).json()
    ben = (await staff.post("/v1/clients", json={"display_name": "Ben"})).json()
    token = ehr_token(ehr_key, org.id, scope=("patient/Client.rs", "system/Client.rs"), patient_id=ana["id"])
    async with Api.start(api.db, external_issuers=[issuer_conf]) as rs:
        me = rs.client(token)
        assert [c["id"] for c in (await me.get("/v1/clients")).json()["data"]] == [ana["id"]]
        assert (await me.get(f"/v1/clients/{ben['id']}")).status_code == 404


async def test_external_issuer_by_jwks_url(api, ehr_key):
    org = await api.org()
    with jwks_server(public_jwks(ehr_key)) as (url, state):
        conf = ExternalIssuer(issuer=EHR, jwks_url=url, audience=AUD, org_claim="tenant", scope_claim="scp")
        async with Api.start(api.db, external_issuers=[conf]) as rs:
            for _ in range(3):
                assert (await rs.client(ehr_token(ehr_key, org.id)).get("/v1/clients")).status_code == 200
            assert state["hits"] == 1


def test_external_issuers_from_the_environment(monkeypatch, tmp_path):
    from service.settings import Settings

    monkeypatch.setenv("EXTERNAL_ISSUERS", json.dumps([{"issuer": EHR, "jwks_url": "https://ehr.example/jwks",
                                                         "audience": AUD, "org_claim": "tenant"}]))
    settings = Settings(_env_file=None)
    assert settings.external_issuers[0].org_claim == "tenant"
    assert settings.external_issuers[0].issuer == EHR
