"""The app factory: settings in, a FastAPI app out (REST under /v1, OAuth, health, docs)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import APIRouter, FastAPI, routing
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest, start_http_server
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.api import problems
from service.api.http import JSONOut
from service.api.methods import MethodNotAllowedMiddleware, MethodTable
from service.api.middleware import BodyLimitMiddleware, RequestContextMiddleware, SecurityHeadersMiddleware
from service.api.openapi import custom_openapi
from service.api.ratelimit import FailedAttempts, TokenBucketLimiter, make_limiter
from service.audit import rest as audit_rest
from service.auth import app_links_rest, authorize_rest, discovery_rest, oauth_rest
from service.auth.keycrypt import AtRest
from service.auth.revocations import Revocations
from service.auth.tokens import KeyStore, TokenService, ensure_signing_key
from service.collections.fastread import FastRead, ReadFastPath
from service.collections.registry import Collection
from service.collections.rest import batch_routers, collection_router, history_router
from service.db import PinnedTenants, make_engine
from service.domain import measurement_batch
from service.domain.registry import COLLECTIONS
from service.fhir.export_runner import ExportRunner
from service.fhir.rest import fhir_router
from service.graphql import graphql_router
from service.graphql.router import GraphQLFastPath
from service.ops.migrate import head_revision
from service.progress.rest import router as progress_router
from service.settings import Settings
from service.sync import bulk_rest, changes_rest
from service.telemetry import metrics
from service.telemetry.logs import ACCESS, configure_access_log, configure_logging
from service.webhooks import rest as webhooks_rest
from service.webhooks.dispatcher import Dispatcher

API_DESCRIPTION = """Strengths-based therapy records (clients, strengths, protective factors, exceptions,
goals built on strengths, milestones, outcome markers, measurements, the strengths log, experiments and
safety alerts) for EHRs, mood-tracking apps and dashboards. Every operation needs an OAuth 2.0 bearer
token carrying the SMART v2 scope the operation names: client credentials at `/oauth/token` for
practice systems, or the authorization code flow with PKCE (`/oauth/authorize`) for a patient's own app,
linked to one client with a one-time link code (`POST /v1/clients/{client_id}/app-links`)."""


@dataclass
class AppContext:
    settings: Settings
    engine: AsyncEngine
    keys: KeyStore
    tokens: TokenService
    # The read replica (DATABASE_READ_URL); `reader` falls back to the primary. Used today by bulk export
    # only (service/sync/bulk.py export_records); anything that writes (audit rows included) stays on `engine`.
    read_engine: AsyncEngine | None = None
    # Connections for one-round-trip reads (service.db.PinnedTenants; DB_PINNED_POOL_SIZE=0: None).
    pinned: PinnedTenants | None = None

    @property
    def reader(self) -> AsyncEngine:
        return self.read_engine or self.engine
    limiter: TokenBucketLimiter | None = None
    token_limiter: TokenBucketLimiter | None = None  # the OAuth endpoints' successful calls, per authenticated app
    failed_attempts: FailedAttempts | None = None  # failed authentications per source address (service.auth.oauth_rest)
    at_rest: AtRest | None = None  # SIGNING_KEY_ENCRYPTION_KEY's ciphers (service.auth.keycrypt)


def create_app(settings: Settings | None = None, *, span_exporter: Any = None,
               collections: Sequence[Collection] = COLLECTIONS) -> FastAPI:
    """``span_exporter``: where trace spans go instead of OTEL_EXPORTER_OTLP_ENDPOINT (tests give the SDK's
    in-memory exporter); with neither, tracing is off and OpenTelemetry is not imported. ``collections``: the
    REST collections served (the registry's; a test adds one of its own to prove docs/adding-a-collection.md)."""
    settings = settings or Settings()
    configure_logging(settings.log_level)
    configure_access_log(settings.access_log_sample, settings.access_log_flush_seconds)
    if not settings.database_url:
        from service.ops.lifecycle import prepare_database

        settings = prepare_database(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(
            settings.database_url or "", settings,
            set_role=settings.app_role if not settings.migration_database_url else None,
        )
        read_engine = make_engine(
            settings.database_read_url, settings,
            set_role=settings.app_role if not settings.migration_database_url else None,
        ) if settings.database_read_url else None
        pinned = PinnedTenants.from_settings(
            settings, set_role=settings.app_role if not settings.migration_database_url else None)
        at_rest = AtRest.from_settings(settings)
        keys = KeyStore(engine, settings, at_rest.signing_keys)
        await ensure_signing_key(engine, at_rest.signing_keys)
        await keys.load()
        keys.require_current()
        revocations = Revocations.from_settings(settings)
        await revocations.start()
        app.state.ctx = AppContext(settings=settings, engine=engine, keys=keys,
                                   tokens=TokenService(keys, settings, revocations),
                                   read_engine=read_engine, pinned=pinned, at_rest=at_rest,
                                   limiter=make_limiter(settings.rate_limit_requests,
                                                        settings.rate_limit_window_seconds,
                                                        settings.rate_limit_storage_url),
                                   token_limiter=make_limiter(settings.token_rate_limit_requests,
                                                              settings.rate_limit_window_seconds,
                                                              settings.rate_limit_storage_url,
                                                              policy="oauthclient", who="OAuth client"),
                                   failed_attempts=FailedAttempts.from_settings(settings))
        metrics.track_engine("primary", engine)
        if read_engine is not None:
            metrics.track_engine("read", read_engine)
        if pinned is not None:
            metrics.track_engine("pinned", pinned.engine)
            if tracing is not None:
                pinned.trace_shared = tracing.shared_statements()
        metrics_server = _metrics_server(settings)
        dispatcher = Dispatcher(engine, settings) if settings.webhooks_dispatcher else None
        app.state.webhook_dispatcher = dispatcher
        task = asyncio.create_task(dispatcher.run_forever()) if dispatcher else None
        exports = asyncio.create_task(ExportRunner(engine, settings).run_forever()) \
            if settings.bulk_export_runner else None
        try:
            yield
        finally:
            ACCESS.flush()
            await revocations.stop()
            if tracing is not None:
                tracing.shutdown()
            if exports is not None:
                exports.cancel()
                await asyncio.gather(exports, return_exceptions=True)
            if task and dispatcher:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await dispatcher.aclose()
            if metrics_server is not None:
                metrics_server.shutdown()
                metrics_server.server_close()
            metrics.untrack_engine("primary", engine)
            await engine.dispose()
            if read_engine is not None:
                metrics.untrack_engine("read", read_engine)
                await read_engine.dispose()
            if pinned is not None:
                metrics.untrack_engine("pinned", pinned.engine)
                await pinned.engine.dispose()

    app = FastAPI(
        title="Strengths & Goals API", version="1.0.0", description=API_DESCRIPTION, lifespan=lifespan,
        docs_url=None, redoc_url=None, default_response_class=JSONOut,
        # FastAPI's own OpenTelemetry (on whenever a global provider exists, e.g. under `opentelemetry-instrument`)
        # records raw paths, which can hold an MRN; tracing is ours (`_tracing`, redacted). Off, it also costs
        # nothing per request (it asked the global providers, reading the environment, on every request).
        telemetry={"tracing": False, "metrics": False, "logs": False, "auto_configure": False},
    )
    problems.install(app)
    _health(app)  # first: the router tries routes in order, and probes should not walk past every API route
    # Next, /graphql (one path, no other route under it): a dashboard query should not walk past every REST route.
    graphql = graphql_router()
    app.include_router(graphql, include_in_schema=False)  # its POST: GraphQLFastPath, below
    routers = _api_routers(collections)
    for router in routers.documented:
        app.include_router(router)
    _docs(app)
    # Outermost last: request id and audit around everything, then headers, CORS and the body limit; innermost,
    # just above the router, the direct paths of the hottest read (GET /v1/<collection>/<id>) and of POST /graphql.
    app.add_middleware(ReadFastPath, reads=[read for _, read in routers.collection_routers])
    app.add_middleware(GraphQLFastPath, router=graphql)
    app.add_middleware(MethodNotAllowedMiddleware, table=MethodTable.of_routers(routers.documented))
    app.add_middleware(BodyLimitMiddleware, default=settings.max_body_bytes, limits={
        "/v1/measurements/batch": settings.max_batch_body_bytes, "/v1/bulk/import": settings.max_bulk_body_bytes,
    })
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_credentials=False,
                           allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "If-Match", "Idempotency-Key",
                                          "X-Request-Id"],
                           expose_headers=["ETag", "Link", "Location", "X-Request-Id", "RateLimit",
                                           "RateLimit-Policy", "Retry-After"])
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(RequestContextMiddleware)
    if settings.metrics_enabled and settings.metrics_port is None:
        _metrics(app)
    app.add_middleware(metrics.MetricsMiddleware)
    tracing = _tracing(app, settings, span_exporter)
    app.openapi = lambda: custom_openapi(app)  # type: ignore[method-assign]  # FastAPI's documented override
    return app


@dataclass(frozen=True)
class ApiRouters:
    """The API's routers for one set of collections: each collection's router with its read's fast path, and every
    documented router in the order the app includes them."""

    collections: tuple[Collection, ...]  # held, so that the ids keying ``_ROUTERS`` stay theirs
    collection_routers: list[tuple[APIRouter, FastRead]]
    documented: list[APIRouter]


# By the ids of the collections served. A router holds no setting and no state of an app: each app that includes
# one builds its own route contexts from it (FastAPI keeps the router, not a copy), as the module-level routers
# (OAuth, the change feed...) are shared already. Built once per process: the collections' and FHIR's routes took
# about 0.2 s of CPU to declare (each route's signature and parameter models), paid again by every app a test builds.
_ROUTERS: dict[tuple[int, ...], ApiRouters] = {}


def _api_routers(collections: Sequence[Collection]) -> ApiRouters:
    key = tuple(map(id, collections))
    if key not in _ROUTERS:
        collection_routers = [collection_router(coll) for coll in collections]
        _ROUTERS[key] = ApiRouters(tuple(collections), collection_routers, [
            # First the batch ingest (POST /v1/measurements/batch: no other route matches it), which the app routes
            # right after /graphql so that a batch does not walk past every REST route either.
            *batch_routers([measurement_batch.BATCH]),
            discovery_rest.router, oauth_rest.router, authorize_rest.router, changes_rest.router, bulk_rest.router,
            *(router for router, _ in collection_routers),
            history_router(list(collections)), webhooks_rest.router, fhir_router(), progress_router,
            app_links_rest.router, audit_rest.router,
        ])
    return _ROUTERS[key]


def _tracing(app: FastAPI, settings: Settings, exporter: Any) -> Any:
    """Outermost of all: the server span covers the whole request. Imported only when configured."""
    if exporter is None and not settings.otel_exporter_otlp_endpoint:
        return None
    from service.telemetry import tracing

    return tracing.instrument(app, settings, exporter)


def _health(app: FastAPI) -> None:
    @app.get("/healthz", tags=["Health"], operation_id="healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["Health"], operation_id="readyz", include_in_schema=False)
    async def readyz() -> Any:
        ctx: AppContext = app.state.ctx
        try:
            async with ctx.engine.connect() as conn:
                version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        except Exception:  # noqa: BLE001 - any failure means not ready
            return problems.problem_response(503, "not_ready", "Not ready", "The database is not reachable")
        if version != head_revision():
            return problems.problem_response(503, "not_ready", "Not ready", f"Migrations at {version}, not head")
        return {"status": "ready", "migration": version}


def _metrics(app: FastAPI) -> None:
    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        # Off the event loop: collectors that need the database (the webhook backlog) run their query on it.
        return Response(await asyncio.to_thread(generate_latest, REGISTRY), media_type=CONTENT_TYPE_LATEST)


def _metrics_server(settings: Settings) -> Any:
    """With METRICS_PORT, /metrics is served on its own port (a thread of this process), not the API's."""
    if not settings.metrics_enabled or settings.metrics_port is None:
        return None
    server, _thread = start_http_server(settings.metrics_port, addr=settings.host, registry=REGISTRY)
    return server


def _docs(app: FastAPI) -> None:
    """Swagger UI at /docs and ReDoc at /redoc, their assets served from fastapi-offline's copies (no CDN)."""
    static = Path(fastapi_offline.__file__).parent / "static"
    app.mount("/static/docs", StaticFiles(directory=static), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="Strengths & Goals API",
            swagger_js_url="/static/docs/swagger-ui-bundle.js", swagger_css_url="/static/docs/swagger-ui.css",
            swagger_favicon_url="/static/docs/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title="Strengths & Goals API",
                              redoc_js_url="/static/docs/redoc.standalone.js",
                              redoc_favicon_url="/static/docs/favicon.png", with_google_fonts=False)


# The collector's first threshold for serving processes: a collection when this many more container objects
# were allocated than freed (CPython's default, 700, is a few items' worth of a batch request). Requests in flight
# hold thousands of containers, which every young collection walked again; at 700 the collector took ~0.35 ms of
# the batch ingest's CPU per request (13% of its samples), at 10,000 about a third of that (bench.run, W3).
GC_THRESHOLD = 10_000


def served_app(settings: Settings) -> FastAPI:
    """The app a server process serves (``serve``'s one uvicorn worker, and ``service.asgi`` for uvicorn's and
    granian's worker processes): ``create_app``, its routes built (``build_routes``) and its OpenAPI document
    written, then the startup objects frozen (``freeze_startup_objects``). FastAPI writes the document at the first
    ``GET /openapi.json``, about 0.7 s of CPU in which the worker's event loop serves no other request; a served app
    has written it before it takes a connection."""
    app = create_app(settings)
    build_routes(app)
    app.openapi()
    freeze_startup_objects()
    return app


def build_routes(app: FastAPI) -> None:
    """Build every included router's route contexts now. FastAPI builds them (each route's dependencies and
    parameter models) at the first request that walks past the router: about 0.3 s in all, which a new worker's
    first requests would wait for. A served app (``served_app``) builds them before it takes a connection; test
    apps leave them lazy, as each uses a few routers."""
    for _ in routing.iter_route_contexts(app.routes):
        pass


def freeze_startup_objects() -> None:
    """Moves every object alive after startup (modules, routes, schemas, validators: a few hundred thousand)
    out of the cyclic garbage collector's reach, so its full collections no longer walk them on every request
    burst (measured: ~1.9 ms of the batch ingest's CPU per request went to the collector), and collects the
    young generation less often (``GC_THRESHOLD``). For serving processes only: objects frozen here are never
    collected, which is what they are anyway."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
