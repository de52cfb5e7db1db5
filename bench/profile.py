"""`--profile`: py-spy on the service process during an extra (unmeasured) HTTP run of each workload.

The collapsed stacks go to ``bench/results/raw/<W>-pyspy.txt`` (open them in https://www.speedscope.app or
flamegraph.pl); the summary (self time by package, the hottest frames) goes into latest.json. py-spy is not
a dependency of the service: `.venv/bin/pip install py-spy`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

PACKAGES = ("sqlalchemy", "asyncpg", "fastapi", "starlette", "uvicorn", "pydantic", "anyio", "joserfc", "orjson",
            "greenlet", "opentelemetry", "service/", "threading", "asyncio", "contextlib")
_FRAME = re.compile(r"^(.*) \((.*?)(?::\d+)?\)$")


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def start(pid: int, duration: float, out: Path, rate: int = 100) -> subprocess.Popen[bytes]:
    exe = py_spy()
    if exe is None:
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([exe, "record", "-p", str(pid), "-d", str(max(1, round(duration))), "-r", str(rate),
                             "-f", "raw", "-o", str(out), "--nonblocking", "--subprocesses"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def package_of(frame: str) -> str:
    m = _FRAME.match(frame)
    path = m.group(2) if m else frame
    for name in PACKAGES:
        if name in path:
            return name.rstrip("/")
    return "other" if path else "native/unknown"


def summarize(collapsed: Path, top: int = 15) -> dict[str, Any]:
    """Self time by package and the hottest frames, as percentages of the samples."""
    total = 0
    by_package: Counter[str] = Counter()
    by_frame: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        by_package[package_of(frames[-1])] += n
        by_frame[frames[-1]] += n
        for pkg in {package_of(f) for f in frames}:
            inclusive[pkg] += n
    if not total:
        return {"samples": 0}

    def pct(counter: Counter[str], k: int) -> dict[str, float]:
        return {name: round(100 * n / total, 1) for name, n in counter.most_common(k)}

    return {"samples": total, "self_pct_by_package": pct(by_package, 20),
            "inclusive_pct_by_package": pct(inclusive, 20), "self_pct_top_frames": pct(by_frame, top),
            "file": _relative(collapsed)}


def _relative(path: Path) -> str:
    from service.settings import PROJECT_ROOT

    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)
