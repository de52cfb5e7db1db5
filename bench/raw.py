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
import itertools
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from bench.capture import Statement
from bench.loadgen import Result, percentile
from service.db import SESSION_TENANT_SQL
from service.db import server_settings as db_server_settings
from service.settings import Settings

Plan = list[tuple[str, tuple[Any, ...] | None]]  # (sql, args or None for a simple query)
# A limit twin's Python step (bench/limit.py, W6's signature): called with the rows of the plan's last statement,
# once the connection is back in the pool, for every request; ValueError counts as an error.
Finish = Callable[[list[Any]], object]


_ELEMENT = re.compile(r'"((?:[^"\\]|\\.)*)"|([^,]+)', re.S)


def parse_array(text: str) -> list[str | None]:
    """A one-dimensional PostgreSQL array literal (as logged) as its element texts: quoted elements with
    backslash escapes (JSON documents in a jsonb[]), unquoted ones, NULL."""
    out: list[str | None] = []
    for m in _ELEMENT.finditer(text.strip()[1:-1]):
        quoted, bare = m.groups()
        if quoted is not None:
            out.append(quoted.replace("\\\\", "\0").replace('\\"', '"').replace("\0", "\\")
                       if "\\" in quoted else quoted)
        else:
            token = bare.strip()
            out.append(None if token == "NULL" else token)
    return out


def _array(text: str, conv: Any) -> list[Any]:
    return [None if v is None else conv(v) for v in parse_array(text)]


_CONVERT: dict[str, Any] = {
    "uuid": str,  # asyncpg encodes a uuid from its text as it does from a UUID
    "int2": int, "int4": int, "int8": int, "float4": float, "float8": float, "numeric": Decimal,
    "bool": lambda v: v.lower() in ("t", "true", "on", "1", "yes"),
    "date": date.fromisoformat, "timestamptz": datetime.fromisoformat, "timestamp": datetime.fromisoformat,
}


def convert(value: str | None, type_name: str) -> Any:
    """A logged parameter (text) as the Python value asyncpg encodes for the parameter's type."""
    if value is None:
        return None
    if type_name.endswith("[]"):  # asyncpg names array types "uuid[]", "text[]", ...
        return _array(value, _CONVERT.get(type_name[:-2], str))
    if type_name.startswith("_"):
        return _array(value, _CONVERT.get(type_name[1:], str))
    return _CONVERT.get(type_name, str)(value)


def server_settings(settings: Settings, session: dict[str, str] | None = None) -> dict[str, str]:
    """The service's connection settings (``service.db.server_settings``), and ``session``'s, under the twin's
    own application name."""
    return db_server_settings(settings, session, application_name="strengths-bench-raw")


UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


_SWAPPABLE = {"uuid", "text", "varchar", "jsonb", "json"}  # types whose values may hold an id or external id


@dataclass(frozen=True)
class Capture:
    """One workload's captured request: the statements the service sent, the rotating values the request was sent
    with (``subst``: what each plan swaps out), and for a write the ids the service generated for it (``fresh``;
    None for a read)."""

    statements: list[Statement]
    subst: dict[str, str]
    fresh: set[str] | None = None

    def plans(self, dsn: str, settings: Settings, substs: list[dict[str, str]]) -> list[Plan]:
        """One plan per entry of ``substs`` (``build_plans``, the captured values swapped out)."""
        return asyncio.run(build_plans(dsn, settings, self.statements, [self.subst, *substs], self.fresh))[1:]


class _Fresh:
    """For a write: each generated id of the captured request becomes a new UUID, and each rotating value is
    swapped wherever it occurs (inside arrays and JSON documents too). Array literals are parsed once; each
    plan then only maps their elements (a dict lookup, or one regex pass over a JSON document)."""

    def __init__(self, fresh_ids: set[str], captured: dict[str, str]) -> None:
        self.fresh_ids = sorted(fresh_ids)
        self.captured = captured
        self.pattern = re.compile("|".join([*(re.escape(v) for v in captured.values()), UUID_RE]))
        self._parsed: dict[str, list[str | None]] = {}
        self.new_plan()

    def new_plan(self) -> None:
        """New ids for the next plan: the same within a plan, so its statements agree (foreign keys, history)."""
        self._ids = {fid: str(uuid.uuid4()) for fid in self.fresh_ids}

    def args(self, params: tuple[str | None, ...], types: list[str], variant: dict[str, str]) -> tuple[Any, ...]:
        mapping = dict(self._ids)
        mapping.update({self.captured[k]: variant[k] for k in self.captured})
        prefixes = list(self.captured.values())
        sub = self.pattern.sub

        def repl(m: re.Match[str]) -> str:
            return mapping.get(m.group(0), m.group(0))

        def swap(text: str) -> str:
            hit = mapping.get(text)
            if hit is not None:
                return hit
            if len(text) > 40 or any(p in text for p in prefixes):
                return sub(repl, text)
            return text

        out: list[Any] = []
        for value, type_name in zip(params, types, strict=True):
            if value is None:
                out.append(None)
            elif type_name.endswith("[]"):
                if value not in self._parsed:
                    self._parsed[value] = parse_array(value)
                base = type_name[:-2]
                conv = _CONVERT.get(base, str)
                if base in _SWAPPABLE:
                    out.append([None if e is None else conv(swap(e)) for e in self._parsed[value]])
                else:  # numbers, timestamps: the same in every plan
                    out.append([None if e is None else conv(e) for e in self._parsed[value]])
            else:
                out.append(convert(swap(value), type_name))
        return tuple(out)


async def build_plans(dsn: str, settings: Settings, statements: list[Statement],
                      variants: list[dict[str, str]], fresh_ids: set[str] | None = None) -> list[Plan]:
    """One plan per request variant: the captured statements with the rotating values swapped in.

    ``variants[0]`` holds the values the captured request was sent with (each must occur in its statements, else
    ValueError: no plan would differ from the captured request); ``variants[i]`` the ones to use instead (e.g.
    ``{"client_id": "..."}``). With ``fresh_ids`` (a write workload: the ids the service
    generated for the captured request), every plan also gets new ids for those, and the rotating values
    are swapped as substrings (an external-id prefix inside a text[] or a jsonb[] of history snapshots).
    """
    texts = [text for st in statements for text in (st.sql, *(st.params or ())) if text]
    missing = [v for v in variants[0].values() if v and not any(v in text for text in texts)]
    if missing:  # the plans would all replay the captured request itself (a write: rows it already wrote)
        raise ValueError(f"the captured statements do not hold the values their request was sent with: {missing}")
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
    fresh = _Fresh(fresh_ids, captured) if fresh_ids is not None else None
    plans: list[Plan] = []
    for variant in variants:
        swap = {captured[k]: variant[k] for k in captured}
        plan: Plan = []
        if fresh is not None:
            fresh.new_plan()
        for st, tys in zip(statements, types, strict=True):
            if st.params is None or tys is None:
                plan.append((st.sql, None))
                continue
            if fresh is not None:
                args = fresh.args(st.params, tys, variant)
            else:
                args = tuple(convert(swap.get(v, v) if v is not None else None, t)
                             for v, t in zip(st.params, tys, strict=True))
            plan.append((st.sql, args))
        plans.append(plan)
    return plans


PgCpu = Callable[[], float]  # PostgreSQL's CPU seconds so far (``env.postgres_cpu`` of the bench's data dir)


async def _mark_cpu(start: float, stop: float, cpu: list[float], pg: list[float], pg_cpu: PgCpu | None) -> None:
    """This process's CPU time, and PostgreSQL's with ``pg_cpu``, at the start and the end of the measured window."""
    await asyncio.sleep(max(0.0, start - time.perf_counter()))
    cpu.append(time.process_time())
    if pg_cpu is not None:
        pg.append(pg_cpu())
    await asyncio.sleep(max(0.0, stop - time.perf_counter()))
    cpu.append(time.process_time())
    if pg_cpu is not None:
        pg.append(pg_cpu())


async def _no_reset(conn: asyncpg.Connection) -> None:
    """No reset query on release: SQLAlchemy's pool sends none after a committed transaction either (asyncpg's
    default would add a round trip, RESET ALL and friends, to every request of the twin)."""


async def twin_pool(dsn: str, settings: Settings, *, min_size: int, max_size: int, tenant: UUID | None = None,
                    session: dict[str, str] | None = None) -> asyncpg.Pool:
    """A twin's asyncpg pool: the service's connection settings and ``session``'s (``server_settings``), no reset
    query on release (``_no_reset``), and with ``tenant`` each connection's session holding that organization as the
    service's pinned connections hold theirs (``service.db.PinnedTenants``): a read sent outside a transaction finds
    it there (for a captured read, set before the capture, so not among its statements)."""
    async def pinned(conn: asyncpg.Connection) -> None:
        await conn.fetchrow(SESSION_TENANT_SQL, str(tenant), "")

    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size,
                                     server_settings=server_settings(settings, session),
                                     reset=_no_reset, init=pinned if tenant is not None else None)
    assert pool is not None
    return pool


async def _run(dsn: str, settings: Settings, plans: list[Plan], concurrency: int, duration: float,
               warmup: float, sequential: bool = False, finish: Finish | None = None,
               tenant: UUID | None = None, pg_cpu: PgCpu | None = None,
               session: dict[str, str] | None = None) -> Result:
    pool = await twin_pool(dsn, settings, min_size=min(settings.db_pool_size, concurrency),
                           max_size=settings.db_pool_size + settings.db_max_overflow, tenant=tenant, session=session)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    count = 0
    start = time.perf_counter() + warmup
    stop = start + duration

    order = itertools.cycle(range(len(plans)))  # writes: each plan once, in order
    sent = 0

    async def worker() -> None:
        nonlocal count, sent
        rng = random.Random()
        while time.perf_counter() < stop:
            plan = plans[next(order) if sequential else rng.randrange(len(plans))]
            sent += 1
            t0 = time.perf_counter()
            try:
                rows: list[Any] = []
                async with pool.acquire() as conn:
                    for sql, args in plan:
                        if args is None:
                            await conn.execute(sql)
                        else:
                            rows = await conn.fetch(sql, *args)
                if finish is not None:
                    finish(rows)
            except (asyncpg.PostgresError, OSError, ValueError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            t1 = time.perf_counter()
            if t0 >= start and t1 <= stop:
                count += 1
                latencies.append(t1 - t0)

    cpu: list[float] = []
    pg: list[float] = []
    try:
        await asyncio.gather(_mark_cpu(start, stop, cpu, pg, pg_cpu), *(worker() for _ in range(concurrency)))
    finally:
        await pool.close()
    if sequential:
        refuse_repeats(sent, len(plans), "plans")
    latencies.sort()
    return Result(rps=count / duration, p50_ms=percentile(latencies, 50) * 1000,
                  p99_ms=percentile(latencies, 99) * 1000, errors=sum(errors.values()), requests=count,
                  duration_s=duration, tool=f"asyncpg c{concurrency}", error_detail=errors,
                  cpu_s=cpu[1] - cpu[0], pg_cpu_s=pg[1] - pg[0] if pg else None)


class RepeatedWrites(RuntimeError):
    """A write run sent more requests than it has distinct bodies or plans: its figures would count duplicates,
    which the service and the twins answer without writing, as writes."""


def refuse_repeats(sent: int, distinct: int, what: str) -> None:
    """``RepeatedWrites`` when a write run sent more requests than it has distinct ``what`` (bodies, plans)."""
    if sent > distinct:
        raise RepeatedWrites(f"{sent} writes sent (warm-up included) but {distinct} distinct {what}: the repeats would "
                             f"be duplicates, cheaper than new writes (raise the number of {what})")


def run_raw(dsn: str, settings: Settings, plans: list[Plan], *, concurrency: int, duration: float,
            warmup: float, sequential: bool = False, finish: Finish | None = None,
            tenant: UUID | None = None, pg_cpu: PgCpu | None = None, session: dict[str, str] | None = None) -> Result:
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    return runner(_run(dsn, settings, plans, concurrency, duration, warmup, sequential,  # type: ignore[no-any-return]
                       finish, tenant, pg_cpu, session))


def _raw_process(job: tuple[str, Settings, list[Plan], int, float, float, bool, Finish | None, UUID | None,
                            PgCpu | None, dict[str, str] | None]) -> Result:
    dsn, settings, plans, concurrency, duration, warmup, sequential, finish, tenant, pg_cpu, session = job
    return run_raw(dsn, settings, plans, concurrency=concurrency, duration=duration, warmup=warmup,
                   sequential=sequential, finish=finish, tenant=tenant, pg_cpu=pg_cpu, session=session)


def run_raw_processes(dsn: str, settings: Settings, plans: list[Plan], *, processes: int, concurrency: int,
                      duration: float, warmup: float, sequential: bool = False,
                      finish: Finish | None = None, tenant: UUID | None = None, pg_cpu: PgCpu | None = None,
                      session: dict[str, str] | None = None) -> Result:
    """The twin in ``processes`` processes (to set beside as many service workers), the concurrency split
    between them, each with its own pool of the service's (per-worker) size. rps and CPU add up; p50 is the
    median of the processes' p50s and p99 the worst of their p99s. ``tenant``: the organization each connection's
    session holds, as the service's pinned connections do (the replay twin). ``pg_cpu``: PostgreSQL's CPU over the
    measured window too (read by the first process: the windows coincide). ``session``: more settings for the
    connections' sessions (a pinned read's, ``service.db.PINNED_SESSION_SETTINGS``)."""
    if processes <= 1:
        return run_raw(dsn, settings, plans, concurrency=concurrency, duration=duration, warmup=warmup,
                       sequential=sequential, finish=finish, tenant=tenant, pg_cpu=pg_cpu, session=session)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    shares = [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]
    jobs = [(dsn, settings, plans[i::processes] if sequential else plans, share, duration, warmup, sequential, finish,
             tenant, pg_cpu if i == 0 else None, session) for i, share in enumerate(shares) if share]
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
                  cpu_s=sum(r.cpu_s or 0.0 for r in parts), pg_cpu_s=parts[0].pg_cpu_s)


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
                        result = await conn.exec_driver_sql(sql, args)
                        if result.returns_rows:  # an INSERT without RETURNING has none to fetch
                            result.all()
            except Exception as exc:  # noqa: BLE001 - counted, not fatal
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            t1 = time.perf_counter()
            if t0 >= start and t1 <= stop:
                count += 1
                latencies.append(t1 - t0)

    cpu: list[float] = []
    try:
        await asyncio.gather(_mark_cpu(start, stop, cpu, [], None), *(worker() for _ in range(concurrency)))
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
