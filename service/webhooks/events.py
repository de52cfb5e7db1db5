"""Event names, and events not caused by a record change (``subscription.disabled``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

ACTIONS = ("created", "updated", "deleted")
EXTRA_EVENTS = ("safety_alert.opened", "subscription.disabled")
PING = "subscription.ping"  # sent by POST .../ping whatever the subscription's events; not subscribable


def event_names() -> list[str]:
    """The events a subscription may ask for (read when a schema is built, possibly before the app is)."""
    from service.domain.registry import COLLECTIONS  # the registry's one list; imported here, as domain imports us

    return [f"{c.type_name}.{a}" for c in COLLECTIONS for a in ACTIONS] + list(EXTRA_EVENTS)


_EMIT = text(
    """
WITH subs AS (
  SELECT id FROM webhook_subscriptions
   WHERE org_id = :org AND active AND deleted_at IS NULL AND CAST(:event AS text) = ANY(events)
), o AS (
  INSERT INTO webhook_outbox (org_id, event, record_id, action, version, payload)
  SELECT :org, :event, :record_id, :action, :version,
         jsonb_build_object('type', CAST(:type AS text), 'id', CAST(:record_id AS uuid),
                            'action', CAST(:action AS text), 'version', CAST(:version AS int),
                            'org_id', CAST(:org AS uuid))
   WHERE EXISTS (SELECT 1 FROM subs)
  RETURNING id
)
INSERT INTO webhook_deliveries (org_id, subscription_id, event_id, event)
SELECT :org, subs.id, o.id, :event FROM subs, o
"""
)


async def emit(conn: AsyncConnection, org_id: Any, event: str, record_type: str, record_id: Any, action: str,
               version: int) -> None:
    """Write one event to the outbox for the organization's subscriptions that want it (in ``conn``'s transaction)."""
    await conn.execute(_EMIT, {"org": org_id, "event": event, "type": record_type, "record_id": record_id,
                               "action": action, "version": version})
