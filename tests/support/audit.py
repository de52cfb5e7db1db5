"""The audit trail as the tests read it."""

from __future__ import annotations


async def events(api, org_id=None, **where):
    """The audit events (oldest first), of ``org_id`` if given, whose columns equal ``where``."""
    rows = await api.db.fetch("SELECT * FROM audit_events ORDER BY seq")
    out = [dict(r) for r in rows]
    if org_id is not None:
        out = [r for r in out if r["org_id"] == org_id]
    return [r for r in out if all(r[k] == v for k, v in where.items())]
