"""REST routes for app links (CONTRACT.md section 2, patient app linking): a thin adapter over
``service.auth.app_links``. Clinician-side tokens only (``system/`` or ``user/``); patient tokens get 403.

(No ``from __future__ import annotations`` here: FastAPI must see the real parameter types.)
"""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Request, Response

from service.api.dependencies import Db, IdempotencyKeyHeader, needs, problems
from service.api.http import NO_STORE, JSONOut, StrictRoute
from service.api.idempotency import idempotent
from service.auth import app_links
from service.auth.app_links import AppLinkCreated, AppLinkIn, AppLinkPage
from service.auth.principal import Principal

router = APIRouter(tags=["App links"], route_class=StrictRoute)
Linker = Annotated[Principal, needs("Client", "u")]
Reader = Annotated[Principal, needs("Client", "r")]
PATH = "/v1/clients/{client_id}/app-links"


@router.post(
    PATH, status_code=201, response_model=AppLinkCreated, operation_id="create_app_link",
    summary="Link a client to a patient's own app: a one-time link code, shown once",
    responses=problems(400, 401, 403, 404, 409, 410, 413, 415, 422),
)
async def create_app_link(client_id: UUID, body: AppLinkIn, who: Linker, db: Db, request: Request,
                          idempotency_key: IdempotencyKeyHeader = None) -> Response:
    ctx = request.app.state.ctx

    async def run() -> Response:
        link = await app_links.create(db, who, client_id, body.app_id, ctx.settings.link_code_ttl_hours)
        return JSONOut(link, status_code=201, headers=NO_STORE)

    def clients(_response: Response) -> list[Any]:
        return [client_id]

    return await idempotent(request, db, who, run, client_ids=clients, sealed=ctx.at_rest.replies)


@router.get(
    PATH, response_model=AppLinkPage, operation_id="list_app_links", summary="A client's app links (no codes)",
    responses=problems(401, 403, 404, 410, 422),
)
async def list_app_links(client_id: UUID, who: Reader, db: Db) -> Response:
    return JSONOut({"data": await app_links.list_for(db, who, client_id)}, headers=NO_STORE)


@router.delete(
    PATH + "/{link_id}", status_code=204, response_class=Response, operation_id="revoke_app_link",
    summary="Revoke an app link and every token issued through it", responses=problems(401, 403, 404, 410, 422),
)
async def revoke_app_link(client_id: UUID, link_id: UUID, who: Linker, db: Db) -> Response:
    await app_links.revoke(db, who, client_id, link_id)
    return Response(status_code=204)
