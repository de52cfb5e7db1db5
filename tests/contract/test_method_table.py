"""The 405 answers' method table (service/api/methods.py) is the OpenAPI document's, read off the documented routes
when the app is made: no request builds the document. Building it takes about a second of CPU per app, and the
first request of every new process waited for it (on a busy two-core machine, longer than a client's 5 s timeout)."""

from __future__ import annotations

from typing import Any

from service.api.methods import MethodNotAllowedMiddleware, MethodTable
from service.app import create_app
from service.settings import Settings


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
