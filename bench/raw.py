"""The raw twin: the captured statements replayed with raw asyncpg, at the same concurrency, in the same run.

Every statement is sent as the service sent it: simple-protocol statements (``BEGIN;``, ``COMMIT;``) with
``execute``, extended-protocol ones with ``fetch`` on asyncpg's prepared-statement cache (as SQLAlchemy's
asyncpg dialect does), with the captured parameter values; only the values that rotate (the client id)
are swapped for the ones of the request being replayed. The connection is the service role's, with the
service's connection settings, through a pool of the service's size (pool_size .. pool_size + max_overflow).
Rows are fetched and dropped: no HTTP, no ORM, no serialisation. That is the ceiling the ratio is taken to.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from bench.capture import Statement
from bench.loadgen import Result, percentile
from service.settings import Settings

Plan = list[tuple[str, tuple[Any, ...] | None]]  # (sql, args or None for a simple query)


def _array(text: str, conv: Any) -> list[Any]:
    inner = text.strip()[1:-1]
    if not inner:
        return []
    return [None if v == "NULL" else conv(v.strip('"')) for v in inner.split(",")]


_CONVERT: dict[str, Any] = {
    "uuid": UUID, "int2": int, "int4": int, "int8": int, "float4": float, "float8": float, "numeric": Decimal,
    "bool": lambda v: v.lower() in ("t", "true", "on", "1", "yes"),
    "date": date.fromisoformat, "timestamptz": datetime.fromisoformat, "timestamp": datetime.fromisoformat,
}


def convert(value: str | None, type_name: str) -> Any:
    """A logged parameter (text) as the Python value asyncpg encodes for the parameter's type."""
    if value is None:
        return None
    if type_name.startswith("_"):
        return _array(value, _CONVERT.get(type_name[1:], str))
    return _CONVERT.get(type_name, str)(value)


def server_settings(settings: Settings) -> dict[str, str]:
    """The service's connection settings (service/db.py make_engine)."""
    return {"application_name": "strengths-bench-raw", "statement_timeout": str(settings.statement_timeout_ms),
            "idle_in_transaction_session_timeout": "60000", "timezone": "UTC"}


async def build_plans(dsn: str, settings: Settings, statements: list[Statement],
                      variants: list[dict[str, str]]) -> list[Plan]:
    """One plan per request variant: the captured statements with the rotating values swapped in.

    ``variants[0]`` holds the values the captured request was sent with; ``variants[i]`` the ones to use
    instead (e.g. ``{"client_id": "..."}``).
    """
    conn = await asyncpg.connect(dsn, server_settings=server_settings(settings))
    try:
        types: list[list[str] | None] = []
        for st in statements:
            if st.extended:
                prepared = await conn.prepare(st.sql)
                types.append([t.name for t in prepared.get_parameters()])
            else:
                types.append(None)
    finally:
        await conn.close()
    captured = variants[0]
    plans: list[Plan] = []
    for variant in variants:
        swap = {captured[k]: variant[k] for k in captured}
        plan: Plan = []
        for st, tys in zip(statements, types, strict=True):
            if st.params is None or tys is None:
                plan.append((st.sql, None))
                continue
            args = tuple(convert(swap.get(v, v) if v is not None else None, t)
                         for v, t in zip(st.params, tys, strict=True))
            plan.append((st.sql, args))
        plans.append(plan)
    return plans


async def _mark_cpu(start: float, stop: float, cpu: list[float]) -> None:
    """This process's CPU time at the start and the end of the measured window."""
    await asyncio.sleep(max(0.0, start - time.perf_counter()))
    cpu.append(time.process_time())
    await asyncio.sleep(max(0.0, stop - time.perf_counter()))
    cpu.append(time.process_time())


async def _no_reset(conn: asyncpg.Connection) -> None:
    """No reset query on release: SQLAlchemy's pool sends none after a committed transaction either (asyncpg's
    default would add a round trip, RESET ALL and friends, to every request of the twin)."""


async def _run(dsn: str, settings: Settings, plans: list[Plan], concurrency: int, duration: float,
               warmup: float) -> Result:
    pool = await asyncpg.create_pool(
        dsn, min_size=min(settings.db_pool_size, concurrency),
        max_size=settings.db_pool_size + settings.db_max_overflow, server_settings=server_settings(settings),
        reset=_no_reset,
    )
    assert pool is not None
    latencies: list[float] = []
    errors: dict[str, int] = {}
    count = 0
    start = time.perf_counter() + warmup
    stop = start + duration

    async def worker() -> None:
        nonlocal count
        rng = random.Random()
        while time.perf_counter() < stop:
            plan = plans[rng.randrange(len(plans))]
            t0 = time.perf_counter()
            try:
                async with pool.acquire() as conn:
                    for sql, args in plan:
                        if args is None:
                            await conn.execute(sql)
                        else:
                            await conn.fetch(sql, *args)
            except (asyncpg.PostgresError, OSError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            t1 = time.perf_counter()
            if t0 >= start and t1 <= stop:
                count += 1
                latencies.append(t1 - t0)

    cpu: list[float] = []
    try:
        await asyncio.gather(_mark_cpu(start, stop, cpu), *(worker() for _ in range(concurrency)))
    finally:
        await pool.close()
    latencies.sort()
    return Result(rps=count / duration, p50_ms=percentile(latencies, 50) * 1000,
                  p99_ms=percentile(latencies, 99) * 1000, errors=sum(errors.values()), requests=count,
                  duration_s=duration, tool=f"asyncpg c{concurrency}", error_detail=errors,
                  cpu_s=cpu[1] - cpu[0])


def run_raw(dsn: str, settings: Settings, plans: list[Plan], *, concurrency: int, duration: float,
            warmup: float) -> Result:
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    return runner(_run(dsn, settings, plans, concurrency, duration, warmup))  # type: ignore[no-any-return]


def _raw_process(job: tuple[str, Settings, list[Plan], int, float, float]) -> Result:
    dsn, settings, plans, concurrency, duration, warmup = job
    return run_raw(dsn, settings, plans, concurrency=concurrency, duration=duration, warmup=warmup)


def run_raw_processes(dsn: str, settings: Settings, plans: list[Plan], *, processes: int, concurrency: int,
                      duration: float, warmup: float) -> Result:
    """The twin in ``processes`` processes (to set beside as many service workers), the concurrency split
    between them, each with its own pool of the service's (per-worker) size. rps and CPU add up; p50 is the
    median of the processes' p50s and p99 the worst of their p99s."""
    if processes <= 1:
        return run_raw(dsn, settings, plans, concurrency=concurrency, duration=duration, warmup=warmup)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    shares = [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]
    jobs = [(dsn, settings, plans, share, duration, warmup) for share in shares if share]
    with ProcessPoolExecutor(max_workers=len(jobs), mp_context=multiprocessing.get_context("fork")) as pool:
        parts = list(pool.map(_raw_process, jobs))
    p50s = sorted(r.p50_ms for r in parts)
    errors: dict[str, int] = {}
    for r in parts:
        for k, v in r.error_detail.items():
            errors[k] = errors.get(k, 0) + v
    return Result(rps=sum(r.rps for r in parts), p50_ms=p50s[len(p50s) // 2], p99_ms=max(r.p99_ms for r in parts),
                  errors=sum(r.errors for r in parts), requests=sum(r.requests for r in parts), duration_s=duration,
                  tool=f"asyncpg {len(parts)} processes c{concurrency}", error_detail=errors,
                  cpu_s=sum(r.cpu_s or 0.0 for r in parts))


# ---------------------------------------------------------------- the same statements through SQLAlchemy

async def _run_sqlalchemy(url: str, settings: Settings, plans: list[Plan], concurrency: int, duration: float,
                          warmup: float) -> Result:
    """The twin through the service's own engine (service.db.make_engine: same pool, same connect settings):
    ``engine.begin()`` sends BEGIN/COMMIT, ``exec_driver_sql`` the captured text and values. The gap between
    this and the raw twin is SQLAlchemy's adapter; the gap between this and HTTP is everything else."""
    from service.db import make_engine

    engine = make_engine(url, settings)
    plans_x = [[(sql, args) for sql, args in plan if args is not None] for plan in plans]
    latencies: list[float] = []
    count = 0
    errors: dict[str, int] = {}
    start = time.perf_counter() + warmup
    stop = start + duration

    async def worker() -> None:
        nonlocal count
        rng = random.Random()
        while time.perf_counter() < stop:
            plan = plans_x[rng.randrange(len(plans_x))]
            t0 = time.perf_counter()
            try:
                async with engine.begin() as conn:
                    for sql, args in plan:
                        (await conn.exec_driver_sql(sql, args)).all()
            except Exception as exc:  # noqa: BLE001 - counted, not fatal
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            t1 = time.perf_counter()
            if t0 >= start and t1 <= stop:
                count += 1
                latencies.append(t1 - t0)

    cpu: list[float] = []
    try:
        await asyncio.gather(_mark_cpu(start, stop, cpu), *(worker() for _ in range(concurrency)))
    finally:
        await engine.dispose()
    latencies.sort()
    return Result(rps=count / duration, p50_ms=percentile(latencies, 50) * 1000,
                  p99_ms=percentile(latencies, 99) * 1000, errors=sum(errors.values()), requests=count,
                  duration_s=duration, tool=f"sqlalchemy c{concurrency}", error_detail=errors,
                  cpu_s=cpu[1] - cpu[0])


def run_sqlalchemy(url: str, settings: Settings, plans: list[Plan], *, concurrency: int, duration: float,
                   warmup: float) -> Result:
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    return runner(_run_sqlalchemy(url, settings, plans, concurrency, duration, warmup))  # type: ignore[no-any-return]
