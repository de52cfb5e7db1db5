"""The change feed: every committed create, update and delete exactly once, resumable from a cursor.

Entries are ordered by the writing transaction's id and read only below the oldest transaction still
in progress (``pg_snapshot_xmin``). A transaction that started earlier but commits later therefore
holds the feed back instead of being skipped: ids are assigned in start order, not commit order.
"""

from __future__ import annotations

from typing import Any

from orjson import loads
from sqlalchemy import literal_column
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.ext.asyncio import AsyncConnection

from service.api import cursors
from service.audit import service as audit
from service.auth.principal import Principal
from service.auth.scopes import require
from service.collections.registry import REGISTRY, Collection
from service.collections.repository import session_tenant_is
from service.db import PinnedConnection, TenantMismatch, driver
from service.errors import ValidationFailed

# One statement, sent on an asyncpg connection (service.db.driver) under row-level security as every statement:
# a pinned connection's, alone (one round trip), or a unit of work's, in its transaction (``uow.read_in_one``).
# It reads only when the session holds the principal's tenant (``repository.tenant_guard``, on its own parameters
# $1 and $2; ``ok`` says so), since a pinned connection's session may hold another's. Alone, it is a transaction of
# its own, and ``pg_current_snapshot()`` is its snapshot, as in a unit of work. PostgreSQL builds the page's JSON
# (the entries, in feed order, as compact text) and what the audit needs (per collection the record ids and their
# clients), so Python does no work per entry. ``changed_at`` is written as the service writes every timestamp
# (orjson: RFC 3339 in UTC, microseconds unless they are zero).
_FEED = """
WITH tenant_ok AS (SELECT {guard} AS ok), page AS MATERIALIZED (
  SELECT seq, txid, collection, record_id, action, version, changed_at, client_id FROM changes
  WHERE org_id = $1 AND ($2::uuid IS NULL OR client_id = $2::uuid)
    AND collection = ANY($3::text[])
    AND (txid, seq) > ($4, $5)
    AND txid < (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint
    AND (SELECT ok FROM tenant_ok)
  ORDER BY txid, seq
  LIMIT $6
), entries AS (
  SELECT p.txid, p.seq, row_to_json((SELECT e FROM (SELECT t.type_name AS type, p.record_id AS id, p.action,
           p.version, to_char(p.changed_at AT TIME ZONE 'UTC', CASE WHEN date_trunc('second', p.changed_at) =
           p.changed_at THEN 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"' ELSE 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"' END)
           AS changed_at) e))::text AS entry
  FROM page p JOIN unnest($3::text[], $7::text[]) AS t(name, type_name) ON t.name = p.collection
)
SELECT (SELECT ok FROM tenant_ok), coalesce('[' || (SELECT string_agg(entry, ',' ORDER BY txid, seq) FROM entries)
         || ']', '[]'),
       (SELECT json_object_agg(collection, json_build_array(ids, clients))::text FROM (
          SELECT collection, array_agg(record_id ORDER BY txid, seq) AS ids,
                 array_agg(DISTINCT client_id) FILTER (WHERE client_id IS NOT NULL) AS clients
          FROM page GROUP BY collection) g),
       (SELECT count(*) FROM page),
       last.txid, last.seq
FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT txid, seq FROM page ORDER BY txid DESC, seq DESC LIMIT 1) last ON true
"""


def _feed(patient: bool) -> str:
    """The feed's statement for an organization-wide principal or a patient's."""
    guard = session_tenant_is(literal_column("$1::uuid"), literal_column("$2::uuid") if patient else None)
    return _FEED.replace("{guard}", str(guard.compile(dialect=PGDialect())))  # not format(): SQL may hold braces


_FEEDS = {patient: _feed(patient) for patient in (False, True)}


def encode(txid: int, seq: int) -> str:
    return cursors.CHANGES.encode(txid, seq)


def decode(cursor: str | None) -> tuple[int, int]:
    if not cursor:
        return (0, 0)
    txid, seq = cursors.CHANGES.decode(cursor, "since")
    return txid, seq


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
            require(who, coll.resource, perm)
        return chosen
    return [c for c in REGISTRY.values() if who.allows(c.resource, perm)]


async def page(conn: AsyncConnection | PinnedConnection, who: Principal, chosen: list[Collection],
               since: str | None, limit: int) -> tuple[str, str, bool]:
    """The entries after ``since`` of the ``chosen`` collections (a JSON array, as PostgreSQL wrote it), the next
    cursor, and whether more may follow; who learnt of which records is audited. ``TenantMismatch`` when the
    session held another tenant (nothing read)."""
    txid, seq = decode(since)
    row = await (await driver(conn)).fetchrow(
        _FEEDS[who.patient_id is not None], who.org_id, who.patient_id, [c.name for c in chosen], txid, seq, limit,
        [c.type_name for c in chosen])
    assert row is not None, "the feed's aggregate returns one row"
    ok, data, seen, count, last_txid, last_seq = row
    if not ok:
        raise TenantMismatch
    # The feed names records (no client data), and who learnt of them is still audited: per collection at once.
    resource_of = {c.name: c.resource for c in chosen}
    seen_by: dict[str, Any] = loads(seen) if seen else {}
    for name, (ids, clients) in seen_by.items():
        audit.seen_many(resource_of[name], ids, clients or ())
    cursor = encode(last_txid, last_seq) if count else encode(txid, seq)
    return data, cursor, count == limit
