"""Outcome markers get ``min_change``: the smallest change that matters (CONTRACT.md section 4, issue 21)

Progress calls a goal off track when its marker has not improved by this much in 4 weeks. Instrument markers
hold their reliable-change threshold (PHQ-9 6, GAD-7 4: NHS Talking Therapies); existing ones are filled in
here. Other markers keep null, which progress reads as a tenth of the marker's range.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The registry's reliable-change thresholds at this revision (service/domain/instruments.py).
THRESHOLDS = {"phq9": 6.0, "gad7": 4.0}


def upgrade() -> None:
    op.add_column("outcome_markers", sa.Column("min_change", sa.Float(), nullable=True))
    op.create_check_constraint(op.f("ck_outcome_markers_min_change_positive"), "outcome_markers",
                               "min_change IS NULL OR min_change > 0")
    for instrument, threshold in THRESHOLDS.items():
        op.execute(sa.text("UPDATE outcome_markers SET min_change = :threshold WHERE instrument = :instrument")
                   .bindparams(threshold=threshold, instrument=instrument))


def downgrade() -> None:
    op.drop_constraint(op.f("ck_outcome_markers_min_change_positive"), "outcome_markers", type_="check")
    op.drop_column("outcome_markers", "min_change")
