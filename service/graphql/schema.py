"""The schema, assembled from the registry once per process, run by Strawberry's stock executor."""

import dataclasses
import types
from datetime import date, datetime
from functools import cache
from typing import Any

import strawberry
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.types.base_scalars import DateDefinition, DateTimeDefinition
from strawberry.types.scalar import ScalarDefinition

import service.domain.registry  # noqa: F401 - registers every collection
from service.collections.registry import REGISTRY
from service.collections.types import list_of
from service.graphql import fields, limits, progress
from service.graphql.auditing import AuditAction
from service.graphql.compiled import CompiledReads
from service.graphql.context import read_field
from service.graphql.typegen import PageInfo, Types


def _decorate(types_: Types) -> None:
    for coll in REGISTRY.values():
        cls = types_.record_types[coll.name]
        types_.fill_fields(cls, coll.out)
        for name, value in fields.relations(types_, coll).items():
            setattr(cls, name, value)
        if coll.name == "clients":
            cls.progress = progress.client_progress_field(types_)
        cls.is_type_of = classmethod(_is_type_of(coll.name))
        strawberry.type(cls, description=coll.description)
        edge = types_.edges[coll.name]
        edge.__annotations__ = {"node": cls, "cursor": str}
        strawberry.type(edge)
        conn = types_.connections[coll.name]
        conn.__annotations__ = {"edges": list_of(edge), "page_info": PageInfo}
        strawberry.type(conn, description=f"A page of {coll.title.lower()}")


def _is_type_of(name: str) -> Any:
    """Records are dicts: a compiled one names its collection (``@type``; shapes.py), a write's own answer does not
    (it is of its field's type)."""

    def is_type_of(cls: Any, obj: Any, info: Any) -> bool:
        return obj.get("@type", name) == name if type(obj) is dict else True

    return is_type_of


def _text_or_iso(value: Any) -> str:
    """Compiled reads carry timestamps and dates already written as ``isoformat`` writes them (sqljson.py)."""
    return value if isinstance(value, str) else value.isoformat()


SCALARS: dict[object, ScalarDefinition] = {
    datetime: dataclasses.replace(DateTimeDefinition, serialize=_text_or_iso, implementation=None),
    date: dataclasses.replace(DateDefinition, serialize=_text_or_iso, implementation=None),
}


def _root(name: str, members: dict[str, Any], description: str) -> Any:
    cls = types.new_class(name)
    for key, value in members.items():
        setattr(cls, key, value)
    return strawberry.type(cls, description=description)


@cache
def build_schema() -> strawberry.Schema:
    types_ = Types()
    _decorate(types_)
    queries: dict[str, Any] = {}
    mutations: dict[str, Any] = {}
    queries["node"] = fields.node_field()
    queries["progress_summary"] = progress.progress_summary_field(types_)
    for coll in REGISTRY.values():
        queries.update(fields.query_fields(types_, coll))
        mutations.update(fields.mutation_fields(types_, coll))
    query = _root("Query", queries, "Every collection, by id and as Relay-style connections")
    mutation = _root("Mutation", mutations, "The same writes as REST, through the same service layer")
    return strawberry.Schema(query=query, mutation=mutation,
                             extensions=[*limits.extensions(), AuditAction, CompiledReads],
                             config=StrawberryConfig(default_resolver=read_field), scalar_overrides=SCALARS)


def schema_sdl() -> str:
    return build_schema().as_str() + "\n"
