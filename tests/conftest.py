"""Test harness: one embedded PostgreSQL, one migrated template database per xdist worker, and a cheap
clone of it for every test; apps are built by the real factory and driven over HTTP (ASGI)."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.auth.keycrypt import KEY_FILE_NAME, ensure_key_file
from service.settings import PROJECT_ROOT
from tests.support.fastread import served  # noqa: F401 - a fixture of the tests of the direct read path
from tests.support.harness import ALL, Api, AuthedClient, Database, Org, TestServer

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
DATA_DIR = Path(os.environ.get("TEST_DATA_DIR", PROJECT_ROOT / ".data" / "test"))
# The token signing keys are stored encrypted (service.auth.keycrypt). The apps these tests build, and the
# servers and commands they start, use one key kept in the test data folder, as the embedded default keeps
# its own: the data folders some tests keep from one run to the next (.data/deploy-serve-*, .data/bench-smoke)
# hold keys encrypted with it.
os.environ.setdefault("SIGNING_KEY_ENCRYPTION_KEY_FILE", str(ensure_key_file(DATA_DIR / KEY_FILE_NAME)))
_counter = itertools.count()


@pytest.fixture(scope="session")
def server() -> TestServer:
    srv = TestServer.start(DATA_DIR)
    srv.make_template(f"tmpl_{WORKER}")
    return srv


@pytest.fixture
async def db(server: TestServer) -> AsyncIterator[Database]:
    name = f"t_{WORKER}_{os.getpid()}_{next(_counter)}"
    database = await server.clone(f"tmpl_{WORKER}", name)
    try:
        yield database
    finally:
        await server.drop(name)


@pytest.fixture
async def api(db: Database) -> AsyncIterator[Api]:
    async with Api.start(db) as client:
        yield client


@pytest.fixture
async def org(api: Api) -> Org:
    """An organization of its own for the test."""
    return await api.org("A")


@pytest.fixture
async def c(api: Api, org: Org) -> AuthedClient:
    """A client of ``org`` whose token holds every scope (``ALL``)."""
    return api.client(await api.token(org, ALL))
