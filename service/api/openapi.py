"""The OpenAPI document: FastAPI's, plus the problem schema and the contract's conventions."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "format": "uri-reference"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "description": "The domain code (also the last segment of type)"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "JSON pointer of the field"},
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                    "code": {"type": "string"},
                    "in": {"type": "string"},
                },
            },
        },
    },
}


def _absent_not_null(param: dict[str, Any]) -> None:
    """An optional header is absent or a string, never null (there is no null on the wire): FastAPI's
    ``str | None`` is declared as ``anyOf: [string, null]``, which clients (and fuzzers) send as "null"."""
    schema = param.get("schema", {})
    if param.get("in") != "header" or "anyOf" not in schema:
        return
    branches = [b for b in schema["anyOf"] if b.get("type") != "null"]
    if len(branches) == 1:
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        param["schema"] = {**branches[0], **rest}


def custom_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, openapi_version="3.1.0", description=app.description,
        routes=app.routes, tags=None,
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    # FastAPI documents its own 422 shape; ours is a problem.
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    for path in schema.get("paths", {}).values():
        for op in path.values():
            for param in op.get("parameters", []):
                _absent_not_null(param)
    for name, path in schema.get("paths", {}).items():
        if name.startswith("/fhir/"):
            # The FHIR facade documents its errors as OperationOutcome, and answers a query or path that does
            # not parse with 400, never with FastAPI's own 422.
            for op in path.values():
                if "HTTPValidationError" in str(op.get("responses", {}).get("422")):
                    del op["responses"]["422"]
            continue
        for op in path.values():
            responses = op.get("responses", {})
            if "422" in responses:
                responses["422"] = {
                    "description": "Validation failed",
                    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
                }
    app.openapi_schema = schema
    return schema
