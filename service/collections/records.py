"""The one helper every write path calls: history versions, change-feed entries and webhook events (outbox),
all in the same statement and transaction.

Bulk writes pass many snapshots at once and still cost one statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.api.http import dumps
from service.auth.principal import Principal
from service.collections.registry import REGISTRY
from service.db import driver

# What each new version writes besides the record itself, from a CTE ``v`` (record_id, version, client_id, data):
# its history row, its change-feed entry, and its webhook events with their deliveries. ``record_changes`` feeds it
# from a JSON array of snapshots. The batch of measurements, which makes its records in its own statement, feeds the
# feed and the outbox from its INSERT's RETURNING, the same rows, and writes no history row: a new measurement's
# first version is its own row until a change supersedes it (``models.records.RECORD_VERSIONS``, which every reader
# of versions reads). Apart, so that bench/rowcost.py prices each kind of row.
HISTORY_CTE = """h AS (
  INSERT INTO history (org_id, collection, record_id, version, client_id, action, data, changed_by)
  SELECT :org_id, :collection, record_id, version, client_id, :action, data, :who FROM v
)"""
FEED_CTE = """c AS (
  INSERT INTO changes (org_id, collection, record_id, client_id, action, version)
  SELECT :org_id, :collection, record_id, client_id, :action, version FROM v
)"""
OUTBOX_CTES = """ev AS (  -- webhook events: <type>.<action>, and <type>.opened for one created open (safety alerts)
  SELECT CAST(:type_name AS text) || '.' || CAST(:action AS text) AS event, record_id,
         CAST(:action AS text) AS action, version, client_id FROM v
  UNION ALL
  SELECT CAST(:type_name AS text) || '.opened', record_id, 'opened', version, client_id FROM v
   WHERE CAST(:opened AS boolean) AND data->>'status' = 'open'
), subs AS (  -- only events some active subscription of the organization wants reach the outbox
  SELECT s.id AS subscription_id, ev.* FROM ev JOIN webhook_subscriptions s
    ON s.org_id = CAST(:org_id AS uuid) AND s.active AND s.deleted_at IS NULL AND ev.event = ANY(s.events)
), o AS (
  INSERT INTO webhook_outbox (org_id, event, record_id, action, version, payload)
  SELECT DISTINCT CAST(:org_id AS uuid), event, record_id, action, version,
         jsonb_build_object('type', CAST(:type_name AS text), 'id', record_id, 'action', action,
                            'version', version, 'org_id', CAST(:org_id AS uuid), 'client_id', client_id)
    FROM subs
  RETURNING id, event, record_id
), d AS (
  INSERT INTO webhook_deliveries (org_id, subscription_id, event_id, event)
  SELECT CAST(:org_id AS uuid), subs.subscription_id, o.id, o.event
    FROM o JOIN subs ON subs.event = o.event AND subs.record_id = o.record_id
)"""
CHANGES_CTES = f"\n{HISTORY_CTE}, {FEED_CTE}, {OUTBOX_CTES}"

_RECORD = text(
    "WITH v AS (\n  SELECT * FROM json_to_recordset(CAST(:rows AS json))\n"
    f"    AS t(record_id uuid, version int, client_id uuid, data jsonb)\n),{CHANGES_CTES}\nSELECT"
)


def changes_params(who: Principal | None, collection: str, action: str, *, org_id: Any = None) -> dict[str, Any]:
    """The parameters of ``CHANGES_CTES`` (all but the rows)."""
    coll = REGISTRY.get(collection)
    return {
        "org_id": org_id or (who.org_id if who else None),
        "collection": collection,
        "type_name": coll.type_name if coll else collection,
        "opened": bool(coll and coll.opened_event) and action == "created",
        "action": action,
        "who": who.who if who else "system",
    }


def audit_written(collection: str, ids: Sequence[Any], clients: Sequence[Any], action: str) -> None:
    """The audit trail's note of the records a write of ``collection`` made or changed."""
    from service.audit import (
        service as audit,  # imported here: the audit module itself imports the collection machinery
    )

    coll = REGISTRY.get(collection)
    audit.wrote_many(coll.resource if coll else collection, ids, clients, action)


async def record_changes(
    conn: AsyncConnection, who: Principal | None, collection: str, snapshots: Sequence[dict[str, Any]], action: str,
    *, org_id: Any = None,
) -> None:
    """Append each new version to the history and each change to the feed (which holds no client data).

    Each change also becomes a webhook event in the outbox, with one delivery per active subscription
    that wants it; when no subscription wants it nothing is written (the join finds no row).
    """
    if not snapshots:
        return
    coll = REGISTRY.get(collection)
    ids = [s["id"] for s in snapshots]
    owner_column = coll.owner_column if coll else "client_id"
    clients = [s.get(owner_column) for s in snapshots]
    audit_written(collection, ids, clients, action)
    params = changes_params(who, collection, action, org_id=org_id)
    # One JSON array, encoded in one call: asyncpg checks the elements of array parameters one by one.
    params["rows"] = dumps([
        {"record_id": i, "version": s["version"], "client_id": c, "data": s}
        for i, c, s in zip(ids, clients, snapshots, strict=True)
    ]).decode()
    sql, names = compiled(conn, _RECORD)
    # On the unit of work's asyncpg connection (same transaction, role and tenant): the statement is compiled
    # once, and SQLAlchemy's execution layer is skipped for what is, for a batch, one large statement.
    await (await driver(conn)).execute(sql, *[params[name] for name in names])


_COMPILED: dict[tuple[int, int], tuple[str, tuple[str, ...]]] = {}


def compiled(conn: AsyncConnection, stmt: TextClause) -> tuple[str, tuple[str, ...]]:
    """``stmt`` (a module-level ``text()``) as the driver's SQL and the order of its named parameters, compiled
    once per dialect."""
    key = (id(conn.dialect), id(stmt))
    entry = _COMPILED.get(key)
    if entry is None:
        done = stmt.compile(dialect=conn.dialect)
        entry = _COMPILED[key] = (done.string, tuple(done.positiontup or ()))
    return entry


async def record_change(
    conn: AsyncConnection, who: Principal | None, collection: str, snapshot: dict[str, Any], action: str,
    *, org_id: Any = None,
) -> None:
    await record_changes(conn, who, collection, [snapshot], action, org_id=org_id)
