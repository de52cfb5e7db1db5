"""The committed contracts match the code, and the migrations round-trip and match the models."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from service import migrate
from service.models import Base
from service.settings import PROJECT_ROOT


def test_openapi_document_is_committed_and_current(api):
    committed = json.loads((PROJECT_ROOT / "openapi" / "openapi.json").read_text())
    assert committed == api.app.openapi(), "run `make openapi` and commit openapi/openapi.json"
    assert committed["openapi"].startswith("3.1")


def test_openapi_command_prints_the_document():
    out = subprocess.run([sys.executable, "-m", "service.cli", "openapi"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["paths"]["/v1/clients"]


def test_every_4xx_is_documented_as_problem(api):
    for path, item in api.app.openapi()["paths"].items():
        if not path.startswith("/v1"):
            continue
        for method, op in item.items():
            codes = set(op["responses"])
            assert {"401", "403"} <= codes, (method, path)
            assert "422" in codes, (method, path)
            assert op["responses"]["401"]["content"]["application/problem+json"], (method, path)


async def test_migrations_stairway_and_models_match(server):
    name = "stairway_" + os.environ.get("PYTEST_XDIST_WORKER", "main")
    server.handle.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE);\nCREATE DATABASE {name} OWNER strengths_owner;")
    url = server.url(name, "strengths_owner")
    script = migrate.ScriptDirectory.from_config(migrate.alembic_config(url))
    revisions = [r.revision for r in reversed(list(script.walk_revisions()))]
    for i, rev in enumerate(revisions):  # up, down, up for each revision
        migrate.upgrade(url, rev)
        migrate.downgrade(url, revisions[i - 1] if i else "base")
        migrate.upgrade(url, rev)
    migrate.downgrade(url, "base")
    migrate.upgrade(url, "head")
    diffs = await _diff(url)
    assert diffs == [], diffs
    server.handle.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE);")


async def _diff(url: str) -> list:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata))
    finally:
        await engine.dispose()


async def test_health_and_readiness(api):
    assert (await api.http.get("/healthz")).json() == {"status": "ok"}
    ready = await api.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["migration"] == migrate.head_revision()


async def test_docs_are_served_without_a_cdn(api):
    page = await api.http.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower()
    assert (await api.http.get("/static/docs/swagger-ui-bundle.js")).status_code == 200
