"""The OpenAPI document: FastAPI's, plus the problem schema and the contract's conventions, made acceptable to
the ecosystem's linters and generators (Redocly recommended, Spectral spectral:oas, openapi-python-client): a
relative server, declared tags, JSON Schema bounds, typed FHIR and OAuth replies, `security: []` on public
operations, a description and an example on every operation, and every webhook event under `webhooks`."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.api.openapi_fhir import FHIR_SCHEMAS, OAUTH_SCHEMAS, REPLIES, ref
from service.webhooks.openapi import webhook_schemas

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


SERVERS = [{"url": "/", "description": "This deployment: use your deployment's base URL (e.g. "
                                        "https://strengths.example.org); every path below is relative to it"}]
CONTACT = {"name": "Strengths & Goals API maintainers", "url": "https://github.com/"}
LICENSE = {"name": "Proprietary", "identifier": "LicenseRef-Proprietary"}

TAGS: dict[str, str] = {
    "OAuth": "OAuth 2.0 and SMART discovery, tokens (client credentials, authorization code with PKCE, refresh), "
             "introspection and revocation",
    "Clients": "The people in care; every other record belongs to one",
    "Strengths": "A client's strengths (skills, values, relationships), confirmed by lived examples",
    "Protective factors": "What protects a client (relationships, routines, resources)",
    "Exceptions": "Times the problem did not happen, and what was different",
    "Goals": "Goals built on strengths",
    "Milestones": "Observable steps towards a goal",
    "Outcome markers": "What is measured for a goal: instruments (PHQ-9, GAD-7) and the client's own markers",
    "Measurements": "Readings of outcome markers (instrument items are scored, and safety rules applied)",
    "Strength uses": "The strengths log: a strength used, and how it went",
    "Experiments": "Behavioural experiments: predictions, what happened, confidence before and after",
    "Safety alerts": "Alerts opened by the safety rules (PHQ-9 item 9), acknowledged and resolved",
    "History": "Every version of a record",
    "Sync": "The change feed, NDJSON bulk import and export, sync by external id",
    "Progress": "Progress per goal, recovery, the caseload, the clinical summary and charts",
    "Webhooks": "Signed webhook subscriptions (Standard Webhooks), their delivery log, ping, redelivery and "
                "secret rotation",
    "App links": "One-time codes that link a patient's own app to one client",
    "Audit": "The append-only audit trail of reads, writes and refusals",
    "FHIR R4": "The FHIR R4 facade: Patient, Goal, Observation, Flag, QuestionnaireResponse, Group, Bulk Data "
               "export; errors are OperationOutcome",
    "Health": "Liveness and readiness probes",
}

_BOUNDS = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum"}


def _bounds(node: Any) -> None:
    """Pydantic leaves ``ge``/``le`` in a schema whose type has a validator before it; JSON Schema says
    minimum/maximum, the only names generators and linters know."""
    if isinstance(node, dict):
        if node.get("type") in ("integer", "number"):
            for ours, theirs in _BOUNDS.items():
                if ours in node:
                    node.setdefault(theirs, node.pop(ours))
        for value in node.values():
            _bounds(value)
    elif isinstance(node, list):
        for value in node:
            _bounds(value)


_FHIR_TYPE = re.compile(r"^/fhir/R4/([A-Z][A-Za-z]+)(/.*)?$")


def _fhir_schemas(path: str, method: str, op: dict[str, Any]) -> None:
    """The typed schema of each FHIR reply: a resource by id, a Bundle for searches and histories."""
    found = _FHIR_TYPE.match(path)
    kind = f"Fhir{found.group(1)}" if found and f"Fhir{found.group(1)}" in FHIR_SCHEMAS else None
    if "$" in path:  # operations ($export and its status) answer OperationOutcomes or manifests, not the type
        kind = None
    if path == "/fhir/R4/metadata":
        kind = "FhirCapabilityStatement"
    rest = found.group(2) or "" if found else ""
    for status, response in op.get("responses", {}).items():
        for media in response.get("content", {}).values():
            if media.get("schema") != ref("FhirResource") or not status.startswith("2"):
                continue
            if "$" in path:  # a kick-off or a cancellation: an informational OperationOutcome
                media["schema"] = ref("OperationOutcome")
            elif kind == "FhirCapabilityStatement":
                media["schema"] = ref(kind)
            elif method == "get" and kind and (rest == "" or rest.endswith("/_history")):
                media["schema"] = ref("FhirBundle")
            elif kind:
                media["schema"] = ref(kind)
    body = op.get("requestBody", {}).get("content", {})
    for media in body.values():
        if kind and media.get("schema", {}).get("type") == "object":
            media["schema"] = ref(kind)


def _replies(op: dict[str, Any]) -> None:
    for status, media, name in REPLIES.get(op.get("operationId", ""), []):
        response = op.setdefault("responses", {}).setdefault(status, {"description": name})
        examples = {k: v for k, v in {**FHIR_SCHEMAS, **OAUTH_SCHEMAS}[name].items() if k == "example"}
        response["content"] = {media: {"schema": ref(name), **examples}}


def _describe(op: dict[str, Any]) -> None:
    """A description (the summary, and the scope it needs) and an example on every operation."""
    if not op.get("description"):
        scopes = [s for req in op.get("security", []) for v in req.values() for s in v]
        need = f" Needs the scope `{scopes[0]}`." if scopes else " No token needed."
        op["description"] = f"{op.get('summary', op.get('operationId', ''))}.{need}"
    if op.get("security") is None:
        op["security"] = []  # public: no token
    if not _has_example(op):
        _error_example(op)


def _error_example(op: dict[str, Any]) -> None:
    for status, (code, detail) in _ERROR_EXAMPLES.items():
        for media_type, media in op.get("responses", {}).get(status, {}).get("content", {}).items():
            if media_type == "application/problem+json":
                media["example"] = {"type": f"about:blank#{code}", "title": detail, "status": int(status),
                                    "detail": detail, "code": code}
                return
            if media_type == "application/fhir+json":
                media["example"] = {"resourceType": "OperationOutcome", "issue": [
                    {"severity": "error", "code": code.replace("_", "-"), "diagnostics": detail}]}
                return


_ERROR_EXAMPLES = {"401": ("login", "A bearer token is required"), "400": ("invalid", "Malformed request"),
                   "404": ("not_found", "No such record")}


def _has_example(op: dict[str, Any]) -> bool:
    medias = [m for r in op.get("responses", {}).values() for m in r.get("content", {}).values()]
    medias += list(op.get("requestBody", {}).get("content", {}).values())
    return any("example" in m or "examples" in m for m in medias)


def custom_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, openapi_version="3.1.0", description=app.description,
        routes=app.routes, tags=None, servers=SERVERS, contact=CONTACT, license_info=LICENSE,
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    events, webhooks = webhook_schemas()
    for added in (FHIR_SCHEMAS, OAUTH_SCHEMAS, events):
        clash = set(added) & set(components)
        assert not clash, f"schema names already taken by the REST models: {clash}"
        components.update(added)
    schema["webhooks"] = webhooks
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
    used: set[str] = set()
    for name, path in schema.get("paths", {}).items():
        for method, op in path.items():
            _fhir_schemas(name, method, op)
            _replies(op)
            _describe(op)
            used.update(op.get("tags", []))
    for hook in webhooks.values():
        for op in hook.values():
            used.update(op.get("tags", []))
    schema["tags"] = [{"name": t, "description": TAGS.get(t, t)} for t in sorted(used, key=_tag_order)]
    _bounds(schema)
    app.openapi_schema = schema
    return schema


def _tag_order(tag: str) -> tuple[int, str]:
    names = list(TAGS)
    return (names.index(tag) if tag in names else len(names), tag)
