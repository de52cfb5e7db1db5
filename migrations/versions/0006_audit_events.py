"""Audit events: an append-only trail of every read and write of client data, and every refusal

The service role may INSERT and SELECT (its organization's rows) but never UPDATE or DELETE them;
rows refused before the organization was known (401) have no organization and only the owner sees them.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIONS = ("read", "search", "create", "update", "delete", "upsert", "export", "import", "purge", "denied")
OUTCOMES = ("success", "denied", "not_found", "error")


def role() -> str:
    config = op.get_context().config
    return str(config.attributes.get("app_role", "strengths_app")) if config else "strengths_app"


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False),
        sa.Column("app_id", sa.Text(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("resource_type", sa.Text(), nullable=True),
        sa.Column("resource_ids", postgresql.ARRAY(sa.Uuid()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("client_ids", postgresql.ARRAY(sa.Uuid()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column("remote_addr", sa.Text(), nullable=True),
        sa.Column("method", sa.Text(), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.CheckConstraint(_in("action", ACTIONS), name=op.f("ck_audit_events_action")),
        sa.CheckConstraint(_in("outcome", OUTCOMES), name=op.f("ck_audit_events_outcome")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index("ix_audit_events_org_id_at", "audit_events", ["org_id", "at"], unique=False)
    op.create_index("ix_audit_events_client_ids", "audit_events", ["client_ids"], unique=False,
                    postgresql_using="gin")
    r = role()
    op.execute(f"REVOKE ALL ON audit_events FROM {r}")
    op.execute(f"GRANT SELECT, INSERT ON audit_events TO {r}")
    op.execute("ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY")
    op.execute("CREATE POLICY tenant_read ON audit_events FOR SELECT USING (org_id = app_org())")
    op.execute("CREATE POLICY tenant_append ON audit_events FOR INSERT WITH CHECK (org_id IS NOT DISTINCT FROM app_org())")
    # Belt and braces: even a role later granted UPDATE or DELETE cannot change history.
    op.execute("""
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_events is append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
""")
    op.execute(
        "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_events "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER audit_events_append_only ON audit_events")
    op.execute("DROP FUNCTION audit_events_append_only()")
    op.drop_index("ix_audit_events_client_ids", table_name="audit_events")
    op.drop_index("ix_audit_events_org_id_at", table_name="audit_events")
    op.drop_table("audit_events")
