"""The progress statements: set-based SQL over goals, linked markers and their measurements.

One family of CTEs computes, per (goal, linked marker): baseline (the first measurement on or after the
goal's start date, else the last before it), latest, change, direction-aware improvement, slope per
week (``regr_slope`` over the epoch), reliable change (Jacobson-Truax, with each instrument's SD and
reliability passed in from the instrument registry as arrays) and clinically significant change; and per
goal, ``off_track``. The per-client progress and the caseload summary are each one statement over these.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from service.domain.instruments import INSTRUMENTS

# Which clients a statement covers; each variant defines the CTE ``cl(id)``.
ONE_CLIENT = "cl AS (SELECT CAST(:client_id AS uuid) AS id)"
CASELOAD = """cl AS (
  SELECT c.id FROM clients c
  WHERE c.org_id = :org AND c.deleted_at IS NULL{restrict}
)"""
ONLY_LISTED = "\n    AND c.id = ANY(CAST(:client_ids AS uuid[]))"
ONLY_PATIENT = "\n    AND c.id = CAST(:patient AS uuid)"

MARKER_CTES = """
inst AS (
  SELECT * FROM unnest(CAST(:i_key AS text[]), CAST(:i_sd AS float8[]), CAST(:i_r AS float8[]),
                       CAST(:i_case AS float8[])) AS t(key, sd, r, caseness)
),
g AS (
  SELECT goal.id AS goal_id, goal.client_id, goal.start_date, goal.lifecycle,
         CASE WHEN jsonb_typeof(goal.target -> 'marker_id') = 'string'
              THEN CAST(goal.target ->> 'marker_id' AS uuid) END AS target_marker
  FROM goals goal JOIN cl ON cl.id = goal.client_id
  WHERE goal.org_id = :org AND goal.deleted_at IS NULL
),
links AS (
  SELECT g.goal_id, g.client_id, g.start_date, g.lifecycle, m.id AS marker_id, m.instrument, m.direction,
         CASE m.direction WHEN 'lower_is_better' THEN -1.0::float8 ELSE 1.0::float8 END AS sign
  FROM g JOIN outcome_markers m
    ON m.org_id = :org AND m.client_id = g.client_id AND m.deleted_at IS NULL
   AND (m.goal_id = g.goal_id OR m.id = g.target_marker)
),
obs AS (
  SELECT l.goal_id, l.client_id, l.lifecycle, l.marker_id, l.instrument, l.direction, l.sign,
         x.id AS mid, x.value, x.observed_at,
         coalesce(
           min(x.observed_at) FILTER (WHERE l.start_date IS NULL OR x.observed_at >= l.start_date) OVER w,
           max(x.observed_at) FILTER (WHERE x.observed_at < l.start_date) OVER w
         ) AS baseline_at
  FROM links l LEFT JOIN measurements x
    ON x.org_id = :org AND x.marker_id = l.marker_id AND x.deleted_at IS NULL
  WINDOW w AS (PARTITION BY l.goal_id, l.marker_id)
),
agg AS (
  SELECT goal_id, client_id, lifecycle, marker_id, instrument, direction, sign,
         count(mid) AS n, max(baseline_at) AS baseline_at,
         (array_agg(value ORDER BY observed_at, mid) FILTER (WHERE observed_at = baseline_at))[1] AS baseline,
         (array_agg(value ORDER BY observed_at DESC, mid DESC) FILTER (WHERE mid IS NOT NULL))[1] AS latest,
         max(observed_at) AS last_measured,
         regr_slope(value, extract(epoch FROM observed_at)::float8)
           FILTER (WHERE observed_at >= baseline_at) * 604800.0 AS slope_per_week,
         (array_agg(value ORDER BY observed_at DESC, mid DESC)
           FILTER (WHERE observed_at <= now() - make_interval(days => :off_days)))[1] AS ref_before,
         (array_agg(value ORDER BY observed_at, mid)
           FILTER (WHERE observed_at > now() - make_interval(days => :off_days)))[1] AS first_recent
  FROM obs GROUP BY goal_id, client_id, lifecycle, marker_id, instrument, direction, sign
),
marks AS (
  SELECT a.*,
         a.latest - a.baseline AS change,
         a.sign * (a.latest - a.baseline) AS improvement,
         inst.caseness,
         inst.sd * sqrt(2.0::float8) * sqrt(1.0::float8 - inst.r) AS s_diff,
         a.sign * (a.latest - coalesce(a.ref_before, a.first_recent)) AS recent_improvement,
         a.ref_before IS NOT NULL AS spans_window
  FROM agg a LEFT JOIN inst ON inst.key = a.instrument
),
rated AS (
  SELECT m.*,
         m.change / m.s_diff AS rci,
         CASE WHEN m.s_diff IS NULL OR m.baseline IS NULL THEN NULL
              WHEN m.sign * m.change / m.s_diff > 1.96
                   AND ((m.sign < 0 AND m.baseline >= m.caseness AND m.latest < m.caseness)
                     OR (m.sign > 0 AND m.baseline < m.caseness AND m.latest >= m.caseness)) THEN 'recovered'
              WHEN m.sign * m.change / m.s_diff > 1.96 THEN 'reliably_improved'
              WHEN m.sign * m.change / m.s_diff < -1.96 THEN 'reliably_deteriorated'
              ELSE 'no_reliable_change' END AS label,
         CASE WHEN m.caseness IS NULL OR m.baseline IS NULL THEN NULL
              WHEN m.sign < 0 THEN m.baseline >= m.caseness AND m.latest < m.caseness
              ELSE m.baseline < m.caseness AND m.latest >= m.caseness END AS clinically_significant
  FROM marks m
),
goal_track AS (
  -- goals without a linked marker are never off track, so they need no row here
  SELECT goal_id, client_id,
         coalesce(lifecycle = 'active' AND bool_or(spans_window)
                  AND NOT coalesce(bool_or(recent_improvement > 0), false), false) AS off_track
  FROM rated GROUP BY goal_id, client_id, lifecycle
),
open_alerts AS (
  SELECT a.client_id, count(*) AS n
  FROM safety_alerts a JOIN cl ON cl.id = a.client_id
  WHERE a.org_id = :org AND a.status = 'open' AND a.deleted_at IS NULL
  GROUP BY a.client_id
)"""

MARKER_JSON = """json_build_object(
  'marker_id', r.marker_id, 'name', om.name, 'unit', om.unit, 'kind', om.kind, 'instrument', r.instrument,
  'direction', r.direction, 'measurement_count', r.n, 'baseline', r.baseline,
  'baseline_at', r.baseline_at, 'latest', r.latest, 'last_measured', r.last_measured, 'change', r.change,
  'improvement', r.improvement, 'improved', r.improvement > 0, 'slope_per_week', r.slope_per_week,
  'recent_improvement', r.recent_improvement, 'rci', r.rci, 's_diff', r.s_diff, 'caseness', r.caseness,
  'reliable_change', CASE WHEN r.rci IS NULL THEN NULL ELSE abs(r.rci) > 1.96 END,
  'clinically_significant', r.clinically_significant, 'label', r.label)"""

CLIENT_PROGRESS = f"""WITH {ONE_CLIENT}, {MARKER_CTES}
SELECT
  (SELECT coalesce(sum(n), 0) FROM open_alerts) AS open_alerts,
  (SELECT coalesce(json_agg(json_build_object('id', a.id, 'reason', a.reason, 'opened_at', a.created_at)
                            ORDER BY a.created_at, a.id), '[]'::json)
   FROM safety_alerts a
   WHERE a.org_id = :org AND a.client_id = CAST(:client_id AS uuid) AND a.status = 'open'
     AND a.deleted_at IS NULL) AS alerts,
  (SELECT coalesce(json_agg(x ORDER BY x.ord, x.goal_id), '[]'::json) FROM (
    SELECT goal.id AS goal_id, goal.description, goal.lifecycle, goal.achievement, goal.start_date,
           goal.target_date, goal.target, coalesce(gt.off_track, false) AS off_track,
           coalesce(ms.done, 0) AS milestones_done, coalesce(ms.total, 0) AS milestones_total,
           ms.next_due AS next_milestone,
           coalesce(st.strengths, '[]'::json) AS strengths,
           coalesce(mk.markers, '[]'::json) AS markers,
           row_number() OVER (ORDER BY goal.start_date NULLS LAST, goal.created_at, goal.id) AS ord
    FROM goals goal
    LEFT JOIN goal_track gt ON gt.goal_id = goal.id
    LEFT JOIN LATERAL (
      SELECT count(*) FILTER (WHERE mi.status = 'done') AS done, count(*) AS total,
             (array_agg(json_build_object('id', mi.id, 'title', mi.title, 'due_date', mi.due_date,
                                          'sequence', mi.sequence, 'status', mi.status)
                        ORDER BY mi.due_date NULLS LAST, mi.sequence NULLS LAST, mi.id)
               FILTER (WHERE mi.status IN ('planned', 'in_progress')))[1] AS next_due
      FROM milestones mi WHERE mi.org_id = :org AND mi.goal_id = goal.id AND mi.deleted_at IS NULL
    ) ms ON true
    LEFT JOIN LATERAL (
      SELECT json_agg(json_build_object('id', s.id, 'label', s.label, 'status', s.status)
                      ORDER BY array_position(goal.strength_ids, s.id)) AS strengths
      FROM strengths s WHERE s.org_id = :org AND s.id = ANY(goal.strength_ids) AND s.deleted_at IS NULL
    ) st ON true
    LEFT JOIN LATERAL (
      SELECT json_agg({MARKER_JSON} ORDER BY om.name, r.marker_id) AS markers
      FROM rated r JOIN outcome_markers om ON om.org_id = :org AND om.id = r.marker_id
      WHERE r.goal_id = goal.id
    ) mk ON true
    WHERE goal.org_id = :org AND goal.client_id = CAST(:client_id AS uuid) AND goal.deleted_at IS NULL
  ) x) AS goals"""

CASELOAD_SUMMARY_TEMPLATE = f"""WITH {CASELOAD}, {MARKER_CTES}
SELECT
  (SELECT count(*) FROM cl) AS clients,
  (SELECT coalesce(json_agg(client_id ORDER BY client_id), '[]'::json) FROM open_alerts) AS safety_priority_clients,
  (SELECT coalesce(sum(n), 0) FROM open_alerts) AS open_safety_alerts,
  (SELECT json_build_object(
     'recovered', count(*) FILTER (WHERE label = 'recovered'),
     'reliably_improved', count(*) FILTER (WHERE label = 'reliably_improved'),
     'no_reliable_change', count(*) FILTER (WHERE label = 'no_reliable_change'),
     'reliably_deteriorated', count(*) FILTER (WHERE label = 'reliably_deteriorated'))
   FROM rated) AS by_label,
  (SELECT json_build_object(
     'improving', count(*) FILTER (WHERE improvement > 0),
     'worsening', count(*) FILTER (WHERE improvement < 0),
     'unchanged', count(*) FILTER (WHERE improvement = 0),
     'not_measured', count(*) FILTER (WHERE n = 0))
   FROM rated) AS by_trend,
  (SELECT count(*) FROM goal_track WHERE off_track) AS off_track_count,
  (SELECT coalesce(json_agg(json_build_object('goal_id', gt.goal_id, 'client_id', gt.client_id,
                                              'safety_priority', oa.client_id IS NOT NULL)
                            ORDER BY oa.client_id IS NULL, gt.client_id, gt.goal_id), '[]'::json)
   FROM goal_track gt LEFT JOIN open_alerts oa ON oa.client_id = gt.client_id WHERE gt.off_track) AS off_track_goals,
  (SELECT count(*) FROM milestones mi JOIN cl ON cl.id = mi.client_id
   WHERE mi.org_id = :org AND mi.deleted_at IS NULL AND mi.status = 'done'
     AND mi.completed_at >= coalesce(CAST(:since AS timestamptz), now() - interval '30 days')
     AND mi.completed_at <= coalesce(CAST(:until AS timestamptz), now())) AS milestones_completed,
  coalesce(CAST(:since AS timestamptz), now() - interval '30 days') AS period_since,
  coalesce(CAST(:until AS timestamptz), now()) AS period_until,
  (SELECT count(*) FROM outcome_markers m JOIN cl ON cl.id = m.client_id
   WHERE m.org_id = :org AND m.deleted_at IS NULL
     AND NOT EXISTS (SELECT 1 FROM measurements x
                     WHERE x.org_id = :org AND x.marker_id = m.id AND x.deleted_at IS NULL
                       AND x.observed_at >= now() - make_interval(days => :stale_days))) AS stale_markers"""


def caseload_summary(*, listed: bool, patient: bool) -> str:
    restrict = (ONLY_LISTED if listed else "") + (ONLY_PATIENT if patient else "")
    return CASELOAD_SUMMARY_TEMPLATE.replace("{restrict}", restrict)


def instrument_params() -> dict[str, Any]:
    """The instrument registry's reliable-change data, as arrays bound into the statements."""
    specs = sorted(INSTRUMENTS.values(), key=lambda s: s.key)
    return {
        "i_key": [s.key for s in specs], "i_sd": [s.sd for s in specs], "i_r": [s.reliability for s in specs],
        "i_case": [float(s.caseness) for s in specs],
    }


def client_params(org_id: UUID, client_id: UUID, off_days: int) -> dict[str, Any]:
    return {"org": org_id, "client_id": client_id, "off_days": off_days, **instrument_params()}
