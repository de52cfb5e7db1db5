"""The limit twin (issue 25): hand-written SQL that returns the same response as the service for every workload but
W5, as few statements as the answer needs (one each), run by raw asyncpg in the same run. No transaction, no tenant,
no audit, no token: it connects as the owner role (row-level security does not apply to the tables' owner), names the
organization in its WHERE clauses, and builds the response body itself (PostgreSQL writes the JSON; W6's token is
signed in the twin's process, ``Signer``). So ``limit_ratio = rps / limit_rps`` is the share of what a hand-written
endpoint on this machine could serve, everything the service does included; ``ratio`` (to the replay twin of the
service's own statements) is the framework's cost. W5 has none: its one statement already computes the whole summary,
and another would write the progress rules a second time (bench/README.md).

The SQL is written here, by hand, not produced by the service's GraphQL compiler: it is what an engineer would
write for exactly this response. ``tests/deploy/test_bench_limit.py`` checks each returns the service's response."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import asyncpg
import orjson
from joserfc import jwt
from joserfc.jwk import ECKey

from bench.raw import Plan
from bench.workloads import Context, Variant
from service.auth.assertions import unverified_parts
from service.auth.keycrypt import AtRest
from service.auth.tokens import open_key
from service.settings import Settings


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

# W4: GET /v1/changes?limit=500&since=<cursor>, the whole page: the cursor decoded (``cf1`` and two big-endian
# bigints, base64url), the entries after it below the oldest running transaction, the next cursor (the page's last
# entry's, or the one sent when the page is empty) and whether the page is full. The token reads every collection,
# so no collection filter (every change is of a collection the service lists); a type is its collection's name
# in the singular with "_" (outcome-markers: outcome_marker).
W4 = f"""
WITH since AS (
  SELECT coalesce(('x' || encode(substr(c.b, 4, 8), 'hex'))::bit(64)::bigint, 0) AS txid,
         coalesce(('x' || encode(substr(c.b, 12, 8), 'hex'))::bit(64)::bigint, 0) AS seq
  FROM (SELECT decode(translate($2, '-_', '+/') || '==', 'base64') AS b) c
), page AS (
  SELECT ch.txid, ch.seq, ch.collection, ch.record_id, ch.action, ch.version, ch.changed_at
  FROM changes ch
  WHERE ch.org_id = $1 AND (ch.txid, ch.seq) > ((SELECT txid FROM since), (SELECT seq FROM since))
    AND ch.txid < (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint
  ORDER BY ch.txid, ch.seq
  LIMIT $3
), last AS (
  SELECT txid, seq FROM page ORDER BY txid DESC, seq DESC LIMIT 1
)
SELECT json_build_object(
  'data', (SELECT coalesce(json_agg(json_build_object(
             'type', replace(left(p.collection, -1), '-', '_'), 'id', p.record_id, 'action', p.action,
             'version', p.version, 'changed_at', {_ts("p.changed_at")}) ORDER BY p.txid, p.seq), '[]')
           FROM page p),
  'next_cursor', translate(rtrim(encode('\\x636631'::bytea || int8send(coalesce(last.txid, since.txid))
                 || int8send(coalesce(last.seq, since.seq)), 'base64'), '='), '+/', '-_'),
  'has_more', (SELECT count(*) FROM page) = $3)::text
FROM since LEFT JOIN last ON true
"""

# W7: POST /v1/bulk/import, 500 NDJSON lines of new clients, strengths, goals and outcome markers whose references
# name earlier lines by external id: the lines parsed by PostgreSQL ($2, the body), one uuidv7() per line, every
# reference resolved to an earlier line's record with the identifier it names (else to the organization's
# external-id index, as for a record imported before), one INSERT per table and one into the external-id index, as
# data-modifying CTEs of one statement; the answer is the service's NDJSON, one {"line", "status", "id"} per line
# that was inserted. New records only (as W7 sends): a line naming an identifier that exists makes the statement
# fail where the service would update that record, and the rules and per-line problems the service checks are left
# to the tables' constraints. $3 suffixes every identifier and every reference by identifier, so that each
# replayed plan's records are new.
_TYPES = "(VALUES ('client', 'clients'), ('strength', 'strengths'), ('goal', 'goals'), " \
         "('outcome_marker', 'outcome-markers')) AS t(type, coll)"
_EXT = """(SELECT coalesce(jsonb_agg(jsonb_build_object('system', i->>'system', 'value', (i->>'value') || $3)), '[]')
         FROM jsonb_array_elements(l.r->'{field}') i)"""
W7 = f"""
WITH lines AS (
  SELECT t.n::int AS line, t.l::jsonb->>'type' AS type, t.l::jsonb->'resource' AS r, uuidv7() AS id
  FROM string_to_table($2, E'\\n') WITH ORDINALITY AS t(l, n) WHERE btrim(t.l) <> ''
), own AS (
  SELECT l.line, l.type, l.id, i->>'system' AS system, (i->>'value') || $3 AS value
  FROM lines l, jsonb_array_elements(l.r->(CASE l.type WHEN 'client' THEN 'identifiers' ELSE 'external_ids' END)) i
), refs AS (
  SELECT l.line, f.field, e.o AS pos, f.target, f.coll, e.v, split_part(e.v->>'external_id', '|', 1) AS system,
         substr(e.v->>'external_id', strpos(e.v->>'external_id', '|') + 1) || $3 AS value
  FROM lines l
  JOIN (VALUES ('client_id', 'client', 'clients'), ('strength_ids', 'strength', 'strengths'),
               ('goal_id', 'goal', 'goals')) f(field, target, coll) ON l.r ? f.field
  CROSS JOIN LATERAL jsonb_array_elements(CASE jsonb_typeof(l.r->f.field) WHEN 'array' THEN l.r->f.field
                                          ELSE jsonb_build_array(l.r->f.field) END) WITH ORDINALITY e(v, o)
  WHERE jsonb_typeof(e.v) <> 'null'
), bound AS (
  SELECT r.line,
         (array_agg(r.id) FILTER (WHERE r.field = 'client_id'))[1] AS client_id,
         (array_agg(r.id) FILTER (WHERE r.field = 'goal_id'))[1] AS goal_id,
         coalesce(array_agg(r.id ORDER BY r.pos) FILTER (WHERE r.field = 'strength_ids'), '{{}}') AS strength_ids
  FROM (SELECT r.line, r.field, r.pos, CASE WHEN jsonb_typeof(r.v) = 'string' THEN (r.v #>> '{{}}')::uuid
                                            ELSE coalesce(o.id, x.record_id) END AS id
        FROM refs r
        LEFT JOIN own o ON jsonb_typeof(r.v) = 'object' AND o.type = r.target AND o.system = r.system
                        AND o.value = r.value AND o.line < r.line
        LEFT JOIN LATERAL (SELECT x.record_id FROM external_ids x
                           WHERE o.id IS NULL AND jsonb_typeof(r.v) = 'object' AND x.org_id = $1
                             AND x.collection = r.coll AND x.system = r.system AND x.value = r.value
                             AND x.compartment = '00000000-0000-0000-0000-000000000000' LIMIT 1) x ON true) r
  GROUP BY r.line
), new_clients AS (
  INSERT INTO clients (org_id, id, display_name, birth_date, preferred_language, status, preferred_future,
                       external_ids)
  SELECT $1, l.id, l.r->>'display_name', (l.r->>'birth_date')::date, l.r->>'preferred_language',
         coalesce(l.r->>'status', 'active'), l.r->>'preferred_future', {_EXT.format(field="identifiers")}
  FROM lines l WHERE l.type = 'client'
  RETURNING id
), new_strengths AS (
  INSERT INTO strengths (org_id, id, client_id, domain, kind, label, client_label, description, context, under_stress,
                         suppressed_in, source, status, evidence, external_ids)
  SELECT $1, l.id, b.client_id, l.r->>'domain', l.r->>'kind', l.r->>'label', l.r->>'client_label',
         l.r->>'description', l.r->>'context', (l.r->>'under_stress')::boolean, l.r->>'suppressed_in',
         coalesce(l.r->>'source', 'client_report'), coalesce(l.r->>'status', 'hypothesis'),
         coalesce(ARRAY(SELECT jsonb_array_elements_text(l.r->'evidence')), '{{}}'), {_EXT.format(field="external_ids")}
  FROM lines l JOIN bound b USING (line) WHERE l.type = 'strength'
  RETURNING id
), new_goals AS (
  INSERT INTO goals (org_id, id, client_id, description, strength_ids, target, lifecycle, achievement, start_date,
                     target_date, barriers, external_ids)
  SELECT $1, l.id, b.client_id, l.r->>'description', b.strength_ids, l.r->'target',
         coalesce(l.r->>'lifecycle', 'proposed'), coalesce(l.r->>'achievement', 'in_progress'),
         (l.r->>'start_date')::date, (l.r->>'target_date')::date,
         coalesce(ARRAY(SELECT jsonb_array_elements_text(l.r->'barriers')), '{{}}'), {_EXT.format(field="external_ids")}
  FROM lines l JOIN bound b USING (line) WHERE l.type = 'goal'
  RETURNING id
), new_markers AS (
  INSERT INTO outcome_markers (org_id, id, client_id, kind, name, unit, code, instrument, min, max, direction,
                               min_change, goal_id, external_ids)
  SELECT $1, l.id, b.client_id, l.r->>'kind', l.r->>'name', l.r->>'unit', l.r->>'code', l.r->>'instrument',
         (l.r->>'min')::float8, (l.r->>'max')::float8, coalesce(l.r->>'direction', 'higher_is_better'),
         (l.r->>'min_change')::float8, b.goal_id, {_EXT.format(field="external_ids")}
  FROM lines l JOIN bound b USING (line) WHERE l.type = 'outcome_marker'
  RETURNING id
), new_ids AS (
  INSERT INTO external_ids (org_id, collection, system, value, record_id, client_id)
  SELECT $1, t.coll, o.system, o.value, o.id, CASE WHEN o.type = 'client' THEN o.id ELSE b.client_id END
  FROM own o JOIN {_TYPES} USING (type) LEFT JOIN bound b USING (line)
)
SELECT string_agg(json_build_object('line', l.line, 'status', 'created', 'id', l.id)::text, E'\\n'
                  ORDER BY l.line) || E'\\n'
FROM lines l JOIN (SELECT id FROM new_clients UNION ALL SELECT id FROM new_strengths UNION ALL
                   SELECT id FROM new_goals UNION ALL SELECT id FROM new_markers) w USING (id)
"""

# W6: POST /oauth/token, client_credentials with client_secret_basic. The statement checks the Basic credentials
# (the client id, the secret's SHA-256 against the stored hash) and returns the enabled app's organization, scopes
# and patient; the twin's process then signs the token (``Signer``): an ES256 signature is not something PostgreSQL
# can write.
W6 = """
SELECT a.client_id, a.org_id, array_to_string(a.scopes, ' ') AS scope, a.patient_id
FROM (SELECT convert_from(decode(split_part($1, ' ', 2), 'base64'), 'UTF8') AS basic) b
JOIN apps a ON a.client_id = split_part(b.basic, ':', 1)
WHERE a.disabled_at IS NULL
  AND a.secret_hash = 'sha256$' || encode(sha256(convert_to(substr(b.basic, strpos(b.basic, ':') + 1), 'UTF8')), 'hex')
"""


@dataclass
class Signer:
    """W6's Python step, run for every request once its statement has found the app: the access token the service
    issues (the same claims and header, ES256 with the service's own key through joserfc, as the service signs it)
    and the response body. Picklable (the key is imported on first use), for ``--workers`` > 1."""

    jwk: dict[str, Any]  # the service's active signing key, private
    issuer: str
    audience: str
    ttl: int
    _key: Any = field(default=None, init=False, repr=False)

    def __call__(self, rows: list[Any]) -> bytes:
        if not rows:
            raise ValueError("unknown client or wrong secret")
        if self._key is None:
            self._key = ECKey.import_key(self.jwk)
        app, now = rows[0], int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": app["client_id"], "aud": self.audience, "iat": now, "nbf": now,
            "exp": now + self.ttl, "jti": secrets.token_urlsafe(16), "client_id": app["client_id"],
            "org_id": str(app["org_id"]), "scope": app["scope"]}
        body: dict[str, Any] = {"token_type": "Bearer", "expires_in": self.ttl, "scope": app["scope"]}
        if app["patient_id"]:
            claims["patient"] = body["patient"] = str(app["patient_id"])
        body["access_token"] = jwt.encode({"alg": "ES256", "kid": self._key.kid, "typ": "at+jwt"}, claims, self._key)
        return orjson.dumps(body)


async def signing_jwk(dsn: str, settings: Settings) -> dict[str, Any]:
    """The service's active token signing key (a private JWK), decrypted as the service decrypts it."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT kid, encrypted_jwk FROM signing_keys WHERE active")
    finally:
        await conn.close()
    key = open_key(AtRest.from_settings(settings).signing_keys, row["kid"], row["encrypted_jwk"]) if row else None
    if key is None:
        raise RuntimeError("the active signing key cannot be read with these settings")
    return dict(key.as_dict(private=True))


def signer(ctx: Context, jwk: dict[str, Any]) -> Signer:
    """A signer for the service that issued ``ctx.token``: its issuer, audience and token lifetime."""
    _, claims = unverified_parts(ctx.token)
    return Signer(jwk, claims["iss"], claims["aud"], int(claims["exp"]) - int(claims["iat"]))


@dataclass(frozen=True)
class Limit:
    """A workload's limit twin: its statement and, per request variant, its arguments."""

    sql: str
    args: Callable[[Context, Variant], tuple[Any, ...]]
    unique: bool = False  # a write: a last argument makes each plan's external ids its own
    signs: bool = False  # its rows become a signed token in the twin's process (``Signer``, W6)


def _w1_args(ctx: Context, v: Variant) -> tuple[Any, ...]:
    return ctx.org_id, UUID(v.subst["client_id"])


def _w2_args(ctx: Context, v: Variant) -> tuple[Any, ...]:
    return ctx.org_id, orjson.loads(v.request.body or b"{}")["variables"]["n"]


def _w3_args(ctx: Context, v: Variant) -> tuple[Any, ...]:
    return ctx.org("W3"), orjson.dumps(orjson.loads(v.request.body or b"{}")["measurements"]).decode()


def _w4_args(ctx: Context, v: Variant) -> tuple[Any, ...]:
    query = parse_qs(urlsplit(v.request.path).query)
    return ctx.org_id, query.get("since", [None])[0], int(query["limit"][0])


def _w6_args(ctx: Context, v: Variant) -> tuple[Any, ...]:
    return (v.request.headers["Authorization"],)


def _w7_args(ctx: Context, v: Variant) -> tuple[Any, ...]:
    return ctx.org("W7"), (v.request.body or b"").decode()


LIMITS: dict[str, Limit] = {"W1": Limit(W1, _w1_args), "W2": Limit(W2, _w2_args), "W3": Limit(W3, _w3_args, True),
                            "W4": Limit(W4, _w4_args), "W6": Limit(W6, _w6_args, signs=True),
                            "W7": Limit(W7, _w7_args, True)}


def plans(name: str, ctx: Context, variants: list[Variant], count: int | None = None) -> list[Plan]:
    """One single-statement plan per variant, or ``count`` plans cycling through them (a write's plans then differ
    by the suffix of their external ids, so that none is a duplicate)."""
    limit = LIMITS[name]
    base = [limit.args(ctx, v) for v in variants]
    n = count or len(base)
    if limit.unique:
        return [[(limit.sql, (*base[i % len(base)], f".limit{i}"))] for i in range(n)]
    return [[(limit.sql, base[i % len(base)])] for i in range(n)]
