"""Erasure on request (a client's right to be forgotten): ``strengths-api purge-client ID``.

Runs as the owner role, in one transaction: removes the client's records in every collection, their
history and external ids, the stored idempotent replies that mention the client, the Bulk Data export
files that hold any of its records, and its app links (with the grants, authorization codes and refresh
tokens issued through them: its apps' tokens stop working); records a
``deleted`` change-feed entry (ids and versions only) for each removed record, so sync consumers drop
their copies; and leaves an audit event of who purged and when. The audit trail itself is kept: it
holds ids, never client data, and is append-only.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.collections.registry import Collection, referenced_first
from service.domain.registry import COLLECTIONS


def erasure_order() -> list[Collection]:
    """Every collection, children before parents (the reverse of the foreign keys' order): alerts before
    measurements before markers before goals ... the clients last."""
    return referenced_first(COLLECTIONS)[::-1]


class NoSuchClient(LookupError):
    pass


async def _erase_exports(conn: AsyncConnection, params: dict[str, Any]) -> int:
    """Bulk Data exports holding any of the client's records lose all their files (a file with lines cut out
    would mislead) and end as expired; the app exports again. Returns how many files went."""
    jobs = (await conn.execute(text(
        "SELECT DISTINCT f.job_id FROM bulk_export_chunks c JOIN bulk_export_files f ON f.org_id = c.org_id "
        "AND f.id = c.file_id WHERE c.org_id = :org AND c.client_ids @> ARRAY[CAST(:client AS uuid)]"),
        params)).scalars().all()
    if not jobs:
        return 0
    await conn.execute(text(
        "UPDATE bulk_export_jobs SET status = 'expired', lease_token = NULL, updated_at = now(), error = "
        "'a client whose records it held was erased' WHERE org_id = :org AND id = ANY(:jobs)"),
        {**params, "jobs": list(jobs)})
    return (await conn.execute(text("DELETE FROM bulk_export_files WHERE org_id = :org AND job_id = ANY(:jobs)"),
                               {**params, "jobs": list(jobs)})).rowcount


async def _purge_app_links(conn: AsyncConnection, org_id: UUID, client_id: UUID) -> dict[str, int]:
    """A client's app links and what hangs on them, children first (they name the client by id only)."""
    params = {"org": org_id, "client": client_id}
    links = "SELECT id FROM app_links WHERE org_id = :org AND client_id = :client"
    grants = "SELECT id FROM app_grants WHERE org_id = :org AND client_id = :client"
    statements = {
        "refresh_tokens": f"DELETE FROM refresh_tokens WHERE org_id = :org AND grant_id IN ({grants})",
        "authorization_codes": f"DELETE FROM authorization_codes WHERE org_id = :org AND link_id IN ({links})",
        "app_grants": "DELETE FROM app_grants WHERE org_id = :org AND client_id = :client",
        "app_links": "DELETE FROM app_links WHERE org_id = :org AND client_id = :client",
    }
    return {table: (await conn.execute(text(sql), params)).rowcount for table, sql in statements.items()}


async def purge_client(conn: AsyncConnection, client_id: UUID, by: str) -> dict[str, Any]:
    org_id = (await conn.execute(text("SELECT org_id FROM clients WHERE id = :id FOR UPDATE"),
                                 {"id": client_id})).scalar()
    if org_id is None:
        raise NoSuchClient(f"No client {client_id}")
    removed = await _purge_app_links(conn, org_id, client_id)
    order = erasure_order()
    for coll in order:
        table, column = coll.table.name, coll.owner_column
        rows = (await conn.execute(
            text(f"DELETE FROM {table} WHERE org_id = :org AND {column} = :client RETURNING id, version"),  # noqa: S608
            {"org": org_id, "client": client_id},
        )).all()
        removed[table] = len(rows)
        if rows:
            collection = coll.name
            await conn.execute(
                text("INSERT INTO changes (org_id, collection, record_id, client_id, action, version) "
                     "SELECT :org, :collection, id, :client, 'deleted', version + 1 "
                     "FROM unnest(CAST(:ids AS uuid[]), CAST(:versions AS int[])) AS t(id, version)"),
                {"org": org_id, "collection": collection, "client": client_id,
                 "ids": [r.id for r in rows], "versions": [r.version for r in rows]},
            )
    params = {"org": org_id, "client": client_id}
    removed["history"] = (await conn.execute(
        text("DELETE FROM history WHERE org_id = :org AND client_id = :client"), params)).rowcount
    removed["external_ids"] = (await conn.execute(
        text("DELETE FROM external_ids WHERE org_id = :org AND client_id = :client"), params)).rowcount
    removed["idempotency_keys"] = (await conn.execute(
        text("DELETE FROM idempotency_keys WHERE org_id = :org AND client_ids @> ARRAY[CAST(:client AS uuid)]"),
        params)).rowcount
    removed["bulk_export_files"] = await _erase_exports(conn, params)
    ids_removed = sum(removed[c.table.name] for c in order)
    event_id = (await conn.execute(
        text("INSERT INTO audit_events (org_id, app_id, subject, action, resource_type, resource_ids, "
             "client_ids, outcome, method, path) VALUES (:org, 'strengths-api purge-client', :by, 'purge', "
             "'Client', ARRAY[CAST(:client AS uuid)], ARRAY[CAST(:client AS uuid)], 'success', 'CLI', "
             "'purge-client') RETURNING id"),
        {"org": org_id, "by": by, "client": client_id},
    )).scalar_one()
    return {"client_id": str(client_id), "org_id": str(org_id), "purged_by": by, "records_removed": ids_removed,
            "removed": removed, "audit_event_id": str(event_id)}
