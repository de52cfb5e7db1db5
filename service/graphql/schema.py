"""The schema, assembled from the registry once per process."""

import types
from functools import cache
from typing import Any

import strawberry

import service.domain.registry  # noqa: F401 - registers every collection
from service.collections.registry import REGISTRY
from service.graphql import fields, limits, progress
from service.graphql.auditing import AuditAction
from service.graphql.execution import ExecutionContext, resolve_directly
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
        conn.__annotations__ = {"edges": list[edge], "page_info": PageInfo}  # type: ignore[valid-type]
        strawberry.type(conn, description=f"A page of {coll.title.lower()}")


def _is_type_of(name: str) -> Any:
    """Records are namespaces, not instances: they name their collection (see context.record_obj)."""

    def is_type_of(cls: Any, obj: Any, info: Any) -> bool:
        return getattr(obj, "_collection", name) == name

    is_type_of.ignores_info = True  # type: ignore[attr-defined]  # execution.py may check it without one
    return is_type_of


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
    schema = strawberry.Schema(query=query, mutation=mutation, extensions=[*limits.extensions(), AuditAction],
                               execution_context_class=ExecutionContext)
    resolve_directly(schema)
    return schema


def schema_sdl() -> str:
    return build_schema().as_str() + "\n"
