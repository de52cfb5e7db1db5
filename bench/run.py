"""`python -m bench.run --repeats N`: seed, capture, measure, write bench/results/latest.{json,md,svg}.

See bench/README.md. In short: the service runs as `strengths-api serve` (one worker) on the bench's own
embedded PostgreSQL (DATA_DIR=.data/bench); the caseloads are seeded once, kept as a template database and
copied back at the start of every run (``start_from_seed``); an app is registered with
`strengths-api apps create` and a token obtained from /oauth/token; for each workload the statements the
service sends are captured from PostgreSQL's log, then the HTTP load and the raw-asyncpg twin of those
statements are measured back to back in the same run, ``repeats`` times; medians are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench import capture, chart, limit, loadgen, profile, raw, rls
from bench import seed as seed_template
from bench.env import APP_ROLE, Database, Service, cli, free_port, machine, postgres_cpu, token
from bench.seed import Seed, ensure_seed, frequency_markers, measurement_count, seed_key
from bench.workloads import WORKLOADS, Context, Variant, Workload
from service.ops.lifecycle import prepare_database
from service.settings import PROJECT_ROOT


def log(msg: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=1, help="measure each workload N times; medians reported")
    p.add_argument("--clients", type=int, default=2000, help="size of the seeded caseload (issue 14: 2,000)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per measured run")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up before each measured run")
    p.add_argument("--prime", type=int, default=1,
                   help="unmeasured rounds of every workload (the service and its twins) before the first repeat")
    p.add_argument("--concurrency", type=int, default=16, help="concurrent connections (HTTP and raw)")
    p.add_argument("--generator", choices=["auto", "wrk", "python"], default="auto",
                   help="auto: wrk when installed, else the Python generator")
    p.add_argument("--threads", type=int, default=1, help="wrk threads")
    p.add_argument("--workers", type=int, default=1,
                   help="service worker processes; the raw twin then runs in as many processes")
    p.add_argument("--server", choices=["uvicorn", "granian"], default=None,
                   help="the service's HTTP server (`strengths-api serve --server`); default: the SERVER setting")
    p.add_argument("--rls-cost", action="store_true",
                   help="also measure the read workloads with and without row-level security (bench/rls.py)")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated, e.g. W1")
    p.add_argument("--ladder", action="store_true",
                   help="also replay the captured statements through the service's SQLAlchemy engine (no HTTP)")
    p.add_argument("--profile", action="store_true",
                   help="after measuring, py-spy the service during one more HTTP run of each workload")
    p.add_argument("--write-plans", type=int, default=None,
                   help="distinct raw plans per write run (default: each workload's own, sized for the default "
                        "duration; a short run needs fewer, and building them is most of a tiny run's time)")
    p.add_argument("--data-dir", type=Path, default=PROJECT_ROOT / ".data" / "bench")
    p.add_argument("--out-dir", type=Path, default=PROJECT_ROOT / "bench" / "results")
    return p.parse_args(argv)


def send(ctx: Context, v: Variant) -> httpx.Response:
    r = v.request
    return httpx.request(r.method, ctx.base_url + r.path, headers=r.headers, content=r.body, timeout=30)


AFTER_RESPONSE_S = 0.5  # the audit row of a read outside a unit of work (GraphQL) is written after the response


def capture_statements(db: Database, svc: Service, ctx: Context, w: Workload) -> raw.Capture:
    """The statements of one request (``variants[0]``, after a warm-up with ``variants[-1]``), the rotating values it
    was sent with (what the raw twin swaps for each plan's own: this context's, whose write variants carry identifiers
    of their own, not those of the context that measures), and for a write the ids the service generated for it
    (UUIDs in the response that were not in the request)."""
    variants = w.variants(ctx)
    warm = send(ctx, variants[-1])
    if warm.status_code >= 300:
        raise RuntimeError(f"{w.name}: warm-up request answered {warm.status_code}: {warm.text[:500]}")
    time.sleep(AFTER_RESPONSE_S)  # what the warm-up does once its response is sent (audit rows) stays outside
    start = capture.log_size(db.log_path)
    resp = send(ctx, variants[0])
    time.sleep(AFTER_RESPONSE_S)  # ... and the captured request's own after-response work comes in
    text = capture.read_log(db.log_path, start)
    if resp.status_code >= 300:
        raise RuntimeError(f"{w.name}: captured request answered {resp.status_code}: {resp.text[:500]}")
    statements = capture.only_backend(capture.parse_log(text))
    if not statements:
        raise RuntimeError(f"{w.name}: no statements in the PostgreSQL log ({db.log_path}) for the request")
    fresh: set[str] | None = None
    if w.writes:
        sent = set(re.findall(raw.UUID_RE, (variants[0].request.body or b"").decode()))
        fresh = set(re.findall(raw.UUID_RE, resp.text)) - sent
    return raw.Capture(statements, variants[0].subst, fresh)


async def pg_version(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def measure_http(tool: str, base_url: str, requests: list[loadgen.Request], args: argparse.Namespace,
                 work_dir: Path, pid: int | None = None, *, sequential: bool = False,
                 warmup_requests: list[loadgen.Request] | None = None,
                 pg_cpu: raw.PgCpu | None = None) -> loadgen.Result:
    """A warm-up run, then the measured run; with ``pid``, also the CPU seconds that process used in it, and with
    ``pg_cpu`` PostgreSQL's. Writes (``sequential``) warm up on their own requests, so the measured run sends no
    body twice."""
    kw: dict[str, Any] = {"concurrency": args.concurrency, "work_dir": work_dir, "threads": args.threads,
                          "sequential": sequential}
    if args.warmup > 0:
        loadgen.run_load(tool, base_url, warmup_requests or requests,
                         duration=max(1.0, args.warmup) if tool == "wrk" else args.warmup, **kw)
    cpu0 = process_tree_cpu(pid) if pid else 0.0
    pg0 = pg_cpu() if pg_cpu else 0.0
    shares0 = Sharing.now(pid) if pid else None
    result = loadgen.run_load(tool, base_url, requests, duration=args.duration, **kw)
    if pg_cpu:
        result.pg_cpu_s = pg_cpu() - pg0
    if pid:
        result.cpu_s = process_tree_cpu(pid) - cpu0
    if shares0 is not None and pid:
        result.sharing = shares0.until(Sharing.now(pid))
    if sequential:
        raw.refuse_repeats(result.requests, len(requests), "bodies")
    return result


def coalesced(base_url: str) -> tuple[float, float]:
    """The service's ``db_coalesced_reads_per_statement`` so far, from its ``/metrics``: (reads, statements)."""
    resp = httpx.get(f"{base_url}/metrics", timeout=10)
    if resp.status_code != 200:  # metrics off, or on a port of their own (METRICS_PORT)
        return 0.0, 0.0
    samples = {s.name: s.value for f in text_string_to_metric_families(resp.text) for s in f.samples
               if s.name.startswith("db_coalesced_reads_per_statement_")}
    return samples.get("db_coalesced_reads_per_statement_sum", 0.0), \
        samples.get("db_coalesced_reads_per_statement_count", 0.0)


def reads_per_statement(before: tuple[float, float], after: tuple[float, float]) -> float | None:
    """Reads by id per statement that answered them between two ``coalesced`` (None: no such read)."""
    statements = after[1] - before[1]
    return round((after[0] - before[0]) / statements, 2) if statements else None


def process_tree(pid: int) -> list[psutil.Process]:
    """A process and its children (uvicorn's workers when --workers > 1); ``psutil.NoSuchProcess`` once it has
    exited."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its children."""
    total = 0.0
    for proc in process_tree(pid):
        try:
            total += sum(proc.cpu_times()[:2])
        except psutil.NoSuchProcess:
            continue
    return total


SHARING = ("machine_idle", "loop_util", "loop_wait")  # Sharing.until's figures, per run and their medians


@dataclass(frozen=True)
class Sharing:
    """How the machine's cores were shared over a measured window (Linux's ``/proc``): the jiffies of all its cores,
    idle and in all, and per thread of the service's process tree the nanoseconds it ran on a core and those it
    waited on a run queue, ready to run (``/proc/<pid>/task/<tid>/schedstat``)."""

    idle: int
    total: int
    threads: dict[int, tuple[int, int]]

    @classmethod
    def now(cls, pid: int) -> Sharing | None:
        """None where the kernel does not tell (no ``/proc/stat``)."""
        try:
            cores = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
        except OSError:
            return None
        # user nice system idle iowait irq softirq steal (a guest's time is counted in user's already)
        jiffies = [int(v) for v in cores]
        threads: dict[int, tuple[int, int]] = {}
        try:
            procs = process_tree(pid)
        except psutil.NoSuchProcess:
            procs = []
        for proc in procs:
            for task in Path(f"/proc/{proc.pid}/task").glob("*"):
                try:
                    ran, waited = (int(v) for v in (task / "schedstat").read_text().split()[:2])
                except (OSError, ValueError):  # gone meanwhile, or no schedstat in this kernel
                    continue
                threads[int(task.name)] = (ran, waited)
        return cls(idle=jiffies[3] + jiffies[4], total=sum(jiffies), threads=threads)

    def until(self, after: Sharing | None) -> dict[str, float | None]:
        """``machine_idle``: the share of the machine's cores idle over the window. Of the service's busiest thread
        in it (its event loop; the busiest of all workers' with several), ``loop_util``: its time on a core over
        the window's, ``loop_wait``: the time it waited for a core, ready to run, per unit of time it ran. A loop
        near 1.0 is held by its own CPU; one well below 1.0 that waited about as long as it ran is held by the
        cores it shares with PostgreSQL (and wrk); one below 1.0 that did not wait, by waits of its own."""
        if after is None or after.total <= self.total:
            return dict.fromkeys(SHARING)
        out: dict[str, float | None] = {"machine_idle": round((after.idle - self.idle) / (after.total - self.total), 3)}
        spent = {tid: (ran - self.threads[tid][0], waited - self.threads[tid][1])
                 for tid, (ran, waited) in after.threads.items() if tid in self.threads}
        busiest = max(spent.values(), default=(0, 0))
        if busiest[0] <= 0:
            return {**out, "loop_util": None, "loop_wait": None}
        seconds = (after.total - self.total) / os.sysconf("SC_CLK_TCK") / (os.cpu_count() or 1)
        return {**out, "loop_util": round(busiest[0] / 1e9 / seconds, 2),
                "loop_wait": round(busiest[1] / busiest[0], 2)}


def generator_ceiling(tool: str, args: argparse.Namespace, work_dir: Path) -> loadgen.Result:
    """The generator against a fixed-reply server in its own process: the generator's own ceiling."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.static_server", str(port)], cwd=PROJECT_ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # "ready"
        return measure_http(tool, f"http://127.0.0.1:{port}", [loadgen.Request("GET", "/")], args, work_dir)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def median_opt(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return round(median(present), 3) if present else None


@dataclass
class Setup:
    args: argparse.Namespace
    tool: str
    workloads: list[Workload]
    data_dir: Path
    work_dir: Path
    db: Database
    seed: Seed
    creds: dict[str, str]
    markers: dict[Any, Any] = field(default_factory=dict)
    own_creds: dict[str, dict[str, str]] = field(default_factory=dict)  # workloads with an organization of their own
    caseloads: dict[str, tuple[list[Any], dict[Any, Any]]] = field(default_factory=dict)  # and its caseload
    from_template: bool = False  # the database restored as seeded (``start_from_seed``)
    caseload_measurements: dict[str, int] = field(default_factory=dict)  # in each own caseload, at the start

    def context(self, svc: Service) -> Context:
        """A fresh token through the real token endpoint of this service instance (the issuer is its URL)."""
        return Context(svc.base_url, token(svc.base_url, self.creds["client_id"], self.creds["client_secret"]),
                       self.seed.org_id, self.seed.client_ids, markers=self.markers,
                       tokens={name: token(svc.base_url, c["client_id"], c["client_secret"])
                               for name, c in self.own_creds.items()},
                       orgs={name: UUID(c["org_id"]) for name, c in self.own_creds.items()},
                       caseloads=self.caseloads,
                       creds=(self.creds["client_id"], self.creds["client_secret"]))


def start_from_seed(db: Database, clients: int) -> tuple[Seed, bool, dict[str, int]]:
    """The service's database as it was right after seeding (``bench.seed.restore``), whatever earlier runs wrote;
    when there is no template for this size, seed and migrations, a fresh database is seeded (the main caseload and
    every workload's own) and kept as the template first (``bench.seed.keep``). Returns the main caseload's seed,
    whether the database was restored, and the measurements each workload's own caseload holds at the start."""
    key = seed_key(clients)
    restored = asyncio.run(seed_template.restore(db.superuser_dsn, key))
    if restored:
        log(f"the database restored from its template, as seeded ({key})")
    else:
        asyncio.run(seed_template.empty(db.superuser_dsn))
        prepare_database(db.settings)  # its migrations, into the empty database (the server already runs)
    seed = asyncio.run(ensure_seed(db.owner_dsn, clients))
    log(f"caseload of {len(seed.client_ids)} clients {'seeded' if seed.created else 'reused'} "
        f"in {seed.seconds:.1f} s (org {seed.org_id})")
    held: dict[str, int] = {}
    for w in WORKLOADS.values():
        if w.caseload:
            own = asyncio.run(ensure_seed(db.owner_dsn, clients, purpose=w.name))
            held[w.name] = asyncio.run(measurement_count(db.owner_dsn, own.org_id))
            log(f"{w.name}: its caseload of {len(own.client_ids)} clients "
                f"{'seeded' if own.created else 'reused'} in {own.seconds:.1f} s (org {own.org_id}, "
                f"{held[w.name]} measurements)")
    if not restored:
        asyncio.run(seed_template.keep(db.superuser_dsn, key))
        log(f"the database kept as seeded, as the template of later runs ({key})")
    return seed, restored, held


def prepare(args: argparse.Namespace) -> Setup:
    names = [n.strip() for n in args.workloads.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        raise SystemExit(f"unknown workloads: {', '.join(unknown)}; known: {', '.join(WORKLOADS)}")
    workloads = [WORKLOADS[n] for n in names]
    tool = "wrk" if args.generator == "wrk" or (args.generator == "auto" and loadgen.wrk_available()) else "python"
    if tool == "wrk" and not loadgen.wrk_available():
        raise SystemExit("--generator wrk: wrk is not installed (apt-get install wrk)")
    data_dir = args.data_dir.resolve()
    log(f"embedded PostgreSQL and migrations in {data_dir}")
    db = Database.start(data_dir)
    asyncio.run(capture.set_statement_logging(db.superuser_dsn, APP_ROLE, False))  # in case a run was cut short
    seed, from_template, held = start_from_seed(db, args.clients)
    scopes = " ".join(sorted({s for w in workloads for s in w.scopes.split()}))
    creds = json.loads(cli(data_dir, "apps", "create", "--org", str(seed.org_id), "--name", "bench",
                           "--scopes", scopes))
    markers = asyncio.run(frequency_markers(db.owner_dsn, seed.org_id))
    own: dict[str, dict[str, str]] = {}
    caseloads: dict[str, tuple[list[Any], dict[Any, Any]]] = {}
    for w in workloads:
        if w.own_org:
            name = f"bench:{w.name}:{datetime.now(UTC):%Y%m%d%H%M%S}"
            org_id = json.loads(cli(data_dir, "orgs", "create", name))["id"]
        elif w.caseload:
            own_seed = asyncio.run(ensure_seed(db.owner_dsn, args.clients, purpose=w.name))  # start_from_seed seeded it
            org_id = str(own_seed.org_id)
            caseloads[w.name] = (own_seed.client_ids, asyncio.run(frequency_markers(db.owner_dsn, own_seed.org_id)))
        else:
            continue
        own[w.name] = json.loads(cli(data_dir, "apps", "create", "--org", str(org_id), "--name", f"bench-{w.name}",
                                     "--scopes", w.scopes))
    return Setup(args, tool, workloads, data_dir, data_dir / "work", db, seed, creds, markers, own, caseloads,
                 from_template, held)


def capture_all(setup: Setup) -> dict[str, raw.Capture]:
    """A service instance whose connections log every statement; each workload's captured request."""
    captured: dict[str, raw.Capture] = {}
    asyncio.run(capture.set_statement_logging(setup.db.superuser_dsn, APP_ROLE, True))
    try:
        with Service(setup.data_dir) as svc:
            ctx = setup.context(svc)
            for w in setup.workloads:
                captured[w.name] = capture_statements(setup.db, svc, ctx, w)
                log(f"{w.name}: captured {len(captured[w.name].statements)} statements")
    finally:
        asyncio.run(capture.set_statement_logging(setup.db.superuser_dsn, APP_ROLE, False))
    return captured


@dataclass
class Measurements:
    runs: dict[str, list[dict[str, Any]]]
    ceilings: list[loadgen.Result]
    healthz: list[loadgen.Result]
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)


RAW_WRITE_PLANS = 3000  # W3's raw twin: distinct plans per run (each replayed once, in order; raw.RepeatedWrites)


def measure_all(setup: Setup, captured: dict[str, raw.Capture]) -> Measurements:
    """A fresh instance (nothing logged); ``--prime`` rounds of every workload, measured and dropped; then per
    repeat: the generator's ceiling, /healthz, then per workload the HTTP load and right after it the raw twin
    (and the limit twin).

    The priming round takes what the first writes after PostgreSQL's start pay: the start follows a checkpoint
    (the last run's shutdown), after which the first change to each page writes the whole page to the WAL. In six
    runs of W3 alone, the first repeat's service paid 19-32 ms of PostgreSQL's CPU per batch against 14-17 in
    the repeats after it, while the limit twin, run last, did not (bench/JOURNAL.md, sixteenth round)."""
    args = setup.args
    out = Measurements({w.name: [] for w in setup.workloads}, [], [])
    pg_cpu = functools.partial(postgres_cpu, setup.data_dir)
    with Service(setup.data_dir, workers=args.workers, server=args.server) as svc:
        for rep in range(-args.prime, args.repeats):
            ctx = setup.context(svc)
            if rep < 0:  # priming: every workload measured as in a repeat, and dropped
                for w in setup.workloads:
                    measure_workload(setup, svc, ctx, captured[w.name], w,
                                     f"priming {rep + args.prime + 1}/{args.prime}", pg_cpu)
                continue
            out.ceilings.append(generator_ceiling(setup.tool, args, setup.work_dir))
            out.healthz.append(measure_http(setup.tool, svc.base_url, [loadgen.Request("GET", "/healthz")], args,
                                            setup.work_dir, svc.pid))
            log(f"repeat {rep + 1}/{args.repeats}: generator ceiling {out.ceilings[-1].rps:.0f} rps (fixed-reply "
                f"server), service GET /healthz {out.healthz[-1].rps:.0f} rps "
                f"({out.healthz[-1].cpu_ms_per_req} ms CPU/request)")
            for w in setup.workloads:
                out.runs[w.name].append(measure_workload(setup, svc, ctx, captured[w.name], w,
                                                         f"repeat {rep + 1}/{args.repeats}", pg_cpu))
        if args.profile and svc.pid:
            ctx = setup.context(svc)
            for w in setup.workloads:
                out.profiles[w.name] = profile_http(setup, svc.pid, ctx, w)
    return out


def measure_workload(setup: Setup, svc: Service, ctx: Context, captured: raw.Capture, w: Workload, label: str,
                     pg_cpu: raw.PgCpu) -> dict[str, Any]:
    """One repeat of ``w``: the HTTP load, right after it the raw twin, then the limit twin (and with ``--ladder``
    the replay through SQLAlchemy)."""
    db = setup.db
    args = argparse.Namespace(**{**vars(setup.args),
                                 "duration": setup.args.duration * w.duration_factor,
                                 "concurrency": min(setup.args.concurrency, w.concurrency or setup.args.concurrency)})
    variants = w.variants(ctx)
    if w.writes:  # fresh bodies for the warm-up and for the twin; fresh ids in every raw plan
        warm = [v.request for v in w.variants(ctx)]
        n_plans = setup.args.write_plans or w.write_plans or RAW_WRITE_PLANS
        raw_subst = [v.subst for _ in range(-(-n_plans // len(variants))) for v in w.variants(ctx)][:n_plans]
    else:
        warm, raw_subst = None, [v.subst for v in variants]
    plans = captured.plans(db.app_dsn, db.settings, raw_subst)
    before = coalesced(svc.base_url)
    http = measure_http(setup.tool, svc.base_url, [v.request for v in variants], args, setup.work_dir,
                        svc.pid, sequential=w.writes, warmup_requests=warm, pg_cpu=pg_cpu)
    shared = reads_per_statement(before, coalesced(svc.base_url))
    twin = raw.run_raw_processes(db.app_dsn, db.settings, plans, processes=args.workers,
                                 concurrency=args.concurrency, duration=args.duration,
                                 warmup=args.warmup, sequential=w.writes, tenant=ctx.org(w.name),
                                 pg_cpu=pg_cpu, session=w.session)
    ratio = http.rps / twin.rps if twin.rps else 0.0
    run: dict[str, Any] = {
        "http": {**http.as_dict(), "service_cpu_ms_per_req": http.cpu_ms_per_req,
                 "service_cpu_util": round(http.cpu_s / http.duration_s, 2) if http.cpu_s else None,
                 **(http.sharing or {}),
                 "pg_cpu_ms_per_req": http.pg_cpu_ms_per_req, "reads_per_coalesced_statement": shared},
        "raw": {**twin.as_dict(), "client_cpu_ms_per_req": twin.cpu_ms_per_req,
                "pg_cpu_ms_per_req": twin.pg_cpu_ms_per_req},
        "ratio": round(ratio, 3),
    }
    log(f"{label}: {w.name} ({args.duration:g} s, c{args.concurrency}) {http.rps:.0f} rps "
        f"(p50 {http.p50_ms:.1f} ms, p99 {http.p99_ms:.1f} ms, {http.errors} errors, "
        f"service CPU {http.cpu_ms_per_req} ms/request, PostgreSQL {http.pg_cpu_ms_per_req}"
        f"{'' if shared is None else f', {shared} reads per coalesced statement'}"
        f"{_sharing_note(http.sharing)}), raw {twin.rps:.0f} rps (client CPU {twin.cpu_ms_per_req} ms/request, "
        f"PostgreSQL {twin.pg_cpu_ms_per_req}), ratio {ratio:.2f}")
    if w.name in limit.LIMITS:
        measure_limit(setup, ctx, w, variants, args, run, label, pg_cpu)
    if args.ladder and not w.writes:
        sa = raw.run_sqlalchemy(db.settings.database_url or "", db.settings, plans,
                                concurrency=args.concurrency, duration=args.duration, warmup=args.warmup)
        run["sqlalchemy"] = {**sa.as_dict(), "client_cpu_ms_per_req": sa.cpu_ms_per_req,
                             "ratio_to_raw": round(sa.rps / twin.rps, 3) if twin.rps else 0.0}
        log(f"{label}: {w.name} same statements through SQLAlchemy {sa.rps:.0f} rps ({sa.errors} errors, "
            f"client CPU {sa.cpu_ms_per_req} ms/request), {sa.rps / twin.rps if twin.rps else 0:.2f} of raw")
    return run


def _sharing_note(sharing: dict[str, float | None] | None) -> str:
    if not sharing or sharing.get("machine_idle") is None:
        return ""
    loop = "" if sharing.get("loop_util") is None else \
        f", event loop on a core {sharing['loop_util']:.2f} and waiting {sharing['loop_wait']:.2f} per unit run"
    return f", cores idle {sharing['machine_idle']:.2f}{loop}"


LIMIT_WRITE_PLANS = 8000  # W3's limit twin: distinct plans per run (it is faster than the service and the replay)


def measure_limit(setup: Setup, ctx: Context, w: Workload, variants: list[Variant], args: argparse.Namespace,
                  run: dict[str, Any], label: str, pg_cpu: raw.PgCpu) -> None:
    """The limit twin (bench/limit.py) right after the replay twin, at the same concurrency for as long."""
    plans = limit.plans(w.name, ctx, variants, LIMIT_WRITE_PLANS if w.writes else None)
    finish = limit.signer(ctx, asyncio.run(limit.signing_jwk(setup.db.owner_dsn, setup.db.settings))) \
        if limit.LIMITS[w.name].signs else None
    twin = raw.run_raw_processes(setup.db.owner_dsn, setup.db.settings, plans, processes=args.workers,
                                 concurrency=args.concurrency, duration=args.duration, warmup=args.warmup,
                                 sequential=w.writes, finish=finish, pg_cpu=pg_cpu, session=w.session)
    ratio = run["http"]["rps"] / twin.rps if twin.rps else 0.0
    run["limit"] = {**twin.as_dict(), "client_cpu_ms_per_req": twin.cpu_ms_per_req,
                    "pg_cpu_ms_per_req": twin.pg_cpu_ms_per_req}
    run["limit_ratio"] = round(ratio, 3)
    log(f"{label}: {w.name} limit twin {twin.rps:.0f} rps ({twin.errors} errors, client "
        f"CPU {twin.cpu_ms_per_req} ms/request, PostgreSQL {twin.pg_cpu_ms_per_req}), ratio to the limit {ratio:.2f}")


def profile_http(setup: Setup, pid: int, ctx: Context, w: Workload) -> dict[str, Any]:
    """py-spy on the service during an extra HTTP run (not one of the measured ones)."""
    collapsed = setup.args.out_dir / "raw" / f"{w.name}-pyspy.txt"
    requests = [v.request for v in w.variants(ctx)]  # before py-spy starts: W3 builds 2,500 bodies
    spy = profile.start(pid, setup.args.duration * w.duration_factor, collapsed)
    result = loadgen.run_load(setup.tool, ctx.base_url, requests,
                              concurrency=min(setup.args.concurrency, w.concurrency or setup.args.concurrency),
                              duration=setup.args.duration * w.duration_factor,
                              work_dir=setup.work_dir, threads=setup.args.threads, sequential=w.writes)
    spy.wait(timeout=setup.args.duration + 60)
    summary = profile.summarize(collapsed) if collapsed.exists() else {"samples": 0}
    summary["rps_while_profiled"] = round(result.rps, 1)
    log(f"{w.name}: profiled {summary['samples']} samples -> {collapsed}; self time by package "
        f"{summary.get('self_pct_by_package')}")
    return summary


def summarize(setup: Setup, mach: dict[str, Any], captured: dict[str, raw.Capture],
              m: Measurements) -> dict[str, Any]:
    args, db = setup.args, setup.db
    mach.update(loadavg_end=[round(x, 2) for x in os.getloadavg()], postgres=asyncio.run(pg_version(db.owner_dsn)),
                wrk=loadgen.wrk_version())
    result: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": mach,
        "config": {
            "command": getattr(args, "command", "python -m bench.run"),
            "repeats": args.repeats, "duration_s": args.duration, "warmup_s": args.warmup,
            "prime": args.prime,
            "concurrency": args.concurrency, "generator": setup.tool, "service_workers": args.workers,
            "server": args.server or os.environ.get("SERVER", "default"),
            "db_pool": f"{db.settings.db_pool_size}+{db.settings.db_max_overflow} overflow",
            "clients": len(setup.seed.client_ids), "seeded": setup.seed.created,
            "from_template": setup.from_template, "caseload_measurements": setup.caseload_measurements,
        },
        "generator": {
            "tool": m.ceilings[0].tool if m.ceilings else setup.tool,
            "ceiling_rps": round(median([c.rps for c in m.ceilings]), 1),
            "ceiling_p50_ms": round(median([c.p50_ms for c in m.ceilings]), 2),
            "ceiling_p99_ms": round(median([c.p99_ms for c in m.ceilings]), 2),
            "ceiling_endpoint": "a fixed-reply HTTP server in its own process (bench/static_server.py)",
            "service_healthz_rps": round(median([h.rps for h in m.healthz]), 1),
            "service_healthz_cpu_ms_per_req": median_opt([h.cpu_ms_per_req for h in m.healthz]),
        },
        "workloads": {},
    }
    for w in setup.workloads:
        reps = m.runs[w.name]
        result["workloads"][w.name] = {
            "title": w.title,
            "request": w.description,
            "rps": round(median([r["http"]["rps"] for r in reps]), 1),
            "p50_ms": round(median([r["http"]["p50_ms"] for r in reps]), 2),
            "p99_ms": round(median([r["http"]["p99_ms"] for r in reps]), 2),
            "errors": int(median([r["http"]["errors"] for r in reps])),
            "raw_rps": round(median([r["raw"]["rps"] for r in reps]), 1),
            "raw_p50_ms": round(median([r["raw"]["p50_ms"] for r in reps]), 2),
            "raw_p99_ms": round(median([r["raw"]["p99_ms"] for r in reps]), 2),
            "ratio": round(median([r["ratio"] for r in reps]), 3),
            "target": w.target,
            "duration_s": args.duration * w.duration_factor,
            "concurrency": min(args.concurrency, w.concurrency or args.concurrency),
            "service_cpu_ms_per_req": median_opt([r["http"]["service_cpu_ms_per_req"] for r in reps]),
            "service_cpu_util": median_opt([r["http"]["service_cpu_util"] for r in reps]),
            **{key: median_opt([r["http"].get(key) for r in reps]) for key in SHARING},
            "raw_client_cpu_ms_per_req": median_opt([r["raw"]["client_cpu_ms_per_req"] for r in reps]),
            "service_pg_cpu_ms_per_req": median_opt([r["http"].get("pg_cpu_ms_per_req") for r in reps]),
            "raw_pg_cpu_ms_per_req": median_opt([r["raw"].get("pg_cpu_ms_per_req") for r in reps]),
            "reads_per_coalesced_statement": median_opt([r["http"].get("reads_per_coalesced_statement")
                                                         for r in reps]),
            "statements": [s.sql if s.params is None else {"sql": s.sql, "params": list(s.params)}
                           for s in captured[w.name].statements],
            "runs": reps,
        }
        if w.items_per_request > 1:
            result["workloads"][w.name]["items_per_request"] = w.items_per_request
            result["workloads"][w.name][f"{w.item_name}_per_s"] = round(
                result["workloads"][w.name]["rps"] * w.items_per_request, 1)
            result["workloads"][w.name][f"raw_{w.item_name}_per_s"] = round(
                result["workloads"][w.name]["raw_rps"] * w.items_per_request, 1)
        if any("limit" in r for r in reps):
            limited = [r for r in reps if "limit" in r]
            result["workloads"][w.name].update(
                limit_rps=round(median([r["limit"]["rps"] for r in limited]), 1),
                limit_p50_ms=round(median([r["limit"]["p50_ms"] for r in limited]), 2),
                limit_errors=int(median([r["limit"]["errors"] for r in limited])),
                limit_ratio=round(median([r["limit_ratio"] for r in limited]), 3),
                limit_client_cpu_ms_per_req=median_opt([r["limit"]["client_cpu_ms_per_req"] for r in limited]),
                limit_pg_cpu_ms_per_req=median_opt([r["limit"].get("pg_cpu_ms_per_req") for r in limited]))
        result["workloads"][w.name].update(cpu_budget(result["workloads"][w.name], args.workers))
        if any("sqlalchemy" in r for r in reps):
            result["workloads"][w.name]["sqlalchemy_rps"] = round(
                median([r["sqlalchemy"]["rps"] for r in reps if "sqlalchemy" in r]), 1)
            result["workloads"][w.name]["sqlalchemy_ratio_to_raw"] = round(
                median([r["sqlalchemy"]["ratio_to_raw"] for r in reps if "sqlalchemy" in r]), 3)
        if w.name in m.profiles:
            result["workloads"][w.name]["profile"] = m.profiles[w.name]
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    args.command = " ".join(["python -m bench.run", *(sys.argv[1:] if argv is None else argv)])
    started = time.perf_counter()
    mach = machine()
    setup = prepare(args)
    captured = capture_all(setup)
    measurements = measure_all(setup, captured)
    result = summarize(setup, mach, captured, measurements)
    if args.rls_cost:
        result["rls_cost"] = rls.measure(setup, captured, measure_http, log)
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    write_results(result, args.out_dir)
    log(f"done in {result['elapsed_s']:.0f} s; wrote {args.out_dir / 'latest.json'}, latest.md and latest.svg "
        f"(statements and profiles: {args.out_dir / 'raw' / 'latest.full.json'})")
    sys.stdout.write(markdown(result) + "\n")
    return result


def cpu_budget(w: dict[str, Any], workers: int) -> dict[str, Any]:
    """The CPU a request costs each side, its client and PostgreSQL together (the load generator's aside), and the
    ratios those totals give: ``cpu_ratio`` (raw over service) and ``limit_cpu_ratio`` (limit over service) are
    what ``ratio`` and ``limit_ratio`` would be if the machine's cores were all either side had to share (both sides
    run on the same cores as PostgreSQL). A measured ratio near its CPU ratio says the cores are the limit; one
    below it, something else (one worker's single core, waits). ``limit_core_ratio``: the ratio to the limit the
    service's workers would reach if each kept one core busy and nothing else held them (an event loop runs on one
    core): the most the service's own CPU per request allows."""
    def total(client: str, pg: str) -> float | None:
        a, b = w.get(client), w.get(pg)
        return None if a is None or b is None else round(a + b, 3)

    out: dict[str, Any] = {}
    service = total("service_cpu_ms_per_req", "service_pg_cpu_ms_per_req")
    for side, key in (("raw", "cpu_ratio"), ("limit", "limit_cpu_ratio")):
        twin = total(f"{side}_client_cpu_ms_per_req", f"{side}_pg_cpu_ms_per_req")
        if service and twin:
            out[key] = round(twin / service, 3)
    own = w.get("service_cpu_ms_per_req")
    if own and w.get("limit_rps"):
        out["limit_core_ratio"] = round(workers * 1000 / own / w["limit_rps"], 3)
    return out


def cpu_table(workloads: dict[str, Any]) -> list[str]:
    """Where each side's CPU goes per request (``cpu_budget``), as a table for latest.md."""
    if not any("service_pg_cpu_ms_per_req" in w and w["service_pg_cpu_ms_per_req"] is not None
               for w in workloads.values()):
        return []

    def ms(w: dict[str, Any], key: str) -> str:
        return "-" if w.get(key) is None else f"{w[key]:.3f}"

    def ratio(w: dict[str, Any], key: str) -> str:
        return "-" if w.get(key) is None else f"{w[key]:.2f}"

    lines = ["", "CPU per request, in ms, each side's own process and PostgreSQL's (every backend and background "
             "process over the measured window; the load generator's aside). CPU ratio: the twin's total over the "
             "service's, what the measured ratio would be if the machine's cores were all that limited both. One core "
             "per worker: the ratio to the limit if each service worker (one event loop) kept one core busy and "
             "nothing else held it back, the most its own CPU per request allows. While the service ran: the share "
             "of the machine's cores idle, and its event loop's time on a core over the run's and the time it "
             "waited for one, ready to run, per unit of time it ran (`run.Sharing`).", "",
             "| workload | service | its PostgreSQL | replay client | its PostgreSQL | limit client | its PostgreSQL "
             "| CPU ratio (measured) to the replay | CPU ratio (measured) to the limit "
             "| one core per worker, to the limit | cores idle | event loop on a core | it waited per unit run |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, w in workloads.items():
        lines.append(
            f"| {name} | {ms(w, 'service_cpu_ms_per_req')} | {ms(w, 'service_pg_cpu_ms_per_req')} | "
            f"{ms(w, 'raw_client_cpu_ms_per_req')} | {ms(w, 'raw_pg_cpu_ms_per_req')} | "
            f"{ms(w, 'limit_client_cpu_ms_per_req')} | {ms(w, 'limit_pg_cpu_ms_per_req')} | "
            f"{ratio(w, 'cpu_ratio')} ({ratio(w, 'ratio')}) | "
            f"{ratio(w, 'limit_cpu_ratio')} ({ratio(w, 'limit_ratio')}) | {ratio(w, 'limit_core_ratio')} | "
            f"{ratio(w, 'machine_idle')} | {ratio(w, 'loop_util')} | {ratio(w, 'loop_wait')} |")
    return lines


def markdown(result: dict[str, Any]) -> str:
    m, c, g = result["machine"], result["config"], result["generator"]
    lines = [
        "# Benchmark results",
        "",
        f"Generated {result['generated_at']} by `{c.get('command', 'python -m bench.run')}` "
        f"(medians of {c['repeats']} repeat(s); {c['duration_s']:g} s per run after {c['warmup_s']:g} s warm-up, "
        f"concurrency {c['concurrency']}, {c['service_workers']} {c.get('server', '')} service worker(s) "
        f"against as many raw processes, "
        f"pool {c['db_pool']} per process, "
        f"{c['clients']} seeded clients).",
        "",
        f"Machine: {m['cpu_model']}, {m['cpu_count']} cores, {m.get('memory_gb')} GB, {m['os']}, "
        f"Python {m['python']}, PostgreSQL {m.get('postgres')} (embedded); load average "
        f"{m['loadavg_start']} at start, {m.get('loadavg_end')} at end (shared machine: compare ratios, "
        f"not absolute numbers). Commit {m.get('git_commit', '?')}.",
        "",
        f"Load generator: {g['tool']}{' (' + m['wrk'] + ')' if c['generator'] == 'wrk' and m.get('wrk') else ''}; "
        f"its ceiling on {g['ceiling_endpoint']}: {g['ceiling_rps']:.0f} rps "
        f"(p50 {g['ceiling_p50_ms']:.2f} ms, p99 {g['ceiling_p99_ms']:.2f} ms); the service's own GET /healthz "
        f"(no token, no database) through it: {g['service_healthz_rps']:.0f} rps, "
        f"{g.get('service_healthz_cpu_ms_per_req')} ms of service CPU per request.",
        "",
        "| workload | rps | p50 ms | p99 ms | errors | raw rps | raw p50 ms | ratio | target | limit rps "
        "| ratio to limit | service CPU ms/req | raw client CPU ms/req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, w in result["workloads"].items():
        cpu, rcpu, target = w.get("service_cpu_ms_per_req"), w.get("raw_client_cpu_ms_per_req"), w.get("target")
        met = "" if target is None else (" (met)" if w["ratio"] >= target else " (missed)")
        conc = f" (c{w['concurrency']}, {w['duration_s']:g} s)" if "concurrency" in w else ""
        limit_rps = f"{w['limit_rps']:.0f}" if "limit_rps" in w else "-"
        limit_ratio = f"**{w['limit_ratio']:.2f}**" if "limit_ratio" in w else "-"
        lines.append(f"| {name} {w['title']}{conc} | {w['rps']:.0f} | {w['p50_ms']:.2f} | {w['p99_ms']:.2f} | "
                     f"{w['errors']} | {w['raw_rps']:.0f} | {w['raw_p50_ms']:.2f} | **{w['ratio']:.2f}** | "
                     f"{'-' if target is None else f'≥ {target}{met}'} | {limit_rps} | {limit_ratio} | "
                     f"{'-' if cpu is None else f'{cpu:.2f}'} | {'-' if rcpu is None else f'{rcpu:.2f}'} |")
    lines += cpu_table(result["workloads"])
    for name, w in result["workloads"].items():
        if w.get("items_per_request"):
            item = next(k[:-len("_per_s")] for k in w if k.endswith("_per_s") and not k.startswith("raw_"))
            lines += ["", f"{name}: {w[item + '_per_s']:.0f} {item} per second over HTTP, raw "
                      f"{w['raw_' + item + '_per_s']:.0f} ({w['items_per_request']} per request)."]
    for name, w in result["workloads"].items():
        if "sqlalchemy_rps" in w:
            sa_cpu = median_opt([r["sqlalchemy"].get("client_cpu_ms_per_req") for r in w["runs"] if "sqlalchemy" in r])
            lines += ["", f"{name} ladder (CPU ms per request in parentheses): raw asyncpg {w['raw_rps']:.0f} rps "
                      f"({w.get('raw_client_cpu_ms_per_req')}), the same statements through the service's SQLAlchemy "
                      f"engine {w['sqlalchemy_rps']:.0f} rps ({sa_cpu}; {w['sqlalchemy_ratio_to_raw']:.2f} of raw), "
                      f"the service over HTTP {w['rps']:.0f} rps ({w.get('service_cpu_ms_per_req')}; "
                      f"{w['ratio']:.2f} of raw)."]
        if "profile" in w:
            lines += ["", f"{name} profile (py-spy, self time by package, % of samples): "
                      + ", ".join(f"{k} {v}" for k, v in w["profile"].get("self_pct_by_package", {}).items())]
    if "rls_cost" in result:
        lines += rls.markdown(result["rls_cost"])
    lines += ["", "![throughput and ratios](latest.svg)"]
    lines += ["", "ratio = rps / raw rps: the service over HTTP against raw asyncpg replaying the statements the "
              "service sent for the same request (captured from PostgreSQL's log), same concurrency, same run: what "
              "the framework costs. ratio to limit = rps / limit rps: against raw asyncpg running hand-written SQL "
              "that returns the same response in one statement (W6: and signs the token; none for W5), no "
              "transaction, tenant or audit (bench/limit.py): "
              "everything the service does included. Medians of the per-repeat ratios."]
    return "\n".join(lines)


LOCAL_ONLY = ("statements", "profile")  # per workload: the captured SQL (with its parameters) and the py-spy tables


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The result without what stays on the machine that ran it (``LOCAL_ONLY``): the figures, small enough to
    commit."""
    return {**result, "workloads": {name: {k: v for k, v in w.items() if k not in LOCAL_ONLY}
                                    for name, w in result["workloads"].items()}}


def write_results(result: dict[str, Any], out_dir: Path) -> None:
    """``latest.md``, ``latest.svg`` and the figures (``latest.json``) in ``out_dir``, to be committed; everything,
    the captured statements and profiles included, in ``raw/latest.full.json`` beside the py-spy stacks (ignored by
    git)."""
    (out_dir / "raw").mkdir(parents=True, exist_ok=True)
    (out_dir / "raw" / "latest.full.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "latest.json").write_text(json.dumps(summary(result), indent=2) + "\n")
    (out_dir / "latest.md").write_text(markdown(result) + "\n")
    (out_dir / "latest.svg").write_text(chart.svg(result))


if __name__ == "__main__":
    main()
