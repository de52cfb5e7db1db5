"""OAuth bookkeeping: used client-assertion jti (replay check) and revoked access tokens

Both tables are per organization and under row-level security. The per-request revocation check
runs before the organization is known to the transaction, so it goes through ``token_revoked()``, a
SECURITY DEFINER function that answers one yes/no question (is this token revoked, or its app
disabled?) and nothing else.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def role() -> str:
    config = op.get_context().config
    return str(config.attributes.get("app_role", "strengths_app")) if config else "strengths_app"


def upgrade() -> None:
    r = role()
    op.create_table(
        "used_assertions",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("jti", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"], name="fk_used_assertions_org_id_organizations"),
        sa.PrimaryKeyConstraint("client_id", "jti", name="pk_used_assertions"),
    )
    op.create_index("ix_used_assertions_expires_at", "used_assertions", ["expires_at"])
    op.create_table(
        "revoked_tokens",
        sa.Column("jti", sa.Text(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"], name="fk_revoked_tokens_org_id_organizations"),
        sa.PrimaryKeyConstraint("jti", name="pk_revoked_tokens"),
    )
    op.execute(f"GRANT SELECT, INSERT, DELETE ON used_assertions TO {r}")
    op.execute(f"GRANT SELECT, INSERT, DELETE ON revoked_tokens TO {r}")
    for table in ("used_assertions", "revoked_tokens"):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} USING (org_id = app_org()) WITH CHECK (org_id = app_org())"
        )
    op.execute("""
CREATE FUNCTION token_revoked(p_jti text, p_client_id text) RETURNS boolean
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$ SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = p_jti)
            OR EXISTS (SELECT 1 FROM apps WHERE client_id = p_client_id AND disabled_at IS NOT NULL) $$;
""")
    op.execute("REVOKE ALL ON FUNCTION token_revoked(text, text) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION token_revoked(text, text) TO {r}")


def downgrade() -> None:
    op.execute("DROP FUNCTION token_revoked(text, text)")
    op.drop_table("revoked_tokens")
    op.drop_index("ix_used_assertions_expires_at", table_name="used_assertions")
    op.drop_table("used_assertions")
