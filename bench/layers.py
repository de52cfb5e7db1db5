"""What each ASGI layer around a fast read costs the service's CPU per request, in process (issue 25).

`.venv/bin/python -m bench.layers [--requests 10000] [--repeats 5]`. No database and no socket: the app that
``create_app`` builds, its innermost layer (``ReadFastPath``, which serves ``GET /v1/<collection>/<id>``) replaced by
one that answers at once with a fixed JSON body, is called directly with W1's request shape, on uvloop. Each variant
leaves one layer out (``none``: every layer of ours out, FastAPI's and Starlette's own remain); a layer's cost is the
whole stack's time less the time without it, medians of ``repeats`` interleaved runs. The access log is on (the
service's default level) and written to a discarded stream.

What it leaves out is the rest of a request: uvicorn's parsing and writing, the token, the statement and the response
(W1's service CPU per read in ``bench.run`` is the sum). Prints microseconds per request per variant.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from typing import Any

import uvloop
from starlette.middleware import Middleware

from service.app import create_app
from service.collections.fastread import ReadFastPath
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    configure_logging("info", stream=io.StringIO())
    print(report(uvloop.run(measure(args.requests, args.repeats))))


if __name__ == "__main__":
    main()
