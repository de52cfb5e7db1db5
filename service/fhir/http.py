"""FHIR HTTP plumbing: application/fhir+json, and every error rendered as an OperationOutcome.

Only routes of the FHIR router use ``FhirRoute``, so REST keeps its problem+json untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.api.http import SERVER_ERROR_HEADERS, JSONOut, StrictRoute
from service.errors import MAX_FIELD, DomainError, excerpt, timed_out

log = structlog.get_logger("service.fhir")

FHIR_JSON = "application/fhir+json"

# OperationOutcome.issue.code (http://hl7.org/fhir/issue-type) for each status we answer.
ISSUE_CODES = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
               406: "not-supported", 409: "conflict", 410: "deleted", 412: "conflict", 413: "too-costly",
               415: "not-supported", 422: "processing", 429: "throttled", 500: "exception",
               503: "timeout"}


class FhirOut(JSONOut):
    media_type = FHIR_JSON


def outcome(status: int, diagnostics: str, *, code: str | None = None, reason: str | None = None,
            expressions: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """An OperationOutcome; ``expressions`` are (FHIRPath-ish location, message) pairs, one issue each."""
    issue_code = code or ISSUE_CODES.get(status, "processing")
    details = {"coding": [{"system": "https://strengths-api.dev/problems", "code": reason}]} if reason else None
    issues: list[dict[str, Any]] = []
    for where, message in expressions or []:
        issue: dict[str, Any] = {"severity": "error", "code": issue_code, "diagnostics": message or diagnostics}
        if where:
            issue["expression"] = [where]
        if details:
            issue["details"] = details
        issues.append(issue)
    if not issues:
        issue = {"severity": "error", "code": issue_code, "diagnostics": diagnostics}
        if details:
            issue["details"] = details
        issues.append(issue)
    return {"resourceType": "OperationOutcome", "issue": issues}


def outcome_response(status: int, diagnostics: str, *, headers: dict[str, str] | None = None,
                     **kw: Any) -> FhirOut:
    return FhirOut(outcome(status, diagnostics, **kw), status_code=status,
                   headers={"Cache-Control": "no-store", **(headers or {})})


def _domain_expressions(exc: DomainError) -> list[tuple[str, str]]:
    return [(str(e.get("fhir_path") or e.get("field") or ""), str(e.get("message", ""))) for e in exc.errors or []]


def render(exc: Exception, request: Request) -> Response:
    if isinstance(exc, DomainError):
        reason = getattr(exc, "reason", None) or exc.code
        return outcome_response(exc.status, exc.detail, headers=exc.headers, reason=reason,
                                expressions=_domain_expressions(exc))
    if isinstance(exc, RequestValidationError):
        # Search parameters and headers that do not parse are a 400 in FHIR (http.html#search).
        pairs = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ())]
            pairs.append((excerpt(".".join(loc[1:]) or (loc[0] if loc else "request"), MAX_FIELD),
                          excerpt(str(err.get("msg", "invalid")))))
        status = 422 if any(str(e.get("loc", ("",))[0]) == "body" for e in exc.errors()) else 400
        return outcome_response(status, "; ".join(f"{w}: {m}" for w, m in pairs[:5]), reason="validation_error",
                                expressions=pairs)
    if isinstance(exc, StarletteHTTPException):
        return outcome_response(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))
    late = timed_out(exc)
    if late is not None:  # the database's time limit: a 503 to send again, not a bug; Connection: close as on
        return render(late, request)  # every 5xx (service.api.middleware)
    log.exception("unhandled FHIR error", path=request.url.path, method=request.method)
    return outcome_response(500, "Internal server error; the error was logged.", headers=SERVER_ERROR_HEADERS)


class FhirRoute(StrictRoute):
    """Strict JSON bodies (as REST), but errors come back as OperationOutcome in application/fhir+json."""

    refuses_undeclared_query = False  # FHIR's own rules (service.fhir.urls, CONTRACT.md section 6)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def fhir_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:  # noqa: BLE001 - every error is rendered, none escapes as problem+json
                return render(exc, request)

        return fhir_handler
