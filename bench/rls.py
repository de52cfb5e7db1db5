"""`--rls-cost` (issue 5): what row-level security costs, measured the bench's way.

Row-level security cannot be switched off for the service role without changing the schema, so the bench
adds a twin of that role instead: ``strengths_bench_bypassrls``, a login role created by the embedded
server's superuser, member of ``strengths_app`` (so it has exactly the same grants and functions) but with
``BYPASSRLS``. Per repeat and per read workload, back to back:

1. the service connected as ``strengths_app`` (policies applied) over HTTP, then raw asyncpg replaying the
   captured statements as ``strengths_app``;
2. raw asyncpg replaying the same plans as ``strengths_bench_bypassrls`` (policies skipped), then the service
   itself connected as that role (``DATABASE_URL`` of the bypass role, ``MIGRATION_DATABASE_URL`` the owner's,
   so it does not ``SET ROLE``) over HTTP.

The statements are the same in both (the tenant ``set_config`` included): the difference is only the policy
predicates PostgreSQL adds (``org_id = app_org()`` and the patient restriction) and their planning. Reported:
rps and CPU per request of each, and the ratios ``rls / bypassrls`` (1.0 = free). The bypass role exists only
in the bench's own data dir and is never given to the service outside this measurement.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import asyncpg

from bench import raw
from bench.env import APP_ROLE, Service

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


def measure(setup: Any, captured: dict[str, Any], measure_http: Any, log: Any) -> dict[str, Any]:
    """Both roles, per repeat, per read workload (writes are left out: the twin's fresh ids are per plan)."""
    args, db = setup.args, setup.db
    asyncio.run(ensure_bypass_role(db.superuser_dsn))
    bypass_dsn = _as_bypass(db.app_dsn)
    asyncio.run(check_roles(db.app_dsn, bypass_dsn))
    bypass_env = {"DATABASE_URL": _as_bypass(db.settings.database_url or ""),
                  "MIGRATION_DATABASE_URL": db.settings.migration_database_url or "", "MIGRATE_ON_START": "false"}
    reads = [w for w in setup.workloads if not w.writes]
    runs: dict[str, list[dict[str, Any]]] = {w.name: [] for w in reads}
    for rep in range(args.repeats):
        for w in reads:
            wargs = argparse.Namespace(**{**vars(args), "duration": args.duration * w.duration_factor,
                                          "concurrency": min(args.concurrency, w.concurrency or args.concurrency)})
            row: dict[str, Any] = {}
            with Service(setup.data_dir, workers=args.workers, server=args.server) as svc:
                row["http_rls"] = _http(setup, svc, w, wargs, measure_http)
                plans = asyncio.run(raw.build_plans(db.app_dsn, db.settings, captured[w.name],
                                                    [v.subst for v in w.variants(setup.context(svc))]))
            row["raw_rls"] = _raw(db.app_dsn, db, plans, wargs)
            row["raw_bypassrls"] = _raw(bypass_dsn, db, plans, wargs)
            with Service(setup.data_dir, workers=args.workers, server=args.server, env=bypass_env) as svc:
                row["http_bypassrls"] = _http(setup, svc, w, wargs, measure_http)
            row["raw_ratio"] = _ratio(row["raw_rls"]["rps"], row["raw_bypassrls"]["rps"])
            row["http_ratio"] = _ratio(row["http_rls"]["rps"], row["http_bypassrls"]["rps"])
            runs[w.name].append(row)
            log(f"rls-cost {rep + 1}/{args.repeats} {w.name}: raw {row['raw_rls']['rps']:.0f} rps with RLS, "
                f"{row['raw_bypassrls']['rps']:.0f} bypassing it ({row['raw_ratio']:.3f}); service "
                f"{row['http_rls']['rps']:.0f} rps ({row['http_rls']['cpu_ms_per_req']} ms CPU/request) with RLS, "
                f"{row['http_bypassrls']['rps']:.0f} ({row['http_bypassrls']['cpu_ms_per_req']}) bypassing it "
                f"({row['http_ratio']:.3f})")
    return {name: _summary(reps) for name, reps in runs.items()}


def _http(setup: Any, svc: Service, w: Any, wargs: argparse.Namespace, measure_http: Any) -> dict[str, Any]:
    ctx = setup.context(svc)
    r = measure_http(setup.tool, svc.base_url, [v.request for v in w.variants(ctx)], wargs, setup.work_dir, svc.pid)
    if r.errors:
        raise RuntimeError(f"rls-cost: {r.errors} errors over HTTP ({r.error_detail}):\n{svc.log_tail()}")
    return {"rps": round(r.rps, 1), "p50_ms": round(r.p50_ms, 2), "cpu_ms_per_req": r.cpu_ms_per_req}


def _raw(dsn: str, db: Any, plans: list[raw.Plan], wargs: argparse.Namespace) -> dict[str, Any]:
    r = raw.run_raw_processes(dsn, db.settings, plans, processes=wargs.workers, concurrency=wargs.concurrency,
                              duration=wargs.duration, warmup=wargs.warmup)
    if r.errors:
        raise RuntimeError(f"rls-cost: {r.errors} raw errors as {dsn}: {r.error_detail}")
    return {"rps": round(r.rps, 1), "p50_ms": round(r.p50_ms, 2), "cpu_ms_per_req": r.cpu_ms_per_req}


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
        out[side] = {k: med((side, k)) for k in ("rps", "p50_ms", "cpu_ms_per_req")}
    out["raw_ratio"] = med(("raw_ratio",))
    out["http_ratio"] = med(("http_ratio",))
    return out


def markdown(result: dict[str, Any]) -> list[str]:
    lines = ["", "Row-level security cost (`--rls-cost`; medians; ratio = with RLS / bypassing it, 1.0 = free):", "",
             "| workload | raw rps RLS | raw rps BYPASSRLS | raw ratio | service rps RLS | service rps BYPASSRLS "
             "| service ratio | service CPU ms/req RLS | BYPASSRLS |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in result.items():
        lines.append(f"| {name} | {s['raw_rls']['rps']} | {s['raw_bypassrls']['rps']} | **{s['raw_ratio']}** | "
                     f"{s['http_rls']['rps']} | {s['http_bypassrls']['rps']} | **{s['http_ratio']}** | "
                     f"{s['http_rls']['cpu_ms_per_req']} | {s['http_bypassrls']['cpu_ms_per_req']} |")
    return lines
