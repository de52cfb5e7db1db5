"""The one helper every write path calls: history versions and change-feed entries, same transaction.

Bulk writes pass many snapshots at once and still cost one statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.auth.principal import Principal
from service.http import dumps

_RECORD = text(
    """
WITH v AS (
  SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:versions AS int[]), CAST(:clients AS uuid[]),
                       CAST(:data AS jsonb[])) AS t(record_id, version, client_id, data)
), h AS (
  INSERT INTO history (org_id, collection, record_id, version, client_id, action, data, changed_by)
  SELECT :org_id, :collection, record_id, version, client_id, :action, data, :who FROM v
)
INSERT INTO changes (org_id, collection, record_id, client_id, action, version)
SELECT :org_id, :collection, record_id, client_id, :action, version FROM v
"""
)


async def record_changes(
    conn: AsyncConnection, who: Principal | None, collection: str, snapshots: Sequence[dict[str, Any]], action: str,
    *, org_id: Any = None,
) -> None:
    """Append each new version to the history and each change to the feed (which holds no client data)."""
    if not snapshots:
        return
    from service import audit
    from service.collections.registry import REGISTRY

    resource = REGISTRY[collection].resource if collection in REGISTRY else collection
    for s in snapshots:
        audit.wrote(resource, s["id"], s["id"] if collection == "clients" else s.get("client_id"), action)
    await conn.execute(
        _RECORD,
        {
            "org_id": org_id or (who.org_id if who else None),
            "collection": collection,
            "action": action,
            "who": who.who if who else "system",
            "ids": [s["id"] for s in snapshots],
            "versions": [s["version"] for s in snapshots],
            "clients": [s["id"] if collection == "clients" else s.get("client_id") for s in snapshots],
            "data": [dumps(s).decode() for s in snapshots],
        },
    )


async def record_change(
    conn: AsyncConnection, who: Principal | None, collection: str, snapshot: dict[str, Any], action: str,
    *, org_id: Any = None,
) -> None:
    await record_changes(conn, who, collection, [snapshot], action, org_id=org_id)
