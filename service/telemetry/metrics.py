"""Prometheus metrics: one registry for the process, the families every part of the service increments.

Other modules import the counters and gauges from here and call them in one line; the HTTP families are
recorded by `MetricsMiddleware` (labelled by route *template*, never the raw path, so cardinality stays
bounded) and the database pool is read at scrape time from the engines the app registered.

With several worker processes each process keeps its own figures; in Kubernetes run one worker per pod
and let Prometheus scrape every pod (deploy/README.md).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterable
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("strengths.metrics")

HTTP_REQUESTS = Counter(
    "http_requests", "HTTP requests served, by method, route template and status", ["method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds", "Time to serve an HTTP request, by method, route template and status",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
HTTP_IN_PROGRESS = Gauge("http_requests_in_progress", "HTTP requests being served right now")

INGEST_MEASUREMENTS = Counter(
    "ingest_measurements", "Measurements received by batch ingest, by per-item result", ["status"]
)
for _status in ("created", "duplicate", "error"):
    INGEST_MEASUREMENTS.labels(_status)
SAFETY_ALERTS_OPENED = Counter("safety_alerts_opened", "Safety alerts opened by risk measurements")

COALESCED_READS = Histogram(
    "db_coalesced_reads_per_statement", "Reads by id answered by one statement on the pinned connections",
    buckets=(1, 2, 4, 8, 16, 32, 50),
)

# Failed deliveries are counted by the webhook dispatcher; the backlog is read at scrape time (_BacklogCollector).
WEBHOOK_DELIVERY_FAILURES = Counter("webhook_delivery_failures", "Webhook delivery attempts that failed")

UNMATCHED = "<unmatched>"


class _PoolCollector(Collector):
    """Reads the connection pools of the registered engines when scraped."""

    def __init__(self) -> None:
        self.engines: dict[str, AsyncEngine] = {}

    def collect(self) -> Iterable[Metric]:
        in_use = GaugeMetricFamily("db_pool_connections_in_use", "Connections checked out of the pool", labels=["pool"])
        size = GaugeMetricFamily("db_pool_size", "Configured pool size (without overflow)", labels=["pool"])
        overflow = GaugeMetricFamily("db_pool_overflow", "Connections open beyond the pool size", labels=["pool"])
        for name, engine in list(self.engines.items()):
            pool: Any = engine.pool
            if not all(hasattr(pool, attr) for attr in ("checkedout", "size", "overflow")):
                continue
            in_use.add_metric([name], pool.checkedout())
            size.add_metric([name], pool.size())
            overflow.add_metric([name], max(pool.overflow(), 0))
        yield from (in_use, size, overflow)


POOLS = _PoolCollector()
REGISTRY.register(POOLS)

BACKLOG_SQL = text("SELECT webhook_backlog()")  # a definer function: one count across organizations (0007)
BACKLOG_TIMEOUT_SECONDS = 2.0


class _BacklogCollector(Collector):
    """`webhook_outbox_backlog`: pending webhook deliveries of every organization, counted when scraped (one
    indexed count, only as often as Prometheus scrapes; nothing runs between scrapes).

    Collectors are synchronous and the engine is asynchronous: a scrape (in the METRICS_PORT server's thread,
    or in the thread `/metrics` hands generation to) runs the count on the app's event loop and waits for it.
    Never called on that loop itself (that would deadlock): there, and when the count fails or is slow, the
    sample is left out and the scrape still answers."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread: int | None = None

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("webhook_outbox_backlog", "Webhook deliveries waiting to be delivered "
                                   "(pending, due now or waiting for a retry), all organizations")
        value = self._count()
        if value is not None:
            family.add_metric([], value)
        yield family

    def _count(self) -> int | None:
        engine, loop = POOLS.engines.get("primary"), self.loop
        if engine is None or loop is None or loop.is_closed() or threading.get_ident() == self.loop_thread:
            return None
        future = asyncio.run_coroutine_threadsafe(_backlog(engine), loop)
        try:
            return future.result(BACKLOG_TIMEOUT_SECONDS)
        except Exception:  # noqa: BLE001 - a scrape must answer even when the database does not
            future.cancel()
            log.warning("webhook backlog not counted", exc_info=True)
            return None


async def _backlog(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(BACKLOG_SQL)).scalar_one())


BACKLOG = _BacklogCollector()
REGISTRY.register(BACKLOG)


def track_engine(name: str, engine: AsyncEngine) -> None:
    """Called from the app's lifespan: the engine's pool is reported, and the primary's loop runs the backlog
    count at scrape time."""
    POOLS.engines[name] = engine
    if name == "primary":
        BACKLOG.loop, BACKLOG.loop_thread = asyncio.get_running_loop(), threading.get_ident()


def untrack_engine(name: str, engine: AsyncEngine) -> None:
    if POOLS.engines.get(name) is engine:
        del POOLS.engines[name]


def route_label(scope: dict[str, Any]) -> str:
    """The route template the router matched (`/v1/clients/{id}`), a mount's prefix, or `<unmatched>`."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if path:
        return str(path)
    root = scope.get("root_path", "") or ""
    if root and root != scope.get("metrics.root_path", ""):
        return root[len(scope.get("metrics.root_path", "")):] + "/*"
    return UNMATCHED


class MetricsMiddleware:
    """Pure ASGI middleware: counts and times every HTTP request once the router has matched it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope["metrics.root_path"] = scope.get("root_path", "")
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        HTTP_IN_PROGRESS.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            HTTP_IN_PROGRESS.dec()
            labels = (scope["method"], route_label(scope), str(status))
            HTTP_REQUESTS.labels(*labels).inc()
            HTTP_DURATION.labels(*labels).observe(time.perf_counter() - start)


def count_ingest(results: Iterable[dict[str, Any] | None]) -> None:
    """Count a batch's per-item results (created / duplicate / error)."""
    tally = Tally(result["status"] for result in results if result is not None)
    for status, count in tally.items():  # one labelled increment per status, not per item
        INGEST_MEASUREMENTS.labels(status).inc(count)
