"""Patient app linking, revocation of what a link granted, and signing keys encrypted at rest

- ``apps.public`` and ``apps.redirect_uris``: public apps (no secret; PKCE; exact redirect URIs).
- ``app_links`` (one-time link codes, stored as SHA-256), ``app_grants`` (one per redemption: the family
  its access and refresh tokens belong to), ``authorization_codes`` and ``refresh_tokens`` (hashed).
  All four are tenant tables under row-level security. The OAuth endpoints must find a link code,
  code or refresh token before they know the organization: ``oauth_secret_org()``, a definer function,
  answers the organization of the one secret whose hash it is given, and nothing else.
- ``token_revoked(jti, client_id, grant_id)`` replaces the two-argument form: the same one statement
  (``service.db.set_tenant``) now also refuses a token whose grant, or whose grant's link, is revoked, or
  whose grant no longer exists (a purged client's): it fails closed.
- ``signing_keys.private_jwk`` (plaintext JSON the service role could select) becomes ``encrypted_jwk``:
  the private JWK encrypted with SIGNING_KEY_ENCRYPTION_KEY (Fernet), which the database never sees.
  Existing rows are encrypted here when ``service.ops.migrate`` hands the keys in (``serve`` and
  ``migrate`` do, from the settings); without them they are deleted rather than left readable: that
  is a key rotation (the next start makes a new, encrypted key; tokens signed by a deleted key are
  refused and their apps fetch new ones, as after a compromise, which a plaintext key must be
  presumed to have suffered). Downgrading decrypts with the keys, or deletes likewise.

Revision ID: 0012
Revises: 0011
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from cryptography.fernet import Fernet, MultiFernet
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ["app_links", "app_grants", "authorization_codes", "refresh_tokens"]
PATIENT_SCOPED = ["app_links", "app_grants"]


def role() -> str:
    config = op.get_context().config
    return str(config.attributes.get("app_role", "strengths_app")) if config else "strengths_app"


def cipher() -> MultiFernet | None:
    config = op.get_context().config
    keys = list(config.attributes.get("signing_key_encryption_keys") or []) if config else []
    return MultiFernet([Fernet(k) for k in keys]) if keys else None


def _when(col: str, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(col, sa.DateTime(timezone=True), nullable=nullable)


def _created() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False)


def _fk(table: str, cols: list[str], target: str, target_cols: list[str]) -> sa.ForeignKeyConstraint:
    name = f"fk_{table}_{'_'.join(cols)}_{target}"
    return sa.ForeignKeyConstraint(cols, [f"{target}.{c}" for c in target_cols], name=name)


def _org(table: str) -> sa.ForeignKeyConstraint:
    return _fk(table, ["org_id"], "organizations", ["id"])


def _tables() -> None:
    op.create_table(
        "app_links",
        sa.Column("org_id", sa.Uuid(), nullable=False), sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False), sa.Column("app_id", sa.Text(), nullable=False),
        sa.Column("code_hash", sa.Text(), nullable=False), sa.Column("created_by", sa.Text(), nullable=False),
        _created(), _when("expires_at", False), _when("redeemed_at"), _when("revoked_at"),
        _fk("app_links", ["org_id", "client_id"], "clients", ["org_id", "id"]), _org("app_links"),
        sa.PrimaryKeyConstraint("org_id", "id", name="pk_app_links"),
    )
    op.create_index("ix_app_links_org_id_client_id", "app_links", ["org_id", "client_id"])
    op.create_index("uq_app_links_code_hash", "app_links", ["code_hash"], unique=True)
    op.create_table(
        "app_grants",
        sa.Column("org_id", sa.Uuid(), nullable=False), sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("link_id", sa.Uuid(), nullable=False), sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("app_id", sa.Text(), nullable=False), sa.Column("scope", sa.Text(), nullable=False),
        _created(), _when("expires_at", False), _when("revoked_at"), sa.Column("revoked_reason", sa.Text()),
        _fk("app_grants", ["org_id", "client_id"], "clients", ["org_id", "id"]),
        _fk("app_grants", ["org_id", "link_id"], "app_links", ["org_id", "id"]), _org("app_grants"),
        sa.PrimaryKeyConstraint("org_id", "id", name="pk_app_grants"),
    )
    op.create_index("uq_app_grants_id", "app_grants", ["id"], unique=True)
    op.create_table(
        "authorization_codes",
        sa.Column("org_id", sa.Uuid(), nullable=False), sa.Column("code_hash", sa.Text(), nullable=False),
        sa.Column("link_id", sa.Uuid(), nullable=False), sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("code_challenge", sa.Text(), nullable=False), sa.Column("scope", sa.Text(), nullable=False),
        _created(), _when("expires_at", False), _when("used_at"), sa.Column("grant_id", sa.Uuid()),
        _fk("authorization_codes", ["org_id", "grant_id"], "app_grants", ["org_id", "id"]),
        _fk("authorization_codes", ["org_id", "link_id"], "app_links", ["org_id", "id"]), _org("authorization_codes"),
        sa.PrimaryKeyConstraint("org_id", "code_hash", name="pk_authorization_codes"),
    )
    op.create_index("ix_authorization_codes_expires_at", "authorization_codes", ["expires_at"])
    op.create_index("uq_authorization_codes_code_hash", "authorization_codes", ["code_hash"], unique=True)
    op.create_table(
        "refresh_tokens",
        sa.Column("org_id", sa.Uuid(), nullable=False), sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("grant_id", sa.Uuid(), nullable=False), _created(), _when("rotated_at"),
        sa.Column("successor", sa.LargeBinary()),
        _fk("refresh_tokens", ["org_id", "grant_id"], "app_grants", ["org_id", "id"]), _org("refresh_tokens"),
        sa.PrimaryKeyConstraint("org_id", "token_hash", name="pk_refresh_tokens"),
    )
    op.create_index("ix_refresh_tokens_org_id_grant_id", "refresh_tokens", ["org_id", "grant_id"])
    op.create_index("uq_refresh_tokens_token_hash", "refresh_tokens", ["token_hash"], unique=True)


def _security(r: str) -> None:
    for table in TABLES:
        op.execute(f"GRANT SELECT, INSERT, UPDATE ON {table} TO {r}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} USING (org_id = app_org()) WITH CHECK (org_id = app_org())"
        )
    op.execute(f"GRANT DELETE ON authorization_codes, refresh_tokens TO {r}")
    for table in PATIENT_SCOPED:
        cond = "CASE WHEN app_patient() IS NULL THEN true ELSE client_id = app_patient() END"
        op.execute(f"CREATE POLICY patient_scope ON {table} AS RESTRICTIVE USING ({cond}) WITH CHECK ({cond})")
    op.execute("""
CREATE FUNCTION oauth_secret_org(p_hash text) RETURNS uuid
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$ SELECT org_id FROM app_links WHERE code_hash = p_hash
        UNION ALL SELECT org_id FROM authorization_codes WHERE code_hash = p_hash
        UNION ALL SELECT org_id FROM refresh_tokens WHERE token_hash = p_hash
        LIMIT 1 $$;
""")
    op.execute("DROP FUNCTION token_revoked(text, text)")
    op.execute("""
CREATE FUNCTION token_revoked(p_jti text, p_client_id text, p_grant text) RETURNS boolean
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$ SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = p_jti)
            OR EXISTS (SELECT 1 FROM apps WHERE client_id = p_client_id AND disabled_at IS NOT NULL)
            OR (p_grant <> '' AND NOT EXISTS (
                  SELECT 1 FROM app_grants g JOIN app_links l ON l.org_id = g.org_id AND l.id = g.link_id
                   WHERE g.id = CAST(NULLIF(p_grant, '') AS uuid) AND g.revoked_at IS NULL AND l.revoked_at IS NULL)) $$;
""")
    for fn in ("oauth_secret_org(text)", "token_revoked(text, text, text)"):
        op.execute(f"REVOKE ALL ON FUNCTION {fn} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {fn} TO {r}")


def _encrypt_signing_keys() -> None:
    op.add_column("signing_keys", sa.Column("encrypted_jwk", sa.Text(), nullable=True))
    keys = cipher()
    bind = op.get_bind()
    if keys is None:
        op.execute("DELETE FROM signing_keys")
    else:
        for kid, jwk in bind.execute(sa.text("SELECT kid, CAST(private_jwk AS text) FROM signing_keys")).all():
            sealed = keys.encrypt(json.dumps(json.loads(jwk)).encode()).decode()
            bind.execute(sa.text("UPDATE signing_keys SET encrypted_jwk = :e WHERE kid = :k"), {"e": sealed, "k": kid})
    op.drop_column("signing_keys", "private_jwk")
    op.alter_column("signing_keys", "encrypted_jwk", nullable=False)


def _decrypt_signing_keys() -> None:
    op.add_column("signing_keys", sa.Column("private_jwk", postgresql.JSONB(), nullable=True))
    keys = cipher()
    bind = op.get_bind()
    if keys is None:
        op.execute("DELETE FROM signing_keys")
    else:
        for kid, sealed in bind.execute(sa.text("SELECT kid, encrypted_jwk FROM signing_keys")).all():
            jwk = keys.decrypt(sealed.encode()).decode()
            bind.execute(sa.text("UPDATE signing_keys SET private_jwk = CAST(:j AS jsonb) WHERE kid = :k"),
                         {"j": jwk, "k": kid})
    op.drop_column("signing_keys", "encrypted_jwk")
    op.alter_column("signing_keys", "private_jwk", nullable=False)


def upgrade() -> None:
    op.add_column("apps", sa.Column("public", sa.Boolean(), server_default=sa.text("false"), nullable=False))
    op.add_column("apps", sa.Column("redirect_uris", postgresql.ARRAY(sa.Text()),
                                    server_default=sa.text("'{}'::text[]"), nullable=False))
    _tables()
    _security(role())
    _encrypt_signing_keys()


def downgrade() -> None:
    r = role()
    _decrypt_signing_keys()
    op.execute("DROP FUNCTION token_revoked(text, text, text)")
    op.execute("""
CREATE FUNCTION token_revoked(p_jti text, p_client_id text) RETURNS boolean
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
  AS $$ SELECT EXISTS (SELECT 1 FROM revoked_tokens WHERE jti = p_jti)
            OR EXISTS (SELECT 1 FROM apps WHERE client_id = p_client_id AND disabled_at IS NOT NULL) $$;
""")
    op.execute("REVOKE ALL ON FUNCTION token_revoked(text, text) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION token_revoked(text, text) TO {r}")
    op.execute("DROP FUNCTION oauth_secret_org(text)")
    for table in reversed(TABLES):
        op.drop_table(table)  # its indexes, policies and grants go with it
    op.drop_column("apps", "redirect_uris")
    op.drop_column("apps", "public")
