"""Webhooks: subscriptions, the outbox of events, deliveries, and the dispatcher's claim function

The dispatcher acts as the service role, under row-level security like every request. To find due
deliveries of every organization it calls ``webhook_claim``, a definer function owned by the owner
role that leases a batch (``FOR UPDATE SKIP LOCKED``) and returns only (org_id, id, lease_token);
the dispatcher then reads and updates each delivery inside that organization's tenant transaction.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ["webhook_subscriptions", "webhook_outbox", "webhook_deliveries"]


def role() -> str:
    config = op.get_context().config
    return str(config.attributes.get("app_role", "strengths_app")) if config else "strengths_app"


def upgrade() -> None:
    op.create_table(
        "webhook_subscriptions",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("events", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_webhook_subscriptions")),
    )
    op.create_table(
        "webhook_outbox",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("record_id", sa.Uuid(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_webhook_outbox")),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("subscription_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("lease_token", sa.Uuid(), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["org_id", "subscription_id"],
                                ["webhook_subscriptions.org_id", "webhook_subscriptions.id"],
                                name=op.f("fk_webhook_deliveries_org_id_subscription_id_webhook_subscriptions")),
        sa.ForeignKeyConstraint(["org_id", "event_id"], ["webhook_outbox.org_id", "webhook_outbox.id"],
                                name=op.f("fk_webhook_deliveries_org_id_event_id_webhook_outbox")),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index("ix_webhook_deliveries_status_next_attempt_at", "webhook_deliveries",
                    ["status", "next_attempt_at"], unique=False)
    op.create_index("ix_webhook_deliveries_org_id_subscription_id_id", "webhook_deliveries",
                    ["org_id", "subscription_id", "id"], unique=False)
    r = role()
    for table in TABLES:
        op.execute(f"GRANT SELECT, INSERT, UPDATE ON {table} TO {r}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} USING (org_id = app_org()) WITH CHECK (org_id = app_org())"
        )
    # Leases a batch of due deliveries of any organization; returns ids only (no payloads, no secrets).
    op.execute("""
CREATE FUNCTION webhook_claim(p_limit integer, p_lease_seconds integer)
  RETURNS TABLE (claimed_org uuid, claimed_id uuid, claimed_token uuid)
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public
  AS $$
    UPDATE webhook_deliveries d
       SET lease_token = gen_random_uuid(),
           next_attempt_at = now() + make_interval(secs => greatest(p_lease_seconds, 1))
      FROM (SELECT org_id, id FROM webhook_deliveries
             WHERE status = 'pending' AND next_attempt_at <= now()
             ORDER BY next_attempt_at
             LIMIT least(greatest(p_limit, 1), 100)
             FOR UPDATE SKIP LOCKED) due
     WHERE d.org_id = due.org_id AND d.id = due.id
    RETURNING d.org_id, d.id, d.lease_token
  $$;
""")
    op.execute("REVOKE ALL ON FUNCTION webhook_claim(integer, integer) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION webhook_claim(integer, integer) TO {r}")


def downgrade() -> None:
    op.execute("DROP FUNCTION webhook_claim(integer, integer)")
    op.drop_index("ix_webhook_deliveries_org_id_subscription_id_id", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_status_next_attempt_at", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_outbox")
    op.drop_table("webhook_subscriptions")
