"""What a new process's first request waits for: nothing the app could have built before.

The 405 answers' method table (service/api/methods.py) is the OpenAPI document's, read off the documented routes when
the app is made: no request builds the document (about a second of CPU per app; on a busy two-core machine the first
request waited longer than a client's 5 s timeout). A served app builds FastAPI's route contexts and writes its OpenAPI
document before it takes a connection (``service.app.served_app``)."""

from __future__ import annotations

import asyncio
import importlib
import sys
from typing import Any

import uvicorn
from fastapi import routing

from service import app as app_module
from service import cli
from service.api.methods import MethodNotAllowedMiddleware, MethodTable
from service.app import create_app
from service.domain.registry import COLLECTIONS
from service.settings import Settings
from tests.conftest import WORKER
from tests.support.harness import ALL, Api


def table_of(app: Any) -> MethodTable:
    [middleware] = [m for m in app.user_middleware if m.cls is MethodNotAllowedMiddleware]
    table: MethodTable = middleware.kwargs["table"]
    return table


def canonical(table: MethodTable) -> tuple[Any, ...]:
    """What decides an answer: the exact paths' methods, and per depth the templates in the order they are tried."""
    return table.exact, {depth: [(p.pattern, methods) for p, methods in rows] for depth, rows in table.by_depth.items()}


def test_the_method_table_is_the_openapi_documents():
    app = create_app(Settings(database_url="postgresql+asyncpg://unused@localhost/unused"))
    routes = table_of(app)
    document = MethodTable(app.openapi()["paths"])
    assert canonical(routes) == canonical(document)
    assert routes.allowed("/v1/measurements/batch") == {"POST"}
    assert routes.allowed("/v1/measurements/0190f1f0-0000-7000-8000-000000000000") == {
        "GET", "HEAD", "PATCH", "DELETE"}


async def test_no_request_builds_the_openapi_document(api):
    refused = await api.http.request("OPTIONS", "/v1/clients")
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET, POST, PUT"
    assert refused.headers["content-type"] == "application/problem+json"
    assert (await api.http.delete("/fhir/R4/metadata")).status_code == 405
    assert (await api.http.get("/.well-known/oauth-authorization-server")).status_code == 200
    assert api.app.openapi_schema is None


def _contexts_built_by_the_first_request(app: Any, monkeypatch: Any) -> int:
    """How many route contexts FastAPI builds while the app serves its first request, to a late route."""
    built = []
    build = routing._EffectiveRouteContext.from_api_route.__func__  # FastAPI's lazy step (0.162 and later)

    def counted(cls: Any, *args: Any, **kwargs: Any) -> Any:
        built.append(1)
        return build(cls, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(routing._EffectiveRouteContext, "from_api_route", classmethod(counted))
        _first_request(app)
    return len(built)


def _first_request(app: Any) -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    path = "/fhir/R4/Patient/0190f1f0-0000-7000-8000-000000000000"
    scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [], "client": ("127.0.0.1", 1), "server": ("testserver", 80), "scheme": "http",
             "http_version": "1.1", "root_path": ""}
    asyncio.run(app(scope, receive, send))  # no lifespan: answered 401 (no token) once routed
    assert sent[0]["status"] == 401


UNUSED = "postgresql+asyncpg://unused@localhost/unused"  # no request here reaches a database


def served_apps(monkeypatch: Any) -> list[Any]:
    """The apps the servers serve, made as they make them: `serve`'s one uvicorn worker (the default; uvicorn's
    ``run`` replaced) and the worker processes' entry point (``service.asgi``: uvicorn's workers, granian)."""
    monkeypatch.setattr(app_module, "freeze_startup_objects", lambda: None)  # not this test process's objects
    served: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.append(app))
    cli._serve_uvicorn(Settings(database_url=UNUSED), "127.0.0.1", 8000, 1)
    monkeypatch.setenv("DATABASE_URL", UNUSED)
    monkeypatch.delitem(sys.modules, "service.asgi", raising=False)
    served.append(importlib.import_module("service.asgi").app)
    return served


def test_a_served_app_has_built_its_routes_before_its_first_request(monkeypatch):
    """FastAPI builds an included router's route contexts at the first request that walks past it (about 0.3 s for
    all of them); every app a server serves has built them before it takes a connection."""
    assert _contexts_built_by_the_first_request(create_app(Settings(database_url=UNUSED)), monkeypatch) > 100
    for app in served_apps(monkeypatch):
        assert _contexts_built_by_the_first_request(app, monkeypatch) == 0


def test_a_served_app_has_written_its_openapi_document_before_its_first_request(monkeypatch):
    """FastAPI writes the OpenAPI document at the first ``GET /openapi.json`` (about 0.7 s, in which the worker's
    event loop serves nothing else); every app a server serves has written it before it takes a connection, the
    same document."""
    lazy = create_app(Settings(database_url=UNUSED))
    assert lazy.openapi_schema is None
    for app in served_apps(monkeypatch):
        assert app.openapi_schema is not None
        assert app.openapi_schema == lazy.openapi()


async def test_apps_of_one_process_share_its_routers_and_nothing_else(server, db):
    """An app's routers are built once per process (``service.app._api_routers``): they hold no setting and no state
    of an app. Two apps alive at once, on two databases and with two body limits, each answer from their own
    database and with their own settings, through the same routers."""
    other_db = await server.clone(f"tmpl_{WORKER}", f"{db.name}_other")
    try:
        async with Api.start(db) as one, Api.start(other_db, max_body_bytes=200) as other:
            routers = [{id(r.original_router) for r in api.app.router.routes if hasattr(r, "original_router")}
                       for api in (one, other)]
            assert {id(r) for r in app_module._api_routers(COLLECTIONS).documented} <= routers[0] & routers[1]
            mine = one.client(await one.token(await one.org("A"), ALL))
            theirs = other.client(await other.token(await other.org("B"), ALL))
            created = await mine.post("/v1/clients", json={"display_name": "Ada", "preferred_future": "x" * 300})
            assert created.status_code == 201, created.text
            record = created.json()["id"]
            assert (await mine.get(f"/v1/clients/{record}")).status_code == 200
            assert (await theirs.get(f"/v1/clients/{record}")).status_code == 404  # not in its database
            refused = await theirs.post("/v1/clients", json={"display_name": "Ada", "preferred_future": "x" * 300})
            assert refused.status_code == 413  # its own body limit; the first app's stays the default
            assert (await theirs.post("/v1/clients", json={"display_name": "Bo"})).status_code == 201
    finally:
        await server.drop(other_db.name)
