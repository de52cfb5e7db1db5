"""Webhook secret rotation and redelivery

- ``webhook_subscriptions.previous_secret`` and ``previous_secret_expires_at``: after
  ``POST .../rotate-secret`` the old secret keeps signing (a second signature in ``webhook-signature``)
  until it expires, 24 hours later.
- ``webhook_deliveries.redelivered_at``: when ``POST .../deliveries/{id}/redeliver`` made a delivery due
  again; its retry window is counted from then, not from the event.

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("webhook_subscriptions", sa.Column("previous_secret", sa.Text(), nullable=True))
    op.add_column("webhook_subscriptions",
                  sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("webhook_deliveries", sa.Column("redelivered_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("webhook_deliveries", "redelivered_at")
    op.drop_column("webhook_subscriptions", "previous_secret_expires_at")
    op.drop_column("webhook_subscriptions", "previous_secret")
