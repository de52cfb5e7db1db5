"""HTTP plumbing shared by every router: orjson responses, strict JSON bodies, problem+json."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from service.api import cursors
from service.errors import MalformedRequest, UnsupportedMediaType, ValidationFailed

NO_STORE = {"Cache-Control": "no-store"}
# A 5xx ends the connection cleanly: the client reads the whole answer and opens a new connection, instead of
# finding a kept-alive connection reset under its next request (the server closes it after an unhandled error).
SERVER_ERROR_HEADERS = {"Cache-Control": "no-store", "Connection": "close"}


def _default(value: Any) -> Any:
    if isinstance(value, UUID):  # asyncpg returns its own UUID subclass, which orjson does not know
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def dumps(content: Any) -> bytes:
    return orjson.dumps(content, default=_default)


class JSONOut(JSONResponse):
    """orjson rendering; a JSONResponse so that OpenAPI documents the route's response_model, not a string."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


class ProblemOut(JSONOut):
    media_type = "application/problem+json"


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise MalformedRequest(f"Duplicate key in JSON object: {key!r}")
        out[key] = value
    return out


def _constant(name: str) -> Any:
    raise MalformedRequest(f"{name} is not a JSON number")


MAX_JSON_DEPTH = 32  # no body of this API nests half as deep; string and list lengths are bounded by the models


# orjson reads an integer beyond 64 bits as a float (the stdlib keeps it exact): such a float sends the document
# to the strict parser.
_EXACT_FLOAT = 9.2e18


def _shape(value: Any) -> tuple[int, int, bool]:
    """(keys of all objects, deepest nesting, no float as large as an integer beyond 64 bits) of a parsed
    document."""
    keys, deepest, exact = 0, 1, True
    stack: list[tuple[Any, int]] = [([value], 0)]
    while stack:
        node, depth = stack.pop()
        if type(node) is dict:
            keys += len(node)
            node = node.values()
        for child in node:
            kind = type(child)
            if kind is dict or kind is list:
                if depth + 1 > deepest:
                    deepest = depth + 1
                stack.append((child, depth + 1))
            elif kind is float and not -_EXACT_FLOAT < child < _EXACT_FLOAT:
                exact = False
    return keys, deepest, exact


def _check_depth(deepest: int) -> None:
    """Refuses documents nested deeper than MAX_JSON_DEPTH (422), before any model sees them."""
    if deepest > MAX_JSON_DEPTH:
        raise ValidationFailed.on("body", f"JSON nested deeper than {MAX_JSON_DEPTH} levels", "too_deep")


def _key_ends(body: bytes) -> int:
    """At least the number of keys in the raw text: a key ends with a quote, optional JSON whitespace and a colon,
    so without the whitespace each key is one ``":`` (a string value can hold one too, so the count may only be
    higher than the keys')."""
    return body.translate(None, b" \t\n\r").count(b'":')


def _loads_fast(body: bytes) -> tuple[Any, int] | None:
    """orjson's parse and the nesting depth, when it is certainly the strict parser's result: orjson accepted the
    text (it refuses NaN, Infinity, lone surrogates and invalid UTF-8, which the strict parser refuses or reads
    its own way), no integer went beyond 64 bits, and the parsed objects hold as many keys as the text has key
    endings (so no duplicate key was dropped). Else None: the strict parser decides, with its own errors."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    keys, deepest, exact = _shape(value)
    if not exact or keys != _key_ends(body):
        return None
    return value, deepest


def loads_strict(body: bytes) -> Any:
    """RFC 8259 JSON, stricter than the stdlib: no duplicate keys, no NaN or Infinity, at most
    MAX_JSON_DEPTH levels of nesting."""
    fast = _loads_fast(body) if isinstance(body, bytes) else None
    if fast is not None:
        _check_depth(fast[1])
        return fast[0]
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedRequest("The body is not valid UTF-8") from exc
    try:
        value = json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except MalformedRequest:
        raise
    except json.JSONDecodeError as exc:  # where, never what: the message names the position only
        raise MalformedRequest(f"The body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
                               ) from exc
    except RecursionError as exc:
        raise MalformedRequest(f"The body is nested too deeply (at most {MAX_JSON_DEPTH} levels)") from exc
    except ValueError as exc:  # an integer past Python's digit limit, and the like: no internals in the answer
        raise MalformedRequest("The body holds a value that cannot be read (e.g. a number with too many digits)"
                               ) from exc
    _check_depth(_shape(value)[1])
    return value


def is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


class QueryParams(BaseModel):
    """The query parameters of a ``/v1`` route, declared as one model (``Annotated[Model, Query()]``): a
    parameter the model does not name is a 422 naming it (``in: query``), so a misspelt filter never widens a
    result (CONTRACT.md section 4)."""

    model_config = ConfigDict(extra="forbid")


class Paged(QueryParams):
    """A list's paging parameters (its cursor: of the records' kind unless the list says otherwise)."""

    limit: int = Field(50, ge=1, le=500, description="Page size (max 500)")
    cursor: str | None = cursors.RECORDS.field()


def _declares_query(dependant: Dependant) -> bool:
    """Whether the route, or any of its dependencies, declares a query parameter."""
    stack = [dependant]
    while stack:
        current = stack.pop()
        if current.query_params:
            return True
        stack.extend(current.dependencies)
    return False


def no_query_parameters(request: Request) -> None:
    """For a route that declares no query parameter: any one sent is refused as its model would refuse it."""
    if request.query_params:
        raise RequestValidationError([
            {"type": "extra_forbidden", "loc": ("query", name), "msg": "Extra inputs are not permitted",
             "input": value}
            for name, value in request.query_params.multi_items()
        ])


class StrictRoute(APIRoute):
    """Routes whose JSON bodies are parsed strictly, and whose body is refused in any other media type; a
    route that declares no query parameters refuses any (one with parameters declares them as a
    ``QueryParams`` model, which refuses the others). FHIR and OAuth routes follow their own rules."""

    refuses_undeclared_query = True

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        has_body = self.body_field is not None
        takes_no_query = self.refuses_undeclared_query and not _declares_query(self.dependant)

        async def strict_handler(request: Request) -> Response:
            if takes_no_query:
                no_query_parameters(request)
            if has_body and request.method in ("POST", "PUT", "PATCH"):
                body = await request.body()
                if body and not is_json(request.headers.get("content-type")):
                    raise UnsupportedMediaType("Send the body as application/json")
                if body:
                    # Starlette's Request.json() returns this cached value, so FastAPI validates it.
                    request._json = loads_strict(body)
            return await handler(request)

        return strict_handler
