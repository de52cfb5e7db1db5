"""A Bulk Data client as the IG asks one to behave (kick-off with Accept and Prefer, polling that honours
Retry-After, manifest checks, NDJSON downloads with the same token), and in-process export runners."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson

from service.db import make_engine
from service.fhir.export_runner import ExportRunner
from tests.support.fhir import FHIR, validate
from tests.support.harness import AuthedClient, Database

BASE = "http://testserver"  # PUBLIC_URL of the test apps
FAST = {"bulk_export_poll_seconds": 0.05, "bulk_export_retry_after_seconds": 1, "bulk_export_page_size": 7,
        "bulk_export_file_max_lines": 20, "bulk_export_lease_seconds": 30}
KICK_OFF = {"Accept": "application/fhir+json", "Prefer": "respond-async"}


def local(url: str) -> str:
    assert url.startswith(BASE), url  # absolute, from PUBLIC_URL
    return url.removeprefix(BASE)


async def kick_off(c: AuthedClient, path: str = "/$export", **params: str) -> str:
    r = await c.get(f"{FHIR}{path}", params=params, headers=KICK_OFF)
    assert r.status_code == 202, r.text
    assert r.headers["content-location"].startswith(f"{BASE}{FHIR}/$export-status/")
    return r.headers["content-location"]


async def wait_for_manifest(c: AuthedClient, status_url: str, *, within: float = 60.0) -> dict[str, Any]:
    """Poll as a client does: 202 carries X-Progress and Retry-After (waited, capped for the test's pace)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while True:
        r = await c.get(local(status_url))
        if r.status_code == 200:
            assert r.headers["content-type"].startswith("application/json")
            assert r.headers["expires"]
            return r.json()  # type: ignore[no-any-return]
        assert r.status_code == 202, (r.status_code, r.text)
        assert r.headers["x-progress"]
        delay = int(r.headers["retry-after"])
        assert delay >= 1
        assert loop.time() < end, "the export did not finish"
        await asyncio.sleep(min(delay, 0.2))


def check_manifest(manifest: dict[str, Any], request: str) -> None:
    assert set(manifest) == {"transactionTime", "request", "requiresAccessToken", "output", "error"}
    assert manifest["request"] == request
    assert manifest["requiresAccessToken"] is True
    assert manifest["error"] == []
    for item in manifest["output"]:
        assert set(item) == {"type", "url", "count"}
        assert item["count"] > 0


async def download(c: AuthedClient, manifest: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Every file of the manifest, by type; each line is parsed and validated as an R4 resource of its type."""
    out: dict[str, list[dict[str, Any]]] = {}
    for item in manifest["output"]:
        r = await c.get(local(item["url"]), headers={"Accept": "application/fhir+ndjson"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/fhir+ndjson")
        lines = r.content.split(b"\n")
        assert lines[-1] == b""
        resources = [orjson.loads(line) for line in lines[:-1]]
        assert len(resources) == item["count"]
        for resource in resources:
            assert resource["resourceType"] == item["type"]
            validate(resource)
        out.setdefault(item["type"], []).extend(resources)
    return out


@contextlib.asynccontextmanager
async def runner(db: Database, runner_class: type[ExportRunner] = ExportRunner, **settings: Any
                 ) -> AsyncIterator[ExportRunner]:
    """An export runner (the worker's loop) running in this event loop, as `strengths-api worker` runs it."""
    engine = make_engine(db.app_url, db.settings(**{**FAST, **settings}))
    worker = runner_class(engine, db.settings(**{**FAST, **settings}))
    task = asyncio.create_task(worker.run_forever())
    try:
        yield worker
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await engine.dispose()
