"""`strengths-api apps create` with --jwks-file, --jwks-url and --patient, end to end."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from service import cli
from tests.support.harness import Org
from tests.support.oauth import assertion_form, ec_key, public_jwks, rsa_key
from tests.support.patient_apps import STAFF_SCOPES, exchange, new_link, pkce, redirected
from tests.support.patient_apps import authorize as authorize_request


@pytest.fixture
def run_cli(api, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", api.db.app_url)
    monkeypatch.setenv("MIGRATION_DATABASE_URL", api.db.owner_url)

    async def run(*argv: str) -> dict:
        capsys.readouterr()
        await asyncio.to_thread(cli.main, list(argv))
        return json.loads(capsys.readouterr().out)

    return run


async def test_apps_create_with_a_jwks_file_then_private_key_jwt(api, run_cli, tmp_path):
    org = await run_cli("orgs", "create", "Riverside")
    key = ec_key()
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(public_jwks(key)))
    app = await run_cli("apps", "create", "--org", org["id"], "--name", "EHR sync", "--scopes", "system/*.rs",
                        "--jwks-file", str(path))
    assert "client_secret" not in app
    resp = await api.http.post("/oauth/token", data=assertion_form(key, app["client_id"]))
    assert resp.status_code == 200, resp.text
    assert resp.json()["scope"] == "system/*.rs"


async def test_apps_create_refuses_private_keys_and_bad_documents(api, run_cli, tmp_path):
    org = await run_cli("orgs", "create", "Riverside")
    key = rsa_key()
    for name, document in (("private", {"keys": [key.as_dict(private=True)]}),
                           ("nokid", {"keys": [{k: v for k, v in key.as_dict().items() if k != "kid"}]}),
                           ("junk", {"keys": "nope"})):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(document))
        with pytest.raises(SystemExit, match="error:"):
            await run_cli("apps", "create", "--org", org["id"], "--name", "x", "--scopes", "system/*.rs",
                          "--jwks-file", str(path))
    assert await api.db.fetchval("SELECT count(*) FROM apps") == 0


async def test_apps_create_with_a_patient(api, run_cli):
    org = await api.org()
    staff = api.client(await api.token(org, "system/Client.cruds"))
    ana = (await staff.post("/v1/clients", json={"display_name": "Ana"})).json()
    app = await run_cli("apps", "create", "--org", str(org.id), "--name", "Mood app", "--scopes",
                        "patient/Client.r", "--patient", ana["id"])
    assert app["patient"] == ana["id"]
    resp = await api.http.post("/oauth/token", data={"grant_type": "client_credentials"},
                               auth=(app["client_id"], app["client_secret"]))
    assert resp.json()["patient"] == ana["id"]
    with pytest.raises(SystemExit, match="patient/ scopes only"):
        await run_cli("apps", "create", "--org", str(org.id), "--name", "x", "--scopes", "system/Client.r",
                      "--patient", str(uuid.uuid4()))
    with pytest.raises(SystemExit, match="has no client"):
        await run_cli("apps", "create", "--org", str(org.id), "--name", "x", "--scopes", "patient/Client.r",
                      "--patient", str(uuid.uuid4()))


async def test_apps_create_public_then_the_patient_app_flow(api, run_cli):
    org = await run_cli("orgs", "create", "Riverside")
    app = await run_cli("apps", "create", "--org", org["id"], "--name", "Mood diary", "--public",
                        "--redirect-uri", "https://mood.example/callback", "--redirect-uri", "com.example.mood:/cb",
                        "--scopes", "patient/Measurement.crs patient/Client.r offline_access")
    assert "client_secret" not in app
    assert app["public"] is True
    assert app["token_endpoint_auth_method"] == "none"
    assert app["redirect_uris"] == ["https://mood.example/callback", "com.example.mood:/cb"]
    assert app["scopes"] == "patient/Measurement.crs patient/Client.r offline_access"
    staff = api.client(await api.token(Org(id=uuid.UUID(org["id"]), name="Riverside"), STAFF_SCOPES))
    client = (await staff.post("/v1/clients", json={"display_name": "Ana"})).json()
    link = await new_link(staff, client["id"], app["client_id"])
    verifier, challenge = pkce()
    code = redirected(await authorize_request(api.http, app, link["link_code"], challenge))["code"]
    token = await exchange(api.http, app, code, verifier)
    assert token.status_code == 200, token.text
    assert token.json()["patient"] == client["id"]
    assert token.json()["refresh_token"]


@pytest.mark.parametrize(("extra", "message"), [
    (["--scopes", "patient/Client.r"], "at least one --redirect-uri"),
    (["--scopes", "system/Client.r", "--redirect-uri", "https://a.example/cb"], "patient/ scopes only"),
    (["--scopes", "patient/Client.r", "--redirect-uri", "http://a.example/cb"], "loopback"),
    (["--scopes", "patient/Client.r", "--redirect-uri", "https://a.example/cb#x"], "fragment"),
    (["--scopes", "patient/Client.r", "--redirect-uri", "https://a.example/cb", "--patient", str(uuid.uuid4())],
     "no --patient"),
])
async def test_apps_create_public_refuses(api, run_cli, extra, message):
    org = await run_cli("orgs", "create", "Riverside")
    with pytest.raises(SystemExit, match=message):
        await run_cli("apps", "create", "--org", org["id"], "--name", "x", "--public", *extra)
