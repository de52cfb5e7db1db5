"""The `strengths-api` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from service.settings import Settings

# uvicorn's bound on finishing in-flight requests after SIGTERM; Kubernetes' terminationGracePeriodSeconds
# (deploy/k8s) is set above it so the pod is never killed mid-drain.
GRACEFUL_SHUTDOWN_SECONDS = 25

def _owner_settings() -> Settings:
    from service.ops.lifecycle import prepare_database

    return prepare_database(Settings())


def _with_owner(fn: Callable[[AsyncConnection], Awaitable[Any]]) -> Any:
    """Operator commands act as the owner role (they are not tenant requests)."""
    return asyncio.run(_owner_run(_owner_settings(), fn))


async def _owner_run(settings: Settings, fn: Callable[[AsyncConnection], Awaitable[Any]]) -> Any:
    from service.db import make_engine

    engine = make_engine(settings.migration_database_url or settings.database_url or "", settings, pool=False)
    try:
        async with engine.begin() as conn:
            return await fn(conn)
    finally:
        await engine.dispose()


def _print(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=str, indent=2) + "\n")


def cmd_serve(args: argparse.Namespace) -> None:
    from service.ops.lifecycle import exit_cleanly_on_sigterm, export_env, prepare_database, stop_embedded

    exit_cleanly_on_sigterm()
    settings = Settings()
    host = args.host or settings.host
    port = args.port or settings.port
    server = args.server or settings.server
    try:
        # The embedded server (if any) starts here, once, before any worker process exists.
        prepared = prepare_database(settings.model_copy(update={"host": host, "port": port}),
                                    run_migrations=settings.migrate_on_start)
        export_env(prepared)
        if server == "granian":
            _serve_granian(host, port, args.workers)
        else:
            _serve_uvicorn(prepared, host, port, args.workers)
    finally:
        stop_embedded()


def _serve_uvicorn(prepared: Settings, host: str, port: int, workers: int) -> None:
    import uvicorn

    from service.api.joined_writes import JoinedWritesProtocol

    # One set of options whatever the worker count (uvicorn's defaults otherwise: X-Forwarded-For is trusted
    # from FORWARDED_ALLOW_IPS, 127.0.0.1 unless set, so the audit's remote address means the same thing).
    options: dict[str, Any] = {"host": host, "port": port, "log_level": "warning", "access_log": False,
                               "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
                               "http": JoinedWritesProtocol}
    if workers > 1:
        uvicorn.run("service.asgi:app", workers=workers, **options)
        return
    from service.app import served_app

    uvicorn.run(served_app(prepared), **options)


def _serve_granian(host: str, port: int, workers: int) -> None:
    """Granian's supervisor (this process) holds the socket; its worker processes (always at least one) import
    `service.asgi:app` with the URLs `export_env` left in the environment. On SIGTERM it closes the socket,
    each worker drains its connections and runs the lifespan shutdown; a worker still busy after the grace
    period is killed."""
    from granian.constants import Interfaces, Loops
    from granian.log import LogLevels
    from granian.server import Server

    Server("service.asgi:app", address=host, port=port, interface=Interfaces.ASGI, workers=workers,
           loop=Loops.auto, log_level=LogLevels.warning, log_access=False,
           workers_kill_timeout=GRACEFUL_SHUTDOWN_SECONDS).serve()


def cmd_worker(args: argparse.Namespace) -> None:
    from service.ops.lifecycle import exit_cleanly_on_sigterm, prepare_database
    from service.worker import run_worker

    exit_cleanly_on_sigterm()  # while it starts; once running, SIGTERM stops the loops cleanly (``run_worker``)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_worker(prepare_database(Settings())))


def cmd_migrate(args: argparse.Namespace) -> None:
    from service.ops.lifecycle import prepare_database

    prepare_database(Settings())
    _print({"migrated": "head"})


def cmd_orgs_create(args: argparse.Namespace) -> None:
    from service.auth.apps import create_org

    _print(_with_owner(lambda conn: create_org(conn, args.name)))


def cmd_apps_create(args: argparse.Namespace) -> None:
    from service.auth.apps import create_app_record

    jwks = json.loads(Path(args.jwks_file).read_text()) if args.jwks_file else None

    async def run(conn: AsyncConnection) -> Any:
        return await create_app_record(
            conn, org_id=UUID(args.org), name=args.name, scopes=args.scopes,
            patient_id=UUID(args.patient) if args.patient else None, jwks=jwks, jwks_url=args.jwks_url,
            jwks_allow_private=Settings().jwks_allow_private_targets,
            public=args.public, redirect_uris=args.redirect_uri or [],
        )

    try:
        _print(_with_owner(run))
    except ValueError as exc:
        sys.exit(f"error: {exc}")


def cmd_keys_rotate(args: argparse.Namespace) -> None:
    from sqlalchemy import text

    from service.auth.keycrypt import AtRest
    from service.auth.tokens import insert_key

    settings = _owner_settings()
    cipher = AtRest.from_settings(settings).signing_keys

    async def run(conn: AsyncConnection) -> Any:
        await conn.execute(text("UPDATE signing_keys SET active = false, retired_at = now() WHERE active"))
        return {"kid": await insert_key(conn, cipher)}

    _print(asyncio.run(_owner_run(settings, run)))


def cmd_keys_reencrypt(args: argparse.Namespace) -> None:
    from service.auth.keycrypt import AtRest
    from service.auth.tokens import reencrypt_keys

    settings = _owner_settings()
    cipher = AtRest.from_settings(settings).signing_keys
    _print(asyncio.run(_owner_run(settings, lambda conn: reencrypt_keys(conn, cipher))))


def cmd_keys_new_encryption_key(args: argparse.Namespace) -> None:
    from service.auth.keycrypt import new_key

    sys.stdout.write(new_key() + "\n")


def cmd_openapi(args: argparse.Namespace) -> None:
    from service.app import create_app

    app = create_app(Settings(database_url="postgresql+asyncpg://unused@localhost/unused"))
    sys.stdout.write(json.dumps(app.openapi(), indent=2, sort_keys=False) + "\n")


def cmd_graphql_schema(args: argparse.Namespace) -> None:
    from service.graphql import schema_sdl

    sys.stdout.write(schema_sdl())


def cmd_demo(args: argparse.Namespace) -> None:
    from service.ops.demo import load_demo

    _print(_with_owner(lambda conn: load_demo(conn, org_name=args.org_name)))


def cmd_purge_client(args: argparse.Namespace) -> None:
    import getpass

    from service.ops.purge import NoSuchClient, purge_client

    by = args.by or getpass.getuser()
    try:
        _print(_with_owner(lambda conn: purge_client(conn, UUID(args.client_id), by)))
    except (NoSuchClient, ValueError) as exc:
        sys.exit(f"error: {exc}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="strengths-api", description="Strengths & Goals API")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="serve the API (embedded PostgreSQL unless DATABASE_URL is set)")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--server", choices=["uvicorn", "granian"], help="HTTP server (default: the SERVER setting)")
    s.set_defaults(fn=cmd_serve)

    sub.add_parser("migrate", help="apply the migrations").set_defaults(fn=cmd_migrate)

    sub.add_parser("worker", help="run the background loops alone: webhooks, Bulk Data exports") \
        .set_defaults(fn=cmd_worker)

    orgs = sub.add_parser("orgs", help="organizations").add_subparsers(dest="orgs_command", required=True)
    oc = orgs.add_parser("create", help="create an organization; prints it as JSON")
    oc.add_argument("name")
    oc.set_defaults(fn=cmd_orgs_create)

    apps = sub.add_parser("apps", help="apps (OAuth clients)").add_subparsers(dest="apps_command", required=True)
    ac = apps.add_parser("create", help="register an app; prints its credentials once, as JSON")
    ac.add_argument("--org", required=True)
    ac.add_argument("--name", required=True)
    ac.add_argument("--scopes", required=True, help='e.g. "system/*.cruds" or "patient/Measurement.cr"')
    ac.add_argument("--patient", help="bind the app to one client (patient-context tokens)")
    ac.add_argument("--public", action="store_true",
                    help="a patient's own app: no secret; linked to clients with app links, authorization code + PKCE")
    ac.add_argument("--redirect-uri", action="append", metavar="URI",
                    help="a public app's redirect URI, matched exactly (repeat for several)")
    group = ac.add_mutually_exclusive_group()
    group.add_argument("--jwks-url")
    group.add_argument("--jwks-file")
    ac.set_defaults(fn=cmd_apps_create)

    keys = sub.add_parser("keys", help="token signing keys").add_subparsers(dest="keys_command", required=True)
    keys.add_parser("rotate", help="start signing with a new key; the old one verifies until tokens expire") \
        .set_defaults(fn=cmd_keys_rotate)
    keys.add_parser("reencrypt", help="re-encrypt the signing keys with the first SIGNING_KEY_ENCRYPTION_KEY") \
        .set_defaults(fn=cmd_keys_reencrypt)
    keys.add_parser("new-encryption-key", help="print a new key for SIGNING_KEY_ENCRYPTION_KEY (Fernet)") \
        .set_defaults(fn=cmd_keys_new_encryption_key)

    sub.add_parser("openapi", help="print the OpenAPI document").set_defaults(fn=cmd_openapi)

    sub.add_parser("graphql-schema", help="print the GraphQL schema (SDL)").set_defaults(fn=cmd_graphql_schema)

    d = sub.add_parser("demo", help="load a realistic demo caseload")
    d.add_argument("--org-name", default="Riverside Counselling (demo)")
    d.set_defaults(fn=cmd_demo)

    pc = sub.add_parser("purge-client", help="erase a client (right to be forgotten): records, history, "
                        "external ids and idempotent replies; leaves deleted changes and an audit event")
    pc.add_argument("client_id")
    pc.add_argument("--by", help="who asked for the purge (default: the OS user)")
    pc.set_defaults(fn=cmd_purge_client)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
