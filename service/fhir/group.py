"""``Group``: the organization's caseload, one Group per organization whose id is the organization's id.

Its members are the organization's live clients (a patient-context token sees a Group of its own patient
only, as every read is limited to it); a discharged client is a member with ``inactive: true``. The Group is
the target of ``Group/{id}/$export``. It is computed from the clients, so it has no versions of its own.
"""


from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Request, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from service.api.dependencies import Db
from service.audit import service as audit
from service.auth.principal import Principal
from service.collections.registry import REGISTRY
from service.collections.repository import readable
from service.domain.enums import ClientStatus
from service.errors import NotFound
from service.fhir import urls
from service.fhir.http import FhirOut
from service.fhir.rest import fhir_needs, fhir_responses
from service.models import Organization

GROUP_PARAMS = [("_id", "The group's id (there is one group: the caseload)"),
                ("_count", "Accepted for clients that always send it; there is one group")]


def caseload_id(text: str, who: Principal) -> UUID:
    """The caseload's id when ``text`` names it; NotFound otherwise (another organization's included)."""
    if text != str(who.org_id):
        raise NotFound(f"No Group with id {text}")
    return who.org_id


async def caseload(conn: AsyncConnection, who: Principal) -> dict[str, Any]:
    clients = REGISTRY["clients"].table
    rows = (await conn.execute(readable(clients, who).where(clients.c.deleted_at.is_(None)).with_only_columns(
        clients.c.id, clients.c.status, clients.c.updated_at).order_by(clients.c.id))).all()
    orgs = Organization.__table__
    name = (await conn.execute(select(orgs.c.name).where(orgs.c.id == who.org_id))).scalar()
    audit.seen_many("Client", [r.id for r in rows], [r.id for r in rows])
    updated = max((r.updated_at for r in rows), default=None)
    return {
        "resourceType": "Group", "id": str(who.org_id),
        "meta": {"lastUpdated": (updated or datetime.now(UTC)).isoformat()},
        "active": True, "type": "person", "actual": True,
        "code": {"text": "Caseload"},
        "name": f"{name}: caseload" if name else "Caseload",
        "quantity": len(rows),
        **({"member": [{"entity": {"reference": f"Patient/{r.id}"}, **(
            {"inactive": True} if r.status == ClientStatus.discharged.value else {})} for r in rows]} if rows else {}),
    }


def add_routes(router: APIRouter) -> None:
    Reader = Annotated[Principal, fhir_needs("Group", "r")]
    Searcher = Annotated[Principal, fhir_needs("Group", "s")]

    @router.get("/Group", operation_id="fhir_search_group", response_model=None,
                summary="Search Group (the organization's caseload: one Group)",
                responses=fhir_responses(200, "A searchset Bundle with the caseload Group", 400, 401, 403))
    async def search_group(who: Searcher, db: Db, request: Request, _id: str | None = None,
                           _count: str | None = None) -> Response:
        params = urls.parameter_values(request, {name for name, _ in GROUP_PARAMS}, "Group")
        wanted = [v for raw in params.get("_id", []) for v in raw.split(",")]
        entries = []
        if not wanted or str(who.org_id) in wanted:
            group = await caseload(db, who)
            entries.append({"fullUrl": f"{urls.base_url(request)}/Group/{group['id']}", "resource": group,
                            "search": {"mode": "match"}})
        return FhirOut({"resourceType": "Bundle", "type": "searchset", "total": len(entries),
                        "meta": {"lastUpdated": datetime.now(UTC).isoformat()},
                        "link": [{"relation": "self", "url": f"{urls.base_url(request)}/Group"}],
                        **({"entry": entries} if entries else {})},
                       headers={"Cache-Control": "no-store"})

    @router.get("/Group/{group_id}", operation_id="fhir_read_group", response_model=None,
                summary="Read the caseload Group (its id is the organization's id)",
                responses=fhir_responses(200, "The caseload Group", 401, 403, 404))
    async def read_group(group_id: str, who: Reader, db: Db) -> Response:
        caseload_id(group_id, who)
        return FhirOut(await caseload(db, who), headers={"Cache-Control": "no-store"})

