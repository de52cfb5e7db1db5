"""What each ASGI layer around a fast read costs the service's CPU per request, in process (issue 25).

`.venv/bin/python -m bench.layers [--requests 10000] [--repeats 5]`. No database and no socket: the app that
``create_app`` builds, its innermost layer (``ReadFastPath``, which serves ``GET /v1/<collection>/<id>``) replaced by
one that answers at once with a fixed JSON body, is called directly with W1's request shape, on uvloop. Each variant
leaves one layer out (``none``: every layer of ours out, FastAPI's and Starlette's own remain); a layer's cost is the
whole stack's time less the time without it, medians of ``repeats`` interleaved runs. The access log is on (the
service's default level) and written to a discarded stream.

What it leaves out is the rest of a request: uvicorn's parsing and writing, the token, the statement and the response
(W1's service CPU per read in ``bench.run`` is the sum). Prints microseconds per request per variant.

``--read [--clients 2000] [--reads 20000] [--concurrency 16] [--data-dir .data/bench]`` prices the whole read
instead: the app a server serves (``served_app``, every layer, the real ``ReadFastPath``) on the bench's database
(seeded as ``bench.run`` seeds it), with a token from its own ``POST /oauth/token``, sends W1's request for a random
client from ``concurrency`` tasks on one event loop, as uvicorn would hand them over, with no socket and no load
generator on the machine, then ``GET /healthz`` as often (no token, no database). Prints the process's CPU per request
of each (medians of ``repeats``): what ``bench.run``'s W1 and its ``GET /healthz`` cost the service less uvicorn's
share, steadier than a run under wrk on a shared machine, so a change on the read's path can be priced by running it
before and after. ``py-spy record -- python -m bench.layers --read`` shows where.

``--list`` does the same for a list page, ``GET /v1/clients?limit=50&cursor=...`` (the page after a random client: what
an EHR's sync reads), with its own token (``system/Client.s``); no workload of ``bench.run`` sends it.

``--write [--batches 1000]`` does the same for W3: ``POST /v1/measurements/batch`` of 100 new measurements (the
batches ``bench.run`` sends, fresh external ids each) into W3's own seeded caseload, from ``concurrency`` tasks; the
first batch's results must all be ``created`` (a batch whose items failed would cost less). Its CPU per batch is what
``bench.run``'s W3 costs the service less uvicorn's share.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import uvloop
from starlette.middleware import Middleware

from bench.env import QUOTAS, Database, cli
from bench.seed import ensure_seed, frequency_markers
from bench.workloads import WORKLOADS, Context
from service.app import create_app, served_app
from service.collections.fastread import ReadFastPath
from service.collections.repository import encode_cursor
from service.settings import Settings
from service.telemetry.logs import configure_logging

PATH = "/v1/clients/0190f1f0-0000-7000-8000-000000000000"
BODY = b'{"id":"0190f1f0-0000-7000-8000-000000000000","display_name":"A","strengths":[]}'


class Answer:
    """In ``ReadFastPath``'s place: a 200 with W1's response headers, at once."""

    def __init__(self, app: Any, **_: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode()),
            (b"etag", b'W/"1"'), (b"cache-control", b"private, no-cache")]})
        await send({"type": "http.response.body", "body": BODY})


def _app() -> Any:
    return create_app(Settings(database_url="postgresql+asyncpg://unused@localhost/unused"))


def ours() -> dict[str, type]:
    """Every layer ``create_app`` adds around the fast read (the app's own list, so a new one is priced too), by
    class name."""
    return {m.cls.__name__: m.cls for m in _app().user_middleware if m.cls is not ReadFastPath}


def app_without(left_out: tuple[type, ...]) -> Any:
    app = _app()
    app.user_middleware = [Middleware(Answer) if m.cls is ReadFastPath else m
                           for m in app.user_middleware if m.cls not in left_out]
    return app


def scope() -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": "GET", "path": PATH, "raw_path": PATH.encode(), "query_string": b"", "root_path": "",
            "headers": [(b"host", b"127.0.0.1:8000"), (b"authorization", b"Bearer x"), (b"user-agent", b"wrk")],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "scheme": "http", "state": {}}


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: dict[str, Any]) -> None:
    return None


async def _per_request(app: Any, requests: int) -> float:
    """Microseconds per request of ``requests`` calls of ``app``."""
    start = time.perf_counter()
    for _ in range(requests):
        await app(scope(), _receive, _send)
    return (time.perf_counter() - start) / requests * 1e6


async def measure(requests: int, repeats: int) -> dict[str, float]:
    """Medians, in microseconds per request: ``all``, ``none`` and each of ``ours()`` left out."""
    layers = ours()
    variants = {"all": app_without(()), "none": app_without(tuple(layers.values())),
                **{f"without {name}": app_without((cls,)) for name, cls in layers.items()}}
    for app in variants.values():
        await _per_request(app, max(requests // 5, 1))  # warm-up: the middleware stack is built at the first call
    runs: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, app in variants.items():
            runs[name].append(await _per_request(app, requests))
    return {name: statistics.median(values) for name, values in runs.items()}


def report(medians: dict[str, float]) -> str:
    whole = medians["all"]
    lines = ["| variant | µs per request | the layer's cost (µs) |", "|---|---:|---:|",
             f"| every layer | {whole:.1f} | |", f"| none of ours | {medians['none']:.1f} | "
                                                   f"{whole - medians['none']:.1f} (all of ours) |"]
    for variant, without in medians.items():
        if variant.startswith("without "):
            lines.append(f"| {variant} | {without:.1f} | {whole - without:.1f} |")
    return "\n".join(lines)


async def in_process(args: argparse.Namespace, access_lines: Any) -> list[dict[str, tuple[float, float]]]:
    """``--read`` and ``--write``: per repeat, for the workload's request and for ``GET /healthz`` (no token, no
    database: what the app costs any request), the process's CPU milliseconds per request and the requests per
    second; the access lines written to ``access_lines``."""
    db = Database.start(Path(args.data_dir))
    workload = WORKLOADS["W3" if args.write else "W1"]
    seed = await ensure_seed(db.owner_dsn, args.clients, purpose="W3" if args.write else "")
    scopes = "system/Client.s" if args.list else workload.scopes
    creds = json.loads(cli(db.data_dir, "apps", "create", "--org", str(seed.org_id), "--name", "bench-layers",
                           "--scopes", scopes))
    app = served_app(db.settings.model_copy(update=QUOTAS))  # as bench.run serves the service
    configure_logging("info", stream=access_lines)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://127.0.0.1:8000") as http:
            answer = await http.post("/oauth/token", data={"grant_type": "client_credentials"},
                                     auth=(creds["client_id"], creds["client_secret"]))
            answer.raise_for_status()
        authorization = f"Bearer {answer.json()['access_token']}".encode()

        async def call(method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]],
                       body: bytes = b"", answer: list[bytes] | None = None) -> None:
            status: list[int] = []

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    status.append(message["status"])
                elif answer is not None:
                    answer.append(message.get("body", b""))

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": body, "more_body": False}

            await app({**scope(), "method": method, "path": path, "raw_path": path.encode(), "query_string": query,
                       "headers": [(b"host", b"127.0.0.1:8000"), *headers, (b"user-agent", b"wrk")]}, receive, send)
            if status != [200]:
                raise RuntimeError(f"{method} {path}?{query.decode()} answered {status}")

        async def w1() -> None:
            await call("GET", f"/v1/clients/{random.choice(seed.client_ids)}", b"include=strengths",
                       [(b"authorization", authorization)])

        async def page() -> None:
            cursor = encode_cursor(random.choice(seed.client_ids))
            await call("GET", "/v1/clients", f"limit=50&cursor={cursor}".encode(), [(b"authorization", authorization)])

        # W3's batches as bench.run sends them (each with fresh external ids), made as they are used
        ctx = Context(base_url="", token="", org_id=seed.org_id, client_ids=seed.client_ids,
                      markers=await frequency_markers(db.owner_dsn, seed.org_id) if args.write else {})
        batches: list[bytes] = []

        async def w3(answer: list[bytes] | None = None) -> None:
            if not batches:
                batches.extend(v.request.body or b"" for v in reversed(workload.variants(ctx)))
            await call("POST", "/v1/measurements/batch", b"", [
                (b"authorization", authorization), (b"content-type", b"application/json")], batches.pop(), answer)

        if args.write:  # a batch whose items failed would cost less: every item of one must be created
            first: list[bytes] = []
            await w3(first)
            results = json.loads(b"".join(first))["results"]
            if [r["status"] for r in results] != ["created"] * len(results):
                raise RuntimeError(f"W3's batch was not created whole: {results[:3]}")

        async def healthz() -> None:
            await call("GET", "/healthz", b"", [])

        async def run(request: Any, count: int) -> tuple[float, float]:
            async def loop() -> None:
                for _ in range(count // args.concurrency):
                    await request()

            cpu, wall = time.process_time(), time.perf_counter()
            await asyncio.gather(*(loop() for _ in range(args.concurrency)))
            done = count // args.concurrency * args.concurrency
            return (time.process_time() - cpu) / done * 1e3, done / (time.perf_counter() - wall)

        measured, count = (w3, args.batches) if args.write else (page if args.list else w1, args.reads)
        for request in (measured, healthz):  # warm-up: connections, prepared statements, caches
            await run(request, warm_up(count, args.concurrency))
        return [{"request": await run(measured, count), "healthz": await run(healthz, args.reads)}
                for _ in range(args.repeats)]


def warm_up(count: int, concurrency: int) -> int:
    """How many of the measured request and of ``GET /healthz`` ``in_process`` sends before it measures ``count``
    of the request (``bench.instructions`` keeps it the same in the runs it compares)."""
    return max(count // 10, concurrency)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--read", action="store_true", help="the whole read on the bench's database (above)")
    parser.add_argument("--write", action="store_true", help="W3's whole batch on the bench's database (above)")
    parser.add_argument("--list", action="store_true", help="a list page of 50 clients on the bench's database")
    parser.add_argument("--reads", type=int, default=20000, help="--read, --list: requests per repeat")
    parser.add_argument("--batches", type=int, default=1000, help="--write: batches per repeat")
    parser.add_argument("--clients", type=int, default=2000, help="--read, --list, --write: the seeded caseload's size")
    parser.add_argument("--concurrency", type=int, default=16, help="--read, --list, --write: requests in flight")
    parser.add_argument("--data-dir", default=".data/bench", help="--read, --list, --write: the bench database")
    args = parser.parse_args(argv)
    if args.read or args.write or args.list:
        with open(os.devnull, "w") as discarded:
            try:
                runs = uvloop.run(in_process(args, discarded))
            finally:
                configure_logging("info", stream=sys.stderr)  # before it closes: the embedded server logs at exit
        what, whats, count = ("batch", "batches", args.batches) if args.write else \
            ("page", "pages", args.reads) if args.list else ("read", "reads", args.reads)
        for run in runs:
            (cpu_ms, rate), (healthz_ms, healthz_rate) = run["request"], run["healthz"]
            print(f"whole {what} in process: {cpu_ms:.3f} ms of CPU per {what}, {rate:.0f} {whats}/s; "
                  f"GET /healthz {healthz_ms:.3f} ms, {healthz_rate:.0f}/s")
        print(f"median: {statistics.median(run['request'][0] for run in runs):.3f} ms of CPU per {what}, GET /healthz "
              f"{statistics.median(run['healthz'][0] for run in runs):.3f} ({len(runs)} repeats of {count} "
              f"{whats} and {args.reads} GET /healthz each, concurrency {args.concurrency})")
        return
    configure_logging("info", stream=io.StringIO())
    print(report(uvloop.run(measure(args.requests, args.repeats))))


if __name__ == "__main__":
    main()
