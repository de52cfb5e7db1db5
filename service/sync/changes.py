"""The change feed: every committed create, update and delete exactly once, resumable from a cursor.

Entries are ordered by the writing transaction's id and read only below the oldest transaction still
in progress (``pg_snapshot_xmin``). A transaction that started earlier but commits later therefore
holds the feed back instead of being skipped: ids are assigned in start order, not commit order.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Response

from service import audit, cursors
from service.auth.principal import Principal
from service.auth.rest import needs_any
from service.auth.scopes import required_scope
from service.collections.registry import REGISTRY, Collection
from service.collections.rest import Db, problems
from service.collections.types import Out
from service.db import driver
from service.errors import Forbidden, ValidationFailed
from service.http import NO_STORE, JSONOut

router = APIRouter(prefix="/v1", tags=["Sync"])

# Sent on the unit of work's own asyncpg connection (service.db.driver): same transaction, same tenant,
# row-level security as for every statement; 500 rows go to JSON without SQLAlchemy's result layer.
_FEED = """
SELECT seq, txid, collection, record_id::text, action, version, changed_at, client_id::text FROM changes
WHERE org_id = $1 AND ($2::uuid IS NULL OR client_id = $2::uuid)
  AND collection = ANY($3::text[])
  AND (txid, seq) > ($4, $5)
  AND txid < (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint
ORDER BY txid, seq
LIMIT $6
"""


class ChangeOut(Out):
    type: str
    id: UUID
    action: str
    version: int
    changed_at: Any


class ChangePage(Out):
    data: list[ChangeOut]
    next_cursor: str
    has_more: bool


def encode(txid: int, seq: int) -> str:
    return cursors.CHANGES.encode(txid, seq)


def decode(cursor: str | None) -> tuple[int, int]:
    if not cursor:
        return (0, 0)
    txid, seq = cursors.CHANGES.decode(cursor, "since")
    return txid, seq


def types_query(description: str) -> Any:
    """``types``: comma-separated change-feed type names, declared as exactly that."""
    names = "|".join(sorted(c.type_name for c in REGISTRY.values()))
    return Query(None, max_length=500, description=description,
                 json_schema_extra={"pattern": f"^(({names})(,({names}))*)?$"})


def readable_types(who: Principal, types: str | None, perm: str = "s") -> list[Collection]:
    """The collections named (by change-feed type) that the token may search; 403 for a named one it may not."""
    by_type = {c.type_name: c for c in REGISTRY.values()}
    if types:
        names = [t.strip() for t in types.split(",") if t.strip()]
        unknown = [n for n in names if n not in by_type]
        if unknown:
            raise ValidationFailed.on("types", f"Unknown types {', '.join(unknown)}; one of {', '.join(by_type)}",
                                      "unknown_type")
        chosen = [by_type[n] for n in dict.fromkeys(names)]
        for coll in chosen:
            if not who.allows(coll.resource, perm):
                raise Forbidden(required_scope(coll.resource, perm, who.context))  # type: ignore[arg-type]
        return chosen
    return [c for c in REGISTRY.values() if who.allows(c.resource, perm)]


Reader = Annotated[Principal, needs_any("s")]


@router.get("/changes", response_model=ChangePage, operation_id="list_changes",
            summary="Every committed change since a cursor, exactly once",
            responses=problems(400, 401, 403, 422))
async def list_changes(
    who: Reader, db: Db,
    since: str | None = cursors.CHANGES.query("next_cursor of the previous page"),
    types: str | None = types_query("Comma-separated types, e.g. strength,goal"),
    limit: int = Query(500, ge=1, le=1000),
) -> Response:
    chosen = readable_types(who, types)
    txid, seq = decode(since)
    rows = await (await driver(db)).fetch(_FEED, who.org_id, who.patient_id, [c.name for c in chosen],
                                          txid, seq, limit)
    type_of = {c.name: c.type_name for c in chosen}
    resource_of = {c.name: c.resource for c in chosen}
    # The feed names records (no client data), and who learnt of them is still audited: per collection at once.
    # Ids come as text (the page goes to JSON without a conversion per id).
    for name in {r[2] for r in rows}:
        of = [r for r in rows if r[2] == name]
        audit.seen_many(resource_of[name], [r[3] for r in of], [r[7] for r in of])
    data = [{"type": type_of[r[2]], "id": r[3], "action": r[4], "version": r[5], "changed_at": r[6]} for r in rows]
    cursor = encode(rows[-1][1], rows[-1][0]) if rows else encode(txid, seq)
    return JSONOut({"data": data, "next_cursor": cursor, "has_more": len(rows) == limit}, headers=NO_STORE)
