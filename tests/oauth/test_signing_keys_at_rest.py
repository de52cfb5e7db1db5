"""Signing keys out of reach of SQL: the private JWKs are stored encrypted with SIGNING_KEY_ENCRYPTION_KEY, which
the database never sees. Connected as the service role (what one SQL injection gets), nothing it can select yields
a usable private key, and nothing it can write makes the service sign or verify with a key of its choosing."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import uuid

import asyncpg
import pytest
from cryptography.fernet import Fernet, InvalidToken
from joserfc.jwk import ECKey

from service import cli, migrate
from service.auth.keycrypt import KEY_FILE_NAME, configured_keys, ensure_key_file
from service.lifecycle import with_embedded_key
from service.settings import Settings
from tests.support.harness import APP_ROLE, Api
from tests.support.oauth import access_claims, sign
from tests.support.patient_apps import linked


def private_numbers(api: Api) -> list[str]:
    """The private scalars of every key the running service holds (what must never be readable)."""
    return [k.as_dict(private=True)["d"] for k in api.app.state.ctx.keys.keyset.keys]


def variants(secret: str) -> list[str]:
    """The scalar as base64url (JWK), standard base64 and hex: any way a dump might spell it."""
    raw = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
    return [secret, base64.b64encode(raw).decode().rstrip("="), raw.hex()]


async def selectable_as_service_role(api: Api) -> str:
    """Every row of every relation the service role may SELECT, once per organization setting (row-level
    security shows each organization's rows under its own setting), and every function result it may call
    without arguments: all of it as text."""
    orgs = [str(r["id"]) for r in await api.db.fetch("SELECT id FROM organizations")]
    conn = await api.db.connect(APP_ROLE)
    out: list[str] = []
    try:
        assert await conn.fetchval("SELECT current_user") == APP_ROLE
        relations = [r["name"] for r in await conn.fetch(
            "SELECT quote_ident(c.relname) AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'p') "
            "AND has_table_privilege(current_user, c.oid, 'SELECT')")]
        assert "signing_keys" in relations  # it may select the table: what it holds must be useless
        for org in ["", *orgs]:
            async with conn.transaction():
                await conn.execute("SELECT set_config('app.org_id', $1, true)", org)
                for name in relations:
                    out.extend(r["row"] for r in await conn.fetch(f"SELECT t::text AS row FROM {name} t"))  # noqa: S608
        functions = [r["name"] for r in await conn.fetch(
            "SELECT p.proname AS name FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'public' AND p.pronargs = 0 AND p.prokind = 'f' AND p.prorettype <> 'trigger'::regtype "
            "AND has_function_privilege(current_user, p.oid, 'EXECUTE')")]
        for fn in functions:
            out.append(str(await conn.fetchval(f"SELECT {fn}()::text")))  # noqa: S608
    finally:
        await conn.close()
    return "\n".join(out)


async def test_nothing_the_service_role_can_select_yields_a_private_key(api):
    await linked(api)  # tokens issued, links and grants stored: a realistic database
    secrets_held = private_numbers(api)
    assert secrets_held
    dump = await selectable_as_service_role(api)
    for secret in secrets_held:
        for spelling in variants(secret):
            assert spelling not in dump
    assert '"d"' not in dump
    assert '"kty"' not in dump

    conn = await api.db.connect(APP_ROLE)
    try:
        rows = await conn.fetch("SELECT * FROM signing_keys")
    finally:
        await conn.close()
    assert {r["kid"] for r in rows} >= {k.kid for k in api.app.state.ctx.keys.keyset.keys}
    for row in rows:
        assert set(row.keys()) == {"kid", "alg", "encrypted_jwk", "created_at", "retired_at", "active"}
        with pytest.raises(InvalidToken):  # any key but the configured one: useless
            Fernet(Fernet.generate_key()).decrypt(row["encrypted_jwk"].encode())
        opened = json.loads(api.app.state.ctx.at_rest.signing_keys.decrypt(row["encrypted_jwk"].encode()))
        assert opened["d"] in secrets_held  # and it is the real key, for the one holding the encryption key


async def test_a_key_written_with_sql_alone_neither_signs_nor_verifies(api):
    org = await api.org()
    attacker_key = ECKey.generate_key("P-256", parameters={"kid": "sql-injected", "alg": "ES256"})
    conn = await api.db.connect(APP_ROLE)
    try:
        for sealed in (json.dumps(attacker_key.as_dict(private=True)), "gAAAAA-not-a-fernet-token"):
            await conn.execute("INSERT INTO signing_keys (kid, alg, encrypted_jwk, active) VALUES ($1, 'ES256', $2, "
                               "true) ON CONFLICT (kid) DO UPDATE SET encrypted_jwk = EXCLUDED.encrypted_jwk",
                               "sql-injected", sealed)
    finally:
        await conn.close()
    keys = api.app.state.ctx.keys
    before = keys.current.kid
    await keys.load()
    assert keys.current.kid == before  # still signs with its own key
    assert "sql-injected" not in {k["kid"] for k in keys.public_jwks()["keys"]}
    forged = sign(attacker_key, access_claims(api, org, "system/Client.rs"), kid="sql-injected")
    assert (await api.client(forged).get("/v1/clients")).status_code == 401
    async with Api.start(api.db) as fresh:  # a new instance too
        assert (await fresh.client(forged).get("/v1/clients")).status_code == 401


async def test_the_wrong_encryption_key_stops_the_start_with_a_clear_error(api):
    other = Fernet.generate_key().decode()
    with pytest.raises(RuntimeError, match="does not decrypt the active token signing key"):
        async with Api.start(api.db, signing_key_encryption_key=other):
            pass


async def test_rotating_the_encryption_key(api, monkeypatch, capsys):
    """Put a new key first, re-encrypt, drop the old key: tokens issued before keep verifying."""
    setup = await linked(api)
    old = configured_keys(Settings())[0]
    capsys.readouterr()
    await asyncio.to_thread(cli.main, ["keys", "new-encryption-key"])
    new = capsys.readouterr().out.strip()
    Fernet(new)
    monkeypatch.setenv("DATABASE_URL", api.db.app_url)
    monkeypatch.setenv("MIGRATION_DATABASE_URL", api.db.owner_url)
    monkeypatch.setenv("SIGNING_KEY_ENCRYPTION_KEY", f"{new},{old}")
    await asyncio.to_thread(cli.main, ["keys", "reencrypt"])
    result = json.loads(capsys.readouterr().out)
    assert result["reencrypted"]
    assert result["undecryptable"] == []
    async with Api.start(api.db, signing_key_encryption_key=new) as fresh:  # the old key is gone
        me = setup.client["id"]
        assert (await fresh.client(setup.tokens["access_token"]).get(f"/v1/clients/{me}")).status_code == 200


def test_the_embedded_default_generates_its_key_once(tmp_path):
    settings = with_embedded_key(Settings(data_dir=tmp_path, signing_key_encryption_key=None,
                                          signing_key_encryption_key_file=None))
    path = settings.signing_key_encryption_key_file
    assert path == tmp_path.resolve() / KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = path.read_text().strip()
    Fernet(key)
    assert ensure_key_file(path).read_text().strip() == key  # never overwritten
    configured = Settings(data_dir=tmp_path, signing_key_encryption_key=Fernet.generate_key().decode())
    assert with_embedded_key(configured) is configured  # a configured key wins


@pytest.mark.parametrize("with_key", [True, False])
async def test_migration_0012_encrypts_existing_plaintext_keys_or_retires_them(server, with_key):
    name = f"keys_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    server.handle.psql(f"CREATE DATABASE {name} OWNER strengths_owner;")
    url = server.url(name, "strengths_owner")
    key = ECKey.generate_key("P-256", parameters={"kid": "legacy", "use": "sig", "alg": "ES256"})
    fernet_key = Fernet.generate_key().decode()
    try:
        migrate.upgrade(url, "0011", app_role=APP_ROLE)
        conn = await asyncpg.connect(f"postgresql://strengths_owner@/{name}?host={server.socket_dir}")
        try:
            await conn.execute("INSERT INTO signing_keys (kid, alg, private_jwk) VALUES ('legacy', 'ES256', $1::jsonb)",
                               json.dumps(key.as_dict(private=True)))
            migrate.upgrade(url, "0012", app_role=APP_ROLE, encryption_keys=[fernet_key] if with_key else None)
            rows = await conn.fetch("SELECT kid, encrypted_jwk FROM signing_keys")
            if not with_key:
                assert rows == []  # no plaintext survives; the service's next start makes a new, encrypted key
                return
            assert [r["kid"] for r in rows] == ["legacy"]
            assert json.loads(Fernet(fernet_key).decrypt(rows[0]["encrypted_jwk"].encode()))["d"] == \
                key.as_dict(private=True)["d"]
            migrate.downgrade(url, "0011", app_role=APP_ROLE, encryption_keys=[fernet_key])
            back = await conn.fetchval("SELECT private_jwk::text FROM signing_keys WHERE kid = 'legacy'")
            assert json.loads(back)["d"] == key.as_dict(private=True)["d"]
        finally:
            await conn.close()
    finally:
        server.handle.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE);")
