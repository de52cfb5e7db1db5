"""The one error hierarchy rendered for GraphQL: ``extensions.code`` is the transport code
(BAD_USER_INPUT, FORBIDDEN, ...) and ``extensions.reason`` the domain code, as in REST problems."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import structlog
from graphql import GraphQLError
from pydantic import ValidationError
from strawberry.extensions import SchemaExtension

from service.errors import (
    Conflict,
    DomainError,
    Forbidden,
    PreconditionFailed,
    ValidationFailed,
    excerpt,
    field_error,
)

log = structlog.get_logger("service.graphql")
MAX_MESSAGE = 300


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def camel_path(path: str) -> str:
    return ".".join(camel(p) for p in path.split("."))


def user_input_error(message: str, reason: str, errors: list[dict[str, Any]]) -> GraphQLError:
    fields = [{**e, "field": camel_path(e["field"]), "path": "/" + "/".join(camel_path(e["field"]).split("."))}
              for e in errors]
    return GraphQLError(message, extensions={"code": "BAD_USER_INPUT", "reason": reason, "errors": fields})


def forbidden(scope: str) -> GraphQLError:
    return GraphQLError(f"This field needs the scope {scope}",
                        extensions={"code": "FORBIDDEN", "reason": "insufficient_scope", "scope": scope})


def from_domain(exc: DomainError) -> GraphQLError:
    """A GraphQL error for a domain error (NotFound and Gone never get here: they resolve to null)."""
    reason = str(exc.problem()["code"])
    if isinstance(exc, ValidationFailed):
        codes = {e.get("code") for e in exc.errors or []}
        if reason == ValidationFailed.code and len(codes) == 1:
            reason = str(codes.pop())  # e.g. reference_not_found: more useful than the generic code
        return user_input_error(exc.detail, reason, exc.errors or [])
    if isinstance(exc, Forbidden):
        return forbidden(exc.scope)
    code = "CONFLICT" if isinstance(exc, Conflict) else \
        "PRECONDITION_FAILED" if isinstance(exc, PreconditionFailed) else \
        "FORBIDDEN" if exc.status == 403 else "SERVICE_UNAVAILABLE" if exc.status == 503 else "BAD_REQUEST"
    extensions: dict[str, Any] = {"code": code, "reason": reason}
    if exc.errors:
        extensions["errors"] = [{**e, "field": camel_path(e["field"])} for e in exc.errors]
    return GraphQLError(exc.detail, extensions=extensions)


def from_pydantic(exc: ValidationError, prefix: str = "input") -> GraphQLError:
    errors = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        errors.append(field_error(f"{prefix}.{loc}" if loc else prefix, str(err.get("msg", "invalid")),
                                  str(err.get("type", "invalid"))))
    detail = "; ".join(f"{camel_path(e['field'])}: {e['message']}" for e in errors[:5])
    return user_input_error(detail or "The input is not valid", "validation_error", errors)


def should_mask(error: GraphQLError) -> bool:
    """Only our own GraphQL errors reach clients; anything else is logged and masked."""
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
        return False
    log.error("unexpected error in a resolver", path=error.path, exc_info=original)
    return True


def _code_for(error: GraphQLError) -> str:
    if error.message.startswith("Syntax Error"):
        return "GRAPHQL_PARSE_FAILED"
    if error.message.startswith("Variable"):
        return "BAD_USER_INPUT"  # a variable of the wrong type or missing
    if error.path is not None or error.original_error is not None:
        return "INTERNAL_SERVER_ERROR"  # raised while executing without a code of ours: masked
    return "GRAPHQL_VALIDATION_FAILED"


def _tag(error: GraphQLError) -> None:
    if not (error.extensions or {}).get("code"):
        error.extensions = {**(error.extensions or {}), "code": _code_for(error)}
    # graphql-core names the offending token or field in full (a 200 KB name comes back whole): a short excerpt.
    error.message = excerpt(error.message, MAX_MESSAGE)


class ErrorCodes(SchemaExtension):
    """Every error carries extensions.code, including those graphql-core raises while parsing, validating
    and coercing variables."""

    def on_operation(self) -> Iterator[None]:
        try:
            yield
        except GraphQLError as error:  # Strawberry throws parse errors into the operation hooks
            _tag(error)
            raise
        ctx = self.execution_context
        for found in [*(getattr(ctx.result, "errors", None) or ()), *(ctx.pre_execution_errors or ())]:
            _tag(found)
