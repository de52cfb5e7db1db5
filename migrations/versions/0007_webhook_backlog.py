"""The webhook backlog for /metrics: a count of pending deliveries across organizations

Deliveries are under row-level security, so the service role cannot count them across organizations; like
``webhook_claim`` this definer function, owned by the owner role, answers exactly one number and nothing else.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def role() -> str:
    config = op.get_context().config
    return str(config.attributes.get("app_role", "strengths_app")) if config else "strengths_app"


def upgrade() -> None:
    # Pending deliveries (due now or waiting for a retry); the (status, next_attempt_at) index serves the count.
    op.execute("""
CREATE FUNCTION webhook_backlog() RETURNS bigint
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$ SELECT count(*) FROM webhook_deliveries WHERE status = 'pending' $$;
""")
    op.execute("REVOKE ALL ON FUNCTION webhook_backlog() FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION webhook_backlog() TO {role()}")


def downgrade() -> None:
    op.execute("DROP FUNCTION webhook_backlog()")
