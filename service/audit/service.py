"""The audit trail: one mechanism for every transport.

Each request gets an :class:`AuditTrail` (a context variable set by :class:`RequestContextMiddleware`).
The service layer notes what it touched: every record it serializes for a reply (``seen``) and every
version it writes (``wrote_many``, from ``record_changes``). The trail is written once:

- in the request's own transaction, just before it commits (``flush``; the REST unit of work, each
  GraphQL mutation and each bulk-import chunk call it), so a write and its audit row commit together; the batch
  ingest's unit of work (``uow.write_unit_of_work``) sends the same INSERT in the COMMIT's round trip
  (``closing``);
- by the read's own statement, in its transaction or, on a pinned connection, its own commit (``read_values``,
  ``written``): a REST read by id (``service.graphql.sql.audited_reads``: the rows of every read sharing the
  statement, each with its own request's values) and a compiled GraphQL query of one root field
  (``service.graphql.sql.audited``);
- for another read on the driver path (``uow.driver_unit_of_work``: a REST list page, a GraphQL query of several
  root fields), once its transaction has ended and before the response is sent, by the group commit
  (``service.audit.commits``): a read changes nothing for its row to commit with, and the rows of concurrent reads
  then share one commit;
- otherwise, once the response is sent, in one short transaction of its own (``finish``): reads that
  ran outside a unit of work (GraphQL loaders, bulk export), and refusals (401, 403, 404, 410 ...),
  whose transaction rolled back or never began.

Rows hold ids, never client data. One row per request and resource type touched.
"""

from __future__ import annotations

import contextvars
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import structlog
from asyncpg.exceptions import InFailedSQLTransactionError
from sqlalchemy import (
    CTE,
    Integer,
    Subquery,
    Text,
    Uuid,
    bindparam,
    cast,
    func,
    insert,
    literal_column,
    null,
    select,
    type_coerce,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.api import cursors
from service.api.http import dumps
from service.audit.commits import for_engine
from service.auth.principal import Principal
from service.collections.repository import fetch_page
from service.db import driver, literal, tenant_literal
from service.models.audit import AuditEvent

log = structlog.get_logger("service.audit")

_current: contextvars.ContextVar[AuditTrail | None] = contextvars.ContextVar("audit_trail", default=None)

WRITE_ACTIONS = {"created": "create", "updated": "update", "deleted": "delete"}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
TENANT_PREFIXES = ("/v1/", "/fhir/R4/", "/graphql")
NOT_AUDITED = ("/v1/audit-events",)

# A request's rows (a JSON array) for its organization, written by ``audit_append`` (migration 0016: the INSERT, its
# plan kept for the session, after the tenant is set for the transaction). Sent on the transaction's own asyncpg
# connection (service.db.driver), without SQLAlchemy's execution layer; as simple-query text with a write's COMMIT
# (``closing``); or, by the group commit, for several organizations at once as a transaction of its own
# (``commits.GROUPED``).
_APPEND = "SELECT audit_append($1, CAST($2 AS jsonb))"


def append_text(org_id: Any, rows: str) -> str:
    """``_APPEND`` as simple-query text, the organization and the rows (a JSON array) as literals: for a unit of work
    that sends it with its COMMIT in one round trip (``AuditTrail.closing``)."""
    return f"SELECT audit_append({tenant_literal(org_id)}, {literal(rows)})"


_ANONYMOUS = "SELECT audit_anonymous(CAST($1 AS jsonb))"


# A read's audit row but its type, ids and clients (``AuditTrail.read_values``, as ``a_<name>``).
READ_VALUES = ("app_id", "subject", "action", "outcome", "request_id", "remote_addr", "method", "path")


def own_rows(who: Principal, per_type: Subquery, *where: Any, per_read: bool = False) -> CTE:
    """The INSERT, as a data-modifying CTE, of a read's audit rows written by the read's own statement: one row per
    row of ``per_type`` (``k``, ``resource_type``, ``resource_ids``, ``client_ids``) that meets ``where``, in ``k``
    order, the request's values bound as ``a_<column>`` (``AuditTrail.read_values``): a compiled GraphQL query of one
    root field (``graphql.sql.audited``). ``per_read``: the rows of several reads, each read's values (``READ_VALUES``)
    and its order (``n``) columns of ``per_type`` (REST's reads by id, ``graphql.sql.audited_reads``).
    ``RETURNING`` one row for each."""
    values: dict[str, Any] = {
        "org_id": type_coerce(who.org_id, Uuid), "resource_type": per_type.c.resource_type,
        "resource_ids": per_type.c.resource_ids, "client_ids": per_type.c.client_ids,
        "status_code": cast(null(), Integer)}
    for name in READ_VALUES:
        values[name] = per_type.c[name] if per_read else bindparam(f"a_{name}", None, type_=Text)
    order = (per_type.c.n, per_type.c.k) if per_read else (per_type.c.k,)
    chosen = select(*(v.label(n) for n, v in values.items())).where(*where).order_by(*order)
    return (insert(AuditEvent.__table__).from_select(list(values), chosen)
            .returning(literal_column("1").label("one")).cte("audit_w"))


def written_count(rows: CTE) -> Any:
    """How many rows ``own_rows`` wrote: a column of the read's answer (``AuditTrail.written`` when any)."""
    return select(func.count()).select_from(rows).scalar_subquery()


def new_request_id(incoming: str | None) -> str:
    """The caller's X-Request-Id when it is a plain token (no CR/LF, at most 128 characters), else a new one."""
    if incoming and _REQUEST_ID.match(incoming):
        return incoming
    return os.urandom(16).hex()  # 32 random hex digits, as uuid4().hex gave, without building a UUID object


@dataclass
class Touched:
    ids: dict[Any, None] = field(default_factory=dict)  # UUIDs, or their text (as a compiled read returns them)
    clients: dict[Any, None] = field(default_factory=dict)
    writes: dict[str, None] = field(default_factory=dict)


@dataclass
class AuditTrail:
    request_id: str
    method: str
    path: str
    remote: str | None
    action: str | None = None  # set by routes whose action the method does not tell (export, import)
    touched: dict[str, Touched] = field(default_factory=dict)
    flushed: bool = False
    in_transaction: bool = False  # rows a statement wrote in the unit of work's transaction, flushed once it commits
    principal: Any = None

    # ------------------------------------------------------------ noting

    def _entry(self, resource_type: str) -> Touched:
        entry = self.touched.get(resource_type)
        if entry is None:
            entry = self.touched[resource_type] = Touched()
        return entry

    def seen(self, resource_type: str, record_id: Any, client_id: Any) -> None:
        entry = self._entry(resource_type)
        if record_id is not None:
            entry.ids[record_id] = None
        if client_id is not None:
            entry.clients[client_id] = None

    def seen_many(self, resource_type: str, record_ids: Iterable[Any], client_ids: Iterable[Any]) -> None:
        """Note many records of one type; a None (no id, no client) is dropped, without a look at every id (a
        compiled GraphQL read notes hundreds at once)."""
        entry = self._entry(resource_type)
        entry.ids.update(dict.fromkeys(record_ids))
        entry.ids.pop(None, None)
        entry.clients.update(dict.fromkeys(client_ids))
        entry.clients.pop(None, None)

    def wrote_many(self, resource_type: str, record_ids: Iterable[Any], client_ids: Iterable[Any], action: str) -> None:
        self.seen_many(resource_type, record_ids, client_ids)
        self._entry(resource_type).writes[WRITE_ACTIONS.get(action, action)] = None

    # ------------------------------------------------------------ writing

    def _action(self, entry: Touched | None, status: int | None) -> str:
        if status in (401, 403):
            return "denied"
        if entry is not None and entry.writes:
            if self.action in ("import", "purge"):
                return self.action
            if self.method == "PUT":
                return "upsert"
            return next(iter(entry.writes))
        if self.action:
            return self.action
        return {"POST": "create", "PUT": "upsert", "PATCH": "update", "DELETE": "delete"}.get(
            self.method, "read" if _names_one(self.path) else "search"
        )

    def rows(self, status: int | None) -> list[dict[str, Any]]:
        who = self.principal
        outcome = _outcome(status)
        base = {
            "org": str(who.org_id) if who is not None else None,
            "app": who.app_id if who is not None else None,
            "subject": who.subject if who is not None else None,
            "outcome": outcome, "status": status, "request_id": self.request_id, "remote": self.remote,
            "method": self.method, "path": self.path[:2000],
        }
        items: list[tuple[str | None, Touched]]
        if self.touched:
            items = list(self.touched.items())
        else:  # refused before anything was read: name what was asked for
            resource_type, record_id = _target(self.path)
            items = [(resource_type, Touched(ids={record_id: None} if record_id else {}))]
        return [
            {**base, "type": rtype, "action": self._action(entry, status),
             "ids": _texts(entry.ids), "clients": _texts(entry.clients)}
            for rtype, entry in items
        ]

    def _rows_json(self, status: int | None) -> str:
        rows = self.rows(status)
        return dumps([
            {"org_id": r["org"], "app_id": r["app"], "subject": r["subject"], "action": r["action"],
             "resource_type": r["type"], "resource_ids": r["ids"], "client_ids": r["clients"],
             "outcome": r["outcome"], "status_code": r["status"], "request_id": r["request_id"],
             "remote_addr": r["remote"], "method": r["method"], "path": r["path"]}
            for r in rows
        ]).decode()

    async def insert(self, conn: AsyncConnection, status: int | None) -> None:
        rows = self._rows_json(status)
        raw = await driver(conn)
        if self.principal is not None:
            await raw.execute(_APPEND, self.principal.org_id, rows)
        else:  # refused before its organization was known (no valid token): an anonymous row, through the one
            await raw.execute(_ANONYMOUS, rows)  # function that may write a row without an organization (0010)
        self.touched = {}

    async def flush(self, conn: AsyncConnection, who: Any) -> None:
        """Write what was touched so far in this (about to commit) transaction; outcome success."""
        self.principal = who
        if not self.touched:
            return
        try:  # no savepoint: if this insert fails, the request's writes must not commit either
            await self.insert(conn, None)
        except (DBAPIError, InFailedSQLTransactionError) as exc:
            if "current transaction is aborted" not in str(exc):
                raise
            # The transaction already failed (a route answered after a statement error): it will not
            # commit, so nothing it wrote needs this row; ``finish`` records the request instead.
            return
        self.flushed = True

    def closing(self, who: Any) -> str | None:
        """``flush``'s INSERT as simple-query text (its rows as one literal, ``db.literal``), for a unit of work that
        sends it with its COMMIT in one round trip (``db.write_transaction``); None if nothing was touched.
        ``committed`` once they committed."""
        self.principal = who
        if not self.touched:
            return None
        return append_text(who.org_id, self._rows_json(None))

    def grouped_rows(self, who: Any) -> str | None:
        """``flush``'s rows (a JSON array), for the group commit of a read (``commit_grouped``); None if nothing
        was touched. ``committed`` once they are."""
        self.principal = who
        if not self.touched:
            return None
        return self._rows_json(None)

    def read_values(self, who: Any) -> dict[str, Any]:
        """A read's audit row but its type, ids and clients, as ``a_<column>``: the values a statement that writes
        its own rows binds (``own_rows``); ``written`` once it wrote them."""
        self.principal = who
        return {"a_app_id": who.app_id, "a_subject": who.subject, "a_action": self._action(None, None),
                "a_outcome": _outcome(None), "a_request_id": self.request_id, "a_remote_addr": self.remote,
                "a_method": self.method, "a_path": self.path[:2000]}

    def written(self) -> None:
        """A statement of the read wrote its rows in the unit of work's transaction (``committed`` once it commits)."""
        self.in_transaction = True

    def committed(self) -> None:
        if self.touched or self.in_transaction:
            self.touched = {}
            self.flushed = True
            self.in_transaction = False

    async def finish(self, engine: AsyncEngine, status: int) -> None:
        """After the response: write what no transaction wrote, and any refusal of tenant data."""
        if not self.path.startswith(TENANT_PREFIXES) or self.path.startswith(NOT_AUDITED):
            return
        if self.path.startswith("/fhir/R4/") and not _target(self.path)[0]:
            return  # metadata, code systems, well-known documents: no client data
        refused = status in (401, 403, 404, 410)
        graphql = self.path.startswith("/graphql") and self.principal is not None and self.method == "POST"
        if not (self.touched or refused or (graphql and not self.flushed)):
            return
        if self.flushed and not self.touched and not refused:
            return
        from service.db import set_tenant

        who = self.principal
        try:
            async with engine.begin() as conn:
                await set_tenant(conn, who.org_id if who else None, None)
                await self.insert(conn, status)
        except Exception:  # noqa: BLE001 - never turn a served response into a crash; but say so loudly
            log.exception("audit_write_failed", request_id=self.request_id)


def _outcome(status: int | None) -> str:
    if status is None or status < 400:
        return "success"
    if status in (401, 403):
        return "denied"
    if status in (404, 410):
        return "not_found"
    return "error"


def _names_one(path: str) -> bool:
    parts = [p for p in path.split("/") if p]
    return any(_UUID.match(p) for p in parts[1:]) or (path.startswith("/fhir/R4/") and len(parts) >= 4)


def _texts(values: Iterable[Any]) -> list[Any]:
    """The values as ``str`` renders them: a UUID is left for orjson, which writes the same text in C (``str`` of a
    UUID runs in Python, and a batch's audit row names hundreds)."""
    return [v if type(v) is UUID else str(v) for v in values]


def _target(path: str) -> tuple[str | None, UUID | None]:
    """The resource type and id a path names (for refusals, where nothing was read)."""
    from service.auth.scopes import FHIR_ALIASES
    from service.collections.registry import REGISTRY

    parts = [p for p in path.split("/") if p]
    resource_type: str | None = None
    record_id: UUID | None = None
    if parts[:1] == ["v1"] and len(parts) > 1:
        name = parts[2] if parts[1] == "history" and len(parts) > 2 else parts[1]
        coll = REGISTRY.get(name)
        resource_type = coll.resource if coll else ("Progress" if name == "progress" else None)
    elif parts[:2] == ["fhir", "R4"] and len(parts) > 2:
        resource_type = parts[2] if parts[2] in FHIR_ALIASES or parts[2] == "Patient" else (
            "BulkExport" if parts[2].startswith("$export") else None)  # Bulk Data kick-off, status and files
    elif parts[:1] == ["graphql"]:
        resource_type = "GraphQL"
    for p in parts[1:]:
        if _UUID.match(p):
            record_id = UUID(p)
            break
    return resource_type, record_id


# ---------------------------------------------------------------- the service layer's hooks

def current() -> AuditTrail | None:
    return _current.get()


def seen(resource_type: str, record_id: Any, client_id: Any) -> None:
    trail = _current.get()
    if trail is not None:
        trail.seen(resource_type, record_id, client_id)


def seen_many(resource_type: str, record_ids: Iterable[Any], client_ids: Iterable[Any]) -> None:
    """``seen`` for many records of one type at once (a page of the change feed, a compiled GraphQL read)."""
    trail = _current.get()
    if trail is not None:
        trail.seen_many(resource_type, record_ids, client_ids)


def wrote_many(resource_type: str, record_ids: Iterable[Any], client_ids: Iterable[Any], action: str) -> None:
    """Note records of one type written with one action (one record or a batch)."""
    trail = _current.get()
    if trail is not None:
        trail.wrote_many(resource_type, record_ids, client_ids, action)


def set_action(action: str) -> None:
    trail = _current.get()
    if trail is not None:
        trail.action = action


async def flush(conn: AsyncConnection, who: Any) -> None:
    trail = _current.get()
    if trail is not None:
        await trail.flush(conn, who)


def closing(who: Any) -> str | None:
    """The request's ``AuditTrail.closing`` (None without a trail)."""
    trail = _current.get()
    return trail.closing(who) if trail is not None else None


def committed() -> None:
    trail = _current.get()
    if trail is not None:
        trail.committed()


def begin(trail: AuditTrail) -> contextvars.Token[AuditTrail | None]:
    return _current.set(trail)


def end(token: contextvars.Token[AuditTrail | None]) -> None:
    _current.reset(token)


# ---------------------------------------------------------------- reading the trail (GET /v1/audit-events)

_EVENT_FIELDS = [c for c in AuditEvent.__table__.c if c.name not in ("org_id", "seq")]


async def search(conn: AsyncConnection, who: Principal, *, limit: int, cursor: str | None,
                 since: datetime | None = None, until: datetime | None = None, **equal: Any,
                 ) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the organization's audit events in the order they were written, and the next page's cursor.
    ``equal``: ``client_id`` and ``resource_id`` (events naming it), ``resource_type``, ``action``, ``outcome``,
    ``app`` (the acting app's client_id); None means any."""
    t = AuditEvent.__table__
    stmt = select(*_EVENT_FIELDS, t.c.seq).where(t.c.org_id == who.org_id)
    if who.patient_id is not None:  # a patient's own app sees only the events about that patient alone (as the
        stmt = stmt.where(t.c.client_ids == [who.patient_id])  # row-level policy patient_read also says)
    if equal.get("client_id") is not None:
        stmt = stmt.where(t.c.client_ids.contains([equal["client_id"]]))
    if equal.get("resource_id") is not None:
        stmt = stmt.where(t.c.resource_ids.contains([equal["resource_id"]]))
    for column, name in ((t.c.resource_type, "resource_type"), (t.c.action, "action"), (t.c.outcome, "outcome"),
                         (t.c.app_id, "app")):
        if equal.get(name) is not None:
            stmt = stmt.where(column == equal[name])
    if since is not None:
        stmt = stmt.where(t.c.at >= since)
    if until is not None:
        stmt = stmt.where(t.c.at < until)
    if cursor:
        stmt = stmt.where(t.c.seq > int(cursors.AUDIT.decode(cursor, "cursor")[0]))
    rows, next_cursor = await fetch_page(conn, stmt.order_by(t.c.seq), limit, lambda r: cursors.AUDIT.encode(r.seq))
    return [{k: v for k, v in r._mapping.items() if k != "seq"} for r in rows], next_cursor


async def commit_grouped(engine: AsyncEngine, trail: AuditTrail, who: Principal) -> None:
    """After a read's transaction committed: the rows its trail holds, committed by the group commit
    (``service.audit.commits``); returns once they are (and the rows written in that transaction are, with it)."""
    rows = trail.grouped_rows(who)
    if rows is not None:
        await for_engine(engine).write(who.org_id, rows)
    trail.committed()
