"""The audit trail as the tests read it."""

from __future__ import annotations


async def events(api, org_id=None, **where):
    """The audit events (oldest first), of ``org_id`` if given, whose columns equal ``where``."""
    rows = await api.db.fetch("SELECT * FROM audit_events ORDER BY seq")
    out = [dict(r) for r in rows]
    if org_id is not None:
        out = [r for r in out if r["org_id"] == org_id]
    return [r for r in out if all(r[k] == v for k, v in where.items())]


AUDIT_COLUMNS = ("org_id", "app_id", "action", "outcome", "resource_type", "resource_ids", "client_ids", "method",
                 "path", "status_code")


async def audit_rows(api, request_id):
    """A request's audit rows (oldest first), the columns a test compares."""
    return [{k: r[k] for k in AUDIT_COLUMNS} for r in await events(api, request_id=request_id)]
