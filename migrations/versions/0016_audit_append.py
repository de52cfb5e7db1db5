"""The audit rows' INSERT as a function, ``audit_append(org, rows)``

Every audit row of a known organization went in as ``INSERT ... SELECT ... FROM jsonb_to_recordset(<rows>)``, sent
as simple-query text: with the write's COMMIT (the rows as a literal), or as the group commit's whole transaction
(``BEGIN``, the tenant's ``set_config``, that INSERT, ``COMMIT``). PostgreSQL parsed, analysed and planned the
INSERT afresh each time. ``audit_append`` runs the same INSERT from PL/pgSQL, which plans it once per session, after
setting ``app.org_id`` for the transaction as the group commit did; called alone it is its own transaction, so the
group commit is one prepared statement (``service.audit.commits``). Measured one commit at a time with eight reads'
rows (``bench/JOURNAL.md``, eleventh round): 0.47-0.53 ms of PostgreSQL's CPU per commit before, 0.33 after.

It runs as its caller (no ``SECURITY DEFINER``): under the service role's row-level security, ``tenant_append``
admits a row only of the organization set, so it can write nothing the role could not write with the INSERT itself.
Names are schema-qualified, so no search path can change what it calls or where it writes.

Revision ID: 0016
Revises: 0015
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("org_id", "app_id", "subject", "action", "resource_type", "resource_ids", "client_ids", "outcome",
           "status_code", "request_id", "remote_addr", "method", "path")
TYPES = ("uuid", "text", "text", "text", "text", "uuid[]", "uuid[]", "text", "int", "text", "text", "text", "text")


def role() -> str:
    config = op.get_context().config
    return str(config.attributes.get("app_role", "strengths_app")) if config else "strengths_app"


def upgrade() -> None:
    names = ", ".join(COLUMNS)
    record = ", ".join(f"{c} {t}" for c, t in zip(COLUMNS, TYPES, strict=True))
    op.execute(f"""
CREATE FUNCTION audit_append(p_org uuid, p_rows jsonb) RETURNS integer LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  written integer;
BEGIN
  PERFORM pg_catalog.set_config('app.org_id', p_org::text, true);
  INSERT INTO public.audit_events ({names})
  SELECT {names} FROM pg_catalog.jsonb_to_recordset(p_rows) AS t({record});
  GET DIAGNOSTICS written = ROW_COUNT;
  RETURN written;
END $$;
""")
    op.execute("REVOKE ALL ON FUNCTION audit_append(uuid, jsonb) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION audit_append(uuid, jsonb) TO {role()}")


def downgrade() -> None:
    op.execute("DROP FUNCTION audit_append(uuid, jsonb)")
