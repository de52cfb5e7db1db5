"""`--rls-cost` (issue 5): what row-level security costs, measured the bench's way.

Row-level security cannot be switched off for the service role without changing the schema, so the bench
adds a twin of that role instead: ``strengths_bench_bypassrls``, a login role created by the embedded
server's superuser, member of ``strengths_app`` (so it has exactly the same grants and functions) but with
``BYPASSRLS``. Per repeat and per read workload: raw asyncpg replaying the captured statements as each role,
back to back; then the service itself connected as each role (for the twin, ``DATABASE_URL`` of the twin and
``MIGRATION_DATABASE_URL`` the owner's, so it does not ``SET ROLE``), over HTTP; which role goes first
alternates per repeat.

The statements are the same for both (the tenant ``set_config`` included): the difference is only the policy
predicates PostgreSQL adds (``org_id = app_org()`` and the restrictive patient policy) and their planning. So
besides rps (``ratio = with RLS / bypassing it``, 1.0 = free) each run reports PostgreSQL's own CPU per request
(the postmaster's process tree over the run), where that cost is actually paid; the service's CPU per request
(Python) should not move. The bypass role exists only in the bench's own data dir and serves nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
from typing import Any

import asyncpg

from bench import raw
from bench.env import APP_ROLE, Service, postgres_cpu
from bench.workloads import Context

BYPASS_ROLE = "strengths_bench_bypassrls"


async def ensure_bypass_role(superuser_dsn: str) -> None:
    conn = await asyncpg.connect(superuser_dsn)
    try:
        await conn.execute(f"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{BYPASS_ROLE}') THEN
    CREATE ROLE {BYPASS_ROLE} LOGIN NOSUPERUSER BYPASSRLS INHERIT IN ROLE {APP_ROLE};
  END IF;
END $$;""")
    finally:
        await conn.close()


async def check_roles(app_dsn: str, bypass_dsn: str) -> None:
    """With no tenant set, the service role sees no client and the bypass role sees them all."""
    counts = []
    for dsn in (app_dsn, bypass_dsn):
        conn = await asyncpg.connect(dsn)
        try:
            counts.append(await conn.fetchval("SELECT count(*) FROM clients"))
        finally:
            await conn.close()
    if counts[0] != 0 or counts[1] == 0:
        raise RuntimeError(f"--rls-cost: rows seen without a tenant (service role, bypass role): {counts}")


def _as_bypass(url: str) -> str:
    if f"{APP_ROLE}@" not in url:
        raise RuntimeError(f"--rls-cost: expected the service role in {url!r}")
    return url.replace(f"{APP_ROLE}@", f"{BYPASS_ROLE}@", 1)


def measure(setup: Any, captured: dict[str, raw.Capture], measure_http: Any, log: Any) -> dict[str, Any]:
    """Both roles, per repeat, per read workload (writes are left out: the twin's fresh ids are per plan).
    The two raw runs are back to back, then the two services; which role goes first alternates per repeat."""
    args, db = setup.args, setup.db
    asyncio.run(ensure_bypass_role(db.superuser_dsn))
    dsn = {"rls": db.app_dsn, "bypassrls": _as_bypass(db.app_dsn)}
    asyncio.run(check_roles(dsn["rls"], dsn["bypassrls"]))
    env = {"rls": {}, "bypassrls": {"DATABASE_URL": _as_bypass(db.settings.database_url or ""),
                                    "MIGRATION_DATABASE_URL": db.settings.migration_database_url or "",
                                    "MIGRATE_ON_START": "false"}}
    reads = [w for w in setup.workloads if not w.writes]
    runs: dict[str, list[dict[str, Any]]] = {w.name: [] for w in reads}
    offline = Context("http://unused", "", setup.seed.org_id, setup.seed.client_ids, markers=setup.markers)
    plans = {w.name: captured[w.name].plans(db.app_dsn, db.settings, [v.subst for v in w.variants(offline)])
             for w in reads}
    for rep in range(args.repeats):
        order = ["rls", "bypassrls"] if rep % 2 == 0 else ["bypassrls", "rls"]
        for w in reads:
            wargs = argparse.Namespace(**{**vars(args), "duration": args.duration * w.duration_factor,
                                          "concurrency": min(args.concurrency, w.concurrency or args.concurrency)})
            row: dict[str, Any] = {"first": order[0]}
            for role in order:
                row[f"raw_{role}"] = _raw(dsn[role], db, plans[w.name], wargs, offline.org(w.name), w.session)
            for role in order:
                with Service(setup.data_dir, workers=args.workers, server=args.server, env=env[role]) as svc:
                    row[f"http_{role}"] = _http(setup, svc, w, wargs, measure_http)
            for side in ("raw", "http"):
                row[f"{side}_ratio"] = _ratio(row[f"{side}_rls"]["rps"], row[f"{side}_bypassrls"]["rps"])
                row[f"{side}_pg_cpu_ratio"] = _ratio(row[f"{side}_bypassrls"]["pg_cpu_ms_per_req"],
                                                     row[f"{side}_rls"]["pg_cpu_ms_per_req"])
            runs[w.name].append(row)
            log(f"rls-cost {rep + 1}/{args.repeats} {w.name}: raw {row['raw_rls']['rps']:.0f} rps with RLS "
                f"({row['raw_rls']['pg_cpu_ms_per_req']} ms of PostgreSQL CPU/request), "
                f"{row['raw_bypassrls']['rps']:.0f} bypassing it ({row['raw_bypassrls']['pg_cpu_ms_per_req']}): "
                f"{row['raw_ratio']:.3f}; service {row['http_rls']['rps']:.0f} rps with RLS, "
                f"{row['http_bypassrls']['rps']:.0f} bypassing it: {row['http_ratio']:.3f}")
    return {name: _summary(reps) for name, reps in runs.items()}


def _http(setup: Any, svc: Service, w: Any, wargs: argparse.Namespace, measure_http: Any) -> dict[str, Any]:
    ctx = setup.context(svc)
    requests = [v.request for v in w.variants(ctx)]
    measure_http(setup.tool, svc.base_url, requests, argparse.Namespace(**{**vars(wargs), "duration": wargs.warmup}),
                 setup.work_dir)  # (its own warm-up included): caches of the new instance warmed
    r = measure_http(setup.tool, svc.base_url, requests, argparse.Namespace(**{**vars(wargs), "warmup": 0}),
                     setup.work_dir, svc.pid, pg_cpu=functools.partial(postgres_cpu, setup.data_dir))
    if r.errors:
        raise RuntimeError(f"rls-cost: {r.errors} errors over HTTP ({r.error_detail}):\n{svc.log_tail()}")
    return {"rps": round(r.rps, 1), "p50_ms": round(r.p50_ms, 2), "cpu_ms_per_req": r.cpu_ms_per_req,
            "pg_cpu_ms_per_req": r.pg_cpu_ms_per_req}


def _raw(dsn: str, db: Any, plans: list[raw.Plan], wargs: argparse.Namespace, tenant: Any,
         session: dict[str, str] | None) -> dict[str, Any]:
    """The replay as the measured run makes it: each connection's session holds the workload's tenant (a read the
    service sends in one statement checks it there) and the settings of the service's connection."""
    r = raw.run_raw_processes(dsn, db.settings, plans, processes=wargs.workers, concurrency=wargs.concurrency,
                              duration=wargs.duration, warmup=wargs.warmup, tenant=tenant, session=session,
                              pg_cpu=functools.partial(postgres_cpu, db.data_dir))
    if r.errors:
        raise RuntimeError(f"rls-cost: {r.errors} raw errors as {dsn}: {r.error_detail}")
    return {"rps": round(r.rps, 1), "p50_ms": round(r.p50_ms, 2), "cpu_ms_per_req": r.cpu_ms_per_req,
            "pg_cpu_ms_per_req": r.pg_cpu_ms_per_req}


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else 0.0


def _summary(reps: list[dict[str, Any]]) -> dict[str, Any]:
    import statistics

    def med(path: tuple[str, ...]) -> float | None:
        values = []
        for r in reps:
            v: Any = r
            for key in path:
                v = v.get(key) if isinstance(v, dict) else None
            if v is not None:
                values.append(v)
        return round(float(statistics.median(values)), 3) if values else None

    out: dict[str, Any] = {"runs": reps}
    for side in ("raw_rls", "raw_bypassrls", "http_rls", "http_bypassrls"):
        out[side] = {k: med((side, k)) for k in ("rps", "p50_ms", "cpu_ms_per_req", "pg_cpu_ms_per_req")}
    for key in ("raw_ratio", "http_ratio", "raw_pg_cpu_ratio", "http_pg_cpu_ratio"):
        out[key] = med((key,))
    return out


def markdown(result: dict[str, Any]) -> list[str]:
    lines = ["", "Row-level security cost (`--rls-cost`; medians; rps ratio = with RLS / bypassing it, PostgreSQL CPU "
             "ratio = bypassing / with RLS: 1.0 = free):", "",
             "| workload | via | rps RLS | rps BYPASSRLS | rps ratio | PG CPU ms/req RLS | BYPASSRLS | PG CPU ratio "
             "| service CPU ms/req RLS | BYPASSRLS |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in result.items():
        for side, label in (("raw", "raw asyncpg"), ("http", "the service")):
            rls, byp = s[f"{side}_rls"], s[f"{side}_bypassrls"]
            lines.append(f"| {name} | {label} | {rls['rps']} | {byp['rps']} | **{s[side + '_ratio']}** | "
                         f"{rls['pg_cpu_ms_per_req']} | {byp['pg_cpu_ms_per_req']} | **{s[side + '_pg_cpu_ratio']}** | "
                         f"{rls['cpu_ms_per_req'] if side == 'http' else '-'} | "
                         f"{byp['cpu_ms_per_req'] if side == 'http' else '-'} |")
    return lines
