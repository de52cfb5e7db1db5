"""`strengths-api worker`: the background loops alone (webhook dispatcher, Bulk Data export runner), with a
heartbeat each loop updates and a small health server that Kubernetes probes.

Each loop beats after every iteration (a claim that found nothing included) and after every export step, so
a loop that stops iterating (the event loop blocked, a coroutine waiting forever) is noticed by its silence:
``/healthz`` answers 503 once any loop has been silent for WORKER_STUCK_SECONDS (the liveness probe restarts
the pod), and ``/readyz`` answers 503 also while a loop's last iteration failed (the database unreachable).
The health server runs in a thread of its own: it answers even when the event loop is stuck, and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from service.settings import Settings

LOOPS = ("webhooks", "bulk_export")


class Heartbeat:
    """When each loop last completed an iteration, and whether that iteration succeeded."""

    def __init__(self, names: tuple[str, ...] = LOOPS, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        now = clock()
        self._last = dict.fromkeys(names, now)
        self._ok = dict.fromkeys(names, True)
        self._lock = threading.Lock()

    def beat(self, name: str, ok: bool = True) -> None:
        with self._lock:
            self._last[name] = self.clock()
            self._ok[name] = ok

    def beater(self, name: str) -> Callable[[bool], None]:
        return lambda ok: self.beat(name, ok)

    def report(self, stuck_after: float) -> tuple[bool, bool, dict[str, Any]]:
        """(alive, ready, per-loop detail): alive while every loop beat within ``stuck_after`` seconds; ready
        while alive and every loop's last iteration succeeded."""
        now = self.clock()
        with self._lock:
            loops = {name: {"seconds_since_beat": round(now - last, 1), "last_ok": self._ok[name]}
                     for name, last in self._last.items()}
        alive = all(v["seconds_since_beat"] <= stuck_after for v in loops.values())
        return alive, alive and all(v["last_ok"] for v in loops.values()), loops


def health_server(heartbeat: Heartbeat, host: str, port: int, stuck_after: float) -> ThreadingHTTPServer:
    """``/healthz`` and ``/readyz`` from the heartbeat, served by a daemon thread (stdlib http.server)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            alive, ready, loops = heartbeat.report(stuck_after)
            if self.path == "/healthz":
                ok, word = alive, "ok" if alive else "stuck"
            elif self.path == "/readyz":
                ok, word = ready, "ready" if ready else "not_ready"
            else:
                self.send_error(404)
                return
            body = orjson.dumps({"status": word, "loops": loops})
            self.send_response(200 if ok else 503)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="worker-health", daemon=True).start()
    return server


async def run_worker(settings: Settings) -> None:
    """The dispatcher and the export runner, as the service role, until SIGTERM (or cancelled), then a clean stop.

    SIGTERM reaches the loops as a cancellation at their next ``await`` (a running export keeps its cursor), not as
    an exception raised wherever the main thread happens to be (inside a lock, a greenlet, asyncpg's protocol or
    asyncio's own cleanup), which could leave the shutdown stuck or half done. Only the first one counts: later
    ones, which a supervisor or a test may send while the worker stops, are ignored, so that nothing interrupts
    the cleanup, and none is left to the default action (killing the process) once the event loop has closed."""
    from service.db import make_engine
    from service.fhir.export_runner import ExportRunner
    from service.webhooks.dispatcher import Dispatcher

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def stop(signum: int, frame: Any) -> None:
        # ignored from now on, by the process itself: the event loop's own handlers (``add_signal_handler``) go
        # back to the default action when removed or when the loop closes, and a SIGTERM then would kill it
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        loop.call_soon_threadsafe(stopping.set)

    previous = signal.signal(signal.SIGTERM, stop)
    engine = make_engine(settings.database_url or "", settings,
                         set_role=settings.app_role if not settings.migration_database_url else None)
    heartbeat = Heartbeat()
    server = health_server(heartbeat, settings.host, settings.worker_health_port, settings.worker_stuck_seconds) \
        if settings.worker_health_port else None
    dispatcher = Dispatcher(engine, settings, beat=heartbeat.beater("webhooks"))
    runner = ExportRunner(engine, settings, beat=heartbeat.beater("bulk_export"))
    tasks = [asyncio.create_task(dispatcher.run_forever()), asyncio.create_task(runner.run_forever())]
    stopped = asyncio.create_task(stopping.wait())
    try:
        # the loops run until stopped; one that ends has failed, and its error ends the worker
        await asyncio.wait([*tasks, stopped], return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                task.result()
    finally:
        if signal.getsignal(signal.SIGTERM) is stop:  # no SIGTERM yet (a loop failed): as without this handler
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        stopped.cancel()
        for task in tasks:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            server.shutdown()
            server.server_close()
        await dispatcher.aclose()
        await engine.dispose()
