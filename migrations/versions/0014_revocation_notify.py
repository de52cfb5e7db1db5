"""Revocations announced on the ``revocation`` channel (LISTEN/NOTIFY)

Each service process keeps in memory the tokens it found not revoked (``service.auth.revocations``) and forgets
them all when this channel speaks. Every change that can turn an accepted token into a refused one notifies, from
the database itself, whoever makes it (the service, the CLI, an operator's SQL):

- a row in ``revoked_tokens`` (RFC 7009 revocation of one access token);
- ``apps.disabled_at`` changed (an app disabled), or an app deleted;
- ``app_grants.revoked_at`` changed (a grant, i.e. a refresh family, revoked) or a grant deleted (a purged client);
- ``app_links.revoked_at`` changed (a link revoked, with every grant redeemed through it) or a link deleted.

Nothing else changes what ``token_revoked()`` answers for a token that is not revoked. The notification is sent
at COMMIT, to every listening session, in commit order.

Revision ID: 0014
Revises: 0013
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column whose change revokes, or None: inserts revoke)
WATCHED = [("revoked_tokens", None), ("apps", "disabled_at"), ("app_grants", "revoked_at"),
           ("app_links", "revoked_at")]


def upgrade() -> None:
    op.execute("""
CREATE FUNCTION notify_revocation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('revocation', TG_TABLE_NAME);
  RETURN NULL;
END $$;
""")
    for table, column in WATCHED:
        if column is None:
            op.execute(f"CREATE TRIGGER {table}_notify_revocation AFTER INSERT ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION notify_revocation()")
            continue
        op.execute(f"CREATE TRIGGER {table}_notify_revocation AFTER UPDATE OF {column} ON {table} FOR EACH ROW "
                   f"WHEN (OLD.{column} IS DISTINCT FROM NEW.{column}) EXECUTE FUNCTION notify_revocation()")
        op.execute(f"CREATE TRIGGER {table}_notify_revocation_delete AFTER DELETE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION notify_revocation()")


def downgrade() -> None:
    for table, column in WATCHED:
        op.execute(f"DROP TRIGGER {table}_notify_revocation ON {table}")
        if column is not None:
            op.execute(f"DROP TRIGGER {table}_notify_revocation_delete ON {table}")
    op.execute("DROP FUNCTION notify_revocation()")
