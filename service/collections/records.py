"""The one helper every write path calls: history version and change-feed entry, same transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.auth.principal import Principal
from service.http import dumps

_RECORD = text(
    """
WITH h AS (
  INSERT INTO history (org_id, collection, record_id, version, client_id, action, data, changed_by)
  VALUES (:org_id, :collection, :record_id, :version, :client_id, :action, CAST(:data AS jsonb), :who)
)
INSERT INTO changes (org_id, collection, record_id, client_id, action, version)
VALUES (:org_id, :collection, :record_id, :client_id, :action, :version)
"""
)


async def record_change(
    conn: AsyncConnection,
    who: Principal | None,
    collection: str,
    snapshot: dict[str, Any],
    action: str,
    *,
    org_id: Any = None,
) -> None:
    """Append the new version to the history and the change to the feed (no client data in the feed)."""
    await conn.execute(
        _RECORD,
        {
            "org_id": org_id or (who.org_id if who else None),
            "collection": collection,
            "record_id": snapshot["id"],
            "version": snapshot["version"],
            "client_id": snapshot.get("client_id") if collection != "clients" else snapshot["id"],
            "action": action,
            "data": dumps(snapshot).decode(),
            "who": who.who if who else "system",
        },
    )
