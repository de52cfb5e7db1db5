"""Test harness: one embedded PostgreSQL, one migrated template database per xdist worker, and a cheap
clone of it for every test; apps are built by the real factory and driven over HTTP (ASGI)."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from service.settings import PROJECT_ROOT
from tests.harness import Api, Database, TestServer

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
# The token signing keys are stored encrypted (service.auth.keycrypt): the apps these tests build, and the
# servers and commands they start, share one key per test process.
os.environ.setdefault("SIGNING_KEY_ENCRYPTION_KEY", Fernet.generate_key().decode())
_counter = itertools.count()


@pytest.fixture(scope="session")
def server() -> TestServer:
    data_dir = Path(os.environ.get("TEST_DATA_DIR", PROJECT_ROOT / ".data" / "test"))
    srv = TestServer.start(data_dir)
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
