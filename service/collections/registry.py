"""How a collection is described to the machinery: model, schemas, references, rules, children."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Any
from uuid import UUID

from pydantic import BaseModel
from sqlalchemy import ColumnElement, FromClause, Label, Table
from sqlalchemy.ext.asyncio import AsyncConnection

from service.auth.principal import Principal


@dataclass(frozen=True)
class Ref:
    """A field that references records of another collection of the same client.

    ``field`` may be dotted (``target.marker_id``) for a reference inside a nested object.
    """

    field: str
    target: str  # collection name
    many: bool = False

    @cached_property
    def path(self) -> tuple[str, ...]:
        return tuple(self.field.split("."))

    def ids(self, data: dict[str, Any]) -> list[UUID]:
        value: Any = data
        for part in self.path:  # split once: a batch asks once per item
            value = value.get(part) if isinstance(value, dict) else None
        return ids_of(value)


@dataclass
class RuleContext:
    """What a domain rule sees: the merged record, the referenced records, the current row if any."""

    conn: AsyncConnection
    who: Principal
    data: dict[str, Any]
    refs: dict[str, list[dict[str, Any]]]
    current: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # further column values a rule derives

    def changed(self, name: str) -> bool:
        return self.current is None or self.data.get(name) != self.current.get(name)

    def ref(self, field_name: str) -> dict[str, Any] | None:
        rows = self.refs.get(field_name) or []
        return rows[0] if rows else None


@dataclass
class Written:
    """One record a write path has just stored, for the collection's ``after_write``."""

    record: dict[str, Any]  # as serialized (the response); after_write may add output fields to it
    before: dict[str, Any] | None = None  # the stored columns before an update; None for a new record


Rule = Callable[[RuleContext], Awaitable[None]]
# Runs in the write's transaction after the records are stored and their changes recorded: every write path
# (create, update, upsert, batch, bulk import) calls it, with all the records it wrote at once.
AfterWrite = Callable[[AsyncConnection, Principal, Sequence[Written]], Awaitable[None]]
# An output field computed in SQL over the collection's table, or over anything with its columns (a subquery,
# the CTE of a write): e.g. a correlated subquery, ``.correlate(table)``.
Computed = Callable[[FromClause], ColumnElement[Any]]
# A list order before the id: ascending SQL keys over the table, on fields that never change (the cursor is the
# last row's id, whose keys are looked up again for the next page).
Order = Callable[[FromClause], Sequence[ColumnElement[Any]]]


@dataclass
class Collection:
    name: str  # URL segment: "protective-factors"
    type_name: str  # singular, used by the change feed and events: "protective_factor"
    resource: str  # scope resource: "ProtectiveFactor"
    title: str  # for OpenAPI tags
    table: Table
    create: type[BaseModel]
    patch: type[BaseModel]
    out: type[BaseModel]
    refs: list[Ref] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    children: dict[str, str] = field(default_factory=dict)  # ?include= name -> the child's field naming us
    filters: list[str] = field(default_factory=list)  # extra equality filters (e.g. goal_id)
    ext_field: str = "external_ids"  # the API name of the external identifiers ("identifiers" for clients)
    windows: tuple[str, ...] = ()  # timestamp columns lists filter by <stem>_since (at or after) and <stem>_until
    # (before): "observed_at" -> observed_since, observed_until
    deletable: bool = True
    client_owned: bool = True
    identity: bool = False  # its records are the patients: patient tokens neither create them nor change identifiers
    identifier_param: str = "external_id"  # the query parameter naming a record by ext_field ("identifier" for clients;
    # lists take it beside external_id, as an alias)
    owner_column: str = "client_id"  # the column naming the client the record is about ("id" for the clients)
    # GraphQL fields for the newest record of a child collection: field -> (child collection, its field naming us)
    latest: dict[str, tuple[str, str]] = field(default_factory=dict)
    opened_event: bool = False  # a record created with status open also emits the webhook event <type_name>.opened
    natural_key: tuple[str, ...] = ()  # columns that name a record for sync instead of ext_field (measurements)
    to_out: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # per-collection output tweaks
    to_row: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # per-collection input tweaks
    after_write: AfterWrite | None = None  # e.g. measurements open safety alerts
    computed: dict[str, Computed] = field(default_factory=dict)  # output field -> SQL, selected by every read
    immutable: tuple[str, ...] = ()  # fields a write may repeat but never change (422 immutable_field)
    order: Order | None = None  # the list order (default: by id)
    # What ``to_out`` derives in Python, as SQL over the table for reads compiled to SQL (GraphQL): an expression
    # whose JSON is the field's value exactly as REST writes it (e.g. a measurement's observed_at in its offset).
    out_sql: dict[str, Computed] = field(default_factory=dict)
    description: str = ""

    @property
    def key(self) -> str:
        """The snake_case name, used for ?include= keys and history paths."""
        return self.name.replace("-", "_")

    def computed_columns(self, table: FromClause | None = None) -> list[Label[Any]]:
        """The computed fields as labelled SQL expressions over ``table`` (default: the collection's)."""
        return [expr(self.table if table is None else table).label(name) for name, expr in self.computed.items()]

    def list_keys(self, table: FromClause | None = None) -> list[ColumnElement[Any]]:
        """The list order's keys over ``table`` (default: the collection's; or an alias of it), the id last."""
        source = self.table if table is None else table
        return [*(self.order(source) if self.order else ()), source.c.id]

    @cached_property
    def out_fields(self) -> frozenset[str]:
        """The output schema's field names (pydantic's ``model_fields`` costs microseconds per read; this is
        read once per serialized record)."""
        return frozenset(self.out.model_fields)


REGISTRY: dict[str, Collection] = {}


def install(collections: Sequence[Collection]) -> None:
    """Fill ``REGISTRY`` with ``collections`` in their order (routes, OpenAPI, GraphQL, scopes follow it); called
    once, by ``service.domain.registry``. The identity collection (the clients) embeds every client-owned
    collection with ``?include=`` unless it declares its children."""
    REGISTRY.clear()
    REGISTRY.update((c.name, c) for c in collections)
    for coll in collections:
        if coll.identity and not coll.children:
            coll.children = {c.name: c.owner_column for c in collections if c.client_owned}


@cache
def _table_rank() -> dict[str, int]:
    from service.models.base import Base  # imported here: the models are not needed to describe a collection

    return {t.name: i for i, t in enumerate(Base.metadata.sorted_tables)}


def referenced_first(collections: Iterable[Collection]) -> list[Collection]:
    """``collections`` in the order of their tables' foreign keys (the metadata's ``sorted_tables``): referenced
    tables first. Writes go in this order, erasure in the reverse."""
    rank = _table_rank()
    return sorted(collections, key=lambda c: rank[c.table.name])


def owner_column(table: Table) -> str:
    """The column naming the client in ``table``: its collection's ``owner_column``; ``client_id`` elsewhere
    (history, change feed)."""
    for coll in REGISTRY.values():
        if coll.table is table:
            return coll.owner_column
    return "client_id"


def owner() -> Collection:
    """The identity collection: the clients, whose records every client-owned record belongs to."""
    return next(c for c in REGISTRY.values() if c.identity)


def by_key(key: str) -> Collection | None:
    return REGISTRY.get(key.replace("_", "-"))


def ids_of(value: Any) -> list[UUID]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]
