"""The one error hierarchy rendered for GraphQL: ``extensions.code`` is the transport code
(BAD_USER_INPUT, FORBIDDEN, ...) and ``extensions.reason`` the domain code, as in REST problems."""

from __future__ import annotations

from typing import Any

import structlog
from graphql import GraphQLError
from pydantic import ValidationError

from service.errors import Conflict, DomainError, Forbidden, PreconditionFailed, ValidationFailed, field_error

log = structlog.get_logger("service.graphql")


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
        "PRECONDITION_FAILED" if isinstance(exc, PreconditionFailed) else "BAD_REQUEST"
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
