"""The one router factory: every collection's REST operations, each declaring its scope once.

(No ``from __future__ import annotations`` here: FastAPI must see the real body and output types.)
"""

import inspect
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.security import SecurityScopes
from pydantic import BaseModel, Field, create_model

from service.api import cursors
from service.api.dependencies import Db, IdempotencyKeyHeader, etag, needs, problems, unit_of_work
from service.api.http import NO_STORE, JSONOut, StrictRoute
from service.api.idempotency import idempotent
from service.auth.principal import Principal
from service.auth.scopes import require, required_scope
from service.collections import service
from service.collections.fastread import FastRead
from service.collections.registry import REGISTRY, Collection
from service.collections.repository import identifier_query, parse_identifier
from service.collections.types import Out, Timestamp, list_of
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


def _list_filters(coll: Collection) -> Any:
    """A dependency whose signature holds exactly the filters this collection supports."""
    table = coll.table
    params = [
        inspect.Parameter("limit", inspect.Parameter.KEYWORD_ONLY, annotation=int,
                          default=Query(50, ge=1, le=500, description="Page size (max 500)")),
        inspect.Parameter("cursor", inspect.Parameter.KEYWORD_ONLY, annotation=str | None,
                          default=cursors.RECORDS.query()),
        inspect.Parameter("updated_since", inspect.Parameter.KEYWORD_ONLY, annotation=Timestamp | None,
                          default=Query(None)),
    ]
    ext_name = coll.identifier_param
    params.append(inspect.Parameter(ext_name, inspect.Parameter.KEYWORD_ONLY, annotation=str | None,
                                    default=identifier_query(ext_name)))
    if coll.client_owned:
        params.append(inspect.Parameter("client_id", inspect.Parameter.KEYWORD_ONLY, annotation=UUID | None,
                                        default=Query(None)))
    if "status" in table.c:
        status_type: Any = coll.out.model_fields["status"].annotation
        params.append(inspect.Parameter("status", inspect.Parameter.KEYWORD_ONLY, annotation=status_type | None,
                                        default=Query(None)))
    for name in coll.filters:
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=UUID | None,
                                        default=Query(None)))

    async def filters(**kwargs: Any) -> dict[str, Any]:
        if ext_name in kwargs:
            kwargs["external_id"] = kwargs.pop(ext_name)
        return kwargs

    # Functions do not declare __signature__ to a checker; inspect, hence FastAPI, reads it.
    filters.__signature__ = inspect.Signature(params, return_annotation=dict[str, Any])  # type: ignore[attr-defined]
    return filters


INCLUDE_MAX_LENGTH = 500


def _include_param(coll: Collection) -> Any:
    allowed = sorted(n.replace("-", "_") for n in coll.children)
    names = "|".join(allowed)

    async def include(
        include: str | None = Query(None, max_length=INCLUDE_MAX_LENGTH,
                                    description=f"Comma-separated: {', '.join(allowed)}",
                                    json_schema_extra={"pattern": f"^(({names})(,({names}))*)?$"}),
    ) -> list[str]:
        if not include:
            return []
        names = [n.strip() for n in include.split(",") if n.strip()]
        unknown = [n for n in names if n not in allowed]
        if unknown:
            raise ValidationFailed.on("include", f"Unknown include {', '.join(unknown)}; one of {', '.join(allowed)}",
                                      "unknown_include")
        return list(dict.fromkeys(names))

    return include


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
    collection's router, in the request's one unit of work, with idempotency keys as every create has them."""
    Creator = Annotated[Principal, needs(coll.resource, "c")]

    async def post_batch(body: batch.body, who: Creator, db: Db, request: Request,
                         idempotency_key: IdempotencyKeyHeader = None) -> Response:
        async def run() -> Response:
            return JSONOut({"results": await batch.run(db, who, body)}, headers=NO_STORE)

        return await idempotent(request, db, who, run, client_ids=lambda _response: batch.client_ids(body))

    router.add_api_route("/batch", post_batch, methods=["POST"], response_model=batch.out,
                         operation_id=f"create_{coll.name}_batch", summary=batch.summary,
                         responses=problems(400, 401, 403, 409, 413, 415, 422))


def collection_router(coll: Collection, batch: Any = None) -> tuple[APIRouter, FastRead]:
    """The collection's router (with ``batch``'s route when the collection has a batch use case), and the
    declaration of its read route's fast path (``fastread.ReadFastPath``)."""
    router = APIRouter(prefix=f"/v1/{coll.name}", tags=[coll.title], route_class=StrictRoute)
    if batch is not None:
        batch_route(router, coll, batch)
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
    Filters = Annotated[dict[str, Any], Depends(_list_filters(coll))]
    include_dependency = _include_param(coll)
    Include = Annotated[list[str], Depends(include_dependency)]
    IfMatch = Annotated[str | None, Header(max_length=200, description='W/"<version>" from the ETag')]
    key = coll.key
    singular = coll.type_name
    noun = singular.replace("_", " ")
    path_id = f"{singular}_id"

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
    async def list_records(who: Searcher, db: Db, request: Request, filters: Filters) -> Response:
        limit = filters.pop("limit")
        cursor = filters.pop("cursor")
        data, next_cursor = await service.list_page(db, who, coll, filters=filters, limit=limit, cursor=cursor)
        headers = dict(NO_STORE)
        if next_cursor:
            url = request.url.include_query_params(cursor=next_cursor)
            headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
        return JSONOut({"data": data, "next_cursor": next_cursor}, headers=headers)

    async def read_record(record_id: UUID, who: Reader, db: Db, include: Include) -> Response:
        record = await service.get(db, who, coll, record_id)
        if include:
            for name in include:
                child = REGISTRY[name.replace("_", "-")]
                require(who, child.resource, "s")  # embedding a child collection is a search of it
            record.update(await service.children(db, who, coll, record_id, include))
        return record_response(record)

    router.add_api_route(
        f"/{{{path_id}}}", _rename(read_record, path_id), methods=["GET"], response_model=_with_included(coll),
        operation_id=f"read_{singular}", summary=f"Read a {noun}", responses=problems(401, 403, 404, 410, 422),
    )
    # The same route, its dependencies and endpoint, for service.collections.fastread (the hot path of reads).
    fast_read = FastRead(
        coll=coll, route=router.routes[-1], scopes=SecurityScopes(scopes=[required_scope(coll.resource, "r")]),
        include=include_dependency, include_max_length=INCLUDE_MAX_LENGTH, endpoint=read_record,
        unit_of_work=unit_of_work,
    )

    async def patch_record(record_id: UUID, body: PatchBody, who: Updater, db: Db,  # type: ignore[valid-type]
                           if_match: IfMatch = None) -> Response:
        return record_response(await service.patch(db, who, coll, record_id, body, if_match))

    router.add_api_route(
        f"/{{{path_id}}}", _rename(patch_record, path_id), methods=["PATCH"], response_model=coll.out,
        operation_id=f"update_{singular}", summary=f"Update a {noun}",
        responses=problems(400, 401, 403, 404, 409, 410, 412, 413, 415, 422),
    )

    ext_name = coll.identifier_param
    ext_query = identifier_query(ext_name, required=True, description="system|value (for measurements: source|id)")

    async def upsert_record(body: CreateBody, who: Upserter, db: Db,  # type: ignore[valid-type]
                            identifier: str = ext_query, if_match: IfMatch = None) -> Response:
        system, value = parse_identifier(identifier, ext_name)
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
        async def delete_record(record_id: UUID, who: Deleter, db: Db, if_match: IfMatch = None) -> Response:
            await service.delete(db, who, coll, record_id, if_match)
            return Response(status_code=204)

        responses = problems(401, 403, 404, 410, 412, 422)
    else:
        async def delete_record(record_id: UUID, who: Deleter, db: Db, if_match: IfMatch = None) -> Response:
            await service.fetch(db, who, coll, record_id)
            raise MethodNotAllowed(f"A {noun} cannot be deleted; resolve it instead", headers={"Allow": "GET, PATCH"})

        responses = problems(401, 403, 404, 405, 410, 422)
    router.add_api_route(
        f"/{{{path_id}}}", _rename(delete_record, path_id), methods=["DELETE"], status_code=204,
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


def _rename(endpoint: Any, path_id: str) -> Any:
    """Name the path parameter after the collection (``strength_id``), for OpenAPI and its links."""
    sig = inspect.signature(endpoint)
    params = [p.replace(name=path_id) if p.name == "record_id" else p for p in sig.parameters.values()]

    async def renamed(**kwargs: Any) -> Any:
        kwargs["record_id"] = kwargs.pop(path_id)
        return await endpoint(**kwargs)

    renamed.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]  # read by inspect, FastAPI
    renamed.__name__ = endpoint.__name__
    renamed.__wrapped__ = endpoint  # type: ignore[attr-defined]
    return renamed

