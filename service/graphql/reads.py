"""Root fields read through one compiled statement each: a record by id, a page with the REST filters, ``node``.

``plan_*`` check a root field's arguments as the resolvers always have (page size, time zone, identifier, cursor:
a ``DomainError`` otherwise) and turn its selection into a shape and parameters; ``run`` executes the statement on
the unit of work's connection and notes in the audit trail what it read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any
from uuid import UUID

from graphql import FieldNode

from service.audit import service as audit
from service.auth.principal import Principal
from service.collections.registry import Collection
from service.collections.repository import CompiledRead, decode_cursor, parse_identifier
from service.db import TenantMismatch
from service.errors import ValidationFailed
from service.graphql.limits import check_page
from service.graphql.selection import Doc
from service.graphql.shapes import Mode, Planner
from service.graphql.sql import RootShape, audit_types, compiled, page_params


@dataclass
class Plan:
    root: RootShape
    params: dict[str, Any]
    complete: bool  # nothing is left to a resolver (no error to report, no field with a resolver of its own)

    @cached_property
    def statement(self) -> tuple[CompiledRead, tuple[str, ...]]:
        """The root's statement and the types its audit columns name (kept: a plan is reused, and a shape's hash
        walks the whole shape)."""
        return compiled(self.root), audit_types(self.root)

    @cached_property
    def audited(self) -> CompiledRead:
        """The statement that also writes the request's audit rows (``sql.audited``)."""
        return compiled(self.root, audit_rows=True)


def filter_names(coll: Collection) -> list[str]:
    """The REST list filters a root connection takes, by Python name."""
    names = ["client_id"] if coll.client_owned else []
    if "status" in coll.table.c:
        names.append("status")
    names += ["updated_since", coll.identifier_param, *coll.filters]
    return names


def page_filters(coll: Collection, filters: dict[str, Any]) -> dict[str, Any]:
    """The list filters of a root connection as ``service.list_statement`` takes them, checked as before."""
    filters = {k: v for k, v in filters.items() if v is not None}
    if coll.identifier_param in filters:
        filters["external_id"] = filters.pop(coll.identifier_param)
    since = filters.get("updated_since")
    if isinstance(since, datetime) and since.utcoffset() is None:
        raise ValidationFailed.on("updated_since", "A timestamp needs a time zone offset", "timezone_required")
    if "external_id" in filters:
        filters["external_id"] = parse_identifier(filters["external_id"], coll.identifier_param)
    return filters


def plan_page(doc: Doc, nodes: list[FieldNode], coll: Collection, first: int, after: str | None,
              filters: dict[str, Any], allows: Callable[[str, str], bool], mode: Mode) -> Plan:
    check_page(first)
    filters = page_filters(coll, filters)
    params = page_params(filters, decode_cursor(after) if after else None)
    planner = Planner(doc, allows, mode)
    shape = planner.connection(coll, nodes)
    root = RootShape("page", mode, (shape,), tuple(filters), bool(after), first)
    return Plan(root, {**planner.params, **params}, planner.complete)


def plan_one(doc: Doc, nodes: list[FieldNode], coll: Collection, record_id: UUID,
             allows: Callable[[str, str], bool], mode: Mode) -> Plan:
    planner = Planner(doc, allows, mode)
    shape = planner.record(coll, nodes)
    return Plan(RootShape("one", mode, (shape,)), {**planner.params, "id": record_id}, planner.complete)


def plan_node(doc: Doc, nodes: list[FieldNode], colls: list[Collection], record_id: UUID,
              allows: Callable[[str, str], bool], mode: Mode) -> Plan:
    """``node(id)``: the record among the collections the token may read, whichever it is."""
    planner = Planner(doc, allows, mode)
    shapes = tuple(planner.record(coll, nodes) for coll in colls)
    return Plan(RootShape("node", mode, shapes), {**planner.params, "id": record_id}, planner.complete)


async def run(conn: Any, who: Principal, plan: Plan, *, uuids: bool = False) -> bytes | None:
    """The field's JSON, UTF-8 encoded (None: no such record), the records it read noted in the audit trail."""
    statement, types = plan.statement
    rows = await statement.fetch(conn, who, **plan.params)
    if not rows:
        return None
    note(types, rows[0], uuids=uuids)
    field_json: bytes | None = rows[0][0]
    return field_json


async def run_audited(conn: Any, who: Principal, plan: Plan, trail: audit.AuditTrail) -> bytes | None:
    """``run``, with the audit rows written by the statement itself, in the unit of work's transaction or on a pinned
    connection (the trail told when it wrote any: none when nothing was read): the field's JSON (None: no such
    record); ``TenantMismatch`` when a pinned connection's session held another tenant (nothing read nor written)."""
    row = (await plan.audited.fetch(conn, who, **plan.params, **trail.read_values(who)))[0]
    if not row["ok"]:
        raise TenantMismatch
    if row["audited"]:
        trail.written()
    field_json: bytes | None = row["j"]
    return field_json


def note(types: tuple[str, ...], row: Any, *, uuids: bool = False) -> None:
    """Note in the audit trail what the statement read: after the JSON, per type, its ids and its clients, each a
    comma-joined text (null: none), split, never parsed record by record. Ids stay text (the trail writes them as
    text) unless ``uuids``: a write's answer, read back, names the record the write noted as a UUID."""
    for k, resource in enumerate(types):
        ids, clients = row[1 + 2 * k], row[2 + 2 * k]
        if ids is None:
            continue
        record_ids: list[Any] = ids.split(",")
        client_ids: list[Any] = clients.split(",") if clients else []
        if uuids:
            record_ids, client_ids = [UUID(i) for i in record_ids], [UUID(c) for c in client_ids]
        audit.seen_many(resource, record_ids, client_ids)
