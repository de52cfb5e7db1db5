"""An accessible, self-contained SVG chart of one marker over time (no script, no external resources).

Built with xml.etree, so every text (marker names, milestone titles) is escaped. Every measurement in the range
is one ``circle.point``; done milestones are solid vertical lines at their completion, planned ones dashed at
their due date, each labelled on an opaque white box (renderers such as cairo ignore ``paint-order``, so a halo
would be drawn over the text); instruments get their severity bands and a dashed line at the caseness cut-off
from the instrument registry; a goal's target on the marker is a dashed line too. A caption says the course in
one plain sentence ("Down 10 points since 3 Oct: now below the clinical cut-off"). The rendering is in
``chart_svg.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.audit import service as audit
from service.auth.principal import Principal
from service.collections import service
from service.collections.registry import REGISTRY
from service.errors import NotFound
from service.progress.chart_svg import render
from service.progress.service import check_client, check_period

CHART_DATA = text("""
SELECT
  (SELECT coalesce(json_agg(json_build_object('value', x.value, 'at', x.observed_at) ORDER BY x.observed_at, x.id),
                   '[]'::json)
   FROM measurements x
   WHERE x.org_id = :org AND x.marker_id = :marker AND x.deleted_at IS NULL
     AND (CAST(:since AS timestamptz) IS NULL OR x.observed_at >= CAST(:since AS timestamptz))
     AND (CAST(:until AS timestamptz) IS NULL OR x.observed_at <= CAST(:until AS timestamptz))) AS points,
  (SELECT coalesce(json_agg(json_build_object('title', mi.title, 'status', mi.status,
                                              'at', coalesce(mi.completed_at, CAST(mi.due_date AS timestamptz)))
                            ORDER BY coalesce(mi.completed_at, CAST(mi.due_date AS timestamptz)), mi.id), '[]'::json)
   FROM milestones mi JOIN goals g ON g.org_id = mi.org_id AND g.id = mi.goal_id AND g.deleted_at IS NULL
   WHERE mi.org_id = :org AND mi.client_id = :client AND mi.deleted_at IS NULL AND mi.status <> 'skipped'
     AND (mi.completed_at IS NOT NULL OR mi.due_date IS NOT NULL)
     AND (g.id = CAST(:goal AS uuid) OR g.target ->> 'marker_id' = :marker_text)) AS milestones,
  (SELECT g.target FROM goals g
   WHERE g.org_id = :org AND g.client_id = :client AND g.deleted_at IS NULL AND jsonb_typeof(g.target) = 'object'
     AND (g.target ->> 'marker_id' = :marker_text
          OR g.id = CAST(:goal AS uuid) AND g.target ->> 'marker_id' IS NULL)
   ORDER BY g.lifecycle <> 'active', g.start_date NULLS LAST, g.created_at, g.id LIMIT 1) AS target
""")

DEFAULT_MARKER = text("""
SELECT m.id FROM outcome_markers m
LEFT JOIN goals g ON g.org_id = m.org_id AND g.id = m.goal_id AND g.deleted_at IS NULL
WHERE m.org_id = :org AND m.client_id = :client AND m.deleted_at IS NULL
ORDER BY g.id IS NULL, g.start_date NULLS LAST, g.created_at, m.created_at, m.id
LIMIT 1
""")


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


async def progress_chart(
    conn: AsyncConnection, who: Principal, client_id: UUID, marker_id: UUID | None = None,
    *, since: datetime | None = None, until: datetime | None = None,
) -> str:
    """Without ``marker_id``, the client's first goal-linked marker (else its first marker)."""
    audit.seen("Progress", client_id, client_id)
    check_period(since, until)
    await check_client(conn, who, client_id)
    if marker_id is None:
        marker_id = (await conn.execute(DEFAULT_MARKER, {"org": who.org_id, "client": client_id})).scalar()
        if marker_id is None:
            raise NotFound(f"The client {client_id} has no outcome marker to chart")
    marker = await service.fetch(conn, who, REGISTRY["outcome-markers"], marker_id)
    if marker.client_id != client_id:
        raise NotFound(f"No outcome marker with id {marker_id}")
    row = (await conn.execute(CHART_DATA, {
        "org": who.org_id, "client": client_id, "marker": marker_id, "marker_text": str(marker_id),
        "goal": marker.goal_id, "since": since, "until": until,
    })).one()
    points = [(_ts(p["at"]), float(p["value"])) for p in row.points]
    milestones = [(_ts(m["at"]), m["title"], m["status"]) for m in row.milestones]
    marker_data: dict[str, Any] = dict(marker._mapping)
    return render(marker_data, points, milestones, target=row.target, since=since, until=until)
