"""REST's reads, ``GET /v1/<collection>/<id>[?include=...]`` and ``GET /v1/<collection>`` (a list page), as JSON
that PostgreSQL writes in one statement, by the compiler GraphQL's reads use (``service.graphql.sql.Builder``), from a
shape keyed by REST's own field names.

REST's shape differs from GraphQL's in three ways: its keys are the output model's field names in the order
``serialize`` writes them (the table's columns, the computed fields, the identifiers last); enum values are written as
stored and JSON documents as stored; and an included child list is a plain list (live children, in the child's list
order, at most ``MAX_INCLUDE``), not a page. ``serialize`` writes the same records in Python for the answers of
writes and for FHIR; a test per collection holds the two to each other key for key and byte for byte
(``tests/collections/test_pinned_reads.py``).

Each statement is gated on ``tenant_guard``: on a pinned connection whose session holds another tenant it reads
nothing and the read raises ``TenantMismatch``. A read by id, in a request, writes its own audit rows in its statement
(``sql.audited_reads``: from the side channel, with the request's values, so they commit with the read); a list page
has what it read noted in the audit trail from its side channel (``reads.note``), whose rows the caller's unit of
work (or the group commit) writes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any
from uuid import UUID

from service.audit import service as audit
from service.auth.principal import Principal
from service.auth.scopes import require
from service.collections.registry import REGISTRY
from service.collections.repository import CompiledRead, decode_cursor, readable_record
from service.collections.service import _TEMPLATE, INTERNAL, STORAGE_ONLY, must_be_live
from service.db import TenantMismatch
from service.graphql.reads import note
from service.graphql.relations import relations_of
from service.graphql.shapes import RecordShape, Rel, Value
from service.graphql.specs import Spec, record_specs
from service.graphql.sql import Builder, RootShape, audit_types, page_params


@dataclass(frozen=True)
class JsonRead:
    """A read's statement (``Builder.by_id``) and the resource types its audit columns name, in order."""

    statement: CompiledRead
    types: tuple[str, ...]


def _rest_spec(spec: Spec) -> Spec:
    """REST writes an enum's stored value, where GraphQL writes its renamed member."""
    return dataclasses.replace(spec, base=str) if spec.renamed_enum() else spec


@cache
def record_shape(coll_name: str) -> RecordShape:
    """Every field REST writes for a record, in ``serialize``'s order: the readable columns (computed fields
    included) but the internal ones, then the identifiers."""
    coll = REGISTRY[coll_name]
    specs = {s.name: s for s in record_specs(coll_name).values()}
    dropped = {*INTERNAL, *STORAGE_ONLY, "external_ids"}
    columns = readable_record(coll, _TEMPLATE).selected_columns.keys()
    keys = [c for c in columns if c not in dropped and c in specs]
    if coll.ext_field in specs and coll.ext_field not in keys:
        keys.append(coll.ext_field)
    expected = {name for name, s in specs.items() if s.source != "none"}
    if set(keys) != expected:  # a field REST would write that SQL does not, or the reverse: stop at startup
        raise AssertionError(f"REST's read of {coll_name} would write {sorted(keys)}, its model {sorted(expected)}")
    return RecordShape(coll_name, tuple(Value(k, _rest_spec(specs[k])) for k in keys))


@cache
def _json_read(coll_name: str, children: tuple[str, ...], audited: bool) -> JsonRead:
    relations = relations_of(coll_name)
    rels = tuple(Rel(REGISTRY[c].key, False, relations[REGISTRY[c].key], record_shape(c)) for c in children)
    shape = RecordShape(coll_name, record_shape(coll_name).entries + rels)
    types = audit_types(RootShape("one", "response", (shape,)))

    def build(who: Principal) -> Any:
        builder = Builder(who)
        builder.types = types
        return builder.by_ids(shape, audited)

    return JsonRead(CompiledRead(build), types)


@lru_cache(maxsize=512)
def _json_page(coll_name: str, filters: tuple[str, ...], after: bool, bucket: int) -> JsonRead:
    coll = REGISTRY[coll_name]
    shape = record_shape(coll_name)

    def build(who: Principal) -> Any:
        builder = Builder(who)
        builder.types = (coll.resource,)
        return builder.rest_page(shape, builder.list_base(coll, filters, after), bucket)

    return JsonRead(CompiledRead(build), (coll.resource,))


def _bucket(limit: int) -> int:
    """How many rows a page of ``limit`` reads at most, written in its SQL: ``limit + 1`` rounded up to a multiple
    of 10, so that a few statements serve every page size (each planned once per connection)."""
    return -(-(limit + 1) // 10) * 10


async def page(conn: Any, who: Principal, coll_name: str, filters: dict[str, Any], limit: int,
               cursor: str | None) -> tuple[bytes, str | None]:
    """A list page's JSON (``{"data": [...], "next_cursor": ...}``) and its next cursor (None: the last page):
    ``filters`` as ``service.list_statement`` takes them."""
    after = decode_cursor(cursor) if cursor else None
    given = {name: value for name, value in filters.items() if value is not None}
    plan = _json_page(coll_name, tuple(sorted(given)), after is not None, _bucket(limit))
    row = (await plan.statement.fetch(conn, who, **page_params(given, after), limit=limit))[0]
    if not row["ok"]:
        raise TenantMismatch
    note(plan.types, row)
    body: bytes = row["j"]
    return body, row["next_cursor"]


async def read(conn: Any, who: Principal, coll_name: str, record_id: UUID,
               names: Sequence[str]) -> tuple[int, bytes]:
    """(version, the record's JSON with its included lists), or NotFound / Gone. Embedding a child list is a search
    of it: the child's search scope is required before anything is read."""
    kids = tuple(REGISTRY[name.replace("_", "-")] for name in names)
    for child in kids:
        require(who, child.resource, "s")
    trail = audit.current()
    plan = _json_read(coll_name, tuple(c.name for c in kids), trail is not None)
    item = {"ids": record_id} if trail is None else {"ids": record_id, **trail.read_values(who)}
    rows = await plan.statement.fetch_one_of(conn, who, item)
    if not rows[0]["ok"]:
        raise TenantMismatch
    row = next((r for r in rows if r["id"] == record_id), None)
    must_be_live(REGISTRY[coll_name].type_name.replace("_", " "), record_id, row is not None,
                 None if row is None else row["deleted_at"])
    assert row is not None
    if trail is not None:
        if not row["audited"]:  # a live record found has its rows written with it: never answer one without
            raise RuntimeError(f"the read of {coll_name} {record_id} wrote no audit row")
        trail.written()
    version = row["version"]
    body: bytes = row["j"]
    return version, body
