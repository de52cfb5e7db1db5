"""The progress statements' shared part: set-based SQL over a set of clients ``cl(id)``.

Every number of CONTRACT.md section 4's progress comes from the CTEs here (docs/progress.md defines each in
words), so the client's progress, the caseload rows and counts, the summary and GraphQL read the same values.

A *course* is a series of readings judged together, one row per reading in ``cr``:
- ``goal``: a marker of a goal (linked by ``goal_id`` or named by the goal's target), baseline = the first
  reading on or after the goal's start date (UTC), else the last before it;
- ``measure``: a marker no goal names, baseline = its first reading (instruments among them are the
  ``client_measures``; the others count for ``last_measured`` and staleness);
- ``recovery``: all the client's readings of one instrument (PHQ-9 or GAD-7, across its markers), baseline =
  the first: the client-level ``recovery``, the caseload's ``phq9``/``gad7`` and ``by_label``.

One window pass numbers each course's readings in time order (``rn``) and finds the baseline, the reading
4 weeks earlier (the last on or before that day, else the first after it) and, for a goal's target marker, the
start of the latest unbroken run of readings that meet the target; one aggregation then reads them off.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from service.domain.instruments import INSTRUMENTS, band_sql

# Which clients a statement covers; each variant defines the CTE ``cl(id)``.
ONE_CLIENT = "cl AS (SELECT CAST(:client_id AS uuid) AS id)"
CASELOAD = """cl AS (
  SELECT c.id FROM clients c
  WHERE c.org_id = :org AND c.deleted_at IS NULL{restrict}
)"""
ONLY_LISTED = "\n    AND c.id = ANY(CAST(:client_ids AS uuid[]))"
ONLY_PATIENT = "\n    AND c.id = CAST(:patient AS uuid)"

SATISFIES = """CASE c.t_cmp WHEN '>=' THEN x.value >= c.t_value WHEN '<=' THEN x.value <= c.t_value
                        WHEN '>' THEN x.value > c.t_value WHEN '<' THEN x.value < c.t_value
                        WHEN '=' THEN x.value = c.t_value END"""
RECENT = "(now() - interval '28 days')"  # measured "in the last 4 weeks, counted from now"
# Readings before this moment are "on or before the day 4 weeks ago" (UTC days).
REF_CUT = "((date_trunc('day', now() AT TIME ZONE 'UTC') - interval '27 days') AT TIME ZONE 'UTC')"
BAND = band_sql("c.instrument", "{value}")

# ISO 8601 durations as the goal schema accepts them. A stored one beyond it (older, looser validation) never
# fails the statement: it reads as the strictest value (a period of 0, a duration of 9999 years).
DURATION = "^P([0-9]{1,4}Y)?([0-9]{1,4}M)?([0-9]{1,4}W)?([0-9]{1,4}D)?$"


def interval(text_value: str, fallback: str) -> str:
    return (f"CASE WHEN {text_value} IS NULL THEN NULL WHEN {text_value} ~ '{DURATION}' "
            f"THEN CAST({text_value} AS interval) ELSE interval '{fallback}' END")


COURSE_CTES = f"""
inst AS (
  SELECT * FROM unnest(CAST(:i_key AS text[]), CAST(:i_sd AS float8[]), CAST(:i_r AS float8[]),
                       CAST(:i_case AS float8[]), CAST(:i_rc AS float8[])) AS t(key, sd, r, caseness, threshold)
),
mk AS (
  SELECT m.id AS marker_id, m.client_id, m.goal_id, m.instrument,
         CASE m.direction WHEN 'lower_is_better' THEN -1.0::float8 ELSE 1.0::float8 END AS sign,
         inst.caseness, inst.threshold, inst.sd * sqrt(2.0::float8) * sqrt(1.0::float8 - inst.r) AS s_diff,
         CASE WHEN inst.key IS NOT NULL THEN inst.threshold
              ELSE coalesce(m.min_change, (m.max - m.min) / 10.0) END AS min_change
  FROM outcome_markers m JOIN cl ON cl.id = m.client_id LEFT JOIN inst ON inst.key = m.instrument
  WHERE m.org_id = :org AND m.deleted_at IS NULL
),
g AS (
  SELECT goal.id AS goal_id, goal.client_id, goal.start_date, goal.lifecycle,
         CASE WHEN jsonb_typeof(goal.target) = 'object' THEN goal.target END AS target,  -- JSON null: no target
         CASE WHEN jsonb_typeof(goal.target -> 'marker_id') = 'string'
              THEN CAST(goal.target ->> 'marker_id' AS uuid) END AS named
  FROM goals goal JOIN cl ON cl.id = goal.client_id
  WHERE goal.org_id = :org AND goal.deleted_at IS NULL
),
links AS (
  SELECT g.goal_id, g.start_date, g.target, mk.marker_id, mk.client_id, mk.instrument, mk.sign, mk.caseness,
         mk.threshold, mk.s_diff, mk.min_change,
         g.target IS NOT NULL AND (mk.marker_id = g.named
                                   OR g.named IS NULL AND count(*) OVER (PARTITION BY g.goal_id) = 1) AS is_target
  FROM g JOIN mk ON mk.client_id = g.client_id AND (mk.goal_id = g.goal_id OR mk.marker_id = g.named)
),
courses AS (
  SELECT row_number() OVER () AS cid, u.* FROM (
    SELECT 'goal' AS kind, l.goal_id, l.client_id, l.marker_id, l.instrument, l.start_date, l.is_target,
           CASE WHEN l.is_target THEN l.target ->> 'comparator' END AS t_cmp,
           CASE WHEN l.is_target THEN CAST(l.target ->> 'value' AS float8) END AS t_value,
           CASE WHEN l.is_target THEN {interval("l.target ->> 'period'", "0")} END AS t_period,
           CASE WHEN l.is_target THEN {interval("l.target ->> 'duration'", "9999 years")} END AS t_duration,
           l.sign, l.caseness, l.threshold, l.s_diff, l.min_change
    FROM links l
    UNION ALL
    SELECT 'measure', NULL, mk.client_id, mk.marker_id, mk.instrument, NULL, false, NULL, NULL, NULL, NULL,
           mk.sign, mk.caseness, mk.threshold, mk.s_diff, mk.min_change
    FROM mk WHERE NOT EXISTS (SELECT 1 FROM links l WHERE l.marker_id = mk.marker_id)
    UNION ALL
    SELECT DISTINCT 'recovery', NULL::uuid, mk.client_id, NULL::uuid, mk.instrument, NULL::date, false, NULL,
           NULL::float8, NULL::interval, NULL::interval, mk.sign, mk.caseness, mk.threshold, mk.s_diff, mk.min_change
    FROM mk WHERE mk.instrument IS NOT NULL
  ) u
),
cr AS (
  SELECT c.cid, c.start_date, x.id AS mid, x.value, x.observed_at AS at, {SATISFIES} AS sat,
         row_number() OVER (PARTITION BY c.cid ORDER BY x.observed_at, x.id) AS rn
  FROM courses c
  LEFT JOIN mk same ON c.kind = 'recovery' AND same.client_id = c.client_id AND same.instrument = c.instrument
  LEFT JOIN measurements x ON x.org_id = :org AND x.deleted_at IS NULL
                          AND x.marker_id = coalesce(c.marker_id, same.marker_id)
),
cw AS (
  SELECT cr.*,
         count(mid) OVER w AS n,
         coalesce(min(rn) FILTER (WHERE mid IS NOT NULL AND (start_date IS NULL OR at >= start_date)) OVER w,
                  max(rn) FILTER (WHERE at < start_date) OVER w) AS base_rn,
         coalesce(max(rn) FILTER (WHERE at < {REF_CUT}) OVER w,
                  min(rn) FILTER (WHERE at >= {REF_CUT}) OVER w) AS ref_rn,
         max(rn) FILTER (WHERE NOT sat) OVER w AS miss_rn
  FROM cr WINDOW w AS (PARTITION BY cid)
),
agg AS (
  SELECT cid, max(n) AS n, count(mid) FILTER (WHERE rn >= base_rn) AS n_from_baseline,
         max(at) FILTER (WHERE rn = base_rn) AS baseline_at, max(value) FILTER (WHERE rn = base_rn) AS baseline,
         max(value) FILTER (WHERE rn = n) AS latest, max(at) AS last_measured,
         max(value) FILTER (WHERE rn = ref_rn) AS ref_value, max(ref_rn) < max(n) AS has_ref,
         bool_or(sat) FILTER (WHERE rn = n) AS latest_meets,
         min(at) FILTER (WHERE sat AND rn > coalesce(miss_rn, 0)) AS run_start,
         regr_slope(value, extract(epoch FROM at)::float8) FILTER (WHERE rn >= base_rn) * 604800.0 AS slope_per_week
  FROM cw GROUP BY cid
),
marks AS (
  SELECT c.*, a.n, a.n_from_baseline, a.baseline_at, a.baseline, a.latest, a.last_measured, a.slope_per_week,
         a.latest - a.baseline AS change, c.sign * (a.latest - a.baseline) AS improvement,
         a.n_from_baseline >= 2 AS enough,
         CASE WHEN a.has_ref THEN c.sign * (a.latest - a.ref_value) END AS recent_improvement,
         a.ref_value,
         a.last_measured IS NULL OR a.last_measured < {RECENT} AS stale,
         {BAND.format(value="a.baseline")} AS baseline_band, {BAND.format(value="a.latest")} AS latest_band,
         CASE WHEN c.is_target THEN coalesce(a.latest_meets, false)
              AND (c.t_duration IS NULL
                   OR a.last_measured - a.run_start + coalesce(c.t_period, interval '0') >= c.t_duration) END
           AS target_met
  FROM courses c JOIN agg a USING (cid)
),
rated AS (
  SELECT m.*,
         CASE WHEN m.enough AND m.s_diff IS NOT NULL THEN m.change / m.s_diff END AS rci,
         CASE WHEN m.threshold IS NULL THEN NULL WHEN NOT m.enough THEN NULL
              ELSE abs(m.change) >= m.threshold END AS reliable_change,
         CASE WHEN m.threshold IS NULL THEN NULL
              WHEN NOT m.enough THEN 'insufficient_data'
              WHEN m.improvement >= m.threshold AND m.baseline >= m.caseness AND m.latest < m.caseness
                THEN 'recovered'
              WHEN m.improvement >= m.threshold THEN 'reliably_improved'
              WHEN m.improvement <= -m.threshold THEN 'reliably_deteriorated'
              ELSE 'no_reliable_change' END AS label,
         CASE WHEN m.caseness IS NULL OR NOT m.enough THEN NULL
              ELSE m.baseline >= m.caseness AND m.latest < m.caseness END AS clinically_significant,
         -- off track, per marker: measured in the last 4 weeks and a reading 4 weeks earlier to compare with ...
         NOT m.stale AND m.recent_improvement IS NOT NULL AS comparable,
         -- ... improved by at least the minimal meaningful change (any improvement when none is known), or an
         -- instrument below caseness on both readings
         coalesce(m.recent_improvement >= m.min_change, m.recent_improvement > 0)
           OR m.caseness IS NOT NULL AND m.ref_value < m.caseness AND m.latest < m.caseness AS moving_or_well
  FROM marks m
),
goal_state AS (
  SELECT g.goal_id, g.client_id, g.lifecycle, g.target,
         max(r.last_measured) AS last_measured,
         coalesce(bool_and(r.stale), true) AS stale,
         CASE WHEN g.target IS NULL OR NOT coalesce(bool_or(r.is_target), false) THEN NULL
              ELSE bool_or(r.target_met) FILTER (WHERE r.is_target) END AS target_met,
         coalesce(bool_or(r.is_target), false) AS has_target_marker,
         coalesce(bool_or(r.comparable) FILTER (WHERE r.is_target), false) AS t_comparable,
         coalesce(bool_or(r.comparable AND r.moving_or_well) FILTER (WHERE r.is_target), false) AS t_fine,
         coalesce(bool_or(r.comparable), false) AS any_comparable,
         coalesce(bool_or(r.comparable AND r.moving_or_well), false) AS any_fine
  FROM g LEFT JOIN rated r ON r.kind = 'goal' AND r.goal_id = g.goal_id
  GROUP BY g.goal_id, g.client_id, g.lifecycle, g.target
),
goal_track AS (
  SELECT s.*,
         s.lifecycle = 'active' AND s.target_met IS NOT TRUE AND NOT s.stale
         AND CASE WHEN s.has_target_marker THEN s.t_comparable AND NOT s.t_fine
                  ELSE s.any_comparable AND NOT s.any_fine END AS off_track
  FROM goal_state s
),
unresolved_alerts AS (
  SELECT a.client_id, count(*) AS n
  FROM safety_alerts a JOIN cl ON cl.id = a.client_id
  WHERE a.org_id = :org AND a.status IN ('open', 'acknowledged') AND a.deleted_at IS NULL
  GROUP BY a.client_id
),
recovery AS (
  SELECT cl.id AS client_id,
         p.latest AS phq9_value, p.latest_band AS phq9_band, CASE WHEN p.n > 0 THEN p.label END AS phq9_label,
         d.latest AS gad7_value, d.latest_band AS gad7_band, CASE WHEN d.n > 0 THEN d.label END AS gad7_label,
         CASE WHEN NOT (coalesce(p.enough, false) AND coalesce(d.enough, false)) THEN 'insufficient_data'
              WHEN p.baseline < p.caseness AND d.baseline < d.caseness THEN 'not_a_case'
              WHEN 'reliably_deteriorated' IN (p.label, d.label) THEN 'reliably_deteriorated'
              WHEN p.latest < p.caseness AND d.latest < d.caseness
                   AND (p.label IN ('recovered', 'reliably_improved') OR d.label IN ('recovered', 'reliably_improved'))
                THEN 'recovered'
              WHEN p.label IN ('recovered', 'reliably_improved') OR d.label IN ('recovered', 'reliably_improved')
                THEN 'reliably_improved'
              ELSE 'no_reliable_change' END AS status
  FROM cl
  LEFT JOIN rated p ON p.kind = 'recovery' AND p.client_id = cl.id AND p.instrument = 'phq9'
  LEFT JOIN rated d ON d.kind = 'recovery' AND d.client_id = cl.id AND d.instrument = 'gad7'
)"""


def instrument_params() -> dict[str, Any]:
    """The instrument registry's reliable-change data, as arrays bound into the statements."""
    specs = sorted(INSTRUMENTS.values(), key=lambda s: s.key)
    return {
        "i_key": [s.key for s in specs], "i_sd": [s.sd for s in specs], "i_r": [s.reliability for s in specs],
        "i_case": [float(s.caseness) for s in specs], "i_rc": [float(s.reliable_change) for s in specs],
    }


def client_params(org_id: UUID, client_id: UUID) -> dict[str, Any]:
    return {"org": org_id, "client_id": client_id, **instrument_params()}


MARKER_JSON = """json_build_object(
  'marker_id', r.marker_id, 'name', om.name, 'unit', om.unit, 'kind', om.kind, 'instrument', r.instrument,
  'direction', om.direction, 'min_change', r.min_change, 'measurement_count', r.n,
  'baseline', r.baseline, 'baseline_at', r.baseline_at, 'baseline_band', r.baseline_band,
  'latest', r.latest, 'latest_band', r.latest_band, 'last_measured', r.last_measured, 'stale', r.stale,
  'change', r.change, 'improvement', r.improvement, 'improved', r.improvement > 0,
  'slope_per_week', r.slope_per_week, 'recent_improvement', r.recent_improvement,
  'label', r.label, 'reliable_change_threshold', r.threshold, 'reliable_change', r.reliable_change,
  'rci', r.rci, 's_diff', r.s_diff, 'caseness', r.caseness, 'clinically_significant', r.clinically_significant)"""

MARKERS_OF = f"""coalesce((SELECT json_agg({MARKER_JSON} ORDER BY om.name, r.marker_id)
  FROM rated r JOIN outcome_markers om ON om.org_id = :org AND om.id = r.marker_id
  WHERE {{where}}), '[]'::json)"""

# The unresolved alerts as every alert list orders them (urgent first, then oldest observed), with what never
# changes (trigger, severity, observed_at) for the summary's Safety lines (service.domain.safety.alert_line).
ALERTS = """coalesce((SELECT json_agg(json_build_object('id', a.id, 'reason', a.reason, 'status', a.status,
                                                  'severity', a.severity, 'trigger', a.trigger,
                                                  'observed_at', a.observed_at, 'opened_at', a.opened_at,
                                                  'acknowledged_at', a.acknowledged_at)
                          ORDER BY CASE a.severity WHEN 'urgent' THEN 0 ELSE 1 END, a.observed_at, a.id)
   FROM safety_alerts a
   WHERE a.org_id = :org AND a.client_id = CAST(:client_id AS uuid) AND a.status IN ('open', 'acknowledged')
     AND a.deleted_at IS NULL), '[]'::json)"""

GOALS = f"""coalesce((SELECT json_agg(x ORDER BY x.ord, x.goal_id) FROM (
    SELECT goal.id AS goal_id, goal.description, goal.lifecycle, goal.achievement, goal.start_date,
           goal.target_date, goal.target, goal.barriers, gt.target_met, gt.stale, gt.off_track, gt.last_measured,
           coalesce(ms.done, 0) AS milestones_done, coalesce(ms.total, 0) AS milestones_total,
           ms.next_due AS next_milestone, coalesce(st.strengths, '[]'::json) AS strengths,
           {MARKERS_OF.format(where="r.kind = 'goal' AND r.goal_id = goal.id")} AS markers,
           row_number() OVER (ORDER BY goal.start_date NULLS LAST, goal.created_at, goal.id) AS ord
    FROM goals goal
    JOIN goal_track gt ON gt.goal_id = goal.id
    LEFT JOIN LATERAL (
      SELECT count(*) FILTER (WHERE mi.status = 'done') AS done, count(*) AS total,
             (array_agg(json_build_object('id', mi.id, 'title', mi.title, 'due_date', mi.due_date,
                                          'sequence', mi.sequence, 'status', mi.status,
                                          'completion_criteria', mi.completion_criteria)
                        ORDER BY mi.due_date NULLS LAST, mi.sequence NULLS LAST, mi.id)
               FILTER (WHERE mi.status IN ('planned', 'in_progress')))[1] AS next_due
      FROM milestones mi WHERE mi.org_id = :org AND mi.goal_id = goal.id AND mi.deleted_at IS NULL
    ) ms ON true
    LEFT JOIN LATERAL (
      SELECT json_agg(json_build_object('id', s.id, 'label', s.label, 'status', s.status)
                      ORDER BY array_position(goal.strength_ids, s.id)) AS strengths
      FROM strengths s WHERE s.org_id = :org AND s.id = ANY(goal.strength_ids) AND s.deleted_at IS NULL
    ) st ON true
    WHERE goal.org_id = :org AND goal.client_id = CAST(:client_id AS uuid) AND goal.deleted_at IS NULL
  ) x), '[]'::json)"""

CLIENT_PROGRESS = f"""WITH {ONE_CLIENT}, {COURSE_CTES}
SELECT
  (SELECT coalesce(sum(n), 0) FROM unresolved_alerts) AS unresolved_alerts,
  {ALERTS} AS alerts,
  (SELECT json_build_object('status', status, 'phq9', phq9_label, 'gad7', gad7_label) FROM recovery) AS recovery,
  {GOALS} AS goals,
  {MARKERS_OF.format(where="r.kind = 'measure' AND r.instrument IS NOT NULL")} AS client_measures"""
