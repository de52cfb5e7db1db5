"""Rendering every error as RFC 9457 problem details; nothing else reaches a client."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.api.http import SERVER_ERROR_HEADERS, ProblemOut
from service.errors import PROBLEM_BASE, DomainError, field_error, timed_out

log = structlog.get_logger("service.errors")

HTTP_CODES = {400: "malformed_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 406: "not_acceptable", 413: "payload_too_large",
              415: "unsupported_media_type", 422: "validation_error", 429: "rate_limited"}


def problem_response(status: int, code: str, title: str, detail: str, *, errors: list[dict[str, Any]] | None = None,
                     headers: dict[str, str] | None = None) -> ProblemOut:
    body: dict[str, Any] = {"type": PROBLEM_BASE + code, "title": title, "status": status, "detail": detail,
                            "code": code}
    if errors is not None:
        body["errors"] = errors
    return ProblemOut(body, status_code=status, headers={"Cache-Control": "no-store", **(headers or {})})


def validation_problem(raw_errors: Any) -> dict[str, Any]:
    """A pydantic validation failure as a problem body (used where items are validated one by one)."""
    errors = _field_errors(raw_errors)
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return {"type": PROBLEM_BASE + "validation_error", "title": "The request is not valid", "status": 422,
            "detail": detail, "code": "validation_error", "errors": errors}


def _field_errors(raw_errors: Any) -> list[dict[str, Any]]:
    out = []
    for err in raw_errors:
        loc = [str(p) for p in err.get("loc", ())]
        located = bool(loc) and loc[0] in ("body", "query", "path", "header")
        where = loc[0] if located else "body"
        parts = loc[1:] if located else loc
        name = ".".join(parts) or where
        item = field_error(name, str(err.get("msg", "invalid")), str(err.get("type", "invalid")))
        item["in"] = where
        out.append(item)
    return out


def domain_problem(exc: DomainError) -> ProblemOut:
    """How every REST route answers a domain error (also the read fast path, service.collections.fastread)."""
    return ProblemOut(exc.problem(), status_code=exc.status, headers={"Cache-Control": "no-store", **exc.headers})


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> ProblemOut:
        return domain_problem(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> ProblemOut:
        errors = _field_errors(exc.errors())
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return problem_response(422, "validation_error", "The request is not valid", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> ProblemOut:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        return problem_response(exc.status_code, code, str(exc.detail), str(exc.detail),
                                headers=dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> ProblemOut:
        # Sent by Starlette's outermost ServerErrorMiddleware, past every middleware of ours: it says itself that
        # the connection closes (the server closes it after an unhandled error).
        late = timed_out(exc)
        if late is not None:  # the database's time limit: a 503 to send again, not a bug
            late.headers.update(SERVER_ERROR_HEADERS)
            return domain_problem(late)
        log.exception("unhandled error", path=request.url.path, method=request.method)
        return problem_response(500, "internal_error", "Internal server error",
                                "The error was logged; no details are given to clients.", headers=SERVER_ERROR_HEADERS)
