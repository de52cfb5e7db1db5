"""Test plumbing: the embedded server, template clones, and an HTTP client with token helpers."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import httpx
from fastapi import FastAPI

from service.app import create_app
from service.ops import migrate
from service.ops.embedded import DATABASE, OWNER_ROLE, start_embedded
from service.settings import Settings

APP_ROLE = "strengths_app"
ALL = "system/*.cruds"  # every resource, every operation: the token most tests write and read with


@dataclass
class Database:
    name: str
    owner_url: str  # SQLAlchemy URL, owner role
    app_url: str  # SQLAlchemy URL, service role
    socket_dir: str

    def dsn(self, role: str = OWNER_ROLE) -> str:
        return f"postgresql://{role}@/{self.name}?host={self.socket_dir}"

    async def connect(self, role: str = OWNER_ROLE) -> asyncpg.Connection:
        return await asyncpg.connect(self.dsn(role))

    async def fetch(self, sql: str, *args: Any, role: str = OWNER_ROLE) -> list[asyncpg.Record]:
        conn = await self.connect(role)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    async def fetchval(self, sql: str, *args: Any, role: str = OWNER_ROLE) -> Any:
        conn = await self.connect(role)
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()

    def settings(self, **overrides: Any) -> Settings:
        """Test apps run no background webhook dispatcher nor export runner unless a test asks for one
        (tests/support/webhooks.FAST, tests/support/bulk.py),
        so statement counts and timings see only the test's own requests."""
        # JWKS documents are served on loopback by the tests (tests/support/oauth.jwks_server); the outbound guard
        # itself is tested with it off (tests/isolation/test_isolation_outbound.py).
        defaults: dict[str, Any] = {"webhooks_dispatcher": False, "public_url": "http://testserver",
                                    "jwks_allow_private_targets": True,
                                    "bulk_export_runner": False}
        return Settings(database_url=self.app_url, migration_database_url=self.owner_url, host="testserver",
                        port=80, **{**defaults, **overrides})


@dataclass
class TestServer:
    socket_dir: str
    handle: Any

    @classmethod
    def start(cls, data_dir: Path) -> TestServer:
        handle, urls = start_embedded(data_dir, APP_ROLE)
        return cls(socket_dir=urls.socket_dir, handle=handle)

    def url(self, database: str, role: str) -> str:
        return f"postgresql+asyncpg://{role}@/{database}?host={self.socket_dir}"

    def make_template(self, name: str) -> None:
        self.handle.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE);\n"
                         f"CREATE DATABASE {name} OWNER {OWNER_ROLE};")
        migrate.upgrade(self.url(name, OWNER_ROLE), app_role=APP_ROLE)

    async def _admin(self) -> asyncpg.Connection:
        return await asyncpg.connect(f"postgresql://postgres@/{DATABASE}?host={self.socket_dir}")

    async def clone(self, template: str, name: str) -> Database:
        conn = await self._admin()
        try:
            await conn.execute(f"CREATE DATABASE {name} TEMPLATE {template} OWNER {OWNER_ROLE} STRATEGY FILE_COPY")
        finally:
            await conn.close()
        return Database(name=name, owner_url=self.url(name, OWNER_ROLE), app_url=self.url(name, APP_ROLE),
                        socket_dir=self.socket_dir)

    async def drop(self, name: str) -> None:
        conn = await self._admin()
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await conn.close()


@dataclass
class Org:
    id: UUID
    name: str


@dataclass
class Api:
    """An HTTP client on one app instance, with helpers to register orgs and apps and get tokens."""

    app: FastAPI
    http: httpx.AsyncClient
    db: Database
    _tokens: dict[tuple[str, str, str | None], str] = field(default_factory=dict)

    @classmethod
    @asynccontextmanager
    async def start(cls, db: Database, app: FastAPI | None = None, **settings: Any) -> AsyncIterator[Api]:
        app = app or create_app(db.settings(**settings))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                yield cls(app=app, http=http, db=db)

    async def org(self, name: str = "Org") -> Org:
        row = await self.db.fetch("INSERT INTO organizations (id, name) VALUES (gen_random_uuid(), $1) RETURNING id",
                                  name)
        return Org(id=row[0]["id"], name=name)

    async def register_app(self, org: Org, scopes: str, patient: UUID | None = None) -> dict[str, Any]:
        from service.auth.apps import create_app_record
        from service.db import make_engine

        engine = make_engine(self.db.owner_url, self.db.settings(), pool=False)
        try:
            async with engine.begin() as conn:
                return await create_app_record(conn, org_id=org.id, name="test app", scopes=scopes,
                                               patient_id=patient)
        finally:
            await engine.dispose()

    async def token(self, org: Org, scopes: str, patient: UUID | None = None) -> str:
        """A token with exactly the scopes asked for, through the real token endpoint."""
        key = (str(org.id), scopes, str(patient) if patient else None)
        if key not in self._tokens:
            creds = await self.register_app(org, scopes or "system/Client.r", patient)
            basic = base64.b64encode(f"{creds['client_id']}:{creds['client_secret']}".encode()).decode()
            resp = await self.http.post(
                "/oauth/token", data={"grant_type": "client_credentials", **({"scope": scopes} if scopes else {})},
                headers={"Authorization": f"Basic {basic}"},
            )
            assert resp.status_code == 200, resp.text
            self._tokens[key] = resp.json()["access_token"]
        return self._tokens[key]

    def client(self, token: str | None) -> AuthedClient:
        return AuthedClient(self.http, token)


@dataclass
class AuthedClient:
    http: httpx.AsyncClient
    token: str | None

    def _headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        out = dict(headers or {})
        if self.token:
            out.setdefault("Authorization", f"Bearer {self.token}")
        return out

    async def request(
        self, method: str, url: str, *, headers: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        return await self.http.request(method, url, headers=self._headers(headers), **kw)

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("GET", url, **kw)

    async def post(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("POST", url, **kw)

    async def patch(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("PATCH", url, **kw)

    async def put(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("PUT", url, **kw)

    async def delete(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("DELETE", url, **kw)


def gather(*aws: Any) -> Any:
    return asyncio.gather(*aws)
