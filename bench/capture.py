"""Capturing the very statements the service sends for one request, from PostgreSQL's own log.

For the capture only, the service role gets ``log_statement = 'all'`` (ALTER ROLE, as the superuser of the
bench's own embedded server), a service instance is started (its connections pick the setting up at
login), the request is sent once to warm the connection, then once more between two marks of the server
log. PostgreSQL logs every simple query (``statement: BEGIN``) and every extended-protocol execution with
its bound parameter values (``execute <name>: SELECT ...`` / ``DETAIL: Parameters: $1 = '...'``): exactly
the text and values that reached the server, after SQLAlchemy and asyncpg did their work. The setting is
reset before the measured service starts, so nothing is logged while measuring.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \S+ \[(\d+)\] ([A-Z]+):  (.*)$")
_PARAM = re.compile(r"\$(\d+) = (NULL|'(?:[^']|'')*')", re.S)


@dataclass(frozen=True)
class Statement:
    """One statement as the server received it: a simple query, or an extended-protocol execution."""

    sql: str
    params: tuple[str | None, ...] | None = None  # None: simple query protocol; else the bound values as text
    backend_pid: int = 0

    @property
    def extended(self) -> bool:
        return self.params is not None


async def set_statement_logging(superuser_dsn: str, role: str, on: bool) -> None:
    conn = await asyncpg.connect(superuser_dsn)
    try:
        if on:
            await conn.execute(f"ALTER ROLE {role} SET log_statement = 'all'")
        else:
            await conn.execute(f"ALTER ROLE {role} RESET log_statement")
    finally:
        await conn.close()


def log_size(log_path: Path) -> int:
    return log_path.stat().st_size if log_path.exists() else 0


def read_log(log_path: Path, start: int, settle: float = 0.3) -> str:
    time.sleep(settle)  # the logger writes asynchronously to the file
    with open(log_path, "rb") as f:
        f.seek(start)
        return f.read().decode("utf-8", errors="replace")


def parse_log(text: str) -> list[Statement]:
    """The statements in a stretch of a PostgreSQL stderr log (default ``log_line_prefix`` '%m [%p] ')."""
    entries: list[tuple[int, str, str]] = []  # (pid, level, message)
    for line in text.splitlines():
        m = _PREFIX.match(line)
        if m:
            entries.append((int(m.group(1)), m.group(2), m.group(3)))
        elif entries:  # a continuation line of a multi-line statement (the logger prefixes a tab)
            pid, level, message = entries[-1]
            entries[-1] = (pid, level, f"{message}\n{line[1:] if line.startswith(chr(9)) else line}")
    out: list[Statement] = []
    pending: dict[int, int] = {}  # pid -> index in out of an execute awaiting its DETAIL
    for pid, level, message in entries:
        if level == "LOG" and message.startswith("statement: "):
            out.append(Statement(message[len("statement: "):], None, pid))
        elif level == "LOG" and message.startswith("execute "):
            name_sql = message[len("execute "):]
            _, _, sql = name_sql.partition(": ")
            pending[pid] = len(out)
            out.append(Statement(sql, (), pid))
        elif level == "DETAIL" and message.startswith("Parameters: ") and pid in pending:
            idx = pending.pop(pid)
            values: dict[int, str | None] = {}
            for m in _PARAM.finditer(message[len("Parameters: "):]):
                raw = m.group(2)
                values[int(m.group(1))] = None if raw == "NULL" else raw[1:-1].replace("''", "'")
            params = tuple(values.get(i) for i in range(1, max(values, default=0) + 1))
            out[idx] = Statement(out[idx].sql, params, pid)
    return out


def is_driver_introspection(st: Statement) -> bool:
    """asyncpg's own type introspection, sent once per connection the first time it meets a type (e.g. uuid[]):
    not part of the request's work, and the raw twin's asyncpg does it by itself."""
    return "typeinfo_tree" in st.sql or "set_config('jit'" in st.sql or "current_setting('jit')" in st.sql


def only_backend(statements: list[Statement]) -> list[Statement]:
    """The statements of the request, backend by backend (each in its own order).

    A REST request runs on one connection. A GraphQL request may run its DataLoader batches on several
    connections at once, each batch its own transaction: their log lines interleave, so they are regrouped
    by backend (the backend whose first statement of the request came first, first), which keeps every transaction
    whole for a sequential replay. What the service's timers sent (``is_background``) is left out.
    """
    by_backend: dict[int, list[Statement]] = {}
    for st in statements:
        if not is_driver_introspection(st):
            by_backend.setdefault(st.backend_pid, []).append(st)
    kept = [[st for tx in transactions(group) if not is_background(tx) for st in tx] for group in by_backend.values()]
    position = {id(st): i for i, st in enumerate(statements)}
    return [st for group in sorted(filter(None, kept), key=lambda g: position[id(g[0])]) for st in group]


_ENDS = re.compile(r"\b(?:COMMIT|ROLLBACK)\s*;?\s*$", re.I)  # a simple query whose last statement ends the transaction


def transactions(group: list[Statement]) -> list[list[Statement]]:
    """One backend's statements cut into transactions: each from its BEGIN to the statement that ends it (``COMMIT;``,
    or a write's audit row sent with its ``COMMIT;``), and each statement outside a transaction alone (a pinned read,
    the group commit's ``audit_append``), so that a request's autocommit statement on a connection whose previous
    transaction was a background one (the webhook dispatcher's claim) is not taken for part of it."""
    out: list[list[Statement]] = []
    open_ = False
    for st in group:
        sql = st.sql.strip()
        begins = sql.upper().startswith("BEGIN")
        if begins or not open_:
            out.append([])
        out[-1].append(st)
        open_ = (open_ or begins) and not _ENDS.search(sql)
    return out


def is_background(tx: list[Statement]) -> bool:
    """What runs on its own timer in the service process, not for a request: the webhook dispatcher's poll, the
    bulk export runner's claim, the revocation listener's subscription and its connection probe."""
    return any("webhook_claim(" in st.sql or "bulk_export_claim(" in st.sql for st in tx) or all(
        st.sql.strip().rstrip(";") in ("SELECT 1", "LISTEN revocation", 'LISTEN "revocation"') for st in tx)
