"""The service role, its grants, and row-level security on every tenant table

The service connects as (or SET ROLEs to) a role that owns nothing and does not bypass row-level
security. Each transaction sets ``app.org_id`` (and ``app.patient_id`` for patient-context tokens);
rows of other organizations or patients are invisible even to a query that forgets its filter.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLIENT_OWNED = [
    "strengths", "protective_factors", "exceptions", "goals", "milestones", "outcome_markers",
    "measurements", "strength_uses", "experiments", "safety_alerts",
]
TRAILS = ["history", "changes", "external_ids"]


def role() -> str:
    config = op.get_context().config
    return str(config.attributes.get("app_role", "strengths_app")) if config else "strengths_app"


def upgrade() -> None:
    r = role()
    op.execute(f"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{r}') THEN
    CREATE ROLE {r} NOLOGIN NOSUPERUSER NOBYPASSRLS;
  END IF;
END $$;
""")
    op.execute(f"""
DO $$ BEGIN
  IF NOT pg_has_role(current_user, '{r}', 'MEMBER') THEN
    EXECUTE format('GRANT %I TO %I', '{r}', current_user);
  END IF;
END $$;
""")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {r}")
    for name, setting in (("app_org", "app.org_id"), ("app_patient", "app.patient_id")):
        op.execute(
            f"CREATE FUNCTION {name}() RETURNS uuid LANGUAGE sql STABLE PARALLEL SAFE "
            f"AS $$ SELECT nullif(current_setting('{setting}', true), '')::uuid $$"
        )
    op.execute(f"GRANT EXECUTE ON FUNCTION app_org(), app_patient() TO {r}")

    for table in ["clients", *CLIENT_OWNED, *TRAILS]:
        patient_col = "id" if table == "clients" else "client_id"
        op.execute(f"GRANT SELECT, INSERT, UPDATE ON {table} TO {r}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} USING (org_id = app_org()) WITH CHECK (org_id = app_org())"
        )
        op.execute(
            f"CREATE POLICY patient_scope ON {table} AS RESTRICTIVE "
            f"USING (app_patient() IS NULL OR {patient_col} = app_patient()) "
            f"WITH CHECK (app_patient() IS NULL OR {patient_col} = app_patient())"
        )

    op.execute(f"GRANT SELECT ON organizations, apps TO {r}")
    for table, col in (("organizations", "id"), ("apps", "org_id")):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY tenant_isolation ON {table} USING ({col} = app_org())")
    # The token endpoint must find an app before it knows the organization: a definer function owned
    # by the owner role returns exactly the one app asked for, and nothing else.
    op.execute("""
CREATE FUNCTION auth_app(p_client_id text) RETURNS SETOF apps
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$ SELECT * FROM apps WHERE client_id = p_client_id $$;
""")
    op.execute("REVOKE ALL ON FUNCTION auth_app(text) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION auth_app(text) TO {r}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON signing_keys TO {r}")
    op.execute(f"GRANT SELECT ON alembic_version TO {r}")


def downgrade() -> None:
    r = role()
    op.execute(f"REVOKE ALL ON signing_keys, alembic_version FROM {r}")
    op.execute("DROP FUNCTION auth_app(text)")
    for table in ["organizations", "apps", "clients", *CLIENT_OWNED, *TRAILS]:
        op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")
        op.execute(f"DROP POLICY IF EXISTS patient_scope ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
        op.execute(f"REVOKE ALL ON {table} FROM {r}")
    op.execute("DROP FUNCTION app_org()")
    op.execute("DROP FUNCTION app_patient()")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {r}")
