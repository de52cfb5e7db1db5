"""The limit twin (issue 25): hand-written SQL that returns the same response as the service for W1, W2 and W3, as
few statements as the answer needs (one each), run by raw asyncpg in the same run. No transaction, no tenant, no
audit, no token: it connects as the owner role (row-level security does not apply to the tables' owner), names the
organization in its WHERE clauses, and builds the response body itself (PostgreSQL writes the JSON). So
``limit_ratio = rps / limit_rps`` is the share of what a hand-written endpoint on this machine could serve, everything
the service does included; ``ratio`` (to the replay twin of the service's own statements) is the framework's cost.

The SQL is written here, by hand, not produced by the service's GraphQL compiler: it is what an engineer would
write for exactly this response. ``tests/deploy/test_bench_limit.py`` checks each returns the service's response.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson

from bench.raw import Plan
from bench.workloads import Context, Variant


def _ts(expr: str) -> str:
    """A timestamptz as the service writes it (RFC 3339 in UTC, microseconds unless zero)."""
    return (f"to_char({expr} AT TIME ZONE 'UTC', CASE WHEN date_trunc('second', {expr}) = {expr} "
            "THEN 'YYYY-MM-DD\"T\"HH24:MI:SS\"+00:00\"' ELSE 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"' END)")


def _ts_offset(expr: str, minutes: str) -> str:
    """A measurement's observed_at in the offset it was sent with."""
    local = f"({expr} AT TIME ZONE 'UTC' + {minutes} * interval '1 minute')"
    fmt = (f"CASE WHEN date_trunc('second', {expr}) = {expr} THEN 'YYYY-MM-DD\"T\"HH24:MI:SS' "
           "ELSE 'YYYY-MM-DD\"T\"HH24:MI:SS.US' END")
    sign = f"CASE WHEN {minutes} < 0 THEN '-' ELSE '+' END"
    return (f"to_char({local}, {fmt}) || {sign} || lpad((abs({minutes}) / 60)::text, 2, '0') || ':' || "
            f"lpad((abs({minutes}) % 60)::text, 2, '0')")


CURSOR = "translate(rtrim(encode('\\x76313a'::bytea || uuid_send({}), 'base64'), '='), '+/', '-_')"

STRENGTH = """json_build_object('id', s.id, 'created_at', {created}, 'updated_at', {updated}, 'version', s.version,
  'client_id', s.client_id, 'domain', s.domain, 'kind', s.kind, 'label', s.label, 'client_label', s.client_label,
  'description', s.description, 'context', s.context, 'under_stress', s.under_stress, 'source', s.source,
  'status', s.status, 'evidence', s.evidence, 'suppressed_in', s.suppressed_in,
  'external_ids', coalesce(s.external_ids, '[]'),
  'uses_count', (SELECT count(*) FROM strength_uses u WHERE u.org_id = s.org_id AND u.strength_id = s.id
                 AND u.deleted_at IS NULL))""".format(
    created=_ts("s.created_at"), updated=_ts("s.updated_at"))

# W1: GET /v1/clients/{id}?include=strengths
W1 = f"""
SELECT json_build_object('id', c.id, 'created_at', {_ts("c.created_at")}, 'updated_at', {_ts("c.updated_at")},
  'version', c.version, 'display_name', c.display_name, 'identifiers', coalesce(c.external_ids, '[]'),
  'birth_date', c.birth_date,
  'preferred_language', c.preferred_language, 'status', c.status, 'preferred_future', c.preferred_future,
  'strengths', (SELECT coalesce(json_agg({STRENGTH} ORDER BY s.id), '[]') FROM strengths s
                WHERE s.org_id = $1 AND s.client_id = c.id AND s.deleted_at IS NULL))::text
FROM clients c WHERE c.org_id = $1 AND c.id = $2 AND c.deleted_at IS NULL
"""

OBSERVED = _ts_offset("x.observed_at", "x.observed_offset")

# W2: the dashboard (bench.workloads.GRAPHQL_DASHBOARD), the whole response body
W2 = f"""
SELECT json_build_object('data', json_build_object('clients', json_build_object(
  'edges', coalesce(json_agg(json_build_object('node', json_build_object(
    'id', c.id, 'displayName', c.display_name, 'status', c.status,
    'strengths', json_build_object('edges', (
      SELECT coalesce(json_agg(json_build_object('node', json_build_object(
               'label', s.label, 'domain', s.domain, 'status', s.status)) ORDER BY s.id), '[]')
      FROM (SELECT * FROM strengths s WHERE s.org_id = $1 AND s.client_id = c.id AND s.deleted_at IS NULL
            ORDER BY s.id LIMIT 10) s)),
    'goals', json_build_object('edges', (
      SELECT coalesce(json_agg(json_build_object('node', json_build_object(
               'description', g.description, 'lifecycle', g.lifecycle, 'achievement', g.achievement,
               'strengths', (SELECT coalesce(json_agg(json_build_object('label', s2.label) ORDER BY u.o), '[]')
                             FROM unnest(g.strength_ids) WITH ORDINALITY u(id, o)
                             JOIN strengths s2 ON s2.org_id = $1 AND s2.id = u.id AND s2.deleted_at IS NULL),
               'milestones', json_build_object('edges', (
                 SELECT coalesce(json_agg(json_build_object('node', json_build_object(
                          'title', m.title, 'status', m.status, 'sequence', m.sequence)) ORDER BY m.id), '[]')
                 FROM (SELECT * FROM milestones m WHERE m.org_id = $1 AND m.goal_id = g.id AND m.deleted_at IS NULL
                       ORDER BY m.id LIMIT 10) m)))) ORDER BY g.id), '[]')
      FROM (SELECT * FROM goals g WHERE g.org_id = $1 AND g.client_id = c.id AND g.deleted_at IS NULL
            ORDER BY g.id LIMIT 10) g)),
    'outcomeMarkers', json_build_object('edges', (
      SELECT coalesce(json_agg(json_build_object('node', json_build_object(
               'name', o.name, 'unit', o.unit, 'direction', o.direction,
               'latestMeasurement', (SELECT json_build_object('value', x.value, 'observedAt', {OBSERVED})
                                     FROM measurements x WHERE x.org_id = $1 AND x.marker_id = o.id
                                     AND x.deleted_at IS NULL ORDER BY x.observed_at DESC, x.id DESC LIMIT 1)))
             ORDER BY o.id), '[]')
      FROM (SELECT * FROM outcome_markers o WHERE o.org_id = $1 AND o.client_id = c.id AND o.deleted_at IS NULL
            ORDER BY o.id LIMIT 10) o))
  )) ORDER BY c.id) FILTER (WHERE c.n <= $2), '[]'),
  'pageInfo', json_build_object('hasNextPage', count(*) > $2,
    'endCursor', {CURSOR.format("(array_agg(c.id ORDER BY c.id DESC) FILTER (WHERE c.n <= $2))[1]")}))))::text
FROM (SELECT c.*, row_number() OVER (ORDER BY c.id) AS n FROM clients c WHERE c.org_id = $1 AND c.deleted_at IS NULL
      ORDER BY c.id LIMIT $2 + 1) c
"""

# W3: POST /v1/measurements/batch, 100 new measurements: one INSERT ... SELECT ... ON CONFLICT DO NOTHING, answering
# each item with its index, status and new id ($3 makes a replayed body's external ids unique)
W3 = """
WITH items AS (
  SELECT (e.o - 1)::int AS i, (e.j->>'client_id')::uuid AS client_id, (e.j->>'marker_id')::uuid AS marker_id,
         (e.j->>'value')::float8 AS value, (e.j->>'observed_at')::timestamptz AS observed_at,
         CASE WHEN right(e.j->>'observed_at', 1) = 'Z' THEN 0
              ELSE (substr(right(e.j->>'observed_at', 6), 1, 1) || '1')::int
                   * (substr(right(e.j->>'observed_at', 5), 1, 2)::int * 60 + right(e.j->>'observed_at', 2)::int)
         END AS observed_offset,
         e.j->>'source' AS source, (e.j->>'external_id') || $3 AS external_id
  FROM json_array_elements($2::json) WITH ORDINALITY AS e(j, o)
), inserted AS (
  INSERT INTO measurements (org_id, id, client_id, marker_id, value, observed_at, observed_offset, source,
                            external_id)
  SELECT $1, uuidv7(), client_id, marker_id, value, observed_at, observed_offset, source, external_id FROM items
  ON CONFLICT (org_id, source, external_id, compartment) WHERE external_id IS NOT NULL DO NOTHING
  RETURNING id, source, external_id
)
SELECT json_build_object('results', json_agg(json_build_object(
         'index', items.i, 'status', CASE WHEN inserted.id IS NULL THEN 'duplicate' ELSE 'created' END,
         'id', inserted.id) ORDER BY items.i))::text
FROM items LEFT JOIN inserted USING (source, external_id)
"""


@dataclass(frozen=True)
class Limit:
    """A workload's limit twin: its statement and, per request variant, its arguments."""

    sql: str
    args: Callable[[Context, Variant], tuple[Any, ...]]
    unique: bool = False  # a write: a last argument makes each plan's external ids its own


def _w1_args(ctx: Context, v: Variant) -> tuple[Any, ...]:
    return ctx.org_id, UUID(v.subst["client_id"])


def _w2_args(ctx: Context, v: Variant) -> tuple[Any, ...]:
    return ctx.org_id, orjson.loads(v.request.body or b"{}")["variables"]["n"]


def _w3_args(ctx: Context, v: Variant) -> tuple[Any, ...]:
    return ctx.org_id, orjson.dumps(orjson.loads(v.request.body or b"{}")["measurements"]).decode()


LIMITS: dict[str, Limit] = {"W1": Limit(W1, _w1_args), "W2": Limit(W2, _w2_args), "W3": Limit(W3, _w3_args, True)}


def plans(name: str, ctx: Context, variants: list[Variant], count: int | None = None) -> list[Plan]:
    """One single-statement plan per variant, or ``count`` plans cycling through them (a write's plans then differ
    by the suffix of their external ids, so that none is a duplicate)."""
    limit = LIMITS[name]
    base = [limit.args(ctx, v) for v in variants]
    n = count or len(base)
    if limit.unique:
        return [[(limit.sql, (*base[i % len(base)], f".limit{i}"))] for i in range(n)]
    return [[(limit.sql, base[i % len(base)])] for i in range(n)]
