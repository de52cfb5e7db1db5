"""Pure ASGI middleware around every request: request ids, the audit trail, security headers."""

from __future__ import annotations

import time
from typing import Any

import structlog

from service.api.http import dumps
from service.audit import service as audit
from service.errors import PROBLEM_BASE, PayloadTooLarge
from service.telemetry.logs import ACCESS

Scope = dict[str, Any]


class RequestContextMiddleware:
    """Gives each request an id (the caller's ``X-Request-Id`` if sane, else a new one), echoes it, and
    opens the request's audit trail; once the response is sent, writes what no transaction wrote."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1") or None
        request_id = audit.new_request_id(incoming)
        client = scope.get("client")
        trail = audit.AuditTrail(request_id=request_id, method=scope["method"], path=scope.get("path", ""),
                                 remote=client[0] if client else None)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                raw = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                raw.append((b"x-request-id", request_id.encode()))
                present = {k.lower() for k, _ in raw}
                if status >= 500 and b"connection" not in present:  # service.api.http.SERVER_ERROR_HEADERS
                    raw.append((b"connection", b"close"))
                for name, value in (state.get("ratelimit") or {}).items():
                    if name.lower().encode() not in present:
                        raw.append((name.lower().encode(), value.encode()))
                message = {**message, "headers": raw}
            await send(message)

        token = audit.begin(trail)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            audit.end(token)
            trail.principal = state.get("principal") or trail.principal
            ctx = getattr(getattr(scope.get("app"), "state", None), "ctx", None)
            if ctx is not None:
                await trail.finish(ctx.engine, status)
            who = trail.principal
            ACCESS.line(method=scope["method"], path=trail.path, status=status,
                        duration_ms=round((time.perf_counter() - started) * 1000, 1),
                        app_id=who.app_id if who else None, org_id=str(who.org_id) if who else None,
                        request_id=request_id)
            structlog.contextvars.unbind_contextvars("request_id")


# ---------------------------------------------------------------- body size


class BodyTooLarge(PayloadTooLarge):
    pass


class BodyLimitMiddleware:
    """Refuses bodies over a limit with 413 problem+json: at once when ``Content-Length`` says so, and
    while streaming otherwise (every chunk received is counted, so a chunked body cannot slip past).

    ``limits`` maps exact paths to their own limits (bulk import streams a large file; the batch route
    takes up to 1,000 measurements); every other path gets ``default``.
    """

    def __init__(self, app: Any, default: int, limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.default = default
        self.limits = limits or {}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope.get("path", ""), self.default)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                await _problem(send, 400, "malformed_request", "Bad request", "Content-Length is not a number")
                return
            if length > limit:
                await _problem(send, 413, "payload_too_large", "The request body is too large",
                               f"The body may be at most {limit} bytes")
                return
        received = 0
        started = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal received
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(f"The body may be at most {limit} bytes")
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await _problem(send, 413, "payload_too_large", "The request body is too large", exc.detail)


async def _problem(send: Any, status: int, code: str, title: str, detail: str,
                   headers: dict[str, str] | None = None) -> None:
    body = dumps({"type": PROBLEM_BASE + code, "title": title, "status": status, "detail": detail, "code": code})
    raw = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode()),
           (b"cache-control", b"no-store")]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------- security headers

STRICT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# Swagger UI (served from /static/docs) and GraphiQL need scripts and styles of their own.
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'; "
            "base-uri 'none'")  # ReDoc (/redoc) runs its search in a blob: worker
GRAPHIQL_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval' https://unpkg.com; "
                "style-src 'self' 'unsafe-inline' https://unpkg.com; font-src 'self' data: https://unpkg.com; "
                "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'")


class SecurityHeadersMiddleware:
    """nosniff, no referrer, and a Content-Security-Policy that forbids everything for API responses;
    the two HTML pages (Swagger UI at /docs, GraphiQL at /graphql) get the policy their assets need."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                names = {k.lower() for k, _ in raw}
                ctype = next((v for k, v in raw if k.lower() == b"content-type"), b"")
                csp = STRICT_CSP
                if ctype.startswith(b"text/html"):
                    csp = GRAPHIQL_CSP if path.startswith("/graphql") else DOCS_CSP
                for name, value in ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                                    (b"content-security-policy", csp.encode()), (b"x-frame-options", b"DENY")):
                    if name not in names:
                        raw.append((name, value))
                message = {**message, "headers": raw}
            await send(message)

        await self.app(scope, receive, with_headers)
