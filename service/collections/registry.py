"""How a collection is described to the machinery: model, schemas, references, rules, children."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from uuid import UUID

from pydantic import BaseModel
from sqlalchemy import ColumnElement, Table
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

    def ids(self, data: dict[str, Any]) -> list[UUID]:
        value: Any = data
        for part in self.field.split("."):
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


Rule = Callable[[RuleContext], Awaitable[None]]
AfterWrite = Callable[[AsyncConnection, Principal, dict[str, Any], str], Awaitable[dict[str, Any]]]


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
    deletable: bool = True
    client_owned: bool = True
    to_out: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # per-collection output tweaks
    to_row: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # per-collection input tweaks
    after_write: AfterWrite | None = None  # e.g. measurements open safety alerts
    # Output fields computed by SQL over the collection's table, selected with the row by every read.
    computed: dict[str, Callable[[Table], ColumnElement[Any]]] = field(default_factory=dict)
    # What ``to_out`` derives in Python, as SQL over the table for reads compiled to SQL (GraphQL): an expression
    # whose JSON is the field's value exactly as REST writes it (e.g. a measurement's observed_at in its offset).
    out_sql: dict[str, Callable[[Table], ColumnElement[Any]]] = field(default_factory=dict)
    description: str = ""

    @property
    def key(self) -> str:
        """The snake_case name, used for ?include= keys and history paths."""
        return self.name.replace("-", "_")

    @cached_property
    def out_fields(self) -> frozenset[str]:
        """The output schema's field names (pydantic's ``model_fields`` costs microseconds per read; this is
        read once per serialized record)."""
        return frozenset(self.out.model_fields)


REGISTRY: dict[str, Collection] = {}


def register(collection: Collection) -> Collection:
    REGISTRY[collection.name] = collection
    return collection


def by_key(key: str) -> Collection | None:
    return REGISTRY.get(key.replace("_", "-"))


def ids_of(value: Any) -> list[UUID]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]
