"""Running the Alembic migrations from code (CLI, app start-up, tests)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

__all__ = ["ScriptDirectory", "alembic_config", "downgrade", "head_revision", "upgrade"]

from service.settings import PROJECT_ROOT, Settings


def alembic_config(url: str, app_role: str = "strengths_app", encryption_keys: list[str] | None = None) -> Config:
    """``encryption_keys``: SIGNING_KEY_ENCRYPTION_KEY's keys, for migration 0012 to encrypt existing signing keys."""
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(Path(PROJECT_ROOT / "migrations")))
    cfg.attributes["url"] = url
    cfg.attributes["app_role"] = app_role
    cfg.attributes["signing_key_encryption_keys"] = list(encryption_keys or [])
    return cfg


def _in_thread(fn: Callable[[], None]) -> None:
    """Alembic's async env runs its own event loop, so it must not run on a thread that has one."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised on the calling thread
            errors.append(exc)

    thread = threading.Thread(target=run, name="alembic")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def upgrade(url: str, revision: str = "head", app_role: str = "strengths_app",
            encryption_keys: list[str] | None = None) -> None:
    _in_thread(lambda: command.upgrade(alembic_config(url, app_role, encryption_keys), revision))


def downgrade(url: str, revision: str, app_role: str = "strengths_app",
              encryption_keys: list[str] | None = None) -> None:
    _in_thread(lambda: command.downgrade(alembic_config(url, app_role, encryption_keys), revision))


def head_revision() -> str | None:
    script = ScriptDirectory.from_config(alembic_config("postgresql+asyncpg://unused/unused"))
    return script.get_current_head()


def owner_url_from_settings() -> str:
    settings = Settings()
    if settings.migration_database_url:
        return settings.migration_database_url
    if settings.database_url:
        return settings.database_url
    from service.ops.embedded import start_embedded

    _server, urls = start_embedded(settings.data_dir, settings.app_role)
    return urls.owner_url

