"""Error details name what is wrong, never echo internals or more than a short excerpt of the input; a 500 says
``Connection: close`` and the server closes the connection cleanly (no reset under the client's next request)."""

from __future__ import annotations

import asyncio
import socket
import uuid

import httpx
import orjson
import pytest

from service.app import create_app
from service.fhir import rest as fhir_routes
from tests.support.fhir import FHIR
from tests.support.harness import ALL, Api
from tests.support.servers import free_port, serve_app

SECRET = "secret internals: password=hunter2"


def short_problem(resp, status: int) -> dict:
    assert resp.status_code == status, resp.text[:500]
    assert len(resp.content) < 4000, len(resp.content)
    text = resp.text.lower()
    for internal in ("recursion", "set_int_max_str_digits", "traceback", "sys.", "decoding"):
        assert internal not in text, resp.text
    return resp.json()


async def test_deep_nesting_and_huge_numbers_are_refused_without_internals(c):
    deep = b"[" * 100_000 + b"]" * 100_000
    body = short_problem(await c.post("/v1/clients", content=deep, headers={"Content-Type": "application/json"}), 400)
    assert "nested too deeply" in body["detail"]
    huge = b'{"display_name": ' + b"9" * 5000 + b"}"
    body = short_problem(await c.post("/v1/clients", content=huge, headers={"Content-Type": "application/json"}), 400)
    assert "too many digits" in body["detail"]
    broken = b'{"display_name": "x",, "' + b"a" * 50_000 + b'": 1}'
    body = short_problem(await c.post("/v1/clients", content=broken, headers={"Content-Type": "application/json"}),
                         400)
    assert "line 1, column 22" in body["detail"]


async def test_a_long_unknown_field_is_named_by_an_excerpt(c):
    name = "k" * 100_000
    body = short_problem(await c.post("/v1/clients", json={"display_name": "x", name: 1}), 422)
    assert body["errors"][0]["field"].startswith("kkkk")
    assert len(body["errors"][0]["field"]) <= 200


async def test_a_bulk_line_of_a_long_unknown_type_is_an_excerpt(c):
    line = orjson.dumps({"type": "t" * 200_000, "resource": {}}) + b"\n"
    resp = await c.post("/v1/bulk/import", content=line, headers={"Content-Type": "application/x-ndjson"})
    assert resp.status_code == 200
    assert len(resp.content) < 4000
    assert orjson.loads(resp.content)["problem"]["code"] == "unknown_type"


@pytest.mark.parametrize("query", ["x" * 200_000, "{ " + "a" * 200_000 + " }",
                                   "{ clients(first: " + "9" * 50_000 + ") { edges { node { id } } } }"])
async def test_graphql_errors_echo_a_short_excerpt_of_the_document(c, query):
    resp = await c.post("/graphql", json={"query": query})
    assert len(resp.content) < 4000, len(resp.content)
    errors = resp.json()["errors"]
    assert errors
    assert all(len(e["message"]) <= 300 for e in errors)


# ---------------------------------------------------------------- a 500 closes the connection


def with_a_failing_route(db) -> object:
    app = create_app(db.settings())

    @app.get("/v1/test-only-failure", include_in_schema=False)
    async def failure() -> None:
        raise RuntimeError(SECRET)

    return app


async def test_a_500_is_a_generic_problem_that_closes_the_connection(db):
    app = with_a_failing_route(db)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            resp = await http.get("/v1/test-only-failure")
    assert resp.status_code == 500
    assert resp.headers["connection"] == "close"
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["code"] == "internal_error"
    assert SECRET not in resp.text


async def test_a_fhir_500_is_an_operation_outcome_that_closes_the_connection(db, monkeypatch):
    async def broken(*args, **kwargs):
        raise RuntimeError(SECRET)

    monkeypatch.setattr(fhir_routes, "read", broken)
    async with Api.start(db) as api:
        org = await api.org()
        c = api.client(await api.token(org, "system/*.cruds"))
        resp = await c.get(f"/fhir/R4/Patient/{uuid.uuid4()}")
    assert resp.status_code == 500
    assert resp.headers["connection"] == "close"
    assert resp.json()["resourceType"] == "OperationOutcome"
    assert SECRET not in resp.text


def _exchange(port: int, request: bytes) -> tuple[bytes, bytes]:
    """One request on a kept-alive connection; what came back, and what the socket said after it (b"": closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(
            b"content-length")))
        while len(body) < length:
            body += sock.recv(65536)
        after = sock.recv(65536)  # a reset would raise ConnectionResetError here
        return head, after


async def test_a_live_server_answers_a_500_then_closes_the_connection_cleanly(db):
    port = free_port()
    with serve_app(with_a_failing_route(db), port):
        keep_alive = b"GET /v1/test-only-failure HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n"
        head, after = await asyncio.to_thread(_exchange, port, keep_alive)
        assert head.startswith(b"HTTP/1.1 500")
        assert b"connection: close" in head.lower()
        assert after == b""  # the server ended the connection in order, after the whole answer
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/healthz")).status_code == 200  # and serves the next connection


# ---------------------------------------------------------------- the database's time limit is a 503, not a bug


async def test_a_statement_past_the_time_limit_is_a_503_to_send_again(db):
    """A statement the database cancels for its time limit (``STATEMENT_TIMEOUT_MS``; here a lock another session
    holds keeps it waiting) is answered 503 ``query_timeout`` with ``Retry-After``, over REST (the read's fast path,
    a write in its transaction) and FHIR, and GraphQL codes it ``SERVICE_UNAVAILABLE``; the write changed nothing."""
    app = create_app(db.settings(statement_timeout_ms=400))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            api = Api(app=app, http=http, db=db)
            c = api.client(await api.token(await api.org("A"), ALL))
            ana = (await c.post("/v1/clients", json={"display_name": "Ana"})).json()
            lock = await db.connect()
            try:
                async with lock.transaction():
                    await lock.execute("LOCK TABLE clients IN ACCESS EXCLUSIVE MODE")
                    answers = [await c.get(f"/v1/clients/{ana['id']}"),
                               await c.patch(f"/v1/clients/{ana['id']}", json={"display_name": "Bea"}),
                               await c.get(f"{FHIR}/Patient/{ana['id']}")]
                    graphql = await c.post("/graphql", json={"query": "{ clients { edges { node { id } } } }"})
            finally:
                await lock.close()
            after = (await c.get(f"/v1/clients/{ana['id']}")).json()
    for resp in answers:
        assert resp.status_code == 503, resp.text[:500]
        assert "canceling statement" not in resp.text
        assert resp.headers["retry-after"] == "5"
        assert resp.headers["connection"] == "close"
        assert SECRET not in resp.text
    read, write, fhir = (r.json() for r in answers)
    assert read["code"] == write["code"] == "query_timeout"
    assert answers[0].headers["content-type"] == "application/problem+json"
    assert fhir["resourceType"] == "OperationOutcome"
    assert fhir["issue"][0]["code"] == "timeout"
    assert after["display_name"] == "Ana"  # the PATCH's transaction was rolled back
    # GraphQL answers 200 with the error in its list (as every GraphQL error), coded, not masked as a bug.
    assert graphql.status_code == 200, graphql.text[:500]
    error = graphql.json()["errors"][0]
    assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert error["extensions"]["reason"] == "query_timeout"
    assert "time limit" in error["message"]
    assert "canceling statement" not in graphql.text  # PostgreSQL's own message stays in the log
