"""One error hierarchy for the service layer, rendered per transport (REST problem+json here,
GraphQL extensions and FHIR OperationOutcome in their adapters)."""

from __future__ import annotations

from typing import Any, ClassVar

import structlog

PROBLEM_BASE = "https://strengths-api.dev/problems/"
MAX_DETAIL = 500  # characters of a problem's detail or an error's message: a short excerpt of any input it names
MAX_FIELD = 200  # characters of an error's field path (a JSON key sent by the client may be in it)


def excerpt(text: str, limit: int = MAX_DETAIL) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis marks the cut): error details name what was wrong with
    the input, never echo it whole."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


class DomainError(Exception):
    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.detail = excerpt(detail or self.title)
        super().__init__(self.detail)
        self.errors = errors
        self.headers = headers or {}

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        if self.errors is not None:
            body["errors"] = self.errors
        return body


def field_error(field: str, message: str, code: str) -> dict[str, Any]:
    """A validation error naming the field by JSON pointer and by dotted location."""
    field = excerpt(field, MAX_FIELD)
    parts = [p for p in field.split(".") if p]
    return {"path": "/" + "/".join(parts), "field": field, "message": excerpt(message), "code": code}


class ValidationFailed(DomainError):
    status, code, title = 422, "validation_error", "The request is not valid"

    @classmethod
    def on(cls, field: str, message: str, code: str | None = None) -> ValidationFailed:
        """One field's failure; its code is also the problem's code (and the last segment of its type)."""
        return RuleViolation(field, message, code or cls.code)


class RuleViolation(ValidationFailed):
    """A domain rule of CONTRACT.md section 3; ``reason`` is the domain code."""

    def __init__(self, field: str, message: str, reason: str) -> None:
        super().__init__(message, errors=[field_error(field, message, reason)])
        self.reason = reason

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        body = super().problem(instance)
        body["type"] = PROBLEM_BASE + self.reason
        body["code"] = self.reason
        return body


class ImmutableField(ValidationFailed):
    """A write would change a field that never changes once the record exists (each one in ``errors``)."""

    code = "immutable_field"


class MalformedRequest(DomainError):
    status, code, title = 400, "malformed_request", "The request could not be parsed"


class Unauthenticated(DomainError):
    status, code, title = 401, "unauthenticated", "A valid bearer token is required"

    def __init__(self, detail: str | None = None, *, error: str | None = "invalid_token") -> None:
        challenge = "Bearer"
        if error:
            challenge += f' error="{error}"'
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class Forbidden(DomainError):
    status, code, title = 403, "insufficient_scope", "The token lacks the scope this operation needs"

    def __init__(self, scope: str) -> None:
        super().__init__(
            f"This operation needs the scope {scope}",
            headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
        )
        self.scope = scope


class Refused(DomainError):
    """The token may never do this, whatever its scopes: 403 without a scope challenge (CONTRACT.md section 2)."""

    status, code, title = 403, "forbidden", "This token may not make this change"


class PatientCannotCreate(Refused):
    code, title = "patient_token_cannot_create", "A patient-context token cannot create this record"


class PatientCannotChangeIdentifiers(Refused):
    code, title = "patient_token_cannot_change_identifiers", "A patient-context token cannot change identifiers"


class WriteRefused(Refused):
    """The database's row-level security (or its privileges) refused a write: a refusal like any other."""

    code, title = "write_refused", "The write is outside what this token may change"


class NotFound(DomainError):
    status, code, title = 404, "not_found", "Not found"


class Gone(DomainError):
    status, code, title = 410, "gone", "The record was deleted"


class MethodNotAllowed(DomainError):
    status, code, title = 405, "method_not_allowed", "Method not allowed"


class PreconditionFailed(DomainError):
    status, code, title = 412, "precondition_failed", "The record has changed (If-Match is stale)"


class Conflict(DomainError):
    status, code, title = 409, "conflict", "Conflict"


class PayloadTooLarge(DomainError):
    status, code, title = 413, "payload_too_large", "The request body is too large"


class UnsupportedMediaType(DomainError):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


class TooManyRequests(DomainError):
    status, code, title = 429, "rate_limited", "Too many requests"


class TimedOut(DomainError):
    """A statement ran past the database's time limit (``STATEMENT_TIMEOUT_MS``): its transaction was rolled back,
    and the request may be sent again."""

    status, code, title = 503, "query_timeout", "The request took too long"


QUERY_CANCELED = "57014"  # PostgreSQL's SQLSTATE for a statement cancelled, statement_timeout's among them
RETRY_AFTER_TIMEOUT = "5"  # seconds


def timed_out(exc: BaseException) -> TimedOut | None:
    """What an unexpected error stands for when it is a statement the database cancelled for its time limit,
    anywhere in its chain (asyncpg's error, as raised or wrapped by SQLAlchemy): a 503 to send again later, not
    a 500, logged as a warning. None for any other error. Every transport asks it of the errors it would
    otherwise answer as a bug (REST's outermost handler, FHIR's ``render``, GraphQL's resolver guard)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        err = stack.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        if getattr(err, "sqlstate", None) == QUERY_CANCELED:
            # logged here, for every transport (the line carries the request id; the access line its path)
            structlog.get_logger("service.errors").warning("statement timeout", error=type(err).__name__)
            return TimedOut("A database statement ran past its time limit and its transaction was rolled back; "
                            "send the request again later, or ask for less (a smaller page or range)",
                            headers={"Retry-After": RETRY_AFTER_TIMEOUT})
        stack += [err.__cause__, err.__context__, getattr(err, "orig", None)]
    return None
