"""Safety alerts keep an immutable trigger, a severity and the measurement's time; a measurement may have several
alerts; strengths gain ``suppressed_in``; a strength use may add itself to its strength's evidence

Existing alerts are filled from the measurement values that opened them: before this revision an alert was
opened only when a measurement was created, in the same transaction, so the measurement's history version
written at or before the alert's ``created_at`` holds the values it was opened for (the current row is the
fallback). The bands and thresholds are CONTRACT.md revision 4's, written out here so that this revision
does not change when the instrument registry does. An alert whose measurement meets no trigger (raised by a
clinician) keeps a null trigger and is ``high``.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FILL = """
WITH opened AS (
  SELECT a.org_id, a.id, m.observed_at, mk.instrument,
         coalesce(
           (SELECT h.data FROM history h
             WHERE h.org_id = a.org_id AND h.collection = 'measurements' AND h.record_id = m.id
               AND h.changed_at <= a.created_at AND h.action <> 'deleted'
             ORDER BY h.version DESC LIMIT 1),
           jsonb_build_object('items', to_jsonb(m.items), 'value', m.value)) AS v
  FROM safety_alerts a
  JOIN measurements m ON m.org_id = a.org_id AND m.id = a.measurement_id
  JOIN outcome_markers mk ON mk.org_id = m.org_id AND mk.id = m.marker_id
), scored AS (
  SELECT org_id, id, observed_at, instrument,
         CASE WHEN instrument = 'phq9' THEN (v->'items'->>8)::int END AS item9,
         (v->>'value')::float8::int AS total
  FROM opened
), triggered AS (
  SELECT s.*,
         CASE WHEN coalesce(item9, 0) > 0 THEN 'item9'
              WHEN (instrument = 'phq9' AND total >= 20) OR (instrument = 'gad7' AND total >= 15) THEN 'severe_total'
         END AS kind,
         CASE WHEN instrument = 'phq9' THEN
                CASE WHEN total >= 20 THEN 'severe' WHEN total >= 15 THEN 'moderately_severe'
                     WHEN total >= 10 THEN 'moderate' WHEN total >= 5 THEN 'mild' ELSE 'minimal' END
              WHEN instrument = 'gad7' THEN
                CASE WHEN total >= 15 THEN 'severe' WHEN total >= 10 THEN 'moderate'
                     WHEN total >= 5 THEN 'mild' ELSE 'minimal' END
         END AS band
  FROM scored s
)
UPDATE safety_alerts a
   SET observed_at = t.observed_at,
       trigger = CASE WHEN t.kind IS NOT NULL THEN jsonb_build_object(
                   'kind', t.kind, 'instrument', t.instrument, 'item9', t.item9, 'total', t.total, 'band', t.band)
                 END,
       severity = CASE WHEN t.kind = 'item9' AND t.item9 >= 2 THEN 'urgent' ELSE 'high' END
  FROM triggered t
 WHERE a.org_id = t.org_id AND a.id = t.id
"""


def upgrade() -> None:
    op.drop_index("uq_safety_alerts_org_id_measurement_id", table_name="safety_alerts",
                  postgresql_where=sa.text("measurement_id IS NOT NULL"))
    op.create_index("ix_safety_alerts_org_id_measurement_id", "safety_alerts", ["org_id", "measurement_id"])
    op.add_column("safety_alerts", sa.Column("trigger", postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column("safety_alerts", sa.Column("severity", sa.Text(), nullable=True))
    op.add_column("safety_alerts", sa.Column("observed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("safety_alerts", sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("safety_alerts", sa.Column("resolution_note", sa.Text(), nullable=True))
    op.execute(_FILL)
    op.execute("UPDATE safety_alerts SET severity = coalesce(severity, 'high'), "
               "observed_at = coalesce(observed_at, created_at), opened_at = created_at")
    op.alter_column("safety_alerts", "severity", nullable=False)
    op.alter_column("safety_alerts", "observed_at", nullable=False)
    op.alter_column("safety_alerts", "opened_at", nullable=False, server_default=sa.text("now()"))
    op.create_check_constraint(op.f("ck_safety_alerts_severity_enum"), "safety_alerts", "severity IN ('urgent', 'high')")

    op.add_column("strengths", sa.Column("suppressed_in", sa.Text(), nullable=True))
    op.add_column("strength_uses", sa.Column("add_to_evidence", sa.Boolean(), server_default=sa.text("false"),
                                             nullable=False))


def downgrade() -> None:
    op.drop_column("strength_uses", "add_to_evidence")
    op.drop_column("strengths", "suppressed_in")
    op.drop_constraint(op.f("ck_safety_alerts_severity_enum"), "safety_alerts", type_="check")
    for column in ("resolution_note", "opened_at", "observed_at", "severity", "trigger"):
        op.drop_column("safety_alerts", column)
    op.drop_index("ix_safety_alerts_org_id_measurement_id", table_name="safety_alerts")
    # Fails, rather than dropping alerts, where a measurement has opened several: resolve that by hand first.
    op.create_index("uq_safety_alerts_org_id_measurement_id", "safety_alerts", ["org_id", "measurement_id"],
                    unique=True, postgresql_where=sa.text("measurement_id IS NOT NULL"))
