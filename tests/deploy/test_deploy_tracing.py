"""OpenTelemetry traces (issue 13): on only when configured; a request yields a server span named by its route
template with the database statements as child spans; no client data (names, notes, identifiers, tokens, SQL
parameters) in any span. Spans are caught with the SDK's in-memory exporter, given to `create_app` where the
OTLP exporter would otherwise go."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid

import asyncpg
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from service.app import create_app
from service.settings import PROJECT_ROOT
from tests.support.factories import client_with, create
from tests.support.fastread import READER
from tests.support.harness import Api

NAME = "Zephyrine Quillfeather"
FUTURE = "Walking the Ridgeway with my granddaughter by spring"
MRN = "MRN-86753091"
STRENGTH = "Keeps a gratitude journal every evening"


def everything_in(span) -> str:
    """Every text a span carries: name, attributes, events and their attributes, status description."""
    parts = [span.name, json.dumps(dict(span.attributes or {}), default=str), span.status.description or ""]
    for event in span.events:
        parts += [event.name, json.dumps(dict(event.attributes or {}), default=str)]
    return "\n".join(parts)


async def test_a_request_is_a_server_span_with_database_children_and_no_client_data(db):
    exporter = InMemorySpanExporter()
    app = create_app(db.settings(), span_exporter=exporter)
    async with Api.start(db, app=app) as api:
        org = await api.org()
        token = await api.token(org, "system/*.cruds")
        c = api.client(token)
        client = await create(c, "clients", display_name=NAME, preferred_future=FUTURE,
                              identifiers=[{"system": "urn:oid:2.16.840.1.113883.4.1", "value": MRN}])
        await create(c, "strengths", client_id=client["id"], client_label=STRENGTH)
        r = await c.get(f"/v1/clients/{client['id']}?include=strengths")
        assert r.status_code == 200
        assert r.json()["strengths"][0]["client_label"] == STRENGTH
        listed = await c.get("/v1/clients", params={"limit": 5, "identifier": f"urn:oid:2.16.840.1.113883.4.1|{MRN}"})
        assert listed.status_code in (200, 400), listed.text
    spans = exporter.get_finished_spans()  # the app's shutdown flushed them

    route = "/v1/clients/{client_id}"
    servers = [s for s in spans if s.kind is SpanKind.SERVER and s.attributes.get("http.route") == route]
    assert len(servers) == 1, [(s.name, dict(s.attributes)) for s in spans if s.kind is SpanKind.SERVER]
    server = servers[0]
    assert server.name == f"GET {route}"
    assert server.attributes["http.status_code"] == 200
    children = [s for s in spans if s.parent is not None and s.parent.span_id == server.context.span_id]
    db_spans = [s for s in children if s.kind is SpanKind.CLIENT and s.attributes.get("db.system") == "postgresql"]
    statements = [str(s.attributes.get("db.statement", "")) for s in db_spans]
    assert any("FROM clients" in st for st in statements), statements
    assert any("FROM strengths" in st for st in statements), statements
    assert all(s.context.trace_id == server.context.trace_id for s in db_spans)

    assert {s.name.split(" ", 1)[1] for s in spans if s.kind is SpanKind.SERVER} >= {"/oauth/token", "/v1/clients"}
    secrets = [NAME, FUTURE, MRN, STRENGTH, token, client["id"], str(org.id),
               *token.split(".")]  # the token, and each of its parts
    for span in spans:
        text = everything_in(span)
        leaked = [s for s in secrets if s in text]
        assert not leaked, (span.name, leaked, text[:2000])
        assert "db.statement.parameters" not in (span.attributes or {})


async def test_each_read_that_shared_a_statement_has_it_in_its_own_trace(db):
    """Reads by id that waited together share one statement (``db.PinnedTenants.coalesced``): it runs in the first
    read's trace, and every other read's trace gets a client span of it too, under its own server span, linked to the
    first read's, with the statement's text and no parameter."""
    exporter = InMemorySpanExporter()
    app = create_app(db.settings(db_pinned_pool_size=2, db_coalesced_in_flight=1), span_exporter=exporter)
    async with Api.start(db, app=app) as api:
        org = await api.org()
        writer = api.client(await api.token(org, "system/*.cruds"))
        made = [(await client_with(writer, ("strengths",)))[0] for _ in range(8)]
        reader = api.client(await api.token(org, READER))
        assert (await reader.get(f"/v1/clients/{made[0]['id']}")).status_code == 200  # the token's first use
        answers = await asyncio.gather(*(reader.get(f"/v1/clients/{c['id']}?include=strengths") for c in made))
        assert [r.status_code for r in answers] == [200] * len(made)
    spans = exporter.get_finished_spans()

    route = "/v1/clients/{client_id}"
    servers = [s for s in spans if s.kind is SpanKind.SERVER and s.attributes.get("http.route") == route]
    assert len(servers) == len(made) + 1
    shared = []
    for server in servers:
        reads = [s for s in spans if s.parent is not None and s.parent.span_id == server.context.span_id
                 and s.kind is SpanKind.CLIENT and "FROM clients" in str(s.attributes.get("db.statement", ""))]
        assert len(reads) == 1, (server.name, [(s.name, dict(s.attributes)) for s in reads])
        (read,) = reads
        assert read.context.trace_id == server.context.trace_id
        assert read.start_time <= read.end_time
        if "db.coalesced_reads" in read.attributes:
            shared.append(read)
            assert read.attributes["db.coalesced_reads"] > 1
            assert read.attributes["db.system"] == "postgresql"
            assert "db.statement.parameters" not in read.attributes
            (link,) = read.links
            first = [s for s in spans if s.context.span_id == link.context.span_id]
            assert len(first) == 1
            assert first[0].context.trace_id != server.context.trace_id
    assert shared, "no read's trace shows a shared statement"  # so some did share
    for span in spans:
        leaked = [c["id"] for c in made if c["id"] in everything_in(span)] + \
                 [c["display_name"] for c in made if c["display_name"] in everything_in(span)]
        assert not leaked, (span.name, leaked)


async def test_a_shared_statement_that_fails_is_an_error_in_every_read_s_trace(db):
    """Three reads, each in a trace of its own (the tests' own provider, as a caller's server span would be), share
    a statement that fails: each trace's span of it is an error."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    exporter, callers = InMemorySpanExporter(), InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(callers))
    tracer = provider.get_tracer("test")
    app = create_app(db.settings(db_pinned_pool_size=1, db_coalesced_in_flight=1), span_exporter=exporter)
    failing = "SELECT 1 / (x - 2) AS y FROM unnest($1::int[]) AS x"
    async with Api.start(db, app=app):
        lane = app.state.ctx.pinned.lane(uuid.uuid4(), None)

        async def read(i: int) -> None:
            with tracer.start_as_current_span(f"request {i}"), pytest.raises(asyncpg.DivisionByZeroError):
                await lane.coalesced(failing, (None,), (0,), (i,))

        await asyncio.gather(*(read(i) for i in (1, 2, 3)))
    requests = {s.context.span_id: s.name for s in callers.get_finished_spans()}
    assert len(requests) == 3
    statements = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT
                  and s.attributes.get("db.statement") == failing]
    assert sorted(requests[s.parent.span_id] for s in statements) == ["request 1", "request 2", "request 3"]
    assert all(s.status.status_code.name == "ERROR" for s in statements), [(s.name, s.status) for s in statements]


def test_exception_events_lose_their_message(tmp_path):
    """A failed statement's exception (its message can quote a value) reaches the exporter as its type only."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from service.telemetry.tracing import RedactingExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(RedactingExporter(exporter)))
    with pytest.raises(ValueError, match="invalid input"), \
            provider.get_tracer("t").start_as_current_span("SELECT"):
        raise ValueError(f'invalid input syntax for type uuid: "{MRN}"')
    (span,) = exporter.get_finished_spans()
    assert [e.name for e in span.events] == ["exception"]
    assert span.events[0].attributes["exception.type"] == "ValueError"
    assert MRN not in everything_in(span)
    assert span.status.status_code.name == "ERROR"


def test_fastapi_records_nothing_of_its_own_under_a_global_provider():
    """FastAPI's built-in telemetry, on by default whenever a global tracer provider is installed (as by
    `opentelemetry-instrument`), would export spans with the raw path (a by-identifier path holds an MRN),
    bypassing our redaction. It is turned off: a request under a global provider leaves no span at all."""
    code = ("from opentelemetry import trace; from opentelemetry.sdk.trace import TracerProvider; "
            "from opentelemetry.sdk.trace.export import SimpleSpanProcessor; "
            "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter; "
            "exporter = InMemorySpanExporter(); provider = TracerProvider(); "
            "provider.add_span_processor(SimpleSpanProcessor(exporter)); trace.set_tracer_provider(provider); "
            "import asyncio, httpx; from service.app import create_app; from service.settings import Settings; "
            "app = create_app(Settings(database_url='postgresql+asyncpg://unused@localhost/unused')); "
            "get = lambda: httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url='http://t').get("
            f"'/healthz?mrn={MRN}'); "
            "print(asyncio.run(get()).status_code); "
            "print([(s.name, dict(s.attributes or {})) for s in exporter.get_finished_spans()])")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FASTAPI_OTEL"))}
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    status, spans = out.stdout.strip().splitlines()[-2:]
    assert status == "200"
    assert spans == "[]", spans  # with FastAPI's telemetry on: four spans, one with url.path ending in the MRN


# What tracing brings in. (FastAPI itself imports the OpenTelemetry *API* for its own telemetry, which
# service/app.py turns off; the SDK, the instrumentations and the exporter are ours.)
OURS = ("opentelemetry.sdk", "opentelemetry.instrumentation", "opentelemetry.exporter", "service.telemetry.tracing")


@pytest.mark.parametrize("endpoint", [None, "http://127.0.0.1:4318"])
def test_opentelemetry_is_not_imported_unless_configured(endpoint):
    code = (f"OURS = {OURS!r}; import sys; from service.app import create_app; from service.settings import Settings; "
            "create_app(Settings(database_url='postgresql+asyncpg://unused@localhost/unused')); "
            "print(sorted(m for m in sys.modules if m.startswith(OURS)))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if endpoint:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    modules = eval(out.stdout.strip().splitlines()[-1])  # noqa: S307 - a list literal we printed
    if endpoint:
        assert "opentelemetry.instrumentation.asyncpg" in modules
        assert "opentelemetry.exporter.otlp.proto.http.trace_exporter" in modules
    else:
        assert modules == []
