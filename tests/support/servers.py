"""The service as a real server on a loopback port, for the tests that need sockets or processes: in a thread of
this process (``serve_app``), or as the installed ``strengths-api`` command in a process of its own (``serve``,
``spawn``)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from tests.support.harness import Database

BIN = Path(sys.executable).parent / "strengths-api"
CLEAN_ENV = {k: v for k, v in os.environ.items()
             if k not in {"DATABASE_URL", "MIGRATION_DATABASE_URL", "DATABASE_READ_URL", "DATA_DIR", "PORT", "HOST"}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_app(app: Any, port: int, **options: Any) -> Iterator[str]:
    """uvicorn on a free loopback port, in a thread with its own event loop; ``options``: more of uvicorn's
    ``Config`` (``http=`` a protocol class, ``lifespan="off"``)."""
    server = uvicorn.Server(uvicorn.Config(app, **{"host": "127.0.0.1", "port": port, "log_level": "warning",
                                                   "lifespan": "on", **options}))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            threading.Event().wait(0.05)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def serve(port: int, cwd: Path, *args: str, **env: str) -> subprocess.Popen[bytes]:
    """The server's output goes to a file: an unread pipe would fill up with its JSON logs and block it."""
    log = cwd / f"serve-{port}.log"
    proc = subprocess.Popen([str(BIN), "serve", "--host", "127.0.0.1", "--port", str(port), *args], cwd=cwd,
                            env={**CLEAN_ENV, **env}, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    proc.log_path = log  # type: ignore[attr-defined]
    return proc


def output(proc: subprocess.Popen[bytes]) -> str:
    """The end of what a process started by ``serve`` wrote (nothing for one started by ``spawn``)."""
    log: Path | None = getattr(proc, "log_path", None)
    return log.read_text(errors="replace")[-3000:] if log else ""


async def wait_ready(proc: subprocess.Popen[bytes], base: str, within: float) -> None:
    """Until ``base``'s ``/readyz`` answers 200: the API's (``serve``) or the worker's health server (``spawn``)."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=base) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"{proc.args} exited early ({proc.returncode}): {output(proc)}")
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    proc.kill()
    raise AssertionError(f"{proc.args} did not become ready within {within} s")


def env_for(db: Database, port: int | None = None) -> dict[str, str]:
    """The environment of a command on ``db`` whose webhook dispatcher retries and gives up quickly."""
    return {
        **os.environ, "DATABASE_URL": db.app_url, "MIGRATION_DATABASE_URL": db.owner_url,
        "WEBHOOKS_ALLOW_PRIVATE_TARGETS": "1", "WEBHOOKS_POLL_SECONDS": "0.1", "WEBHOOKS_RETRY_BASE_SECONDS": "0.2",
        "WEBHOOKS_RETRY_MAX_DELAY_SECONDS": "1", "WEBHOOKS_TIMEOUT_SECONDS": "2", "WEBHOOKS_LEASE_SECONDS": "3",
        **({"PORT": str(port)} if port else {}),
    }


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`strengths-api ARGS` in a process of its own, its output discarded."""
    return subprocess.Popen([str(BIN), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a graceful stop), then SIGKILL after 15 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
