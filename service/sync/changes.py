"""The change feed: every committed create, update and delete exactly once, resumable from a cursor.

Entries are ordered by the writing transaction's id and read only below the oldest transaction still
in progress (``pg_snapshot_xmin``). A transaction that started earlier but commits later therefore
holds the feed back instead of being skipped: ids are assigned in start order, not commit order.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Response
from orjson import loads
from pydantic import Field

from service import audit, cursors
from service.auth.principal import Principal
from service.auth.rest import needs_any
from service.auth.scopes import required_scope
from service.collections.registry import REGISTRY, Collection
from service.collections.rest import Db, problems
from service.collections.types import Out
from service.db import driver
from service.errors import Forbidden, ValidationFailed
from service.http import NO_STORE, QueryParams, StrictRoute, dumps

router = APIRouter(prefix="/v1", tags=["Sync"], route_class=StrictRoute)

# Sent on the unit of work's own asyncpg connection (service.db.driver): same transaction, same tenant,
# row-level security as for every statement. PostgreSQL builds the page's JSON (the entries, in feed order,
# as compact text) and what the audit needs (per collection the record ids and their clients), so Python does
# no work per entry. ``changed_at`` is written as the service writes every timestamp (orjson: RFC 3339 in UTC,
# microseconds unless they are zero).
_FEED = """
WITH page AS MATERIALIZED (
  SELECT seq, txid, collection, record_id, action, version, changed_at, client_id FROM changes
  WHERE org_id = $1 AND ($2::uuid IS NULL OR client_id = $2::uuid)
    AND collection = ANY($3::text[])
    AND (txid, seq) > ($4, $5)
    AND txid < (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint
  ORDER BY txid, seq
  LIMIT $6
), entries AS (
  SELECT p.txid, p.seq, row_to_json((SELECT e FROM (SELECT t.type_name AS type, p.record_id AS id, p.action,
           p.version, to_char(p.changed_at AT TIME ZONE 'UTC', CASE WHEN date_trunc('second', p.changed_at) =
           p.changed_at THEN 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"' ELSE 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"' END)
           AS changed_at) e))::text AS entry
  FROM page p JOIN unnest($3::text[], $7::text[]) AS t(name, type_name) ON t.name = p.collection
)
SELECT coalesce('[' || (SELECT string_agg(entry, ',' ORDER BY txid, seq) FROM entries) || ']', '[]'),
       (SELECT json_object_agg(collection, json_build_array(ids, clients))::text FROM (
          SELECT collection, array_agg(record_id ORDER BY txid, seq) AS ids,
                 array_agg(DISTINCT client_id) FILTER (WHERE client_id IS NOT NULL) AS clients
          FROM page GROUP BY collection) g),
       (SELECT count(*) FROM page),
       last.txid, last.seq
FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT txid, seq FROM page ORDER BY txid DESC, seq DESC LIMIT 1) last ON true
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


def types_field(description: str) -> Any:
    """``types``: comma-separated change-feed type names, declared as exactly that (a query model's field)."""
    names = "|".join(sorted(c.type_name for c in REGISTRY.values()))
    return Field(None, max_length=500, description=description,
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
                raise Forbidden(required_scope(coll.resource, perm, who.context))
        return chosen
    return [c for c in REGISTRY.values() if who.allows(c.resource, perm)]


Reader = Annotated[Principal, needs_any("s")]


class ChangesQuery(QueryParams):
    since: str | None = cursors.CHANGES.field("next_cursor of the previous page")
    types: str | None = types_field("Comma-separated types, e.g. strength,goal")
    limit: int = Field(500, ge=1, le=1000)


@router.get("/changes", response_model=ChangePage, operation_id="list_changes",
            summary="Every committed change since a cursor, exactly once",
            responses=problems(400, 401, 403, 422))
async def list_changes(who: Reader, db: Db, query: Annotated[ChangesQuery, Query()]) -> Response:
    chosen = readable_types(who, query.types)
    txid, seq, limit = *decode(query.since), query.limit
    row = await (await driver(db)).fetchrow(
        _FEED, who.org_id, who.patient_id, [c.name for c in chosen], txid, seq, limit,
        [c.type_name for c in chosen])
    assert row is not None, "the feed's aggregate returns one row"
    data, seen, count, last_txid, last_seq = row
    # The feed names records (no client data), and who learnt of them is still audited: per collection at once.
    resource_of = {c.name: c.resource for c in chosen}
    for name, (ids, clients) in (loads(seen) if seen else {}).items():
        audit.seen_many(resource_of[name], ids, clients or ())
    cursor = encode(last_txid, last_seq) if count else encode(txid, seq)
    body = b'{"data":%s,"next_cursor":%s,"has_more":%s}' % (
        data.encode(), dumps(cursor), b"true" if count == limit else b"false")
    return Response(body, media_type="application/json", headers=NO_STORE)
