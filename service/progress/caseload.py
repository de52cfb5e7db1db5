"""The caseload statement: counts over the caseload and one page of client rows, sorted, filtered and cut by a
keyset cursor, all in one SQL statement over the shared CTEs of ``sql.py`` (no loop over clients in Python).

Sorting: ``sort`` is a comma-separated list of row fields, ``-`` for descending (default
``-safety_priority,last_measured``); ties are broken by ``client_id``. Each key sorts by one non-null value:
absent readings and due dates sort last in either direction; a client never measured counts as measured
longest ago (first when ``last_measured`` ascends, last when it descends). The cursor holds the last row's
sort values and client id, and a checksum of the sort it was made for.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from service.api import cursors
from service.errors import ValidationFailed
from service.progress import sql

DEFAULT_SORT = "-safety_priority,last_measured"
MAX_NUMERIC_KEYS = 6
CURSOR = cursors.CursorKind(b"cl1", "I6d16s")  # sort checksum, the sort values, the last row's client id


def _nulls_last(column: str) -> tuple[str, str]:
    return f"coalesce({column}, 'Infinity'::float8)", f"coalesce({column}, '-Infinity'::float8)"


# Sort key -> its value when ascending and when descending (a non-null float8).
SORT_KEYS: dict[str, tuple[str, str]] = {
    "safety_priority": ("CAST(safety_priority AS int)::float8",) * 2,
    "phq9": _nulls_last("phq9_value"),
    "gad7": _nulls_last("gad7_value"),
    "last_measured": ("coalesce(extract(epoch FROM last_measured)::float8, '-Infinity'::float8)",) * 2,
    "off_track_goals": ("off_track_goals::float8",) * 2,
    "next_milestone_due": _nulls_last("extract(epoch FROM CAST(next_milestone_due AS timestamp))::float8"),
}
SORT_NAMES = (*SORT_KEYS, "client_id")
FILTERS = {"safety_priority": "safety_priority", "off_track": "off_track_goals > 0", "stale": "stale"}


@dataclass(frozen=True)
class Sort:
    keys: tuple[tuple[str, bool], ...]  # (name, descending)

    @classmethod
    def parse(cls, value: str | None) -> Sort:
        text = DEFAULT_SORT if value is None else value
        keys: list[tuple[str, bool]] = []
        for part in text.split(","):
            item = part.strip()
            name = item.removeprefix("-")
            if name not in SORT_NAMES:
                raise ValidationFailed.on("sort", f"Unknown sort key {item!r}; sort by "
                                          + ", ".join(SORT_NAMES) + " (prefix - for descending)", "invalid_sort")
            if any(name == k for k, _ in keys):
                raise ValidationFailed.on("sort", f"The sort key {name!r} is given twice", "invalid_sort")
            keys.append((name, item.startswith("-")))
        return cls(tuple(keys))

    @property
    def numeric(self) -> list[tuple[str, bool]]:
        return [(name, desc) for name, desc in self.keys if name != "client_id"]

    @property
    def columns(self) -> list[tuple[str, bool]]:
        """(SQL value, descending) in order, ending with client_id (ascending unless sorted otherwise)."""
        out = [(SORT_KEYS[name][desc], desc) for name, desc in self.numeric]
        out.insert(self._client_position(), ("client_id", dict(self.keys).get("client_id", False)))
        return out

    def _client_position(self) -> int:
        names = [name for name, _ in self.keys]
        return names.index("client_id") if "client_id" in names else len(names)

    @property
    def checksum(self) -> int:
        return zlib.crc32(",".join(("-" if d else "") + n for n, d in self.keys).encode())

    def order_by(self) -> str:
        return ", ".join(f"{expr} {'DESC' if desc else 'ASC'}" for expr, desc in self.columns)

    def after(self) -> str:
        """Rows after the cursor's (keyset): an OR of prefixes, each comparison in its key's direction."""
        named = [(expr, desc, "CAST(:after_id AS uuid)" if expr == "client_id" else f":after_{i}")
                 for i, (expr, desc) in enumerate(self.columns)]
        terms = []
        for i, (expr, desc, value) in enumerate(named):
            equal = [f"{e} = {v}" for e, _, v in named[:i]]
            terms.append("(" + " AND ".join([*equal, f"{expr} {'<' if desc else '>'} {value}"]) + ")")
        return "(" + " OR ".join(terms) + ")"

    def encode(self, values: list[float], client_id: UUID) -> str:
        padded = (values + [0.0] * MAX_NUMERIC_KEYS)[:MAX_NUMERIC_KEYS]
        return CURSOR.encode(self.checksum, *padded, client_id.bytes)

    def decode(self, cursor: str) -> dict[str, Any]:
        checksum, *values, raw_id = CURSOR.decode(cursor, "cursor")
        if checksum != self.checksum:
            raise ValidationFailed.on("cursor", "The cursor was made for another sort order", "invalid_cursor")
        if any(math.isnan(v) for v in values):
            raise ValidationFailed.on("cursor", "The cursor is not one this service issued", "invalid_cursor")
        params: dict[str, Any] = {"after_id": UUID(bytes=raw_id)}
        numbers = iter(values)
        for i, (expr, _) in enumerate(self.columns):
            if expr != "client_id":
                params[f"after_{i}"] = next(numbers)
        return params


def statement(sort: Sort, filters: dict[str, bool | None], *, after: bool, listed: bool, patient: bool) -> str:
    restrict = (sql.ONLY_LISTED if listed else "") + (sql.ONLY_PATIENT if patient else "")
    where = [f"{'' if value else 'NOT '}({FILTERS[name]})" for name, value in filters.items() if value is not None]
    if after:
        where.append(sort.after())
    keys = ", ".join(expr for expr, _ in sort.columns if expr != "client_id") or "NULL::float8"
    return CASELOAD_TEMPLATE.format(
        cl=sql.CASELOAD.replace("{restrict}", restrict),
        where=" AND ".join(where) or "true", order=sort.order_by(), keys=keys,
    )


ROW_JSON = """json_build_object(
  'client_id', client_id, 'safety_priority', safety_priority,
  'phq9', CASE WHEN phq9_value IS NOT NULL
               THEN json_build_object('value', phq9_value, 'band', phq9_band, 'label', phq9_label) END,
  'gad7', CASE WHEN gad7_value IS NOT NULL
               THEN json_build_object('value', gad7_value, 'band', gad7_band, 'label', gad7_label) END,
  'last_measured', last_measured, 'stale', stale, 'off_track_goals', off_track_goals,
  'next_milestone_due', next_milestone_due, 'recovery', recovery, '_keys', json_build_array({keys}))"""

CASELOAD_TEMPLATE = "WITH {cl}, " + sql.COURSE_CTES.replace("{", "{{").replace("}", "}}") + """,
next_due AS (
  SELECT mi.client_id, min(mi.due_date) AS next_due
  FROM milestones mi JOIN g ON g.goal_id = mi.goal_id AND g.lifecycle = 'active'
  WHERE mi.org_id = :org AND mi.deleted_at IS NULL AND mi.status IN ('planned', 'in_progress')
  GROUP BY mi.client_id
),
last_seen AS (
  SELECT client_id, max(last_measured) AS last_measured FROM rated WHERE kind IN ('goal', 'measure')
  GROUP BY client_id
),
off_track AS (SELECT client_id, count(*) AS n FROM goal_track WHERE off_track GROUP BY client_id),
caseload AS (
  SELECT cl.id AS client_id, ua.n IS NOT NULL AS safety_priority,
         rc.phq9_value, rc.phq9_band, rc.phq9_label, rc.gad7_value, rc.gad7_band, rc.gad7_label,
         ls.last_measured, ls.last_measured IS NULL OR ls.last_measured < """ + sql.RECENT + """ AS stale,
         coalesce(ot.n, 0) AS off_track_goals, nd.next_due AS next_milestone_due, rc.status AS recovery
  FROM cl
  LEFT JOIN unresolved_alerts ua ON ua.client_id = cl.id
  LEFT JOIN recovery rc ON rc.client_id = cl.id
  LEFT JOIN last_seen ls ON ls.client_id = cl.id
  LEFT JOIN off_track ot ON ot.client_id = cl.id
  LEFT JOIN next_due nd ON nd.client_id = cl.id
),
page AS (
  SELECT *, row_number() OVER (ORDER BY {order}) AS pos FROM caseload WHERE {where}
  ORDER BY {order} LIMIT :limit_plus
),
shown AS (SELECT * FROM rated WHERE kind IN ('goal', 'measure'))
SELECT
  (SELECT count(*) FROM cl) AS client_count,
  (SELECT coalesce(json_agg(client_id ORDER BY client_id), '[]'::json) FROM unresolved_alerts)
    AS safety_priority_clients,
  (SELECT coalesce(sum(n), 0) FROM unresolved_alerts) AS open_safety_alerts,
  (SELECT json_build_object(
     'recovered', count(*) FILTER (WHERE label = 'recovered'),
     'reliably_improved', count(*) FILTER (WHERE label = 'reliably_improved'),
     'no_reliable_change', count(*) FILTER (WHERE label = 'no_reliable_change'),
     'reliably_deteriorated', count(*) FILTER (WHERE label = 'reliably_deteriorated'))
   FROM rated WHERE kind = 'recovery' AND n > 0) AS by_label,
  (SELECT json_build_object(
     'insufficient_data', count(*) FILTER (WHERE status = 'insufficient_data'),
     'not_a_case', count(*) FILTER (WHERE status = 'not_a_case'),
     'reliably_deteriorated', count(*) FILTER (WHERE status = 'reliably_deteriorated'),
     'recovered', count(*) FILTER (WHERE status = 'recovered'),
     'reliably_improved', count(*) FILTER (WHERE status = 'reliably_improved'),
     'no_reliable_change', count(*) FILTER (WHERE status = 'no_reliable_change'))
   FROM recovery) AS by_recovery,
  (SELECT json_build_object(
     'improving', count(*) FILTER (WHERE enough AND improvement > 0),
     'worsening', count(*) FILTER (WHERE enough AND improvement < 0),
     'unchanged', count(*) FILTER (WHERE enough AND improvement = 0),
     'insufficient_data', count(*) FILTER (WHERE n > 0 AND NOT enough),
     'not_measured', count(*) FILTER (WHERE n = 0))
   FROM shown WHERE kind = 'goal' OR instrument IS NOT NULL) AS by_trend,
  (SELECT count(*) FROM goal_track WHERE off_track) AS off_track_count,
  (SELECT coalesce(json_agg(json_build_object('goal_id', gt.goal_id, 'client_id', gt.client_id,
                                              'safety_priority', ua.client_id IS NOT NULL)
                            ORDER BY ua.client_id IS NULL, gt.client_id, gt.goal_id), '[]'::json)
   FROM goal_track gt LEFT JOIN unresolved_alerts ua ON ua.client_id = gt.client_id WHERE gt.off_track)
    AS off_track_goals,
  (SELECT count(DISTINCT marker_id) FILTER (WHERE stale) FROM shown) AS stale_markers,
  (SELECT count(*) FROM milestones mi JOIN cl ON cl.id = mi.client_id
   WHERE mi.org_id = :org AND mi.deleted_at IS NULL AND mi.status = 'done'
     AND mi.completed_at >= coalesce(CAST(:since AS timestamptz), now() - interval '30 days')
     AND mi.completed_at <= coalesce(CAST(:until AS timestamptz), now())) AS milestones_completed,
  coalesce(CAST(:since AS timestamptz), now() - interval '30 days') AS period_since,
  coalesce(CAST(:until AS timestamptz), now()) AS period_until,
  (SELECT coalesce(json_agg(""" + ROW_JSON + """ ORDER BY pos), '[]'::json) FROM page) AS clients"""
