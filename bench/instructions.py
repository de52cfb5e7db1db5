"""`python -m bench.instructions`: the instructions W3's batch and `GET /healthz` cost the service's process, counted
by valgrind (issue 25).

The shared machines we measure on move a figure in seconds by a fifth from one run to the next, which hides a
change worth a tenth of a batch's Python. An instruction count does not move: valgrind's callgrind counts the
instructions a process executes, whatever else the machine does. This runs ``bench.layers --write`` (the whole
batch in process, every layer of the app, on the bench's database; see there) under
``valgrind --tool=callgrind`` three times, the Python process alone (PostgreSQL, started by ``pg_ctl``, is not
traced), for the same start-up and warm-up each time:

1. ``--batches`` batches and ``--healthz`` requests of ``GET /healthz``;
2. ``--more-batches`` more batches;
3. ``--more-healthz`` more ``GET /healthz``.

(2 - 1) / more batches is what one batch costs, (3 - 1) / more requests what one ``GET /healthz`` costs: start-up,
seeding, warm-up and the first batch cancel out. The batch's figure includes the bench's making of the batch's body
as ``bench.run`` sends it (``workloads._w3``, made in a chunk before the first batch, so in every run alike, and
cancelled out too) but not uvicorn's parsing of it. Price a change in the service's Python by running this before and
after it, in the main checkout (``bench.run``'s README says why a worktree measures the main checkout's package).

What an instruction costs in time is the machine's: on the VM of issue 25's nineteenth round a batch was 40 times
``GET /healthz`` in instructions and 60-73 times in CPU time (its system calls, four round trips to PostgreSQL,
and the memory it walks, which ``GET /healthz`` does not).

Each run takes about two minutes (valgrind runs Python some fifty times slower); nothing else need be quiet.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.layers import warm_up
from service.settings import PROJECT_ROOT

_TOTAL = re.compile(r"^(?:summary|totals): (\d+)", re.MULTILINE)


def instructions(callgrind_out: str) -> int:
    """The instructions a callgrind output file counted (its ``summary:`` line, or ``totals:``)."""
    found = _TOTAL.search(callgrind_out)
    if found is None:
        raise ValueError("no summary or totals line: not a callgrind output file")
    return int(found.group(1))


@dataclass(frozen=True)
class Counts:
    """The instructions of the three runs, and how many more batches and requests the last two made."""

    base: int
    more_batches: int
    more_healthz: int
    batches: int
    healthz: int

    def per_batch(self) -> float:
        return (self.more_batches - self.base) / self.batches

    def per_healthz(self) -> float:
        return (self.more_healthz - self.base) / self.healthz

    def report(self) -> dict[str, float]:
        batch, healthz = self.per_batch(), self.per_healthz()
        if batch <= 0 or healthz <= 0:
            raise ValueError(f"more requests counted no more instructions: {self}")
        return {"instructions_per_batch": round(batch), "instructions_per_healthz": round(healthz),
                "batch_in_healthz": round(batch / healthz, 1)}


def run_counted(batches: int, healthz: int, args: argparse.Namespace, work_dir: Path) -> int:
    """One ``bench.layers --write`` under callgrind: the instructions its Python process executed."""
    out = work_dir / f"callgrind.{batches}.{healthz}.out"
    command = [args.valgrind, "--tool=callgrind", f"--callgrind-out-file={out}", "--trace-children=no",
               sys.executable, "-m", "bench.layers", "--write", "--repeats", "1", "--batches", str(batches),
               "--reads", str(healthz), "--concurrency", str(args.concurrency), "--clients", str(args.clients),
               "--data-dir", str(args.data_dir)]
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {done.returncode}:\n{done.stderr[-3000:]}")
    return instructions(out.read_text())


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", type=int, default=32, help="batches of the first run")
    p.add_argument("--more-batches", type=int, default=64, help="how many more the second run sends")
    p.add_argument("--healthz", type=int, default=320, help="GET /healthz of the first run")
    p.add_argument("--more-healthz", type=int, default=1280, help="how many more the third run sends")
    p.add_argument("--concurrency", type=int, default=16, help="batches in flight, as bench.layers")
    p.add_argument("--clients", type=int, default=2000, help="the seeded caseload's size, as bench.layers")
    p.add_argument("--data-dir", default=str(PROJECT_ROOT / ".data" / "bench"), help="the bench's database")
    p.add_argument("--valgrind", default=shutil.which("valgrind") or "valgrind")
    args = p.parse_args(argv)
    for name in ("batches", "more_batches", "healthz", "more_healthz"):  # bench.layers sends whole rounds
        if getattr(args, name) % args.concurrency:
            p.error(f"--{name.replace('_', '-')} must be a multiple of --concurrency ({args.concurrency})")
    if warm_up(args.batches, args.concurrency) != warm_up(args.batches + args.more_batches, args.concurrency):
        p.error("--batches and --batches + --more-batches get different warm-ups in bench.layers: fewer batches")
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        work_dir = Path(tmp)
        counts = Counts(
            base=run_counted(args.batches, args.healthz, args, work_dir),
            more_batches=run_counted(args.batches + args.more_batches, args.healthz, args, work_dir),
            more_healthz=run_counted(args.batches, args.healthz + args.more_healthz, args, work_dir),
            batches=args.more_batches, healthz=args.more_healthz)
    report = counts.report()
    print(json.dumps(report))
    print(f"W3's batch: {report['instructions_per_batch'] / 1e6:.2f} M instructions of the service's process; "
          f"GET /healthz {report['instructions_per_healthz'] / 1e6:.3f} M ({report['batch_in_healthz']} to one)")
    return report


if __name__ == "__main__":
    main()
