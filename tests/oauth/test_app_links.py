"""`/v1/clients/{id}/app-links`: create (the link code once), list, revoke; clinician-side tokens only; another
organization's client is 404, a deleted client 410; Idempotency-Key replays; audited; the code is stored hashed
and never reaches the logs, the audit rows or the stored idempotent reply in the clear."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import uuid
from datetime import datetime, timedelta

import pytest

from service.auth.app_links import LINK_ALPHABET
from service.logs import configure_logging
from tests.support.factories import create
from tests.support.harness import Api
from tests.support.oauth import register
from tests.support.patient_apps import STAFF_SCOPES, authorize, new_link, pkce, public_app, redirected

CODE = re.compile(rf"^([{LINK_ALPHABET}]{{5}}-){{4}}[{LINK_ALPHABET}]{{5}}$")
FIELDS = {"id", "app_id", "client_id", "created_at", "expires_at", "redeemed_at", "revoked_at"}


async def world(api: Api):
    org = await api.org()
    staff = api.client(await api.token(org, STAFF_SCOPES))
    client = await create(staff, "clients")
    app = await public_app(api, org)
    return org, staff, client, app


async def everything_stored(api: Api) -> str:
    """Every row of every table, as text (owner role): where a secret must not be found."""
    tables = [r["tablename"] for r in await api.db.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    parts = []
    for table in tables:
        rows = await api.db.fetch(f'SELECT t::text AS row FROM "{table}" t')  # noqa: S608 - names from pg_tables
        parts.extend(r["row"] for r in rows)
    binary = await api.db.fetch("SELECT table_name, column_name FROM information_schema.columns "
                                "WHERE table_schema = 'public' AND data_type = 'bytea'")
    for col in binary:  # ::text shows bytea as hex: read the bytes themselves too
        rows = await api.db.fetch(f'SELECT "{col["column_name"]}" AS b FROM "{col["table_name"]}"')  # noqa: S608
        parts.extend(bytes(r["b"]).decode("latin-1") for r in rows if r["b"] is not None)
    return "\n".join(parts)


async def test_create_list_revoke(api):
    _org, staff, client, app = await world(api)
    link = await new_link(staff, client["id"], app["client_id"])
    assert set(link) == FIELDS | {"link_code"}
    assert CODE.match(link["link_code"])  # 25 symbols of 32: 125 bits
    assert (link["app_id"], link["client_id"]) == (app["client_id"], client["id"])
    assert link["redeemed_at"] is None
    assert link["revoked_at"] is None
    ttl = datetime.fromisoformat(link["expires_at"]) - datetime.fromisoformat(link["created_at"])
    assert ttl == timedelta(hours=72)

    second = await new_link(staff, client["id"], app["client_id"])
    assert second["link_code"] != link["link_code"]
    listed = await staff.get(f"/v1/clients/{client['id']}/app-links")
    assert listed.status_code == 200
    assert listed.headers["cache-control"] == "no-store"
    data = listed.json()["data"]
    assert [x["id"] for x in data] == [second["id"], link["id"]]
    assert all(set(x) == FIELDS for x in data)  # no codes in lists

    path = f"/v1/clients/{client['id']}/app-links/{link['id']}"
    assert (await staff.delete(path)).status_code == 204
    assert (await staff.delete(path)).status_code == 204  # idempotent
    revoked = (await staff.get(f"/v1/clients/{client['id']}/app-links")).json()["data"][1]
    assert revoked["revoked_at"] is not None
    assert (await staff.delete(f"/v1/clients/{client['id']}/app-links/{uuid.uuid4()}")).status_code == 404
    other = await create(staff, "clients")
    assert (await staff.delete(f"/v1/clients/{other['id']}/app-links/{second['id']}")).status_code == 404


async def test_the_code_is_stored_hashed_and_never_logged_or_audited(api):
    stream = io.StringIO()
    handler = configure_logging("DEBUG", stream)
    try:
        _org, staff, client, app = await world(api)
        link = await new_link(staff, client["id"], app["client_id"], **{"Idempotency-Key": "link-1"})
        replay = await staff.post(f"/v1/clients/{client['id']}/app-links", json={"app_id": app["client_id"]},
                                  headers={"Idempotency-Key": "link-1"})
        redeemed = await authorize(api.http, app, link["link_code"], pkce()[1])  # the code travels in a URL
        assert redirected(redeemed)["code"]
    finally:
        logging.getLogger().removeHandler(handler)
        configure_logging()
    code = link["link_code"]
    plain = code.replace("-", "")
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == link  # the same reply, code included
    stored = await everything_stored(api)
    for form in (code, plain, code.lower(), plain.lower()):
        assert form not in stored
        assert form not in stream.getvalue()
    sealed = await api.db.fetchval("SELECT body FROM idempotency_keys")
    assert bytes(sealed).startswith(b"gAAAAA")  # a Fernet token: the stored reply is encrypted
    digest = hashlib.sha256(plain.encode()).hexdigest()
    assert await api.db.fetchval("SELECT count(*) FROM app_links WHERE code_hash = $1", "sha256$" + digest) == 1
    rows = await api.db.fetch("SELECT * FROM audit_events WHERE resource_type = 'AppLink'")
    assert [(r["action"], r["client_ids"]) for r in rows] == [("create", [uuid.UUID(client["id"])])]
    assert code not in json.dumps([dict(r) for r in rows], default=str)
    assert "/v1/clients/" in stream.getvalue()  # the access log was captured


async def test_idempotency_key_conflicts_and_one_link(api):
    _org, staff, client, app = await world(api)
    path = f"/v1/clients/{client['id']}/app-links"
    first = await staff.post(path, json={"app_id": app["client_id"]}, headers={"Idempotency-Key": "k"})
    assert first.status_code == 201
    other_app = await public_app(api, _org)
    changed = await staff.post(path, json={"app_id": other_app["client_id"]}, headers={"Idempotency-Key": "k"})
    assert changed.status_code == 422
    assert await api.db.fetchval("SELECT count(*) FROM app_links") == 1


async def test_app_id_must_name_a_public_app_of_the_organization(api):
    org, staff, client, _app = await world(api)
    path = f"/v1/clients/{client['id']}/app-links"
    confidential = await register(api, org, "system/Client.rs")
    elsewhere = await public_app(api, await api.org("Other"))
    for app_id in (confidential["client_id"], elsewhere["client_id"], "app_unknown"):
        resp = await staff.post(path, json={"app_id": app_id})
        assert resp.status_code == 422, resp.text
        assert resp.json()["code"] == "not_a_public_app"
    assert (await staff.post(path, json={"app_id": _app["client_id"], "client_id": "x"})).status_code == 422
    assert (await staff.post(path, json={})).status_code == 422
    assert await api.db.fetchval("SELECT count(*) FROM app_links") == 0


async def test_deleted_client_is_gone_under_its_path(api):
    _org, staff, client, app = await world(api)
    link = await new_link(staff, client["id"], app["client_id"])
    assert (await staff.delete(f"/v1/clients/{client['id']}")).status_code == 204
    base = f"/v1/clients/{client['id']}/app-links"
    assert (await staff.post(base, json={"app_id": app["client_id"]})).status_code == 410
    assert (await staff.get(base)).status_code == 410
    assert (await staff.delete(f"{base}/{link['id']}")).status_code == 410


@pytest.mark.parametrize("method", ["POST", "GET", "DELETE"])
async def test_security(api, method):
    org, staff, client, app = await world(api)
    link = await new_link(staff, client["id"], app["client_id"])
    other_org = await api.org("B")
    other_staff = api.client(await api.token(other_org, STAFF_SCOPES))
    foreign = await create(other_staff, "clients")

    def call(c, client_id, link_id=None):
        path = f"/v1/clients/{client_id}/app-links"
        if method == "POST":
            return c.post(path, json={"app_id": app["client_id"]})
        if method == "GET":
            return c.get(path)
        return c.delete(f"{path}/{link_id or link['id']}")

    ok = {"POST": 201, "GET": 200, "DELETE": 204}[method]
    # Another organization's client: 404, exactly as an unknown id.
    theirs, unknown = await call(staff, foreign["id"]), await call(staff, uuid.uuid4())
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["type"] == unknown.json()["type"]
    assert (await call(other_staff, client["id"])).status_code == 404
    # No token: 401; a token without the scope: 403 naming it.
    none = await call(api.client(None), client["id"])
    assert none.status_code == 401
    assert none.headers["www-authenticate"].startswith("Bearer")
    perm = "r" if method == "GET" else "u"
    narrow = await call(api.client(await api.token(org, "system/Strength.cruds")), client["id"])
    assert narrow.status_code == 403
    assert f'scope="system/Client.{perm}"' in narrow.headers["www-authenticate"]
    # A patient token, even one holding patient/Client.cruds: 403.
    patient = await register(api, org, "patient/Client.cruds", patient=uuid.UUID(client["id"]))
    ptoken = (await api.http.post("/oauth/token", data={"grant_type": "client_credentials"},
                                  auth=(patient["client_id"], patient["client_secret"]))).json()["access_token"]
    refused = await call(api.client(ptoken), client["id"])
    assert refused.status_code == 403, refused.text
    # user/ context works like system/.
    user = api.client(await api.token(org, "user/Client.ru"))
    assert (await call(user, client["id"])).status_code == ok


async def test_purging_a_client_removes_its_links_and_kills_its_apps_tokens(api, monkeypatch):
    import asyncio

    from service import cli
    from tests.support.patient_apps import linked

    setup = await linked(api)
    assert await api.db.fetchval("SELECT count(*) FROM refresh_tokens") == 1
    monkeypatch.setenv("DATABASE_URL", api.db.app_url)
    monkeypatch.setenv("MIGRATION_DATABASE_URL", api.db.owner_url)
    await asyncio.to_thread(cli.main, ["purge-client", setup.client["id"], "--by", "dpo@clinic.example"])
    for table in ("app_links", "app_grants", "authorization_codes", "refresh_tokens"):
        assert await api.db.fetchval(f"SELECT count(*) FROM {table}") == 0, table  # noqa: S608
    assert (await api.client(setup.tokens["access_token"]).get("/v1/measurements")).status_code == 401


async def test_a_reply_sealed_under_a_removed_key_is_a_409_not_a_500(api):
    from cryptography.fernet import Fernet

    _org, staff, client, app = await world(api)
    path = f"/v1/clients/{client['id']}/app-links"
    assert (await staff.post(path, json={"app_id": app["client_id"]}, headers={"Idempotency-Key": "r"})).status_code \
        == 201
    conn = await api.db.connect()
    try:  # as if the encryption key it was sealed with had been rotated out
        await conn.execute("UPDATE idempotency_keys SET body = $1", Fernet(Fernet.generate_key()).encrypt(b"{}"))
    finally:
        await conn.close()
    replay = await staff.post(path, json={"app_id": app["client_id"]}, headers={"Idempotency-Key": "r"})
    assert replay.status_code == 409, replay.text
    assert await api.db.fetchval("SELECT count(*) FROM app_links") == 1
