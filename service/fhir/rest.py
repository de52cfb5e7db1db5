"""The `/fhir/R4` router: metadata, CodeSystem, and read / vread / history / search of Patient, Goal,
Observation and Flag, plus create of Observation. Each operation declares its scope once, by FHIR name
(an alias of ours, CONTRACT.md section 2)."""

import inspect
import re
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl
from uuid import UUID

import orjson
from fastapi import APIRouter, Header, Query, Request, Response

from service.api import cursors
from service.api.dependencies import Db, IdempotencyKeyHeader, needs
from service.api.http import is_json, loads_strict
from service.api.idempotency import idempotent
from service.auth.principal import Principal
from service.auth.scopes import require
from service.collections import service
from service.collections.registry import REGISTRY
from service.errors import (
    Conflict,
    Gone,
    MethodNotAllowed,
    NotFound,
    PreconditionFailed,
    UnsupportedMediaType,
    ValidationFailed,
)
from service.fhir import codes, mapping, search, urls
from service.fhir.create import measurement_body, with_fhir_paths
from service.fhir.http import FHIR_JSON, FhirOut, FhirRoute, outcome_response
from service.fhir.urls import PREFIX, base_url

FHIR_VERSION = "4.0.1"

OUTCOME_SCHEMA = {"$ref": "#/components/schemas/OperationOutcome"}  # typed in service/api/openapi_fhir.py
TEXTS = {400: "Bad search parameter or malformed body", 401: "Missing or invalid token",
         403: "Token lacks the scope", 404: "Not found (also: another organization's record)",
         409: "Conflict (the source and external id already name a measurement)", 410: "Deleted",
         412: "If-None-Exist matches several resources",
         413: "Body too large", 415: "Body is not JSON", 422: "Not a valid resource"}


def fhir_responses(ok: int, description: str, *codes_: int) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {
        ok: {"description": description,
             "content": {FHIR_JSON: {"schema": {"$ref": "#/components/schemas/FhirResource"}}}}}
    for code in codes_:
        out[code] = {"description": TEXTS[code], "content": {FHIR_JSON: {"schema": OUTCOME_SCHEMA}}}
    return out


# ---------------------------------------------------------------- scopes


def fhir_needs(fhir_type: str, perm: str) -> Any:
    """A FHIR scope is met when the token allows any of the resources the alias stands for; which one a
    record needs (a strength Observation needs Strength) is checked again per record (``check``)."""
    return needs(fhir_type, perm)


def check(who: Principal, collection: str, perm: str) -> None:
    require(who, REGISTRY[collection].resource, perm)


# ---------------------------------------------------------------- resources out


async def to_resources(db: Any, who: Principal, records: list[tuple[str, dict[str, Any]]],
                       fhir_type: str | None = None) -> list[dict[str, Any]]:
    """Map records (current rows or history snapshots) to resources, loading markers once per page. As
    QuestionnaireResponses, measurements of markers that are no instrument are left out."""
    await search.with_alert_ids(db, who, records)
    found = await search.load_markers(db, who, mapping.marker_ids(records))
    markers = {k: mapping.as_json(v) for k, v in found.items()}
    questionnaire = fhir_type == "QuestionnaireResponse"
    out = []
    for collection, rec in records:
        made = mapping.resource(collection, mapping.as_json(rec), markers, questionnaire=questionnaire)
        if made is not None:
            out.append(made)
    return out


def resource_response(resource: dict[str, Any], status: int = 200, **headers: str) -> FhirOut:
    meta = resource["meta"]
    return FhirOut(resource, status_code=status, headers={
        "ETag": f'W/"{meta["versionId"]}"', "Cache-Control": "no-store", **headers})


# ---------------------------------------------------------------- reads


def _uuid(text: str, what: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise NotFound(f"No {what} with id {text}") from None


def locate(fhir_type: str, resource_id: str, who: Principal, perm: str) -> tuple[str, UUID]:
    if fhir_type == "Observation":
        found = mapping.parse_observation_id(resource_id)
        if found is None:
            raise NotFound(f"No Observation with id {resource_id}")
        check(who, found[0], perm)
        return found
    collection = COLLECTIONS[fhir_type]
    return collection, _uuid(resource_id, fhir_type)


COLLECTIONS = {"Patient": "clients", "Goal": "goals", "Flag": "safety-alerts", "QuestionnaireResponse": "measurements"}


async def one_resource(db: Any, who: Principal, fhir_type: str, collection: str, record: dict[str, Any],
                       what: str) -> dict[str, Any]:
    """The record as ``fhir_type``; NotFound when it is not one (a measurement of no instrument as a
    QuestionnaireResponse)."""
    made = await to_resources(db, who, [(collection, record)], fhir_type)
    if not made:
        raise NotFound(f"No {fhir_type} with id {what}")
    return made[0]


async def read(fhir_type: str, resource_id: str, who: Principal, db: Any) -> Response:
    collection, rid = locate(fhir_type, resource_id, who, "r")
    record = await service.read(db, who, REGISTRY[collection], rid)
    return resource_response(await one_resource(db, who, fhir_type, collection, record, resource_id))


async def versions(fhir_type: str, resource_id: str, who: Principal, db: Any, perm: str) -> tuple[str, list[Any]]:
    collection, rid = locate(fhir_type, resource_id, who, perm)
    entries = await service.history(db, who, REGISTRY[collection], rid)
    return collection, entries


async def vread(fhir_type: str, resource_id: str, vid: str, who: Principal, db: Any) -> Response:
    collection, entries = await versions(fhir_type, resource_id, who, db, "r")
    entry = next((e for e in entries if str(e["version"]) == vid), None)
    if entry is None:
        raise NotFound(f"{fhir_type}/{resource_id} has no version {vid}")
    if entry["action"] == "deleted":
        raise Gone(f"{fhir_type}/{resource_id} was deleted at version {vid}")
    return resource_response(await one_resource(db, who, fhir_type, collection, entry["record"], resource_id))


async def instance_history(fhir_type: str, resource_id: str, who: Principal, db: Any, request: Request) -> Response:
    collection, entries = await versions(fhir_type, resource_id, who, db, "s")
    live = [e for e in entries if e["action"] != "deleted"]
    mapped = await to_resources(db, who, [(collection, e["record"]) for e in live], fhir_type)
    if len(mapped) != len(live):  # not this type (a measurement of no instrument as a QuestionnaireResponse)
        raise NotFound(f"No {fhir_type} with id {resource_id}")
    resources = iter(mapped)
    base = urls.base_url(request)
    items = []
    for e in entries:
        url = f"{fhir_type}/{resource_id}"
        item: dict[str, Any] = {
            "fullUrl": f"{base}/{url}",
            "request": {"method": {"created": "POST", "updated": "PUT", "deleted": "DELETE"}[e["action"]],
                        "url": fhir_type if e["action"] == "created" else url},
            "response": {"status": {"created": "201 Created", "updated": "200 OK", "deleted": "204 No Content"}
                         [e["action"]], "etag": f'W/"{e["version"]}"',
                         "lastModified": mapping.as_json({"t": e["changed_at"]})["t"]},
        }
        if e["action"] != "deleted":
            item["resource"] = next(resources)
        items.append(item)
    items.reverse()  # newest first (FHIR http.html#history)
    bundle = {"resourceType": "Bundle", "type": "history", "total": len(items),
              "link": [{"relation": "self", "url": urls.absolute(request, f"{fhir_type}/{resource_id}/_history")}],
              "entry": items}
    return FhirOut(bundle, headers={"Cache-Control": "no-store"})


# ---------------------------------------------------------------- search

COMMON_PARAMS = [("_count", "Page size (default 50, at most 500)"), ("_cursor", "Opaque paging cursor (from next)"),
                 ("_lastUpdated", "Date with prefix eq, ne, gt, lt, ge or le; may repeat"),
                 ("identifier", "system|value"), ("_id", "Resource ids, comma-separated")]
SEARCH_PARAMS: dict[str, list[tuple[str, str]]] = {
    "Patient": [],
    "Goal": [("patient", "Patient/<id>"), ("subject", "Patient/<id>"),
             ("lifecycle-status", "proposed | active | on-hold | completed | cancelled")],
    "Observation": [("patient", "Patient/<id>"), ("subject", "Patient/<id>"), ("category", "[system|]code"),
                    ("code", "[system|]code, comma-separated for any of"),
                    ("date", "effective date with prefix eq, ne, gt, lt, ge or le; may repeat"),
                    ("_sort", "date or -date")],
    "Flag": [("patient", "Patient/<id>"), ("status", "active | inactive"), ("category", "safety")],
    "QuestionnaireResponse": [
        ("patient", "Patient/<id>"), ("subject", "Patient/<id>"),
        ("questionnaire", "Canonical of the LOINC questionnaire (http://loinc.org/q/44249-1 PHQ-9, "
                          "http://loinc.org/q/69737-5 GAD-7), comma-separated for any of"),
        ("authored", "authored date with prefix eq, ne, gt, lt, ge or le; may repeat")],
}
REPEATABLE = {"date", "_lastUpdated", "authored"}
REFERENCES = ("patient", "subject")
# Paths we serve with some method: another method on them is a 405, anything else a 404.
KNOWN_PATH = re.compile(
    r"^(?:(?:Patient|Goal|Observation|Flag|QuestionnaireResponse)(?:/[^/]+(?:/_history(?:/[^/]+)?)?)?|Group(?:/[^/]+)?"
    r"|(?:CodeSystem|Questionnaire)/[^/]+|metadata|(?:Patient/|Group/[^/]+/)?\$export(?:-status/[^/]+(?:/files/[^/]+)?)?)$"
)


def search_params(fhir_type: str) -> list[tuple[str, str]]:
    return COMMON_PARAMS + SEARCH_PARAMS[fhir_type]


# Declared in OpenAPI and checked by the parsers below, so that both say the same.
_DATE = (r"^(eq|ne|gt|lt|ge|le)?(19|20|21)[0-9]{2}(-(0[1-9]|1[0-2])(-(0[1-9]|1[0-9]|2[0-8])(T([01][0-9]|2[0-3])"
         r":[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9]))?)?)?$")
_TOKEN = r"[^|,\x00]+\|[^|,\x00]+"
PATTERNS = {"_count": r"^0*[1-9][0-9]{0,8}$", "_cursor": cursors.FHIR.pattern, "_sort": r"^-?date$",
            "identifier": f"^({_TOKEN}(,{_TOKEN})*)?$", "_lastUpdated": _DATE, "date": _DATE, "authored": _DATE}
CONDITION = re.compile(r"^\??identifier=[A-Za-z0-9._:/~-]+\|[A-Za-z0-9._:/~-]+$")


def _count(params: dict[str, list[str]]) -> int:
    raw = params.get("_count", [str(search.DEFAULT_COUNT)])[-1]
    if not re.match(PATTERNS["_count"], raw):
        raise urls.BadSearch("_count must be a whole number, at least 1")
    return min(int(raw), search.MAX_COUNT)


async def run_search(fhir_type: str, who: Principal, db: Any, request: Request) -> Response:
    kept = urls.search_params(request, [name for name, _ in search_params(fhir_type)], fhir_type)
    params: dict[str, list[str]] = {}
    for name, value in kept:
        params.setdefault(name, []).append(value)
    urls.local_references(request, params, REFERENCES)
    count = _count(params)
    descending = False
    for raw in params.get("_sort", []):
        if raw not in ("date", "-date"):
            raise urls.BadSearch("_sort supports date and -date")
        descending = raw == "-date"
    if fhir_type == "Observation":
        kinds = [k for k, res in search.OBSERVATION_RESOURCES.items() if who.allows(res, "s")]
        parts = search.observation_parts(who, params, kinds)
    else:
        parts = {"Patient": search.patient_parts, "Goal": search.goal_parts, "Flag": search.flag_parts,
                 "QuestionnaireResponse": search.questionnaire_parts}[fhir_type](who, params)
    page = await search.run(db, who, parts, count=count, cursor=params.get("_cursor", [None])[-1],
                            descending=descending)
    resources = await to_resources(db, who, page.records, fhir_type)
    base = urls.base_url(request)
    kept = [(k, v) for k, v in kept if k != "_cursor"]
    links = [{"relation": "self", "url": urls.absolute(request, fhir_type, kept + _cursor_of(params))}]
    if page.next_cursor:
        links.append({"relation": "next", "url": urls.absolute(request, fhir_type,
                                                               kept + [("_cursor", page.next_cursor)])})
    bundle: dict[str, Any] = {
        "resourceType": "Bundle", "type": "searchset",
        "meta": {"lastUpdated": datetime.now(UTC).isoformat()},
        "link": links,
        "entry": [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
                  for r in resources],
    }
    if not page.next_cursor and "_cursor" not in params:
        bundle["total"] = len(resources)  # known for free on a single page
    return FhirOut(bundle, headers={"Cache-Control": "no-store"})


def _cursor_of(params: dict[str, list[str]]) -> list[tuple[str, str]]:
    return [("_cursor", params["_cursor"][-1])] if "_cursor" in params else []


def _declared(name: str) -> dict[str, Any] | None:
    if name not in PATTERNS:
        return None
    if name in REPEATABLE:
        return {"items": {"type": "string", "pattern": PATTERNS[name]}}
    return {"pattern": PATTERNS[name]}


def _documented(endpoint: Any, params: list[tuple[str, str]]) -> Any:
    """Declare the search parameters for OpenAPI (they are parsed from the query string, repeats included)."""
    sig = inspect.signature(endpoint)
    extra = [
        inspect.Parameter(f"p_{name.replace('-', '_')}", inspect.Parameter.KEYWORD_ONLY,
                          annotation=list[str] | None if name in REPEATABLE else str | None,
                          default=Query(None, alias=name, description=desc, max_length=None if name in REPEATABLE
                                        else 2000, json_schema_extra=_declared(name)))
        for name, desc in params
    ]

    async def documented(**kwargs: Any) -> Any:
        return await endpoint(**{k: v for k, v in kwargs.items() if not k.startswith("p_")})

    # Functions do not declare __signature__ to a checker; inspect, hence FastAPI, reads it.
    documented.__signature__ = sig.replace(parameters=[*sig.parameters.values(), *extra])  # type: ignore[attr-defined]
    documented.__name__ = endpoint.__name__
    return documented


# ---------------------------------------------------------------- the router


def capability_statement(request: Request) -> dict[str, Any]:
    issuer = request.app.state.ctx.settings.issuer

    def resource(fhir_type: str, interactions: list[str], profile_note: str) -> dict[str, Any]:
        operations = [{"name": "export", "definition": BULK_OPERATION + "patient-export"}] \
            if fhir_type == "Patient" else []
        return {**({"operation": operations} if operations else {}),
            "type": fhir_type, "documentation": profile_note,
            "interaction": [{"code": i} for i in interactions],
            "versioning": "versioned", "readHistory": True, "updateCreate": False,
            "searchParam": [{"name": n, "type": _param_type(n), "documentation": d}
                            for n, d in search_params(fhir_type) if n not in ("_count", "_cursor", "_sort")],
        }

    reads = ["read", "vread", "history-instance", "search-type"]
    return {
        "resourceType": "CapabilityStatement", "id": "strengths-api", "status": "active",
        "date": "2026-11-22", "publisher": "Strengths & Goals API", "kind": "instance",
        "software": {"name": "Strengths & Goals API", "version": request.app.version},
        "implementation": {"description": "FHIR R4 facade over strengths-based therapy records",
                           "url": base_url(request)},
        "fhirVersion": FHIR_VERSION, "format": [FHIR_JSON, "json"],
        "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
        "rest": [{
            "mode": "server",
            "documentation": "Paging through Bundle.link next (opaque cursor); _sort=date|-date on Observation.",
            "security": {
                "cors": False,
                "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                         "code": "SMART-on-FHIR"}]}],
                "extension": [{
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [{"url": "token", "valueUri": f"{issuer}/oauth/token"},
                                  {"url": "authorize", "valueUri": f"{issuer}/oauth/authorize"},
                                  {"url": "revoke", "valueUri": f"{issuer}/oauth/revoke"}],
                }],
                "description": "OAuth 2.0: client credentials for practice systems; authorization code with PKCE "
                               "for patients' own apps (app links); SMART v2 scopes with FHIR resource names as "
                               "aliases.",
            },
            "resource": [
                resource("Patient", reads, "Clients"),
                resource("Goal", reads, "Goals built on strengths (workflow-protectiveFactor)"),
                resource("Observation", [*reads, "create"],
                         "Measurements (PHQ-9/GAD-7 as panels), strengths, protective factors and exceptions"),
                resource("Flag", reads, "Safety alerts (category safety)"),
                resource("QuestionnaireResponse", [*reads, "create"],
                         "PHQ-9 and GAD-7 responses (LOINC questionnaires, SDC); create stores a measurement"),
                {"type": "Group", "interaction": [{"code": "read"}, {"code": "search-type"}],
                 "documentation": "The organization's caseload (one Group; its id is the organization's id)",
                 "searchParam": [{"name": "_id", "type": "token"}],
                 "operation": [{"name": "export", "definition": BULK_OPERATION + "group-export"}]},
                {"type": "Questionnaire", "interaction": [{"code": "read"}],
                 "documentation": "PHQ-9 (44249-1) and GAD-7 (69737-5) as this server takes them"},
                {"type": "CodeSystem", "interaction": [{"code": "read"}],
                 "documentation": "Our code systems: " + ", ".join(codes.CODE_SYSTEM_IDS)},
            ],
            "operation": [{"name": "export", "definition": BULK_OPERATION + "export",
                           "documentation": "FHIR Bulk Data Access v2 export: _type, _since, _outputFormat; "
                                            "Patient/$export and Group/{id}/$export too"}],
        }],
    }


BULK_OPERATION = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/"


def _param_type(name: str) -> str:
    return {"date": "date", "_lastUpdated": "date", "authored": "date", "patient": "reference",
            "subject": "reference", "questionnaire": "reference", "_id": "token"}.get(name, "token")


def fhir_router() -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["FHIR R4"], route_class=FhirRoute, default_response_class=FhirOut)

    @router.get("/metadata", operation_id="fhir_capabilities", summary="CapabilityStatement",
                responses=fhir_responses(200, "What this server supports"), response_model=None)
    async def metadata(request: Request) -> Response:
        return FhirOut(capability_statement(request), headers={"Cache-Control": "public, max-age=300"})

    @router.get("/CodeSystem/{code_system_id}", operation_id="fhir_read_codesystem", summary="Read a CodeSystem",
                responses=fhir_responses(200, "A CodeSystem of ours", 404), response_model=None)
    async def read_code_system(code_system_id: str) -> Response:
        resource = codes.code_system(code_system_id)
        if resource is None:
            raise NotFound(f"No CodeSystem {code_system_id}; ours are {', '.join(codes.CODE_SYSTEM_IDS)}")
        return FhirOut(resource, headers={"Cache-Control": "public, max-age=3600"})

    # Imported here: these modules build on this one's helpers. Bulk Data first, so that Patient/$export is
    # not taken for the read of a Patient whose id is "$export".
    from service.fhir import export_rest, group, questionnaire_rest

    export_rest.add_routes(router)
    group.add_routes(router)
    for fhir_type in ("Patient", "Goal", "Observation", "Flag", "QuestionnaireResponse"):
        _resource_routes(router, fhir_type)
    questionnaire_rest.add_routes(router)

    Creator = Annotated[Principal, fhir_needs("Observation", "c")]

    @router.post(
        "/Observation", status_code=201, operation_id="fhir_create_observation", response_model=None,
        summary="Create an Observation (a measurement; may open a safety alert, found as a Flag)",
        responses={**fhir_responses(201, "The created Observation", 400, 401, 403, 409, 412, 413, 415, 422),
                   200: fhir_responses(200, "If-None-Exist matched one Observation: it, and nothing created")[200]},
        openapi_extra={"requestBody": {"required": True, "content": {FHIR_JSON: {"schema": {
            "type": "object", "description": "A FHIR R4 Observation", "required": ["resourceType"]}}}}},
    )
    async def create_observation(who: Creator, db: Db, request: Request, if_none_exist: IfNoneExist = None,
                                 idempotency_key: IdempotencyKeyHeader = None) -> Response:
        check(who, "measurements", "c")
        if not is_json(request.headers.get("content-type")):
            raise UnsupportedMediaType("Send the Observation as application/fhir+json")
        condition = _condition(if_none_exist) if if_none_exist is not None else None
        if condition and (found := await _existing(db, who, request, condition)) is not None:
            return found
        async def run() -> Response:
            body = await measurement_body(db, who, loads_strict(await request.body()), request)
            try:
                if condition:  # a concurrent twin may win the unique index: then answer with its record
                    async with db.begin_nested():
                        record = await service.create(db, who, REGISTRY["measurements"], body)
                else:
                    record = await service.create(db, who, REGISTRY["measurements"], body)
            except ValidationFailed as exc:
                raise with_fhir_paths(exc) from None
            except Conflict:
                if condition and (found := await _existing(db, who, request, condition)) is not None:
                    return found
                raise
            resource = (await to_resources(db, who, [("measurements", record)]))[0]
            location = urls.absolute(request, f"Observation/{resource['id']}/_history/{record['version']}")
            return resource_response(resource, 201, Location=location)

        return await idempotent(request, db, who, run, client_ids=_subject_ids)

    @router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    async def unknown(rest: str, request: Request) -> Response:
        if KNOWN_PATH.match(rest):
            allow = "GET, DELETE" if rest.startswith("$export-status/") and "/files/" not in rest else "GET"
            raise MethodNotAllowed(f"{request.method} {PREFIX}/{rest} is not supported by this server",
                                   headers={"Allow": "POST, GET" if rest in ("Observation", "QuestionnaireResponse")
                                            else allow})
        return outcome_response(404, f"This server does not support {PREFIX}/{rest}")

    return router


IfNoneExist = Annotated[str | None, Header(
    alias="If-None-Exist", max_length=1000, json_schema_extra={"pattern": CONDITION.pattern},
    description="Conditional create: identifier=system|value; a match is answered 200 and nothing is created")]


def _condition(header: str) -> str:
    pairs = parse_qsl(header.removeprefix("?"), keep_blank_values=True)
    if not CONDITION.match(header) or len(pairs) != 1 or pairs[0][0] != "identifier" or "|" not in pairs[0][1]:
        raise urls.BadSearch("If-None-Exist supports one parameter: identifier=system|value")
    return pairs[0][1]


async def _existing(db: Any, who: Principal, request: Request, identifier: str) -> Response | None:
    parts = search.observation_parts(who, {"identifier": [identifier]}, ["measurements"])
    page = await search.run(db, who, parts, count=2, cursor=None)
    if len(page.records) > 1:
        raise PreconditionFailed(f"If-None-Exist matches several Observations ({identifier})")
    if not page.records:
        return None
    resource = (await to_resources(db, who, page.records))[0]
    return resource_response(resource, 200, Location=urls.absolute(
        request, f"Observation/{resource['id']}/_history/{resource['meta']['versionId']}"))


def _resource_routes(router: APIRouter, fhir_type: str) -> None:
    Reader = Annotated[Principal, fhir_needs(fhir_type, "r")]
    Searcher = Annotated[Principal, fhir_needs(fhir_type, "s")]
    lower = fhir_type.lower()
    errors_one = (401, 403, 404, 410)

    async def search_type(who: Searcher, db: Db, request: Request) -> Response:
        return await run_search(fhir_type, who, db, request)

    router.add_api_route(f"/{fhir_type}", _documented(search_type, search_params(fhir_type)), methods=["GET"],
                         operation_id=f"fhir_search_{lower}", summary=f"Search {fhir_type}", response_model=None,
                         responses=fhir_responses(200, "A searchset Bundle", 400, 401, 403))

    async def read_one(resource_id: str, who: Reader, db: Db) -> Response:
        return await read(fhir_type, resource_id, who, db)

    router.add_api_route(f"/{fhir_type}/{{resource_id}}", read_one, methods=["GET"], response_model=None,
                         operation_id=f"fhir_read_{lower}", summary=f"Read a {fhir_type}",
                         responses=fhir_responses(200, f"The {fhir_type}", *errors_one))

    async def history_one(resource_id: str, who: Searcher, db: Db, request: Request) -> Response:
        return await instance_history(fhir_type, resource_id, who, db, request)

    router.add_api_route(f"/{fhir_type}/{{resource_id}}/_history", history_one, methods=["GET"], response_model=None,
                         operation_id=f"fhir_history_{lower}", summary=f"Every version of a {fhir_type}",
                         responses=fhir_responses(200, "A history Bundle", 401, 403, 404))

    async def vread_one(resource_id: str, version_id: str, who: Reader, db: Db) -> Response:
        return await vread(fhir_type, resource_id, version_id, who, db)

    router.add_api_route(f"/{fhir_type}/{{resource_id}}/_history/{{version_id}}", vread_one, methods=["GET"],
                         response_model=None, operation_id=f"fhir_vread_{lower}",
                         summary=f"One version of a {fhir_type}",
                         responses=fhir_responses(200, f"The {fhir_type} at that version", *errors_one))


def _subject_ids(response: Response) -> list[str]:
    """The client an Observation is about, so that erasing the client also erases its stored replies."""
    reference = orjson.loads(bytes(response.body)).get("subject", {}).get("reference", "")
    return [reference.rsplit("/", 1)[-1]] if reference else []
