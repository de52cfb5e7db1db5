"""The clinical summary's one statement for the rest of the record (besides the progress statement): strengths
with their uses inside the window, experiments done inside it and those planned, milestones, protective factors,
exceptions, the client's symptom measures (per instrument, across its markers) and each marker's readings inside
the window. The window is [:since, now]."""

from __future__ import annotations

from sqlalchemy import text

from service.domain.instruments import INSTRUMENTS, band_sql

IN_WINDOW = "x.observed_at >= :since AND x.observed_at <= now()"
# Instruments in the registry's order (PHQ-9, then GAD-7), as notes list them.
ORDER = "array_position(ARRAY[" + ", ".join(f"'{key}'" for key in INSTRUMENTS) + "]::text[], {column})"

# The time an experiment's current `done` status was recorded: the first version of its latest run of `done`.
DONE_AT = """(SELECT min(h.changed_at) FROM record_versions h
   WHERE h.org_id = :org AND h.collection = 'experiments' AND h.record_id = x.id AND h.data ->> 'status' = 'done'
     AND h.version > coalesce((SELECT max(h2.version) FROM record_versions h2
                               WHERE h2.org_id = :org AND h2.collection = 'experiments' AND h2.record_id = x.id
                                 AND h2.data ->> 'status' IS DISTINCT FROM 'done'), 0))"""

STRENGTHS = """(SELECT coalesce(json_agg(json_build_object(
      'id', s.id, 'label', s.label, 'client_label', s.client_label, 'description', s.description,
      'context', s.context, 'under_stress', s.under_stress, 'status', s.status, 'kind', s.kind,
      'domain', s.domain, 'evidence', s.evidence,
      'uses_total', (SELECT count(*) FROM strength_uses u WHERE u.org_id = :org AND u.strength_id = s.id
                     AND u.deleted_at IS NULL),
      'uses', (SELECT coalesce(json_agg(json_build_object('situation', u.situation, 'result', u.result)
                                        ORDER BY u.occurred_at, u.id), '[]'::json)
               FROM strength_uses u WHERE u.org_id = :org AND u.strength_id = s.id AND u.deleted_at IS NULL
                 AND u.occurred_at >= :since AND u.occurred_at <= now()))
    ORDER BY CASE s.status WHEN 'confirmed' THEN 0 WHEN 'hypothesis' THEN 1 ELSE 2 END, s.label, s.id), '[]'::json)
   FROM strengths s WHERE s.org_id = :org AND s.client_id = :client AND s.deleted_at IS NULL)"""

EXPERIMENTS_DONE = f"""(SELECT coalesce(json_agg(json_build_object(
      'id', d.id, 'strength_id', d.strength_id, 'plan', d.plan, 'result', d.result, 'debrief', d.debrief,
      'confidence_before', d.confidence_before, 'confidence_after', d.confidence_after, 'done_at', d.done_at)
    ORDER BY d.done_at, d.id), '[]'::json)
   FROM (SELECT x.*, {DONE_AT} AS done_at FROM experiments x
         WHERE x.org_id = :org AND x.client_id = :client AND x.deleted_at IS NULL AND x.status = 'done') d
   WHERE d.done_at >= :since AND d.done_at <= now())"""

EXPERIMENTS_PLANNED = """(SELECT coalesce(json_agg(json_build_object(
      'id', x.id, 'strength_id', x.strength_id, 'goal_id', x.goal_id, 'plan', x.plan, 'due_date', x.due_date)
    ORDER BY x.due_date NULLS LAST, x.created_at, x.id), '[]'::json)
   FROM experiments x WHERE x.org_id = :org AND x.client_id = :client AND x.deleted_at IS NULL
     AND x.status = 'planned')"""

MILESTONES = """(SELECT coalesce(json_agg(json_build_object(
      'id', m.id, 'goal_id', m.goal_id, 'title', m.title, 'criteria', m.completion_criteria, 'status', m.status,
      'completed_on', CAST(m.completed_at AS date),
      'completed_in_window', m.completed_at >= :since AND m.completed_at <= now())
    ORDER BY m.completed_at NULLS LAST, m.goal_id, m.sequence NULLS LAST, m.id), '[]'::json)
   FROM milestones m JOIN goals g ON g.org_id = m.org_id AND g.id = m.goal_id AND g.deleted_at IS NULL
   WHERE m.org_id = :org AND m.client_id = :client AND m.deleted_at IS NULL)"""

SYMPTOMS = f"""(SELECT coalesce(json_agg(json_build_object(
      'instrument', s.instrument, 'n', s.n, 'latest', s.latest, 'latest_at', s.latest_at,
      'latest_band', {band_sql("s.instrument", "s.latest")}, 'first', s.first, 'first_at', s.first_at,
      'first_band', {band_sql("s.instrument", "s.first")}, 'recent', s.recent)
    ORDER BY {ORDER.format(column="s.instrument")}), '[]'::json)
   FROM (SELECT m.instrument, count(*) AS n,
                (array_agg(x.value ORDER BY x.observed_at DESC, x.id DESC))[1] AS latest,
                max(x.observed_at) AS latest_at,
                (array_agg(x.value ORDER BY x.observed_at, x.id))[1] AS first, min(x.observed_at) AS first_at,
                max(x.observed_at) >= now() - interval '28 days' AS recent
         FROM outcome_markers m
         JOIN measurements x ON x.org_id = :org AND x.marker_id = m.id AND x.deleted_at IS NULL
         WHERE m.org_id = :org AND m.client_id = :client AND m.deleted_at IS NULL AND m.instrument IS NOT NULL
         GROUP BY m.instrument) s)"""

WINDOW = f"""(SELECT coalesce(json_agg(json_build_object(
      'marker_id', w.id, 'name', w.name, 'unit', w.unit, 'instrument', w.instrument, 'direction', w.direction,
      'min_change', w.min_change, 'n', w.n, 'first', w.first, 'first_at', w.first_at,
      'first_band', {band_sql("w.instrument", "w.first")}, 'last', w.last, 'last_at', w.last_at,
      'last_band', {band_sql("w.instrument", "w.last")})
    ORDER BY {ORDER.format(column="w.instrument")} NULLS LAST, w.name, w.id), '[]'::json)
   FROM (SELECT m.id, m.name, m.unit, m.instrument, m.direction,
                coalesce(m.min_change, (m.max - m.min) / 10.0) AS min_change, count(*) AS n,
                (array_agg(x.value ORDER BY x.observed_at, x.id))[1] AS first, min(x.observed_at) AS first_at,
                (array_agg(x.value ORDER BY x.observed_at DESC, x.id DESC))[1] AS last,
                max(x.observed_at) AS last_at
         FROM outcome_markers m
         JOIN measurements x ON x.org_id = :org AND x.marker_id = m.id AND x.deleted_at IS NULL AND {IN_WINDOW}
         WHERE m.org_id = :org AND m.client_id = :client AND m.deleted_at IS NULL
         GROUP BY m.org_id, m.id) w)"""

RECORD = text(f"""
SELECT
  {STRENGTHS} AS strengths,
  {EXPERIMENTS_DONE} AS experiments,
  {EXPERIMENTS_PLANNED} AS planned_experiments,
  {MILESTONES} AS milestones,
  (SELECT coalesce(json_agg(json_build_object('id', p.id, 'category', p.category, 'description', p.description,
                                              'status', p.status) ORDER BY p.category, p.id), '[]'::json)
   FROM protective_factors p WHERE p.org_id = :org AND p.client_id = :client AND p.deleted_at IS NULL) AS protective,
  (SELECT coalesce(json_agg(json_build_object('problem', e.problem, 'description', e.description,
                                              'conditions', e.conditions) ORDER BY e.observed_at, e.id), '[]'::json)
   FROM exceptions e WHERE e.org_id = :org AND e.client_id = :client AND e.deleted_at IS NULL) AS exceptions,
  {SYMPTOMS} AS symptoms,
  {WINDOW} AS window_readings
""")
