"""OpenTelemetry traces, when configured (OTEL_EXPORTER_OTLP_ENDPOINT): a server span per HTTP request, named by
route template, with a client span per database statement under it.

Nothing here is imported unless tracing is on (`create_app` imports this module only then), so an unconfigured
service pays nothing for it. What the spans may carry is limited on purpose, since the requests are health
records: the server span's URL attributes hold the route *template* (never the raw path, which can hold an
identifier such as an MRN, nor the query string); no headers are captured (so no bearer token); database spans
hold the statement text as sent with its `$n` placeholders and never the bound parameters
(`AsyncPGInstrumentor(capture_parameters=False)`, the default, stated here so nobody turns it on by accident).
"""

from __future__ import annotations

import contextvars
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.util.http import sanitize_method

from service.settings import Settings
from service.telemetry.metrics import UNMATCHED, route_label

# Attributes of the request URL that the ASGI instrumentation fills from the raw path and query string; each is
# replaced by the route template (old and new HTTP semantic conventions alike).
_URL_KEYS = ("http.target", "url.path")
_FULL_URL_KEYS = ("http.url", "url.full")


class RedactingExporter(SpanExporter):
    """Exports spans without what an error could carry of a request's data: exception events keep their type
    but lose their message and stack trace (a database error's message can quote a value), and an error status
    keeps its code but loses its description. A statement's literals (the tenant in BEGIN's script, the audit
    rows of the group commit: service.audit.commits) are replaced by ``?``; its parameters are never recorded."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([_redacted(s) for s in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


# Single-quoted strings ('' escapes a quote) and dollar-quoted strings ($tag$...$tag$) in statement text.
_LITERAL = re.compile(r"'(?:[^']|'')*'|\$([A-Za-z_0-9]*)\$.*?\$\1\$", re.S)
_STATEMENT_KEYS = ("db.statement", "db.query.text")


def _without_literals(attributes: Any) -> Any:
    if not attributes or not any(isinstance(attributes.get(k), str) and ("'" in attributes[k] or "$" in attributes[k])
                                 for k in _STATEMENT_KEYS):
        return attributes
    out = dict(attributes)
    for key in _STATEMENT_KEYS:
        if isinstance(out.get(key), str):
            out[key] = _LITERAL.sub("?", out[key])
    return out


def _redacted(span: ReadableSpan) -> ReadableSpan:
    attributes = _without_literals(span.attributes)
    if not span.events and span.status.description is None and attributes is span.attributes:
        return span
    events = [Event(e.name, {k: v for k, v in (e.attributes or {}).items() if k in _EVENT_KEYS_KEPT}, e.timestamp)
              for e in span.events]
    return ReadableSpan(name=span.name, context=span.context, parent=span.parent, resource=span.resource,
                        attributes=attributes, events=events, links=span.links, kind=span.kind,
                        status=Status(span.status.status_code), start_time=span.start_time, end_time=span.end_time,
                        instrumentation_scope=span.instrumentation_scope)


_EVENT_KEYS_KEPT = {"exception.type", "exception.escaped"}


@dataclass
class Tracing:
    provider: TracerProvider

    def shared_statements(self) -> Callable[[str, list[contextvars.Context]], AbstractContextManager[None]]:
        """For ``db.PinnedTenants.trace_shared``: around a statement that reads of several requests share, which
        runs (and is traced by the asyncpg instrumentation) in the first read's context, a span in each other
        traced read's own trace over the same time, as its own statement would have had: a client span named and
        described as the instrumentation's (the statement's text with its ``$n`` placeholders, never the
        parameters), with the number of reads that shared it (``db.coalesced_reads``) and a link to the first
        read's span."""
        tracer = self.provider.get_tracer(__name__)

        @contextmanager
        def spans(statement: str, others: list[contextvars.Context]) -> Iterator[None]:
            parents = [span for context in others if (span := context.run(trace.get_current_span)).is_recording()]
            if not parents:
                yield
                return
            first = trace.get_current_span().get_span_context()
            attributes: dict[str, str | int] = {
                "db.system": "postgresql", "db.statement": statement, "db.coalesced_reads": len(others) + 1}
            started = time.time_ns()
            failed = False
            try:
                yield
            except BaseException:
                failed = True
                raise
            finally:
                ended = time.time_ns()
                for parent in parents:
                    span = tracer.start_span(statement.split(maxsplit=1)[0], trace.set_span_in_context(parent),
                                             SpanKind.CLIENT, attributes, [Link(first)] if first.is_valid else (),
                                             start_time=started)
                    if failed:
                        span.set_status(Status(StatusCode.ERROR))
                    span.end(ended)

        return spans

    def shutdown(self) -> None:
        """Stop tracing asyncpg, flush the spans still queued and stop the exporter (graceful shutdown)."""
        instrumentor = AsyncPGInstrumentor()
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
        self.provider.shutdown()


def otlp_exporter(settings: Settings) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=(settings.otel_exporter_otlp_endpoint or "").rstrip("/") + "/v1/traces")


class _RouteNaming:
    """Just inside the server-span middleware: once the router has matched, names the span by the route template
    and puts the template in the URL attributes (`metrics.route_label`: the same labels as /metrics)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        span = trace.get_current_span()

        def name_span() -> None:
            if span.is_recording():  # the server span ends with the response's last body message
                route = route_label(scope)
                span.update_name(f"{_method(scope)} {route}")
                span.set_attributes(_url_attributes(scope, route))

        async def send_named(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                name_span()
            await send(message)

        try:
            await self.app(scope, receive, send_named)
        finally:
            name_span()


def _method(scope: dict[str, Any]) -> str:
    return sanitize_method(str(scope.get("method", "")).strip()) or "HTTP"


def _url_attributes(scope: dict[str, Any], route: str) -> dict[str, str]:
    host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
    attributes = {"http.route": route, **dict.fromkeys(_URL_KEYS, route),
                  **dict.fromkeys(_FULL_URL_KEYS, f"{scope.get('scheme', 'http')}://{host}{route}")}
    if scope.get("query_string"):
        attributes["url.query"] = ""  # (new conventions) the query string stays out
    return attributes


def instrument(app: Any, settings: Settings, exporter: SpanExporter | None = None) -> Tracing:
    """Wrap ``app`` (outermost) in the ASGI server-span middleware and trace asyncpg statements; spans go to
    ``exporter`` (the OTLP/HTTP exporter unless given, e.g. the SDK's in-memory one in tests) through a batch
    processor, so exporting never happens on the request path."""
    provider = TracerProvider(resource=Resource.create({"service.name": settings.otel_service_name}))
    provider.add_span_processor(BatchSpanProcessor(RedactingExporter(exporter or otlp_exporter(settings))))

    def span_details(scope: dict[str, Any]) -> tuple[str, dict[str, str]]:
        """Before routing: the method alone, and no raw path or query string (`_RouteNaming` completes both)."""
        return _method(scope), _url_attributes(scope, UNMATCHED)

    app.add_middleware(_RouteNaming)
    app.add_middleware(OpenTelemetryMiddleware, default_span_details=span_details, tracer_provider=provider,
                       exclude_spans=["receive", "send"])
    instrumentor = AsyncPGInstrumentor(capture_parameters=False)
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=provider)
    return Tracing(provider)
