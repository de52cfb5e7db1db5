"""Migration 0003 goes down and up again cleanly, and the models match the schema (`alembic check`)."""

from __future__ import annotations

from alembic import command

from service import migrate
from tests.support.harness import APP_ROLE


async def test_0003_stairway_and_alembic_check(db):
    migrate.downgrade(db.owner_url, "0002", app_role=APP_ROLE)
    assert await db.fetchval("SELECT to_regclass('public.revoked_tokens')") is None
    migrate.upgrade(db.owner_url, app_role=APP_ROLE)
    assert await db.fetchval("SELECT version_num FROM alembic_version") == migrate.head_revision()
    assert await db.fetchval("SELECT has_function_privilege($1, 'token_revoked(text, text, text)', 'EXECUTE')",
                             APP_ROLE)
    migrate._in_thread(lambda: command.check(migrate.alembic_config(db.owner_url, APP_ROLE)))
