"""FHIR Bulk Data export: jobs, files and file contents (chunks), and the worker's claim and sweep functions

The worker acts as the service role, under row-level security like every request. To find work in every
organization it calls two definer functions owned by the owner role: ``bulk_export_claim`` leases one due
job (``FOR UPDATE SKIP LOCKED``) and returns only (org_id, id, lease_token); ``bulk_export_sweep`` removes
the files of jobs past their expiry and returns how many jobs expired. Everything else happens inside the
job's organization's tenant transaction.

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ["bulk_export_jobs", "bulk_export_files", "bulk_export_chunks"]
STATUSES = "'accepted', 'in-progress', 'completed', 'failed', 'cancelled', 'expired'"


def role() -> str:
    config = op.get_context().config
    return str(config.attributes.get("app_role", "strengths_app")) if config else "strengths_app"


def _tables() -> None:
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "bulk_export_jobs",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("app_id", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=True),
        sa.Column("level", sa.Text(), nullable=False),
        sa.Column("group_id", sa.Uuid(), nullable=True),
        sa.Column("plan", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("since", ts, nullable=True),
        sa.Column("request_url", sa.Text(), nullable=False),
        sa.Column("transaction_time", ts, nullable=False),
        sa.Column("waiting_for", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'accepted'"), nullable=False),
        sa.Column("step", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("after_id", sa.Uuid(), nullable=True),
        sa.Column("resources", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("lease_token", sa.Uuid(), nullable=True),
        sa.Column("lease_until", ts, nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("failures", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", ts, server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", ts, server_default=sa.text("now()"), nullable=False),
        sa.Column("completed_at", ts, nullable=True),
        sa.Column("expires_at", ts, nullable=True),
        sa.CheckConstraint(f"status IN ({STATUSES})", name=op.f("ck_bulk_export_jobs_status")),
        sa.CheckConstraint("level IN ('system', 'patient', 'group')", name=op.f("ck_bulk_export_jobs_level")),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_bulk_export_jobs")),
    )
    op.create_index("ix_bulk_export_jobs_status_lease_until", "bulk_export_jobs", ["status", "lease_until"])
    op.create_index("ix_bulk_export_jobs_org_id_app_id_status", "bulk_export_jobs", ["org_id", "app_id", "status"])
    op.create_table(
        "bulk_export_files",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("resource_type", sa.Text(), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("lines", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", ts, server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["org_id", "job_id"], ["bulk_export_jobs.org_id", "bulk_export_jobs.id"],
                                name=op.f("fk_bulk_export_files_org_id_job_id_bulk_export_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("org_id", "id", name=op.f("pk_bulk_export_files")),
        sa.UniqueConstraint("org_id", "job_id", "resource_type", "part",
                            name=op.f("uq_bulk_export_files_org_id_job_id_resource_type_part")),
    )
    op.create_table(
        "bulk_export_chunks",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("file_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("collection", sa.Text(), nullable=False),
        sa.Column("record_ids", postgresql.ARRAY(sa.Uuid()), nullable=False),
        sa.Column("client_ids", postgresql.ARRAY(sa.Uuid()), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["org_id", "file_id"], ["bulk_export_files.org_id", "bulk_export_files.id"],
                                name=op.f("fk_bulk_export_chunks_org_id_file_id_bulk_export_files"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("org_id", "file_id", "seq", name=op.f("pk_bulk_export_chunks")),
    )


def upgrade() -> None:
    _tables()
    r = role()
    for table in TABLES:
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {r}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} USING (org_id = app_org()) WITH CHECK (org_id = app_org())"
        )
    # A patient-context token sees only jobs it could have started (its own patient's).
    op.execute("CREATE POLICY patient_scope ON bulk_export_jobs AS RESTRICTIVE "
               "USING (app_patient() IS NULL OR patient_id = app_patient()) "
               "WITH CHECK (app_patient() IS NULL OR patient_id = app_patient())")
    # Leases one job that is due (new, or whose worker's lease ran out); returns ids only.
    op.execute("""
CREATE FUNCTION bulk_export_claim(p_lease_seconds integer)
  RETURNS TABLE (claimed_org uuid, claimed_id uuid, claimed_token uuid)
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public
  AS $$
    UPDATE bulk_export_jobs j
       SET lease_token = gen_random_uuid(),
           lease_until = now() + make_interval(secs => greatest(p_lease_seconds, 1)),
           attempts = j.attempts + 1,
           status = 'in-progress', updated_at = now()
      FROM (SELECT org_id, id FROM bulk_export_jobs
             WHERE status IN ('accepted', 'in-progress') AND (lease_until IS NULL OR lease_until < now())
             ORDER BY lease_until NULLS FIRST, created_at
             LIMIT 1
             FOR UPDATE SKIP LOCKED) due
     WHERE j.org_id = due.org_id AND j.id = due.id
    RETURNING j.org_id, j.id, j.lease_token
  $$;
""")
    # Completed jobs past their expiry lose their files (the chunks go with them) and become 'expired'.
    op.execute("""
CREATE FUNCTION bulk_export_sweep() RETURNS bigint
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public
  AS $$
    WITH gone AS (
      UPDATE bulk_export_jobs SET status = 'expired', updated_at = now()
       WHERE status = 'completed' AND expires_at < now()
      RETURNING org_id, id
    ), removed AS (
      DELETE FROM bulk_export_files f USING gone WHERE f.org_id = gone.org_id AND f.job_id = gone.id RETURNING 1
    )
    SELECT count(*) FROM gone
  $$;
""")
    for fn in ("bulk_export_claim(integer)", "bulk_export_sweep()"):
        op.execute(f"REVOKE ALL ON FUNCTION {fn} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {fn} TO {r}")


def downgrade() -> None:
    op.execute("DROP FUNCTION bulk_export_sweep()")
    op.execute("DROP FUNCTION bulk_export_claim(integer)")
    op.drop_table("bulk_export_chunks")
    op.drop_table("bulk_export_files")
    op.drop_index("ix_bulk_export_jobs_org_id_app_id_status", table_name="bulk_export_jobs")
    op.drop_index("ix_bulk_export_jobs_status_lease_until", table_name="bulk_export_jobs")
    op.drop_table("bulk_export_jobs")
