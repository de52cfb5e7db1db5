"""Patient-token isolation: identifier compartments, audit rows limited to the token's patient and always
owned by an organization

Identifier compartments. An identifier (an external id, a measurement's source and external id) written
with a patient-context token lives in that patient's compartment; one written by any other token lives in
the organization's (the nil UUID). Uniqueness holds per compartment, so an identifier another patient
already uses is, to a patient token, exactly an unknown one: its record is stored for the token's own
patient (CONTRACT.md section 2). Records written by clinicians and EHRs keep identifiers unique per
organization, as before.

Audit events. A patient-context transaction sees only the events about its patient alone; the service
role can insert rows of its own organization only. Refusals of requests without a valid token, which have
no organization, go through ``audit_anonymous``: a definer function that writes exactly such rows
(no organization, no app, no subject) and nothing else.

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ORG_WIDE = "'00000000-0000-0000-0000-000000000000'::uuid"
AUDIT_COLUMNS = (
    "resource_type text, resource_ids uuid[], client_ids uuid[], outcome text, status_code int, request_id text, "
    "remote_addr text, method text, path text"
)


def role() -> str:
    config = op.get_context().config
    return str(config.attributes.get("app_role", "strengths_app")) if config else "strengths_app"


def _compartment() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("compartment", sa.Uuid(), server_default=sa.text(ORG_WIDE), nullable=False)


def upgrade() -> None:
    op.add_column("external_ids", _compartment())
    op.drop_constraint("pk_external_ids", "external_ids", type_="primary")
    op.create_primary_key("pk_external_ids", "external_ids", ["org_id", "collection", "system", "value", "compartment"])
    op.add_column("measurements", _compartment())
    op.drop_index("uq_measurements_org_id_source_external_id", table_name="measurements",
                  postgresql_where=sa.text("external_id IS NOT NULL"))
    op.create_index("uq_measurements_org_id_source_external_id_compartment", "measurements",
                    ["org_id", "source", "external_id", "compartment"], unique=True,
                    postgresql_where=sa.text("external_id IS NOT NULL"))

    r = role()
    op.execute("DROP POLICY tenant_append ON audit_events")
    op.execute("CREATE POLICY tenant_append ON audit_events FOR INSERT WITH CHECK (org_id = app_org())")
    op.execute(
        "CREATE POLICY patient_read ON audit_events AS RESTRICTIVE FOR SELECT "
        "USING (app_patient() IS NULL OR client_ids = ARRAY[app_patient()])"
    )
    op.execute(f"""
CREATE FUNCTION audit_anonymous(p_rows jsonb) RETURNS void
  LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public
  AS $$
    INSERT INTO audit_events (org_id, app_id, subject, action, resource_type, resource_ids, client_ids, outcome,
                              status_code, request_id, remote_addr, method, path)
    SELECT NULL, NULL, NULL, 'denied', resource_type, coalesce(resource_ids, '{{}}'), '{{}}', outcome, status_code,
           request_id, remote_addr, method, path
    FROM jsonb_to_recordset(p_rows) AS t({AUDIT_COLUMNS})
    WHERE status_code BETWEEN 400 AND 499
  $$;
""")
    op.execute("REVOKE ALL ON FUNCTION audit_anonymous(jsonb) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION audit_anonymous(jsonb) TO {r}")


def downgrade() -> None:
    op.execute("DROP FUNCTION audit_anonymous(jsonb)")
    op.execute("DROP POLICY patient_read ON audit_events")
    op.execute("DROP POLICY tenant_append ON audit_events")
    op.execute(
        "CREATE POLICY tenant_append ON audit_events FOR INSERT WITH CHECK (org_id IS NOT DISTINCT FROM app_org())"
    )
    op.drop_index("uq_measurements_org_id_source_external_id_compartment", table_name="measurements",
                  postgresql_where=sa.text("external_id IS NOT NULL"))
    op.create_index("uq_measurements_org_id_source_external_id", "measurements", ["org_id", "source", "external_id"],
                    unique=True, postgresql_where=sa.text("external_id IS NOT NULL"))
    op.drop_column("measurements", "compartment")
    op.execute(f"DELETE FROM external_ids WHERE compartment <> {ORG_WIDE}")
    op.drop_constraint("pk_external_ids", "external_ids", type_="primary")
    op.create_primary_key("pk_external_ids", "external_ids", ["org_id", "collection", "system", "value"])
    op.drop_column("external_ids", "compartment")
