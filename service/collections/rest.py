"""The one router factory: every collection's REST operations, each declaring its scope once.

(No ``from __future__ import annotations`` here: FastAPI must see the real body and output types.)
"""

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.security import SecurityScopes
from pydantic import BaseModel, Field, create_model

from service.api.dependencies import Db, IdempotencyKeyHeader, WriteDb, etag, needs, problems, unit_of_work
from service.api.http import NO_STORE, JSONOut, Paged, QueryParams, StrictRoute
from service.api.idempotency import idempotent
from service.api.uow import read_in_one
from service.auth.principal import Principal
from service.auth.scopes import required_scope
from service.collections import jsonread, service
from service.collections.fastread import FastRead
from service.collections.registry import REGISTRY, Collection
from service.collections.repository import identifier_field, parse_identifier
from service.collections.types import Instant, Out, list_of
from service.errors import MethodNotAllowed, ValidationFailed


def record_client_ids(response: Response) -> list[Any]:
    record = orjson.loads(bytes(response.body))
    return [record.get("client_id") or record["id"]]


def record_response(record: dict[str, Any], status: int = 200, **headers: str) -> JSONOut:
    return JSONOut(record, status_code=status, headers={"ETag": etag(record["version"]), **NO_STORE, **headers})


class HistoryEntry(Out):
    version: int
    action: str
    changed_at: datetime
    changed_by: str | None
    record: dict[str, Any]


class HistoryPage(Out):
    data: list[HistoryEntry]


def page_model(coll: Collection) -> type[BaseModel]:
    return create_model(
        f"{coll.out.__name__}Page", __base__=Out, data=(list_of(coll.out), ...), next_cursor=(str | None, None)
    )


def list_query(coll: Collection) -> type[Paged]:
    """The list's query parameters (CONTRACT.md section 4): paging, the filters of every collection
    (``updated_since``, ``external_id``, ``client_id`` and ``status`` where the collection has them), and the
    collection's own (reference filters, time windows, the identifier alias)."""
    fields: dict[str, Any] = {
        "updated_since": (Instant | None, Field(None, description="Updated at or after (a date: 00:00 UTC)")),
        "external_id": (str | None, identifier_field()),
    }
    if coll.identifier_param != "external_id":
        fields[coll.identifier_param] = (
            str | None, identifier_field(description="system|value; an alias of external_id"))
    if coll.client_owned:
        fields["client_id"] = (UUID | None, Field(None))
    if "status" in coll.table.c:
        status_type: Any = coll.out.model_fields["status"].annotation
        fields["status"] = (status_type | None, Field(None))
    for name in coll.filters:
        fields[name] = (UUID | None, Field(None))
    for column in coll.windows:
        stem = column.removesuffix("_at")
        fields[f"{stem}_since"] = (Instant | None, Field(None, description=f"{column} at or after"))
        fields[f"{stem}_until"] = (Instant | None, Field(None, description=f"{column} before"))
    return create_model(f"{coll.out.__name__}Filters", __base__=Paged, **fields)


def list_filters(coll: Collection, query: Paged) -> dict[str, Any]:
    """The filters of a list query as ``service.list_statement`` takes them (external ids split)."""
    filters = query.model_dump(exclude={"limit", "cursor"}, exclude_none=True)
    alias = filters.pop(coll.identifier_param, None) if coll.identifier_param != "external_id" else None
    if alias is not None and filters.setdefault("external_id", alias) != alias:
        raise ValidationFailed.on(coll.identifier_param,
                                  f"{coll.identifier_param} is an alias of external_id; send one of them",
                                  "conflicting_parameters")
    if "external_id" in filters:
        name = coll.identifier_param if alias is not None else "external_id"
        filters["external_id"] = parse_identifier(filters["external_id"], name)
    return filters


INCLUDE_MAX_LENGTH = 500


class IncludeQuery(QueryParams):
    """A read's query: ``include``, declared per collection with the names of its children."""

    include: str | None = None


def _include_param(coll: Collection) -> tuple[Any, Any]:
    """The read's ``?include=``: the check of its value (also called by the fast read path,
    service.collections.fastread), and the route's dependency, which takes it from the read's query model."""
    allowed = sorted(n.replace("-", "_") for n in coll.children)
    names = "|".join(allowed)

    async def include(include: str | None) -> list[str]:
        if not include:
            return []
        names = [n.strip() for n in include.split(",") if n.strip()]
        unknown = [n for n in names if n not in allowed]
        if unknown:
            raise ValidationFailed.on("include", f"Unknown include {', '.join(unknown)}; one of {', '.join(allowed)}",
                                      "unknown_include")
        return list(dict.fromkeys(names))

    ReadQuery = create_model(
        f"{coll.out.__name__}ReadQuery", __base__=IncludeQuery,
        include=(str | None, Field(None, max_length=INCLUDE_MAX_LENGTH,
                                   description=f"Comma-separated: {', '.join(allowed)}",
                                   json_schema_extra={"pattern": f"^(({names})(,({names}))*)?$"})),
    )

    async def included(query: Annotated[ReadQuery, Query()]) -> list[str]:
        return await include(query.include)

    return include, included


def _with_included(coll: Collection) -> type[BaseModel]:
    """The read response: the record, and each ``?include=`` child list under its key when asked for."""
    if not coll.children:
        return coll.out
    fields: dict[str, Any] = {}
    for name in coll.children:
        child = REGISTRY[name]
        fields[child.key] = (list_of(child.out), Field(None, description=f"With ?include={child.key}"))
    return create_model(f"{coll.out.__name__}WithIncluded", __base__=coll.out, **fields)


def batch_route(router: APIRouter, coll: Collection, batch: Any) -> None:
    """``POST /v1/<collection>/batch``: a batch use case (``domain.measurement_batch.BatchUseCase``) on the
    collection's router, in the request's one unit of work (``WriteDb``: two round trips fewer than ``Db``), with
    idempotency keys as every create has them."""
    Creator = Annotated[Principal, needs(coll.resource, "c")]

    async def post_batch(body: batch.body, who: Creator, db: WriteDb, request: Request,
                         idempotency_key: IdempotencyKeyHeader = None) -> Response:
        async def run() -> Response:
            return JSONOut({"results": await batch.run(db, who, body)}, headers=NO_STORE)

        return await idempotent(request, db, who, run, client_ids=lambda _response: batch.client_ids(body))

    router.add_api_route("/batch", post_batch, methods=["POST"], response_model=batch.out,
                         operation_id=f"create_{coll.name}_batch", summary=batch.summary,
                         responses=problems(400, 401, 403, 409, 413, 415, 422))


def batch_routers(batches: list[Any]) -> list[APIRouter]:
    """The batch use cases' routes (``POST /v1/<collection>/batch``), in routers of their own: the application
    routes them before the collections' routers, so a batch does not walk past every REST route to be matched."""
    routers = []
    for batch in batches:
        coll = batch.collection
        router = APIRouter(prefix=f"/v1/{coll.name}", tags=[coll.title], route_class=StrictRoute)
        batch_route(router, coll, batch)
        routers.append(router)
    return routers


def collection_router(coll: Collection) -> tuple[APIRouter, FastRead]:
    """The collection's router, and the declaration of its read route's fast path (``fastread.ReadFastPath``)."""
    router = APIRouter(prefix=f"/v1/{coll.name}", tags=[coll.title], route_class=StrictRoute)
    Creator = Annotated[Principal, needs(coll.resource, "c")]
    Reader = Annotated[Principal, needs(coll.resource, "r")]
    Searcher = Annotated[Principal, needs(coll.resource, "s")]
    Updater = Annotated[Principal, needs(coll.resource, "u")]
    Deleter = Annotated[Principal, needs(coll.resource, "d")]
    Upserter = Annotated[Principal, needs(coll.resource, "cu")]
    # The collection's body models, built at run time: FastAPI reads them from the handlers' annotations, which a
    # checker cannot take for types (hence the valid-type ignores on create, patch and upsert below).
    CreateBody = coll.create
    PatchBody = coll.patch
    Filters = list_query(coll)  # built at run time too (valid-type ignore on the list below)
    include_dependency, included = _include_param(coll)
    Include = Annotated[list[str], Depends(included)]
    IfMatch = Annotated[str | None, Header(max_length=200, description='W/"<version>" from the ETag')]
    key = coll.key
    singular = coll.type_name
    noun = singular.replace("_", " ")
    path_id = f"{singular}_id"
    RecordId = Annotated[UUID, Path(alias=path_id)]  # named after the collection (strength_id), for OpenAPI links

    links = record_links(coll)

    @router.post(
        "", status_code=201, response_model=coll.out, operation_id=f"create_{singular}",
        summary=f"Create a {noun}",
        responses={201: {"description": "Created", "links": links}, **problems(400, 401, 403, 409, 413, 415, 422)},
    )
    async def create_record(body: CreateBody, who: Creator, db: Db, request: Request,  # type: ignore[valid-type]
                            idempotency_key: IdempotencyKeyHeader = None) -> Response:
        async def run() -> Response:
            record = await service.create(db, who, coll, body)
            return record_response(record, 201, Location=f"/v1/{coll.name}/{record['id']}")

        return await idempotent(request, db, who, run, client_ids=record_client_ids)

    @router.get(
        "", response_model=page_model(coll), operation_id=f"list_{key}", summary=f"List {coll.title.lower()}",
        responses=problems(400, 401, 403, 422),
    )
    async def list_records(who: Searcher, request: Request,
                           query: Annotated[Filters, Query()]) -> Response:  # type: ignore[valid-type]
        page: Paged = query
        filters = list_filters(coll, page)
        ctx = request.app.state.ctx
        body, next_cursor = await read_in_one(  # one statement: alone on a pinned connection when it may be
            ctx.engine, ctx.pinned, who, ctx.tokens.revocations,
            lambda db: jsonread.page(db, who, coll.name, filters, page.limit, page.cursor))
        headers = dict(NO_STORE)
        if next_cursor:
            url = request.url.include_query_params(cursor=next_cursor)
            headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
        return Response(body, media_type="application/json", headers=headers)

    async def read_record(record_id: RecordId, who: Reader, db: Db, include: Include) -> Response:
        version, body = await jsonread.read(db, who, coll.name, record_id, include)
        return Response(body, media_type="application/json", headers={"ETag": etag(version), **NO_STORE})

    router.add_api_route(
        f"/{{{path_id}}}", read_record, methods=["GET"], response_model=_with_included(coll),
        operation_id=f"read_{singular}", summary=f"Read a {noun}", responses=problems(401, 403, 404, 410, 422),
    )
    # The same route, its dependencies and endpoint, for service.collections.fastread (the hot path of reads).
    fast_read = FastRead(
        coll=coll, route=router.routes[-1], scopes=SecurityScopes(scopes=[required_scope(coll.resource, "r")]),
        include=include_dependency, include_query=included, include_max_length=INCLUDE_MAX_LENGTH,
        endpoint=read_record,
        unit_of_work=unit_of_work,
    )

    async def patch_record(record_id: RecordId, body: PatchBody, who: Updater, db: Db,  # type: ignore[valid-type]
                           if_match: IfMatch = None) -> Response:
        return record_response(await service.patch(db, who, coll, record_id, body, if_match))

    router.add_api_route(
        f"/{{{path_id}}}", patch_record, methods=["PATCH"], response_model=coll.out,
        operation_id=f"update_{singular}", summary=f"Update a {noun}",
        responses=problems(400, 401, 403, 404, 409, 410, 412, 413, 415, 422),
    )

    ext_name = coll.identifier_param
    upsert_fields: dict[str, Any] = {
        ext_name: (str, identifier_field(required=True, description="system|value (for measurements: source|id)"))}
    UpsertQuery = create_model(f"{coll.out.__name__}UpsertQuery", __base__=QueryParams, **upsert_fields)

    async def upsert_record(body: CreateBody, who: Upserter, db: Db,  # type: ignore[valid-type]
                            query: Annotated[UpsertQuery, Query()],
                            if_match: IfMatch = None) -> Response:
        system, value = parse_identifier(getattr(query, ext_name), ext_name)
        record, created = await service.upsert(db, who, coll, system, value, body, if_match)
        return record_response(record, 201 if created else 200)

    router.add_api_route(
        "", upsert_record, methods=["PUT"], response_model=coll.out, operation_id=f"upsert_{singular}",
        summary=f"Create or update the {noun} an external identifier names",
        responses={200: {"description": "Updated", "links": links},
                   201: {"description": "Created", "model": coll.out, "links": links},
                   **problems(400, 401, 403, 404, 409, 410, 412, 413, 415, 422)},
    )

    if coll.deletable:
        async def delete_record(record_id: RecordId, who: Deleter, db: Db, if_match: IfMatch = None) -> Response:
            await service.delete(db, who, coll, record_id, if_match)
            return Response(status_code=204)

        responses = problems(401, 403, 404, 410, 412, 422)
    else:
        async def delete_record(record_id: RecordId, who: Deleter, db: Db, if_match: IfMatch = None) -> Response:
            await service.fetch(db, who, coll, record_id)
            raise MethodNotAllowed(f"A {noun} cannot be deleted; resolve it instead", headers={"Allow": "GET, PATCH"})

        responses = problems(401, 403, 404, 405, 410, 422)
    router.add_api_route(
        f"/{{{path_id}}}", delete_record, methods=["DELETE"], status_code=204,
        response_class=Response,
        operation_id=f"delete_{singular}", summary=f"Delete a {noun}", responses=responses,
    )
    return router, fast_read


def record_links(coll: Collection) -> dict[str, Any]:
    """OpenAPI links from a response carrying a record to the operations on that record (read, update,
    delete, history): for integrators' tools and for schemathesis's stateful runs."""
    singular = coll.type_name
    by_id = {f"{singular}_id": "$response.body#/id"}
    return {
        f"read_{singular}": {"operationId": f"read_{singular}", "parameters": by_id},
        f"update_{singular}": {"operationId": f"update_{singular}", "parameters": by_id},
        f"delete_{singular}": {"operationId": f"delete_{singular}", "parameters": by_id},
        f"history_{singular}": {"operationId": f"history_{singular}",
                                "parameters": {"record_id": "$response.body#/id"}},
    }


def history_router(collections: list[Collection]) -> APIRouter:
    router = APIRouter(prefix="/v1/history", tags=["History"], route_class=StrictRoute)
    for coll in collections:
        router.add_api_route(
            f"/{coll.name}/{{record_id}}", _history_endpoint(coll), methods=["GET"], response_model=HistoryPage,
            operation_id=f"history_{coll.type_name}", summary=f"Every version of a {coll.type_name.replace('_', ' ')}",
            responses=problems(401, 403, 404, 422),
        )
    return router


def _history_endpoint(coll: Collection) -> Any:
    Searcher = Annotated[Principal, needs(coll.resource, "s")]

    async def read_history(record_id: UUID, who: Searcher, db: Db) -> Response:
        return JSONOut({"data": await service.history(db, who, coll, record_id)}, headers=NO_STORE)

    return read_history

