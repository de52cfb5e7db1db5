"""The benchmark cannot rot: the whole pipeline (seed, app + token, SQL capture, HTTP load, raw twin, results)
at a tiny size for about a second per run (about 20 s in all, most of it starting the service twice), plus
fast unit checks of the log parser and the wrk script."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from bench import raw
from bench.capture import Statement, only_backend, parse_log
from bench.loadgen import Request, wrk_script
from bench.workloads import WORKLOADS
from service.db import PINNED_SESSION_SETTINGS
from service.settings import PROJECT_ROOT, Settings
from service.telemetry.logs import configure_logging

LOG = """\
2026-01-01 00:00:00.001 UTC [42] LOG:  statement: BEGIN;
2026-01-01 00:00:00.002 UTC [42] LOG:  execute __asyncpg_stmt_1__: SELECT a
\tFROM t WHERE x = $1::UUID AND y = $2 LIMIT $3::INTEGER
2026-01-01 00:00:00.002 UTC [42] DETAIL:  Parameters: $1 = 'a-b', $2 = 'it''s, $2 = x', $3 = NULL
2026-01-01 00:00:00.003 UTC [42] LOG:  statement: COMMIT;
"""


def test_parse_log_keeps_text_and_parameters() -> None:
    statements = parse_log(LOG)
    assert [s.sql for s in statements] == [
        "BEGIN;", "SELECT a\nFROM t WHERE x = $1::UUID AND y = $2 LIMIT $3::INTEGER", "COMMIT;"]
    assert statements[0].params is None
    assert statements[1].params == ("a-b", "it's, $2 = x", None)


# A capture's window as CI met it: the read on a pinned connection (backend 7), and on backend 8, whose previous
# transaction was the webhook dispatcher's claim, asyncpg's type introspection and the group commit's autocommit
# audit_append; then on backend 9 a write, closed by its audit row sent with COMMIT, and a background claim after it.
CAPTURED = """\
2026-01-01 00:00:00.001 UTC [8] LOG:  statement: BEGIN;
2026-01-01 00:00:00.002 UTC [8] LOG:  execute __asyncpg_stmt_1__: SELECT * FROM webhook_claim($1, $2)
2026-01-01 00:00:00.002 UTC [8] DETAIL:  Parameters: $1 = '20', $2 = '60'
2026-01-01 00:00:00.003 UTC [8] LOG:  statement: COMMIT;
2026-01-01 00:00:00.004 UTC [7] LOG:  execute __asyncpg_stmt_2__: WITH tenant_ok AS (SELECT 1) SELECT 2
2026-01-01 00:00:00.005 UTC [8] LOG:  execute __asyncpg_stmt_3__: SELECT current_setting('jit') AS cur
2026-01-01 00:00:00.006 UTC [8] LOG:  execute __asyncpg_stmt_4__: SELECT audit_append(o, CAST(r AS jsonb)) FROM x
2026-01-01 00:00:00.006 UTC [8] DETAIL:  Parameters: $1 = '{a}', $2 = '{b}'
2026-01-01 00:00:00.007 UTC [9] LOG:  statement: BEGIN; SELECT set_config('app.org_id', 'a', true);
2026-01-01 00:00:00.008 UTC [9] LOG:  statement: SELECT audit_append('a', '[]');
	COMMIT;
2026-01-01 00:00:00.009 UTC [9] LOG:  statement: BEGIN;
2026-01-01 00:00:00.010 UTC [9] LOG:  execute __asyncpg_stmt_5__: SELECT * FROM bulk_export_claim($1)
2026-01-01 00:00:00.010 UTC [9] DETAIL:  Parameters: $1 = '60'
2026-01-01 00:00:00.011 UTC [9] LOG:  statement: ROLLBACK;
"""


def test_a_capture_keeps_the_requests_statements_after_a_background_transaction_on_the_same_connection() -> None:
    """A transaction ends at its COMMIT or ROLLBACK: the group commit's autocommit statement, sent on a connection
    whose last transaction was a background claim, is the request's (CI once lost it with the claim)."""
    assert [s.sql for s in only_backend(parse_log(CAPTURED))] == [
        "WITH tenant_ok AS (SELECT 1) SELECT 2",
        "SELECT audit_append(o, CAST(r AS jsonb)) FROM x",
        "BEGIN; SELECT set_config('app.org_id', 'a', true);",
        "SELECT audit_append('a', '[]');\nCOMMIT;",
    ]


def test_wrk_script_holds_a_large_body_as_it_is() -> None:
    """A large ASCII body goes into the script in Lua's long brackets, byte for byte (no escapes to write); one
    Lua would change (a carriage return) is escaped instead."""
    body = orjson.dumps({"measurements": [{"external_id": f'w3."x".{i}', "note": "a\\b"} for i in range(20)]}) + b"\n"
    script = wrk_script([Request("POST", "/v1/measurements/batch", {}, body)])
    assert "[==[" + body.decode() + "]==]" in script
    crlf = b"\r\n".join([body] * 2)
    assert "\\013\\010" in wrk_script([Request("POST", "/x", {}, crlf)])


def test_wrk_script_escapes() -> None:
    script = wrk_script([Request("GET", '/v1/x?q="a"', {"Authorization": "Bearer t"}),
                         Request("POST", "/y", {}, b"{}")])
    assert '"/v1/x?q=\\034a\\034"' in script
    assert "math.random(#reqs)" in script


CAPTURED_ID = "0f0f0f0f-0000-4000-8000-000000000001"  # an id the service generated for the captured batch
BATCH = Statement(sql="WITH t AS (SELECT * FROM jsonb_array_elements($1)) INSERT ...",
                  params=(f'[{{"id": "{CAPTURED_ID}", "external_id": "w3.aaaa.0.7"}}]',))


def test_a_write_plan_swaps_the_captured_requests_own_values() -> None:
    """Each plan of a write replays the captured batch with its own external ids and new generated ids: none of the
    captured request's, which it already stored (a plan holding them inserts nothing)."""
    fresh = raw._Fresh({CAPTURED_ID}, {"ext": "w3.aaaa.0."})
    (body,) = fresh.args(BATCH.params or (), ["jsonb"], {"ext": "w3.bbbb.5."})
    assert "w3.bbbb.5.7" in body
    assert "w3.aaaa" not in body
    assert CAPTURED_ID not in body


def test_plans_refuse_values_their_statements_do_not_hold() -> None:
    """Values swapped out must be the captured request's own. The variants of another context (the one that measures,
    whose write variants carry its own nonce) are not in the statements: every plan would have been the captured
    batch again, all duplicates (the W3 and W7 replay twins until 2026-12-06)."""
    settings = Settings(database_url="postgresql+asyncpg://unused@127.0.0.1:9/unused")
    with pytest.raises(ValueError, match="w3.cccc.0."):
        asyncio.run(raw.build_plans("postgresql://unused@127.0.0.1:9/unused", settings, [BATCH],
                                    [{"ext": "w3.cccc.0."}, {"ext": "w3.dddd.1."}], {CAPTURED_ID}))


async def test_a_write_twin_refuses_to_send_a_plan_twice(db) -> None:
    """A write run that outlasts its distinct plans fails instead of counting duplicates (which insert nothing and
    cost less) as writes."""
    with pytest.raises(raw.RepeatedWrites, match="1 distinct plans"):
        await raw._run(db.dsn(), db.settings(), [[("SELECT 1", None)]], 2, 0.3, 0.0, True, None, None)
    await raw._run(db.dsn(), db.settings(), [[("SELECT 1", None)]], 2, 0.3, 0.0, False, None, None)  # reads repeat


async def test_the_twins_of_a_pinned_read_have_its_connections_session(db) -> None:
    """W1, W2 and W4, which the service answers on pinned connections, are replayed (and their limits run) on
    connections with those connections' session settings; the other workloads on the common ones."""
    assert all(WORKLOADS[name].session == PINNED_SESSION_SETTINGS for name in ("W1", "W2", "W4"))
    assert all(WORKLOADS[name].session is None for name in ("W3", "W5", "W6", "W7"))
    for session, mode in ((PINNED_SESSION_SETTINGS, "force_generic_plan"), (None, "auto")):
        seen: list[str] = []
        await raw._run(db.dsn(), db.settings(), [[("SELECT current_setting('plan_cache_mode')", ())]], 1, 0.2, 0.0,
                       finish=lambda rows, seen=seen: seen.append(rows[0][0]), session=session)
        assert seen
        assert set(seen) == {mode}


# bench.run at the tiny size; 500 write plans are plenty for one second (a run that sent more writes than it has
# plans would fail: raw.RepeatedWrites)
TINY_RUN = ("--repeats", "1", "--clients", "3", "--duration", "1", "--warmup", "0.2", "--concurrency", "2",
            "--generator", "python", "--write-plans", "500", "--prime", "0")


def bench(module: str, *args: str, data_dir: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``python -m <module> <args>`` on an embedded PostgreSQL of its own (``.data/<data_dir>``: xdist may run these
    tests side by side)."""
    return subprocess.run([sys.executable, "-m", module, *args, "--data-dir", str(PROJECT_ROOT / ".data" / data_dir)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout, check=False)


def test_bench_end_to_end_tiny(tmp_path: Path) -> None:
    t0 = time.monotonic()
    out = bench("bench.run", *TINY_RUN, "--out-dir", str(tmp_path), data_dir="bench-smoke")
    elapsed = time.monotonic() - t0
    assert out.returncode == 0, out.stderr[-4000:]
    result = json.loads((tmp_path / "latest.json").read_text())
    w1 = result["workloads"]["W1"]
    assert set(w1) >= {"rps", "p50_ms", "p99_ms", "errors", "raw_rps", "ratio"}
    assert w1["rps"] > 0
    assert w1["raw_rps"] > 0
    assert w1["errors"] == 0
    assert w1["ratio"] > 0
    for name in ("W1", "W2", "W3", "W4", "W6", "W7"):  # the limit twin (bench/limit.py) ran beside the replay
        limit = result["workloads"][name]
        assert limit["limit_rps"] > 0, name
        assert limit["limit_errors"] == 0, name
        assert limit["limit_ratio"] > 0, name
        # Each side's CPU per request, PostgreSQL's included, and the ratios those totals give.
        for key in ("service_cpu_ms_per_req", "service_pg_cpu_ms_per_req", "raw_pg_cpu_ms_per_req",
                    "limit_client_cpu_ms_per_req", "limit_pg_cpu_ms_per_req"):
            assert limit[key] > 0, (name, key)
        assert limit["limit_cpu_ratio"] == pytest.approx(
            (limit["limit_client_cpu_ms_per_req"] + limit["limit_pg_cpu_ms_per_req"])
            / (limit["service_cpu_ms_per_req"] + limit["service_pg_cpu_ms_per_req"]), abs=0.002), name
        assert limit["limit_core_ratio"] == pytest.approx(
            1000 / limit["service_cpu_ms_per_req"] / limit["limit_rps"], rel=0.01), name
        # How the cores were shared while the service ran (run.Sharing): its event loop ran, and waited or not.
        assert 0 <= limit["machine_idle"] <= 1, name
        assert 0 < limit["loop_util"] <= 1.05, name
        assert limit["loop_wait"] >= 0, name
    # The captured statements stay on the machine (raw/, git-ignored); the committed figures leave them out.
    assert "statements" not in w1
    full = json.loads((tmp_path / "raw" / "latest.full.json").read_text())
    assert {k: v for k, v in full["workloads"]["W1"].items() if k != "statements"} == w1
    sqls = [s if isinstance(s, str) else s["sql"] for s in full["workloads"]["W1"]["statements"]]
    assert any("FROM clients" in s for s in sqls)
    assert any("FROM strengths" in s for s in sqls)
    # The read in one statement on a pinned connection (its session holds the tenant, which the statement checks),
    # which also writes the read's audit rows: nothing is left for the group commit.
    assert [s for s in sqls if "app_org()" in s and "INSERT INTO audit_events" in s] == sqls
    assert not any("audit_append(" in s for s in sqls)
    assert result["generator"]["ceiling_rps"] > 0
    assert "| W1 " in (tmp_path / "latest.md").read_text()
    assert "| CPU ratio (measured) to the limit |" in (tmp_path / "latest.md").read_text()
    assert "| cores idle | event loop on a core | it waited per unit run |" in (tmp_path / "latest.md").read_text()
    print(f"bench smoke: {elapsed:.1f} s")


def test_sharing_finds_the_busiest_thread_and_what_it_waited() -> None:
    """``run.Sharing`` over a window in which this thread kept a core busy and another thread slept: the busiest
    thread (this one, the sleeper ran next to nothing) was on a core for much of the window (it may have waited for
    one: CI runs tests beside it)."""
    import threading

    from bench.run import SHARING, Sharing

    idle = threading.Thread(target=time.sleep, args=(0.5,))
    idle.start()
    before = Sharing.now(os.getpid())
    assert before is not None
    assert threading.get_native_id() in before.threads
    assert idle.native_id in before.threads
    end = time.monotonic() + 0.4
    while time.monotonic() < end:
        pass
    shares = before.until(Sharing.now(os.getpid()))
    idle.join()
    assert set(shares) == set(SHARING)
    assert 0 <= shares["machine_idle"] < 1
    assert 0.2 < shares["loop_util"] <= 1.05
    assert shares["loop_wait"] >= 0
    assert before.until(before) == dict.fromkeys(SHARING)  # an empty window tells nothing


def test_bench_rls_cost_on_granian_tiny(tmp_path: Path) -> None:
    """`--rls-cost` (both roles, raw and through the service), `--server granian` and `--ladder` (the same
    statements through SQLAlchemy too), at the tiny size (its own data dir: xdist may run it beside the test above)."""
    out = bench("bench.run", *TINY_RUN, "--workloads", "W1", "--server", "granian", "--rls-cost", "--prime", "1",
                "--ladder", "--out-dir", str(tmp_path), data_dir="bench-smoke-rls", timeout=240)
    assert out.returncode == 0, out.stderr[-4000:]
    result = json.loads((tmp_path / "latest.json").read_text())
    assert result["config"]["server"] == "granian"
    # One priming round of each side, measured and dropped: the one repeat is all the result holds.
    assert "priming 1/1: W1" in out.stderr
    assert "priming 1/1: W1 limit twin" in out.stderr
    assert result["config"]["prime"] == 1
    assert len(result["workloads"]["W1"]["runs"]) == 1
    assert result["workloads"]["W1"]["sqlalchemy_rps"] > 0  # --ladder
    cost = result["rls_cost"]["W1"]
    for side in ("raw_rls", "raw_bypassrls", "http_rls", "http_bypassrls"):
        assert cost[side]["rps"] > 0, side
        assert cost[side]["pg_cpu_ms_per_req"] > 0, side
    assert cost["raw_ratio"] > 0
    assert cost["http_ratio"] > 0
    assert "Row-level security cost" in (tmp_path / "latest.md").read_text()


def test_layers_prices_each_of_our_layers() -> None:
    """``bench.layers``: the whole stack answers W1's request through every layer of ours, and leaving them all out
    costs less than keeping them."""
    from bench import layers

    handler = configure_logging("INFO", io.StringIO())  # as the bench runs it: the access log on
    try:
        medians = asyncio.run(layers.measure(requests=200, repeats=1))
    finally:
        logging.getLogger().removeHandler(handler)
        configure_logging()
    names = layers.ours()
    assert set(medians) == {"all", "none", *(f"without {name}" for name in names)}
    assert 0 < medians["none"] < medians["all"]
    table = layers.report(medians)
    assert all(f"without {name}" in table for name in names)


def test_layers_prices_the_whole_read_and_batch_on_a_database() -> None:
    """``bench.layers --read``, ``--list`` and ``--write``: the served app answers W1's request for seeded clients, a
    list page of clients, W3's batch of 100 new measurements, and ``GET /healthz``, on a database of its own (the tiny
    size), and reports the CPU each cost."""
    modes = (("--read", "read", "reads"), ("--list", "page", "pages"), ("--write", "batch", "batches"))
    for mode, what, whats in modes:
        out = bench("bench.layers", mode, "--clients", "3", "--reads", "64", "--batches", "16", "--repeats", "2",
                    "--concurrency", "4", data_dir="bench-smoke-layers")
        assert out.returncode == 0, out.stderr[-4000:]
        runs = re.findall(rf"whole {what} in process: ([0-9.]+) ms of CPU per {what}, ([0-9]+) {whats}/s; "
                          r"GET /healthz ([0-9.]+) ms", out.stdout)
        assert len(runs) == 2, out.stdout
        assert all(float(cpu) > 0 and int(rate) > 0 and float(healthz) > 0 for cpu, rate, healthz in runs)
        assert "median:" in out.stdout


def test_audit_commit_bounds_w1_by_its_own_statements() -> None:
    """``bench.audit_commit --bound``: the service's W1 statement alone, with its audit rows group-committed, and
    writing them itself (what the service sends), and the limit twin, on a database of its own (the tiny size),
    and each one's share of the limit twin's rate."""
    out = bench("bench.audit_commit", "--bound", "--clients", "3", "--duration", "0.3", "--repeats", "1",
                "--concurrency", "2", data_dir="bench-smoke-bound")
    assert out.returncode == 0, out.stderr[-4000:]
    shares = dict(re.findall(r"median: (.+?)\s+([0-9.]+) of the limit twin", out.stdout))
    assert set(shares) == {"limit twin", "pinned read", "pinned read, group commit",
                           "pinned read writing its audit rows"}, out.stdout
    assert float(shares["limit twin"]) == 1.0
    assert float(shares["pinned read, group commit"]) > 0
    assert float(shares["pinned read writing its audit rows"]) > 0  # each read checked its two rows written
    assert "reads per commit" in out.stdout


def test_audit_commit_prices_w1s_statements_in_postgres_cpu() -> None:
    """``bench.audit_commit --cost``: the limit twin's statement, the service's read (alone, and writing its audit
    rows) and the group commit's transaction of 1, 8 and 16 reads' rows, one at a time, each priced in PostgreSQL's
    CPU."""
    out = bench("bench.audit_commit", "--cost", "--clients", "3", "--statements", "30", "--repeats", "1",
                data_dir="bench-smoke-bound")
    assert out.returncode == 0, out.stderr[-4000:]
    priced = dict(re.findall(r"1: (.+?)\s+PostgreSQL ([0-9.]+) ms of CPU per", out.stdout))
    assert set(priced) == {"limit twin", "service's read", "service's read writing its audit rows",
                           *(f"group commit of {n} reads' rows" for n in (1, 8, 16))}
    assert all(float(ms) >= 0 for ms in priced.values()), out.stdout  # CPU counted in ticks: a tiny run may see 0
    assert [float(ms) > 0 for ms in re.findall(r"per statement, ([0-9.]+) ms each", out.stdout)] == [True] * 3


FAKE_VALGRIND = """\
import sys
args = sys.argv[1:]
out = next(a.split("=", 1)[1] for a in args if a.startswith("--callgrind-out-file="))
batches, reads = int(args[args.index("--batches") + 1]), int(args[args.index("--reads") + 1])
assert args[args.index("-m") + 1: args.index("-m") + 3] == ["bench.layers", "--write"], args
with open(out, "w") as f:
    f.write(f"version: 1\\ncmd: python\\nsummary: {5_000 + 300 * batches + 2 * reads}\\n")
"""


def test_instructions_take_each_requests_count_from_three_counted_runs(tmp_path: Path) -> None:
    """``bench.instructions``: three runs of ``bench.layers --write`` under callgrind (here a stand-in that writes a
    count of its own: 300 per batch, 2 per ``GET /healthz``, 5,000 besides), and what one batch and one ``GET
    /healthz`` cost from their differences, start-up cancelled out."""
    from bench import instructions

    fake = tmp_path / "valgrind"
    fake.write_text(f"#!{sys.executable}\n{FAKE_VALGRIND}")
    fake.chmod(0o755)
    report = instructions.main(["--valgrind", str(fake), "--batches", "16", "--more-batches", "32",
                                "--healthz", "32", "--more-healthz", "64"])
    assert report == {"instructions_per_batch": 300, "instructions_per_healthz": 2, "batch_in_healthz": 150.0}


def test_instructions_read_callgrinds_summary_and_refuse_what_cannot_be_priced() -> None:
    from bench.instructions import Counts, instructions, main

    assert instructions("version: 1\ncreator: callgrind\nsummary: 17056507540\n") == 17056507540
    assert instructions("events: Ir\nfl=(1) x.c\ntotals: 42\n") == 42
    with pytest.raises(ValueError, match="not a callgrind output file"):
        instructions("events: Ir\n")
    with pytest.raises(ValueError, match="no more instructions"):
        Counts(base=100, more_batches=100, more_healthz=150, batches=16, healthz=16).report()
    for argv in (["--batches", "20"], ["--more-healthz", "100"], ["--batches", "96", "--more-batches", "80"]):
        with pytest.raises(SystemExit) as refused:  # before any run: valgrind is never asked
            main(argv + ["--valgrind", "/nonexistent"])
        assert refused.value.code == 2, argv


def test_every_run_starts_from_the_seed(tmp_path: Path) -> None:
    """What a run writes (W3's batches into its own caseload) is gone at the start of the next: the database is
    copied back from the template kept right after seeding (bench.seed.restore), so runs measure the same data."""
    data_dir = PROJECT_ROOT / ".data" / "bench-smoke-seed"
    shutil.rmtree(data_dir, ignore_errors=True)  # a fresh data folder: the first run seeds and keeps the template
    runs = []
    for n in (1, 2):
        out = bench("bench.run", *TINY_RUN, "--workloads", "W3", "--out-dir", str(tmp_path / str(n)),
                    data_dir="bench-smoke-seed")
        assert out.returncode == 0, out.stderr[-4000:]
        runs.append(json.loads((tmp_path / str(n) / "latest.json").read_text()))
    first, second = runs
    assert first["config"]["from_template"] is False
    assert first["config"]["caseload_measurements"] == {"W3": 3 * 100}  # 3 clients, 100 measurements each
    assert first["workloads"]["W3"]["rps"] > 0  # it wrote batches into that caseload
    assert second["config"]["from_template"] is True
    assert second["config"]["caseload_measurements"] == {"W3": 3 * 100}
